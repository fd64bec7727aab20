// One-node IR graphs for every (op, dtype) kernel variant, shared by the
// NVRTC compile test (tests/codegen) and the GPU kernel test (tests/gpu).
// Fused ops come with an unfused reference graph for the interpreter (same
// input / weight / output names; weight slices and derived inputs via hooks).
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "codegen/codegen.h"
#include "codegen/kernels/launch.h"
#include "ir/dequant.h"
#include "ir/graph.h"
#include "ir/interpreter.h"
#include "ir/quantize.h"

namespace kiln::testcases {
using ir::DType;
using ir::Dim;
using ir::Graph;
using ir::OpKind;

struct OpCase {
  std::string name;   // "matmul/q4_k/b20"
  Graph g;            // node 0 is the op under test
  Graph ref;          // what the interpreter runs (== g for unfused ops)
  int64_t bucket = 1;
  bool fused = false;
  DType dtype = DType::F32;  // the variant's dtype (for reporting)
  std::string weight_layout = "ggml";  // codegen::Target::weight_layout the case is lowered with
  bool compiled_only = false;  // no eager kernel (the tensor-core path: compiled prefill programs only)
  int pos0 = -1;  // the step's pos0 and the first position (-1: the GPU test's default)
  // Adds ref-only inputs computed from g's inputs (rope_store: q, k, v from qkv).
  std::function<void(std::map<std::string, ir::Tensor>&)> derive_inputs;
  // Adds ref-only weights (by source name) computed from g's weights.
  std::function<void(std::map<std::string, std::vector<uint8_t>>&)> derive_weights;
};

inline const std::vector<DType>& weight_dtypes() {
  static const std::vector<DType> v = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                                       DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                                       DType::Q4_K, DType::Q5_K, DType::Q6_K};
  return v;
}
inline const std::vector<DType>& float_dtypes() {
  static const std::vector<DType> v = {DType::F32, DType::F16, DType::BF16};
  return v;
}
inline std::string dn(DType t) { return std::string(ir::dtype_name(t)); }

inline Graph base_graph(int64_t bucket, int64_t kv_len = 64) {
  Graph g;
  g.sym_bounds["tokens"] = bucket;
  g.sym_bounds["kv_len"] = kv_len;
  return g;
}
inline Dim tok(int64_t bucket) { return Dim::symbolic("tokens", bucket); }
inline Dim fx(int64_t v) { return Dim::fixed(v); }
// K used for matmul-like weights of a dtype: whole super-blocks for k-quants;
// 160 (1.25 K tiles) otherwise.
inline int64_t k_for(DType t) { return ir::dtype_info(t).block_elems == 256 ? 512 : 160; }

inline ir::Attrs eps_attr() { return {{"eps", 1e-5}}; }

// Matmul family: op in {MatMul, RmsMatMul, MatMulAdd, RmsMatMulSwiGlu}.
inline OpCase matmul_case(OpKind op, DType wt, int64_t bucket, DType gt = DType::F32, int64_t k_override = 0,
                          int64_t n_override = 0) {
  const int64_t K = k_override ? k_override : k_for(wt), N = n_override ? n_override : 70;
  const bool rms = op == OpKind::RmsMatMul || op == OpKind::RmsMatMulSwiGlu;
  const bool swi = op == OpKind::RmsMatMulSwiGlu, add = op == OpKind::MatMulAdd;
  OpCase c;
  c.bucket = bucket;
  c.dtype = wt;
  c.fused = op != OpKind::MatMul;
  const char* opn = op == OpKind::MatMul ? "matmul" : rms ? (swi ? "rms_matmul_swiglu" : "rms_matmul") : "matmul_add";
  c.name = std::string(opn) + "/" + dn(wt) + (rms ? "_g" + dn(gt) : "") + "/b" + std::to_string(bucket) +
           (k_override ? "/k" + std::to_string(K) : "") + (n_override ? "/n" + std::to_string(N) : "");
  Graph& g = c.g;
  g = base_graph(bucket);
  auto x = g.add_input("x", DType::F32, {tok(bucket), fx(K)});
  ir::ValueId gg = -1;
  if (rms) gg = g.add_weight("gain", gt, {fx(K)}, "gain");
  auto w = g.add_weight("w", wt, {fx(swi ? 2 * N : N), fx(K)}, "w");
  ir::ValueId r = -1;
  if (add) r = g.add_input("r", DType::F32, {tok(bucket), fx(N)});
  std::vector<ir::ValueId> ins = {x};
  if (rms) ins.push_back(gg);
  ins.push_back(w);
  if (add) ins.push_back(r);
  auto y = g.add_node(op, ins, rms ? eps_attr() : ir::Attrs{}, "y", DType::F32, {tok(bucket), fx(N)});
  g.mark_output(y);
  if (!c.fused) {
    c.ref = g;
    return c;
  }
  Graph& f = c.ref;
  f = base_graph(bucket);
  auto fxv = f.add_input("x", DType::F32, {tok(bucket), fx(K)});
  ir::ValueId h = fxv;
  if (rms) {
    auto fg = f.add_weight("gain", gt, {fx(K)}, "gain");
    h = f.add_node(OpKind::RmsNorm, {fxv, fg}, eps_attr(), "xn", DType::F32, {tok(bucket), fx(K)});
  }
  ir::ValueId out;
  if (swi) {
    auto wg = f.add_weight("w_gate", wt, {fx(N), fx(K)}, "w_gate");
    auto wu = f.add_weight("w_up", wt, {fx(N), fx(K)}, "w_up");
    auto hg = f.add_node(OpKind::MatMul, {h, wg}, {}, "hg", DType::F32, {tok(bucket), fx(N)});
    auto hu = f.add_node(OpKind::MatMul, {h, wu}, {}, "hu", DType::F32, {tok(bucket), fx(N)});
    out = f.add_node(OpKind::SwiGlu, {hg, hu}, {}, "y", DType::F32, {tok(bucket), fx(N)});
    c.derive_weights = [wt, K, N](std::map<std::string, std::vector<uint8_t>>& ws) {
      const auto& all = ws.at("w");
      const size_t half = static_cast<size_t>(ir::row_bytes(wt, K) * static_cast<uint64_t>(N));
      ws["w_gate"].assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(half));
      ws["w_up"].assign(all.begin() + static_cast<std::ptrdiff_t>(half), all.end());
    };
  } else {
    auto fw = f.add_weight("w", wt, {fx(N), fx(K)}, "w");
    out = f.add_node(OpKind::MatMul, {h, fw}, {}, add ? "h" : "y", DType::F32, {tok(bucket), fx(N)});
    if (add) {
      auto fr = f.add_input("r", DType::F32, {tok(bucket), fx(N)});
      out = f.add_node(OpKind::Add, {out, fr}, {}, "y", DType::F32, {tok(bucket), fx(N)});
    }
  }
  f.mark_output(out);
  return c;
}

// rms_matmul with several weights (fuse-qkv-parts: one launch, blocks split
// by part), weights wts[i] of nrows[i] rows; the reference is the same node,
// whose interpreter semantics (the parts side by side) are tested on the CPU.
// Compiled only (no eager kernel); xq: int8 activations.
inline OpCase parts_case(const std::vector<DType>& wts, const std::vector<int64_t>& nrows, int64_t K,
                         int64_t bucket, bool xq, const char* layout) {
  OpCase c;
  c.bucket = bucket;
  c.dtype = wts[0];
  c.compiled_only = true;
  c.weight_layout = layout;
  c.name = "rms_matmul_parts/";
  int64_t N = 0;
  for (size_t i = 0; i < wts.size(); ++i) {
    c.name += (i ? "+" : "") + dn(wts[i]) + "x" + std::to_string(nrows[i]);
    N += nrows[i];
  }
  c.name += "/b" + std::to_string(bucket) + "/k" + std::to_string(K) + (xq ? "/xq" : "") +
            (std::string(layout) == "planes" ? "/planes" : "");
  Graph& g = c.g;
  g = base_graph(bucket);
  auto x = g.add_input("x", DType::F32, {tok(bucket), fx(K)});
  auto gg = g.add_weight("gain", DType::F16, {fx(K)}, "gain");
  std::vector<ir::ValueId> ins = {x, gg};
  for (size_t i = 0; i < wts.size(); ++i) {
    const std::string w = "w" + std::to_string(i);
    ins.push_back(g.add_weight(w, wts[i], {fx(nrows[i]), fx(K)}, w));
  }
  ir::Attrs a = eps_attr();
  if (xq) a["x_q8"] = int64_t{1};
  auto y = g.add_node(OpKind::RmsMatMul, ins, a, "y", DType::F32, {tok(bucket), fx(N)});
  g.mark_output(y);
  c.ref = g;
  return c;
}

