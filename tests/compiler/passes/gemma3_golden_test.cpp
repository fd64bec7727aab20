// Golden before/after texts of the default pipeline's passes on Gemma 3's
// blocks: the attention input (pre-norm, q/k/v projections, per-head q/k
// norms, rope, ring KV stores, windowed attention) and the GeGLU feed-forward.
// Written from the pass specifications: fold-rms-norm folds the pre-norm into
// the projections but never a per-head norm; fuse-qkv-rope-store (and
// fuse-qkv-parts) take the per-head q/k norms and the ring stores into
// rope_store (attrs qk_norm_eps, ring), computing what they replace bit for
// bit in the interpreter; fuse-gate-up-swiglu
// fuses GeGLU into rms_matmul_swiglu with act "gelu_tanh" (and tensor-core-gemm
// splits it back into GEMMs and geglu); split-decode-attention gives no scratch
// to a windowed attention (the split kernel has no window).
#include <gtest/gtest.h>

#include <string>

#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "compiler/passes/passes.h"
#include "compiler/passes/pipeline.h"
#include "ir/graph.h"
#include "ir/interpreter.h"

namespace {

using kiln::passes::Pass;

std::string canon(const std::string& s) { return kiln::ir::print(kiln::ir::parse(s)); }

std::string run_pass(const Pass& p, const std::string& before, bool* changed) {
  kiln::ir::Graph g = kiln::ir::parse(before);
  kiln::ir::verify(g);
  *changed = p.run(g);
  kiln::ir::verify(g);
  return kiln::ir::print(g);
}

void expect_unchanged(const Pass& p, const std::string& before) {
  bool changed = true;
  EXPECT_EQ(run_pass(p, before, &changed), canon(before)) << p.name;
  EXPECT_FALSE(changed) << p.name;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

// One local (sliding-window) layer's attention input, window 4, ring of 4 + 4 - 1 rows.
const std::string kAttnBefore = R"(graph {
  sym kv_len <= 16
  sym tokens <= 4
  input %x : f32[tokens, 8]
  input %pos : i32[tokens]
  weight %attn_norm.weight : f32[8] = "blk.0.attn_norm.weight"
  %h : f32[tokens, 8] = rms_norm(%x, %attn_norm.weight) {eps = 0.5}
  weight %attn_q.weight : f16[8, 8] = "blk.0.attn_q.weight"
  %q : f32[tokens, 8] = matmul(%h, %attn_q.weight)
  weight %attn_k.weight : f16[4, 8] = "blk.0.attn_k.weight"
  %k : f32[tokens, 4] = matmul(%h, %attn_k.weight)
  weight %attn_v.weight : f16[4, 8] = "blk.0.attn_v.weight"
  %v : f32[tokens, 4] = matmul(%h, %attn_v.weight)
  weight %attn_q_norm.weight : f32[4] = "blk.0.attn_q_norm.weight"
  %q_norm : f32[tokens, 8] = rms_norm(%q, %attn_q_norm.weight) {eps = 0.5, head_dim = 4}
  weight %attn_k_norm.weight : f32[4] = "blk.0.attn_k_norm.weight"
  %k_norm : f32[tokens, 4] = rms_norm(%k, %attn_k_norm.weight) {eps = 0.5, head_dim = 4}
  %q_rope : f32[tokens, 8] = rope(%q_norm, %pos) {head_dim = 4, mode = "neox", n_heads = 2, n_rot = 4, theta = 10000.0}
  %k_rope : f32[tokens, 4] = rope(%k_norm, %pos) {head_dim = 4, mode = "neox", n_heads = 1, n_rot = 4, theta = 10000.0}
  state %k_cache : f16[7, 4]
  %k_cache_out : f16[7, 4] = kv_store(%k_cache, %k_rope, %pos) {ring = 1}
  state %v_cache : f16[7, 4]
  %v_cache_out : f16[7, 4] = kv_store(%v_cache, %v, %pos) {ring = 1}
  %attn : f32[tokens, 8] = attention(%q_rope, %k_cache_out, %v_cache_out, %pos) {head_dim = 4, n_heads = 2, n_kv_heads = 1, scale = 0.5, window = 4}
  output %attn
}
)";

