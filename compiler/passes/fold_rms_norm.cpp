// fold-rms-norm: an rms_norm read only by matmuls (as their activation input)
//
//   h = rms_norm(x, g);  y_i = matmul(h, w_i)   ->   y_i = rms_matmul(x, g, w_i)
//
// Each fused matmul recomputes the row norm; the interpreter computes it the
// same way in both forms, kernels up to float summation order. The y_i keep
// their value ids and names.
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

bool try_fold(Graph& g, size_t norm_i) {
  Uses u(g);
  const Node& norm = g.nodes()[norm_i];
  if (norm.op != OpKind::RmsNorm || !has_exactly_attrs(norm, {"eps"}) || norm.outputs.size() != 1) return false;
  const ValueId h = norm.outputs[0];
  const auto& users = u.consumers[static_cast<size_t>(h)];
  if (users.empty() || u.is_output[static_cast<size_t>(h)]) return false;
  for (size_t c : users) {
    const Node& m = g.nodes()[c];
    if (m.op != OpKind::MatMul || !m.attrs.empty() || m.inputs[0] != h || m.inputs[1] == h ||
        !is_weight(g, m.inputs[1]))
      return false;
  }
  const ir::Attrs attrs{{"eps", norm.attr_float("eps")}};
  const ValueId x = norm.inputs[0], gain = norm.inputs[1];
  Rewriter rw(g);
  rw.remove(norm_i);
  for (size_t c : users) {
    const Node& m = g.nodes()[c];
    rw.remove(c);
    rw.add(Node{OpKind::RmsMatMul, {x, gain, m.inputs[1]}, {m.outputs[0]}, attrs});
  }
  return rw.commit();
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::RmsNorm}, try_fold); }

}  // namespace

Pass fold_rms_norm_pass() {
  return {"fold-rms-norm", "rms_norm read only by matmuls -> rms_matmul in each of them", run};
}

}  // namespace kiln::passes