// lm_head_sample(x, gain, w) -> token i32[1], logits [1,V]; ref: last_row,
// rms_norm, matmul, argmax (greedy).
inline OpCase lm_head_case(DType wt, int64_t bucket, int64_t v_override = 0, int64_t k_override = 0) {
  const int64_t K = k_override ? k_override : k_for(wt), V = v_override ? v_override : 300;
  OpCase c;
  c.bucket = bucket;
  c.dtype = wt;
  c.fused = true;
  c.name = "lm_head_sample/" + dn(wt) + "/b" + std::to_string(bucket) + (v_override ? "/v" + std::to_string(V) : "") +
           (k_override ? "/k" + std::to_string(K) : "");
  Graph& g = c.g;
  g = base_graph(bucket);
  auto x = g.add_input("x", DType::F32, {tok(bucket), fx(K)});
  auto gg = g.add_weight("gain", DType::F32, {fx(K)}, "gain");
  auto w = g.add_weight("w", wt, {fx(V), fx(K)}, "w");
  auto t = g.add_node(OpKind::LmHeadSample, {x, gg, w}, eps_attr(), "token", DType::I32, {fx(1)});
  // second output: the logits (made a temp of the node, as the fusing pass does)
  ir::Value lv;
  g.nodes()[0].outputs.push_back(static_cast<ir::ValueId>(g.values().size()));
  {
    auto& vals = g.mutable_values();
    lv.id = static_cast<ir::ValueId>(vals.size());
    lv.name = "logits";
    lv.dtype = DType::F32;
    lv.shape = {fx(1), fx(V)};
    lv.kind = ir::ValueKind::Temp;
    vals.push_back(lv);
  }
  g.mark_output(t);
  g.mark_output(lv.id);
  Graph& f = c.ref;
  f = base_graph(bucket);
  auto fx_ = f.add_input("x", DType::F32, {tok(bucket), fx(K)});
  auto fl = f.add_node(OpKind::LastRow, {fx_}, {}, "last", DType::F32, {fx(1), fx(K)});
  auto fg = f.add_weight("gain", DType::F32, {fx(K)}, "gain");
  auto fn = f.add_node(OpKind::RmsNorm, {fl, fg}, eps_attr(), "xn", DType::F32, {fx(1), fx(K)});
  auto fw = f.add_weight("w", wt, {fx(V), fx(K)}, "w");
  auto lo = f.add_node(OpKind::MatMul, {fn, fw}, {}, "logits", DType::F32, {fx(1), fx(V)});
  auto am = f.add_node(OpKind::ArgMax, {lo}, {}, "token", DType::I32, {fx(1)});
  f.mark_output(am);
  f.mark_output(lo);
  return c;
}

inline OpCase simple(std::string name, Graph g, int64_t bucket, DType dt) {
  OpCase c;
  c.name = std::move(name);
  c.ref = g;
  c.g = std::move(g);
  c.bucket = bucket;
  c.dtype = dt;
  return c;
}

inline ir::Attrs rope_attrs(int64_t nh, int64_t hd, int64_t n_rot, bool neox) {
  return {{"n_heads", nh}, {"head_dim", hd}, {"n_rot", n_rot}, {"theta", 10000.0},
          {"mode", std::string(neox ? "neox" : "normal")}};
}

// rms_matmul_rope_store (the decode pipeline's fuse-qkv-rope-epilogue): the
// GEMV whose epilogue ropes the q and k columns ("normal" pairs) and writes
// the k and v rows into the caches, on weights wts (1, or 3 side by side as
// fuse-qkv-parts makes them) of (nh + 2 nkv) * hd rows in all. Compiled only;
// the reference is the same node, whose interpreter semantics (rms_matmul
// then rope_store, bit for bit) are tested on the CPU. The step's rows go to
// positions pos0.. of a cache of max(64, pos0 + bucket) rows (the rest of the
// cache must stay as it was).
inline OpCase rope_gemv_case(const std::vector<DType>& wts, int64_t nh, int64_t nkv, int64_t hd, int64_t n_rot,
                             int64_t K, int64_t bucket, bool xq, DType gain_t, DType cache_t, bool ff,
                             const char* layout, int64_t pos0 = 40) {
  const int64_t C = std::max<int64_t>(64, pos0 + bucket);
  OpCase c;
  c.bucket = bucket;
  c.dtype = wts[0];
  c.compiled_only = true;
  c.weight_layout = layout;
  c.pos0 = static_cast<int>(pos0);
  c.name = "rms_matmul_rope_store/";
  for (size_t i = 0; i < wts.size(); ++i) c.name += (i ? "+" : "") + dn(wts[i]);
  c.name += "/h" + std::to_string(nh) + "x" + std::to_string(nkv) + "x" + std::to_string(hd) + "r" +
            std::to_string(n_rot) + "/k" + std::to_string(K) + "/c" + dn(cache_t) + (ff ? "/ff" : "") + "/b" +
            std::to_string(bucket) + (xq ? "/xq" : "") + (std::string(layout) == "planes" ? "/planes" : "") +
            (pos0 != 40 ? "/p" + std::to_string(pos0) : "");
  Graph& g = c.g;
  g = base_graph(bucket, C);
  auto x = g.add_input("x", DType::F32, {tok(bucket), fx(K)});
  auto pos = g.add_input("pos", DType::I32, {tok(bucket)});
  auto kc = g.add_state("kc", cache_t, {fx(C), fx(nkv * hd)});
  auto vc = g.add_state("vc", cache_t, {fx(C), fx(nkv * hd)});
  auto gg = g.add_weight("gain", gain_t, {fx(K)}, "gain");
  std::vector<ir::ValueId> ins = {x, pos, kc, vc, gg};
  const int64_t W = (nh + 2 * nkv) * hd;
  if (wts.size() == 1) {
    ins.push_back(g.add_weight("w0", wts[0], {fx(W), fx(K)}, "w0"));
  } else {
    const int64_t rows[3] = {nh * hd, nkv * hd, nkv * hd};
    for (size_t i = 0; i < wts.size(); ++i) {
      const std::string w = "w" + std::to_string(i);
      ins.push_back(g.add_weight(w, wts[i], {fx(rows[i]), fx(K)}, w));
    }
  }
  if (ff) ins.push_back(g.add_weight("ff", DType::F32, {fx(n_rot / 2)}, "ff"));
  ir::Attrs a = rope_attrs(nh, hd, n_rot, false);
  a["n_kv_heads"] = nkv;
  a["eps"] = 1e-5;
  if (xq) a["x_q8"] = int64_t{1};
  auto q = g.add_node(OpKind::RmsMatMulRopeStore, ins, a, "q", DType::F32, {tok(bucket), fx(nh * hd)});
  g.mark_output(q);
  // outputs 1, 2: the caches updated in place (as the fusing pass leaves them)
  for (const char* name : {"kc_out", "vc_out"}) {
    auto& vals = g.mutable_values();
    ir::Value v;
    v.id = static_cast<ir::ValueId>(vals.size());
    v.name = name;
    v.dtype = cache_t;
    v.shape = {fx(C), fx(nkv * hd)};
    v.kind = ir::ValueKind::Temp;
    vals.push_back(v);
    g.nodes()[0].outputs.push_back(v.id);
    g.mark_output(v.id);
  }
  c.ref = g;
  return c;
}

