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

bool try_fuse(Graph& g, size_t add_i) {
  Uses u(g);
  const Node& add = g.nodes()[add_i];
  if (add.op != OpKind::Add || !add.attrs.empty() || add.outputs.size() != 1) return false;
  const ir::Value& z = g.value(add.outputs[0]);
  for (int s : {1, 0}) {  // prefer the right operand (the frontend writes add(residual, proj))
    ValueId y = add.inputs[static_cast<size_t>(s)], r = add.inputs[static_cast<size_t>(1 - s)];
    if (y == r || !u.single_use(y)) continue;
    const Node* mm = u.def(g, y);
    if (!mm || mm->op != OpKind::MatMul || !mm->attrs.empty() || !is_weight(g, mm->inputs[1])) continue;
    const ir::Value& rv = g.value(r);
    if (rv.dtype != ir::DType::F32 || !same_shape(rv.shape, z.shape) || !same_shape(g.value(y).shape, z.shape))
      continue;
    const ValueId x = mm->inputs[0], w = mm->inputs[1], out = add.outputs[0];
    const size_t mm_i = static_cast<size_t>(u.def_index(y));
    Rewriter rw(g);
    rw.remove(mm_i);
    rw.remove(add_i);
    rw.add(Node{OpKind::MatMulAdd, {x, w, r}, {out}, {}});
    return rw.commit();
  }
  return false;
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::Add}, try_fuse); }

}  // namespace

Pass fuse_residual_pass() {
  return {"fuse-residual", "matmul + residual add -> matmul_add (residual in the matmul epilogue)", run};
}

}  // namespace kiln::passes
