// Fault injection through the whole compile driver, in process (ir/fault.h,
// docs/robustness.md): the n-th file read, file write or NVRTC compile of one
// compile_model fails, for every n. Each run ends in a kiln::Error of the
// right kind or (where the failure is survivable: an unreadable or unwritable
// kernel-cache entry) in a good plan — never another exception, never a crash;
// the old plan at the output path is intact; and no file descriptor or memory
// mapping is left open (counted in /proc/self/fd and /proc/self/maps, so a
// leaked GGUF mapping or plan file shows up without a sanitizer).
#include <gtest/gtest.h>

#include <cstdlib>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "compiler/compile/compile.h"
#include "compiler/tools/synth/model.h"
#include "ir/error.h"
#include "ir/fault.h"
#include "runtime/kiln_runtime.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("kiln_fault_test_" + std::to_string(::getpid()));
  Scratch() { fs::create_directories(dir); }
  ~Scratch() { fs::remove_all(dir); }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}
// What the open descriptors point at (for the message of a leak).
std::string fd_targets() {
  std::string s;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/self/fd"))
    s += " " + e.path().filename().string() + "->" + fs::read_symlink(e.path(), ec).string();
  return s;
}

// Mappings of files under `dir` (the model, the plan being verified).
size_t mappings_under(const fs::path& dir) {
  std::ifstream maps("/proc/self/maps");
  size_t n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find(dir.string()) != std::string::npos) ++n;
  return n;
}

compile::CompileOptions options(const Scratch& s, const std::string& cache) {
  const fs::path model = s.dir / "tiny.gguf";
  if (!fs::exists(model)) {
    synth::SynthOptions so;
    so.type = "q4_0";
    so.seed = 5;
    synth::build_model(so).write(model.string());
  }
  compile::CompileOptions o;
  o.model_path = model.string();
  o.out_path = (s.dir / "out.plan").string();
  o.ctx = 64;
  o.max_tokens = 16;
  o.prefill_buckets = {8};
  o.eager = false;
  o.cache_dir = cache;
  o.jobs = 2;
  return o;
}

void every_n(fault::Site site, const std::string& cache_mode) {
  Scratch s;
  const std::string cache = cache_mode == "-" ? "-" : (s.dir / "kc").string();
  compile::CompileOptions o = options(s, cache);
  fault::disarm();
  compile::compile_model(o);  // the old plan (and a warm cache)
  std::string old = slurp(o.out_path);
  ASSERT_FALSE(old.empty());
  fault::arm(site, 0);
  compile::compile_model(o);
  const uint64_t total = fault::count(site);
  old = slurp(o.out_path);
  ASSERT_GE(total, 1u) << fault::site_name(site);
  const size_t fds = open_fds(), maps = mappings_under(s.dir);
  int errors = 0, survived = 0;
  for (uint64_t n = 1; n <= total; ++n) {
    fault::arm(site, n);
    bool ok = false;
    try {
      compile::compile_model(o);
      ok = true;
    } catch (const Error& e) {
      const std::string what = e.what();
      if (site == fault::Site::kNvrtc) {
        EXPECT_EQ(e.code(), ErrorCode::kInternal) << what;
        EXPECT_NE(what.find("fault injected"), std::string::npos) << what;
      } else {
        EXPECT_EQ(e.code(), ErrorCode::kIo) << what;
        EXPECT_NE(what.find("Input/output error"), std::string::npos) << what;
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << fault::site_name(site) << " " << n << ": not a kiln::Error: " << e.what();
    }
    fault::disarm();
    ok ? ++survived : ++errors;
    if (ok) {
      EXPECT_NO_THROW(rt::Plan::load(o.out_path)) << fault::site_name(site) << " " << n;
      old = slurp(o.out_path);
    } else {
      EXPECT_EQ(slurp(o.out_path), old) << fault::site_name(site) << " " << n << ": the old plan changed";
    }
    std::vector<std::string> extra;
    for (const auto& e : fs::directory_iterator(s.dir))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) extra.push_back(e.path().string());
    EXPECT_TRUE(extra.empty()) << fault::site_name(site) << " " << n << ": left " << extra.front();
    EXPECT_EQ(open_fds(), fds) << fault::site_name(site) << " " << n << ": file descriptors leaked";
    EXPECT_EQ(mappings_under(s.dir), maps) << fault::site_name(site) << " " << n << ": mappings leaked";
  }
  std::printf("%s: %llu sites, %d errors, %d survived\n", fault::site_name(site),
              static_cast<unsigned long long>(total), errors, survived);
  EXPECT_GE(errors, 1);
}

}  // namespace

