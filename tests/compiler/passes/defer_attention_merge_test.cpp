// defer-attention-merge (the decode pipeline): the split attention's merge
// handed to the GEMV that reads its output. The pass rewrites attributes
// and one input only; the verifier holds the contract between the two nodes,
// and the interpreter computes the same values with and without it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "codegen/codegen.h"
#include "compiler/passes/passes.h"
#include "compiler/passes/pipeline.h"
#include "ir/dequant.h"
#include "ir/error.h"
#include "ir/graph.h"
#include "ir/interpreter.h"
#include "ir/quantize.h"

namespace {
using namespace kiln::ir;

// One decode layer's attention and o projection after the default pipeline
// and q8-activations: the cache written by kv_store, split attention (the
// scratch), and the o projection with the residual add on int8 activations.
const std::string kLayer = R"(graph {
  sym kv_len <= 8
  sym tokens <= 4
  input %q : f32[tokens, 64]
  input %k : f32[tokens, 32]
  input %v : f32[tokens, 32]
  input %pos : i32[tokens]
  input %r : f32[tokens, 16]
  weight %wo : q4_0[16, 64] = "wo"
  state %kc : f16[kv_len, 32]
  state %vc : f16[kv_len, 32]
  state %attn_split_scratch : f32[1064]
  %kc2 : f16[kv_len, 32] = kv_store(%kc, %k, %pos)
  %vc2 : f16[kv_len, 32] = kv_store(%vc, %v, %pos)
  %a : f32[tokens, 64], %a_scratch : f32[1064] = attention(%q, %kc2, %vc2, %pos, %attn_split_scratch) {head_dim = 32, n_heads = 2, n_kv_heads = 1, scale = 0.5}
  %o : f32[tokens, 16] = matmul_add(%a, %wo, %r) {x_q8 = 1}
  output %o
}
)";

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const size_t p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

const Node& op(const Graph& g, OpKind k) {
  for (const Node& n : g.nodes())
    if (n.op == k) return n;
  ADD_FAILURE() << "no such op";
  return g.nodes().front();
}

TEST(DeferAttentionMerge, MarksTheAttentionAndItsGemv) {
  Graph g = parse(kLayer);
  verify(g);
  ASSERT_TRUE(kiln::passes::defer_attention_merge_pass().run(g));
  verify(g);
  const Node& a = op(g, OpKind::Attention);
  const Node& m = op(g, OpKind::MatMulAdd);
  EXPECT_EQ(a.attr_int("defer_merge"), 1);
  EXPECT_EQ(m.attr_int("x_merge"), 1);
  ASSERT_EQ(m.inputs.size(), 4u);
  EXPECT_EQ(m.inputs[3], a.outputs[1]) << "the GEMV's last input is the attention's scratch'";
  EXPECT_EQ(m.inputs[0], a.outputs[0]);
  EXPECT_EQ(print(parse(print(g))), print(g)) << "the text form round-trips";
  EXPECT_FALSE(kiln::passes::defer_attention_merge_pass().run(g)) << "a second run changed the graph";
  // the decode pipeline runs it last
  const auto d = kiln::passes::decode_pipeline();
  ASSERT_FALSE(d.empty());
  EXPECT_EQ(d.back().name, "defer-attention-merge");
}

TEST(DeferAttentionMerge, F32ActivationsToo) {  // (f16 / bf16 weights: the f32 GEMVs merge too)
  std::string s = replaced(kLayer, "weight %wo : q4_0[16, 64]", "weight %wo : f16[16, 64]");
  Graph g = parse(replaced(s, " {x_q8 = 1}", ""));
  ASSERT_TRUE(kiln::passes::defer_attention_merge_pass().run(g));
  verify(g);
  EXPECT_EQ(op(g, OpKind::MatMulAdd).attr_int("x_merge"), 1);
}

