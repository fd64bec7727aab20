// split-decode-attention: gives every attention node the split-K scratch
//
//   y = attention(q, k, v, pos)   becomes   y, scratch' = attention(q, k, v, pos, scratch)
//
// `scratch` is one f32 State shared by every attention node, sized for the
// largest (codegen::attention_split_scratch_floats): layers run one after
// another, and a launch leaves nothing in it that the next one reads except its
// completion counters, which it leaves at zero (the arena is zeroed at load).
// With it, codegen lowers compiled steps of <= 4 rows (decode) to the split-K
// kernel (flash-decoding: blocks over the KV sequence, each covering a whole
// GQA group, the last block of a group merging the splits); prefill buckets and
// the eager programs (the unfused graph) keep one block per (head, token).
// A sliding-window layer's split kernel covers its window, read from its
// ring. Nodes whose geometry the split kernel does not take are left alone, and
// `--disable-pass split-decode-attention` gives the old kernel everywhere.
#include <algorithm>

#include "codegen/codegen.h"
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::OpKind;
using ir::ValueId;

bool run(Graph& g) {
  int64_t need = 0;
  std::vector<size_t> todo;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const ir::Node& n = g.nodes()[i];
    if (n.op != OpKind::Attention || n.inputs.size() != 4 || n.outputs.size() != 1) continue;
    const ir::Value& k = g.value(n.inputs[1]);
    if (k.shape.size() != 2) continue;
    const int64_t f = codegen::attention_split_scratch_floats(n.attr_int("n_heads"), n.attr_int("n_kv_heads"),
                                                              n.attr_int("head_dim"), k.shape[0].value);
    if (f <= 0) continue;
    need = std::max(need, f);
    todo.push_back(i);
  }
  if (todo.empty()) return false;
  const ir::Shape shape{ir::Dim::fixed(need)};
  const ValueId st = g.add_state(unique_name(g, "attn_split_scratch"), ir::DType::F32, shape);
  for (size_t i : todo) {
    ir::Value v;
    v.id = static_cast<ValueId>(g.values().size());
    v.name = unique_name(g, g.value(g.nodes()[i].outputs[0]).name + "_scratch");
    v.dtype = ir::DType::F32;
    v.shape = shape;
    v.kind = ir::ValueKind::Temp;
    g.mutable_values().push_back(v);
    g.nodes()[i].inputs.push_back(st);
    g.nodes()[i].outputs.push_back(v.id);
  }
  canonicalize_ids(g);
  return true;
}

}  // namespace

Pass split_decode_attention_pass() {
  return {"split-decode-attention",
          "attention gets the shared split-K scratch: decode steps split the KV sequence over blocks (flash-decoding)",
          run};
}

}  // namespace kiln::passes
