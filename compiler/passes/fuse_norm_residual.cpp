// fuse-norm-residual: a whole-row rms_norm whose only user is a residual add
// (Gemma 3's post-attention and post-feed-forward norms)
//
//   y = rms_norm(x, w) {eps};  z = add(r, y)   (or add(y, r))
//     ->   z = rms_norm(x, w, r) {eps, residual = 1}
//
// One launch instead of two, and y never goes through memory. r must have
// the full shape of z. z keeps its value id and name; the kernel adds r to
// the finished norm, and fp32 addition commutes exactly, so the result is
// bit for bit the add's.
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
  if (z.dtype != ir::DType::F32) return false;
  for (int s : {1, 0}) {  // the frontend writes add(residual, norm)
    const ValueId y = add.inputs[static_cast<size_t>(s)], r = add.inputs[static_cast<size_t>(1 - s)];
    if (y == r || !u.single_use(y)) continue;
    const Node* norm = u.def(g, y);
    if (!norm || norm->op != OpKind::RmsNorm || norm->inputs.size() != 2 || norm->outputs.size() != 1 ||
        !has_exactly_attrs(*norm, {"eps"}))
      continue;
    const ir::Value& rv = g.value(r);
    if (rv.dtype != ir::DType::F32 || !same_shape(rv.shape, z.shape) || !same_shape(g.value(y).shape, z.shape) ||
        g.value(y).dtype != ir::DType::F32)
      continue;
    const ValueId x = norm->inputs[0], w = norm->inputs[1], out = add.outputs[0];
    if (r == x) continue;
    const double eps = norm->attr_float("eps");
    const size_t norm_i = static_cast<size_t>(u.def_index(y));
    Rewriter rw(g);
    rw.remove(norm_i);
    rw.remove(add_i);
    rw.add(Node{OpKind::RmsNorm, {x, w, r}, {out}, {{"eps", eps}, {"residual", int64_t{1}}}});
    return rw.commit();
  }
  return false;
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::Add}, try_fuse); }

}  // namespace

Pass fuse_norm_residual_pass() {
  return {"fuse-norm-residual", "rms_norm + residual add -> rms_norm with the residual (one launch)", run};
}

}  // namespace kiln::passes
