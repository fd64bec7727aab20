// Corrupt-plan rejection: one test per check of rt::verify_plan, plus a
// deterministic mutation fuzz loop (load either succeeds or throws
// kiln::rt::Error, never crashes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "plan_test_util.h"
#include "runtime/plan/describe.h"
#include "runtime/plan/plan.h"

namespace kiln::plan {
namespace {

using namespace kiln::plan::testing;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::vector<uint8_t> valid_file() {
  static const std::vector<uint8_t> bytes = [] {
    const auto path = temp_dir() / "valid.plan";
    write_plan(small_spec(), path.string());
    return read_file(path);
  }();
  return bytes;
}

// A file for `s` built without the writer's checks (both hashes correct).
std::vector<uint8_t> file_for(const PlanSpec& s) {
  const std::vector<uint8_t> w = weights_section(s);
  return assemble(build_plan_flatbuffer(s, w.size()), w);
}

// Expects Plan::from_bytes to throw rt::Error with `code`, a field containing
// `field` and a message containing `msg`.
void expect_reject(std::vector<uint8_t> bytes, rt::ErrorCode code, const std::string& field,
                   const std::string& msg) {
  try {
    rt::Plan::from_bytes(std::move(bytes), "test.plan");
    FAIL() << "plan accepted, expected rejection by " << field;
  } catch (const rt::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_THAT(e.field(), HasSubstr(field)) << e.what();
    EXPECT_THAT(e.what(), HasSubstr(msg));
    EXPECT_THAT(e.what(), HasSubstr("test.plan"));
  }
}

TEST(PlanCorrupt, ValidFileAndAssembledFileLoad) {
  EXPECT_NO_THROW(rt::Plan::from_bytes(valid_file()));
  // The independent assembler agrees with the writer on the layout.
  EXPECT_EQ(file_for(small_spec()), valid_file());
}

TEST(PlanCorrupt, BadMagic) {
  auto f = valid_file();
  f[3] = 'X';
  expect_reject(f, rt::ErrorCode::kFormat, "header.magic", "kiln compile");
}

TEST(PlanCorrupt, MajorVersionMismatch) {
  // A plan of the previous major format (1.x: before the tensor-core prefill)
  // and one of a future major are both refused, naming both versions.
  for (uint32_t major : {plan_format::kFormatMajor - 1, plan_format::kFormatMajor + 1}) {
    auto f = valid_file();
    auto h = header_of(f);
    h.format_major = major;
    h.format_minor = 2;
    set_header(f, h);
    expect_reject(f, rt::ErrorCode::kVersion, "header.version",
                  "plan format " + std::to_string(major) + ".2, this runtime reads " +
                      std::to_string(plan_format::kFormatMajor) + ".0 to " + std::to_string(plan_format::kFormatMajor) +
                      "." + std::to_string(plan_format::kFormatMinor) + ": recompile");
  }
}

TEST(PlanCorrupt, NewerMinorVersion) {
  auto f = valid_file();
  auto h = header_of(f);
  h.format_minor = plan_format::kFormatMinor + 1;
  set_header(f, h);
  expect_reject(f, rt::ErrorCode::kVersion, "header.version", "recompile");
}

TEST(PlanCorrupt, TruncatedFile) {
  auto f = valid_file();
  f.resize(f.size() - 100);
  expect_reject(f, rt::ErrorCode::kFormat, "header.sections", "truncated");
  const std::vector<uint8_t> whole = valid_file();
  expect_reject(std::vector<uint8_t>(whole.begin(), whole.begin() + 40),
                rt::ErrorCode::kFormat, "header", "shorter than the 64-byte header");
  expect_reject({}, rt::ErrorCode::kFormat, "header", "shorter");
}

TEST(PlanCorrupt, SectionOutOfBounds) {
  auto f = valid_file();
  auto h = header_of(f);
  h.fb_size = ~uint64_t{0} - 10;  // offset + size overflows
  set_header(f, h);
  expect_reject(f, rt::ErrorCode::kFormat, "header.sections", "past the end");

  f = valid_file();
  h = header_of(f);
  h.weights_offset += 4096;  // aligned but beyond the file
  set_header(f, h);
  expect_reject(f, rt::ErrorCode::kFormat, "header.sections", "past the end");
}

TEST(PlanCorrupt, SectionsMisalignedOrOverlapping) {
  auto f = valid_file();
  auto h = header_of(f);
  h.weights_offset -= 8;
  h.weights_size = 8;
  set_header(f, h);
  expect_reject(f, rt::ErrorCode::kFormat, "header.sections", "4096-byte aligned");

  f = valid_file();
  h = header_of(f);
  h.fb_offset = 0;  // over the header
  set_header(f, h);
  expect_reject(f, rt::ErrorCode::kFormat, "header.sections", "overlaps the header");

  f = valid_file();
  h = header_of(f);
  h.weights_offset = 0;
  h.weights_size = 128;
  set_header(f, h);
  expect_reject(f, rt::ErrorCode::kFormat, "header.sections", "overlaps the header");

  // Weights section placed over the flatbuffer: 4096-aligned, inside the file.
  PlanSpec s = small_spec();
  s.kernels[1].cubin = pattern(5000, 1);  // a flatbuffer longer than 4096 bytes
  f = file_for(s);
  h = header_of(f);
  ASSERT_GT(h.fb_size, 4096u);
  h.weights_offset = 4096;
  set_header(f, h);
  rehash(f);
  expect_reject(f, rt::ErrorCode::kFormat, "header.sections", "overlap");
}

TEST(PlanCorrupt, BadWeightsHash) {
  auto f = valid_file();
  const auto h = header_of(f);
  f[h.weights_offset + 1100] ^= 0x01;  // one bit of blk.0.attn_norm.weight
  expect_reject(f, rt::ErrorCode::kFormat, "header.weights_hash", "hash mismatch");
}

TEST(PlanCorrupt, BadFlatbufferHash) {
  auto f = valid_file();
  const auto h = header_of(f);
  f[h.fb_offset + h.fb_size / 2] ^= 0x40;
  expect_reject(f, rt::ErrorCode::kFormat, "header.fb_hash", "hash mismatch");
}

TEST(PlanCorrupt, FlatbufferGarbageWithValidHash) {
  auto f = valid_file();
  const auto h = header_of(f);
  // Root table offset pointing far outside the buffer.
  const uint32_t root = 0x7ffffff0u;
  std::memcpy(f.data() + h.fb_offset, &root, 4);
  rehash(f);
  expect_reject(f, rt::ErrorCode::kFormat, "flatbuffer", "structural verification");

  f = valid_file();
  std::memcpy(f.data() + h.fb_offset + 4, "NOPE", 4);  // file identifier
  rehash(f);
  expect_reject(f, rt::ErrorCode::kFormat, "flatbuffer", "identifier");

  // Every byte of the table after the root offset and identifier set to 0xff.
  f = valid_file();
  std::fill(f.begin() + h.fb_offset + 8, f.begin() + h.fb_offset + h.fb_size, 0xff);
  rehash(f);
  expect_reject(f, rt::ErrorCode::kFormat, "flatbuffer", "structural verification");
}

TEST(PlanCorrupt, KernelIndexOutOfRange) {
  PlanSpec s = small_spec();
  s.programs[1].launches[0].kernel = 2;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[1].launches[0].kernel",
                "kernel index 2 out of range (plan has 2 kernels)");
}

// 2.2 output marks (kiln run --check-finite reads `size` bytes behind them):
// only 1-3 (+16) on an arena pointer of known size.
TEST(PlanCorrupt, OutputMarkOnlyOnSizedArenaPointers) {
  PlanSpec s = small_spec();
  s.programs[0].launches[0].args[0] = ArgSpec::ptr(Region::kArena, 0, 64);
  s.programs[0].launches[0].args[0].out = 1 | 16;
  EXPECT_NO_THROW(rt::Plan::from_bytes(file_for(s), "test.plan"));
  for (uint8_t bad : {uint8_t{4}, uint8_t{16}, uint8_t{33}}) {
    s.programs[0].launches[0].args[0].out = bad;
    expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[0].launches[0].args[0].out", "output mark");
  }
  s = small_spec();
  s.programs[0].launches[0].args[0] = ArgSpec::ptr(Region::kArena, 0);  // size unknown
  s.programs[0].launches[0].args[0].out = 2;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "args[0].out", "known size");
}

