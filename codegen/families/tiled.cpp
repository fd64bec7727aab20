// Tiled matmul family: matmul-family ops on prefill-sized steps, fp32 CUDA
// cores; a K tile of weight rows is dequantised into shared memory once and
// reused by kTileM tokens (kernels/tiled.cuh).
#include "codegen/families/matmul.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {

struct TiledParams {
  MatmulOperands m;
};

Kernel emit(const TiledParams& p, bool compiled) {
  const MatmulOperands& m = p.m;
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "tiled.cuh";
  k.name = matmul_name(m, "tiled") + (m.planes ? "_pl" : "");
  const std::string args = matmul_args(m, e);
  k.call = "mm_tiled<" + dt_macro(m.wdt) + ", " + ((m.flags & kMmRms) ? dt_macro(m.gdt) : "DT_F32") + ", " +
           std::to_string(m.flags) + ", " + std::to_string(m.planes ? 1 : 0) + ">(" + args + ")";
  k.take(e);
  k.block = launch::kTiledThreads;
  const int cols = (m.flags & kMmSwiGlu) ? launch::kTileN / 2 : launch::kTileN;
  k.grid = {cdiv(m.N, cols), cdiv(m.T, launch::kTileM), 1};
  k.eager_module = m.wdt;
  return k;
}

class TiledFamily final : public Family {
 public:
  std::string_view name() const override { return "tiled"; }
  // Every matmul-family node the GEMV does not take (gemv.cpp).
  bool selects(const NodeCtx& c) const override { return is_f32_matmul(c) && !gemv_family().selects(c); }
  Kernel lower(const NodeCtx& c) const override {
    const MatmulOperands m = matmul_operands(c);
    if (m.xq) unsupported(c.opname() + ": x_q8 (int8 activations) has no tiled kernel");
    if (m.flags & kMmRope)
      unsupported(c.opname() + ": the rope_store epilogue lowers to the compiled GEMV only (steps of <= " +
                  std::to_string(launch::kGemvMaxTokens) + " rows)");
    if (!m.parts.empty())
      unsupported(c.opname() + ": several weights (fuse-qkv-parts) lower to the compiled GEMV only (steps of <= " +
                  std::to_string(launch::kGemvMaxTokens) + " rows)");
    return emit({m}, c.compiled());
  }
  std::vector<Kernel> eager_kernels(ir::DType dt) const override {
    TiledParams p;
    p.m.wdt = dt;
    std::vector<Kernel> v = {emit(p, false)};
    if (layout_supported(dt, kLayoutPlanes)) {  // the same in the planes layout
      p.m.planes = true;
      v.push_back(emit(p, false));
    }
    return v;
  }
};

}  // namespace

const Family& tiled_family() {
  static const TiledFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
