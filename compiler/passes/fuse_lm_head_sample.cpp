// fuse-lm-head-sample: the end of the model
//
//   h = rms_norm(x, g);  l = last_row(h);  logits = matmul(l, w);  tok = argmax(logits)
//
// becomes  tok, logits = lm_head_sample(x, g, w)  (last row, norm, LM head,
// greedy sample in one op). Both outputs keep their value ids, so "logits"
// and the sampled token stay graph outputs under their names. The logits
// value must be called "logits" afterwards (the compile driver and the
// runtime find it by that name): it is renamed if that name is free, else
// the pattern is left alone.
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

bool try_fuse(Graph& g, size_t am_i) {
  Uses u(g);
  const Node& am = g.nodes()[am_i];
  if (am.op != OpKind::ArgMax || !am.attrs.empty() || am.outputs.size() != 1) return false;
  const ValueId logits = am.inputs[0];
  // logits may be a graph output, but argmax must be its only node user.
  if (u.consumers[static_cast<size_t>(logits)].size() != 1) return false;
  const Node* mm = u.def(g, logits);
  if (!mm || mm->op != OpKind::MatMul || !mm->attrs.empty() || !is_weight(g, mm->inputs[1])) return false;
  const ValueId last = mm->inputs[0];
  if (!u.single_use(last)) return false;
  const Node* lr = u.def(g, last);
  if (!lr || lr->op != OpKind::LastRow || !lr->attrs.empty()) return false;
  const ValueId h = lr->inputs[0];
  if (!u.single_use(h)) return false;
  const Node* norm = u.def(g, h);
  if (!norm || norm->op != OpKind::RmsNorm || !has_exactly_attrs(*norm, {"eps"})) return false;
  const ir::Value& lv = g.value(logits);
  if (lv.shape.size() != 2 || !lv.shape[0].is_static() || lv.shape[0].value != 1) return false;
  if (lv.name != "logits" && g.find_value("logits")) return false;

  const ValueId x = norm->inputs[0], gain = norm->inputs[1], w = mm->inputs[1], tok = am.outputs[0];
  const ir::Attrs attrs{{"eps", norm->attr_float("eps")}};
  const size_t rm[] = {am_i, static_cast<size_t>(u.def_index(logits)), static_cast<size_t>(u.def_index(last)),
                       static_cast<size_t>(u.def_index(h))};
  Rewriter rw(g);
  for (size_t r : rm) rw.remove(r);
  rw.add(Node{OpKind::LmHeadSample, {x, gain, w}, {tok, logits}, attrs});
  const std::string old_name = g.value(logits).name;
  g.value(logits).name = "logits";  // before commit(): it renumbers the values
  if (rw.commit()) return true;
  g.value(logits).name = old_name;
  return false;
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::ArgMax}, try_fuse); }

}  // namespace

Pass fuse_lm_head_sample_pass() {
  return {"fuse-lm-head-sample", "final rms_norm + last_row + LM head + argmax -> lm_head_sample", run};
}

}  // namespace kiln::passes
