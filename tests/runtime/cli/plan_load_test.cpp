// Runtime-only tests: this binary links kiln_runtime and GoogleTest and nothing
// of the compiler, codegen or ir, so it proves a deployment (the runtime and a
// plan file) can load and verify a plan on its own. The plan is a fixture made
// by the `kiln` binary at test time (tests/runtime/cli/CMakeLists.txt:
// `kiln synth --geometry tiny` + `kiln compile --target sm_90`), found through
// the KILN_TEST_PLAN environment variable. Corruptions are applied to a copy of
// its bytes; the semantic ones re-hash both sections so they reach the
// PlanVerifier rather than stopping at the hash check.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/kiln_runtime.h"
#include "runtime/plan/describe.h"
#include "runtime/plan/plan.h"
#include "runtime/plan/verify.h"
#include "runtime/tokenizer/tokenizer.h"
#include "schemas/plan_hash.h"
#include "schemas/plan_header.h"

namespace kiln::rt {
namespace {

using ::testing::HasSubstr;
using plan_format::PlanHeader;

const std::string& plan_path() {
  static const std::string p = [] {
    const char* env = std::getenv("KILN_TEST_PLAN");
    return std::string(env ? env : "");
  }();
  return p;
}

class RuntimeOnlyPlan : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(plan_path().empty())
        << "KILN_TEST_PLAN is not set: run through ctest, whose fixture runtime_only_make_plan makes the plan";
  }
  static std::vector<uint8_t> bytes() {
    std::ifstream in(plan_path(), std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }
};

PlanHeader header_of(const std::vector<uint8_t>& f) {
  PlanHeader h;
  std::memcpy(&h, f.data(), sizeof h);
  return h;
}
void set_header(std::vector<uint8_t>& f, const PlanHeader& h) { std::memcpy(f.data(), &h, sizeof h); }
void rehash(std::vector<uint8_t>& f) {
  PlanHeader h = header_of(f);
  h.fb_hash = plan_format::hash64(f.data() + h.fb_offset, h.fb_size);
  h.weights_hash = plan_format::hash64(f.data() + h.weights_offset, h.weights_size);
  set_header(f, h);
}

// Offset in the file of a scalar field of a verified flatbuffer table (the
// field must be stored, i.e. not at its default value).
template <typename T>
size_t field_offset(const Plan& plan, const T* table, flatbuffers::voffset_t field) {
  const uint8_t* p = reinterpret_cast<const flatbuffers::Table*>(table)->GetAddressOf(field);
  EXPECT_NE(p, nullptr) << "field not stored";
  return static_cast<size_t>(p - plan.file().data());
}

void expect_reject(std::vector<uint8_t> f, ErrorCode code, const std::string& field, const std::string& msg) {
  try {
    Plan::from_bytes(std::move(f), "corrupt.plan");
    ADD_FAILURE() << "corrupt plan accepted, expected rejection by " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_THAT(e.field(), HasSubstr(field)) << e.what();
    EXPECT_THAT(e.what(), HasSubstr(msg));
    EXPECT_THAT(e.what(), HasSubstr("corrupt.plan"));
  }
}

TEST_F(RuntimeOnlyPlan, LoadsAndVerifies) {
  const Plan plan = Plan::load(plan_path());
  EXPECT_EQ(plan.format_major(), plan_format::kFormatMajor);
  EXPECT_EQ(plan.target_sm(), 90u);
  EXPECT_GT(plan.kernels().size(), 0u);
  EXPECT_GT(plan.programs().size(), 0u);
  EXPECT_GT(plan.weights().size(), 0u);
  EXPECT_GT(plan.weights_size(), 0u);
  EXPECT_EQ(plan.model().n_layers(), 2u);
  // verify_plan on the mapped image agrees with what load() read.
  const PlanHeader h = verify_plan(plan.file());
  EXPECT_EQ(h.fb_hash, plan.header().fb_hash);
  EXPECT_EQ(h.weights_hash, plan.header().weights_hash);
  // The in-memory path accepts the same bytes.
  EXPECT_NO_THROW(Plan::from_bytes(bytes(), "copy.plan"));
  // Every program the engine would look up is there: a decode program exists.
  bool has_decode = false;
  for (const auto* p : plan.programs()) has_decode |= p->phase() == fb::Phase::Decode;
  EXPECT_TRUE(has_decode);
}

TEST_F(RuntimeOnlyPlan, DescribeAndTokenizer) {
  const Plan plan = Plan::load(plan_path());
  const std::string d = describe(plan);
  EXPECT_THAT(d, HasSubstr("sm_90"));
  const Tokenizer tok(vocab_from_plan(plan));
  const std::string text = "The quick brown fox jumps over the lazy dog.";
  const auto ids = tok.encode(text, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(tok.decode(ids), text);
  // Plain-data view for the engine builds without a device.
  const EngineInputs in = engine_inputs(plan);
  (void)in;
}

TEST_F(RuntimeOnlyPlan, ModelLoadRunsOrReportsNoDevice) {
  // With a GPU the plan loads (it is built for sm_90); without one the runtime
  // says so with a device error (the CLIs exit 3 on it), never a crash.
  try {
    auto model = Model::load(plan_path(), {});
    EXPECT_EQ(model->context_length(), static_cast<int32_t>(model->plan().model().context_length()));
  } catch (const Error& e) {
    EXPECT_THAT(e.code(), ::testing::AnyOf(ErrorCode::kDevice, ErrorCode::kCuda)) << e.what();
  }
}

TEST_F(RuntimeOnlyPlan, RejectsHeaderCorruptions) {
  auto f = bytes();
  f[2] = 'X';
  expect_reject(f, ErrorCode::kFormat, "header.magic", "kiln compile");

  f = bytes();
  PlanHeader h = header_of(f);
  h.format_major += 1;
  set_header(f, h);
  expect_reject(f, ErrorCode::kVersion, "header.version", "recompile");

  f = bytes();
  f.resize(f.size() - 1);
  expect_reject(f, ErrorCode::kFormat, "header.sections", "truncated");

  f = bytes();
  f.resize(40);
  expect_reject(f, ErrorCode::kFormat, "header", "shorter than the 64-byte header");
}

TEST_F(RuntimeOnlyPlan, RejectsHashMismatches) {
  auto f = bytes();
  const PlanHeader h = header_of(f);
  f[h.weights_offset + h.weights_size / 2] ^= 0x01;
  expect_reject(f, ErrorCode::kFormat, "header.weights_hash", "hash mismatch");

  f = bytes();
  f[h.fb_offset + h.fb_size / 2] ^= 0x40;
  expect_reject(f, ErrorCode::kFormat, "header.fb_hash", "hash mismatch");
}

TEST_F(RuntimeOnlyPlan, RejectsSemanticCorruptionsWithValidHashes) {
  const Plan plan = Plan::load(plan_path());
  const auto base = bytes();
  ASSERT_EQ(base.size(), plan.file().size());

  // A launch whose kernel index is past the kernel table.
  bool done = false;
  for (uint32_t pi = 0; pi < plan.programs().size() && !done; ++pi) {
    const auto* launches = plan.programs().Get(pi)->launches();
    for (uint32_t li = 0; li < launches->size() && !done; ++li) {
      const fb::Launch* l = launches->Get(li);
      if (l->kernel() == 0) continue;  // default value: not stored in the buffer
      auto f = base;
      const uint32_t bad = plan.kernels().size() + 7;
      std::memcpy(f.data() + field_offset(plan, l, fb::Launch::VT_KERNEL), &bad, sizeof bad);
      rehash(f);
      expect_reject(f, ErrorCode::kFormat,
                    "programs[" + std::to_string(pi) + "].launches[" + std::to_string(li) + "].kernel",
                    "out of range");
      done = true;
    }
  }
  EXPECT_TRUE(done) << "no launch with a non-zero kernel index";

  // A weight blob placed past the end of the weights section.
  done = false;
  for (uint32_t wi = 0; wi < plan.weights().size() && !done; ++wi) {
    const fb::WeightBlob* w = plan.weights().Get(wi);
    if (w->offset() == 0) continue;
    auto f = base;
    const uint64_t bad = (plan.weights_size() + 4096) & ~uint64_t{255};
    std::memcpy(f.data() + field_offset(plan, w, fb::WeightBlob::VT_OFFSET), &bad, sizeof bad);
    rehash(f);
    expect_reject(f, ErrorCode::kFormat, "weights[" + std::to_string(wi) + "].offset", "weight blob");
    done = true;
  }
  EXPECT_TRUE(done) << "no weight blob at a non-zero offset";
}

TEST_F(RuntimeOnlyPlan, MissingFileIsAnIoError) {
  try {
    Plan::load(plan_path() + ".missing");
    ADD_FAILURE() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_THAT(e.what(), HasSubstr(".missing"));
  }
}

}  // namespace
}  // namespace kiln::rt
