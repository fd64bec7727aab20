// Verifier rules and interpreter semantics of the fused ops themselves
// (docs/plan-abi.md "Fused ops"), on small hand-made graphs.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "ir/dequant.h"
#include "ir/graph.h"
#include "ir/interpreter.h"
#include "ir/quantize.h"

namespace {

using kiln::ir::Tensor;

// f32 weights held in memory, by source name.
struct Weights {
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> t;
  kiln::ir::WeightSource source() {
    return [this](const std::string& s) {
      auto& [shape, data] = t.at(s);
      return kiln::ir::WeightData{kiln::ir::DType::F32, shape, reinterpret_cast<const uint8_t*>(data.data()),
                                  data.size() * sizeof(float)};
    };
  }
};

TEST(FusedOps, VerifierRejectsBadShapes) {
  const std::string ok = R"(graph {
  sym kv_len <= 8
  sym tokens <= 4
  input %qkv : f32[tokens, 16]
  input %pos : i32[tokens]
  state %kc : f32[kv_len, 4]
  state %vc : f32[kv_len, 4]
  %q : f32[tokens, 8], %kc2 : f32[kv_len, 4], %vc2 : f32[kv_len, 4] = rope_store(%qkv, %pos, %kc, %vc) {head_dim = 4, mode = "normal", n_heads = 2, n_kv_heads = 1, n_rot = 4, theta = 10000.0}
  output %q
}
)";
  EXPECT_NO_THROW(kiln::ir::verify(kiln::ir::parse(ok)));
  auto bad = [&](const std::string& from, const std::string& to) {
    std::string s = ok;
    s.replace(s.find(from), from.size(), to);
    EXPECT_THROW(kiln::ir::verify(kiln::ir::parse(s)), kiln::Error) << to;
  };
  bad("input %qkv : f32[tokens, 16]", "input %qkv : f32[tokens, 12]");  // not (nh + 2 nkv) hd
  bad("%q : f32[tokens, 8], ", "%q : f32[tokens, 16], ");              // q is nh*hd wide
  bad(", %vc2 : f32[kv_len, 4] =", " =");                               // three outputs
  bad("state %vc : f32[kv_len, 4]", "input %vc : f32[kv_len, 4]");    // caches are states

  const std::string mm = R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 8]
  input %r : f32[tokens, 6]
  weight %g : f32[8] = "g"
  weight %w : f32[6, 8] = "w"
  %y : f32[tokens, 6] = matmul_add(%x, %w, %r)
  %z : f32[tokens, 3] = rms_matmul_swiglu(%x, %g, %w) {eps = 1e-05}
  %t : i32[1], %logits : f32[1, 6] = lm_head_sample(%x, %g, %w) {eps = 1e-05}
  output %y
}
)";
  EXPECT_NO_THROW(kiln::ir::verify(kiln::ir::parse(mm)));
  std::string s1 = mm;
  s1.replace(s1.find("%z : f32[tokens, 3]"), 19, "%z : f32[tokens, 6]");
  EXPECT_THROW(kiln::ir::verify(kiln::ir::parse(s1)), kiln::Error);
  std::string s2 = mm;
  s2.replace(s2.find("input %r : f32[tokens, 6]"), 25, "input %r : f32[6]");
  EXPECT_THROW(kiln::ir::verify(kiln::ir::parse(s2)), kiln::Error);  // a row is not a residual
}