// rope_store(qkv, pos, kc, vc [, gq, gk] [, ff]) -> q; ref: rope q, rope k,
// kv_store k, v. qn (Gemma 3): q and k heads rms_norm'd first (attr
// qk_norm_eps; ref: rms_norm {head_dim}); ring: the stores go to row pos mod C
// (positions from 128 - bucket / 2, so a step of several rows wraps the 64-row cache).
inline OpCase rope_store_case(DType cache_t, bool ff, int64_t bucket, bool qn = false, bool ring = false) {
  const int64_t nh = 4, nkv = 2, hd = 64, n_rot = 64, C = 64;
  OpCase c;
  c.bucket = bucket;
  c.dtype = cache_t;
  c.fused = true;
  c.name = "rope_store/" + dn(cache_t) + (ff ? "_ff" : "") + (qn ? "_qn" : "") + (ring ? "_ring" : "") + "/b" +
           std::to_string(bucket);
  if (ring) c.pos0 = 128 - static_cast<int>(bucket) / 2;
  Graph& g = c.g;
  g = base_graph(bucket, C);
  auto qkv = g.add_input("qkv", DType::F32, {tok(bucket), fx((nh + 2 * nkv) * hd)});
  auto pos = g.add_input("pos", DType::I32, {tok(bucket)});
  auto kc = g.add_state("kc", cache_t, {fx(C), fx(nkv * hd)});
  auto vc = g.add_state("vc", cache_t, {fx(C), fx(nkv * hd)});
  std::vector<ir::ValueId> ins = {qkv, pos, kc, vc};
  if (qn) {
    ins.push_back(g.add_weight("gq", DType::F32, {fx(hd)}, "gq"));
    ins.push_back(g.add_weight("gk", DType::F32, {fx(hd)}, "gk"));
  }
  if (ff) ins.push_back(g.add_weight("ff", DType::F32, {fx(n_rot / 2)}, "ff"));
  ir::Attrs a = rope_attrs(nh, hd, n_rot, true);
  a["n_kv_heads"] = nkv;
  if (qn) a["qk_norm_eps"] = 1e-6;
  if (ring) a["ring"] = int64_t{1};
  auto q = g.add_node(OpKind::RopeStore, ins, a, "q", DType::F32, {tok(bucket), fx(nh * hd)});
  g.mark_output(q);
  Graph& f = c.ref;
  f = base_graph(bucket, C);
  auto fq = f.add_input("q_in", DType::F32, {tok(bucket), fx(nh * hd)});
  auto fk = f.add_input("k_in", DType::F32, {tok(bucket), fx(nkv * hd)});
  auto fv = f.add_input("v_in", DType::F32, {tok(bucket), fx(nkv * hd)});
  auto fp = f.add_input("pos", DType::I32, {tok(bucket)});
  auto fkc = f.add_state("kc", cache_t, {fx(C), fx(nkv * hd)});
  auto fvc = f.add_state("vc", cache_t, {fx(C), fx(nkv * hd)});
  if (qn) {
    const ir::Attrs na{{"eps", 1e-6}, {"head_dim", hd}};
    fq = f.add_node(OpKind::RmsNorm, {fq, f.add_weight("gq", DType::F32, {fx(hd)}, "gq")}, na, "q_n", DType::F32,
                    {tok(bucket), fx(nh * hd)});
    fk = f.add_node(OpKind::RmsNorm, {fk, f.add_weight("gk", DType::F32, {fx(hd)}, "gk")}, na, "k_n", DType::F32,
                    {tok(bucket), fx(nkv * hd)});
  }
  std::vector<ir::ValueId> qin = {fq, fp}, kin = {fk, fp};
  if (ff) {
    auto fff = f.add_weight("ff", DType::F32, {fx(n_rot / 2)}, "ff");
    qin.push_back(fff);
    kin.push_back(fff);
  }
  auto oq = f.add_node(OpKind::Rope, qin, rope_attrs(nh, hd, n_rot, true), "q", DType::F32, {tok(bucket), fx(nh * hd)});
  auto ok = f.add_node(OpKind::Rope, kin, rope_attrs(nkv, hd, n_rot, true), "k_roped", DType::F32,
                       {tok(bucket), fx(nkv * hd)});
  const ir::Attrs sa = ring ? ir::Attrs{{"ring", int64_t{1}}} : ir::Attrs{};
  auto k2 = f.add_node(OpKind::KvStore, {fkc, ok, fp}, sa, "kc_out", cache_t, {fx(C), fx(nkv * hd)});
  auto v2 = f.add_node(OpKind::KvStore, {fvc, fv, fp}, sa, "vc_out", cache_t, {fx(C), fx(nkv * hd)});
  f.mark_output(oq);
  f.mark_output(k2);
  f.mark_output(v2);
  c.derive_inputs = [nh, nkv, hd](std::map<std::string, ir::Tensor>& in) {
    const ir::Tensor& qkv = in.at("qkv");
    const int64_t T = qkv.shape[0], W = (nh + 2 * nkv) * hd;
    ir::Tensor q = ir::Tensor::zeros_f32({T, nh * hd}), k = ir::Tensor::zeros_f32({T, nkv * hd}),
               v = ir::Tensor::zeros_f32({T, nkv * hd});
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < W; ++i) {
        const float val = qkv.f32[static_cast<size_t>(t * W + i)];
        if (i < nh * hd) q.f32[static_cast<size_t>(t * nh * hd + i)] = val;
        else if (i < (nh + nkv) * hd) k.f32[static_cast<size_t>(t * nkv * hd + i - nh * hd)] = val;
        else v.f32[static_cast<size_t>(t * nkv * hd + i - (nh + nkv) * hd)] = val;
      }
    in.erase("qkv");
    in["q_in"] = q;
    in["k_in"] = k;
    in["v_in"] = v;
  };
  return c;
}

// attention(q, k, v, pos [, scratch]) over a kv_len = C cache of dtype ft (k and
// v are inputs here: the whole cache is random), nh query heads sharing nkv KV
// heads of head_dim hd. With `split` the node has the split scratch (as the
// split-decode-attention pass gives it), so compiled steps of <= 4 rows take the
// split-K kernel. pos0 = C - bucket: the last token sees the whole cache.
inline OpCase attention_case(DType ft, int64_t bucket, int64_t C, int64_t nh, int64_t nkv, int64_t hd, bool split) {
  OpCase c;
  c.bucket = bucket;
  c.dtype = ft;
  c.pos0 = static_cast<int>(C - bucket);
  c.name = std::string(split ? "attention_split/" : "attention/") + dn(ft) + "/c" + std::to_string(C) + "/h" +
           std::to_string(nh) + "x" + std::to_string(nkv) + "x" + std::to_string(hd) + "/b" + std::to_string(bucket);
  Graph& g = c.g;
  g = base_graph(bucket, C);
  auto q = g.add_input("q", DType::F32, {tok(bucket), fx(nh * hd)});
  auto k = g.add_input("k", ft, {fx(C), fx(nkv * hd)});
  auto v = g.add_input("v", ft, {fx(C), fx(nkv * hd)});
  auto pos = g.add_input("pos", DType::I32, {tok(bucket)});
  ir::Attrs a = {{"n_heads", nh}, {"n_kv_heads", nkv}, {"head_dim", hd}, {"scale", 1.0 / std::sqrt(double(hd))}};
  std::vector<ir::ValueId> ins = {q, k, v, pos};
  const int64_t n = codegen::attention_split_scratch_floats(nh, nkv, hd, C);
  if (split && n > 0) ins.push_back(g.add_state("scratch", DType::F32, {fx(n)}));
  auto y = g.add_node(OpKind::Attention, ins, a, "y", DType::F32, {tok(bucket), fx(nh * hd)});
  if (ins.size() == 5) {  // output 1: the scratch updated in place
    ir::Value sv;
    sv.id = static_cast<ir::ValueId>(g.values().size());
    sv.name = "scratch_out";
    sv.dtype = DType::F32;
    sv.shape = {fx(n)};
    sv.kind = ir::ValueKind::Temp;
    g.mutable_values().push_back(sv);
    g.nodes()[0].outputs.push_back(sv.id);
  }
  g.mark_output(y);
  c.ref = g;
  return c;
}