TEST(Gemma3Passes, FoldRmsNormFoldsThePreNormNotTheHeadNorms) {
  bool changed = false;
  const std::string after = run_pass(kiln::passes::fold_rms_norm_pass(), kAttnBefore, &changed);
  EXPECT_TRUE(changed);
  EXPECT_EQ(after, R"(graph {
  sym kv_len <= 16
  sym tokens <= 4
  input %x : f32[tokens, 8]
  input %pos : i32[tokens]
  weight %attn_norm.weight : f32[8] = "blk.0.attn_norm.weight"
  weight %attn_q.weight : f16[8, 8] = "blk.0.attn_q.weight"
  %q : f32[tokens, 8] = rms_matmul(%x, %attn_norm.weight, %attn_q.weight) {eps = 0.5}
  weight %attn_k.weight : f16[4, 8] = "blk.0.attn_k.weight"
  %k : f32[tokens, 4] = rms_matmul(%x, %attn_norm.weight, %attn_k.weight) {eps = 0.5}
  weight %attn_v.weight : f16[4, 8] = "blk.0.attn_v.weight"
  %v : f32[tokens, 4] = rms_matmul(%x, %attn_norm.weight, %attn_v.weight) {eps = 0.5}
  weight %attn_q_norm.weight : f32[4] = "blk.0.attn_q_norm.weight"
  %q_norm : f32[tokens, 8] = rms_norm(%q, %attn_q_norm.weight) {eps = 0.5, head_dim = 4}
  weight %attn_k_norm.weight : f32[4] = "blk.0.attn_k_norm.weight"
  %k_norm : f32[tokens, 4] = rms_norm(%k, %attn_k_norm.weight) {eps = 0.5, head_dim = 4}
  %q_rope : f32[tokens, 8] = rope(%q_norm, %pos) {head_dim = 4, mode = "neox", n_heads = 2, n_rot = 4, theta = 10000.0}
  %k_rope : f32[tokens, 4] = rope(%k_norm, %pos) {head_dim = 4, mode = "neox", n_heads = 1, n_rot = 4, theta = 10000.0}
  state %k_cache : f16[7, 4]
  %k_cache_out : f16[7, 4] = kv_store(%k_cache, %k_rope, %pos) {ring = 1}
  state %v_cache : f16[7, 4]
  %v_cache_out : f16[7, 4] = kv_store(%v_cache, %v, %pos) {ring = 1}
  %attn : f32[tokens, 8] = attention(%q_rope, %k_cache_out, %v_cache_out, %pos) {head_dim = 4, n_heads = 2, n_kv_heads = 1, scale = 0.5, window = 4}
  output %attn
}
)");
  // A per-head norm read only by a matmul is not folded either: rms_matmul normalises whole rows.
  expect_unchanged(kiln::passes::fold_rms_norm_pass(), R"(graph {
  sym tokens <= 4
  input %q : f32[tokens, 8]
  weight %n.weight : f32[4] = "n.weight"
  %qn : f32[tokens, 8] = rms_norm(%q, %n.weight) {eps = 0.5, head_dim = 4}
  weight %w : f16[8, 8] = "w"
  %y : f32[tokens, 8] = matmul(%qn, %w)
  output %y
}
)");
}

size_t count_op(const kiln::ir::Graph& g, kiln::ir::OpKind op) {
  size_t c = 0;
  for (const auto& n : g.nodes()) c += n.op == op;
  return c;
}

