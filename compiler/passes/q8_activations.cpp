// q8-activations (decode programs only): every matmul-family node whose
// weight type has integer dot products reads its activation quantised to
// int8 in 16-value blocks (attr x_q8 = 1; ir/quantize.h)
//
//   y = matmul(x, w : q4_0|q4_1|q5_0|q5_1|q8_0|q4_k|q6_k)  ->  y = matmul(x, w) {x_q8 = 1}
//   (and matmul_add, rms_matmul, rms_matmul_swiglu, lm_head_sample)
//
// The GEMV then multiplies the packed weight quants by int8 activations with
// dp4a instead of dequantising every weight to f32 (kernels/gemv.cuh): about
// 1.5 instead of 15-20 instructions per 4-bit weight. The function of the
// graph changes by the activation rounding, which the interpreter models
// exactly (ir/interpreter.cpp), so it stays the oracle of the compiled
// decode program.
#include "compiler/passes/passes.h"
#include "ir/quantize.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::OpKind;

bool run(Graph& g) {
  bool changed = false;
  for (ir::Node& n : g.nodes()) {
    const ir::InputRange wr = ir::matmul_weight_inputs(g, n);
    if (wr.first == wr.last || n.attrs.count("x_q8")) continue;
    // every weight (an rms_matmul may have several: fuse-qkv-parts) must have integer dot products
    bool all_q8 = g.value(n.inputs[0]).dtype == ir::DType::F32;
    for (size_t i = wr.first; i < wr.last; ++i) all_q8 = all_q8 && ir::act_q8_weight(g.value(n.inputs[i]).dtype);
    if (!all_q8) continue;
    n.attrs["x_q8"] = int64_t{1};
    changed = true;
  }
  return changed;
}

}  // namespace

Pass q8_activations_pass() {
  return {"q8-activations",
          "decode matmuls on q4_0/q4_1/q5_0/q5_1/q8_0/q4_k/q6_k weights read int8-quantised activations (dp4a GEMVs)", run};
}

std::vector<Pass> decode_pipeline() {
  return {fuse_qkv_parts_pass(), q8_activations_pass(), fuse_qkv_rope_epilogue_pass(), defer_attention_merge_pass()};
}

}  // namespace kiln::passes
