// fuse-qkv-rope-store: the attention input block of a llama layer
//
//   q = matmul(x, wq) [+ bq]      k = matmul(x, wk) [+ bk]      v = matmul(x, wv) [+ bv]
//   q' = rope(q, pos)   k' = rope(k, pos)   kc' = kv_store(kc, k', pos)   vc' = kv_store(vc, v, pos)
//
// becomes one projection with the weight rows concatenated (q rows, then k,
// then v; source "wq+wk+wv", bias "bq+bk+bv") and one rope_store that ropes
// q and k and appends k and v to the caches:
//
//   qkv = matmul(x, wqkv) [+ bqkv];   q', kc', vc' = rope_store(qkv, pos, kc, vc [, freq_factors])
//
// Gemma 3's form, q and k heads RMS-normalised before their ropes
// (q_n = rms_norm(q, gq) {eps, head_dim}, the same for k; both or neither),
// and sliding-window layers' ring caches (kv_store {ring = 1}, both stores
// alike) fuse too: rope_store then takes gq, gk after the caches (attr
// qk_norm_eps) and the attr ring.
//
// q', kc', vc' keep their value ids and names, so their users are unchanged.
// The output columns of a matmul do not depend on each other, so the fused
// projection computes exactly the same numbers.
//
// fuse-qkv-parts (decode program only): the same block where the weights do
// not share one dtype (llama.cpp's Q4_K_M gives about half the layers a q6_K
// attn_v), after fold-rms-norm made each projection an rms_matmul of the same
// x, gain and eps. One weight value has one dtype, so instead of concatenating
// the weights the projection becomes one rms_matmul with three weight inputs
// (their output columns side by side; docs/plan-abi.md), which the GEMV family
// lowers to one kernel whose blocks each take one part:
//
//   qkv = rms_matmul(x, g, wq, wk, wv) [+ bqkv];   q', kc', vc' = rope_store(qkv, pos, kc, vc [, ff])
//
// Only where every weight takes int8 activations or none does (q8-activations
// then treats the node as one). Prefill programs keep the three GEMMs.
#include <optional>

#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"
#include "ir/quantize.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

// A projection feeding the rope / kv_store: matmul(x, w) [-> add(., bias)],
// or (parts) rms_matmul(x, gain, w) {eps} [-> add(., bias)].
struct Proj {
  int mm = -1, add = -1;  // node indices
  ValueId x = ir::kNoValue, gain = ir::kNoValue, w = ir::kNoValue, bias = ir::kNoValue;
  double eps = 0;
  bool same_input(const Proj& o) const { return x == o.x && gain == o.gain && eps == o.eps; }
};

// v must be used once (by the rope / kv_store) and come from a projection of
// x whose intermediate values are used only inside the projection.
std::optional<Proj> projection(const Graph& g, const Uses& u, ValueId v, bool parts) {
  if (!u.single_use(v)) return std::nullopt;
  Proj p;
  const Node* n = u.def(g, v);
  if (!n) return std::nullopt;
  if (n->op == OpKind::Add) {
    p.add = u.def_index(v);
    ValueId b = n->inputs[1];
    if (!is_weight(g, b) || g.value(b).shape.size() != 1 || g.value(b).dtype != ir::DType::F32) return std::nullopt;
    p.bias = b;
    ValueId mm_out = n->inputs[0];
    if (!u.single_use(mm_out)) return std::nullopt;
    n = u.def(g, mm_out);
    if (!n) return std::nullopt;
    v = mm_out;
  }
  if (parts) {
    if (n->op != OpKind::RmsMatMul || n->inputs.size() != 3 || n->outputs.size() != 1 ||
        !has_exactly_attrs(*n, {"eps"}))
      return std::nullopt;
    p.gain = n->inputs[1];
    p.eps = n->attr_float("eps");
  } else if (n->op != OpKind::MatMul || n->outputs.size() != 1 || !n->attrs.empty()) {
    return std::nullopt;
  }
  p.mm = u.def_index(v);
  p.x = n->inputs[0];
  p.w = n->inputs[parts ? 2 : 1];
  const ir::Value& w = g.value(p.w);
  if (!is_weight(g, p.w) || w.shape.size() != 2 || !w.shape[0].is_static() || !w.shape[1].is_static())
    return std::nullopt;
  if (p.bias != ir::kNoValue && !same_shape(g.value(p.bias).shape, {w.shape[0]})) return std::nullopt;
  return p;
}