TEST(Gemma3Passes, QkvRopeStoreTakesTheHeadNormsAndRingStores) {
  using kiln::ir::OpKind;
  bool changed = false;
  const kiln::ir::Graph g = kiln::ir::parse(run_pass(kiln::passes::fuse_qkv_rope_store_pass(), kAttnBefore, &changed));
  ASSERT_TRUE(changed);
  EXPECT_EQ(count_op(g, OpKind::RopeStore), 1u);
  EXPECT_EQ(count_op(g, OpKind::Rope) + count_op(g, OpKind::KvStore), 0u);
  EXPECT_EQ(count_op(g, OpKind::RmsNorm), 1u) << "only the pre-norm stays";
  for (const auto& n : g.nodes())
    if (n.op == OpKind::RopeStore) {
      EXPECT_EQ(n.attr_float("qk_norm_eps"), 0.5);
      EXPECT_EQ(n.attr_int("ring"), 1);
      ASSERT_EQ(n.inputs.size(), 6u) << "qkv, pos, kc, vc, gq, gk";
      EXPECT_EQ(g.value(n.inputs[4]).name, "attn_q_norm.weight");
      EXPECT_EQ(g.value(n.inputs[5]).name, "attn_k_norm.weight");
    }
  // Not fused: a norm on q only, stores that disagree on the ring, norms of different eps.
  const std::string k_plain = replace_all(kAttnBefore, "rope(%k_norm, %pos)", "rope(%k, %pos)");
  expect_unchanged(kiln::passes::fuse_qkv_rope_store_pass(),
                   replace_all(k_plain, "  weight %attn_k_norm.weight : f32[4] = \"blk.0.attn_k_norm.weight\"\n"
                                        "  %k_norm : f32[tokens, 4] = rms_norm(%k, %attn_k_norm.weight) {eps = 0.5, head_dim = 4}\n",
                               ""));
  expect_unchanged(kiln::passes::fuse_qkv_rope_store_pass(),
                   replace_all(kAttnBefore, "kv_store(%v_cache, %v, %pos) {ring = 1}", "kv_store(%v_cache, %v, %pos)"));
  expect_unchanged(kiln::passes::fuse_qkv_rope_store_pass(),
                   replace_all(kAttnBefore, "rms_norm(%k, %attn_k_norm.weight) {eps = 0.5,",
                               "rms_norm(%k, %attn_k_norm.weight) {eps = 0.25,"));
}

// The decode program's form (fold-rms-norm, then fuse-qkv-parts: three
// weights, no concatenation) computes what the unfused block computes, bit
// for bit in the interpreter, over 12 single-token steps after a 3-token
// prompt: positions 3..14 wrap the 7-row ring twice.
TEST(Gemma3Passes, FusedHeadNormsAndRingComputeTheSame) {
  std::string f32 = replace_all(kAttnBefore, "f16[8, 8]", "f32[8, 8]");
  f32 = replace_all(f32, ": f16[4, 8]", ": f32[4, 8]");
  bool changed = false;
  const kiln::ir::Graph unfused = kiln::ir::parse(run_pass(kiln::passes::fold_rms_norm_pass(), f32, &changed));
  ASSERT_TRUE(changed);
  const kiln::ir::Graph fused = kiln::ir::parse(run_pass(kiln::passes::fuse_qkv_parts_pass(), kiln::ir::print(unfused), &changed));
  ASSERT_TRUE(changed);
  ASSERT_EQ(count_op(fused, kiln::ir::OpKind::RopeStore), 1u);
  ASSERT_EQ(count_op(fused, kiln::ir::OpKind::RmsNorm), 0u);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::map<std::string, std::vector<float>> w;
  for (const auto& v : unfused.values())
    if (v.kind == kiln::ir::ValueKind::Weight) {
      std::vector<float>& d = w[v.source];
      d.resize(static_cast<size_t>(v.shape[0].value * (v.shape.size() > 1 ? v.shape[1].value : 1)));
      for (float& x : d) x = v.shape.size() == 1 ? 1.f + 0.3f * nd(rng) : nd(rng);
    }
  auto ws = [&](const std::string& src) {
    const std::vector<float>& d = w.at(src);
    const int64_t n = static_cast<int64_t>(d.size());
    std::vector<int64_t> shape = (src.find("norm") != std::string::npos) ? std::vector<int64_t>{n}
                                                                         : std::vector<int64_t>{n / 8, 8};
    return kiln::ir::WeightData{kiln::ir::DType::F32, shape, reinterpret_cast<const uint8_t*>(d.data()),
                                static_cast<uint64_t>(n * 4)};
  };
  kiln::ir::Interpreter a(unfused, ws), b(fused, ws);
  int32_t pos = 0;
  for (int step = 0; step < 13; ++step) {
    const int T = step == 0 ? 3 : 1;
    std::vector<float> x(static_cast<size_t>(T * 8));
    for (float& v : x) v = nd(rng);
    std::vector<int32_t> p;
    for (int t = 0; t < T; ++t) p.push_back(pos++);
    kiln::ir::Tensor xt = kiln::ir::Tensor::zeros_f32({T, 8});
    xt.f32 = x;
    std::map<std::string, kiln::ir::Tensor> in{{"x", xt}, {"pos", kiln::ir::Tensor::from_i32(p)}};
    auto ra = a.run(in), rb = b.run(in);
    const auto &oa = ra.at("attn").f32, &ob = rb.at("attn").f32;
    ASSERT_EQ(oa.size(), ob.size());
    double mag = 0;
    for (size_t i = 0; i < oa.size(); ++i) {
      EXPECT_EQ(oa[i], ob[i]) << "step " << step << " element " << i;
      mag += std::fabs(oa[i]);
    }
    EXPECT_GT(mag, 0.0) << "step " << step << ": compared zeros";
  }
}

