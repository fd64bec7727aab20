// fuse-qkv-rope-epilogue (the decode pipeline's last pass): golden
// before/after texts, the decode pipeline's order (the fused node carries the
// x_q8 that q8-activations put on the rms_matmul), and the patterns it must
// leave alone (neox, other users of qkv, a bias add, other attributes, two
// weights). The synthetic llama models' decode programs, fused and not, are
// compared in semantic_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "compiler/passes/passes.h"
#include "compiler/passes/pipeline.h"
#include "ir/graph.h"

namespace {

using kiln::passes::Pass;

struct Result {
  bool changed;
  std::string text;
};

Result run_pass(const Pass& p, const std::string& before) {
  kiln::ir::Graph g = kiln::ir::parse(before);
  kiln::ir::verify(g);
  bool changed = p.run(g);
  kiln::ir::verify(g);
  std::string text = kiln::ir::print(g);
  EXPECT_EQ(kiln::ir::print(kiln::ir::parse(text)), text);
  return {changed, text};
}

void expect_unchanged(const std::string& before, const std::string& why) {
  SCOPED_TRACE(why);
  std::string canon = kiln::ir::print(kiln::ir::parse(before));
  Result r = run_pass(kiln::passes::fuse_qkv_rope_epilogue_pass(), before);
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(r.text, canon);
}

std::string with(std::string s, const std::string& from, const std::string& to) {
  auto p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

// A Q4_K_M layer after fuse-qkv-parts and q8-activations: one rms_matmul with
// three weights (q6_k v) on int8 activations, then rope_store.
const std::string kParts = R"(graph {
  sym kv_len <= 8
  sym tokens <= 4
  input %x : f32[tokens, 256]
  input %pos : i32[tokens]
  weight %attn_norm.weight : f32[256] = "blk.1.attn_norm.weight"
  weight %attn_q.weight : q4_k[8, 256] = "blk.1.attn_q.weight"
  weight %attn_k.weight : q4_k[4, 256] = "blk.1.attn_k.weight"
  weight %attn_v.weight : q6_k[4, 256] = "blk.1.attn_v.weight"
  %qkv : f32[tokens, 16] = rms_matmul(%x, %attn_norm.weight, %attn_q.weight, %attn_k.weight, %attn_v.weight) {eps = 1e-05, x_q8 = 1}
  state %k_cache : f16[kv_len, 4]
  state %v_cache : f16[kv_len, 4]
  %q_rope : f32[tokens, 8], %k_cache_out : f16[kv_len, 4], %v_cache_out : f16[kv_len, 4] = rope_store(%qkv, %pos, %k_cache, %v_cache) {head_dim = 4, mode = "normal", n_heads = 2, n_kv_heads = 1, n_rot = 4, theta = 10000.0}
  %attn : f32[tokens, 8] = attention(%q_rope, %k_cache_out, %v_cache_out, %pos) {head_dim = 4, n_heads = 2, n_kv_heads = 1, scale = 0.5}
  output %attn
}
)";

const std::string kPartsFused = R"(graph {
  sym kv_len <= 8
  sym tokens <= 4
  input %x : f32[tokens, 256]
  input %pos : i32[tokens]
  weight %attn_norm.weight : f32[256] = "blk.1.attn_norm.weight"
  weight %attn_q.weight : q4_k[8, 256] = "blk.1.attn_q.weight"
  weight %attn_k.weight : q4_k[4, 256] = "blk.1.attn_k.weight"
  weight %attn_v.weight : q6_k[4, 256] = "blk.1.attn_v.weight"
  state %k_cache : f16[kv_len, 4]
  state %v_cache : f16[kv_len, 4]
  %q_rope : f32[tokens, 8], %k_cache_out : f16[kv_len, 4], %v_cache_out : f16[kv_len, 4] = rms_matmul_rope_store(%x, %pos, %k_cache, %v_cache, %attn_norm.weight, %attn_q.weight, %attn_k.weight, %attn_v.weight) {eps = 1e-05, head_dim = 4, mode = "normal", n_heads = 2, n_kv_heads = 1, n_rot = 4, theta = 10000.0, x_q8 = 1}
  %attn : f32[tokens, 8] = attention(%q_rope, %k_cache_out, %v_cache_out, %pos) {head_dim = 4, n_heads = 2, n_kv_heads = 1, scale = 0.5}
  output %attn
}
)";

