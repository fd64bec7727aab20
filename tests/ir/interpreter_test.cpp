// Reference interpreter: each op against a naive hand computation on small
// random inputs, KV-cache persistence, quantised weights, input checking.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
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
void expect_near_rel(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::fabs(want[i]))) << "element " << i;
}

// A graph with activation inputs "a" [T,W] (and optionally "b"), one node.
struct OneOp {
  Graph g;
  WeightStore ws;
  std::mt19937 rng{1234};
};

TEST(Interp, MatMulMatchesNaive) {
  // Sizes not multiples of 16 to cover the tail loop; big enough to thread.
  const int64_t T = 5, K = 77, N = 1031;
  OneOp o;
  auto x = o.g.add_input("x", DType::F32, {F(T), F(K)});
  auto w = o.g.add_weight("w", DType::F32, {F(N), F(K)}, "w.weight");
  auto y = o.g.add_node(OpKind::MatMul, {x, w}, {}, "y", DType::F32, {F(T), F(N)});
  o.g.mark_output(y);
  auto wv = o.ws.add_f32("w.weight", {N, K}, o.rng);
  auto xv = rand_vec(T * K, o.rng);
  Interpreter in(o.g, o.ws.source());
  auto out = in.run({{"x", f32_tensor({T, K}, xv)}});
  std::vector<double> want(T * N);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(xv[t * K + k]) * wv[n * K + k];
      want[t * N + n] = s;
    }
  EXPECT_EQ(out["y"].shape, (std::vector<int64_t>{T, N}));
  expect_near_rel(out["y"].f32, want, 1e-5);
  // Deterministic: a second run gives bit-identical results.
  auto again = in.run({{"x", f32_tensor({T, K}, xv)}});
  EXPECT_EQ(again["y"].f32, out["y"].f32);
}

// Two interpreters that share weights (ModelRunner's default, prefill and
// decode graphs) fetch and dequantise each source once, and compute the same.
TEST(Interp, SharedWeightsAreFetchedOnce) {
  const int64_t T = 3, K = 64, N = 40;
  OneOp o;
  auto x = o.g.add_input("x", DType::F32, {F(T), F(K)});
  auto w = o.g.add_weight("w", DType::F32, {F(N), F(K)}, "w.weight");
  auto y = o.g.add_node(OpKind::MatMul, {x, w}, {}, "y", DType::F32, {F(T), F(N)});
  o.g.mark_output(y);
  o.ws.add_f32("w.weight", {N, K}, o.rng);
  const auto xv = rand_vec(T * K, o.rng);
  int fetches = 0;
  auto counting = [&](const std::string& name) {
    ++fetches;
    return o.ws.source()(name);
  };
  Interpreter a(o.g, counting), b(o.g, counting), alone(o.g, counting);
  b.share_weights(a);
  const auto ya = a.run({{"x", f32_tensor({T, K}, xv)}})["y"].f32;
  EXPECT_EQ(fetches, 1);
  const auto yb = b.run({{"x", f32_tensor({T, K}, xv)}})["y"].f32;
  EXPECT_EQ(fetches, 1) << "b dequantised the weight a already holds";
  const auto yc = alone.run({{"x", f32_tensor({T, K}, xv)}})["y"].f32;
  EXPECT_EQ(fetches, 2) << "an interpreter that shares nothing fetches its own";
  EXPECT_EQ(ya, yb);
  EXPECT_EQ(ya, yc);
}

TEST(Interp, MatMulRowsIndependentOfBatching) {
  // Row t of a 5-row matmul equals the same row run alone, bit for bit
  // (the blocked 2x2 path and the single-row path sum in the same order).
  const int64_t K = 203, N = 901;
  OneOp o;
  o.g.sym_bounds["tokens"] = 8;
  Dim T = Dim::symbolic("tokens", 8);
  auto x = o.g.add_input("x", DType::F32, {T, F(K)});
  auto w = o.g.add_weight("w", DType::F32, {F(N), F(K)}, "w");
  auto y = o.g.add_node(OpKind::MatMul, {x, w}, {}, "y", DType::F32, {T, F(N)});
  o.g.mark_output(y);
  o.ws.add_f32("w", {N, K}, o.rng);
  auto xv = rand_vec(5 * K, o.rng);
  Interpreter in(o.g, o.ws.source());
  auto all = in.run({{"x", f32_tensor({5, K}, xv)}});
  for (int64_t t = 0; t < 5; ++t) {
    auto one = in.run({{"x", f32_tensor({1, K}, std::vector<float>(xv.begin() + t * K, xv.begin() + (t + 1) * K))}});
    for (int64_t n = 0; n < N; ++n) ASSERT_EQ(one["y"].f32[n], all["y"].f32[t * N + n]) << "row " << t << " col " << n;
  }
}