TEST(Gemma3Passes, SplitDecodeAttentionTakesWindowedAttention) {
  // head_dim 8 (a split-kernel geometry); a ring of 8 + 4 - 1 rows. The split
  // kernel reads a sliding-window layer's window from its ring (codegen
  // attention_split), so windowed and global attention both get the scratch.
  const std::string windowed = R"(graph {
  sym kv_len <= 16
  sym tokens <= 4
  input %q : f32[tokens, 16]
  input %pos : i32[tokens]
  state %kc : f16[11, 8]
  state %vc : f16[11, 8]
  %a0 : f32[tokens, 16] = attention(%q, %kc, %vc, %pos) {head_dim = 8, n_heads = 2, n_kv_heads = 1, scale = 0.5, window = 8}
  output %a0
}
)";
  const std::string global =
      replace_all(replace_all(windowed, ", window = 8}", "}"), "f16[11, 8]", "f16[kv_len, 8]");
  for (const std::string& src : {windowed, global}) {
    bool changed = false;
    const std::string after = run_pass(kiln::passes::split_decode_attention_pass(), src, &changed);
    EXPECT_TRUE(changed) << src;
    EXPECT_NE(after.find("attention(%q, %kc, %vc, %pos, %attn_split_scratch)"), std::string::npos) << after;
  }
}

const std::string kFfnBefore = R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 8]
  weight %ffn_norm.weight : f32[8] = "blk.0.ffn_norm.weight"
  %h : f32[tokens, 8] = rms_norm(%x, %ffn_norm.weight) {eps = 0.5}
  weight %ffn_gate.weight : q8_0[32, 8] = "blk.0.ffn_gate.weight"
  %gate : f32[tokens, 32] = matmul(%h, %ffn_gate.weight)
  weight %ffn_up.weight : q8_0[32, 8] = "blk.0.ffn_up.weight"
  %up : f32[tokens, 32] = matmul(%h, %ffn_up.weight)
  %act : f32[tokens, 32] = geglu(%gate, %up)
  weight %ffn_down.weight : q8_0[8, 32] = "blk.0.ffn_down.weight"
  %down : f32[tokens, 8] = matmul(%act, %ffn_down.weight)
  weight %post_ffw_norm.weight : f32[8] = "blk.0.post_ffw_norm.weight"
  %post : f32[tokens, 8] = rms_norm(%down, %post_ffw_norm.weight) {eps = 0.5}
  %y : f32[tokens, 8] = add(%x, %post)
  output %y
}
)";

