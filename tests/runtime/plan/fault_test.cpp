// Loading a plan with each of its file operations failed in turn (runtime
// fault site plan_read: open, stat, map) ends in rt::Error(kIo) naming the plan
// and the cause, with no file descriptor or mapping left behind; under
// tests/asan/run.sh also with nothing leaked.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ir/fault.h"
#include "plan_test_util.h"
#include "runtime/fault.h"
#include "runtime/kiln_runtime.h"
#include "runtime/plan/plan.h"

namespace {
using namespace kiln::plan;
using namespace kiln::plan::testing;
namespace rt = kiln::rt;

size_t entries(const char* dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}
size_t mappings() {
  std::ifstream f("/proc/self/maps");
  size_t n = 0;
  for (std::string line; std::getline(f, line);) n += line.find(".plan") != std::string::npos;
  return n;
}

TEST(PlanFaults, EveryPlanReadFailureEndsInAnIoErrorAndLeaksNothing) {
  const auto path = (temp_dir() / "faults.plan").string();
  write_plan(small_spec(), path);
  rt::fault::disarm();
  { rt::Plan ok = rt::Plan::load(path); }
  const uint64_t sites = rt::fault::count(rt::fault::Site::kPlanRead);
  ASSERT_EQ(sites, 3u) << "open, stat, map";
  const size_t fds = entries("/proc/self/fd"), maps = mappings();
  for (uint64_t n = 1; n <= sites; ++n) {
    SCOPED_TRACE("failing plan file operation " + std::to_string(n));
    rt::fault::arm(rt::fault::Site::kPlanRead, n);
    try {
      rt::Plan p = rt::Plan::load(path);
      ADD_FAILURE() << "the plan loaded";
    } catch (const rt::Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(e.code(), rt::ErrorCode::kIo) << m;
      EXPECT_NE(m.find(path), std::string::npos) << m;
      EXPECT_NE(m.find("Input/output error"), std::string::npos) << m;
    }
    rt::fault::disarm();
    EXPECT_EQ(entries("/proc/self/fd"), fds) << "a file descriptor leaked";
    EXPECT_EQ(mappings(), maps) << "a mapping of the plan leaked";
  }
  rt::Plan again = rt::Plan::load(path);
  EXPECT_GT(again.file().size(), 0u);
}

// The host side of loading a plan for generation (the plan, its vocabulary and
// tokenizer) with each allocation of at least 4 KiB failed in turn (ir/fault.h
// site alloc, linked into this binary): every attempt ends in std::bad_alloc
// (the CLI reports "out of host memory", exit 1), leaves no descriptor or
// mapping, and the next attempt loads. Absent in sanitizer builds.
TEST(PlanFaults, EveryLargeHostAllocationOfLoadingAPlanAndItsTokenizerFailsCleanly) {
  if (!kiln::fault::alloc_site_available()) GTEST_SKIP() << "sanitizer build: operator new is the sanitizer's";
  PlanSpec spec = small_spec();
  // a chat template long enough that its copies are allocations past the 4 KiB floor
  for (int i = 0; i < 400; ++i) spec.tokenizer.chat_template += "{{ message['content'] }}";
  const auto path = (temp_dir() / "alloc_faults.plan").string();
  write_plan(spec, path);
  auto load = [&] {
    rt::Plan p = rt::Plan::load(path);
    rt::Tokenizer tok(rt::vocab_from_plan(p));
    return tok.vocab().tokens.size();
  };
  kiln::fault::disarm();
  ASSERT_EQ(load(), spec.tokenizer.tokens.size());
  const uint64_t sites = kiln::fault::count(kiln::fault::Site::kAlloc);
  ASSERT_GE(sites, 2u);  // the chat template's copies, at least
  const size_t fds = entries("/proc/self/fd"), maps = mappings();
  for (uint64_t n = 1; n <= sites; ++n) {
    SCOPED_TRACE("failing host allocation " + std::to_string(n) + " of " + std::to_string(sites));
    kiln::fault::arm(kiln::fault::Site::kAlloc, n);
    EXPECT_THROW(load(), std::bad_alloc);
    kiln::fault::disarm();
    EXPECT_EQ(entries("/proc/self/fd"), fds) << "a file descriptor leaked";
    EXPECT_EQ(mappings(), maps) << "a mapping of the plan leaked";
  }
  EXPECT_EQ(load(), spec.tokenizer.tokens.size());
}

}  // namespace
