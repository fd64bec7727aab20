// Stage "lower" (compiler/compile/lowering.h): which programs a plan has,
// one launch per node with the right label and kernel, kernels shared through
// the kernel table, arguments bound to the buffer assignment.
#include <gtest/gtest.h>

#include <set>

#include "compiler/compile/lowering.h"
#include "schemas/kiln_step.h"
#include "stage_graphs.h"

namespace kiln::compile {
namespace {

using namespace stage_test;

// The message of the kInvalidArgument error `f` throws ("" when none).
template <class F>
std::string invalid_argument(F f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return {};
}

TEST(Lowering, ResolveShapes) {
  ProgramShapes s = resolve_shapes(0, 0, {}, 8192);
  EXPECT_EQ(s.ctx, 2048);
  EXPECT_EQ(s.max_tokens, kDefaultMaxTokens);
  EXPECT_EQ(s.buckets, (std::vector<int64_t>{16, 64, kDefaultMaxTokens}));
  s = resolve_shapes(100, 0, {}, 8192);  // default max_tokens clipped to ctx; default buckets clipped
  EXPECT_EQ(s.ctx, 100);
  EXPECT_EQ(s.max_tokens, 100);
  EXPECT_EQ(s.buckets, (std::vector<int64_t>{16, 64, 100}));
  s = resolve_shapes(0, 0, {}, 40);  // a model with a short context: everything clipped to it
  EXPECT_EQ(s.ctx, 40);
  EXPECT_EQ(s.max_tokens, 40);
  EXPECT_EQ(s.buckets, (std::vector<int64_t>{16, 40}));
  s = resolve_shapes(0, 64, {8, 8, 2, 64}, 512);  // sorted, duplicates merged, max_tokens added
  EXPECT_EQ(s.ctx, 512);
  EXPECT_EQ(s.buckets, (std::vector<int64_t>{2, 8, 64}));
  EXPECT_NE(invalid_argument([] { resolve_shapes(4096, 64, {}, 2048); }).find("--ctx 4096"), std::string::npos);
}

// Nothing asked for is dropped silently: a bucket or --max-tokens that the
// context cannot hold is an error naming the flag, the value and the fix,
// also when --ctx is the default (min(2048, model's)).
TEST(Lowering, ResolveShapesRefusesWhatItCannotCompile) {
  for (int64_t b : {0, 1, -16, 65, 500}) {
    const std::string m = invalid_argument([&] { resolve_shapes(0, 64, {16, b}, 512); });
    EXPECT_NE(m.find("--buckets " + std::to_string(b) + ": "), std::string::npos) << m;
    EXPECT_NE(m.find("2..64"), std::string::npos) << m;
  }
  // A bucket above the default max_tokens (512), with no --max-tokens.
  std::string m = invalid_argument([] { resolve_shapes(0, 0, {1024}, 8192); });
  EXPECT_NE(m.find("--buckets 1024"), std::string::npos) << m;
  EXPECT_NE(m.find("512 by default"), std::string::npos) << m;
  // --max-tokens above the default context: the message names where ctx came from.
  m = invalid_argument([] { resolve_shapes(0, 4096, {}, 131072); });
  EXPECT_NE(m.find("--max-tokens 4096 exceeds the compiled context 2048 (--ctx not given"), std::string::npos) << m;
  EXPECT_NE(m.find("pass --ctx 4096"), std::string::npos) << m;
  m = invalid_argument([] { resolve_shapes(0, 4096, {}, 2048); });
  EXPECT_NE(m.find("--max-tokens 4096 exceeds the model's context length 2048"), std::string::npos) << m;
  m = invalid_argument([] { resolve_shapes(1000, 4096, {}, 131072); });
  EXPECT_NE(m.find("--max-tokens 4096 exceeds --ctx 1000"), std::string::npos) << m;
  // A bucket above a default context, given with a --max-tokens the context holds.
  m = invalid_argument([] { resolve_shapes(0, 2048, {4096}, 131072); });
  EXPECT_NE(m.find("--buckets 4096"), std::string::npos) << m;
}

TEST(Lowering, ProgramJobsPerModePhaseAndBucket) {
  const Mini f = fused_graph(), e = unfused_graph();
  const ProgramShapes shapes{32, 16, {4, 16}};
  const auto jobs = program_jobs(f.g, &e.g, shapes);
  std::vector<std::string> names;
  for (const auto& j : jobs) {
    names.push_back(j.name());
    EXPECT_EQ(j.g, j.mode == ProgramMode::Compiled ? &f.g : &e.g);
    EXPECT_EQ(j.dims.kv_len, 32);
    EXPECT_EQ(j.dims.seqs, 1);
    EXPECT_EQ(j.phase == plan::Phase::kDecode, j.bucket() == 1);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"compiled_decode_1", "compiled_prefill_4", "compiled_prefill_16",
                                             "eager_decode_1", "eager_prefill_4", "eager_prefill_16"}));
  EXPECT_EQ(program_jobs(f.g, nullptr, shapes).size(), 3u);
}