TEST(Gemma3Passes, GeGluFeedForwardThroughTheDefaultPipeline) {
  // fuse-gate-up-swiglu fuses the GeGLU block as it does SwiGLU, with act
  // "gelu_tanh"; fuse-residual has no matmul feeding the add (the post-FFN norm
  // sits between); fuse-norm-residual gives that norm the residual add.
  expect_unchanged(kiln::passes::fuse_residual_pass(), kFfnBefore);
  const kiln::ir::Graph g =
      kiln::passes::run_pipeline(kiln::ir::parse(kFfnBefore), kiln::passes::default_pipeline(), {});
  EXPECT_EQ(kiln::ir::print(g), R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 8]
  weight %ffn_norm.weight : f32[8] = "blk.0.ffn_norm.weight"
  weight %ffn_gate_up.weight : q8_0[64, 8] = "blk.0.ffn_gate.weight+blk.0.ffn_up.weight"
  %act : f32[tokens, 32] = rms_matmul_swiglu(%x, %ffn_norm.weight, %ffn_gate_up.weight) {act = "gelu_tanh", eps = 0.5}
  weight %ffn_down.weight : q8_0[8, 32] = "blk.0.ffn_down.weight"
  %down : f32[tokens, 8] = matmul(%act, %ffn_down.weight)
  weight %post_ffw_norm.weight : f32[8] = "blk.0.post_ffw_norm.weight"
  %y : f32[tokens, 8] = rms_norm(%down, %post_ffw_norm.weight, %x) {eps = 0.5, residual = 1}
  output %y
}
)");
}

TEST(Gemma3Passes, TensorCoreGemmSplitsTheGeGluMatmulBackIntoGemmsAndGeGlu) {
  const kiln::ir::Graph fused =
      kiln::passes::run_pipeline(kiln::ir::parse(kFfnBefore), kiln::passes::default_pipeline(), {});
  kiln::ir::Graph g = fused;
  ASSERT_TRUE(kiln::passes::tensor_core_gemm_pass().run(g));
  kiln::ir::verify(g);
  int geglu = 0, swiglu = 0;
  for (const auto& n : g.nodes()) {
    geglu += n.op == kiln::ir::OpKind::GeGlu;
    swiglu += n.op == kiln::ir::OpKind::SwiGlu || n.op == kiln::ir::OpKind::RmsMatMulSwiGlu;
  }
  EXPECT_EQ(geglu, 1);
  EXPECT_EQ(swiglu, 0);
}

}  // namespace

namespace {

// fuse-norm-residual takes only a whole-row norm whose one user is the add.
TEST(Gemma3Passes, NormResidualNeedsAWholeRowNormReadOnlyByTheAdd) {
  const std::string base = R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 8]
  input %r : f32[tokens, 8]
  weight %n.weight : f32[8] = "n.weight"
  %n : f32[tokens, 8] = rms_norm(%x, %n.weight) {eps = 0.5}
  %y : f32[tokens, 8] = add(%r, %n)
  output %y
}
)";
  bool changed = false;
  const std::string fused = run_pass(kiln::passes::fuse_norm_residual_pass(), base, &changed);
  EXPECT_TRUE(changed);
  EXPECT_NE(fused.find("rms_norm(%x, %n.weight, %r) {eps = 0.5, residual = 1}"), std::string::npos) << fused;
  // the norm read twice, a per-head norm, a broadcast [8] addend: unchanged
  expect_unchanged(kiln::passes::fuse_norm_residual_pass(),
                   replace_all(base, "  output %y\n", "  output %y\n  output %n\n"));
  expect_unchanged(kiln::passes::fuse_norm_residual_pass(),
                   replace_all(replace_all(base, "f32[8] = \"n.weight\"", "f32[4] = \"n.weight\""), "{eps = 0.5}",
                               "{eps = 0.5, head_dim = 4}"));
  expect_unchanged(kiln::passes::fuse_norm_residual_pass(),
                   replace_all(replace_all(base, "input %r : f32[tokens, 8]", "weight %r : f32[8] = \"r\""),
                               "add(%r, %n)", "add(%n, %r)"));
}

}  // namespace