TEST(Interp, QuantisedWeightDequantisedRowByRow) {
  // Q8_0 weight [N=3, K=64]: two blocks per row; d = 0.5, 0.25 ...; q = row-dependent.
  const int64_t N = 3, K = 64, T = 2;
  std::vector<uint8_t> bytes;
  std::vector<float> wf(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < K / 32; ++b) {
      float d = 0.5f / float(1 + n + b);  // exactly representable in fp16? use the round trip below
      uint16_t h = fp32_to_fp16(d);
      float dd = fp16_to_fp32(h);
      bytes.push_back(uint8_t(h & 0xff));
      bytes.push_back(uint8_t(h >> 8));
      for (int i = 0; i < 32; ++i) {
        int8_t q = int8_t((i * 7 + n * 13 + b * 5) % 255 - 127);
        bytes.push_back(uint8_t(q));
        wf[n * K + b * 32 + i] = dd * float(q);
      }
    }
  Graph g;
  auto x = g.add_input("x", DType::F32, {F(T), F(K)});
  auto w = g.add_weight("w", DType::Q8_0, {F(N), F(K)}, "w.weight");
  auto y = g.add_node(OpKind::MatMul, {x, w}, {}, "y", DType::F32, {F(T), F(N)});
  g.mark_output(y);
  WeightStore ws;
  ws.entries["w.weight"] = {DType::Q8_0, {N, K}, bytes};
  std::mt19937 rng(7);
  auto xv = rand_vec(T * K, rng);
  Interpreter in(g, ws.source());
  auto out = in.run({{"x", f32_tensor({T, K}, xv)}});
  std::vector<double> want(T * N);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(xv[t * K + k]) * wf[n * K + k];
      want[t * N + n] = s;
    }
  expect_near_rel(out["y"].f32, want, 1e-5);
  // A wrong dtype or a short buffer is reported, naming the weight.
  ws.entries["w.weight"].bytes.resize(10);
  Interpreter bad(g, ws.source());
  try {
    bad.run({{"x", f32_tensor({T, K}, xv)}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "w.weight");
  }
}

TEST(Interp, EmbedRmsNormAddMulSiluSwiGluLastRowArgMax) {
  const int64_t V = 11, H = 6, T = 4;
  Graph g;
  g.sym_bounds["tokens"] = 8;
  Dim Ts = Dim::symbolic("tokens", 8);
  std::mt19937 rng(99);
  WeightStore ws;
  auto table = ws.add_f32("emb", {V, H}, rng);
  auto nw = ws.add_f32("nw", {H}, rng);
  auto ids = g.add_input("ids", DType::I32, {Ts});
  auto emb = g.add_weight("emb", DType::F32, {F(V), F(H)}, "emb");
  auto normw = g.add_weight("nw", DType::F32, {F(H)}, "nw");
  auto b = g.add_input("b", DType::F32, {Ts, F(H)});
  auto e = g.add_node(OpKind::Embed, {emb, ids}, {{"scale", 2.0}}, "e", DType::F32, {Ts, F(H)});
  auto n = g.add_node(OpKind::RmsNorm, {e, normw}, {{"eps", 1e-3}}, "n", DType::F32, {Ts, F(H)});
  auto a1 = g.add_node(OpKind::Add, {n, b}, {}, "a1", DType::F32, {Ts, F(H)});
  auto m1 = g.add_node(OpKind::Mul, {a1, normw}, {}, "m1", DType::F32, {Ts, F(H)});
  auto s = g.add_node(OpKind::Silu, {m1}, {}, "s", DType::F32, {Ts, F(H)});
  auto sg = g.add_node(OpKind::SwiGlu, {m1, b}, {}, "sg", DType::F32, {Ts, F(H)});
  auto a2 = g.add_node(OpKind::Add, {s, sg}, {}, "a2", DType::F32, {Ts, F(H)});
  auto lr = g.add_node(OpKind::LastRow, {a2}, {}, "lr", DType::F32, {F(1), F(H)});
  auto am = g.add_node(OpKind::ArgMax, {a2}, {}, "am", DType::I32, {Ts});
  g.mark_output(lr);
  g.mark_output(am);
  ASSERT_NO_THROW(verify(g));
  std::vector<int32_t> idv = {3, 0, 10, 3};
  auto bv = rand_vec(T * H, rng);
  Interpreter in(g, ws.source());
  auto out = in.run({{"ids", Tensor::from_i32(idv)}, {"b", f32_tensor({T, H}, bv)}});

  std::vector<double> ref_a2(T * H);
  for (int64_t t = 0; t < T; ++t) {
    double ev[H], ss = 0;
    for (int64_t h = 0; h < H; ++h) {
      ev[h] = 2.0 * table[idv[t] * H + h];
      ss += ev[h] * ev[h];
    }
    double r = 1.0 / std::sqrt(ss / H + 1e-3);
    for (int64_t h = 0; h < H; ++h) {
      double nn = ev[h] * r * nw[h];
      double a = nn + bv[t * H + h];
      double m = a * nw[h];
      double silu = m / (1 + std::exp(-m));
      double swiglu = silu * bv[t * H + h];
      ref_a2[t * H + h] = silu + swiglu;
    }
  }
  const Tensor* a2v = in.last_value("a2");
  ASSERT_NE(a2v, nullptr);
  expect_near_rel(a2v->f32, ref_a2, 1e-5);
  expect_near_rel(out["lr"].f32, std::vector<double>(ref_a2.end() - H, ref_a2.end()), 1e-5);
  ASSERT_EQ(out["am"].i32.size(), size_t(T));
  for (int64_t t = 0; t < T; ++t) {
    int best = 0;
    for (int h = 1; h < H; ++h)
      if (ref_a2[t * H + h] > ref_a2[t * H + best]) best = h;
    EXPECT_EQ(out["am"].i32[t], best) << "row " << t;
  }
  // Rows 0 and 3 embed the same token with the same b? No: b differs, but the
  // embedding rows must match exactly.
  const Tensor* ev = in.last_value("e");
  for (int64_t h = 0; h < H; ++h) EXPECT_EQ(ev->f32[h], ev->f32[3 * H + h]);
  // Out-of-range token ids are rejected.
  EXPECT_THROW(in.run({{"ids", Tensor::from_i32({11})}, {"b", f32_tensor({1, H}, rand_vec(H, rng))}}), Error);
}

