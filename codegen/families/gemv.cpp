// GEMV family: matmul-family ops on decode-sized steps. Every weight byte is
// read once; a group of `split` warps computes `rows` output columns
// (kernels/gemv.cuh documents the scheme).
#include <algorithm>

#include "codegen/families/matmul.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {

struct GemvParams {
  MatmulOperands m;
  int max_tokens = 1;  // MT: rows computed (compile-time)
  int split = 1;       // warps per output column group
  int rows = 1;        // output columns per group
  std::optional<GemvBulk> bulk;  // int8 activations streamed by bulk copies (sm_90)
};

bool is_gemv(const NodeCtx& c) {
  if (!is_f32_matmul(c)) return false;
  const int64_t rows = matmul_rows(c);
  return c.compiled() ? rows <= launch::kGemvMaxTokens : rows == 1;
}

Kernel emit(const GemvParams& p, bool compiled) {
  const MatmulOperands& m = p.m;
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "gemv.cuh";
  k.name = matmul_name(m, "gemv") + "_t" + std::to_string(p.max_tokens) +
           (p.split > 1 ? "_s" + std::to_string(p.split) : "") + (p.rows > 1 ? "_r" + std::to_string(p.rows) : "") +
           (m.planes ? "_pl" : "") + (m.xq ? "_xq" : "");
  const std::string args = matmul_args(m, e);
  if (p.bulk) {
    const GemvBulk& b = *p.bulk;
    k.name = matmul_name(m, "gemv") + "_t" + std::to_string(p.max_tokens) + "_b" + std::to_string(b.warps) + "x" +
             std::to_string(b.stages) + (m.planes ? "_pl" : "") + "_xq";
    k.call = "mm_gemv_xq_bulk<" + dt_macro(m.wdt) + ", " + ((m.flags & kMmRms) ? dt_macro(m.gdt) : "DT_F32") + ", " +
             std::to_string(m.flags) + ", " + std::to_string(p.max_tokens) + ", " + std::to_string(b.rows) + ", " +
             std::to_string(b.stages) + ", " + std::to_string(m.planes ? 1 : 0) + ">(" + args + ")";
    k.take(e);
    k.block = 32 * b.warps;
    k.grid[0] = b.grid;
    k.smem = b.smem;
    k.min_blocks = b.min_blocks;
    k.own_pdl_wait = true;
    k.eager_module = m.wdt;
    return k;
  }
  k.call = "mm_gemv<" + dt_macro(m.wdt) + ", " + ((m.flags & kMmRms) ? dt_macro(m.gdt) : "DT_F32") + ", " +
           std::to_string(m.flags) + ", " + std::to_string(p.max_tokens) + ", " + std::to_string(p.split) + ", " +
           std::to_string(p.rows) + ", " + std::to_string(m.planes ? 1 : 0) + ", " + std::to_string(m.xq ? 1 : 0) +
           ">(" + args + ")";
  k.take(e);
  k.block = launch::kGemvThreads;
  k.grid[0] = cdiv(m.N, (launch::kGemvWarps / p.split) * p.rows);
  if (m.xq) {  // a few blocks per SM, each quantising x once and then streaming many rows
    k.smem = gemv_xq_smem(m.K, p.max_tokens);
    k.grid[0] = std::min<uint32_t>(k.grid[0], launch::kGemvXqMaxBlocks);
  }
  k.eager_module = m.wdt;
  return k;
}

class GemvFamily final : public Family {
 public:
  std::string_view name() const override { return "gemv"; }
  bool selects(const NodeCtx& c) const override { return is_gemv(c); }
  Kernel lower(const NodeCtx& c) const override {
    GemvParams p;
    p.m = matmul_operands(c);
    p.max_tokens = static_cast<int>(std::max<int64_t>(1, p.m.rows));
    if (p.m.xq) {
      p.bulk = gemv_bulk_geometry(p.m, p.max_tokens, c.target);
      p.split = gemv_split_xq(p.m.K);
      p.rows = gemv_rows_xq(p.m.N, p.split, p.m.flags & kMmSwiGlu);
    } else if (c.compiled()) {
      p.split = gemv_split(p.m.K);
      p.rows = gemv_rows(p.m.N, p.split, p.m.flags & kMmSwiGlu);
    }
    return emit(p, c.compiled());
  }
  std::vector<Kernel> eager_kernels(ir::DType dt) const override {
    GemvParams p;  // eager: plain matmul, one token, one column per warp group
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

const Family& gemv_family() {
  static const GemvFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
