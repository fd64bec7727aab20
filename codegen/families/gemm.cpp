// GEMM family: matmul / matmul_add on half-precision operands (made by the
// tensor-core-gemm pass for prefill programs) run as library GEMMs: cuBLASLt
// on tensor cores, fp32 accumulation, captured into the prefill CUDA graphs by
// the runtime. No NVRTC kernel: the lowering is a GemmCall (codegen.h) that the
// plan records and the runtime turns into a cuBLASLt matmul at load.
#include "codegen/families/matmul.h"

namespace kiln::codegen::detail {
namespace {
using ir::DType;
using ir::OpKind;

bool half(DType t) { return t == DType::F16 || t == DType::BF16; }

class GemmFamily final : public Family {
 public:
  std::string_view name() const override { return "gemm"; }
  bool selects(const NodeCtx& c) const override {
    return (c.n.op == OpKind::MatMul || c.n.op == OpKind::MatMulAdd) && !c.n.inputs.empty() && half(c.in(0).dtype);
  }
  Kernel lower(const NodeCtx& c) const override {
    if (!c.compiled()) unsupported(c.opname() + " on half-precision x has no eager kernel");
    const ir::Value &x = c.in(0), &w = c.in(1);
    if (w.dtype != x.dtype)
      unsupported(c.opname() + ": x %" + x.name + " is " + dt_lower(x.dtype) + " but w %" + w.name + " is " +
                  dt_lower(w.dtype) + " (a GEMM takes one half dtype)");
    GemmCall g;
    g.m = c.dim(x, 0);
    g.k = c.dim(x, 1);
    g.n = c.dim(w, 0);
    if (c.dim(w, 1) != g.k) unsupported(c.opname() + ": K of x and w differ");
    if (g.k % 8 || g.n % 8)  // cuBLASLt's 16-byte alignment of every row for tensor-core kernels
      unsupported(c.opname() + ": GEMM needs N and K multiples of 8 (got N " + std::to_string(g.n) + ", K " +
                  std::to_string(g.k) + ")");
    g.ab_type = x.dtype;
    g.residual = c.n.op == OpKind::MatMulAdd;
    if (g.residual) c.need_f32(c.in(2), "residual");
    Kernel k;
    k.name = "cublaslt_gemm";
    k.gemm = g;
    k.params.push_back(Param{ParamKind::Input, 0});
    k.params.push_back(Param{ParamKind::Input, 1});
    if (g.residual) k.params.push_back(Param{ParamKind::Input, 2});
    k.params.push_back(Param{ParamKind::Output, 0});
    return k;
  }
  std::vector<Kernel> eager_kernels(DType) const override { return {}; }
};

}  // namespace

const Family& gemm_family() {
  static const GemmFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
