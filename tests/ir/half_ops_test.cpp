// The half-precision GEMM operands (cast, dequant; matmul on f16/bf16 x):
// interpreter semantics (round to nearest even, exactly as the kernels'
// cvt.rn / f2bf) and verifier rules.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "ir/dequant.h"
#include "ir/graph.h"
#include "ir/interpreter.h"
#include "ir/quantize.h"

namespace kiln::ir {
namespace {

WeightSource no_weights() {
  return [](const std::string& s) -> WeightData { throw Error(ErrorCode::kInvalidArgument, "no weight " + s); };
}

TEST(HalfOps, CastRoundsToNearestEven) {
  for (DType h : {DType::F16, DType::BF16}) {
    Graph g;
    g.sym_bounds["tokens"] = 2;
    auto x = g.add_input("x", DType::F32, {Dim::symbolic("tokens", 2), Dim::fixed(4)});
    auto y = g.add_node(OpKind::Cast, {x}, {}, "y", h, {Dim::symbolic("tokens", 2), Dim::fixed(4)});
    g.mark_output(y);
    Tensor t;
    t.dtype = DType::F32;
    t.shape = {2, 4};
    // 1 + 2^-11 is halfway between f16 neighbours 1 and 1 + 2^-10: ties to even (1);
    // 1 + 3*2^-11 ties up to 1 + 2^-9; 70000 overflows f16 to inf; bf16 keeps 8 bits.
    t.f32 = {1.0f + std::ldexp(1.0f, -11), 1.0f + 3 * std::ldexp(1.0f, -11), 70000.f, -0.1f,
             1.0f + std::ldexp(1.0f, -8), 3.14159265f, -2.5f, 1e-8f};
    const auto out = Interpreter(g, no_weights()).run({{"x", t}}).at("y").f32;
    for (size_t i = 0; i < t.f32.size(); ++i) EXPECT_EQ(out[i], round_to_dtype(h, t.f32[i])) << i;
    if (h == DType::F16) {
      EXPECT_EQ(out[0], 1.0f);
      EXPECT_EQ(out[1], 1.0f + std::ldexp(1.0f, -9));
      EXPECT_TRUE(std::isinf(out[2]));
    } else {
      EXPECT_EQ(out[4], 1.0f);  // 1 + 2^-8: tie, to even
      EXPECT_EQ(out[2], 70144.f);
    }
  }
}

TEST(HalfOps, DequantIsTheWeightRoundedToHalf) {
  std::vector<uint8_t> bytes;
  random_blocks(DType::Q4_K, 8 * 256, 3, bytes);
  Graph g;
  auto w = g.add_weight("w", DType::Q4_K, {Dim::fixed(8), Dim::fixed(256)}, "w");
  auto y = g.add_node(OpKind::Dequant, {w}, {}, "y", DType::F16, {Dim::fixed(8), Dim::fixed(256)});
  g.mark_output(y);
  Interpreter in(g, [&](const std::string&) { return WeightData{DType::Q4_K, {8, 256}, bytes.data(), bytes.size()}; });
  const auto out = in.run({}).at("y").f32;
  std::vector<float> ref(8 * 256);
  dequantize(DType::Q4_K, bytes.data(), ref.data(), 8 * 256);
  int changed = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(out[i], fp16_to_fp32(fp32_to_fp16(ref[i]))) << i;
    changed += out[i] != ref[i];
  }
  EXPECT_GT(changed, 0) << "Q4_K values need more than f16's 11 bits: some must round";
}

TEST(HalfOps, VerifierRules) {
  auto graph = [](DType x_dt, DType w_dt, DType out_dt, OpKind op) {
    Graph g;
    g.sym_bounds["tokens"] = 4;
    auto x = g.add_input("x", x_dt, {Dim::symbolic("tokens", 4), Dim::fixed(32)});
    ValueId y;
    if (op == OpKind::Cast) {
      y = g.add_node(op, {x}, {}, "y", out_dt, {Dim::symbolic("tokens", 4), Dim::fixed(32)});
    } else if (op == OpKind::Dequant) {
      auto w = g.add_weight("w", w_dt, {Dim::fixed(8), Dim::fixed(32)}, "w");
      y = g.add_node(op, {w}, {}, "y", out_dt, {Dim::fixed(8), Dim::fixed(32)});
    } else {
      auto w = g.add_weight("w", w_dt, {Dim::fixed(8), Dim::fixed(32)}, "w");
      y = g.add_node(op, {x, w}, {}, "y", out_dt, {Dim::symbolic("tokens", 4), Dim::fixed(8)});
    }
    g.mark_output(y);
    return g;
  };
  EXPECT_NO_THROW(verify(graph(DType::F32, DType::F32, DType::F16, OpKind::Cast)));
  EXPECT_NO_THROW(verify(graph(DType::F32, DType::F32, DType::BF16, OpKind::Cast)));
  EXPECT_THROW(verify(graph(DType::F32, DType::F32, DType::F32, OpKind::Cast)), Error);  // not a half type
  EXPECT_THROW(verify(graph(DType::F16, DType::F32, DType::F16, OpKind::Cast)), Error);  // x must be f32
  EXPECT_NO_THROW(verify(graph(DType::F32, DType::Q8_0, DType::F16, OpKind::Dequant)));
  EXPECT_THROW(verify(graph(DType::F32, DType::Q8_0, DType::F32, OpKind::Dequant)), Error);
  EXPECT_NO_THROW(verify(graph(DType::F16, DType::F16, DType::F32, OpKind::MatMul)));
  EXPECT_NO_THROW(verify(graph(DType::BF16, DType::BF16, DType::F32, OpKind::MatMul)));
  EXPECT_THROW(verify(graph(DType::F16, DType::Q8_0, DType::F32, OpKind::MatMul)), Error);  // GEMM: one half type
  EXPECT_THROW(verify(graph(DType::F16, DType::BF16, DType::F32, OpKind::MatMul)), Error);
}

}  // namespace
}  // namespace kiln::ir