TEST(FusedOps, LmHeadSampleUsesLastRowAndFirstMax) {
  auto g = kiln::ir::parse(R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 2]
  weight %g : f32[2] = "g"
  weight %w : f32[3, 2] = "w"
  %next_token : i32[1], %logits : f32[1, 3] = lm_head_sample(%x, %g, %w) {eps = 0.0}
  output %next_token
  output %logits
}
)");
  Weights W;
  W.t["g"] = {{2}, {1.0f, 1.0f}};
  // rows 1 and 2 give equal logits: the first (1) wins.
  W.t["w"] = {{3, 2}, {-1.0f, 0.0f, 0.0f, 1.0f, 0.0f, 1.0f}};
  kiln::ir::Interpreter in(g, W.source());
  // Last row (0, 3): rms = 3/sqrt(2); normed = (0, sqrt(2)); logits = (0, sqrt2, sqrt2).
  auto out = in.run({{"x", [] {
                        Tensor t = Tensor::zeros_f32({2, 2});
                        t.f32 = {5.0f, -7.0f, 0.0f, 3.0f};
                        return t;
                      }()}});
  EXPECT_EQ(out["next_token"].i32, (std::vector<int32_t>{1}));
  ASSERT_EQ(out["logits"].f32.size(), 3u);
  EXPECT_FLOAT_EQ(out["logits"].f32[0], 0.0f);
  EXPECT_NEAR(out["logits"].f32[1], std::sqrt(2.0f), 1e-6);
  EXPECT_NEAR(out["logits"].f32[2], std::sqrt(2.0f), 1e-6);
}

TEST(FusedOps, RopeStoreWritesRowsAtPositions) {
  // One head each, head_dim 2, position 0 (no rotation) and 1 for the second token.
  auto g = kiln::ir::parse(R"(graph {
  sym kv_len <= 4
  sym tokens <= 2
  input %qkv : f32[tokens, 6]
  input %pos : i32[tokens]
  state %kc : f32[kv_len, 2]
  state %vc : f32[kv_len, 2]
  %q : f32[tokens, 2], %kc2 : f32[kv_len, 2], %vc2 : f32[kv_len, 2] = rope_store(%qkv, %pos, %kc, %vc) {head_dim = 2, mode = "normal", n_heads = 1, n_kv_heads = 1, n_rot = 2, theta = 10000.0}
  output %q
  output %kc2
  output %vc2
}
)");
  kiln::ir::Interpreter in(g, [](const std::string& s) -> kiln::ir::WeightData {
    throw kiln::Error(kiln::ErrorCode::kInternal, "no weights " + s);
  });
  Tensor qkv = Tensor::zeros_f32({2, 6});
  qkv.f32 = {1, 2, 3, 4, 5, 6, 1, 0, 0, 1, 7, 8};
  auto out = in.run({{"qkv", qkv}, {"pos", Tensor::from_i32({2, 1})}});
  const float c2 = std::cos(2.0f), s2 = std::sin(2.0f), c1 = std::cos(1.0f), s1 = std::sin(1.0f);
  const auto &q = out["q"].f32, &kc = out["kc2"].f32, &vc = out["vc2"].f32;
  // token 0 at position 2: q = rot(1, 2), k = rot(3, 4) into row 2, v = (5, 6) into row 2
  EXPECT_NEAR(q[0], 1 * c2 - 2 * s2, 1e-6);
  EXPECT_NEAR(q[1], 1 * s2 + 2 * c2, 1e-6);
  EXPECT_NEAR(kc[4], 3 * c2 - 4 * s2, 1e-6);
  EXPECT_NEAR(kc[5], 3 * s2 + 4 * c2, 1e-6);
  EXPECT_EQ(vc[4], 5.0f);
  EXPECT_EQ(vc[5], 6.0f);
  // token 1 at position 1: k = rot(0, 1) into row 1, v = (7, 8) unroped
  EXPECT_NEAR(kc[2], -s1, 1e-6);
  EXPECT_NEAR(kc[3], c1, 1e-6);
  EXPECT_EQ(vc[2], 7.0f);
  EXPECT_EQ(vc[3], 8.0f);
  EXPECT_EQ(kc[0], 0.0f);  // untouched rows stay zero
  EXPECT_EQ(vc[6], 0.0f);
}

}  // namespace

