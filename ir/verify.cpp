// The IR verifier: structural checks plus the dtype/shape rule of every op
// (the table in graph.h). Errors name the node index, its op, and the rule.
#include <cmath>
#include <set>
#include <sstream>

#include "ir/graph.h"
#include "ir/quantize.h"

namespace kiln::ir {
namespace {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += s[i].is_static() ? std::to_string(s[i].value) : s[i].sym;
  }
  return out + "]";
}

// Symbolic dims are equal when they name the same symbol; static dims when
// their sizes match. A symbolic dim never equals a static one.
bool dim_eq(const Dim& a, const Dim& b) {
  if (a.is_static() != b.is_static()) return false;
  return a.is_static() ? a.value == b.value : a.sym == b.sym;
}
bool shape_eq(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!dim_eq(a[i], b[i])) return false;
  return true;
}
bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

class NodeChecker {
 public:
  NodeChecker(const Graph& g, size_t index) : g_(g), n_(g.nodes()[index]), index_(index) {}

  [[noreturn]] void fail(const std::string& rule, const std::string& detail) const {
    std::string out_name = n_.outputs.empty() ? "?" : g_.value(n_.outputs[0]).name;
    throw Error(ErrorCode::kInternal,
                "IR verify: node " + std::to_string(index_) + " (" + std::string(op_info(n_.op).name) + " -> %" +
                    out_name + "): rule '" + rule + "' broken: " + detail,
                out_name);
  }
  const Value& in(size_t i) const { return g_.value(n_.inputs[i]); }
  const Value& out() const { return g_.value(n_.outputs[0]); }
  std::string desc(const Value& v) const {
    return "%" + v.name + " : " + std::string(dtype_name(v.dtype)) + shape_str(v.shape);
  }
  void rank(const Value& v, size_t r, const std::string& what) const {
    if (v.shape.size() != r) fail(what + " has rank " + std::to_string(r), desc(v));
  }
  void dtype(const Value& v, DType t, const std::string& what) const {
    if (v.dtype != t) fail(what + " is " + std::string(dtype_name(t)), desc(v));
  }
  void same_dim(const Dim& a, const Dim& b, const std::string& rule, const Value& va, const Value& vb) const {
    if (!dim_eq(a, b)) fail(rule, desc(va) + " vs " + desc(vb));
  }
  void out_is(DType t, const Shape& s) const {
    if (out().dtype != t) fail("output dtype", "expected " + std::string(dtype_name(t)) + ", got " + desc(out()));
    if (!shape_eq(out().shape, s)) fail("output shape", "expected " + shape_str(s) + ", got " + desc(out()));
  }
  // An activation that may be written in half precision: f32, or f16/bf16
  // when it only feeds a tensor-core GEMM (fold-cast; rounded like a cast).
  void out_act(const Shape& s) const {
    const DType t = out().dtype;
    if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
      fail("output dtype", "expected f32, f16 or bf16, got " + desc(out()));
    if (!shape_eq(out().shape, s)) fail("output shape", "expected " + shape_str(s) + ", got " + desc(out()));
  }
  void outputs(size_t k) const {
    if (n_.outputs.size() != k)
      fail("op has " + std::to_string(k) + " output(s)", "has " + std::to_string(n_.outputs.size()));
  }
  void out_n_is(size_t i, DType t, const Shape& s, const std::string& what) const {
    const Value& o = g_.value(n_.outputs[i]);
    if (o.dtype != t || !shape_eq(o.shape, s))
      fail("output " + std::to_string(i) + " (" + what + ") is " + std::string(dtype_name(t)) + shape_str(s), desc(o));
  }
  // x of matmul / matmul_add: f32, or f16 / bf16 when w has that same dtype.
  void half_or_f32_x(const Value& x, const Value& w, const std::string& op) const {
    if (x.dtype == DType::F32) return;
    if ((x.dtype == DType::F16 || x.dtype == DType::BF16) && w.dtype == x.dtype) return;
    fail(op + " x is f32, or f16/bf16 with a weight of the same dtype", desc(x) + " with w " + desc(w));
  }
  // w[N,K] of a matmul-like op reading x[T,K].
  void matmul_weight(const Value& x, const Value& w, const std::string& op) const {
    rank(w, 2, op + " w");
    if (w.dtype == DType::I32) fail(op + " w is a float or quantised type", desc(w));
    same_dim(x.shape[1], w.shape[1], op + " K must match (x[T,K], w[N,K])", x, w);
  }
  // Optional attr x_q8 (0|1) of the matmul family: the activation is
  // quantised in 16-value blocks (ir/quantize.h); f32 x and a weight dtype
  // with integer dot products only.
  void x_q8(const Value& x, const Value& w) const {
    if (!n_.attrs.count("x_q8")) return;
    const int64_t v = int_attr("x_q8");
    if (v != 0 && v != 1) fail("x_q8 is 0 or 1", "x_q8 = " + std::to_string(v));
    if (v == 0) return;
    if (x.dtype != DType::F32) fail("x_q8 quantises an f32 activation", desc(x));
    if (!act_q8_weight(w.dtype)) fail("x_q8 needs a weight of type q4_0, q4_1, q5_0, q5_1, q8_0, q4_k or q6_k", desc(w));
  }
  // Optional attr x_merge (0|1) of matmul and matmul_add, with the split
  // scratch' of the attention that produced x as the last input (index
  // `extra`; the defer-attention-merge pass): that attention carries
  // defer_merge = 1, and the kernel merges its partial states. The value of
  // the op is the same (the interpreter ignores the input).
  void x_merge(size_t extra) const {
    const bool has = n_.inputs.size() > extra;
    const int64_t v = n_.attrs.count("x_merge") ? int_attr("x_merge") : 0;
    if (v != 0 && v != 1) fail("x_merge is 0 or 1", "x_merge = " + std::to_string(v));
    if (has != (v == 1))
      fail("x_merge = 1 exactly when the attention's scratch' is an extra input",
           std::to_string(n_.inputs.size()) + " inputs, x_merge = " + std::to_string(v));
    if (!has) return;
    const Value& sc = in(extra);
    rank(sc, 1, "x_merge scratch");
    dtype(sc, DType::F32, "x_merge scratch");
    for (const Node& p : g_.nodes()) {
      if (p.op != OpKind::Attention || p.outputs.size() != 2 || p.outputs[1] != n_.inputs[extra]) continue;
      if (p.outputs[0] != n_.inputs[0]) fail("x_merge: x is the output of the attention whose scratch' is the input", desc(in(0)));
      if (!p.attrs.count("defer_merge") || p.attr_int("defer_merge") != 1)
        fail("x_merge: the attention that produced x has defer_merge = 1", desc(sc));
      return;
    }
    fail("x_merge: the extra input is an attention's scratch' output", desc(sc));
  }
  int64_t int_attr(const std::string& key) const {
    try {
      return n_.attr_int(key);
    } catch (const Error& e) {
      fail("attribute '" + key + "'", e.what());
    }
  }
  double float_attr(const std::string& key, bool required) const {
    try {
      if (!required) return n_.attr_float_opt(key).value_or(0.0);
      return n_.attr_float(key);
    } catch (const Error& e) {
      fail("attribute '" + key + "'", e.what());
    }
  }
  std::string str_attr(const std::string& key) const {
    try {
      return n_.attr_str(key);
    } catch (const Error& e) {
      fail("attribute '" + key + "'", e.what());
    }
  }

