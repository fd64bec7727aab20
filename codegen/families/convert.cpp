// Convert family: cast (f32 activations -> f16/bf16) and dequant (a weight
// matrix of any dtype -> f16/bf16), the operands of tensor-core GEMMs
// (kernels/convert.cuh). Compiled programs only: eager programs run the
// unfused fp32 graph, which has neither op.
#include <algorithm>

#include "codegen/family.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {
using ir::DType;
using ir::OpKind;

struct ConvertParams {
  OpKind op = OpKind::Cast;
  DType in_dt = DType::F32;   // dequant: the weight's dtype
  DType out_dt = DType::F16;  // f16 | bf16
  int64_t R = 0, N = 0;       // rows and row length (dequant: the weight's N rows of K elements)
  bool dyn = false;
  bool planes = false;        // dequant: the weight is in the "planes" layout
};

Kernel emit(const ConvertParams& p, bool compiled) {
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "convert.cuh";
  k.block = launch::kElementwiseThreads;
  if (p.op == OpKind::Cast) {
    k.name = "kiln_cast_" + dt_lower(p.out_dt);
    std::string x = e.in(0, "const float*"), y = e.out(0, "void*"), st = e.step();
    std::string dyn = e.i(p.dyn), R = e.i(p.R), N = e.i(p.N);
    k.call = "k_cast<" + dt_macro(p.out_dt) + ">(" + x + ", " + y + ", " + st + "->n_tokens, " + dyn + ", " + R + ", " +
             N + ")";
    k.grid[0] = std::min<uint32_t>(cdiv(p.R * p.N, launch::kElementwiseThreads), launch::kElementwiseMaxBlocks);
  } else {
    k.name = "kiln_dequant_" + dt_lower(p.in_dt) + "_" + dt_lower(p.out_dt) + (p.planes ? "_pl" : "");
    std::string w = e.in(0, "const u8*"), y = e.out(0, "void*"), st = e.step();
    std::string N = e.i(p.R), K = e.i(p.N);
    (void)st;  // every kernel takes the step block (plan ABI); a weight copy does not depend on it
    k.call = "k_dequant_rows<" + dt_macro(p.in_dt) + ", " + dt_macro(p.out_dt) + ", " + (p.planes ? "1" : "0") +
             ">(" + w + ", " + y + ", " + N + ", " + K + ")";
    k.grid[0] = static_cast<uint32_t>(std::min<int64_t>(p.R, launch::kConvertMaxBlocks));  // a row per block
  }
  k.take(e);
  return k;
}

class ConvertFamily final : public Family {
 public:
  std::string_view name() const override { return "convert"; }
  bool selects(const NodeCtx& c) const override { return c.n.op == OpKind::Cast || c.n.op == OpKind::Dequant; }
  Kernel lower(const NodeCtx& c) const override {
    if (!c.compiled()) unsupported(c.opname() + " has no eager kernel: eager programs run the unfused fp32 graph");
    ConvertParams p;
    p.op = c.n.op;
    const ir::Value& x = c.in(0);
    p.out_dt = c.out(0).dtype;
    if (p.out_dt != DType::F16 && p.out_dt != DType::BF16)
      unsupported(c.opname() + ": output %" + c.out(0).name + " is " + dt_lower(p.out_dt) + ", expected f16 or bf16");
    p.R = c.dim(x, 0);
    p.N = c.dim(x, 1);
    if (p.op == OpKind::Cast) {
      c.need_f32(x, "x");
      p.dyn = c.dyn(x);
    } else {
      c.need_weight(x, p.N);
      p.in_dt = x.dtype;
      p.planes = c.planes(0);
    }
    return emit(p, true);
  }
  std::vector<Kernel> eager_kernels(DType) const override { return {}; }
};

}  // namespace

const Family& convert_family() {
  static const ConvertFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