// Gemma 3's q and k norms: rope input v = rms_norm(p, gain) {eps, head_dim}
// with head_dim the rope's, gain an f32 weight of head_dim entries, v used
// only by the rope. Returns the norm's node index (p is its input 0).
struct HeadNorm {
  int node = -1;
  ValueId in = ir::kNoValue, gain = ir::kNoValue;
  double eps = 0;
};
std::optional<HeadNorm> head_norm(const Graph& g, const Uses& u, ValueId v, int64_t hd) {
  const Node* n = u.def(g, v);
  if (!n || n->op != OpKind::RmsNorm || !u.single_use(v) || n->outputs.size() != 1 ||
      !has_exactly_attrs(*n, {"eps", "head_dim"}) || n->attr_int("head_dim") != hd)
    return std::nullopt;
  const ir::Value& w = g.value(n->inputs[1]);
  if (!is_weight(g, n->inputs[1]) || w.dtype != ir::DType::F32 || !same_shape(w.shape, {ir::Dim::fixed(hd)}))
    return std::nullopt;
  return HeadNorm{u.def_index(v), n->inputs[0], n->inputs[1], n->attr_float("eps")};
}

// A kv_store's attrs: none, or ring (a sliding-window layer's cache)
bool store_attrs_ok(const Node& n) { return n.attrs.empty() || has_exactly_attrs(n, {"ring"}); }
int64_t store_ring(const Node& n) { return n.attrs.count("ring") ? n.attr_int("ring") : 0; }

bool rope_attrs_ok(const Node& n) {
  return n.op == OpKind::Rope && has_exactly_attrs(n, {"n_heads", "head_dim", "n_rot", "theta", "mode"});
}

bool same_rope(const Node& a, const Node& b) {
  return a.attr_int("head_dim") == b.attr_int("head_dim") && a.attr_int("n_rot") == b.attr_int("n_rot") &&
         a.attr_float("theta") == b.attr_float("theta") && a.attr_str("mode") == b.attr_str("mode") &&
         a.inputs.size() == b.inputs.size() && (a.inputs.size() < 3 || a.inputs[2] == b.inputs[2]);
}

