// RoPE / KV-store family (kernels/rope.cuh): rope on q or k rows, the fused
// rope_store (rope q and k, write k and v into the KV caches), and the plain
// kv_store of the unfused graph. One block per (token, head).
#include "codegen/family.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {
using ir::DType;
using ir::OpKind;

struct RopeParams {
  OpKind op = OpKind::Rope;
  DType ff_dt = DType::F32;     // frequency factors' dtype (has_ff)
  DType cache_dt = DType::F32;  // KV cache dtype (rope_store, kv_store)
  bool has_ff = false;
  size_t ffi = 2;               // the freq_factors' input (rope 2; rope_store ir::rope_store_ff_input)
  int64_t T = 0, C = 0, W = 0;  // rows, cache rows, kv_store row width
  int64_t nh = 0, nkv = 0, hd = 0, n_rot = 0;
  bool neox = false;
  double theta = 0;
  double fscale = 1.0;  // rope: attr freq_scale (linear rope scaling)
  bool ring = false;    // kv_store, rope_store: attr ring (row pos mod C)
  bool qn = false;      // rope_store: attr qk_norm_eps (q and k heads RMS-normalised first; gains inputs 4, 5)
  double qeps = 0;
};

Kernel emit(const RopeParams& p, bool compiled) {
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "rope.cuh";
  const std::string ffd = p.has_ff ? dt_macro(p.ff_dt) : std::string("DT_F32");
  switch (p.op) {
    case OpKind::Rope: {
      k.name = p.has_ff ? "kiln_rope_ff_" + dt_lower(p.ff_dt) : "kiln_rope";
      std::string x = e.in(0, "const float*");
      std::string ff = p.has_ff ? e.in(2, "const void*") : "nullptr";
      std::string y = e.out(0, "float*"), st = e.step();
      std::string nh = e.i(p.nh), hd = e.i(p.hd), nr = e.i(p.n_rot), nx = e.i(p.neox), th = e.f(p.theta),
                  fs = e.f(p.fscale);
      k.call = "k_rope<" + ffd + ">(" + x + ", " + ff + ", " + y + ", " + st + ", " + nh + ", " + hd + ", " + nr +
               ", " + nx + ", " + th + ", " + fs + ")";
      k.block = launch::kRopeThreads;
      k.grid = {cdiv(p.T, 1), static_cast<uint32_t>(p.nh), 1};
      k.eager_module = p.has_ff ? p.ff_dt : DType::F32;
      break;
    }
    case OpKind::RopeStore: {
      k.name = "kiln_rope_store_" + dt_lower(p.cache_dt) + (p.has_ff ? "_ff_" + dt_lower(p.ff_dt) : "") +
               (p.qn ? "_qn" : "") + (p.ring ? "_ring" : "");
      std::string qkv = e.in(0, "const float*");
      std::string ff = p.has_ff ? e.in(p.ffi, "const void*") : "nullptr";
      std::string kc = e.in(2, "void*"), vc = e.in(3, "void*"), y = e.out(0, "float*"), st = e.step();
      std::string C = e.i(p.C), nh = e.i(p.nh), nkv = e.i(p.nkv), hd = e.i(p.hd), nr = e.i(p.n_rot),
                  nx = e.i(p.neox), th = e.f(p.theta);
      std::string tail;
      if (p.qn || p.ring) {
        const std::string gq = p.qn ? e.in(4, "const float*") : "nullptr", gk = p.qn ? e.in(5, "const float*") : "nullptr";
        tail = ", " + gq + ", " + gk + ", " + e.f(p.qeps) + ", " + e.i(p.ring ? 1 : 0);
      }
      k.call = "k_rope_store<" + ffd + ", " + dt_macro(p.cache_dt) + (p.qn ? ", true" : "") + ">(" + qkv + ", " + ff +
               ", " + kc + ", " + vc + ", " + y + ", " + st + ", " + C + ", " + nh + ", " + nkv + ", " + hd + ", " + nr +
               ", " + nx + ", " + th + tail + ")";
      k.block = launch::kRopeThreads;
      k.grid = {cdiv(p.T, 1), static_cast<uint32_t>(p.nh + p.nkv), 1};
      k.own_pdl_wait = true;
      break;
    }
    default: {  // KvStore
      k.name = "kiln_kv_store_" + dt_lower(p.cache_dt);
      std::string c = e.in(0, "void*"), x = e.in(1, "const float*"), st = e.step();
      std::string C = e.i(p.C), W = e.i(p.W), ring = e.i(p.ring);
      k.call = "k_kv_store<" + dt_macro(p.cache_dt) + ">(" + c + ", " + x + ", " + st + ", " + C + ", " + W + ", " +
               ring + ")";
      k.block = launch::kRowThreads;
      k.grid[0] = cdiv(p.T, 1);
      k.eager_module = p.cache_dt;
      break;
    }
  }
  k.take(e);
  return k;
}

