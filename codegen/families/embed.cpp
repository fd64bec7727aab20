// Embedding family: rows of the (possibly quantised) token table, dequantised
// and optionally scaled (kernels/embed.cuh). One block per token.
#include "codegen/family.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {

struct EmbedParams {
  ir::DType dt = ir::DType::F32;  // table dtype
  int64_t V = 0, H = 0, T = 0;    // vocab, hidden, rows (bucket)
  bool has_scale = false;
  double scale = 1.0;
  bool planes = false;
};

Kernel emit(const EmbedParams& p, bool compiled) {
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "embed.cuh";
  k.name = "kiln_embed_" + dt_lower(p.dt) + (p.planes ? "_pl" : "");
  std::string tab = e.in(0, "const u8*"), ids = e.in(1, "const i32*"), y = e.out(0, "float*"), st = e.step();
  std::string V = e.i(p.V), H = e.i(p.H), sc = e.f(p.scale), hs = e.i(p.has_scale);
  k.call = "k_embed<" + dt_macro(p.dt) + ", " + std::to_string(p.planes ? 1 : 0) + ">(" + tab + ", " + ids + ", " + y +
           ", " + st + "->n_tokens, " + V + ", " + H + ", " + sc + ", " + hs + ")";
  k.take(e);
  k.block = launch::kRowThreads;
  k.grid[0] = cdiv(p.T, 1);
  k.eager_module = p.dt;
  return k;
}

class EmbedFamily final : public Family {
 public:
  std::string_view name() const override { return "embed"; }
  bool selects(const NodeCtx& c) const override { return c.n.op == ir::OpKind::Embed; }
  Kernel lower(const NodeCtx& c) const override {
    const ir::Value& t = c.in(0);
    EmbedParams p;
    p.H = c.dim(t, 1);
    p.V = c.dim(t, 0);
    c.need_weight(t, p.H);
    if (c.in(1).dtype != ir::DType::I32) unsupported("embed: ids must be i32");
    p.dt = t.dtype;
    const auto sc = c.n.attr_float_opt("scale");
    p.has_scale = sc.has_value();
    p.scale = sc.value_or(1.0);
    p.T = c.dim(c.in(1), 0);
    p.planes = c.planes(0);
    return emit(p, c.compiled());
  }
  std::vector<Kernel> eager_kernels(ir::DType dt) const override {
    EmbedParams p;
    p.dt = dt;
    std::vector<Kernel> v = {emit(p, false)};
    if (layout_supported(dt, kLayoutPlanes)) {  // the same in the planes layout
      p.planes = true;
      v.push_back(emit(p, false));
    }
    return v;
  }
};

}  // namespace

const Family& embed_family() {
  static const EmbedFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