TEST(PlanCorrupt, ArgOffsetOutsideRegion) {
  PlanSpec s = small_spec();
  s.programs[0].launches[0].args[0] = ArgSpec::ptr(Region::kArena, 65536);  // == arena size
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[0].launches[0].args[0].offset",
                "outside its 65536-byte region");

  s = small_spec();
  s.programs[0].launches[1].args[0] = ArgSpec::ptr(Region::kWeights, 1024, 1024);  // 1024+1024 > 1580
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[0].launches[1].args[0].offset",
                "outside its 1580-byte region");

  s = small_spec();
  s.programs[0].launches[1].args[0] = ArgSpec::ptr(Region::kWeights, 256, ~uint64_t{0});  // overflow
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "args[0].offset", "outside");

  s = small_spec();
  s.programs[0].launches[0].args[3] = ArgSpec::i32(1);
  s.programs[0].launches[0].args[3].i = int64_t{1} << 40;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "args[3].i", "int32");

  s = small_spec();
  s.programs[0].launches[0].args[0].region = static_cast<Region>(7);
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "args[0].region", "unknown memory region");

  s = small_spec();
  s.programs[0].launches[0].args[0].kind = static_cast<ArgKind>(9);
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "args[0].kind", "unknown argument kind");
}

TEST(PlanCorrupt, BlockDimsTooLarge) {
  PlanSpec s = small_spec();
  s.programs[0].launches[1].block = {64, 32, 1};  // 2048 threads
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[0].launches[1].block",
                "<= 1024 threads");
  s = small_spec();
  s.programs[0].launches[1].block = {1, 1, 65};  // z > 64
  expect_reject(file_for(s), rt::ErrorCode::kFormat, ".block", "z <= 64");
  s = small_spec();
  s.programs[0].launches[1].block = {0x10000, 0x10000, 1};  // product overflows 32 bits
  expect_reject(file_for(s), rt::ErrorCode::kFormat, ".block", "1024");
  s = small_spec();
  s.programs[0].launches[1].block = {0, 1, 1};
  expect_reject(file_for(s), rt::ErrorCode::kFormat, ".block", "empty");
}

