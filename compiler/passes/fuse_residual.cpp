// fuse-residual: a matmul whose only user is a residual add
//
//   y = matmul(x, w);  z = add(r, y)   (or add(y, r))   ->   z = matmul_add(x, w, r)
//
// r must have the full shape of z (a [N] bias row is not a residual). z keeps
// its value id and name. fp32 addition commutes exactly, so operand order
// does not change the result.
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

bool plain_matmul(const Graph& g, const Node& n) {
  return n.op == OpKind::MatMul && n.attrs.empty() && is_weight(g, n.inputs[1]);
}

bool try_fuse(Graph& g, size_t add_i) {
  Uses u(g);
  const Node& add = g.nodes()[add_i];
  const std::optional<ResidualAdd> m = residual_add(g, u, add, plain_matmul);
  if (!m) return false;
  const Node& mm = g.nodes()[m->def];
  const ValueId x = mm.inputs[0], w = mm.inputs[1], r = m->r, out = add.outputs[0];
  Rewriter rw(g);
  rw.remove(m->def);
  rw.remove(add_i);
  rw.add(Node{OpKind::MatMulAdd, {x, w, r}, {out}, {}});
  return rw.commit();
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::Add}, try_fuse); }

}  // namespace

Pass fuse_residual_pass() {
  return {"fuse-residual", "matmul + residual add -> matmul_add (residual in the matmul epilogue)", run};
}

}  // namespace kiln::passes
