// Elementwise family: rms_norm (one block per row, or per head of a row with
// attr head_dim), add / mul with [N] broadcast, silu, swiglu, geglu and
// last_row (grid-stride), kernels/elementwise.cuh.
#include <algorithm>

#include "codegen/family.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {
using ir::DType;
using ir::OpKind;

struct ElementwiseParams {
  OpKind op = OpKind::Add;
  DType dt = DType::F32;  // rms_norm gain / add, mul operand b
  DType out = DType::F32;  // rms_norm, silu, swiglu: f32, or f16/bf16 (fold-cast; compiled only)
  int64_t R = 1, N = 1;   // rows, row length
  bool dyn = false;       // rows are the step's tokens
  bool bcast = false;     // add/mul: b is [N]
  double eps = 0;
  int64_t heads = 1;      // rms_norm: normalised rows per token row (attr head_dim: per-head norm)
  bool res = false;       // rms_norm: attr residual (y = r + the norm; r input 2; compiled only)
};

// Kernel-name suffix of a half-precision output (f32 outputs keep the plain name).
std::string out_suffix(DType out) { return out == DType::F32 ? "" : "_o" + dt_lower(out); }

Kernel emit(const ElementwiseParams& p, bool compiled) {
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "elementwise.cuh";
  k.block = launch::kElementwiseThreads;
  const std::string d = dt_macro(p.dt);
  switch (p.op) {
    case OpKind::RmsNorm: {
      k.name = "kiln_rms_norm_" + dt_lower(p.dt) + out_suffix(p.out) + (p.res ? "_res" : "");
      std::string x = e.in(0, "const float*"), w = e.in(1, "const void*"), y = e.out(0, "void*"), st = e.step();
      std::string H = e.i(p.N), eps = e.f(p.eps), heads = e.i(p.heads);
      k.call = "k_rms_norm<" + d + ", " + dt_macro(p.out) + ">(" + x + ", " + w + ", " + y + ", " + st +
               "->n_tokens, " + H + ", " + eps + ", " + heads + (p.res ? ", " + e.in(2, "const float*") : "") + ")";
      k.block = launch::kRowThreads;
      k.grid[0] = cdiv(p.R * p.heads, 1);
      k.eager_module = p.dt;
      break;
    }
    case OpKind::Add:
    case OpKind::Mul: {
      const bool mul = p.op == OpKind::Mul;
      k.name = std::string(mul ? "kiln_mul_" : "kiln_add_") + dt_lower(p.dt);
      std::string a = e.in(0, "const float*"), b = e.in(1, "const void*"), y = e.out(0, "float*"), st = e.step();
      std::string dyn = e.i(p.dyn), R = e.i(p.R), N = e.i(p.N), bc = e.i(p.bcast);
      k.call = "k_binary<" + d + ", " + (mul ? "1" : "0") + ">(" + a + ", " + b + ", " + y + ", " + st +
               "->n_tokens, " + dyn + ", " + R + ", " + N + ", " + bc + ")";
      k.grid[0] = std::min<uint32_t>(cdiv(p.R * p.N, launch::kElementwiseThreads), launch::kElementwiseMaxBlocks);
      k.eager_module = p.dt;
      break;
    }
    case OpKind::Silu:
    case OpKind::SwiGlu: {
      const bool sw = p.op == OpKind::SwiGlu;
      k.name = std::string(sw ? "kiln_swiglu" : "kiln_silu") + out_suffix(p.out);
      std::string x = e.in(0, "const float*");
      std::string up = sw ? e.in(1, "const float*") : "nullptr";
      std::string y = e.out(0, "void*"), st = e.step();
      std::string dyn = e.i(p.dyn), R = e.i(p.R), N = e.i(p.N);
      k.call = "k_silu<" + dt_macro(p.out) + ">(" + x + ", " + up + ", " + y + ", " + st + "->n_tokens, " + dyn +
               ", " + R + ", " + N + ")";
      k.grid[0] = std::min<uint32_t>(cdiv(p.R * p.N, launch::kElementwiseThreads), launch::kElementwiseMaxBlocks);
      break;
    }
    case OpKind::GeGlu: {
      k.name = "kiln_geglu" + out_suffix(p.out);
      std::string x = e.in(0, "const float*"), up = e.in(1, "const float*"), y = e.out(0, "void*"), st = e.step();
      std::string dyn = e.i(p.dyn), R = e.i(p.R), N = e.i(p.N);
      k.call = "k_geglu<" + dt_macro(p.out) + ">(" + x + ", " + up + ", " + y + ", " + st + "->n_tokens, " + dyn +
               ", " + R + ", " + N + ")";
      k.grid[0] = std::min<uint32_t>(cdiv(p.R * p.N, launch::kElementwiseThreads), launch::kElementwiseMaxBlocks);
      break;
    }
    case OpKind::LastRow: {
      k.name = "kiln_last_row";
      std::string x = e.in(0, "const float*"), y = e.out(0, "float*"), st = e.step();
      std::string dyn = e.i(p.dyn), R = e.i(p.R), H = e.i(p.N);
      k.call = "k_last_row(" + x + ", " + y + ", " + st + "->n_tokens, " + dyn + ", " + R + ", " + H + ")";
      k.grid[0] = std::min<uint32_t>(cdiv(p.N, launch::kElementwiseThreads), launch::kLastRowMaxBlocks);
      break;
    }
    default: unsupported("elementwise: no kernel for this op");
  }
  k.take(e);
  return k;
}