TEST(PlanCorrupt, GridDimsOutOfRange) {
  PlanSpec s = small_spec();
  s.programs[1].launches[0].grid = {1, 65536, 1};
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[1].launches[0].grid", "65535");
  s = small_spec();
  s.programs[1].launches[0].grid = {0x80000000u, 1, 1};
  expect_reject(file_for(s), rt::ErrorCode::kFormat, ".grid", "2^31");
  s = small_spec();
  s.programs[1].launches[0].grid = {1, 1, 0};
  expect_reject(file_for(s), rt::ErrorCode::kFormat, ".grid", "empty");
}

TEST(PlanCorrupt, SharedMemoryTooLarge) {
  PlanSpec s = small_spec();
  s.programs[0].launches[0].smem = 228 * 1024 - 255;  // + kernel 0's static 256 bytes
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[0].launches[0].smem",
                "shared memory");
  s = small_spec();
  s.programs[0].launches[0].smem = 228 * 1024 - 256;  // exactly the limit: fine
  EXPECT_NO_THROW(rt::Plan::from_bytes(file_for(s)));
  s = small_spec();
  s.kernels[1].smem = 300000;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "kernels[1].smem", "shared memory");
}

TEST(PlanCorrupt, WeightBlobOverlapping) {
  PlanSpec s = small_spec();
  s.weights[2].offset = 1024;  // on top of weights[1]
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "weights[", "overlaps weights[");
}

