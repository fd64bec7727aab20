// tensor-core-gemm: matmul-family nodes over the step's tokens become GEMMs on
// half-precision operands, which tensor cores (cuBLASLt) run. Applied to the
// graph of the compiled prefill programs only (decode keeps its fp32-x GEMVs).
//
//   y = matmul(x, w)                 ->  xh = cast(x); y = matmul(xh, wh)
//   y = matmul_add(x, w, r)          ->  xh = cast(x); y = matmul_add(xh, wh, r)
//   y = rms_matmul(x, g, w)          ->  n = rms_norm(x, g); xh = cast(n); y = matmul(xh, wh)
//   y = rms_matmul_swiglu(x, g, w)   ->  n = rms_norm(x, g); xh = cast(n);
//        (w = gate rows + up rows)       gate = matmul(xh, wh_gate); up = matmul(xh, wh_up);
//                                        y = swiglu(gate, up)
//
// wh is w itself when w is f16 or bf16 (xh then takes w's dtype), else
// dequant(w) -> f16, a temporary the memory planner places (so the fp16 copies
// of quantised weights share one small workspace, layer after layer). The
// SwiGLU weight is the concatenation "gate+up" made by fuse-gate-up-swiglu; its
// halves become weights of their own sources (views into the same blob). y
// keeps its value id and name. Nodes whose x rows are not the step's tokens
// (the LM head after last_row) are left alone, and so are shapes cuBLASLt's
// tensor-core kernels do not take (N or K not a multiple of 8).
//
// The casts and dequants are IR ops, so the interpreter rounds exactly where
// the GPU does: activations and weights to half precision, products exact in
// fp32, fp32 accumulation; only the summation order differs.
#include "compiler/gguf/weight_source.h"
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::DType;
using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

bool try_gemm(Graph& g, size_t i) {
  const Node n = g.nodes()[i];  // copy: the rewrite replaces it
  const bool rms = n.op == OpKind::RmsMatMul || n.op == OpKind::RmsMatMulSwiGlu;
  const bool swiglu = n.op == OpKind::RmsMatMulSwiGlu;
  const size_t wi = rms ? 2 : 1;
  if (n.outputs.size() != 1 || n.inputs.size() <= wi) return false;
  const ValueId x = n.inputs[0], w = n.inputs[wi];
  const ir::Value xv = g.value(x), wv = g.value(w);  // copies: new values may reallocate the table
  if (xv.dtype != DType::F32 || xv.shape.size() != 2 || xv.shape[0].sym != "tokens") return false;
  if (!is_weight(g, w) || wv.shape.size() != 2 || wv.dtype == DType::I32) return false;
  // cuBLASLt's tensor-core kernels want 16-byte aligned rows: N and K multiples
  // of 8 (F for the SwiGLU halves); anything else stays on the tiled kernel.
  const ir::Dim& K = xv.shape[1];
  if (!K.is_static() || K.value % 8 || !wv.shape[0].is_static() || wv.shape[0].value % (swiglu ? 16 : 8)) return false;
  const DType half = wv.dtype == DType::BF16 ? DType::BF16 : DType::F16;
  std::vector<std::string> parts;
  if (swiglu) {
    parts = gguf::split_weight_source(wv.source);
    if (parts.size() != 2 || !wv.shape[0].is_static() || wv.shape[0].value % 2) return false;
  }
  const ir::Shape xs = xv.shape;
  const std::string yname = g.value(n.outputs[0]).name;
  Rewriter rw(g);
  std::vector<Node> add;
  ValueId xin = x;
  if (rms) {
    xin = rw.new_temp(unique_name(g, yname + ".norm"), DType::F32, xs);
    add.push_back(Node{OpKind::RmsNorm, {x, n.inputs[1]}, {xin}, {{"eps", n.attr_float("eps")}}});
  }
  const ValueId xh = rw.new_temp(unique_name(g, yname + ".xh"), half, xs);
  add.push_back(Node{OpKind::Cast, {xin}, {xh}, {}});
  auto half_weight = [&](ValueId wid) -> ValueId {
    const ir::Value v = g.value(wid);
    if (v.dtype == half) return wid;
    const ValueId d = rw.new_temp(unique_name(g, v.name + ".f16"), half, v.shape);
    add.push_back(Node{OpKind::Dequant, {wid}, {d}, {}});
    return d;
  };
  if (swiglu) {
    const int64_t F = wv.shape[0].value / 2;
    const ir::Shape ws{ir::Dim::fixed(F), wv.shape[1]};
    const ValueId wg = rw.new_weight(unique_name(g, parts[0]), wv.dtype, ws, parts[0]);
    const ValueId wu = rw.new_weight(unique_name(g, parts[1]), wv.dtype, ws, parts[1]);
    const ir::Shape hs{xs[0], ir::Dim::fixed(F)};
    const ValueId gate = rw.new_temp(unique_name(g, yname + ".gate"), DType::F32, hs);
    const ValueId up = rw.new_temp(unique_name(g, yname + ".up"), DType::F32, hs);
    add.push_back(Node{OpKind::MatMul, {xh, half_weight(wg)}, {gate}, {}});
    add.push_back(Node{OpKind::MatMul, {xh, half_weight(wu)}, {up}, {}});
    const bool gelu = n.attrs.count("act") && n.attr_str("act") == "gelu_tanh";
    add.push_back(Node{gelu ? OpKind::GeGlu : OpKind::SwiGlu, {gate, up}, {n.outputs[0]}, {}});
  } else if (n.op == OpKind::MatMulAdd) {
    add.push_back(Node{OpKind::MatMulAdd, {xh, half_weight(w), n.inputs[2]}, {n.outputs[0]}, {}});
  } else {
    add.push_back(Node{OpKind::MatMul, {xh, half_weight(w)}, {n.outputs[0]}, {}});
  }
  rw.remove(i);
  for (auto& a : add) rw.add(std::move(a));
  return rw.commit();
}

bool run(Graph& g) {
  return rewrite_to_fixpoint(g, {OpKind::MatMul, OpKind::MatMulAdd, OpKind::RmsMatMul, OpKind::RmsMatMulSwiGlu},
                             try_gemm);
}

}  // namespace

Pass tensor_core_gemm_pass() {
  return {"tensor-core-gemm",
          "prefill matmuls -> GEMMs on f16/bf16 operands (cast activations, dequant quantised weights)", run};
}

std::vector<Pass> prefill_pipeline() { return {tensor_core_gemm_pass(), fold_cast_pass(), dce_pass()}; }

}  // namespace kiln::passes