RopeParams rope_params(const NodeCtx& c) {
  const ir::Node& n = c.n;
  RopeParams p;
  p.op = n.op;
  if (n.op == OpKind::KvStore) {
    const ir::Value &cache = c.in(0), &x = c.in(1);
    c.need_float(cache, "cache");
    c.need_f32(x, "x");
    p.cache_dt = cache.dtype;
    p.C = c.dim(cache, 0);
    p.W = c.dim(cache, 1);
    p.T = c.dim(x, 0);
    p.ring = n.attrs.count("ring") && n.attr_int("ring") != 0;
    return p;
  }
  const bool store = n.op == OpKind::RopeStore;
  c.need_f32(c.in(0), store ? "qkv" : "x");
  p.nh = n.attr_int("n_heads");
  p.hd = n.attr_int("head_dim");
  p.n_rot = n.attr_int("n_rot");
  p.theta = n.attr_float("theta");
  p.fscale = n.attr_float_opt("freq_scale").value_or(1.0);
  if (store && p.fscale != 1.0) unsupported("rope_store: freq_scale is not implemented (the rope op has it)");
  const std::string& m = n.attr_str("mode");
  if (m != "normal" && m != "neox") unsupported(c.opname() + ": unknown rope mode '" + m + "'");
  p.neox = m == "neox";
  if (p.nh <= 0 || p.hd <= 0 || p.n_rot <= 0 || p.n_rot > p.hd || p.n_rot % 2)
    unsupported(c.opname() + ": bad n_heads/head_dim/n_rot");
  if (store) {
    p.qn = n.attrs.count("qk_norm_eps") != 0;
    p.qeps = p.qn ? n.attr_float("qk_norm_eps") : 0.0;
    p.ring = n.attrs.count("ring") && n.attr_int("ring") != 0;
    if (p.qn) {
      c.need_f32(c.in(4), "q norm gain");
      c.need_f32(c.in(5), "k norm gain");
    }
  }
  p.ffi = store ? ir::rope_store_ff_input(n) : 2;
  p.has_ff = n.inputs.size() > p.ffi;
  if (p.has_ff) {
    c.need_float(c.in(p.ffi), "freq_factors");
    p.ff_dt = c.in(p.ffi).dtype;
  }
  p.T = c.dim(c.in(0), 0);
  if (store) {
    p.nkv = n.attr_int("n_kv_heads");
    const ir::Value &kc = c.in(2), &vc = c.in(3);
    c.need_float(kc, "k cache");
    if (vc.dtype != kc.dtype) unsupported("rope_store: k and v caches must have one dtype");
    p.cache_dt = kc.dtype;
    p.C = c.dim(kc, 0);
    if (p.nkv <= 0 || c.dim(kc, 1) != p.nkv * p.hd || c.dim(vc, 1) != p.nkv * p.hd)
      unsupported("rope_store: cache width must be n_kv_heads*head_dim");
    if (c.dim(c.in(0), 1) != (p.nh + 2 * p.nkv) * p.hd)
      unsupported("rope_store: qkv width must be (n_heads + 2*n_kv_heads)*head_dim");
    if (p.qn && p.hd > 512) unsupported("rope_store: q/k norms take head_dim <= 512 (kRopeNormMaxHd)");
  } else if (c.dim(c.in(0), 1) != p.nh * p.hd) {
    unsupported("rope: width must be n_heads*head_dim");
  }
  return p;
}

class RopeFamily final : public Family {
 public:
  std::string_view name() const override { return "rope"; }
  bool selects(const NodeCtx& c) const override {
    return c.n.op == OpKind::Rope || c.n.op == OpKind::RopeStore || c.n.op == OpKind::KvStore;
  }
  Kernel lower(const NodeCtx& c) const override { return emit(rope_params(c), c.compiled()); }
  std::vector<Kernel> eager_kernels(DType dt) const override {
    std::vector<Kernel> v;
    if (is_float(dt)) {
      RopeParams kv;
      kv.op = OpKind::KvStore;
      kv.cache_dt = dt;
      v.push_back(emit(kv, false));
      RopeParams ff;
      ff.has_ff = true;
      ff.ff_dt = dt;
      v.push_back(emit(ff, false));
    }
    if (dt == DType::F32) v.push_back(emit(RopeParams{}, false));  // rope without frequency factors
    return v;
  }
};

}  // namespace

const Family& rope_family() {
  static const RopeFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
