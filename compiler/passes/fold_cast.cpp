// fold-cast: a cast to f16/bf16 of an activation that nothing else reads is
// folded into the node that makes the activation, which then writes half
// precision itself
//
//   a = rms_norm(x, g) | swiglu(gate, up) | geglu(gate, up) | attention(q, k, v, pos)
//   ah = cast(a)                              ->   ah = <same op>(...) : f16
//
// One kernel launch and one fp32 round trip of the activation fewer per cast
// (the prefill graphs have three per layer). The interpreter rounds such an
// output exactly as the cast did (ir/interpreter.cpp), so the function of the
// graph is unchanged. Only the f32-output form of attention (no split-K
// scratch) is folded. ah keeps its value id and name.
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::DType;
using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

bool foldable(const Node& n) {
  if (n.outputs.size() != 1) return false;
  return (n.op == OpKind::RmsNorm && n.inputs.size() == 2) || n.op == OpKind::SwiGlu || n.op == OpKind::GeGlu ||
         (n.op == OpKind::Attention && n.inputs.size() == 4);
}

bool try_fold(Graph& g, size_t cast_i) {
  Uses u(g);
  const Node& cast = g.nodes()[cast_i];
  if (cast.op != OpKind::Cast || !cast.attrs.empty() || cast.inputs.size() != 1 || cast.outputs.size() != 1) return false;
  const ValueId a = cast.inputs[0], ah = cast.outputs[0];
  const DType to = g.value(ah).dtype;
  if ((to != DType::F16 && to != DType::BF16) || g.value(a).dtype != DType::F32 || !u.single_use(a)) return false;
  const int pi = u.def_index(a);
  if (pi < 0 || !foldable(g.nodes()[static_cast<size_t>(pi)])) return false;
  Node folded = g.nodes()[static_cast<size_t>(pi)];
  folded.outputs = {ah};
  Rewriter rw(g);
  rw.remove(static_cast<size_t>(pi));
  rw.remove(cast_i);
  rw.add(std::move(folded));
  return rw.commit();
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::Cast}, try_fold); }

}  // namespace

Pass fold_cast_pass() {
  return {"fold-cast", "cast to f16/bf16 of an rms_norm, swiglu, geglu or attention output -> that op writes half precision",
          run};
}

}  // namespace kiln::passes