  // The rms prologue of the rms_matmul family: x[T,K] f32, gain[K] of a float
  // type, attr eps.
  void rms_prologue(const Value& x, const Value& gn, const std::string& op) const {
    rank(x, 2, op + " x");
    dtype(x, DType::F32, op + " x");
    rank(gn, 1, op + " gain");
    if (!is_float(gn.dtype)) fail(op + " gain is a float type", desc(gn));
    same_dim(x.shape[1], gn.shape[0], op + " gain width equals x width", x, gn);
    float_attr("eps", true);
  }
  // rms_matmul's weights, inputs [w0, w1): each w[N,K] (x_q8: each of a type
  // with integer dot products). Returns the output width: N of one weight, or
  // (several weights, the fuse-qkv-parts pass: their output columns side by
  // side, each weight of its own dtype) the sum of their static row counts.
  Dim rms_weights(const Value& x, size_t w0, size_t w1, const std::string& op) const {
    if (w1 == w0 + 1) {
      const Value& w = in(w0);
      matmul_weight(x, w, op);
      x_q8(x, w);
      return w.shape[0];
    }
    int64_t cols = 0;
    for (size_t i = w0; i < w1; ++i) {
      const Value& wi = in(i);
      matmul_weight(x, wi, op);
      x_q8(x, wi);
      if (!wi.shape[0].is_static()) fail(op + " with several weights: each has a static row count", desc(wi));
      cols += wi.shape[0].value;
    }
    return Dim::fixed(cols);
  }
  // rope_store's rules (attrs, pos, caches, freq_factors, outputs q, kc', vc')
  // for a qkv activation of the rows of `rows_of` (pos has one entry per row)
  // and `width` columns (`width_what`, described by `width_desc` in errors):
  // rope_store's input 0, or rms_matmul_rope_store's product of x.
  void rope_store_rules(const std::string& op, const Value& rows_of, const Dim& width, const std::string& width_what,
                        const std::string& width_desc, const Value& pos, const Value& kc, const Value& vc,
                        const Value* ff) const {
    rank(pos, 1, op + " pos");
    dtype(pos, DType::I32, op + " pos");
    same_dim(rows_of.shape[0], pos.shape[0], op + " pos has one entry per row of " + (n_.op == OpKind::RopeStore ? "qkv" : "x"),
             rows_of, pos);
    int64_t nh = int_attr("n_heads"), nkv = int_attr("n_kv_heads"), hd = int_attr("head_dim"),
            n_rot = int_attr("n_rot");
    float_attr("theta", true);
    std::string mode = str_attr("mode");
    if (mode != "normal" && mode != "neox") fail("rope mode is \"normal\" or \"neox\"", "mode = \"" + mode + "\"");
    if (nh <= 0 || nkv <= 0 || hd <= 0)
      fail(op + " n_heads, n_kv_heads, head_dim > 0",
           "n_heads " + std::to_string(nh) + ", n_kv_heads " + std::to_string(nkv) + ", head_dim " + std::to_string(hd));
    if (n_rot <= 0 || n_rot > hd || n_rot % 2 != 0)
      fail("rope n_rot is even and in (0, head_dim]", "n_rot " + std::to_string(n_rot) + ", head_dim " + std::to_string(hd));
    if (!dim_eq(width, Dim::fixed((nh + 2 * nkv) * hd)))
      fail(op + " " + width_what + " == (n_heads + 2*n_kv_heads)*head_dim",
           width_desc + "; n_heads " + std::to_string(nh) + ", n_kv_heads " + std::to_string(nkv) + ", head_dim " +
               std::to_string(hd));
    for (const Value* c : {&kc, &vc}) {
      if (c->kind != ValueKind::State) fail(op + " inputs 2, 3 are State values (k, v caches)", desc(*c));
      rank(*c, 2, op + " cache");
      if (!is_float(c->dtype)) fail(op + " cache is a float type", desc(*c));
      if (!dim_eq(c->shape[1], Dim::fixed(nkv * hd))) fail(op + " cache width == n_kv_heads*head_dim", desc(*c));
    }
    if (kc.dtype != vc.dtype || !shape_eq(kc.shape, vc.shape))
      fail(op + " k and v caches have one type", desc(kc) + " vs " + desc(vc));
    if (ff) {
      rank(*ff, 1, op + " freq_factors");
      if (!is_float(ff->dtype)) fail(op + " freq_factors is a float type", desc(*ff));
      if (!dim_eq(ff->shape[0], Dim::fixed(n_rot / 2)))
        fail(op + " freq_factors has n_rot/2 entries", desc(*ff) + ", n_rot " + std::to_string(n_rot));
    }
    outputs(3);
    out_n_is(0, DType::F32, {rows_of.shape[0], Dim::fixed(nh * hd)}, "q");
    out_n_is(1, kc.dtype, kc.shape, "k cache'");
    out_n_is(2, vc.dtype, vc.shape, "v cache'");
  }