TEST(Interp, ArgMaxFirstIndexOnTies) {
  Graph g;
  auto x = g.add_input("x", DType::F32, {F(2), F(5)});
  auto am = g.add_node(OpKind::ArgMax, {x}, {}, "am", DType::I32, {F(2)});
  g.mark_output(am);
  Interpreter in(g, WeightStore{}.source());
  auto out = in.run({{"x", f32_tensor({2, 5}, {1, 3, 2, 3, 0, -1, -1, -1, -1, -1})}});
  EXPECT_EQ(out["am"].i32, (std::vector<int32_t>{1, 0}));
}

// RoPE vs the closed form, both modes, partial rotation, freq factors.
void check_rope(const std::string& mode, int64_t n_rot, bool with_ff) {
  const int64_t T = 3, nh = 2, hd = 8, W = nh * hd;
  const double base = 500.0;
  Graph g;
  WeightStore ws;
  std::mt19937 rng(5);
  auto x = g.add_input("x", DType::F32, {F(T), F(W)});
  auto pos = g.add_input("pos", DType::I32, {F(T)});
  std::vector<ValueId> ins = {x, pos};
  std::vector<float> ff;
  if (with_ff) {
    ff = ws.add_f32("ff", {n_rot / 2}, rng, 1.0f, 8.0f);
    ins.push_back(g.add_weight("ff", DType::F32, {F(n_rot / 2)}, "ff"));
  }
  auto y = g.add_node(OpKind::Rope, ins,
                      {{"n_heads", nh}, {"head_dim", hd}, {"n_rot", n_rot}, {"theta", base}, {"mode", mode}}, "y",
                      DType::F32, {F(T), F(W)});
  g.mark_output(y);
  auto xv = rand_vec(T * W, rng);
  std::vector<int32_t> pv = {0, 7, 1000};
  Interpreter in(g, ws.source());
  auto out = in.run({{"x", f32_tensor({T, W}, xv)}, {"pos", Tensor::from_i32(pv)}});
  std::vector<double> want(xv.begin(), xv.end());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        double ang = pv[t] / std::pow(base, double(2 * i) / double(n_rot));
        if (with_ff) ang /= ff[i];
        int64_t i0 = mode == "neox" ? i : 2 * i, i1 = mode == "neox" ? i + n_rot / 2 : 2 * i + 1;
        double a = xv[t * W + h * hd + i0], b = xv[t * W + h * hd + i1];
        want[t * W + h * hd + i0] = a * std::cos(ang) - b * std::sin(ang);
        want[t * W + h * hd + i1] = a * std::sin(ang) + b * std::cos(ang);
      }
  expect_near_rel(out["y"].f32, want, 1e-5);
  // Dims beyond n_rot pass through bit-exactly.
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t d = n_rot; d < hd; ++d) EXPECT_EQ(out["y"].f32[t * W + h * hd + d], xv[t * W + h * hd + d]);
}