// The split-K decode attention cases of one bucket (<= 4 rows): every cache
// dtype at kv_len 16, 512, 4096 and 8192, f16 at head_dim 64 around the
// tensor-core kernel's one-split limit, and the geometries of SmolLM2 (9
// heads, 3 KV, head_dim 64), Llama-3 8B (32, 8, 128), Llama-3.2 1B (32, 8, 64),
// head_dim 256, MHA and a group of 8 query heads per KV head.
inline std::vector<OpCase> attention_split_cases(int64_t b) {
  std::vector<OpCase> out;
  if (b > 1) {  // a few multi-row steps (every row its own causal length)
    out.push_back(attention_case(DType::BF16, b, 16, 8, 2, 128, true));
    out.push_back(attention_case(DType::F16, b, 4096, 8, 2, 128, true));
    out.push_back(attention_case(DType::F16, b, 512, 9, 3, 64, true));
    out.push_back(attention_case(DType::F16, b, 300, 9, 3, 64, true));  // one split (kAttSplitTcOneBlockRows)
    return out;
  }
  for (DType ft : float_dtypes())
    for (int64_t C : {16, 512, 4096, 8192}) out.push_back(attention_case(ft, b, C, 8, 2, 128, true));
  out.push_back(attention_case(DType::F16, b, 512, 9, 3, 64, true));
  // the tensor-core kernel's one split (at most kAttSplitTcOneBlockRows = 384
  // rows: up to 3 tiles a warp, a partial last tile) and just past it
  out.push_back(attention_case(DType::F16, b, 384, 9, 3, 64, true));
  out.push_back(attention_case(DType::F16, b, 200, 32, 8, 64, true));
  out.push_back(attention_case(DType::F16, b, 385, 9, 3, 64, true));
  out.push_back(attention_case(DType::F16, b, 8192, 32, 8, 128, true));
  out.push_back(attention_case(DType::F16, b, 8192, 32, 8, 64, true));  // Llama-3.2 1B
  out.push_back(attention_case(DType::F32, b, 512, 4, 2, 256, true));
  out.push_back(attention_case(DType::BF16, b, 4096, 4, 4, 64, true));
  out.push_back(attention_case(DType::F16, b, 4096, 16, 2, 128, true));
  return out;
}

// Gemma 3's ops and attributes: per-head rms_norm (Q/K norm), geglu, rope with
// linear scaling (freq_scale), kv_store into a ring, and sliding-window
// attention over a ring cache (Gemma 3 270M's geometry: 4 query heads, 1 KV
// head, head_dim 256). pos0 puts the step's rows across the ring's end, so the
// chunk that wraps is exercised; the attention ring has window + bucket - 1
// rows, the fewest the IR allows (verify.cpp).
inline std::vector<OpCase> gemma_cases(int64_t B) {
  std::vector<OpCase> out;
  {
    Graph g = base_graph(B);
    auto x = g.add_input("x", DType::F32, {tok(B), fx(4 * 64)});
    auto w = g.add_weight("gain", DType::F32, {fx(64)}, "gain");
    auto y = g.add_node(OpKind::RmsNorm, {x, w}, {{"eps", 1e-6}, {"head_dim", int64_t{64}}}, "y", DType::F32,
                        {tok(B), fx(4 * 64)});
    g.mark_output(y);
    out.push_back(simple("rms_norm/heads/f32", g, B, DType::F32));
  }
  {
    Graph g = base_graph(B);
    auto a = g.add_input("gate", DType::F32, {tok(B), fx(100)});
    auto b = g.add_input("up", DType::F32, {tok(B), fx(100)});
    auto y = g.add_node(OpKind::GeGlu, {a, b}, {}, "y", DType::F32, {tok(B), fx(100)});
    g.mark_output(y);
    out.push_back(simple("geglu", g, B, DType::F32));
  }
  {
    Graph g = base_graph(B);
    auto x = g.add_input("x", DType::F32, {tok(B), fx(2 * 256)});
    auto pos = g.add_input("pos", DType::I32, {tok(B)});
    ir::Attrs a = rope_attrs(2, 256, 256, true);
    a["theta"] = 1e6;
    a["freq_scale"] = 0.125;
    auto y = g.add_node(OpKind::Rope, {x, pos}, a, "y", DType::F32, {tok(B), fx(2 * 256)});
    g.mark_output(y);
    OpCase c = simple("rope/neox/freq_scale", g, B, DType::F32);
    c.pos0 = 3000;
    out.push_back(std::move(c));
  }
  // rms_matmul_swiglu with act "gelu_tanh" (fuse-gate-up-swiglu on Gemma's GeGLU):
  // GEMV (bucket 1) and tiled (bucket B) paths, Gemma 3 270M's weight types.
  for (DType wt : {DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K})
    for (int64_t b : {int64_t{1}, B}) {
      OpCase c = matmul_case(OpKind::RmsMatMulSwiGlu, wt, b);
      c.name += "/geglu";
      c.g.nodes()[0].attrs["act"] = std::string("gelu_tanh");
      for (auto& n : c.ref.nodes())
        if (n.op == OpKind::SwiGlu) n.op = OpKind::GeGlu;
      out.push_back(std::move(c));
    }
  // Gemma 3 270M's global layers at decode: the split-K kernel with 4 query heads on 1 KV head of 256 dims.
  out.push_back(attention_case(DType::F16, 1, 2048, 4, 1, 256, true));
  for (DType ft : float_dtypes()) {
    {  // kv_store into a ring of B + 12 rows: the step's rows wrap from row R - 2 to row 0
      const int64_t R = B + 12;
      Graph g = base_graph(B);
      auto cache = g.add_state("cache", ft, {fx(R), fx(96)});
      auto x = g.add_input("x", DType::F32, {tok(B), fx(96)});
      auto pos = g.add_input("pos", DType::I32, {tok(B)});
      auto y = g.add_node(OpKind::KvStore, {cache, x, pos}, {{"ring", int64_t{1}}}, "cache_out", ft,
                          {fx(R), fx(96)});
      g.mark_output(y);
      OpCase c = simple("kv_store/ring/" + dn(ft), g, B, ft);
      c.pos0 = static_cast<int>(R * 5 + R - 2);
      out.push_back(std::move(c));
    }
    for (int64_t window : {int64_t{16}, int64_t{512}}) {  // attention over a ring cache
      if (window == 512 && ft != DType::F16) continue;
      const int64_t nh = 4, nkv = 1, hd = 256, C = window + B - 1;
      Graph g = base_graph(B, C);
      auto q = g.add_input("q", DType::F32, {tok(B), fx(nh * hd)});
      auto k = g.add_input("k", ft, {fx(C), fx(nkv * hd)});
      auto v = g.add_input("v", ft, {fx(C), fx(nkv * hd)});
      auto pos = g.add_input("pos", DType::I32, {tok(B)});
      ir::Attrs a = {{"n_heads", nh}, {"n_kv_heads", nkv}, {"head_dim", hd}, {"scale", 0.0625}, {"window", window}};
      auto y = g.add_node(OpKind::Attention, {q, k, v, pos}, a, "y", DType::F32, {tok(B), fx(nh * hd)});
      g.mark_output(y);
      OpCase c = simple("attention/window" + std::to_string(window) + "/" + dn(ft), g, B, ft);
      c.pos0 = static_cast<int>(3 * C + C - 2);  // rows wrap within the step
      out.push_back(std::move(c));
    }
  }
  return out;
}

