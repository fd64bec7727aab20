// Interpreter semantics of the ops and attributes Gemma 3 added: geglu,
// per-head rms_norm (attr head_dim), rope freq_scale, and sliding-window
// attention over a ring KV cache (kv_store ring, attention window), each
// against a naive computation; the ring against a full cache.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ir/dequant.h"
#include "ir/graph.h"
#include "ir/interpreter.h"
#include "ir_test_util.h"

namespace kiln::ir {
namespace {
using testing::F;
using testing::WeightStore;
using testing::f32_tensor;
using testing::rand_vec;

TEST(GemmaOps, GeGluIsTanhGeluTimesUp) {
  const int64_t T = 3, Fd = 40;
  Graph g;
  auto gate = g.add_input("gate", DType::F32, {F(T), F(Fd)});
  auto up = g.add_input("up", DType::F32, {F(T), F(Fd)});
  g.mark_output(g.add_node(OpKind::GeGlu, {gate, up}, {}, "y", DType::F32, {F(T), F(Fd)}));
  std::mt19937 rng(1);
  auto gv = rand_vec(T * Fd, rng, -6, 6), uv = rand_vec(T * Fd, rng, -2, 2);
  gv[0] = 0;
  gv[1] = -12;  // gelu -> 0
  gv[2] = 12;   // gelu -> x
  Interpreter in(g, WeightStore{}.source());
  auto out = in.run({{"gate", f32_tensor({T, Fd}, gv)}, {"up", f32_tensor({T, Fd}, uv)}});
  for (size_t i = 0; i < gv.size(); ++i) {
    const double x = gv[i];
    const double gelu = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(out["y"].f32[i], gelu * uv[i], 2e-6 * std::max(1.0, std::fabs(gelu * uv[i]))) << i;
  }
  EXPECT_EQ(out["y"].f32[1], -0.0f * uv[1]);
  // GeGLU is not SwiGLU: the same inputs differ.
  const double silu = gv[3] / (1 + std::exp(-double(gv[3]))) * uv[3];
  EXPECT_GT(std::fabs(out["y"].f32[3] - silu), 1e-3);
}

TEST(GemmaOps, PerHeadRmsNormNormalisesEachHead) {
  const int64_t T = 2, nh = 3, hd = 8;
  const double eps = 1e-6;
  Graph g;
  WeightStore ws;
  std::mt19937 rng(2);
  auto x = g.add_input("x", DType::F32, {F(T), F(nh * hd)});
  auto w = g.add_weight("w", DType::F32, {F(hd)}, "w");
  auto wv = ws.add_f32("w", {hd}, rng, 0.5, 2);
  g.mark_output(g.add_node(OpKind::RmsNorm, {x, w}, {{"eps", eps}, {"head_dim", hd}}, "y", DType::F32,
                           {F(T), F(nh * hd)}));
  auto xv = rand_vec(T * nh * hd, rng, -3, 3);
  for (int64_t i = 0; i < hd; ++i) xv[static_cast<size_t>(hd + i)] *= 100;  // head 1 of row 0: another scale
  Interpreter in(g, ws.source());
  auto out = in.run({{"x", f32_tensor({T, nh * hd}, xv)}});
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nh; ++h) {
      double ss = 0;
      for (int64_t i = 0; i < hd; ++i) ss += double(xv[t * nh * hd + h * hd + i]) * xv[t * nh * hd + h * hd + i];
      const double r = 1 / std::sqrt(ss / hd + eps);
      for (int64_t i = 0; i < hd; ++i) {
        const size_t at = static_cast<size_t>(t * nh * hd + h * hd + i);
        EXPECT_NEAR(out["y"].f32[at], xv[at] * r * wv[static_cast<size_t>(i)], 1e-5) << t << " " << h << " " << i;
      }
    }
  // head_dim must divide the width and match w.
  Graph bad;
  auto bx = bad.add_input("x", DType::F32, {F(T), F(20)});
  auto bw = bad.add_weight("w", DType::F32, {F(hd)}, "w");
  bad.mark_output(bad.add_node(OpKind::RmsNorm, {bx, bw}, {{"eps", eps}, {"head_dim", hd}}, "y", DType::F32,
                               {F(T), F(20)}));
  EXPECT_THROW(verify(bad), Error);
}

TEST(GemmaOps, RopeFreqScaleScalesPositions) {
  // rope(x, pos) with freq_scale s equals rope(x, pos * s) for positions that stay integers.
  const int64_t T = 3, nh = 2, hd = 8;
  auto build = [&](double fs) {
    Graph g;
    auto x = g.add_input("x", DType::F32, {F(T), F(nh * hd)});
    auto pos = g.add_input("pos", DType::I32, {F(T)});
    Attrs a{{"n_heads", nh}, {"head_dim", hd}, {"n_rot", hd}, {"theta", 10000.0}, {"mode", std::string("neox")}};
    if (fs != 1.0) a["freq_scale"] = fs;
    g.mark_output(g.add_node(OpKind::Rope, {x, pos}, a, "y", DType::F32, {F(T), F(nh * hd)}));
    return g;
  };
  std::mt19937 rng(3);
  auto xv = rand_vec(T * nh * hd, rng);
  Interpreter scaled(build(0.25), WeightStore{}.source()), plain(build(1.0), WeightStore{}.source());
  auto a = scaled.run({{"x", f32_tensor({T, nh * hd}, xv)}, {"pos", Tensor::from_i32({4, 8, 40})}});
  auto b = plain.run({{"x", f32_tensor({T, nh * hd}, xv)}, {"pos", Tensor::from_i32({1, 2, 10})}});
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_NEAR(a["y"].f32[i], b["y"].f32[i], 1e-6) << i;
}

// kv_store + windowed attention over a cache of `rows` rows (ring when ring = true).
Graph window_graph(int64_t T, int64_t rows, bool ring, int64_t window) {
  const int64_t nh = 4, nkv = 2, hd = 8;
  Graph g;
  g.sym_bounds["tokens"] = T;
  const Dim tok = Dim::symbolic("tokens", T);
  auto q = g.add_input("q", DType::F32, {tok, F(nh * hd)});
  auto k = g.add_input("k", DType::F32, {tok, F(nkv * hd)});
  auto v = g.add_input("v", DType::F32, {tok, F(nkv * hd)});
  auto pos = g.add_input("positions", DType::I32, {tok});
  const Shape cs{F(rows), F(nkv * hd)};
  const Attrs st = ring ? Attrs{{"ring", int64_t{1}}} : Attrs{};
  auto kc = g.add_node(OpKind::KvStore, {g.add_state("kc", DType::F16, cs), k, pos}, st, "kc_out", DType::F16, cs);
  auto vc = g.add_node(OpKind::KvStore, {g.add_state("vc", DType::F16, cs), v, pos}, st, "vc_out", DType::F16, cs);
  Attrs a{{"n_heads", nh}, {"n_kv_heads", nkv}, {"head_dim", hd}, {"scale", 0.35}};
  if (window > 0) a["window"] = window;
  g.mark_output(g.add_node(OpKind::Attention, {q, kc, vc, pos}, a, "o", DType::F32, {tok, F(nh * hd)}));
  return g;
}

TEST(GemmaOps, RingCacheEqualsFullCacheWithWindow) {
  // Window 7, chunks of up to 4 tokens: a ring of 7 + 4 - 1 = 10 rows against
  // a full cache of 64 rows, over 45 positions in chunks of 4, 1, 3, 4, ...,
  // so chunks straddle the ring's end (the prefill chunk that wraps).
  const int64_t W = 7, T = 4, R = W + T - 1, C = 64, nh = 4, nkv = 2, hd = 8;
  Interpreter ring(window_graph(T, R, true, W), WeightStore{}.source());
  Interpreter full(window_graph(T, C, false, W), WeightStore{}.source());
  std::mt19937 rng(4);
  const int sizes[] = {4, 1, 3, 4, 2, 4, 4, 1, 1, 4, 3, 4, 4, 2, 4};
  int32_t p0 = 0;
  int wrapped_chunks = 0;
  for (int n : sizes) {
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = p0 + i;
    wrapped_chunks += (p0 % R) + n > R;
    std::map<std::string, Tensor> in{{"q", f32_tensor({n, nh * hd}, rand_vec(n * nh * hd, rng, -2, 2))},
                                     {"k", f32_tensor({n, nkv * hd}, rand_vec(n * nkv * hd, rng, -2, 2))},
                                     {"v", f32_tensor({n, nkv * hd}, rand_vec(n * nkv * hd, rng))},
                                     {"positions", Tensor::from_i32(pos)}};
    auto a = ring.run(in), b = full.run(in);
    ASSERT_EQ(a["o"].f32, b["o"].f32) << "chunk at position " << p0;  // bit-identical: same keys, same order
    p0 += n;
  }
  EXPECT_GT(p0, 4 * R);
  EXPECT_GT(wrapped_chunks, 0);
}

TEST(GemmaOps, WindowMatchesNaiveBandAttention) {
  // One chunk of 6 rows at positions 10..15, window 4, full cache: query at p sees p-3..p only.
  const int64_t T = 6, C = 16, W = 4, nh = 4, nkv = 2, hd = 8;
  Interpreter in(window_graph(T, C, false, W), WeightStore{}.source());
  Interpreter wide(window_graph(T, C, false, 0), WeightStore{}.source());
  std::mt19937 rng(5);
  std::vector<float> keys, vals;
  // Fill positions 0..9 first (their keys must stay invisible to the band but not to the causal graph).
  for (int32_t start : {0, 5}) {
    std::vector<int32_t> pos;
    for (int i = 0; i < 5; ++i) pos.push_back(start + i);
    auto kv = rand_vec(5 * nkv * hd, rng, -2, 2), vv = rand_vec(5 * nkv * hd, rng);
    keys.insert(keys.end(), kv.begin(), kv.end());
    vals.insert(vals.end(), vv.begin(), vv.end());
    std::map<std::string, Tensor> m{{"q", f32_tensor({5, nh * hd}, rand_vec(5 * nh * hd, rng))},
                                    {"k", f32_tensor({5, nkv * hd}, kv)},
                                    {"v", f32_tensor({5, nkv * hd}, vv)},
                                    {"positions", Tensor::from_i32(pos)}};
    in.run(m);
    wide.run(m);
  }
  auto qv = rand_vec(T * nh * hd, rng, -2, 2), kv = rand_vec(T * nkv * hd, rng, -2, 2), vv = rand_vec(T * nkv * hd, rng);
  keys.insert(keys.end(), kv.begin(), kv.end());
  vals.insert(vals.end(), vv.begin(), vv.end());
  std::map<std::string, Tensor> m{{"q", f32_tensor({T, nh * hd}, qv)},
                                  {"k", f32_tensor({T, nkv * hd}, kv)},
                                  {"v", f32_tensor({T, nkv * hd}, vv)},
                                  {"positions", Tensor::from_i32({10, 11, 12, 13, 14, 15})}};
  auto got = in.run(m)["o"].f32;
  auto causal = wide.run(m)["o"].f32;
  auto f16 = [](float x) { return round_to_dtype(DType::F16, x); };
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t kh = h / (nh / nkv), p = 10 + t;
      std::vector<double> s;
      for (int64_t j = p - W + 1; j <= p; ++j) {
        double d = 0;
        for (int64_t e = 0; e < hd; ++e) d += double(qv[t * nh * hd + h * hd + e]) * f16(keys[j * nkv * hd + kh * hd + e]);
        s.push_back(std::exp(d * 0.35));
      }
      double z = 0;
      for (double x : s) z += x;
      for (int64_t e = 0; e < hd; ++e) {
        double o = 0;
        for (int64_t j = 0; j < W; ++j) o += s[j] / z * f16(vals[(p - W + 1 + j) * nkv * hd + kh * hd + e]);
        EXPECT_NEAR(got[t * nh * hd + h * hd + e], o, 1e-5) << t << " " << h << " " << e;
      }
    }
  EXPECT_NE(got, causal);  // the window changes the result
}

TEST(GemmaOps, RingTooSmallForTheChunkIsRejected) {
  // A ring of window + tokens - 2 rows would lose keys a chunk still needs.
  EXPECT_THROW(verify(window_graph(4, 9, true, 7)), Error);
  EXPECT_NO_THROW(verify(window_graph(4, 10, true, 7)));
}

}  // namespace
}  // namespace kiln::ir