TEST(PlanCorrupt, WeightBlobOutsideSection) {
  PlanSpec s = small_spec();
  const std::vector<uint8_t> w = weights_section(s);
  s.weights[2].size = 1000;  // ends at 2280 > 1580
  expect_reject(assemble(build_plan_flatbuffer(s, w.size()), w), rt::ErrorCode::kFormat,
                "weights[2].offset", "outside the 1580-byte weights section");
  s = small_spec();
  s.weights[1].offset = 1030;  // unaligned
  expect_reject(assemble(build_plan_flatbuffer(s, w.size()), w), rt::ErrorCode::kFormat,
                "weights[1].offset", "256-byte aligned");
}

TEST(PlanCorrupt, EmptyCubin) {
  PlanSpec s = small_spec();
  s.kernels[0].cubin.clear();
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "kernels[0].cubin", "no CUBIN");
}

// Checked since the structured fuzzer's "wrong SM" edit (tests/fuzz/
// fuzz_plan_structured.cpp): before, a kernel built for another SM than the
// plan's target was accepted, and the engine would load a CUBIN the device
// cannot run.
TEST(PlanCorrupt, KernelForAnotherSm) {
  PlanSpec s = small_spec();
  s.kernels[1].sm = 80;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "kernels[1].sm", "built for sm_80 in a plan for sm_90");
}

TEST(PlanCorrupt, TokenizerIdsOutOfRange) {
  PlanSpec s = small_spec();
  s.tokenizer.eos_id = 8;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "tokenizer.eos_id", "out of range [0, 8)");
  s = small_spec();
  s.tokenizer.eog_ids = {1, -1};
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "tokenizer.eog_ids", "out of range");
  s = small_spec();
  s.tokenizer.scores.pop_back();
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "tokenizer.scores", "7 scores for 8 tokens");
}

TEST(PlanCorrupt, ArenaSlotsChecked) {
  PlanSpec s = small_spec();
  s.arena.kv[1].offset = 4096;  // overlaps k.0 [1024, 5120)
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "arena.kv[", "overlaps");
  s = small_spec();
  s.arena.kv[3].size = 65536;  // past the arena end
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "arena.kv[3]", "outside the 65536-byte arena");
  s = small_spec();
  s.arena.tokens_capacity = 8;  // prefill bucket 16 no longer fits
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[1].bucket", "tokens_capacity 8");
  s = small_spec();
  s.programs[0].logits_offset = 65536 - 16;  // 8 floats do not fit
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[0].logits_offset", "outside");
}

TEST(PlanCorrupt, BudgetMustAgree) {
  PlanSpec s = small_spec();
  const std::vector<uint8_t> w = weights_section(s);
  // Budget computed for a different weights size than the section's.
  expect_reject(assemble(build_plan_flatbuffer(s, w.size() + 1), w), rt::ErrorCode::kFormat,
                "budget", "memory budget");
}

// Every string and vector the schema leaves optional may be absent from a
// hostile plan: a plan whose programs, launches and weight blobs have no name,
// label or shape still verifies, and describe() / describe_launches() (what
// `kiln inspect --all-tensors` prints) must not dereference them. Before the
// launch listing moved into describe_launches() (where the fuzz targets reach
// it), `inspect --all-tensors` crashed (SIGSEGV) on a program without a name.
TEST(PlanCorrupt, OptionalFieldsMayBeAbsent) {
  std::vector<uint8_t> f = valid_file();
  const auto h = header_of(f);
  uint8_t* fbuf = f.data() + h.fb_offset;
  const fb::Plan* plan = fb::GetPlan(fbuf);
  // Zero a table's vtable entry for `field` (the field then reads as absent).
  auto drop = [&](const void* table, flatbuffers::voffset_t field) {
    const uint8_t* tp = static_cast<const uint8_t*>(table);
    uint8_t* vt = const_cast<uint8_t*>(tp - flatbuffers::ReadScalar<flatbuffers::soffset_t>(tp));
    if (field < flatbuffers::ReadScalar<flatbuffers::voffset_t>(vt))
      flatbuffers::WriteScalar<flatbuffers::voffset_t>(vt + field, 0);
  };
  for (const fb::Program* p : *plan->programs()) {
    drop(p, fb::Program::VT_NAME);
    for (const fb::Launch* l : *p->launches()) drop(l, fb::Launch::VT_LABEL);
  }
  for (const fb::WeightBlob* w : *plan->weights()) drop(w, fb::WeightBlob::VT_SHAPE);
  rehash(f);
  rt::Plan p = rt::Plan::from_bytes(f, "test.plan");
  ASSERT_EQ(p.programs().Get(0)->name(), nullptr);
  ASSERT_EQ(p.weights().Get(0)->shape(), nullptr);
  EXPECT_THAT(rt::describe(p), HasSubstr("programs"));
  EXPECT_THAT(rt::describe_launches(p), HasSubstr("program : 2 launches"));
}