// Every variant. `buckets` for the matmul family; other ops use `other_bucket`.
inline std::vector<OpCase> all_cases(const std::vector<int64_t>& mm_buckets, int64_t other_bucket) {
  std::vector<OpCase> out;
  const int64_t B = other_bucket;
  for (int64_t b : mm_buckets)  // decode-sized steps: the split-K attention
    if (b <= launch::kAttSplitMaxRows)
      for (auto& c : attention_split_cases(b)) out.push_back(std::move(c));
  for (DType wt : weight_dtypes()) {
    for (int64_t b : mm_buckets) {
      out.push_back(matmul_case(OpKind::MatMul, wt, b));
      out.push_back(matmul_case(OpKind::RmsMatMul, wt, b));
      out.push_back(matmul_case(OpKind::MatMulAdd, wt, b));
      out.push_back(matmul_case(OpKind::RmsMatMulSwiGlu, wt, b));
      out.push_back(lm_head_case(wt, b));
    }
    // embed
    Graph g = base_graph(B);
    const int64_t H = k_for(wt);
    auto tab = g.add_weight("table", wt, {fx(50), fx(H)}, "table");
    auto ids = g.add_input("ids", DType::I32, {tok(B)});
    auto y = g.add_node(OpKind::Embed, {tab, ids}, {{"scale", 1.5}}, "y", DType::F32, {tok(B), fx(H)});
    g.mark_output(y);
    out.push_back(simple("embed/" + dn(wt), g, B, wt));
  }
  // weights in the "planes" layout (the compile default): rows of 2048 (every
  // planes dtype fits, codegen layout_fits), compiled and eager kernels
  for (DType wt : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    auto planes = [&](OpCase c) {
      c.name += "/planes";
      c.weight_layout = "planes";
      out.push_back(std::move(c));
    };
    for (int64_t b : mm_buckets) {
      planes(matmul_case(OpKind::MatMul, wt, b, DType::F32, 2048));
      planes(matmul_case(OpKind::RmsMatMul, wt, b, DType::F32, 2048));
      planes(matmul_case(OpKind::RmsMatMulSwiGlu, wt, b, DType::F32, 2048));
      planes(lm_head_case(wt, b, 0, 2048));
    }
    Graph g = base_graph(B);
    const int64_t H = 2048;
    auto tab = g.add_weight("table", wt, {fx(50), fx(H)}, "table");
    auto ids = g.add_input("ids", DType::I32, {tok(B)});
    auto y = g.add_node(OpKind::Embed, {tab, ids}, {{"scale", 1.5}}, "y", DType::F32, {tok(B), fx(H)});
    g.mark_output(y);
    planes(simple("embed/" + dn(wt), g, B, wt));
  }
  // int8 activations (x_q8, the decode pipeline's q8-activations): the GEMV's
  // integer dot products against the interpreter's x_q8 semantics, in both
  // layouts; long rows (split 2 / 4 warps) and wide matrices (4 columns per
  // group) included
  for (DType wt : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q6_K})
    for (const char* layout : {"ggml", "planes"}) {
      const bool q5 = wt == DType::Q5_0 || wt == DType::Q5_1;
      if (q5 && std::string(layout) == "planes") continue;  // GGUF blocks only (no planes layout)
      auto xq = [&](OpCase c) {
        c.g.nodes()[0].attrs["x_q8"] = int64_t{1};
        c.ref = c.g;  // the interpreter's x_q8 matmuls are the reference (tested on the CPU)
        c.derive_weights = nullptr;
        c.derive_inputs = nullptr;
        c.fused = false;
        c.compiled_only = true;
        c.name += std::string("/xq") + (std::string(layout) == "planes" ? "/planes" : "");
        c.weight_layout = layout;
        out.push_back(std::move(c));
      };
      const int64_t k = std::string(layout) == "planes" ? 2048 : 0;  // rows that fit planes
      for (int64_t b : {int64_t{1}, int64_t{3}}) {
        xq(matmul_case(OpKind::MatMul, wt, b, DType::F32, k));
        xq(matmul_case(OpKind::RmsMatMul, wt, b, DType::F32, k));
        xq(matmul_case(OpKind::MatMulAdd, wt, b, DType::F32, k));
        xq(matmul_case(OpKind::RmsMatMulSwiGlu, wt, b, DType::F32, k));
        xq(lm_head_case(wt, b, 0, k));
      }
      xq(matmul_case(OpKind::MatMulAdd, wt, 1, DType::F32, 14336, 64));   // split 2
      xq(matmul_case(OpKind::MatMul, wt, 1, DType::F32, 16384, 40));      // split 4
      xq(matmul_case(OpKind::RmsMatMul, wt, 1, DType::F16, 4096, 4100));  // 4 columns per group, partial last group
      xq(matmul_case(OpKind::RmsMatMulSwiGlu, wt, 1, DType::F32, 2048, 2050));
      // sm_90's bulk-copy GEMV (int8 GEMVs of >= 2 MiB): many rows
      // per warp, so its buffers are refilled and its barriers change phase
      // Rows of 8-12 KiB (K = 14336, the 8B's down projection) take groups of
      // 2 warps per set of row buffers (4 for q6_K at 3 tokens): partial sums
      // merged per item.
      if (q5) {
        // Gemma 3 270M's shapes (rows of 640: 440 or 480 bytes, register
        // GEMVs) and rows of 2048 (16-byte multiples) on the bulk kernel (>= 2 MiB)
        xq(matmul_case(OpKind::RmsMatMul, wt, 1, DType::F32, 640, 1024));
        xq(matmul_case(OpKind::RmsMatMulSwiGlu, wt, 1, DType::F32, 640, 2048));
        for (int64_t b : {int64_t{1}, int64_t{3}}) {
          xq(matmul_case(OpKind::MatMulAdd, wt, b, DType::F32, 2048, 2100));
          xq(matmul_case(OpKind::RmsMatMulSwiGlu, wt, b, DType::F32, 2048, 1100));
        }
      }
      if (wt == DType::Q4_K || wt == DType::Q6_K)
        for (int64_t b : {int64_t{1}, int64_t{3}})
          xq(matmul_case(OpKind::MatMulAdd, wt, b, DType::F32, 14336, wt == DType::Q4_K ? 3200 : 2200));
      if (wt == DType::Q4_K) {
        xq(matmul_case(OpKind::MatMulAdd, wt, 1, DType::F32, 256, 180000));
        xq(matmul_case(OpKind::RmsMatMulSwiGlu, wt, 3, DType::F32, 512, 90001));
      } else if (wt == DType::Q8_0) {
        xq(matmul_case(OpKind::MatMul, wt, 1, DType::F32, 256, 8192));  // grid at q8_0's one-wave cap
      } else if (wt == DType::Q6_K) {
        xq(matmul_case(OpKind::MatMul, wt, 1, DType::F32, 2048, 16000));
        xq(lm_head_case(wt, 1, 20011, 2048));  // the LM head on the bulk kernel (34 MB)
        xq(lm_head_case(wt, 3, 20011, 2048));
      }
    }
  // rms_matmul with several weights of their own dtypes (the decode program's
  // mixed-type QKV, fuse-qkv-parts): Q4_K_M's q4_K q/k with a q6_K v in both
  // layouts (8B-like shapes: 4 columns per group for q, split 2 rows at 8192),
  // light types with partial column groups, and f32-activation parts
  for (const char* layout : {"ggml", "planes"})
    for (int64_t b : {int64_t{1}, int64_t{3}}) {
      out.push_back(parts_case({DType::Q4_K, DType::Q4_K, DType::Q6_K}, {4096, 1024, 1024}, 4096, b, true, layout));
      out.push_back(parts_case({DType::Q4_K, DType::Q4_K, DType::Q6_K}, {256, 64, 64}, 8192, b, true, layout));
      out.push_back(parts_case({DType::Q4_0, DType::Q8_0, DType::Q4_1}, {70, 36, 18}, 2048, b, true, layout));
    }
  out.push_back(parts_case({DType::F16, DType::F16, DType::F32}, {96, 32, 32}, 4096, 1, false, "ggml"));
  out.push_back(parts_case({DType::Q5_K, DType::Q5_K, DType::BF16}, {200, 40, 40}, 512, 3, false, "planes"));
  out.push_back(parts_case({DType::Q6_K, DType::Q4_K}, {130, 130}, 1024, 1, true, "planes"));
  // the rope_store epilogue of the QKV GEMV (rms_matmul_rope_store): SmolLM2's
  // q4_1 block (9 + 2*3 heads of 64, K = 576), the 8B Q4_K_M mixed block with
  // llama 3 frequency factors (4 columns per group, parts at column offsets
  // 4096 / 5120), a partial rotation on a bf16 cache, and the f32-activation
  // GEMV (K = 4096: one column per group of 4 split warps, so the epilogue
  // takes 2 columns per group) with f32 and f16 caches
  for (int64_t b : {int64_t{1}, int64_t{3}}) {
    out.push_back(rope_gemv_case({DType::Q4_1}, 9, 3, 64, 64, 576, b, true, DType::F32, DType::F16, false, "planes"));
    for (const char* layout : {"ggml", "planes"}) {
      out.push_back(rope_gemv_case({DType::Q4_K, DType::Q4_K, DType::Q6_K}, 32, 8, 128, 128, 4096, b, true,
                                   DType::F32, DType::F16, true, layout));
      // one weight of the 8B's 14 MB (q4_K, q8_0) and the 1B's mixed block:
      // sm_90's bulk-copy GEMV with the rope epilogue
      out.push_back(rope_gemv_case({DType::Q4_K}, 32, 8, 128, 128, 4096, b, true, DType::F32, DType::F16, true, layout));
      out.push_back(rope_gemv_case({DType::Q8_0}, 32, 8, 128, 128, 4096, b, true, DType::F32, DType::F16, false, layout));
      out.push_back(rope_gemv_case({DType::Q4_K, DType::Q4_K, DType::Q6_K}, 32, 8, 64, 64, 2048, b, true, DType::F32,
                                   DType::F16, true, layout));
    }
    out.push_back(rope_gemv_case({DType::Q8_0}, 4, 2, 64, 32, 2048, b, true, DType::F16, DType::BF16, false, "planes"));
    out.push_back(rope_gemv_case({DType::F16}, 4, 2, 64, 64, 4096, b, false, DType::F32, DType::F32, false, "ggml"));
    out.push_back(
        rope_gemv_case({DType::F16, DType::F16, DType::F32}, 4, 2, 64, 64, 512, b, false, DType::BF16, DType::F16, true, "ggml"));
  }
  // every weight dtype (int8 activations where the decode pipeline gives them)
  // at the positions of contexts 16, 512, 4096 and 8192
  for (DType wt : weight_dtypes())
    for (int64_t p : {int64_t{15}, int64_t{511}, int64_t{4095}, int64_t{8191}})
      out.push_back(rope_gemv_case({wt}, 4, 2, 64, 64, k_for(wt), 1, ir::act_q8_weight(wt), DType::F32, DType::F16,
                                   false, "planes", p));
  // long rows: the GEMV splits a column over 2 or 4 warps
  out.push_back(matmul_case(OpKind::MatMul, DType::Q4_0, 1, DType::F32, 2048));
  out.push_back(matmul_case(OpKind::MatMul, DType::F16, 1, DType::F32, 4096));
  out.push_back(matmul_case(OpKind::RmsMatMulSwiGlu, DType::Q4_K, 1, DType::F32, 4096));
  out.push_back(matmul_case(OpKind::MatMulAdd, DType::Q6_K, 3, DType::F32, 4096));
  // wide matrices: the GEMV computes 2 or 4 columns per warp group (codegen
  // gemv_rows: N * split / rows >= 4096); N leaves a partial last group
  out.push_back(matmul_case(OpKind::MatMul, DType::Q8_0, 1, DType::F32, 0, 16386));
  out.push_back(matmul_case(OpKind::RmsMatMul, DType::Q6_K, 4, DType::F32, 4096, 4097));
  out.push_back(matmul_case(OpKind::MatMulAdd, DType::Q4_K, 3, DType::F32, 2048, 8195));
  out.push_back(matmul_case(OpKind::RmsMatMulSwiGlu, DType::F16, 1, DType::F32, 4096, 2051));
  out.push_back(lm_head_case(DType::Q8_0, 1, 16390));
  // sm_90's bulk-copy GEMV on f32 activations (f16 / bf16 weights of >= 2
  // MiB while x takes at most 32 KiB): 1 and 3 tokens, a partial last item,
  // swiglu, the residual, the LM head with its sampling step, the
  // multi-weight launch with f32 x; and rows of K = 14336 (the 8B's down
  // projection), which keep the register GEMV
  for (DType wt : {DType::F16, DType::BF16})
    for (int64_t b : {int64_t{1}, int64_t{3}}) {
      const std::string tag = "/fx";
      auto fxc = [&](OpCase c) {
        c.name += tag;
        out.push_back(std::move(c));
      };
      fxc(matmul_case(OpKind::MatMul, wt, b, DType::F32, 2048, 2051));
      fxc(matmul_case(OpKind::RmsMatMulSwiGlu, wt, b, DType::F16, 2048, 2050));
      fxc(matmul_case(OpKind::MatMulAdd, wt, b, DType::F32, 14336, 1100));
      fxc(lm_head_case(wt, b, 20011, 2048));
    }
  out.push_back(parts_case({DType::F16, DType::F16, DType::BF16}, {1024, 256, 256}, 2048, 1, false, "ggml"));
  out.push_back(parts_case({DType::F16, DType::F16, DType::F16}, {1024, 256, 256}, 2048, 3, false, "ggml"));
  for (DType ft : float_dtypes()) {
    {  // rms_norm with a gain of dtype ft
      Graph g = base_graph(B);
      auto x = g.add_input("x", DType::F32, {tok(B), fx(96)});
      auto w = g.add_weight("gain", ft, {fx(96)}, "gain");
      auto y = g.add_node(OpKind::RmsNorm, {x, w}, eps_attr(), "y", DType::F32, {tok(B), fx(96)});
      g.mark_output(y);
      out.push_back(simple("rms_norm/" + dn(ft), g, B, ft));
      if (ft != DType::F32) out.push_back(matmul_case(OpKind::RmsMatMul, DType::Q4_K, 1, ft));
    }
    // rms_norm with the residual (fuse-norm-residual, Gemma 3's post-norms):
    // y = r + rms_norm(x, gain); ref: add(r, rms_norm(x, gain)). Rows of 640
    // (float4) and 98 (scalar); compiled only.
    for (int64_t H : {int64_t{640}, int64_t{98}}) {
      OpCase c;
      c.name = "rms_norm_res/" + dn(ft) + "/h" + std::to_string(H);
      c.bucket = B;
      c.dtype = ft;
      c.fused = true;
      c.compiled_only = true;
      c.g = base_graph(B);
      auto x = c.g.add_input("x", DType::F32, {tok(B), fx(H)});
      auto w = c.g.add_weight("gain", ft, {fx(H)}, "gain");
      auto r = c.g.add_input("r", DType::F32, {tok(B), fx(H)});
      auto y = c.g.add_node(OpKind::RmsNorm, {x, w, r}, {{"eps", 1e-6}, {"residual", int64_t{1}}}, "y", DType::F32,
                            {tok(B), fx(H)});
      c.g.mark_output(y);
      c.ref = base_graph(B);
      auto fx_ = c.ref.add_input("x", DType::F32, {tok(B), fx(H)});
      auto fw = c.ref.add_weight("gain", ft, {fx(H)}, "gain");
      auto fr = c.ref.add_input("r", DType::F32, {tok(B), fx(H)});
      auto fn = c.ref.add_node(OpKind::RmsNorm, {fx_, fw}, {{"eps", 1e-6}}, "n", DType::F32, {tok(B), fx(H)});
      auto fy = c.ref.add_node(OpKind::Add, {fr, fn}, {}, "y", DType::F32, {tok(B), fx(H)});
      c.ref.mark_output(fy);
      out.push_back(std::move(c));
    }
    for (OpKind op : {OpKind::Add, OpKind::Mul})
      for (bool row : {false, true}) {
        Graph g = base_graph(B);
        auto a = g.add_input("a", DType::F32, {tok(B), fx(100)});
        ir::ValueId b;
        if (row) b = g.add_weight("b", ft, {fx(100)}, "b");
        else if (ft == DType::F32) b = g.add_input("b", DType::F32, {tok(B), fx(100)});
        else continue;  // a full-shape b is an activation: f32 only
        auto y = g.add_node(op, {a, b}, {}, "y", DType::F32, {tok(B), fx(100)});
        g.mark_output(y);
        out.push_back(simple(std::string(op == OpKind::Add ? "add/" : "mul/") + dn(ft) + (row ? "/row" : "/full"), g,
                             B, ft));
      }
    {  // kv_store into a cache of dtype ft
      Graph g = base_graph(B);
      auto cache = g.add_state("cache", ft, {fx(64), fx(96)});
      auto x = g.add_input("x", DType::F32, {tok(B), fx(96)});
      auto pos = g.add_input("pos", DType::I32, {tok(B)});
      auto y = g.add_node(OpKind::KvStore, {cache, x, pos}, {}, "cache_out", ft, {fx(64), fx(96)});
      g.mark_output(y);
      out.push_back(simple("kv_store/" + dn(ft), g, B, ft));
    }
    for (int64_t hd : {64, 80, 256}) {  // attention over k, v of dtype ft (GQA 4:2)
      if (hd != 64 && ft != DType::F32) continue;
      Graph g = base_graph(B);
      const int64_t nh = 4, nkv = 2;
      auto q = g.add_input("q", DType::F32, {tok(B), fx(nh * hd)});
      auto k = g.add_input("k", ft, {fx(64), fx(nkv * hd)});
      auto v = g.add_input("v", ft, {fx(64), fx(nkv * hd)});
      auto pos = g.add_input("pos", DType::I32, {tok(B)});
      ir::Attrs a = {{"n_heads", nh}, {"n_kv_heads", nkv}, {"head_dim", hd}, {"scale", 1.0 / std::sqrt(double(hd))}};
      auto y = g.add_node(OpKind::Attention, {q, k, v, pos}, a, "y", DType::F32, {tok(B), fx(nh * hd)});
      g.mark_output(y);
      out.push_back(simple("attention/" + dn(ft) + "/hd" + std::to_string(hd), g, B, ft));
    }
    for (bool ff : {false, true}) out.push_back(rope_store_case(ft, ff, B));
    out.push_back(rope_store_case(ft, false, B, true, true));  // Gemma 3: q/k norms, ring caches
    out.push_back(rope_store_case(ft, true, B, true, false));
    {  // rope with frequency factors of dtype ft
      Graph g = base_graph(B);
      auto x = g.add_input("x", DType::F32, {tok(B), fx(4 * 64)});
      auto pos = g.add_input("pos", DType::I32, {tok(B)});
      auto ff = g.add_weight("ff", ft, {fx(16)}, "ff");
      auto y = g.add_node(OpKind::Rope, {x, pos, ff}, rope_attrs(4, 64, 32, false), "y", DType::F32,
                          {tok(B), fx(4 * 64)});
      g.mark_output(y);
      out.push_back(simple("rope/ff_" + dn(ft), g, B, ft));
    }
  }
  for (bool neox : {false, true})
    for (int64_t n_rot : {64, 32}) {
      Graph g = base_graph(B);
      auto x = g.add_input("x", DType::F32, {tok(B), fx(3 * 64)});
      auto pos = g.add_input("pos", DType::I32, {tok(B)});
      auto y = g.add_node(OpKind::Rope, {x, pos}, rope_attrs(3, 64, n_rot, neox), "y", DType::F32, {tok(B), fx(3 * 64)});
      g.mark_output(y);
      out.push_back(simple(std::string("rope/") + (neox ? "neox" : "normal") + "/rot" + std::to_string(n_rot), g, B,
                           DType::F32));
    }
  {
    Graph g = base_graph(B);
    auto x = g.add_input("x", DType::F32, {tok(B), fx(100)});
    auto y = g.add_node(OpKind::Silu, {x}, {}, "y", DType::F32, {tok(B), fx(100)});
    g.mark_output(y);
    out.push_back(simple("silu", g, B, DType::F32));
  }
  {
    Graph g = base_graph(B);
    auto a = g.add_input("gate", DType::F32, {tok(B), fx(100)});
    auto b = g.add_input("up", DType::F32, {tok(B), fx(100)});
    auto y = g.add_node(OpKind::SwiGlu, {a, b}, {}, "y", DType::F32, {tok(B), fx(100)});
    g.mark_output(y);
    out.push_back(simple("swiglu", g, B, DType::F32));
  }
  {
    Graph g = base_graph(B);
    auto x = g.add_input("x", DType::F32, {tok(B), fx(300)});
    auto y = g.add_node(OpKind::LastRow, {x}, {}, "y", DType::F32, {fx(1), fx(300)});
    g.mark_output(y);
    out.push_back(simple("last_row", g, B, DType::F32));
  }
  {
    Graph g = base_graph(B);
    // on the GPU argmax is the sampling step: one row (the logits of the last token)
    auto x = g.add_input("x", DType::F32, {fx(1), fx(1000)});
    auto y = g.add_node(OpKind::ArgMax, {x}, {}, "y", DType::I32, {fx(1)});
    g.mark_output(y);
    out.push_back(simple("argmax", g, B, DType::F32));
  }
  for (auto& c : gemma_cases(B)) out.push_back(std::move(c));
  return out;
}