TEST(DeferAttentionMerge, PlainMatmulToo) {
  std::string s = replaced(kLayer, "%o : f32[tokens, 16] = matmul_add(%a, %wo, %r) {x_q8 = 1}",
                           "%o : f32[tokens, 16] = matmul(%a, %wo) {x_q8 = 1}");
  s = replaced(s, "  input %r : f32[tokens, 16]\n", "");
  Graph g = parse(s);
  ASSERT_TRUE(kiln::passes::defer_attention_merge_pass().run(g));
  verify(g);
  EXPECT_EQ(op(g, OpKind::MatMul).inputs.size(), 3u);
}

TEST(DeferAttentionMerge, WindowedAttentionDefers) {  // (a sliding-window layer's ring of 4 + 4 - 1 rows)
  std::string s = replaced(kLayer, "scale = 0.5}", "scale = 0.5, window = 4}");
  s = replaced(replaced(replaced(s, "state %kc : f16[kv_len, 32]", "state %kc : f16[7, 32]"),
                        "state %vc : f16[kv_len, 32]", "state %vc : f16[7, 32]"),
               "%kc2 : f16[kv_len, 32] = kv_store(%kc, %k, %pos)", "%kc2 : f16[7, 32] = kv_store(%kc, %k, %pos) {ring = 1}");
  s = replaced(s, "%vc2 : f16[kv_len, 32] = kv_store(%vc, %v, %pos)", "%vc2 : f16[7, 32] = kv_store(%vc, %v, %pos) {ring = 1}");
  Graph g = parse(s);
  verify(g);
  ASSERT_TRUE(kiln::passes::defer_attention_merge_pass().run(g));
  verify(g);
  EXPECT_EQ(op(g, OpKind::Attention).attr_int("defer_merge"), 1);
  EXPECT_EQ(op(g, OpKind::MatMulAdd).attr_int("x_merge"), 1);
}

TEST(DeferAttentionMerge, LeavesWhatItCannotDefer) {
  auto unchanged = [](const std::string& s, const char* why) {
    Graph g = parse(s);
    verify(g);
    const std::string before = print(g);
    EXPECT_FALSE(kiln::passes::defer_attention_merge_pass().run(g)) << why;
    EXPECT_EQ(print(g), before) << why;
  };
  // a consumer that is not a matmul has no merge
  unchanged(replaced(replaced(kLayer, "%o : f32[tokens, 16] = matmul_add(%a, %wo, %r) {x_q8 = 1}",
                              "%o : f32[tokens, 64] = add(%a, %q)"),
                     "  weight %wo : q4_0[16, 64] = \"wo\"\n", ""),
            "not a matmul");
  // a second consumer of the attention output would read unmerged memory
  unchanged(replaced(kLayer, "  output %o\n", "  output %o\n  output %a\n"), "y is a graph output");
  // no split scratch: the attention always writes y itself
  std::string ns = replaced(kLayer, ", %a_scratch : f32[1064] = attention(%q, %kc2, %vc2, %pos, %attn_split_scratch)",
                            " = attention(%q, %kc2, %vc2, %pos)");
  unchanged(replaced(ns, "  state %attn_split_scratch : f32[1064]\n", ""), "no scratch");
  // (sliding-window layers defer as well: their split kernel reads the
  // window from the ring, and the GEMV counts the window's splits alike;
  // DeferAttentionMerge.WindowedAttentionDefers)
}

// How many splits a node may defer, by the width of x (n_heads * head_dim):
// SmolLM2's 576 all 16, Llama-3.2 1B's 2048 ten, the 8B's 4096 none (its
// GEMV blocks would load too much; measured slower, docs/perf.md).
TEST(DeferAttentionMerge, LimitFallsWithTheWidthOfX) {
  EXPECT_EQ(kiln::codegen::attention_defer_splits(9, 64), 16);
  EXPECT_EQ(kiln::codegen::attention_defer_splits(32, 64), 10);
  EXPECT_EQ(kiln::codegen::attention_defer_splits(32, 128), 0);
}