TEST(Interp, RopeNormal) { check_rope("normal", 8, false); }
TEST(Interp, RopeNeox) { check_rope("neox", 8, false); }
TEST(Interp, RopePartialRotationNeox) { check_rope("neox", 4, false); }
TEST(Interp, RopePartialRotationNormalWithFreqFactors) { check_rope("normal", 6, true); }

TEST(Interp, RopeModesDiffer) {
  // Guard against both modes silently doing the same thing.
  Graph g;
  auto x = g.add_input("x", DType::F32, {F(1), F(4)});
  auto pos = g.add_input("pos", DType::I32, {F(1)});
  Attrs at{{"n_heads", int64_t{1}}, {"head_dim", int64_t{4}}, {"n_rot", int64_t{4}}, {"theta", 10000.0},
           {"mode", std::string("normal")}};
  auto a = g.add_node(OpKind::Rope, {x, pos}, at, "a", DType::F32, {F(1), F(4)});
  at["mode"] = std::string("neox");
  auto b = g.add_node(OpKind::Rope, {x, pos}, at, "b", DType::F32, {F(1), F(4)});
  g.mark_output(a);
  g.mark_output(b);
  Interpreter in(g, WeightStore{}.source());
  auto out = in.run({{"x", f32_tensor({1, 4}, {1, 2, 3, 4})}, {"pos", Tensor::from_i32({1})}});
  // normal at pos 1, i=0: angle 1 on pair (x0,x1) = (1,2)
  EXPECT_NEAR(out["a"].f32[0], std::cos(1.0) * 1 - std::sin(1.0) * 2, 1e-6);
  // neox at pos 1, i=0: angle 1 on pair (x0,x2) = (1,3)
  EXPECT_NEAR(out["b"].f32[0], std::cos(1.0) * 1 - std::sin(1.0) * 3, 1e-6);
}

// Attention vs the explicit formula, GQA with 4 query heads over 2 kv heads.
TEST(Interp, AttentionGqaCausalMatchesFormula) {
  const int64_t T = 5, C = 8, nh = 4, nkv = 2, hd = 3;
  const double scale = 0.7;
  Graph g;
  auto q = g.add_input("q", DType::F32, {F(T), F(nh * hd)});
  auto k = g.add_input("k", DType::F32, {F(C), F(nkv * hd)});
  auto v = g.add_input("v", DType::F32, {F(C), F(nkv * hd)});
  auto pos = g.add_input("pos", DType::I32, {F(T)});
  auto o = g.add_node(OpKind::Attention, {q, k, v, pos},
                      {{"n_heads", nh}, {"n_kv_heads", nkv}, {"head_dim", hd}, {"scale", scale}}, "o", DType::F32,
                      {F(T), F(nh * hd)});
  g.mark_output(o);
  std::mt19937 rng(3);
  auto qv = rand_vec(T * nh * hd, rng, -2, 2), kv = rand_vec(C * nkv * hd, rng, -2, 2),
       vv = rand_vec(C * nkv * hd, rng);
  std::vector<int32_t> pv = {0, 1, 2, 6, 7};  // not contiguous: rows up to pos[t] are visible
  Interpreter in(g, WeightStore{}.source());
  auto out = in.run({{"q", f32_tensor({T, nh * hd}, qv)},
                     {"k", f32_tensor({C, nkv * hd}, kv)},
                     {"v", f32_tensor({C, nkv * hd}, vv)},
                     {"pos", Tensor::from_i32(pv)}});
  std::vector<double> want(T * nh * hd, 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < nh; ++h) {
      int64_t kh = h / (nh / nkv);
      std::vector<double> s;
      for (int64_t j = 0; j <= pv[t]; ++j) {
        double d = 0;
        for (int64_t e = 0; e < hd; ++e) d += double(qv[t * nh * hd + h * hd + e]) * kv[j * nkv * hd + kh * hd + e];
        s.push_back(std::exp(d * scale));
      }
      double z = 0;
      for (double x : s) z += x;
      for (int64_t j = 0; j <= pv[t]; ++j)
        for (int64_t e = 0; e < hd; ++e) want[t * nh * hd + h * hd + e] += s[j] / z * vv[j * nkv * hd + kh * hd + e];
    }
  expect_near_rel(out["o"].f32, want, 1e-5);
  // Position beyond the cache is an input error, not a crash.
  pv[4] = 8;
  EXPECT_THROW(in.run({{"q", f32_tensor({T, nh * hd}, qv)},
                       {"k", f32_tensor({C, nkv * hd}, kv)},
                       {"v", f32_tensor({C, nkv * hd}, vv)},
                       {"pos", Tensor::from_i32(pv)}}),
               Error);
}

