// q8-activations (the decode pipeline) and the x_q8 semantics it relies on:
// the 16-value activation quantiser (ir/quantize.h), the interpreter's x_q8
// matmuls (the oracle of the compiled decode GEMVs) and the verifier's rules.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "compiler/passes/passes.h"
#include "compiler/passes/pipeline.h"
#include "ir/dequant.h"
#include "ir/error.h"
#include "ir/graph.h"
#include "ir/interpreter.h"
#include "ir/quantize.h"

namespace {
using namespace kiln::ir;

TEST(ActQ8, BlockQuantiserRoundsToNearestEvenWithAmaxScale) {
  float v[16] = {1.0f, -0.5f, 0.25f, 0.0f, -1.0f, 0.7f, 0.001f, -0.3f,
                 0.9f, 0.1f, -0.11f, 0.5f, 0.25f, -0.75f, 0.6f, -0.2f};
  int8_t q[16];
  float d = -1;
  act_q8_block(v, q, &d);
  EXPECT_EQ(d, 1.0f / 127.0f);
  for (int i = 0; i < 16; ++i) {
    const float want = std::nearbyint(v[i] * (127.0f / 1.0f));
    EXPECT_EQ(q[i], static_cast<int8_t>(want)) << i;
  }
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[4], -127);
  EXPECT_EQ(q[1], -64);  // -63.5 -> -64 (ties to even)
  // an all-zero block: zero quants and scale
  float z[16] = {};
  act_q8_block(z, q, &d);
  EXPECT_EQ(d, 0.0f);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(q[i], 0);
}

TEST(ActQ8, RoundTripErrorIsHalfAStepPerBlock) {
  SplitMix64 rng(3);
  std::vector<float> v(256), r;
  for (size_t i = 0; i < v.size(); ++i) v[i] = (2.0f * rng.uniform() - 1.0f) * (i < 128 ? 0.01f : 30.0f);
  r = v;
  act_q8_roundtrip(r.data(), static_cast<int64_t>(r.size()));
  bool changed = false;
  for (size_t b = 0; b < v.size(); b += 16) {
    float amax = 0;
    for (size_t i = b; i < b + 16; ++i) amax = std::max(amax, std::fabs(v[i]));
    for (size_t i = b; i < b + 16; ++i) {
      EXPECT_LE(std::fabs(r[i] - v[i]), 0.5001f * amax / 127.0f) << i;
      changed |= r[i] != v[i];
    }
  }
  EXPECT_TRUE(changed);
  std::vector<float> odd(20);
  EXPECT_THROW(act_q8_roundtrip(odd.data(), 20), kiln::Error);
}

const std::string kDecode = R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 64]
  weight %g : f32[64] = "g"
  weight %wq : q4_k[32, 256] = "wq"
  weight %w0 : q4_0[48, 64] = "w0"
  weight %wf : f16[48, 64] = "wf"
  weight %w6 : q6_k[8, 256] = "w6"
  weight %w5 : q5_0[48, 64] = "w5"
  weight %w51 : q5_1[48, 64] = "w51"
  weight %wk5 : q5_k[48, 256] = "wk5"
  input %x2 : f32[tokens, 256]
  %a : f32[tokens, 48] = rms_matmul(%x, %g, %w0) {eps = 1e-05}
  %b : f32[tokens, 48] = matmul(%x, %wf)
  %c : f32[tokens, 48] = matmul_add(%x, %w0, %a)
  %d : f32[tokens, 48] = matmul(%x, %w5)
  %e : f32[tokens, 48] = matmul(%x, %w51)
  %f : f32[tokens, 48] = matmul(%x2, %wk5)
  output %b
  output %c
  output %d
  output %e
  output %f
}
)";

TEST(Q8Activations, MarksQuantisedWeightsOnly) {
  Graph g = parse(kDecode);
  verify(g);
  ASSERT_TRUE(kiln::passes::q8_activations_pass().run(g));
  verify(g);
  EXPECT_EQ(g.nodes()[0].attr_int("x_q8"), 1);  // q4_0
  EXPECT_EQ(g.nodes()[1].attrs.count("x_q8"), 0u);  // f16 weight: f32 GEMV
  EXPECT_EQ(g.nodes()[2].attr_int("x_q8"), 1);
  EXPECT_EQ(g.nodes()[3].attr_int("x_q8"), 1);       // q5_0
  EXPECT_EQ(g.nodes()[4].attr_int("x_q8"), 1);       // q5_1
  EXPECT_EQ(g.nodes()[5].attrs.count("x_q8"), 0u);  // q5_K: no int8 kernel
  EXPECT_FALSE(kiln::passes::q8_activations_pass().run(g)) << "a second run changed the graph";
  const Graph d = kiln::passes::run_pipeline(parse(kDecode), kiln::passes::decode_pipeline(), {});
  EXPECT_EQ(print(d), print(g));
}