  void check() {
    switch (n_.op) {
      case OpKind::Embed: {
        const Value &t = in(0), &ids = in(1);
        rank(t, 2, "embed table");
        rank(ids, 1, "embed ids");
        dtype(ids, DType::I32, "embed ids");
        float_attr("scale", false);
        out_is(DType::F32, {ids.shape[0], t.shape[1]});
        break;
      }
      case OpKind::RmsNorm: {
        const Value &x = in(0), &w = in(1);
        rank(x, 2, "rms_norm x");
        dtype(x, DType::F32, "rms_norm x");
        rank(w, 1, "rms_norm w");
        if (!is_float(w.dtype)) fail("rms_norm w is a float type", desc(w));
        if (n_.attrs.count("head_dim")) {  // per-head norm: w is one head wide
          const int64_t hd = int_attr("head_dim");
          if (hd <= 0 || !x.shape[1].is_static() || x.shape[1].value % hd != 0)
            fail("rms_norm head_dim > 0 divides the width of x", desc(x) + ", head_dim " + std::to_string(hd));
          same_dim(Dim::fixed(hd), w.shape[0], "rms_norm w width equals head_dim", x, w);
        } else {
          same_dim(x.shape[1], w.shape[0], "rms_norm w width equals x width", x, w);
        }
        float_attr("eps", true);
        // residual = 1 (fuse-norm-residual, Gemma 3's post-norms): y = r + rms_norm(x, w), r input 2
        const bool res = n_.attrs.count("residual") != 0;
        if (res && int_attr("residual") != 1) fail("rms_norm residual is 1", "residual = " + std::to_string(int_attr("residual")));
        if (res != (n_.inputs.size() == 3))
          fail("rms_norm has a third input (the residual r) exactly when attr residual = 1",
               std::to_string(n_.inputs.size()) + " inputs");
        if (res) {
          if (n_.attrs.count("head_dim")) fail("rms_norm residual is a whole-row norm (no head_dim)", desc(x));
          const Value& r = in(2);
          dtype(r, DType::F32, "rms_norm residual");
          if (!shape_eq(r.shape, x.shape)) fail("rms_norm residual has the shape of x", desc(r) + " vs " + desc(x));
          out_is(DType::F32, x.shape);
          break;
        }
        out_act(x.shape);
        break;
      }
      case OpKind::MatMul: {
        const Value &x = in(0), &w = in(1);
        rank(x, 2, "matmul x");
        half_or_f32_x(x, w, "matmul");
        rank(w, 2, "matmul w");
        if (w.dtype == DType::I32) fail("matmul w is a float or quantised type", desc(w));
        same_dim(x.shape[1], w.shape[1], "matmul K must match (x[T,K], w[N,K])", x, w);
        out_is(DType::F32, {x.shape[0], w.shape[0]});
        x_q8(x, w);
        x_merge(2);
        break;
      }
      case OpKind::Add:
      case OpKind::Mul: {
        const Value &a = in(0), &b = in(1);
        if (a.shape.empty()) fail("binary op a has rank >= 1", desc(a));
        dtype(a, DType::F32, "binary op a");
        if (!is_float(b.dtype)) fail("binary op b is a float type", desc(b));
        bool full = shape_eq(a.shape, b.shape);
        bool row = b.shape.size() == 1 && dim_eq(b.shape[0], a.shape.back());
        if (!full && !row) fail("b has the shape of a or is a row of a's width", desc(a) + " vs " + desc(b));
        out_is(DType::F32, a.shape);
        break;
      }
      case OpKind::Silu: {
        dtype(in(0), DType::F32, "silu x");
        out_is(DType::F32, in(0).shape);
        break;
      }
      case OpKind::SwiGlu:
      case OpKind::GeGlu: {
        const Value &gate = in(0), &up = in(1);
        const std::string op(op_info(n_.op).name);
        dtype(gate, DType::F32, op + " gate");
        dtype(up, DType::F32, op + " up");
        if (!shape_eq(gate.shape, up.shape)) fail(op + " gate and up have one shape", desc(gate) + " vs " + desc(up));
        out_act(gate.shape);
        break;
      }
      case OpKind::Rope: {
        const Value &x = in(0), &pos = in(1);
        rank(x, 2, "rope x");
        dtype(x, DType::F32, "rope x");
        rank(pos, 1, "rope pos");
        dtype(pos, DType::I32, "rope pos");
        same_dim(x.shape[0], pos.shape[0], "rope pos has one entry per row of x", x, pos);
        int64_t nh = int_attr("n_heads"), hd = int_attr("head_dim"), n_rot = int_attr("n_rot");
        float_attr("theta", true);
        if (n_.attrs.count("freq_scale")) {
          const double fs = float_attr("freq_scale", true);
          if (!(fs > 0) || !std::isfinite(fs)) fail("rope freq_scale is positive", std::to_string(fs));
        }
        std::string mode = str_attr("mode");
        if (mode != "normal" && mode != "neox") fail("rope mode is \"normal\" or \"neox\"", "mode = \"" + mode + "\"");
        if (nh <= 0 || hd <= 0) fail("rope n_heads, head_dim > 0", "n_heads " + std::to_string(nh) + ", head_dim " + std::to_string(hd));
        if (!x.shape[1].is_static() || x.shape[1].value != nh * hd)
          fail("rope width == n_heads*head_dim", desc(x) + ", n_heads " + std::to_string(nh) + " * head_dim " + std::to_string(hd));
        if (n_rot <= 0 || n_rot > hd || n_rot % 2 != 0)
          fail("rope n_rot is even and in (0, head_dim]", "n_rot " + std::to_string(n_rot) + ", head_dim " + std::to_string(hd));
        if (n_.inputs.size() == 3) {
          const Value& ff = in(2);
          rank(ff, 1, "rope freq_factors");
          if (!is_float(ff.dtype)) fail("rope freq_factors is a float type", desc(ff));
          if (!ff.shape[0].is_static() || ff.shape[0].value != n_rot / 2)
            fail("rope freq_factors has n_rot/2 entries", desc(ff) + ", n_rot " + std::to_string(n_rot));
        }
        out_is(DType::F32, x.shape);
        break;
      }
      case OpKind::KvStore: {
        const Value &cache = in(0), &x = in(1), &pos = in(2);
        if (cache.kind != ValueKind::State) fail("kv_store input 0 is a State value", desc(cache));
        rank(cache, 2, "kv_store cache");
        if (!is_float(cache.dtype)) fail("kv_store cache is a float type", desc(cache));
        rank(x, 2, "kv_store x");
        dtype(x, DType::F32, "kv_store x");
        rank(pos, 1, "kv_store pos");
        dtype(pos, DType::I32, "kv_store pos");
        same_dim(cache.shape[1], x.shape[1], "kv_store x width equals cache width", cache, x);
        same_dim(x.shape[0], pos.shape[0], "kv_store pos has one entry per row of x", x, pos);
        if (n_.attrs.count("ring")) {
          const int64_t ring = int_attr("ring");
          if (ring != 0 && ring != 1) fail("kv_store ring is 0 or 1", std::to_string(ring));
        }
        out_is(cache.dtype, cache.shape);
        break;
      }
      case OpKind::Attention: {
        const Value &q = in(0), &k = in(1), &v = in(2), &pos = in(3);
        rank(q, 2, "attention q");
        rank(k, 2, "attention k");
        rank(v, 2, "attention v");
        rank(pos, 1, "attention pos");
        dtype(q, DType::F32, "attention q");
        if (!is_float(k.dtype)) fail("attention k is a float type", desc(k));
        if (!is_float(v.dtype)) fail("attention v is a float type", desc(v));
        dtype(pos, DType::I32, "attention pos");
        int64_t nh = int_attr("n_heads"), nkv = int_attr("n_kv_heads"), hd = int_attr("head_dim");
        float_attr("scale", true);
        if (nh <= 0 || nkv <= 0 || hd <= 0) fail("attention n_heads, n_kv_heads, head_dim > 0", "n_heads " + std::to_string(nh) + ", n_kv_heads " + std::to_string(nkv) + ", head_dim " + std::to_string(hd));
        if (nh % nkv != 0)
          fail("attention n_heads % n_kv_heads == 0", "n_heads " + std::to_string(nh) + ", n_kv_heads " + std::to_string(nkv));
        if (!dim_eq(q.shape[1], Dim::fixed(nh * hd)))
          fail("attention q width == n_heads*head_dim", desc(q) + ", n_heads " + std::to_string(nh) + " * head_dim " + std::to_string(hd));
        if (!dim_eq(k.shape[1], Dim::fixed(nkv * hd)))
          fail("attention k width == n_kv_heads*head_dim", desc(k) + ", n_kv_heads " + std::to_string(nkv) + " * head_dim " + std::to_string(hd));
        if (!shape_eq(k.shape, v.shape)) fail("attention k and v have one shape", desc(k) + " vs " + desc(v));
        same_dim(q.shape[0], pos.shape[0], "attention pos has one entry per row of q", q, pos);
        if (n_.attrs.count("window")) {  // sliding window: a full cache, or a ring that keeps a whole chunk
          const int64_t w = int_attr("window");
          if (w < 0) fail("attention window >= 0", std::to_string(w));
          if (w > 0 && k.shape[0].is_static() && k.shape[0].value < w + q.shape[0].value - 1)
            fail("attention over a ring cache has >= window + tokens - 1 rows",
                 desc(k) + ", window " + std::to_string(w) + ", tokens " + std::to_string(q.shape[0].value));
        }
        if (n_.attrs.count("defer_merge")) {  // (the defer-attention-merge pass; x_merge)
          const int64_t dm = int_attr("defer_merge");
          if (dm != 0 && dm != 1) fail("defer_merge is 0 or 1", "defer_merge = " + std::to_string(dm));
          if (dm == 1 && n_.inputs.size() != 5) fail("defer_merge needs the split-K scratch", desc(q));
          if (dm == 1) {  // the kernel leaves y unmerged for one reader: the GEMV that merges
            const ValueId y = n_.outputs.empty() ? kNoValue : n_.outputs[0];
            int readers = 0, merging = 0;
            for (const Node& c : g_.nodes())
              for (ValueId v : c.inputs)
                if (v == y) {
                  ++readers;
                  merging += c.attrs.count("x_merge") && c.attr_int("x_merge") == 1 && c.inputs[0] == y;
                  break;
                }
            for (ValueId o : g_.outputs()) readers += o == y;
            if (readers != 1 || merging != 1)
              fail("defer_merge: the output's one reader is the matmul that merges it (x_merge)", desc(q));
          }
        }
        if (n_.inputs.size() == 5) {  // the split-K scratch (split-decode-attention pass)
          const Value& sc = in(4);
          if (sc.kind != ValueKind::State) fail("attention input 4 (scratch) is a State value", desc(sc));
          rank(sc, 1, "attention scratch");
          dtype(sc, DType::F32, "attention scratch");
          outputs(2);
          out_n_is(1, sc.dtype, sc.shape, "scratch'");
          out_is(DType::F32, q.shape);  // the split-K decode kernel writes f32
        } else {
          outputs(1);
          out_act(q.shape);
        }
        break;
      }
      case OpKind::LastRow: {
        rank(in(0), 2, "last_row x");
        dtype(in(0), DType::F32, "last_row x");
        out_is(DType::F32, {Dim::fixed(1), in(0).shape[1]});
        break;
      }
      case OpKind::ArgMax: {
        rank(in(0), 2, "argmax x");
        dtype(in(0), DType::F32, "argmax x");
        out_is(DType::I32, {in(0).shape[0]});
        break;
      }
      case OpKind::Cast: {
        const Value& x = in(0);
        rank(x, 2, "cast x");
        dtype(x, DType::F32, "cast x");
        outputs(1);
        if (out().dtype != DType::F16 && out().dtype != DType::BF16) fail("cast output is f16 or bf16", desc(out()));
        out_is(out().dtype, x.shape);
        break;
      }
      case OpKind::Dequant: {
        const Value& w = in(0);
        rank(w, 2, "dequant w");
        if (w.dtype == DType::I32) fail("dequant w is a float or quantised type", desc(w));
        outputs(1);
        if (out().dtype != DType::F16 && out().dtype != DType::BF16) fail("dequant output is f16 or bf16", desc(out()));
        out_is(out().dtype, w.shape);
        break;
      }
      // ---- fused ops (compiler/passes; docs/plan-abi.md "Fused ops")
      case OpKind::RmsMatMul:
      case OpKind::RmsMatMulSwiGlu:
      case OpKind::LmHeadSample: {
        const Value &x = in(0), &w = in(2);
        const std::string op(op_info(n_.op).name);
        rms_prologue(x, in(1), op);
        if (n_.op == OpKind::RmsMatMul) {
          outputs(1);
          out_is(DType::F32, {x.shape[0], rms_weights(x, 2, n_.inputs.size(), op)});
          break;
        }
        matmul_weight(x, w, op);
        x_q8(x, w);
        if (n_.op == OpKind::RmsMatMulSwiGlu) {
          outputs(1);
          if (n_.attrs.count("act")) {
            const std::string act = str_attr("act");
            if (act != "silu" && act != "gelu_tanh")
              fail("rms_matmul_swiglu act is \"silu\" or \"gelu_tanh\"", "act = \"" + act + "\"");
          }
          if (!w.shape[0].is_static() || w.shape[0].value % 2 != 0)
            fail("rms_matmul_swiglu w has 2F rows (gate rows, then up rows)", desc(w));
          out_is(DType::F32, {x.shape[0], Dim::fixed(w.shape[0].value / 2)});
        } else {
          outputs(2);
          out_n_is(0, DType::I32, {Dim::fixed(1)}, "token");
          out_n_is(1, DType::F32, {Dim::fixed(1), w.shape[0]}, "logits");
        }
        break;
      }
      case OpKind::MatMulAdd: {
        const Value &x = in(0), &w = in(1), &r = in(2);
        rank(x, 2, "matmul_add x");
        half_or_f32_x(x, w, "matmul_add");
        matmul_weight(x, w, "matmul_add");
        x_q8(x, w);
        const Shape want{x.shape[0], w.shape[0]};
        dtype(r, DType::F32, "matmul_add r");
        if (!shape_eq(r.shape, want)) fail("matmul_add r has the output shape [T,N]", desc(r));
        x_merge(3);
        outputs(1);
        out_is(DType::F32, want);
        break;
      }
      case OpKind::RopeStore: {
        const Value& qkv = in(0);
        rank(qkv, 2, "rope_store qkv");
        dtype(qkv, DType::F32, "rope_store qkv");
        // qk_norm_eps: q and k heads are RMS-normalised (gains gq, gk of head_dim, inputs 4 and 5)
        // before the rope; the optional freq_factors come last
        const bool qn = n_.attrs.count("qk_norm_eps") != 0;
        const size_t ffi = rope_store_ff_input(n_);
        if (n_.inputs.size() > ffi + 1 || n_.inputs.size() < ffi)
          fail(std::string("rope_store has inputs qkv, pos, kc, vc") + (qn ? ", gq, gk (qk_norm_eps)" : "") +
                   " [, freq_factors]",
               std::to_string(n_.inputs.size()) + " inputs");
        if (qn) {
          float_attr("qk_norm_eps", true);
          const int64_t hd = int_attr("head_dim");
          for (size_t i : {size_t{4}, size_t{5}}) {
            rank(in(i), 1, "rope_store q/k norm gain");
            dtype(in(i), DType::F32, "rope_store q/k norm gain");
            if (!dim_eq(in(i).shape[0], Dim::fixed(hd))) fail("rope_store q/k norm gain has head_dim entries", desc(in(i)));
          }
        }
        if (n_.attrs.count("ring")) {
          const int64_t r = int_attr("ring");
          if (r != 0 && r != 1) fail("rope_store ring is 0 or 1", "ring = " + std::to_string(r));
        }
        rope_store_rules("rope_store", qkv, qkv.shape[1], "qkv width", desc(qkv), in(1), in(2), in(3),
                         n_.inputs.size() > ffi ? &in(ffi) : nullptr);
        break;
      }
      case OpKind::RmsMatMulRopeStore: {
        // x, pos, kc, vc, gain, 1 or 3 weights [, freq_factors (rank 1, last)]: rope_store(rms_matmul(...))
        const std::string op(op_info(n_.op).name);
        const Value& x = in(0);
        const size_t w_end = matmul_weight_inputs(g_, n_).last, n_w = w_end - 5;
        const bool has_ff = w_end < n_.inputs.size();
        if (n_w != 1 && n_w != 3)
          fail(op + " has 1 or 3 weights (inputs 5.., then the optional rank-1 freq_factors)",
               std::to_string(n_w) + " weight(s) among " + std::to_string(n_.inputs.size()) + " inputs");
        if (n_.attrs.count("qk_norm_eps") || n_.attrs.count("ring"))
          fail(op + " has no qk_norm_eps or ring (the GEMV epilogue ropes unnormalised heads into flat caches)",
               "attrs of rope_store's fused form");
        rms_prologue(x, in(4), op);
        const Dim cols = rms_weights(x, 5, w_end, op);
        std::string weights;
        for (size_t i = 5; i < w_end; ++i) weights += (i > 5 ? ", " : "") + desc(in(i));
        rope_store_rules(op, x, cols, "weight rows in all (the qkv width)", weights, in(1), in(2), in(3),
                         has_ff ? &in(w_end) : nullptr);
        break;
      }
      default:
        fail("op has a verifier rule", "no shape rule is implemented for this op yet");
    }
  }