TEST(Lowering, KernelTableKeysBySourceAndEntry) {
  KernelTable t;
  codegen::KernelSource a{"k_a", "src", {}, 1}, a2{"k_a", "src", {}, 1}, b{"k_b", "src", {}, 1}, c{"k_a", "src2", {}, 2};
  EXPECT_EQ(t.add(a), 0u);
  EXPECT_EQ(t.add(a2), 0u);
  EXPECT_EQ(t.add(b), 1u);  // same module source, another entry
  EXPECT_EQ(t.add(c), 2u);
  EXPECT_EQ(t.sources().size(), 3u);
}

struct Lowered {
  FixedSlots slots;
  WeightLayout weights;
  plan::ProgramSpec program;
  KernelTable kernels;
};

void lower_one(const Mini& m, ProgramMode mode, int64_t bucket, const std::string& layout, Lowered& out) {
  static const gguf::File f = mini_gguf();
  const codegen::Target target{90, layout};
  out.weights = layout_weights(f, {{&m.g, mode}}, target);
  out.slots = assign_fixed_slots({&m.g}, 16, 32);
  const ProgramJob job{&m.g, mode, bucket == 1 ? plan::Phase::kDecode : plan::Phase::kPrefill, {bucket, 32, 1}};
  const BufferAssignment buffers(m.g, job.dims, out.slots, out.weights);
  out.program = lower_program(job, target, buffers, out.kernels);
}

bool has_ptr(const plan::LaunchSpec& l, plan::Region r, uint64_t offset) {
  for (const auto& a : l.args)
    if (a.kind == plan::ArgKind::kPtr && a.region == r && a.offset == offset) return true;
  return false;
}

TEST(Lowering, CompiledProgramHasOneLaunchPerNodeWithLabels) {
  const Mini m = fused_graph();
  Lowered L;
  lower_one(m, ProgramMode::Compiled, 1, "ggml", L);
  const auto& p = L.program;
  EXPECT_EQ(p.name, "compiled_decode_1");
  EXPECT_EQ(p.mode, ProgramMode::Compiled);
  EXPECT_EQ(p.phase, plan::Phase::kDecode);
  EXPECT_EQ(p.bucket, 1u);
  std::vector<std::string> labels;
  for (const auto& l : p.launches) labels.push_back(l.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"embed -> x", "matmul -> qkv", "rope_store -> q", "attention -> att",
                                              "last_row -> last", "matmul -> logits", "argmax -> next_token"}));
  for (const auto& l : p.launches) {
    ASSERT_LT(l.kernel, L.kernels.sources().size()) << l.label;
    EXPECT_GE(l.grid[0] * l.grid[1] * l.grid[2], 1u) << l.label;
    EXPECT_FALSE(l.args.empty()) << l.label;
  }
  // rope_store writes both caches in place: its arguments include the state slots.
  const auto& rs = p.launches[2];
  EXPECT_TRUE(has_ptr(rs, plan::Region::kArena, L.slots.states.at("k_cache").offset));
  EXPECT_TRUE(has_ptr(rs, plan::Region::kArena, L.slots.states.at("v_cache").offset));
  // attention reads the caches rope_store wrote (the aliased outputs).
  EXPECT_TRUE(has_ptr(p.launches[3], plan::Region::kArena, L.slots.states.at("k_cache").offset));
  // The qkv matmul reads the fused weight blob.
  EXPECT_TRUE(has_ptr(p.launches[1], plan::Region::kWeights, L.weights.find("wq+wk+wv", "ggml").offset));
  // Logits and sampled token.
  const BufferAssignment again(m.g, {1, 32, 1}, L.slots, L.weights);
  EXPECT_EQ(p.logits_offset, again.value(m.logits).offset);
  EXPECT_EQ(p.token_offset, L.slots.step + offsetof(KilnStep, out_token));
}