TEST(Q8Activations, VerifierRejectsWhatNoKernelComputes) {
  Graph g = parse(kDecode);
  g.nodes()[1].attrs["x_q8"] = int64_t{1};  // f16 weight
  EXPECT_THROW(verify(g), kiln::Error);
  Graph h = parse(kDecode);
  h.nodes()[0].attrs["x_q8"] = int64_t{2};
  EXPECT_THROW(verify(h), kiln::Error);
  Graph z = parse(kDecode);
  z.nodes()[0].attrs["x_q8"] = int64_t{0};
  EXPECT_NO_THROW(verify(z));
  Graph k = parse(kDecode);
  k.nodes()[5].attrs["x_q8"] = int64_t{1};  // q5_K weight
  EXPECT_THROW(verify(k), kiln::Error);
}

// The interpreter's x_q8 matmuls are the unmarked graph on quantised
// activations: matmul and matmul_add on q8(x); rms_matmul on q8(x * gain),
// scaled by the row's 1/rms afterwards.
TEST(Q8Activations, InterpreterQuantisesTheActivation) {
  const std::string src = R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 256]
  input %r : f32[tokens, 8]
  weight %g : f32[256] = "g"
  weight %w : q4_k[8, 256] = "w"
  %m : f32[tokens, 8] = matmul(%x, %w)
  %n : f32[tokens, 8] = rms_matmul(%x, %g, %w) {eps = 1e-05}
  %s : f32[tokens, 8] = matmul_add(%x, %w, %r)
  output %m
  output %n
  output %s
}
)";
  Graph g = parse(src);
  Graph q = g;
  ASSERT_TRUE(kiln::passes::q8_activations_pass().run(q));
  std::vector<uint8_t> wb;
  random_blocks(DType::Q4_K, 8 * 256, 11, wb);
  std::vector<float> gain(256);
  SplitMix64 rng(7);
  for (float& v : gain) v = 0.5f + rng.uniform();
  auto weights = [&](const std::string& name) {
    if (name == "g") return WeightData{DType::F32, {256}, reinterpret_cast<const uint8_t*>(gain.data()), 1024};
    return WeightData{DType::Q4_K, {8, 256}, wb.data(), wb.size()};
  };
  Tensor x = Tensor::zeros_f32({3, 256}), r = Tensor::zeros_f32({3, 8});
  for (float& v : x.f32) v = 2.0f * rng.uniform() - 1.0f;
  for (float& v : r.f32) v = rng.uniform();
  auto got = Interpreter(q, weights).run({{"x", x}, {"r", r}});
  auto ref = Interpreter(g, weights).run({{"x", x}, {"r", r}});
  // by hand: dequantised weights, quantised activations, double sums
  std::vector<float> w(8 * 256);
  dequantize(DType::Q4_K, wb.data(), w.data(), 8 * 256);
  double worst = 0, num = 0, den = 0, big = 0;
  for (int t = 0; t < 3; ++t) {
    std::vector<float> xq(x.f32.begin() + t * 256, x.f32.begin() + (t + 1) * 256), xg(256);
    double ss = 0;
    for (int k = 0; k < 256; ++k) {
      ss += double(xq[k]) * xq[k];
      xg[k] = xq[k] * gain[k];
    }
    act_q8_roundtrip(xq.data(), 256);
    act_q8_roundtrip(xg.data(), 256);
    const double inv = 1.0 / std::sqrt(ss / 256 + 1e-5);
    for (int n = 0; n < 8; ++n) {
      double m = 0, gg = 0;
      for (int k = 0; k < 256; ++k) {
        m += double(xq[k]) * w[n * 256 + k];
        gg += double(xg[k]) * w[n * 256 + k];
      }
      const size_t i = static_cast<size_t>(t * 8 + n);
      worst = std::max({worst, std::abs(m - got.at("m").f32[i]), std::abs(gg * inv - got.at("n").f32[i]),
                        std::abs(m + r.f32[i] - got.at("s").f32[i])});
      big = std::max({big, std::abs(m), std::abs(gg * inv)});
      num += std::pow(ref.at("m").f32[i] - got.at("m").f32[i], 2);
      den += std::pow(ref.at("m").f32[i], 2);
    }
  }
  EXPECT_LT(worst / big, 1e-6) << "x_q8 matmuls are the products of the quantised activation";
  const double rel = std::sqrt(num / den);
  EXPECT_GT(rel, 0.0) << "the activation was not quantised";
  EXPECT_LT(rel, 2e-2) << "int8 activations in 16-value blocks keep ~7 bits";
}

}  // namespace