 private:
  const Graph& g_;
  const Node& n_;
  size_t index_;
};

[[noreturn]] void fail_graph(const std::string& msg, const std::string& field = {}) {
  throw Error(ErrorCode::kInternal, "IR verify: " + msg, field);
}

}  // namespace

void verify(const Graph& g) {
  const auto& values = g.values();
  const auto nv = static_cast<ValueId>(values.size());
  std::set<std::string> names;
  for (ValueId i = 0; i < nv; ++i) {
    const Value& v = values[static_cast<size_t>(i)];
    if (v.id != i) fail_graph("value #" + std::to_string(i) + " ('" + v.name + "') has id " + std::to_string(v.id), v.name);
    if (v.name.empty()) fail_graph("value #" + std::to_string(i) + " has an empty name");
    if (!names.insert(v.name).second) fail_graph("value name '" + v.name + "' is used twice", v.name);
    if (v.kind == ValueKind::Weight && v.source.empty())
      fail_graph("weight %" + v.name + " has no source tensor name", v.name);
    for (const Dim& d : v.shape) {
      if (d.value < 0) fail_graph("value %" + v.name + " has a negative dim " + shape_str(v.shape), v.name);
      if (d.is_static()) continue;
      auto it = g.sym_bounds.find(d.sym);
      if (it == g.sym_bounds.end())
        fail_graph("value %" + v.name + " uses symbolic dim '" + d.sym + "' that is not in sym_bounds", v.name);
      if (it->second != d.value)
        fail_graph("value %" + v.name + " gives symbolic dim '" + d.sym + "' bound " + std::to_string(d.value) +
                       " but sym_bounds says " + std::to_string(it->second),
                   v.name);
    }
  }
  for (const auto& [sym, bound] : g.sym_bounds)
    if (bound <= 0) fail_graph("symbolic dim '" + sym + "' has bound " + std::to_string(bound) + " (must be > 0)", sym);

  // defined[v]: graph inputs/weights/states are defined up front; temps when
  // their producing node runs (each exactly once).
  std::vector<char> defined(values.size(), 0);
  std::vector<int> producer(values.size(), -1);
  for (const Value& v : values) defined[static_cast<size_t>(v.id)] = v.kind != ValueKind::Temp;
  const auto& nodes = g.nodes();
  for (size_t ni = 0; ni < nodes.size(); ++ni) {
    const Node& n = nodes[ni];
    const OpInfo& info = op_info(n.op);
    std::string where = "node " + std::to_string(ni) + " (" + std::string(info.name) + ")";
    if (n.outputs.empty()) fail_graph(where + ": rule 'at least one output' broken: has none");
    for (ValueId o : n.outputs)
      if (o < 0 || o >= nv) fail_graph(where + ": output id " + std::to_string(o) + " out of range");
    int arity = static_cast<int>(n.inputs.size());
    if (arity < info.min_inputs || arity > info.max_inputs)
      fail_graph(where + " -> %" + g.value(n.outputs[0]).name + ": rule 'arity' broken: takes " +
                     std::to_string(info.min_inputs) + ".." + std::to_string(info.max_inputs) + " inputs, has " +
                     std::to_string(arity),
                 g.value(n.outputs[0]).name);
    for (ValueId in : n.inputs) {
      if (in < 0 || in >= nv) fail_graph(where + ": input id " + std::to_string(in) + " out of range");
      if (!defined[static_cast<size_t>(in)])
        fail_graph(where + " -> %" + g.value(n.outputs[0]).name + ": rule 'defined before use' broken: input %" +
                       g.value(in).name + " is not defined by an earlier node",
                   g.value(in).name);
    }
    for (ValueId o : n.outputs) {
      const Value& ov = g.value(o);
      if (ov.kind != ValueKind::Temp)
        fail_graph(where + ": output %" + ov.name + " is an input/weight/state; node outputs must be temps", ov.name);
      if (producer[static_cast<size_t>(o)] >= 0)
        fail_graph(where + ": output %" + ov.name + " is already defined by node " +
                       std::to_string(producer[static_cast<size_t>(o)]),
                   ov.name);
      producer[static_cast<size_t>(o)] = static_cast<int>(ni);
    }
    NodeChecker(g, ni).check();
    // In-place outputs (OpInfo::output_alias): the aliased input is a State of
    // the output's dtype and shape, so both can share one buffer.
    for (size_t j = 0; j < n.outputs.size(); ++j) {
      const int k = info.aliased_input(j);
      if (k < 0) continue;
      const Value& ov = g.value(n.outputs[j]);
      if (static_cast<size_t>(k) >= n.inputs.size())
        fail_graph(where + ": rule 'output " + std::to_string(j) + " aliases input " + std::to_string(k) +
                       "' broken: the node has " + std::to_string(n.inputs.size()) + " inputs",
                   ov.name);
      const Value& iv = g.value(n.inputs[static_cast<size_t>(k)]);
      if (iv.kind != ValueKind::State || iv.dtype != ov.dtype || !shape_eq(iv.shape, ov.shape))
        fail_graph(where + ": rule 'output " + std::to_string(j) + " aliases input " + std::to_string(k) +
                       ", a State of the same type' broken: %" + ov.name + " : " + std::string(dtype_name(ov.dtype)) +
                       shape_str(ov.shape) + " vs %" + iv.name + " : " + std::string(dtype_name(iv.dtype)) +
                       shape_str(iv.shape),
                   ov.name);
    }
    for (ValueId o : n.outputs) defined[static_cast<size_t>(o)] = 1;
  }
  if (g.outputs().empty()) fail_graph("the graph has no outputs");
  for (ValueId o : g.outputs()) {
    if (o < 0 || o >= nv) fail_graph("graph output id " + std::to_string(o) + " out of range");
    if (!defined[static_cast<size_t>(o)])
      fail_graph("graph output %" + g.value(o).name + " is never defined", g.value(o).name);
  }
}

}  // namespace kiln::ir