namespace {

// rms_matmul with several weights (fuse-qkv-parts): each weight of its own
// dtype; the output is the single-weight rms_matmuls' outputs side by side,
// bit for bit, with and without int8 activations.
TEST(FusedOps, RmsMatMulWithSeveralWeightsIsItsPartsSideBySide) {
  using namespace kiln::ir;
  const std::string src = R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 256]
  weight %g : f32[256] = "g"
  weight %wa : q4_k[8, 256] = "wa"
  weight %wb : q4_k[4, 256] = "wb"
  weight %wc : q6_k[5, 256] = "wc"
  %y : f32[tokens, 17] = rms_matmul(%x, %g, %wa, %wb, %wc) {eps = 1e-05}
  %a : f32[tokens, 8] = rms_matmul(%x, %g, %wa) {eps = 1e-05}
  %b : f32[tokens, 4] = rms_matmul(%x, %g, %wb) {eps = 1e-05}
  %c : f32[tokens, 5] = rms_matmul(%x, %g, %wc) {eps = 1e-05}
  output %y
  output %a
  output %b
  output %c
}
)";
  std::map<std::string, std::vector<uint8_t>> wq;
  random_blocks(DType::Q4_K, 8 * 256, 1, wq["wa"]);
  random_blocks(DType::Q4_K, 4 * 256, 2, wq["wb"]);
  random_blocks(DType::Q6_K, 5 * 256, 3, wq["wc"]);
  std::vector<float> gain(256);
  SplitMix64 rng(9);
  for (float& v : gain) v = 0.5f + rng.uniform();
  auto weights = [&](const std::string& name) {
    if (name == "g") return WeightData{DType::F32, {256}, reinterpret_cast<const uint8_t*>(gain.data()), 1024};
    const auto& b = wq.at(name);
    const int64_t rows = name == "wa" ? 8 : name == "wb" ? 4 : 5;
    return WeightData{name == "wc" ? DType::Q6_K : DType::Q4_K, {rows, 256}, b.data(), b.size()};
  };
  Tensor x = Tensor::zeros_f32({3, 256});
  for (float& v : x.f32) v = 2.0f * rng.uniform() - 1.0f;
  for (bool q8 : {false, true}) {
    SCOPED_TRACE(q8 ? "x_q8" : "f32 activations");
    Graph g = parse(src);
    if (q8)
      for (auto& n : g.nodes()) n.attrs["x_q8"] = int64_t{1};
    verify(g);
    auto r = Interpreter(g, weights).run({{"x", x}});
    const auto &y = r.at("y").f32, &a = r.at("a").f32, &b = r.at("b").f32, &c = r.at("c").f32;
    ASSERT_EQ(y.size(), 3u * 17u);
    bool nonzero = false;
    for (int t = 0; t < 3; ++t) {
      for (int j = 0; j < 8; ++j) EXPECT_EQ(y[t * 17 + j], a[t * 8 + j]);
      for (int j = 0; j < 4; ++j) EXPECT_EQ(y[t * 17 + 8 + j], b[t * 4 + j]);
      for (int j = 0; j < 5; ++j) EXPECT_EQ(y[t * 17 + 12 + j], c[t * 5 + j]);
      for (int j = 0; j < 17; ++j) nonzero |= y[t * 17 + j] != 0.0f;
    }
    EXPECT_TRUE(nonzero);
  }
  // the verifier: output columns are the sum of the weights' rows; K matches;
  // x_q8 needs every weight to take int8 activations
  auto bad = [&](const std::string& from, const std::string& to) {
    std::string s = src;
    s.replace(s.find(from), from.size(), to);
    EXPECT_THROW(verify(parse(s)), kiln::Error) << to;
  };
  bad("%y : f32[tokens, 17]", "%y : f32[tokens, 16]");
  bad("weight %wc : q6_k[5, 256]", "weight %wc : q6_k[5, 512]");
  bad("rms_matmul(%x, %g, %wa, %wb, %wc) {eps = 1e-05}", "rms_matmul(%x, %g, %wa, %wb, %wc, %wa) {eps = 1e-05}");
  std::string f16v = src;
  f16v.replace(f16v.find("weight %wc : q6_k[5, 256]"), 25, "weight %wc : f16[5, 256]");
  EXPECT_NO_THROW(verify(parse(f16v)));
  f16v.replace(f16v.find("%wc) {eps = 1e-05}"), 18, "%wc) {eps = 1e-05, x_q8 = 1}");
  EXPECT_THROW(verify(parse(f16v)), kiln::Error) << "x_q8 with an f16 part";
}

}  // namespace