// Gemma 3's sliding-window layers at decode: the split-K kernel over the
// window, read from a ring of window + rows - 1 rows (k_attention_split WIN):
// steps of 1 and 3 rows whose window wraps the ring, and early steps whose
// window is not yet full (a GQA group of 2 at head_dim 128 there, Gemma 3
// 270M's 4 heads on 1 KV head of 256 dims otherwise). (A list of their own,
// after every other case: the GPU cases seed their data with their index.)
inline std::vector<OpCase> window_split_cases() {
  std::vector<OpCase> out;
  for (DType ft : float_dtypes())
    for (int64_t window : {int64_t{16}, int64_t{512}})
      for (int64_t b : {int64_t{1}, int64_t{3}})
        for (int early = 0; early < 2; ++early) {
          if (window == 512 && ft != DType::F16 && (b != 1 || early)) continue;
          const bool gqa = early == 1;
          const int64_t nh = 4, nkv = gqa ? 2 : 1, hd = gqa ? 128 : 256, C = window + b - 1;
          OpCase c = attention_case(ft, b, C, nh, nkv, hd, true);
          c.g.nodes()[0].attrs["window"] = window;
          c.ref = c.g;
          c.name = "attention_split/window" + std::to_string(window) + "/" + dn(ft) + "/h" + std::to_string(nh) + "x" +
                   std::to_string(nkv) + "x" + std::to_string(hd) + "/b" + std::to_string(b) + (early ? "/early" : "");
          c.pos0 = early ? static_cast<int>(window / 2) : static_cast<int>(3 * C + C - 2);  // rows wrap within the step
          out.push_back(std::move(c));
        }
  return out;
}