// Host allocations of at least fault::kAllocSiteMinBytes (operator new): a
// tiny compile makes ~270; each is failed in turn.
// Each failure must end in kiln::Error(kOutOfMemory) naming the cause (or the
// compile survives, where the allocation was in a place that falls back),
// the old plan intact, no temporary file, descriptor or mapping left.
TEST(CompileFaults, EveryLargeHostAllocation) {
  if (!fault::alloc_site_available()) GTEST_SKIP() << "sanitizer build: operator new belongs to the sanitizer";
  Scratch s;
  compile::CompileOptions o = options(s, (s.dir / "kc").string());
  fault::disarm();
  compile::compile_model(o);
  std::string old = slurp(o.out_path);
  ASSERT_FALSE(old.empty());
  fault::arm(fault::Site::kAlloc, 0);
  compile::compile_model(o);
  const uint64_t total = fault::count(fault::Site::kAlloc);
  fault::disarm();
  old = slurp(o.out_path);
  ASSERT_GE(total, 100u);
  std::vector<uint64_t> ns;  // every N (KILN_FAULT_ALLOC_STRIDE=k: every k-th, for a quick run)
  const char* st = std::getenv("KILN_FAULT_ALLOC_STRIDE");
  const uint64_t stride = st && std::atoi(st) > 0 ? static_cast<uint64_t>(std::atoi(st)) : 1;
  const char* from = std::getenv("KILN_FAULT_ALLOC_FROM");
  for (uint64_t n = from ? std::strtoull(from, nullptr, 10) : 1; n <= total; n += stride) ns.push_back(n);
  const size_t fds = open_fds(), maps = mappings_under(s.dir);
  int errors = 0, survived = 0;
  for (uint64_t n : ns) {
    fault::arm(fault::Site::kAlloc, n);
    bool ok = false;
    try {
      compile::compile_model(o);
      ok = true;
    } catch (const Error& e) {
      fault::disarm();
      EXPECT_EQ(e.code(), ErrorCode::kOutOfMemory) << n << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("out of host memory"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      fault::disarm();
      ADD_FAILURE() << "alloc " << n << ": not a kiln::Error: " << e.what();
    }
    fault::disarm();
    ok ? ++survived : ++errors;
    if (ok) {
      EXPECT_NO_THROW(rt::Plan::load(o.out_path)) << "alloc " << n;
      old = slurp(o.out_path);
    } else {
      EXPECT_EQ(slurp(o.out_path), old) << "alloc " << n << ": the old plan changed";
    }
    for (const auto& e : fs::directory_iterator(s.dir))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "alloc " << n << ": left " << e.path();
    EXPECT_EQ(open_fds(), fds) << "alloc " << n << ": file descriptors leaked:" << fd_targets();
    EXPECT_EQ(mappings_under(s.dir), maps) << "alloc " << n << ": mappings leaked";
  }
  std::printf("alloc: %llu allocations, %zu failed in turn: %d errors, %d survived\n",
              static_cast<unsigned long long>(total), ns.size(), errors, survived);
  EXPECT_GE(errors, static_cast<int>(ns.size()) * 9 / 10);
}

// Warm cache: the model read, one read per cache entry (a failed one is a miss).
TEST(CompileFaults, EveryFileRead) { every_n(fault::Site::kRead, ""); }
// Warm cache: the plan writer's writes.
TEST(CompileFaults, EveryFileWrite) { every_n(fault::Site::kWrite, ""); }
// No cache: every module through NVRTC.
TEST(CompileFaults, EveryNvrtcCompile) { every_n(fault::Site::kNvrtc, "-"); }