// A cuBLASLt GEMM launch (format 2.0): shape, operand type, argument count and
// sizes, and the workspace are checked before the runtime builds the GEMM.
TEST(PlanCorrupt, GemmLaunchChecked) {
  auto gemm_spec = [] {
    PlanSpec s = small_spec();
    s.arena.gemm_workspace_offset = 24576;
    s.arena.gemm_workspace_size = 4096;
    LaunchSpec g;
    g.gemm = GemmSpec{16, 8, 32, 1, false};  // y[16,8] = x[16,32] @ w[8,32]^T, f16
    g.args = {ArgSpec::ptr(Region::kArena, 32768, 2 * 16 * 32), ArgSpec::ptr(Region::kWeights, 0, 2 * 8 * 32),
              ArgSpec::ptr(Region::kArena, 40960, 4 * 16 * 8)};
    g.label = "matmul -> y";
    s.programs[1].launches.push_back(g);
    return s;
  };
  EXPECT_NO_THROW(rt::Plan::from_bytes(file_for(gemm_spec()), "test.plan"));
  PlanSpec s = gemm_spec();
  s.programs[1].launches[1].gemm->k = 0;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "launches[1].gemm", "empty or beyond");
  s = gemm_spec();
  s.programs[1].launches[1].gemm->ab_type = 8;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "gemm.ab_type", "not f16 (1) or bf16 (30)");
  s = gemm_spec();
  s.programs[1].launches[1].gemm->n = 12;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "launches[1].gemm", "multiples of 8");
  s = gemm_spec();
  s.programs[1].launches[1].gemm->residual = true;  // wants x, w, r, y
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "launches[1].args", "takes 4 pointer arguments");
  s = gemm_spec();
  s.programs[1].launches[1].args[2].size = 4 * 16 * 8 - 4;  // y one float short
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "args[2].size", "needs 512");
  s = gemm_spec();
  s.arena.gemm_workspace_size = 0;
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "launches[1].gemm", "gemm_workspace_size > 0");
  s = gemm_spec();
  s.arena.gemm_workspace_offset = 5120;  // on the KV cache
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "arena", "overlaps");
}

// Program.device_step (2.3) makes the runtime skip step-block uploads, so the
// flag is accepted only on a program whose last launch is a kernel handed the
// step block (the sampler that advances it).
TEST(PlanCorrupt, DeviceStepNeedsASamplerGivenTheStepBlock) {
  PlanSpec s = small_spec();
  s.programs[0].device_step = true;  // its last launch (lm_head) takes no step pointer
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[0].device_step", "given the step block");
  s.programs[0].launches[1].args.push_back(ArgSpec::ptr(Region::kArena, s.arena.step_offset, 64));
  EXPECT_NO_THROW(rt::Plan::from_bytes(file_for(s), "test.plan"));
  s.programs[0].launches.clear();
  expect_reject(file_for(s), rt::ErrorCode::kFormat, "programs[0].device_step", "no launches");
}

