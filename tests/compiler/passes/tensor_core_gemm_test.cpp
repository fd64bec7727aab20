// tensor-core-gemm (the prefill pipeline): golden before/after texts, the
// nodes it leaves alone, and interpreter semantics (the rewritten graph
// computes the fused graph's function with f16-rounded GEMM operands).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
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

// fold-cast (the prefill pipeline's second pass): the casts that feed the
// GEMMs disappear into the rms_norm and swiglu that make their activations.
TEST(FoldCast, PrefillPipelineGolden) {
  kiln::ir::Graph g = kiln::ir::parse(kBefore);
  g = kiln::passes::run_pipeline(g, kiln::passes::prefill_pipeline(), {});
  kiln::ir::verify(g);
  EXPECT_EQ(kiln::ir::print(g), R"(graph {
  sym tokens <= 16
  input %x : f32[tokens, 32]
  weight %ffn_norm.weight : f32[32] = "blk.0.ffn_norm.weight"
  %act.xh : f16[tokens, 32] = rms_norm(%x, %ffn_norm.weight) {eps = 1e-05}
  weight %blk.0.ffn_gate.weight : q4_0[8, 32] = "blk.0.ffn_gate.weight"
  %blk.0.ffn_gate.weight.f16 : f16[8, 32] = dequant(%blk.0.ffn_gate.weight)
  %act.gate : f32[tokens, 8] = matmul(%act.xh, %blk.0.ffn_gate.weight.f16)
  weight %blk.0.ffn_up.weight : q4_0[8, 32] = "blk.0.ffn_up.weight"
  %blk.0.ffn_up.weight.f16 : f16[8, 32] = dequant(%blk.0.ffn_up.weight)
  %act.up : f32[tokens, 8] = matmul(%act.xh, %blk.0.ffn_up.weight.f16)
  %y.xh : f16[tokens, 8] = swiglu(%act.gate, %act.up)
  weight %ffn_down.weight : f16[32, 8] = "blk.0.ffn_down.weight"
  %y : f32[tokens, 32] = matmul_add(%y.xh, %ffn_down.weight, %x)
  output %y
}
)");
}

// Casts of values something else also reads, and casts of other producers,
// stay; attention with the split-K scratch (f32 only) is never folded.
TEST(FoldCast, LeavesSharedValuesAndOtherProducersAlone) {
  const std::string before = R"(graph {
  sym tokens <= 16
  input %x : f32[tokens, 32]
  weight %g : f32[32] = "g"
  %n : f32[tokens, 32] = rms_norm(%x, %g) {eps = 1e-05}
  %nh : f16[tokens, 32] = cast(%n)
  %s : f32[tokens, 32] = add(%n, %x)
  %sh : f16[tokens, 32] = cast(%s)
  output %nh
  output %sh
}
)";
  kiln::ir::Graph g = kiln::ir::parse(before);
  EXPECT_FALSE(kiln::passes::fold_cast_pass().run(g));
  EXPECT_EQ(kiln::ir::print(g), kiln::ir::print(kiln::ir::parse(before)));
}

// Semantics: folding changes no value. Every output of the prefill pipeline
// equals, bit for bit, the graph with the casts left in (tensor-core-gemm
// alone), through rms_norm, swiglu and attention outputs written as f16.
TEST(FoldCast, InterpreterValuesUnchanged) {
  using namespace kiln::ir;
  const std::string src = R"(graph {
  sym kv_len <= 16
  sym tokens <= 8
  input %x : f32[tokens, 32]
  input %pos : i32[tokens]
  weight %g : f32[32] = "g"
  weight %wqkv : q8_0[64, 32] = "wqkv"
  %qkv : f32[tokens, 64] = rms_matmul(%x, %g, %wqkv) {eps = 1e-05}
  state %k_cache : f16[kv_len, 16]
  state %v_cache : f16[kv_len, 16]
  %q_rope : f32[tokens, 32], %k_cache_out : f16[kv_len, 16], %v_cache_out : f16[kv_len, 16] = rope_store(%qkv, %pos, %k_cache, %v_cache) {head_dim = 16, mode = "normal", n_heads = 2, n_kv_heads = 1, n_rot = 16, theta = 10000.0}
  %att : f32[tokens, 32] = attention(%q_rope, %k_cache_out, %v_cache_out, %pos) {head_dim = 16, n_heads = 2, n_kv_heads = 1, scale = 0.25}
  weight %wo : q8_0[32, 32] = "wo"
  %o : f32[tokens, 32] = matmul_add(%att, %wo, %x)
  weight %wgu : q8_0[64, 32] = "gate+up"
  %act : f32[tokens, 32] = rms_matmul_swiglu(%o, %g, %wgu) {eps = 1e-05}
  weight %wd : q8_0[32, 32] = "wd"
  %y : f32[tokens, 32] = matmul_add(%act, %wd, %o)
  output %y
}
)";
  Graph g = parse(src);
  verify(g);
  Graph casts = g;
  ASSERT_TRUE(kiln::passes::tensor_core_gemm_pass().run(casts));
  Graph folded = casts;
  ASSERT_TRUE(kiln::passes::fold_cast_pass().run(folded));
  verify(folded);
  const std::string text = print(folded);
  EXPECT_EQ(text.find("cast("), std::string::npos) << text;
  std::map<std::string, std::vector<uint8_t>> blobs;
  auto weights = [&](const std::string& name) {
    const bool gain = name == "g";
    const int64_t rows = name == "wqkv" || name == "gate+up" ? 64 : 32;
    auto& b = blobs[name];
    if (b.empty()) {
      if (gain) {
        b.resize(32 * 4);
        for (int i = 0; i < 32; ++i) {
          const float v = 1.0f + 0.01f * float(i);
          std::memcpy(b.data() + 4 * i, &v, 4);
        }
      } else {
        random_blocks(DType::Q8_0, rows * 32, std::hash<std::string>{}(name), b);
      }
    }
    if (gain) return WeightData{DType::F32, {32}, b.data(), b.size()};
    return WeightData{DType::Q8_0, {rows, 32}, b.data(), b.size()};
  };
  Tensor x;
  x.dtype = DType::F32;
  x.shape = {5, 32};
  SplitMix64 rng(11);
  for (int i = 0; i < 5 * 32; ++i) x.f32.push_back(static_cast<float>(2.0 * rng.uniform() - 1.0));
  Tensor pos = Tensor::from_i32({0, 1, 2, 3, 4});
  pos.shape = {5};
  const auto a = Interpreter(casts, weights).run({{"x", x}, {"pos", pos}}).at("y").f32;
  const auto b = Interpreter(folded, weights).run({{"x", x}, {"pos", pos}}).at("y").f32;
  ASSERT_EQ(a.size(), b.size());
  double norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i], b[i]) << "element " << i;
    norm += double(a[i]) * a[i];
  }
  EXPECT_GT(norm, 0.0) << "compared on zeros";
}

}  // namespace