// A tiny one-layer llama-shaped model with a KV cache.
struct TinyModel {
  static constexpr int64_t V = 37, H = 32, nh = 4, nkv = 2, hd = 8, Fd = 48, Tmax = 16, Cmax = 24;
  Graph g;
  WeightStore ws;
  TinyModel() {
    std::mt19937 rng(2024);
    Dim T = Dim::symbolic("tokens", Tmax), C = Dim::symbolic("kv_len", Cmax);
    g.sym_bounds = {{"tokens", Tmax}, {"kv_len", Cmax}};
    auto w = [&](const std::string& name, std::vector<int64_t> shape, float lo = -0.5f, float hi = 0.5f) {
      ws.add_f32(name, shape, rng, lo, hi);
      Shape s;
      for (int64_t d : shape) s.push_back(F(d));
      return g.add_weight(name, DType::F32, s, name);
    };
    auto tokens = g.add_input("tokens", DType::I32, {T});
    auto pos = g.add_input("positions", DType::I32, {T});
    auto emb = w("token_embd", {V, H});
    auto x = g.add_node(OpKind::Embed, {emb, tokens}, {}, "x", DType::F32, {T, F(H)});
    auto an = w("attn_norm", {H}, 0.5f, 1.5f);
    auto xn = g.add_node(OpKind::RmsNorm, {x, an}, {{"eps", 1e-5}}, "xn", DType::F32, {T, F(H)});
    auto q = g.add_node(OpKind::MatMul, {xn, w("wq", {nh * hd, H})}, {}, "q", DType::F32, {T, F(nh * hd)});
    auto k = g.add_node(OpKind::MatMul, {xn, w("wk", {nkv * hd, H})}, {}, "k", DType::F32, {T, F(nkv * hd)});
    auto v = g.add_node(OpKind::MatMul, {xn, w("wv", {nkv * hd, H})}, {}, "v", DType::F32, {T, F(nkv * hd)});
    Attrs rq{{"n_heads", nh}, {"head_dim", hd}, {"n_rot", hd}, {"theta", 10000.0}, {"mode", std::string("normal")}};
    Attrs rk = rq;
    rk["n_heads"] = nkv;
    auto qr = g.add_node(OpKind::Rope, {q, pos}, rq, "qr", DType::F32, {T, F(nh * hd)});
    auto kr = g.add_node(OpKind::Rope, {k, pos}, rk, "kr", DType::F32, {T, F(nkv * hd)});
    auto kc = g.add_state("k_cache", DType::F32, {C, F(nkv * hd)});
    auto vc = g.add_state("v_cache", DType::F32, {C, F(nkv * hd)});
    auto ks = g.add_node(OpKind::KvStore, {kc, kr, pos}, {}, "ks", DType::F32, {C, F(nkv * hd)});
    auto vs = g.add_node(OpKind::KvStore, {vc, v, pos}, {}, "vs", DType::F32, {C, F(nkv * hd)});
    auto att = g.add_node(OpKind::Attention, {qr, ks, vs, pos},
                          {{"n_heads", nh}, {"n_kv_heads", nkv}, {"head_dim", hd}, {"scale", 1.0 / std::sqrt(8.0)}},
                          "att", DType::F32, {T, F(nh * hd)});
    auto o = g.add_node(OpKind::MatMul, {att, w("wo", {H, nh * hd})}, {}, "o", DType::F32, {T, F(H)});
    auto h1 = g.add_node(OpKind::Add, {x, o}, {}, "h1", DType::F32, {T, F(H)});
    auto fn = g.add_node(OpKind::RmsNorm, {h1, w("ffn_norm", {H}, 0.5f, 1.5f)}, {{"eps", 1e-5}}, "fn", DType::F32,
                         {T, F(H)});
    auto gt = g.add_node(OpKind::MatMul, {fn, w("wg", {Fd, H})}, {}, "gate", DType::F32, {T, F(Fd)});
    auto up = g.add_node(OpKind::MatMul, {fn, w("wu", {Fd, H})}, {}, "up", DType::F32, {T, F(Fd)});
    auto sg = g.add_node(OpKind::SwiGlu, {gt, up}, {}, "sg", DType::F32, {T, F(Fd)});
    auto dn = g.add_node(OpKind::MatMul, {sg, w("wd", {H, Fd})}, {}, "down", DType::F32, {T, F(H)});
    auto h2 = g.add_node(OpKind::Add, {h1, dn}, {}, "h2", DType::F32, {T, F(H)});
    auto on = g.add_node(OpKind::RmsNorm, {h2, w("out_norm", {H}, 0.5f, 1.5f)}, {{"eps", 1e-5}}, "on", DType::F32,
                         {T, F(H)});
    auto last = g.add_node(OpKind::LastRow, {on}, {}, "last", DType::F32, {F(1), F(H)});
    auto logits = g.add_node(OpKind::MatMul, {last, emb}, {}, "logits", DType::F32, {F(1), F(V)});
    auto next = g.add_node(OpKind::ArgMax, {logits}, {}, "next", DType::I32, {F(1)});
    g.mark_output(logits);
    g.mark_output(next);
  }
  static std::map<std::string, Tensor> step(std::vector<int32_t> toks, int32_t start) {
    std::vector<int32_t> p;
    for (size_t i = 0; i < toks.size(); ++i) p.push_back(start + int32_t(i));
    return {{"tokens", Tensor::from_i32(toks)}, {"positions", Tensor::from_i32(p)}};
  }
};

