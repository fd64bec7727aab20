// tensor-core-gemm (the prefill pipeline): golden before/after texts, the
// nodes it leaves alone, and interpreter semantics (the rewritten graph
// computes the fused graph's function with f16-rounded GEMM operands).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "compiler/passes/passes.h"
#include "compiler/passes/pipeline.h"
#include "ir/dequant.h"
#include "ir/graph.h"
#include "ir/interpreter.h"
#include "ir/quantize.h"

namespace {

using kiln::passes::tensor_core_gemm_pass;

std::string run(const std::string& before, bool* changed) {
  kiln::ir::Graph g = kiln::ir::parse(before);
  kiln::ir::verify(g);
  *changed = tensor_core_gemm_pass().run(g);
  kiln::ir::verify(g);
  const std::string text = kiln::ir::print(g);
  EXPECT_EQ(kiln::ir::print(kiln::ir::parse(text)), text);
  return text;
}

// A layer's FFN and output projection as the default pipeline leaves them.
const std::string kBefore = R"(graph {
  sym tokens <= 16
  input %x : f32[tokens, 32]
  weight %ffn_norm.weight : f32[32] = "blk.0.ffn_norm.weight"
  weight %ffn_gate_up.weight : q4_0[16, 32] = "blk.0.ffn_gate.weight+blk.0.ffn_up.weight"
  %act : f32[tokens, 8] = rms_matmul_swiglu(%x, %ffn_norm.weight, %ffn_gate_up.weight) {eps = 1e-05}
  weight %ffn_down.weight : f16[32, 8] = "blk.0.ffn_down.weight"
  %y : f32[tokens, 32] = matmul_add(%act, %ffn_down.weight, %x)
  output %y
}
)";

TEST(TensorCoreGemm, Golden) {
  bool changed = false;
  const std::string after = run(kBefore, &changed);
  EXPECT_TRUE(changed);
  EXPECT_EQ(after, R"(graph {
  sym tokens <= 16
  input %x : f32[tokens, 32]
  weight %ffn_norm.weight : f32[32] = "blk.0.ffn_norm.weight"
  %act.norm : f32[tokens, 32] = rms_norm(%x, %ffn_norm.weight) {eps = 1e-05}
  %act.xh : f16[tokens, 32] = cast(%act.norm)
  weight %blk.0.ffn_gate.weight : q4_0[8, 32] = "blk.0.ffn_gate.weight"
  %blk.0.ffn_gate.weight.f16 : f16[8, 32] = dequant(%blk.0.ffn_gate.weight)
  %act.gate : f32[tokens, 8] = matmul(%act.xh, %blk.0.ffn_gate.weight.f16)
  weight %blk.0.ffn_up.weight : q4_0[8, 32] = "blk.0.ffn_up.weight"
  %blk.0.ffn_up.weight.f16 : f16[8, 32] = dequant(%blk.0.ffn_up.weight)
  %act.up : f32[tokens, 8] = matmul(%act.xh, %blk.0.ffn_up.weight.f16)
  %act : f32[tokens, 8] = swiglu(%act.gate, %act.up)
  %y.xh : f16[tokens, 8] = cast(%act)
  weight %ffn_down.weight : f16[32, 8] = "blk.0.ffn_down.weight"
  %y : f32[tokens, 32] = matmul_add(%y.xh, %ffn_down.weight, %x)
  output %y
}
)");
}

// The LM head after last_row has one row whatever the step: it stays an fp32
// GEMV; so do matmuls already on half operands (the pass reaches a fixpoint).
TEST(TensorCoreGemm, LeavesFixedRowsAndHalfOperandsAlone) {
  const std::string before = R"(graph {
  sym tokens <= 16
  input %x : f32[tokens, 32]
  %last : f32[1, 32] = last_row(%x)
  weight %output_norm.weight : f32[32] = "output_norm.weight"
  weight %output.weight : q8_0[64, 32] = "output.weight"
  %logits : f32[1, 64] = rms_matmul(%last, %output_norm.weight, %output.weight) {eps = 1e-05}
  output %logits
}
)";
  bool changed = true;
  EXPECT_EQ(run(before, &changed), kiln::ir::print(kiln::ir::parse(before)));
  EXPECT_FALSE(changed);
  // N = 12 is no multiple of 8: the matmul stays on the CUDA-core tiled kernel
  const std::string odd = R"(graph {
  sym tokens <= 16
  input %x : f32[tokens, 32]
  weight %w : f16[12, 32] = "w"
  %y : f32[tokens, 12] = matmul(%x, %w)
  output %y
}
)";
  EXPECT_EQ(run(odd, &changed), kiln::ir::print(kiln::ir::parse(odd)));
  EXPECT_FALSE(changed);
  bool again = true;
  bool first = false;
  const std::string once = run(kBefore, &first);
  run(once, &again);
  EXPECT_FALSE(again) << "a second run changed the graph";
}

// Interpreter semantics: the rewritten graph is the original with its GEMM
// operands rounded to f16: close to it (f16 has 11 significant bits), and
// exactly what the original gives on pre-rounded operands.
TEST(TensorCoreGemm, InterpreterRoundsOperandsToF16) {
  using namespace kiln::ir;
  const std::string src = R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 32]
  weight %w : q8_0[64, 32] = "w"
  %y : f32[tokens, 64] = matmul(%x, %w)
  output %y
}
)";
  Graph g = parse(src);
  Graph t = g;
  ASSERT_TRUE(tensor_core_gemm_pass().run(t));
  std::vector<uint8_t> wbytes;
  random_blocks(DType::Q8_0, 64 * 32, 99, wbytes);
  auto weights = [&](const std::string&) { return WeightData{DType::Q8_0, {64, 32}, wbytes.data(), wbytes.size()}; };
  Tensor x;
  x.dtype = DType::F32;
  x.shape = {4, 32};
  SplitMix64 rng(5);
  for (int i = 0; i < 128; ++i) x.f32.push_back(static_cast<float>(2.0 * rng.uniform() - 1.0) / 3.0f);
  const auto ref = Interpreter(g, weights).run({{"x", x}}).at("y").f32;
  const auto got = Interpreter(t, weights).run({{"x", x}}).at("y").f32;
  // the same products by hand: round x and the dequantised w to f16, sum in double
  std::vector<float> w(64 * 32);
  dequantize(DType::Q8_0, wbytes.data(), w.data(), 64 * 32);
  double num = 0, den = 0, worst = 0;
  for (int r = 0; r < 4; ++r)
    for (int n = 0; n < 64; ++n) {
      double s = 0;
      for (int k = 0; k < 32; ++k)
        s += double(round_to_dtype(DType::F16, x.f32[r * 32 + k])) * double(round_to_dtype(DType::F16, w[n * 32 + k]));
      worst = std::max(worst, std::abs(s - got[r * 64 + n]));
      num += (ref[r * 64 + n] - got[r * 64 + n]) * double(ref[r * 64 + n] - got[r * 64 + n]);
      den += double(ref[r * 64 + n]) * ref[r * 64 + n];
    }
  EXPECT_LT(worst, 1e-5) << "the rewritten graph is the f16-operand GEMM";
  const double rel = std::sqrt(num / den);
  EXPECT_GT(rel, 0.0) << "the operands were not rounded";
  EXPECT_LT(rel, 2e-3) << "f16 operands keep ~11 bits";
}

}  // namespace