// Found by tests/fuzz/fuzz_plan under UBSan (input in
// tests/fuzz/regressions/plan/misaligned-shape-vector): flatbuffers' Verifier
// checks a vector's length field for 4-byte alignment only, so a hostile plan
// can point WeightBlob.shape ([long]) at 8-byte elements that are misaligned,
// and reading them was undefined behaviour. Here weights[0].shape is pointed at
// a spot where a small length is followed by misaligned elements.
TEST(PlanCorrupt, MisalignedShapeVector) {
  std::vector<uint8_t> f = valid_file();
  const auto h = header_of(f);
  uint8_t* fbuf = f.data() + h.fb_offset;
  const fb::WeightBlob* w = fb::GetPlan(fbuf)->weights()->Get(0);
  // The shape field's uoffset (it points forward, relative to itself).
  const uint8_t* tp = reinterpret_cast<const uint8_t*>(w);
  const uint8_t* vt = tp - flatbuffers::ReadScalar<flatbuffers::soffset_t>(tp);
  const auto field = flatbuffers::ReadScalar<flatbuffers::voffset_t>(vt + fb::WeightBlob::VT_SHAPE);
  ASSERT_NE(field, 0);
  const size_t fpos = static_cast<size_t>(tp + field - fbuf);
  size_t q = 0;  // 8-aligned spot holding a length 1..4 whose elements fit in the buffer
  for (size_t c = (fpos + 8) / 8 * 8; c + 4 <= h.fb_size && !q; c += 8) {
    const uint32_t n = flatbuffers::ReadScalar<uint32_t>(fbuf + c);
    if (n >= 1 && n <= 4 && c + 4 + 8 * n <= h.fb_size) q = c;
  }
  ASSERT_NE(q, 0u) << "no spot for a misaligned vector in the small plan";
  flatbuffers::WriteScalar<flatbuffers::uoffset_t>(fbuf + fpos, static_cast<flatbuffers::uoffset_t>(q - fpos));
  rehash(f);
  expect_reject(f, rt::ErrorCode::kFormat, "weights[0].shape", "not 8-byte aligned");
}

// Thousands of deterministic byte flips of a valid plan. Half keep the hashes
// stale (the hash check must catch them), half recompute them so the
// flatbuffers Verifier and the semantic verifier see the damage. Every
// outcome must be a clean load or a kiln::rt::Error; a clean load must be
// fully usable (describe() walks every table).
TEST(PlanFuzz, ByteFlipsNeverCrash) {
  const std::vector<uint8_t> base = valid_file();
  const auto h = header_of(base);
  std::mt19937_64 rng(20240601);
  int accepted = 0, rejected_header = 0, rejected_structure = 0, rejected_semantic = 0;
  const int kIterations = 6000;
  for (int it = 0; it < kIterations; ++it) {
    std::vector<uint8_t> f = base;
    const bool rehashed = it % 2 == 1;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      size_t pos;
      if (rehashed) pos = h.fb_offset + rng() % h.fb_size;  // aim at the table
      else pos = rng() % f.size();
      const uint8_t mask = static_cast<uint8_t>(1 + rng() % 255);
      f[pos] ^= mask;
    }
    if (rehashed) rehash(f);
    try {
      const rt::Plan p = rt::Plan::from_bytes(std::move(f), "fuzz.plan");
      const std::string d = rt::describe(p);
      EXPECT_FALSE(d.empty());
      ++accepted;
    } catch (const rt::Error& e) {
      const std::string field = e.field();
      if (field.rfind("header", 0) == 0) ++rejected_header;
      else if (field == "flatbuffer") ++rejected_structure;
      else ++rejected_semantic;
      EXPECT_THAT(e.what(), StartsWith("cannot load plan 'fuzz.plan'"));
    }
  }
  std::printf("fuzz: %d mutations: %d accepted, rejected by header %d, by flatbuffers Verifier %d, "
              "by semantic verifier %d\n",
              kIterations, accepted, rejected_header, rejected_structure, rejected_semantic);
  EXPECT_EQ(accepted + rejected_header + rejected_structure + rejected_semantic, kIterations);
  // The loop reached every layer of the verifier.
  EXPECT_GT(rejected_header, 0);
  EXPECT_GT(rejected_structure, 0);
  EXPECT_GT(rejected_semantic, 0);
}

}  // namespace
}  // namespace kiln::plan