TEST(FuseQkvRopeEpilogue, GoldenThreeWeightsOnInt8Activations) {
  Result r = run_pass(kiln::passes::fuse_qkv_rope_epilogue_pass(), kParts);
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.text, kPartsFused);
  // a second run finds nothing more
  EXPECT_FALSE(run_pass(kiln::passes::fuse_qkv_rope_epilogue_pass(), r.text).changed);
}

// One concatenated weight (fuse-qkv-rope-store + fold-rms-norm), f16: no
// int8 activations; the frequency factors move to the end.
TEST(FuseQkvRopeEpilogue, GoldenOneWeightWithFreqFactors) {
  Result r = run_pass(kiln::passes::fuse_qkv_rope_epilogue_pass(), R"(graph {
  sym kv_len <= 8
  sym tokens <= 4
  input %x : f32[tokens, 8]
  input %pos : i32[tokens]
  weight %attn_norm.weight : f32[8] = "blk.0.attn_norm.weight"
  weight %attn_qkv.weight : f16[16, 8] = "blk.0.attn_q.weight+blk.0.attn_k.weight+blk.0.attn_v.weight"
  %qkv : f32[tokens, 16] = rms_matmul(%x, %attn_norm.weight, %attn_qkv.weight) {eps = 1e-06}
  state %k_cache : f32[kv_len, 4]
  state %v_cache : f32[kv_len, 4]
  weight %rope_freqs.weight : f32[2] = "rope_freqs.weight"
  %q_rope : f32[tokens, 8], %k_cache_out : f32[kv_len, 4], %v_cache_out : f32[kv_len, 4] = rope_store(%qkv, %pos, %k_cache, %v_cache, %rope_freqs.weight) {head_dim = 4, mode = "normal", n_heads = 2, n_kv_heads = 1, n_rot = 4, theta = 500000.0}
  output %q_rope
  output %k_cache_out
}
)");
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.text, R"(graph {
  sym kv_len <= 8
  sym tokens <= 4
  input %x : f32[tokens, 8]
  input %pos : i32[tokens]
  weight %attn_norm.weight : f32[8] = "blk.0.attn_norm.weight"
  weight %attn_qkv.weight : f16[16, 8] = "blk.0.attn_q.weight+blk.0.attn_k.weight+blk.0.attn_v.weight"
  state %k_cache : f32[kv_len, 4]
  state %v_cache : f32[kv_len, 4]
  weight %rope_freqs.weight : f32[2] = "rope_freqs.weight"
  %q_rope : f32[tokens, 8], %k_cache_out : f32[kv_len, 4], %v_cache_out : f32[kv_len, 4] = rms_matmul_rope_store(%x, %pos, %k_cache, %v_cache, %attn_norm.weight, %attn_qkv.weight, %rope_freqs.weight) {eps = 1e-06, head_dim = 4, mode = "normal", n_heads = 2, n_kv_heads = 1, n_rot = 4, theta = 500000.0}
  output %q_rope
  output %k_cache_out
}
)");
}

// The decode pipeline runs it last: fuse-qkv-parts, q8-activations (which
// marks the rms_matmul), then this pass (which carries the mark over).
TEST(FuseQkvRopeEpilogue, AfterTheQkvPassesInTheDecodePipeline) {
  std::vector<std::string> names;
  for (const auto& p : kiln::passes::decode_pipeline()) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"fuse-qkv-parts", "q8-activations", "fuse-qkv-rope-epilogue",
                                             "defer-attention-merge"}));
  // kParts before fuse-qkv-parts and q8-activations: three rms_matmuls, two ropes, two stores.
  const std::string unfused = R"(graph {
  sym kv_len <= 8
  sym tokens <= 4
  input %x : f32[tokens, 256]
  input %pos : i32[tokens]
  weight %attn_norm.weight : f32[256] = "blk.1.attn_norm.weight"
  weight %attn_q.weight : q4_k[8, 256] = "blk.1.attn_q.weight"
  %q : f32[tokens, 8] = rms_matmul(%x, %attn_norm.weight, %attn_q.weight) {eps = 1e-05}
  weight %attn_k.weight : q4_k[4, 256] = "blk.1.attn_k.weight"
  %k : f32[tokens, 4] = rms_matmul(%x, %attn_norm.weight, %attn_k.weight) {eps = 1e-05}
  weight %attn_v.weight : q6_k[4, 256] = "blk.1.attn_v.weight"
  %v : f32[tokens, 4] = rms_matmul(%x, %attn_norm.weight, %attn_v.weight) {eps = 1e-05}
  %q_rope : f32[tokens, 8] = rope(%q, %pos) {head_dim = 4, mode = "normal", n_heads = 2, n_rot = 4, theta = 10000.0}
  %k_rope : f32[tokens, 4] = rope(%k, %pos) {head_dim = 4, mode = "normal", n_heads = 1, n_rot = 4, theta = 10000.0}
  state %k_cache : f16[kv_len, 4]
  %k_cache_out : f16[kv_len, 4] = kv_store(%k_cache, %k_rope, %pos)
  state %v_cache : f16[kv_len, 4]
  %v_cache_out : f16[kv_len, 4] = kv_store(%v_cache, %v, %pos)
  %attn : f32[tokens, 8] = attention(%q_rope, %k_cache_out, %v_cache_out, %pos) {head_dim = 4, n_heads = 2, n_kv_heads = 1, scale = 0.5}
  output %attn
}
)";
  const kiln::ir::Graph d =
      kiln::passes::run_pipeline(kiln::ir::parse(unfused), kiln::passes::decode_pipeline(), {});
  EXPECT_EQ(kiln::ir::print(d), kPartsFused);
  // --disable-pass fuse-qkv-rope-epilogue keeps rms_matmul + rope_store
  kiln::passes::PipelineOptions off;
  off.disable = {"fuse-qkv-rope-epilogue"};
  const kiln::ir::Graph p = kiln::passes::run_pipeline(kiln::ir::parse(unfused), kiln::passes::decode_pipeline(), off);
  EXPECT_EQ(kiln::ir::print(p), kiln::ir::print(kiln::ir::parse(kParts)));
}

