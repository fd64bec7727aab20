// Attention family: causal GQA attention over the KV cache, one block per
// (head, token), online softmax per warp (kernels/attention.cuh).
#include "codegen/family.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {

struct AttentionParams {
  ir::DType kv_dt = ir::DType::F32;  // KV cache dtype
  int64_t T = 0, C = 0, nh = 0, nkv = 0, hd = 0;
  double scale = 1.0;
};

Kernel emit(const AttentionParams& p, bool compiled) {
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "attention.cuh";
  k.name = "kiln_attention_" + dt_lower(p.kv_dt);
  std::string q = e.in(0, "const float*"), kc = e.in(1, "const void*"), vc = e.in(2, "const void*"),
              y = e.out(0, "float*"), st = e.step();
  std::string C = e.i(p.C), nh = e.i(p.nh), nkv = e.i(p.nkv), hd = e.i(p.hd), sc = e.f(p.scale);
  k.call = "k_attention<" + dt_macro(p.kv_dt) + ">(" + q + ", " + kc + ", " + vc + ", " + y + ", " + st + ", " + C +
           ", " + nh + ", " + nkv + ", " + hd + ", " + sc + ")";
  k.take(e);
  k.block = launch::kAttThreads;
  k.grid = {static_cast<uint32_t>(p.nh), cdiv(p.T, 1), 1};
  k.eager_module = p.kv_dt;
  return k;
}

class AttentionFamily final : public Family {
 public:
  std::string_view name() const override { return "attention"; }
  bool selects(const NodeCtx& c) const override { return c.n.op == ir::OpKind::Attention; }
  Kernel lower(const NodeCtx& c) const override {
    c.need_f32(c.in(0), "q");
    c.need_float(c.in(1), "k");
    if (c.in(2).dtype != c.in(1).dtype) unsupported("attention: k and v must have one dtype");
    AttentionParams p;
    p.kv_dt = c.in(1).dtype;
    p.nh = c.n.attr_int("n_heads");
    p.nkv = c.n.attr_int("n_kv_heads");
    p.hd = c.n.attr_int("head_dim");
    p.scale = c.n.attr_float("scale");
    if (p.hd <= 0 || p.hd > 32 * launch::kAttMaxDimsPerLane)
      unsupported("attention: head_dim " + std::to_string(p.hd) + " > " +
                  std::to_string(32 * launch::kAttMaxDimsPerLane));
    if (p.nkv <= 0 || p.nh % p.nkv) unsupported("attention: n_heads must be a multiple of n_kv_heads");
    p.C = c.dim(c.in(1), 0);
    p.T = c.dim(c.in(0), 0);
    return emit(p, c.compiled());
  }
  std::vector<Kernel> eager_kernels(ir::DType dt) const override {
    if (!is_float(dt)) return {};
    AttentionParams p;
    p.kv_dt = dt;
    return {emit(p, false)};
  }
};

}  // namespace

const Family& attention_family() {
  static const AttentionFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