bool is_elementwise(OpKind op) {
  return op == OpKind::RmsNorm || op == OpKind::Add || op == OpKind::Mul || op == OpKind::Silu ||
         op == OpKind::SwiGlu || op == OpKind::GeGlu || op == OpKind::LastRow;
}

class ElementwiseFamily final : public Family {
 public:
  std::string_view name() const override { return "elementwise"; }
  bool selects(const NodeCtx& c) const override { return is_elementwise(c.n.op); }
  Kernel lower(const NodeCtx& c) const override {
    ElementwiseParams p;
    p.op = c.n.op;
    p.out = c.out(0).dtype;
    if (p.out != DType::F32) {
      if (c.n.op != OpKind::RmsNorm && c.n.op != OpKind::Silu && c.n.op != OpKind::SwiGlu && c.n.op != OpKind::GeGlu)
        unsupported(c.opname() + ": output %" + c.out(0).name + " must be f32");
      if (p.out != DType::F16 && p.out != DType::BF16)
        unsupported(c.opname() + ": output %" + c.out(0).name + " is " + dt_lower(p.out) + ", expected f32, f16 or bf16");
      if (!c.compiled())
        unsupported(c.opname() + ": a half-precision output has no eager kernel (eager runs the fp32 graph)");
    }
    auto rows_cols = [&](const ir::Value& a) {
      p.N = a.shape.empty() ? 1 : c.dim(a, a.shape.size() - 1);
      p.R = 1;
      for (size_t i = 0; i + 1 < a.shape.size(); ++i) p.R *= c.dim(a.shape[i]);
      p.dyn = c.dyn(a) && a.shape.size() >= 2;
    };
    switch (c.n.op) {
      case OpKind::RmsNorm:
        c.need_f32(c.in(0), "x");
        c.need_float(c.in(1), "w");
        p.dt = c.in(1).dtype;
        p.N = c.dim(c.in(0), 1);
        p.R = c.dim(c.in(0), 0);
        p.eps = c.n.attr_float("eps");
        p.res = c.n.inputs.size() == 3;
        if (p.res) {
          c.need_f32(c.in(2), "r");
          if (p.out != DType::F32) unsupported("rms_norm: the residual form writes f32");
          if (!c.compiled()) unsupported("rms_norm: the residual form has no eager kernel (eager runs the unfused graph)");
        }
        if (c.n.attrs.count("head_dim")) {  // per-head norm: rows of head_dim, `heads` per token
          const int64_t hd = c.n.attr_int("head_dim");
          if (hd <= 0 || p.N % hd) unsupported("rms_norm: head_dim must divide the row width");
          p.heads = p.N / hd;
          p.N = hd;
        }
        break;
      case OpKind::Add:
      case OpKind::Mul: {
        const ir::Value &a = c.in(0), &b = c.in(1);
        c.need_f32(a, "a");
        c.need_float(b, "b");
        p.dt = b.dtype;
        rows_cols(a);
        p.bcast = b.shape.size() == 1 && a.shape.size() != 1;
        break;
      }
      case OpKind::Silu:
      case OpKind::SwiGlu:
      case OpKind::GeGlu:
        c.need_f32(c.in(0), "x");
        if (c.n.op != OpKind::Silu) c.need_f32(c.in(1), "up");
        rows_cols(c.in(0));
        break;
      default:  // LastRow
        c.need_f32(c.in(0), "x");
        rows_cols(c.in(0));
        break;
    }
    return emit(p, c.compiled());
  }
  std::vector<Kernel> eager_kernels(DType dt) const override {
    std::vector<Kernel> v;
    auto add = [&](OpKind op) {
      ElementwiseParams p;
      p.op = op;
      p.dt = dt;
      v.push_back(emit(p, false));
    };
    if (is_float(dt))
      for (OpKind op : {OpKind::RmsNorm, OpKind::Add, OpKind::Mul}) add(op);
    if (dt == DType::F32)  // dtype-free kernels live in the f32 module
      for (OpKind op : {OpKind::Silu, OpKind::SwiGlu, OpKind::GeGlu, OpKind::LastRow}) add(op);
    return v;
  }
};

}  // namespace

const Family& elementwise_family() {
  static const ElementwiseFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