// The LM head on the bulk kernel with several rows an item (codegen
// kLmHeadMinItemBytes): int8 activations in the GGUF layout, Gemma 3 270M's
// q8_0 rows of 640 (680 bytes, not a 16-byte multiple: whole items of 2 or 8
// rows are), SmolLM2's of 576 (612 bytes: 8 rows), and rows of 2048 in
// q8_0, q4_K and q6_K with odd vocabularies (a last item of fewer rows).
// Then the shapes of other types (q4_0, q5_0, f16 and bf16 on f32
// activations). Only q8_0 takes larger items today; the others run their
// usual rows here, so widening the rule finds its cases written. (A list of their own, after every other case: the GPU cases
// seed their data with their index.)
inline std::vector<OpCase> lm_head_item_cases() {
  std::vector<OpCase> out;
  auto xq = [&](OpCase c) {
    c.g.nodes()[0].attrs["x_q8"] = int64_t{1};
    c.ref = c.g;
    c.derive_weights = nullptr;
    c.derive_inputs = nullptr;
    c.fused = false;
    c.compiled_only = true;
    c.name += "/xq/items";
    c.weight_layout = "ggml";
    out.push_back(std::move(c));
  };
  for (int64_t b : {int64_t{1}, int64_t{3}}) xq(lm_head_case(DType::Q8_0, b, 20010, 640));
  xq(lm_head_case(DType::Q8_0, 1, 8196, 576));
  for (DType wt : {DType::Q8_0, DType::Q4_K, DType::Q6_K}) xq(lm_head_case(wt, 1, 20011, 2048));
  xq(lm_head_case(DType::Q4_0, 1, 20011, 2048));
  xq(lm_head_case(DType::Q4_0, 1, 8196, 576));
  xq(lm_head_case(DType::Q5_0, 1, 20010, 640));
  for (DType wt : {DType::F16, DType::BF16}) {
    OpCase c = lm_head_case(wt, 1, 8196, 576);
    c.name += "/fx/items";
    out.push_back(std::move(c));
  }
  return out;
}