TEST(Lowering, PlanesTargetBindsThePlanesBlob) {
  const Mini m = fused_graph();
  Lowered L;
  lower_one(m, ProgramMode::Compiled, 16, "planes", L);
  EXPECT_EQ(L.program.name, "compiled_prefill_16");
  EXPECT_TRUE(has_ptr(L.program.launches[1], plan::Region::kWeights, L.weights.find("wq+wk+wv", "planes").offset));
  Lowered G;
  lower_one(m, ProgramMode::Compiled, 16, "ggml", G);
  EXPECT_NE(L.kernels.sources()[L.program.launches[1].kernel].hash,
            G.kernels.sources()[G.program.launches[1].kernel].hash)
      << "the planes matmul is another kernel";
}

// Eager: one generic kernel per op; kernels of one dtype share a module
// source, and identical nodes share one kernel.
TEST(Lowering, EagerProgramSharesKernels) {
  const Mini m = unfused_graph();
  Lowered L;
  lower_one(m, ProgramMode::Eager, 4, "ggml", L);
  const auto& p = L.program;
  ASSERT_EQ(p.launches.size(), m.g.nodes().size());
  EXPECT_EQ(p.name, "eager_prefill_4");
  EXPECT_EQ(p.launches[1].label, "matmul -> q");
  EXPECT_EQ(p.launches[6].label, "kv_store -> k_cache_out");
  EXPECT_EQ(p.launches[7].label, "kv_store -> v_cache_out");
  // q, k, v matmuls (q4_1): one kernel.
  EXPECT_EQ(p.launches[1].kernel, p.launches[2].kernel);
  EXPECT_EQ(p.launches[1].kernel, p.launches[3].kernel);
  // the two ropes and the two kv_stores: one kernel each.
  EXPECT_EQ(p.launches[4].kernel, p.launches[5].kernel);
  EXPECT_EQ(p.launches[6].kernel, p.launches[7].kernel);
  EXPECT_LT(L.kernels.sources().size(), p.launches.size());
  std::set<uint64_t> modules;
  for (const auto& k : L.kernels.sources()) modules.insert(k.hash);
  EXPECT_LT(modules.size(), L.kernels.sources().size()) << "f32 eager kernels share one module";
  // kv_store's output (in place) is the cache's slot.
  EXPECT_TRUE(has_ptr(p.launches[6], plan::Region::kArena, L.slots.states.at("k_cache").offset));
  EXPECT_TRUE(has_ptr(p.launches[7], plan::Region::kArena, L.slots.states.at("v_cache").offset));
  // The eager q matmul reads the wq tensor (its own blob here: no fused graph).
  EXPECT_TRUE(has_ptr(p.launches[1], plan::Region::kWeights, L.weights.find("wq", "ggml").offset));
}

}  // namespace
}  // namespace kiln::compile
