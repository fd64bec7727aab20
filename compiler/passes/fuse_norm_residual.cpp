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

// a whole-row rms_norm writing f32
bool plain_norm(const Graph& g, const Node& n) {
  return n.op == OpKind::RmsNorm && n.inputs.size() == 2 && n.outputs.size() == 1 && has_exactly_attrs(n, {"eps"}) &&
         g.value(n.outputs[0]).dtype == ir::DType::F32;
}

bool try_fuse(Graph& g, size_t add_i) {
  Uses u(g);
  const Node& add = g.nodes()[add_i];
  if (add.outputs.size() != 1 || g.value(add.outputs[0]).dtype != ir::DType::F32) return false;
  const std::optional<ResidualAdd> m = residual_add(g, u, add, plain_norm);
  if (!m) return false;
  const Node& norm = g.nodes()[m->def];
  const ValueId x = norm.inputs[0], w = norm.inputs[1], r = m->r, out = add.outputs[0];
  if (r == x) return false;
  const double eps = norm.attr_float("eps");
  Rewriter rw(g);
  rw.remove(m->def);
  rw.remove(add_i);
  rw.add(Node{OpKind::RmsNorm, {x, w, r}, {out}, {{"eps", eps}, {"residual", int64_t{1}}}});
  return rw.commit();
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::Add}, try_fuse); }

}  // namespace

Pass fuse_norm_residual_pass() {
  return {"fuse-norm-residual", "rms_norm + residual add -> rms_norm with the residual (one launch)", run};
}

}  // namespace kiln::passes
