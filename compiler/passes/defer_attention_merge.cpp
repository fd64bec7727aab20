// defer-attention-merge (decode programs only): a split decode attention
// whose output feeds one matmul (the o projection's GEMV) leaves the merge of
// its split states to that GEMV
//
//   y, sc' = attention(q, k, v, pos, sc)          y, sc' = attention(q, k, v, pos, sc) {defer_merge = 1}
//   o = matmul_add(y, w, r)                 ->    o = matmul_add(y, w, r, sc') {x_merge = 1}
//   (or matmul; x_q8 or not)
//
// Merging in the attention launch (partial stores, a fence, a completion
// counter, the last block's loads and merge) is a chain of dependent memory
// round trips the next kernel waits behind; deferred, every block of the GEMV
// merges the states it needs right after its own wait, in one round of loads,
// into shared memory, then quantises x there or reads it as f32
// (codegen/kernels/att_defer.cuh). The value of every op is unchanged: the
// interpreter ignores the extra input, and both kernels read the split count
// from the step, so steps the attention does not split (or splits into more
// than the node's limit) still pass y as it is.
// Only where codegen::attention_defer_splits allows it (every GEMV block
// loads all of x's partial states from L2, so x may not be too wide: the
// 8B's 4096 values are not deferred).
#include "codegen/codegen.h"
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::OpKind;

bool run(Graph& g) {
  const Uses uses(g);
  bool changed = false;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const ir::Node& a = g.nodes()[i];
    if (a.op != OpKind::Attention || a.inputs.size() != 5 || a.outputs.size() != 2 || a.attrs.count("defer_merge"))
      continue;
    if (codegen::attention_defer_splits(a.attr_int("n_heads"), a.attr_int("head_dim")) == 0) continue;
    const ir::ValueId y = a.outputs[0];
    const ir::Node* c = uses.sole_consumer(g, y);
    if (c == nullptr || c->inputs.empty() || c->inputs[0] != y || c->attrs.count("x_merge")) continue;
    const size_t plain = c->op == OpKind::MatMul ? 2 : c->op == OpKind::MatMulAdd ? 3 : 0;
    if (plain == 0 || c->inputs.size() != plain) continue;
    bool y_once = true;
    for (size_t j = 1; j < c->inputs.size(); ++j) y_once = y_once && c->inputs[j] != y;
    if (!y_once) continue;
    const size_t ci = static_cast<size_t>(uses.def_index(c->outputs[0]));
    const ir::ValueId sc = a.outputs[1];
    g.nodes()[i].attrs["defer_merge"] = int64_t{1};
    g.nodes()[ci].inputs.push_back(sc);
    g.nodes()[ci].attrs["x_merge"] = int64_t{1};
    changed = true;
  }
  return changed;
}

}  // namespace

Pass defer_attention_merge_pass() {
  return {"defer-attention-merge",
          "split decode attention leaves the merge of its splits to the GEMV that reads its output (att_defer.cuh)",
          run};
}

}  // namespace kiln::passes