TEST(Interp, KvCachePromptAtOnceEqualsTokenByToken) {
  TinyModel m;
  ASSERT_NO_THROW(verify(m.g));
  std::vector<int32_t> prompt = {1, 5, 9, 2, 36, 0, 17};
  Interpreter all(m.g, m.ws.source());
  auto a = all.run(TinyModel::step(prompt, 0));
  Interpreter one(m.g, m.ws.source());
  std::map<std::string, Tensor> b;
  for (size_t i = 0; i < prompt.size(); ++i) b = one.run(TinyModel::step({prompt[i]}, int32_t(i)));
  ASSERT_EQ(a["logits"].shape, (std::vector<int64_t>{1, TinyModel::V}));
  ASSERT_EQ(b["logits"].f32.size(), a["logits"].f32.size());
  for (size_t i = 0; i < a["logits"].f32.size(); ++i)
    EXPECT_NEAR(b["logits"].f32[i], a["logits"].f32[i], 1e-5 * std::max(1.0f, std::fabs(a["logits"].f32[i])));
  EXPECT_EQ(a["next"].i32, b["next"].i32);

  // Continue both by one token: identical logits again (the caches agree).
  auto a2 = all.run(TinyModel::step({4}, int32_t(prompt.size())));
  auto b2 = one.run(TinyModel::step({4}, int32_t(prompt.size())));
  for (size_t i = 0; i < a2["logits"].f32.size(); ++i)
    EXPECT_NEAR(b2["logits"].f32[i], a2["logits"].f32[i], 1e-5 * std::max(1.0f, std::fabs(a2["logits"].f32[i])));

  // Without the cache the last token alone gives different logits, so the
  // state really persisted; after reset_state() it matches a fresh run.
  Interpreter fresh(m.g, m.ws.source());
  auto f = fresh.run(TinyModel::step({17}, 0));
  double diff = 0;
  for (size_t i = 0; i < f["logits"].f32.size(); ++i) diff += std::fabs(f["logits"].f32[i] - a["logits"].f32[i]);
  EXPECT_GT(diff, 1e-3);
  all.reset_state();
  auto r = all.run(TinyModel::step({17}, 0));
  EXPECT_EQ(r["logits"].f32, f["logits"].f32);
  // The cache holds the bound's rows; rows beyond what was written stay zero.
  const Tensor* kc = all.last_value("ks");
  ASSERT_NE(kc, nullptr);
  EXPECT_EQ(kc->shape, (std::vector<int64_t>{TinyModel::Cmax, TinyModel::nkv * TinyModel::hd}));
  for (int64_t i = TinyModel::nkv * TinyModel::hd; i < kc->numel(); ++i) ASSERT_EQ(kc->f32[i], 0.0f);
}

TEST(Interp, InputChecking) {
  TinyModel m;
  Interpreter in(m.g, m.ws.source());
  // Missing input.
  EXPECT_THROW(in.run({{"tokens", Tensor::from_i32({1})}}), Error);
  // Unknown input name.
  auto s = TinyModel::step({1}, 0);
  s["bogus"] = Tensor::from_i32({1});
  EXPECT_THROW(in.run(s), Error);
  // tokens and positions disagree on the symbolic dim.
  EXPECT_THROW(in.run({{"tokens", Tensor::from_i32({1, 2})}, {"positions", Tensor::from_i32({0})}}), Error);
  // Longer than the bound.
  EXPECT_THROW(in.run(TinyModel::step(std::vector<int32_t>(TinyModel::Tmax + 1, 1), 0)), Error);
  // Position past the KV cache.
  EXPECT_THROW(in.run(TinyModel::step({1}, int32_t(TinyModel::Cmax))), Error);
  // Wrong dtype.
  Tensor f;
  f.shape = {1};
  f.f32 = {1.0f};
  EXPECT_THROW(in.run({{"tokens", f}, {"positions", Tensor::from_i32({0})}}), Error);
  // A valid call still works afterwards.
  EXPECT_NO_THROW(in.run(TinyModel::step({1, 2}, 0)));
}

