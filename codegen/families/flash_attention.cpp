// Flash-attention family: causal GQA attention of prefill chunks on tensor
// cores (kernels/flash_attention.cuh): compiled steps of more than
// kGemvMaxTokens rows over an f16 KV cache with head_dim 64 or 128. Every other
// attention node goes to the attention family (decode: split-K; f32/bf16
// caches, eager programs, other head sizes: one block per (head, token)).
#include "codegen/family.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {

struct FlashParams {
  int64_t T = 0, C = 0, nh = 0, nkv = 0, hd = 0;
  double scale = 1.0;
};

class FlashAttentionFamily final : public Family {
 public:
  std::string_view name() const override { return "flash_attention"; }
  bool selects(const NodeCtx& c) const override {
    if (c.n.op != ir::OpKind::Attention || !c.compiled() || c.n.inputs.size() < 3) return false;
    if (c.n.attrs.count("window") && c.n.attr_int("window") != 0) return false;  // the attention family's
    if (c.target.sm < 80) return false;  // mma.sync m16n8k16
    const ir::Value &q = c.in(0), &k = c.in(1), &v = c.in(2);
    if (q.shape.size() != 2 || q.dtype != ir::DType::F32 || k.dtype != ir::DType::F16 || v.dtype != ir::DType::F16)
      return false;
    const int64_t hd = c.n.attr_int("head_dim"), nh = c.n.attr_int("n_heads"), nkv = c.n.attr_int("n_kv_heads");
    return c.dim(q, 0) > launch::kGemvMaxTokens && (hd == 64 || hd == 128) && nkv > 0 && nh % nkv == 0;
  }
  Kernel lower(const NodeCtx& c) const override {
    FlashParams p;
    p.nh = c.n.attr_int("n_heads");
    p.nkv = c.n.attr_int("n_kv_heads");
    p.hd = c.n.attr_int("head_dim");
    p.scale = c.n.attr_float("scale");
    p.T = c.dim(c.in(0), 0);
    p.C = c.dim(c.in(1), 0);
    if (c.dim(c.in(0), 1) != p.nh * p.hd || c.dim(c.in(1), 1) != p.nkv * p.hd)
      unsupported("attention: q must be [T, n_heads*head_dim] and the caches [C, n_kv_heads*head_dim]");
    Emit e{true, {}, {}};
    Kernel k;
    k.header = "flash_attention.cuh";
    const ir::DType out = c.out(0).dtype;
    if (out != ir::DType::F32 && out != ir::DType::F16 && out != ir::DType::BF16)
      unsupported("attention: output %" + c.out(0).name + " is " + dt_lower(out) + ", expected f32, f16 or bf16");
    k.name = "kiln_flash_attention_f16_hd" + std::to_string(p.hd) + (out == ir::DType::F32 ? "" : "_o" + dt_lower(out));
    std::string q = e.in(0, "const float*"), kc = e.in(1, "const u16*"), vc = e.in(2, "const u16*"),
                y = e.out(0, "void*"), st = e.step();
    std::string C = e.i(p.C), nh = e.i(p.nh), nkv = e.i(p.nkv), sc = e.f(p.scale);
    k.call = "k_flash_attention<" + std::to_string(p.hd) + ", " + dt_macro(out) + ">(" + q + ", " + kc + ", " + vc + ", " + y + ", " + st +
             ", " + C + ", " + nh + ", " + nkv + ", " + sc + ")";
    k.take(e);
    k.block = launch::kFlashThreads;
    k.grid = {cdiv(p.T, launch::kFlashRows), static_cast<uint32_t>(p.nh), 1};
    return k;
  }
  std::vector<Kernel> eager_kernels(ir::DType) const override { return {}; }
};

}  // namespace

const Family& flash_attention_family() {
  static const FlashAttentionFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
