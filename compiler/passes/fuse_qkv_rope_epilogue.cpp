// fuse-qkv-rope-epilogue (decode program only): the attention input of a
// llama layer after fuse-qkv-rope-store / fuse-qkv-parts, fold-rms-norm and
// q8-activations
//
//   qkv = rms_matmul(x, g, w [, wk, wv]) {eps [, x_q8]}
//   q', kc', vc' = rope_store(qkv, pos, kc, vc [, ff]) {n_heads, n_kv_heads, head_dim, n_rot, theta, mode = "normal"}
//
// becomes one node, the projection with rope_store as its epilogue:
//
//   q', kc', vc' = rms_matmul_rope_store(x, pos, kc, vc, g, w [, wk, wv] [, ff]) {the attrs of both}
//
// q', kc', vc' keep their value ids and names, so their users are unchanged;
// qkv goes away (it must have no other user and not be a graph output). The
// op is defined as rope_store(rms_matmul(...)) and the interpreter computes it
// with the code of those two ops, so the graph computes exactly the same
// numbers. The decode GEMV runs it as one kernel: each column group ropes its
// pairs of output columns and writes the k and v rows into the caches, which
// saves rope_store's launch and the qkv round trip through memory.
//
// Only mode "normal": it ropes the pairs of adjacent columns (2i, 2i+1), which
// fall in one column group of the GEMV. Mode "neox" pairs column i with
// i + n_rot/2, in another group, so a neox rope_store is left as it is. So is
// an rms_matmul with a bias add between it and the rope_store (qkv + bqkv),
// with other attributes, or with 2 weights. Prefill programs keep their GEMMs
// and rope_store.
#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

bool try_fuse(Graph& g, size_t rs_i) {
  Uses u(g);
  const Node& rs = g.nodes()[rs_i];
  if (rs.op != OpKind::RopeStore || rs.outputs.size() != 3 ||
      !has_exactly_attrs(rs, {"n_heads", "n_kv_heads", "head_dim", "n_rot", "theta", "mode"}) ||
      rs.attr_str("mode") != "normal")
    return false;
  const ValueId qkv = rs.inputs[0];
  if (!u.single_use(qkv)) return false;
  for (size_t i = 1; i < rs.inputs.size(); ++i)
    if (rs.inputs[i] == qkv) return false;
  const Node* mm = u.def(g, qkv);
  if (!mm || mm->op != OpKind::RmsMatMul || mm->outputs.size() != 1) return false;
  if (mm->inputs.size() != 3 && mm->inputs.size() != 5) return false;  // 1 or 3 weights
  if (!has_exactly_attrs(*mm, {"eps"}) && !has_exactly_attrs(*mm, {"eps", "x_q8"})) return false;
  for (size_t i = 2; i < mm->inputs.size(); ++i)
    if (!is_weight(g, mm->inputs[i])) return false;

  // x, pos, kc, vc, gain, the weights, then the optional freq_factors.
  std::vector<ValueId> in{mm->inputs[0], rs.inputs[1], rs.inputs[2], rs.inputs[3], mm->inputs[1]};
  in.insert(in.end(), mm->inputs.begin() + 2, mm->inputs.end());
  if (rs.inputs.size() == 5) in.push_back(rs.inputs[4]);
  ir::Attrs attrs = rs.attrs;
  for (const auto& [k, v] : mm->attrs) attrs[k] = v;
  const size_t mm_i = static_cast<size_t>(u.def_index(qkv));
  Node fused{OpKind::RmsMatMulRopeStore, std::move(in), rs.outputs, std::move(attrs)};

  Rewriter rw(g);
  rw.remove(mm_i);
  rw.remove(rs_i);
  rw.add(std::move(fused));
  return rw.commit();
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::RopeStore}, try_fuse); }

}  // namespace

Pass fuse_qkv_rope_epilogue_pass() {
  return {"fuse-qkv-rope-epilogue",
          "rms_matmul + rope_store (mode normal) -> rms_matmul_rope_store (rope and KV stores in the GEMV epilogue)",
          run};
}

}  // namespace kiln::passes