// The tensor-core prefill path (the tensor-core-gemm pass, compiled programs
// only): cast of f32 activations to f16 / bf16, dequant of every weight dtype
// to f16 (bf16 for a bf16 weight), and the cuBLASLt GEMM (matmul / matmul_add
// on half x and w) at `gemm_buckets` tokens.
inline std::vector<OpCase> tensor_core_cases(const std::vector<int64_t>& gemm_buckets, int64_t other_bucket) {
  std::vector<OpCase> out;
  const int64_t B = other_bucket;
  for (DType h : {DType::F16, DType::BF16}) {
    Graph g = base_graph(B);
    auto x = g.add_input("x", DType::F32, {tok(B), fx(264)});
    auto y = g.add_node(OpKind::Cast, {x}, {}, "y", h, {tok(B), fx(264)});
    g.mark_output(y);
    out.push_back(simple("cast/" + dn(h), g, B, h));
    out.back().compiled_only = true;
  }
  // half-precision outputs (fold-cast: the producer of a GEMM operand writes
  // it rounded): rms_norm and swiglu, float4 rows (264) and scalar rows (258);
  // one f32 rms_norm of scalar rows for the eager and f32 path.
  for (DType h : {DType::F16, DType::BF16, DType::F32})
    for (int64_t H : {264, 258}) {
      if (h == DType::F32 && H == 264) continue;
      const std::string tag = (h == DType::F32 ? std::string("rms_norm/f32/") : "half_out/rms_norm/" + dn(h) + "/") +
                              "h" + std::to_string(H);
      Graph g = base_graph(B);
      auto x = g.add_input("x", DType::F32, {tok(B), fx(H)});
      auto w = g.add_weight("gain", DType::F32, {fx(H)}, "gain");
      auto y = g.add_node(OpKind::RmsNorm, {x, w}, eps_attr(), "y", h, {tok(B), fx(H)});
      g.mark_output(y);
      out.push_back(simple(tag, g, B, DType::F32));
      out.back().compiled_only = h != DType::F32;
    }
  for (DType h : {DType::F16, DType::BF16})
    for (int64_t N : {264, 258}) {
      Graph g = base_graph(B);
      auto a = g.add_input("gate", DType::F32, {tok(B), fx(N)});
      auto b = g.add_input("up", DType::F32, {tok(B), fx(N)});
      auto y = g.add_node(OpKind::SwiGlu, {a, b}, {}, "y", h, {tok(B), fx(N)});
      g.mark_output(y);
      out.push_back(simple("half_out/swiglu/" + dn(h) + "/n" + std::to_string(N), g, B, DType::F32));
      out.back().compiled_only = true;
    }
  for (DType h : {DType::F16, DType::BF16}) {  // geglu writing its GEMM operand (Gemma's FFN at prefill)
    Graph g = base_graph(B);
    auto a = g.add_input("gate", DType::F32, {tok(B), fx(258)});
    auto b = g.add_input("up", DType::F32, {tok(B), fx(258)});
    auto y = g.add_node(OpKind::GeGlu, {a, b}, {}, "y", h, {tok(B), fx(258)});
    g.mark_output(y);
    out.push_back(simple("half_out/geglu/" + dn(h), g, B, DType::F32));
    out.back().compiled_only = true;
  }
  for (DType wt : weight_dtypes()) {
    Graph g = base_graph(B);
    const int64_t K = k_for(wt);
    const DType h = wt == DType::BF16 ? DType::BF16 : DType::F16;
    auto w = g.add_weight("w", wt, {fx(24), fx(K)}, "w");
    auto y = g.add_node(OpKind::Dequant, {w}, {}, "y", h, {fx(24), fx(K)});
    g.mark_output(y);
    out.push_back(simple("dequant/" + dn(wt), g, B, wt));
    out.back().compiled_only = true;
  }
  for (DType h : {DType::F16, DType::BF16})
    for (int64_t b : gemm_buckets)
      for (bool residual : {false, true}) {
        Graph g = base_graph(b);
        const int64_t K = 256, N = 200;
        auto x = g.add_input("x", h, {tok(b), fx(K)});
        auto w = g.add_weight("w", h, {fx(N), fx(K)}, "w");
        ir::ValueId y;
        if (residual) {
          auto r = g.add_input("r", DType::F32, {tok(b), fx(N)});
          y = g.add_node(OpKind::MatMulAdd, {x, w, r}, {}, "y", DType::F32, {tok(b), fx(N)});
        } else {
          y = g.add_node(OpKind::MatMul, {x, w}, {}, "y", DType::F32, {tok(b), fx(N)});
        }
        g.mark_output(y);
        OpCase c = simple(std::string("gemm/") + (residual ? "add/" : "") + dn(h) + "/b" + std::to_string(b), g, b, h);
        c.compiled_only = true;
        out.push_back(std::move(c));
      }
  // flash attention (prefill chunks, f16 cache): each row attends its whole
  // causal prefix; SmolLM2 (9 heads, 3 KV, hd 64) and Llama (GQA, hd 128)
  // geometries, a chunk starting at position 0 and one deep into the cache.
  auto flash = [&](int64_t b, int64_t C, int64_t nh, int64_t nkv, int64_t hd, int pos0) {
    OpCase c = attention_case(DType::F16, b, C, nh, nkv, hd, false);
    c.name = "flash_" + c.name;
    if (pos0 >= 0) c.pos0 = pos0;
    c.compiled_only = true;
    out.push_back(std::move(c));
  };
  for (int64_t b : gemm_buckets) {
    if (b <= 512) {
      flash(b, 1024, 9, 3, 64, -1);
      flash(b, b, 8, 2, 128, 0);
    } else {
      flash(b, b, 4, 1, 128, 0);  // keeps the interpreter's share of a 4096-row case small
    }
  }
  // attention writing f16/bf16 (fold-cast): the flash kernel (f16 cache) and
  // the CUDA-core kernel (f32 cache), prefill-sized steps
  for (DType h : {DType::F16, DType::BF16})
    for (DType cache : {DType::F16, DType::F32}) {
      OpCase c = attention_case(cache, B, 256, 8, 2, 64, false);
      const ir::ValueId y = c.g.outputs()[0];
      c.g.mutable_values()[static_cast<size_t>(y)].dtype = h;
      c.ref = c.g;
      c.name = (cache == DType::F16 ? "flash_attention_o" : "attention_o") + dn(h) + "/" + c.name;
      c.compiled_only = true;
      out.push_back(std::move(c));
    }
  return out;
}

}  // namespace kiln::testcases