// Tries to fuse the block whose k rope is node `rk_i`; true if it did.
bool try_fuse(Graph& g, size_t rk_i, bool parts) {
  Uses u(g);
  const auto& nodes = g.nodes();
  const Node& rk = nodes[rk_i];
  if (!rope_attrs_ok(rk)) return false;
  const ValueId pos = rk.inputs[1];
  const Node* ks = u.sole_consumer(g, rk.outputs[0]);
  if (!ks || ks->op != OpKind::KvStore || !store_attrs_ok(*ks) || ks->inputs[1] != rk.outputs[0] ||
      ks->inputs[2] != pos)
    return false;
  const size_t ks_i = u.consumers[static_cast<size_t>(rk.outputs[0])][0];
  const int64_t ring = store_ring(*ks);
  // q and k heads RMS-normalised before their ropes (both or neither)
  const int64_t hd_r = rk.attr_int("head_dim");
  const std::optional<HeadNorm> nk = head_norm(g, u, rk.inputs[0], hd_r);
  auto pk = projection(g, u, nk ? nk->in : rk.inputs[0], parts);
  if (!pk) return false;

  // The v store and the q rope: exactly one candidate each, on the same x and pos.
  std::optional<Proj> pv, pq;
  std::optional<HeadNorm> nq;  // the q rope's norm (where k has one)
  int vs_i = -1, rq_i = -1, n_v = 0, n_q = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    if (i == ks_i || i == rk_i) continue;
    if (n.op == OpKind::KvStore && store_attrs_ok(n) && store_ring(n) == ring && n.inputs[2] == pos) {
      auto p = projection(g, u, n.inputs[1], parts);
      if (p && p->same_input(*pk)) {
        ++n_v;
        pv = p;
        vs_i = static_cast<int>(i);
      }
    } else if (n.op == OpKind::Rope && n.inputs[1] == pos) {
      const std::optional<HeadNorm> nn = head_norm(g, u, n.inputs[0], hd_r);
      if (nn.has_value() != nk.has_value()) continue;
      auto p = projection(g, u, nn ? nn->in : n.inputs[0], parts);
      if (p && p->same_input(*pk)) {
        ++n_q;
        pq = p;
        nq = nn;
        rq_i = static_cast<int>(i);
      }
    }
  }
  if (n_v != 1 || n_q != 1) return false;
  const Node& vs = nodes[static_cast<size_t>(vs_i)];
  const Node& rq = nodes[static_cast<size_t>(rq_i)];
  if (!rope_attrs_ok(rq) || !same_rope(rq, rk)) return false;
  if (nk && nq->eps != nk->eps) return false;

  // Weights: one dtype (parts: int8 activations for all or none) and row
  // length; biases on all three or none.
  const ValueId x = pk->x;
  const ir::Value &wq = g.value(pq->w), &wk = g.value(pk->w), &wv = g.value(pv->w);
  if (parts) {
    const bool q8 = ir::act_q8_weight(wq.dtype);
    if (ir::act_q8_weight(wk.dtype) != q8 || ir::act_q8_weight(wv.dtype) != q8) return false;
  } else if (wq.dtype != wk.dtype || wq.dtype != wv.dtype) {
    return false;
  }
  if (wq.shape[1].value != wk.shape[1].value || wq.shape[1].value != wv.shape[1].value) return false;
  if (pq->w == pk->w || pq->w == pv->w || pk->w == pv->w) return false;
  const bool bias = pq->bias != ir::kNoValue;
  if ((pk->bias != ir::kNoValue) != bias || (pv->bias != ir::kNoValue) != bias) return false;

  const int64_t nh = rq.attr_int("n_heads"), nkv = rk.attr_int("n_heads"), hd = rk.attr_int("head_dim");
  if (wq.shape[0].value != nh * hd || wk.shape[0].value != nkv * hd || wv.shape[0].value != nkv * hd) return false;

  // Caches: two distinct states of one type and shape, each used only by its store.
  const ValueId kc = ks->inputs[0], vc = vs.inputs[0];
  if (kc == vc || g.value(kc).kind != ir::ValueKind::State || g.value(vc).kind != ir::ValueKind::State) return false;
  if (g.value(kc).dtype != g.value(vc).dtype || !same_shape(g.value(kc).shape, g.value(vc).shape)) return false;
  if (!u.single_use(kc) || !u.single_use(vc)) return false;
  if (ks->outputs.size() != 1 || vs.outputs.size() != 1 || rq.outputs.size() != 1) return false;

  // Build the replacement.
  const int64_t n_all = (nh + 2 * nkv) * hd;
  const ir::Shape rows{g.value(x).shape[0], ir::Dim::fixed(n_all)};
  const Node& mq = nodes[static_cast<size_t>(pq->mm)];
  const ValueId q_rope = rq.outputs[0], kc_out = ks->outputs[0], vc_out = vs.outputs[0];
  const ir::Attrs attrs{{"n_heads", nh},
                        {"n_kv_heads", nkv},
                        {"head_dim", hd},
                        {"n_rot", rk.attr_int("n_rot")},
                        {"theta", rk.attr_float("theta")},
                        {"mode", rk.attr_str("mode")}};
  ir::Attrs rs_attrs = attrs;
  if (nk) rs_attrs["qk_norm_eps"] = nk->eps;
  if (ring) rs_attrs["ring"] = ring;
  std::vector<ValueId> rs_in_tail{pos, kc, vc};
  if (nk) rs_in_tail.insert(rs_in_tail.end(), {nq->gain, nk->gain});
  if (rk.inputs.size() == 3) rs_in_tail.push_back(rk.inputs[2]);
  std::vector<size_t> remove{static_cast<size_t>(pq->mm), static_cast<size_t>(pk->mm), static_cast<size_t>(pv->mm),
                             static_cast<size_t>(rq_i), rk_i, ks_i, static_cast<size_t>(vs_i)};
  if (nk) remove.insert(remove.end(), {static_cast<size_t>(nq->node), static_cast<size_t>(nk->node)});
  std::string q_name = g.value(mq.outputs[0]).name, bias_name;
  ValueId bq = pq->bias, bk = pk->bias, bv = pv->bias;
  if (bias) {
    for (int a : {pq->add, pk->add, pv->add}) remove.push_back(static_cast<size_t>(a));
    bias_name = g.value(nodes[static_cast<size_t>(pq->add)].outputs[0]).name;
  }
  const std::string w_name = derive_name(g, wq.name, "attn_q", "attn_qkv");
  const std::string w_src = wq.source + "+" + wk.source + "+" + wv.source;
  const ir::DType w_dt = wq.dtype;
  const ir::Dim K = wq.shape[1];

  Rewriter rw(g);
  for (size_t r : remove) rw.remove(r);
  ValueId qkv = rw.new_temp(derive_name(g, q_name, "q", "qkv"), ir::DType::F32, rows);
  if (parts) {
    rw.add(Node{OpKind::RmsMatMul, {x, pq->gain, pq->w, pk->w, pv->w}, {qkv}, {{"eps", pq->eps}}});
  } else {
    ValueId w = rw.new_weight(w_name, w_dt, {ir::Dim::fixed(n_all), K}, w_src);
    rw.add(Node{OpKind::MatMul, {x, w}, {qkv}, {}});
  }
  if (bias) {
    const ir::Value b0 = g.value(bq);  // a copy: new values may move the table
    ValueId b = rw.new_weight(derive_name(g, b0.name, "attn_q", "attn_qkv"), b0.dtype, {ir::Dim::fixed(n_all)},
                              b0.source + "+" + g.value(bk).source + "+" + g.value(bv).source);
    ValueId qkvb = rw.new_temp(derive_name(g, bias_name, "q_bias", "qkv_bias"), ir::DType::F32, rows);
    rw.add(Node{OpKind::Add, {qkv, b}, {qkvb}, {}});
    qkv = qkvb;
  }
  std::vector<ValueId> rs_in{qkv};
  rs_in.insert(rs_in.end(), rs_in_tail.begin(), rs_in_tail.end());
  rw.add(Node{OpKind::RopeStore, rs_in, {q_rope, kc_out, vc_out}, rs_attrs});
  return rw.commit();
}

bool run(Graph& g) {
  return rewrite_to_fixpoint(g, {OpKind::Rope}, [](Graph& g2, size_t i) { return try_fuse(g2, i, false); });
}
bool run_parts(Graph& g) {
  return rewrite_to_fixpoint(g, {OpKind::Rope}, [](Graph& g2, size_t i) { return try_fuse(g2, i, true); });
}

}  // namespace

Pass fuse_qkv_rope_store_pass() {
  return {"fuse-qkv-rope-store",
          "q/k/v projections + rope + kv_store -> one matmul (weights \"q+k+v\") + rope_store", run};
}

Pass fuse_qkv_parts_pass() {
  return {"fuse-qkv-parts",
          "q/k/v rms_matmuls of different weight types + rope + kv_store -> one rms_matmul with three weights + "
          "rope_store",
          run_parts};
}

}  // namespace kiln::passes
