// dce: removes nodes none of whose outputs is used or a graph output, except
// nodes that update state in place (kv_store, rope_store: their effect is the
// cache write), then drops values nothing references any more (temps of the
// removed nodes, weights and states no node reads). Graph inputs are kept:
// they are the program's interface.
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

bool updates_state(const Node& n) {  // some output of this node is an input updated in place
  for (size_t j = 0; j < n.outputs.size(); ++j)
    if (ir::aliased_input(n, j) != ir::kNoValue) return true;
  return false;
}

bool run(Graph& g) {
  std::vector<char> live(g.values().size(), 0);
  for (ValueId o : g.outputs()) live[static_cast<size_t>(o)] = 1;
  const auto& nodes = g.nodes();
  std::vector<char> keep(nodes.size(), 0);
  for (size_t i = nodes.size(); i-- > 0;) {
    const Node& n = nodes[i];
    bool k = updates_state(n);
    for (ValueId o : n.outputs) k = k || live[static_cast<size_t>(o)];
    if (!k) continue;
    keep[i] = 1;
    for (ValueId in : n.inputs) live[static_cast<size_t>(in)] = 1;
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (keep[i]) kept.push_back(nodes[i]);
  bool changed = kept.size() != nodes.size();
  g.nodes() = std::move(kept);
  std::vector<ValueId> all;
  for (const auto& v : g.values()) all.push_back(v.id);
  changed |= drop_unreferenced(g, all) > 0;
  if (changed) canonicalize_ids(g);
  return changed;
}

}  // namespace

Pass dce_pass() {
  return {"dce", "removes unused nodes (state updates are kept) and unreferenced values", run};
}

}  // namespace kiln::passes