TEST(FuseQkvRopeEpilogue, NoMatch) {
  // neox pairs column i with i + n_rot/2: not in one GEMV column group
  expect_unchanged(with(kParts, "mode = \"normal\"", "mode = \"neox\""), "neox");
  // qkv has another user, or is a graph output
  expect_unchanged(with(kParts, "  output %attn\n", "  output %attn\n  output %qkv\n"), "qkv is a graph output");
  expect_unchanged(with(kParts, "  output %attn\n",
                        "  %qkv2 : f32[tokens, 16] = mul(%qkv, %qkv)\n  output %attn\n  output %qkv2\n"),
                   "qkv has a second consumer");
  // a bias between the projection and rope_store (Qwen2's qkv + bqkv)
  expect_unchanged(with(with(kParts, "  state %k_cache : f16[kv_len, 4]\n",
                             "  weight %attn_qkv.bias : f32[16] = \"b\"\n"
                             "  %qkv_bias : f32[tokens, 16] = add(%qkv, %attn_qkv.bias)\n"
                             "  state %k_cache : f16[kv_len, 4]\n"),
                        "rope_store(%qkv,", "rope_store(%qkv_bias,"),
                   "a bias add");
  // attributes the fused op does not have
  expect_unchanged(with(kParts, "{eps = 1e-05, x_q8 = 1}", "{eps = 1e-05, tag = 1, x_q8 = 1}"),
                   "an unknown rms_matmul attribute");
  expect_unchanged(with(kParts, "theta = 10000.0}", "tag = 1, theta = 10000.0}"), "an unknown rope_store attribute");
  // two weights (the op takes one or three)
  expect_unchanged(with(with(kParts, "%attn_q.weight, %attn_k.weight, %attn_v.weight", "%attn_qk.weight, %attn_v.weight"),
                        "  weight %attn_q.weight : q4_k[8, 256] = \"blk.1.attn_q.weight\"\n"
                        "  weight %attn_k.weight : q4_k[4, 256] = \"blk.1.attn_k.weight\"\n",
                        "  weight %attn_qk.weight : q4_k[12, 256] = \"blk.1.attn_q.weight+blk.1.attn_k.weight\"\n"),
                   "two weights");
  // qkv made by a plain matmul (no rms prologue)
  expect_unchanged(with(with(kParts, "rms_matmul(%x, %attn_norm.weight, %attn_q.weight, %attn_k.weight, %attn_v.weight) "
                                     "{eps = 1e-05, x_q8 = 1}",
                             "matmul(%x, %attn_qk.weight) {x_q8 = 1}"),
                        "  weight %attn_q.weight : q4_k[8, 256] = \"blk.1.attn_q.weight\"\n",
                        "  weight %attn_qk.weight : q4_k[16, 256] = \"qkv\"\n"),
                   "a matmul");
  // positive control: the unmodified block does fuse
  EXPECT_TRUE(run_pass(kiln::passes::fuse_qkv_rope_epilogue_pass(), kParts).changed);
}

}  // namespace