// kv_store into an f16 / bf16 cache keeps what the GPU's store keeps: each
// value rounded to nearest even (ties to even, overflow to inf, subnormals).
TEST(Interp, KvStoreRoundsToTheCacheDtype) {
  const float two11 = std::ldexp(1.0f, -11), two8 = std::ldexp(1.0f, -8);
  const std::vector<float> x = {1.0f + two11,              // f16 tie -> 1 (even)
                                1.0f + 3 * two11 / 2,      // f16 above the tie -> 1 + 2^-10
                                1.0f + 3 * two11,          // f16 tie -> 1 + 2^-9 (even mantissa)
                                70000.0f,                  // f16 overflow -> inf
                                1e-6f,                     // f16 subnormal
                                -2.5f,                     // exact
                                1.0f + two8,               // bf16 tie -> 1
                                1.0f + 3 * two8};          // bf16 tie -> 1 + 2^-6
  const std::map<DType, std::vector<float>> want = {
      {DType::F16, {1.0f, 1.0f + 2 * two11, 1.0f + 4 * two11, INFINITY, fp16_to_fp32(fp32_to_fp16(1e-6f)), -2.5f,
                    1.0f + two8, 1.0f + 3 * two8}},
      {DType::BF16, {1.0f, 1.0f, 1.0f, 70144.0f, bf16_to_fp32(fp32_to_bf16(1e-6f)), -2.5f, 1.0f, 1.0f + 4 * two8}},
      {DType::F32, x}};
  for (const auto& [dt, w] : want) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    Graph g;
    const int64_t W = static_cast<int64_t>(x.size());
    auto cache = g.add_state("cache", dt, {F(4), F(W)});
    auto xi = g.add_input("x", DType::F32, {F(1), F(W)});
    auto pos = g.add_input("pos", DType::I32, {F(1)});
    auto y = g.add_node(OpKind::KvStore, {cache, xi, pos}, {}, "cache_out", dt, {F(4), F(W)});
    g.mark_output(y);
    Interpreter in(g, WeightStore{}.source());
    auto out = in.run({{"x", f32_tensor({1, W}, x)}, {"pos", Tensor::from_i32({2})}});
    const auto& c = out["cache_out"].f32;
    for (int64_t i = 0; i < W; ++i) {
      EXPECT_EQ(c[size_t(2 * W + i)], w[size_t(i)]) << "element " << i;
      EXPECT_EQ(c[size_t(2 * W + i)], round_to_dtype(dt, x[size_t(i)])) << "element " << i;
      EXPECT_EQ(c[size_t(i)], 0.0f);  // rows not written stay zero
    }
  }
}

// rope_store rounds its k and v rows the same way: the fused op into an f16
// cache equals rope + kv_store into an f16 cache, bit for bit, and the cache
// differs from the f32 one by f16 rounding only.
TEST(Interp, RopeStoreRoundsToTheCacheDtype) {
  const int64_t nh = 2, nkv = 1, hd = 8, T = 3, C = 6;
  std::mt19937 rng(5);
  const auto qkv = rand_vec(size_t(T * (nh + 2 * nkv) * hd), rng, -3, 3);
  Attrs a{{"n_heads", nh}, {"head_dim", hd}, {"n_rot", hd}, {"theta", 10000.0}, {"mode", std::string("neox")}};
  std::map<DType, std::vector<float>> kcache, vcache;
  for (DType dt : {DType::F16, DType::F32}) {
    Graph g;
    auto xi = g.add_input("qkv", DType::F32, {F(T), F((nh + 2 * nkv) * hd)});
    auto pos = g.add_input("pos", DType::I32, {F(T)});
    auto kc = g.add_state("kc", dt, {F(C), F(nkv * hd)});
    auto vc = g.add_state("vc", dt, {F(C), F(nkv * hd)});
    Attrs fa = a;
    fa["n_kv_heads"] = nkv;
    auto q = g.add_node(OpKind::RopeStore, {xi, pos, kc, vc}, fa, "q", DType::F32, {F(T), F(nh * hd)});
    for (const char* name : {"kc_out", "vc_out"}) {  // outputs 1, 2: the caches updated in place
      Value cv;
      cv.id = static_cast<ValueId>(g.values().size());
      cv.name = name;
      cv.dtype = dt;
      cv.shape = {F(C), F(nkv * hd)};
      g.mutable_values().push_back(cv);
      g.nodes()[0].outputs.push_back(cv.id);
    }
    g.mark_output(q);
    Interpreter in(g, WeightStore{}.source());
    in.run({{"qkv", f32_tensor({T, (nh + 2 * nkv) * hd}, qkv)}, {"pos", Tensor::from_i32({1, 2, 3})}});
    kcache[dt] = in.last_value("kc")->f32;
    vcache[dt] = in.last_value("vc")->f32;
  }
  for (size_t i = 0; i < kcache[DType::F32].size(); ++i) {
    EXPECT_EQ(kcache[DType::F16][i], round_to_dtype(DType::F16, kcache[DType::F32][i])) << i;
    EXPECT_EQ(vcache[DType::F16][i], round_to_dtype(DType::F16, vcache[DType::F32][i])) << i;
  }
  // the unfused chain into f16 caches: the same k rows
  Graph g;
  auto kin = g.add_input("k", DType::F32, {F(T), F(nkv * hd)});
  auto pos = g.add_input("pos", DType::I32, {F(T)});
  Attrs ka = a;
  ka["n_heads"] = nkv;
  auto kr = g.add_node(OpKind::Rope, {kin, pos}, ka, "kr", DType::F32, {F(T), F(nkv * hd)});
  auto kc = g.add_state("kc", DType::F16, {F(C), F(nkv * hd)});
  auto ks = g.add_node(OpKind::KvStore, {kc, kr, pos}, {}, "ks", DType::F16, {F(C), F(nkv * hd)});
  g.mark_output(ks);
  std::vector<float> k(size_t(T * nkv * hd));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < nkv * hd; ++i)
      k[size_t(t * nkv * hd + i)] = qkv[size_t(t * (nh + 2 * nkv) * hd + nh * hd + i)];
  Interpreter in(g, WeightStore{}.source());
  auto out = in.run({{"k", f32_tensor({T, nkv * hd}, k)}, {"pos", Tensor::from_i32({1, 2, 3})}});
  EXPECT_EQ(out["ks"].f32, kcache[DType::F16]);
}