TEST(DeferAttentionMerge, VerifierHoldsTheContract) {
  Graph ok = parse(kLayer);
  ASSERT_TRUE(kiln::passes::defer_attention_merge_pass().run(ok));
  const std::string text = print(ok);
  EXPECT_NO_THROW(verify(parse(text)));
  // each broken graph is refused by the rule it breaks (the message names it)
  auto rejected = [](const std::string& s, const std::string& rule) {
    try {
      verify(parse(s));
      ADD_FAILURE() << "verifier accepted a graph that breaks: " << rule;
    } catch (const kiln::Error& e) {
      EXPECT_NE(std::string(e.what()).find(rule), std::string::npos)
          << "message '" << e.what() << "' should mention '" << rule << "'";
    }
  };
  // x_merge without the extra input, and the extra input without x_merge
  rejected(replaced(text, "%wo, %r, %a_scratch)", "%wo, %r)"), "x_merge = 1 exactly when");
  // (with the attention deferring, its rule speaks first: its one reader does not merge)
  rejected(replaced(text, "x_merge = 1", "x_merge = 0"), "the output's one reader");
  const std::string own = replaced(text, "defer_merge = 1", "defer_merge = 0");
  rejected(replaced(own, "x_merge = 1", "x_merge = 0"), "x_merge = 1 exactly when");
  rejected(replaced(own, "x_merge = 1", "x_merge = 2"), "x_merge is 0 or 1");
  // the attention must defer
  rejected(replaced(text, "defer_merge = 1", "defer_merge = 0"), "has defer_merge = 1");
  // the extra input must be that attention's scratch'
  rejected(replaced(text, "%wo, %r, %a_scratch)", "%wo, %r, %attn_split_scratch)"), "an attention's scratch' output");
  // a deferring attention's output has one reader, the merging GEMV
  rejected(replaced(text, "  output %o\n", "  output %o\n  output %a\n"), "the output's one reader");
}

// The interpreter ignores the extra input: same output bits with and without
// the pass, over a few steps that fill the cache.
TEST(DeferAttentionMerge, InterpreterValuesUnchanged) {
  Graph plain = parse(kLayer);
  Graph deferred = plain;
  ASSERT_TRUE(kiln::passes::defer_attention_merge_pass().run(deferred));
  std::vector<uint8_t> wb;
  random_blocks(DType::Q4_0, 16 * 64, 5, wb);
  auto weights = [&](const std::string&) { return WeightData{DType::Q4_0, {16, 64}, wb.data(), wb.size()}; };
  Interpreter a(plain, weights), b(deferred, weights);
  SplitMix64 rng(9);
  for (int step = 0; step < 4; ++step) {
    Tensor q = Tensor::zeros_f32({1, 64}), k = Tensor::zeros_f32({1, 32}), v = Tensor::zeros_f32({1, 32}),
           r = Tensor::zeros_f32({1, 16});
    for (Tensor* t : {&q, &k, &v, &r})
      for (float& x : t->f32) x = 2.0f * rng.uniform() - 1.0f;
    const Tensor pos = Tensor::from_i32({step});
    const std::map<std::string, Tensor> in = {{"q", q}, {"k", k}, {"v", v}, {"pos", pos}, {"r", r}};
    const auto ya = a.run(in), yb = b.run(in);
    const std::vector<float>& oa = ya.at("o").f32;
    const std::vector<float>& ob = yb.at("o").f32;
    ASSERT_EQ(oa.size(), 16u);
    float amax = 0;
    for (size_t i = 0; i < oa.size(); ++i) {
      EXPECT_EQ(oa[i], ob[i]) << "step " << step << ", column " << i;
      amax = std::max(amax, std::fabs(oa[i]));
    }
    EXPECT_GT(amax, 0.f) << "compared on zeros";
  }
}

}  // namespace