// attention's optional scratch (input 4, the split-decode-attention pass's
// state) is GPU workspace: the result is the same as without it, output 1 is
// the scratch updated in place, and the verifier checks its type.
TEST(Interp, AttentionScratchChangesNothing) {
  const int64_t T = 2, C = 8, nh = 4, nkv = 2, hd = 8;
  std::mt19937 rng(9);
  const auto qv = rand_vec(T * nh * hd, rng), kv = rand_vec(C * nkv * hd, rng), vv = rand_vec(C * nkv * hd, rng);
  const Attrs a{{"n_heads", nh}, {"n_kv_heads", nkv}, {"head_dim", hd}, {"scale", 0.35}};
  std::vector<std::vector<float>> results;
  for (bool scratch : {false, true}) {
    Graph g;
    auto q = g.add_input("q", DType::F32, {F(T), F(nh * hd)});
    auto k = g.add_input("k", DType::F16, {F(C), F(nkv * hd)});
    auto v = g.add_input("v", DType::F16, {F(C), F(nkv * hd)});
    auto pos = g.add_input("pos", DType::I32, {F(T)});
    std::vector<ValueId> ins = {q, k, v, pos};
    if (scratch) ins.push_back(g.add_state("scratch", DType::F32, {F(100)}));
    auto o = g.add_node(OpKind::Attention, ins, a, "o", DType::F32, {F(T), F(nh * hd)});
    if (scratch) {
      Value sv;
      sv.id = static_cast<ValueId>(g.values().size());
      sv.name = "scratch_out";
      sv.shape = {F(100)};
      g.mutable_values().push_back(sv);
      g.nodes()[0].outputs.push_back(sv.id);
    }
    g.mark_output(o);
    ASSERT_NO_THROW(verify(g));
    Interpreter in(g, WeightStore{}.source());
    auto out = in.run({{"q", f32_tensor({T, nh * hd}, qv)},
                       {"k", f32_tensor({C, nkv * hd}, kv)},
                       {"v", f32_tensor({C, nkv * hd}, vv)},
                       {"pos", Tensor::from_i32({5, 6})}});
    results.push_back(out["o"].f32);
    if (scratch) {
      ASSERT_NE(in.last_value("scratch_out"), nullptr);
      EXPECT_EQ(in.last_value("scratch_out"), in.last_value("scratch"));  // the same tensor: updated in place
      // the verifier: the scratch is an f32 State, and the node then has its second output
      Graph bad = g;
      bad.mutable_values()[size_t(bad.nodes()[0].inputs[4])].dtype = DType::F16;
      EXPECT_THROW(verify(bad), Error);
      Graph one_out = g;
      one_out.nodes()[0].outputs.pop_back();
      EXPECT_THROW(verify(one_out), Error);
    }
  }
  EXPECT_EQ(results[0], results[1]);
}

}  // namespace
}  // namespace kiln::ir
