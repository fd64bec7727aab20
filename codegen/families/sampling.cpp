// Sampling family (kernels/sample.cuh): the fused lm_head_sample (final norm,
// LM head GEMV into the logits buffer, then sampling in the last block), and
// the IR argmax of the unfused graph, which lowers to the same sampling step
// over one row of logits (greedy when step->temperature <= 0, the IR's
// semantics): the token goes to the output, step->out_token and tokens[0].
#include <algorithm>

#include "codegen/families/matmul.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen::detail {
namespace {
using ir::DType;
using ir::OpKind;

struct SamplingParams {
  OpKind op = OpKind::ArgMax;
  DType wdt = DType::F32, gdt = DType::F32;  // lm_head: weight and gain dtypes
  int64_t K = 0, N = 0, R = 1;               // hidden, vocab (logits per row), rows (argmax)
  double eps = 0;
  int split = 1, rows = 1;                   // lm_head GEMV geometry (gemv_split / gemv_rows)
  bool planes = false;
  bool xq = false;                           // x_q8: int8 activations
  std::optional<GemvBulk> bulk;              // the LM head on sm_90's bulk-copy GEMV
};

Kernel emit(const SamplingParams& p, bool compiled) {
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "sample.cuh";
  k.block = launch::kSampleThreads;
  if (p.op == OpKind::ArgMax) {
    k.name = "kiln_sample_rows";
    std::string x = e.in(0, "const float*"), y = e.out(0, "i32*"), toks = e.tokens(), st = e.step(true);
    std::string R = e.i(p.R), N = e.i(p.N);
    k.call = "k_sample_rows(" + x + ", " + y + ", " + toks + ", " + st + ", " + R + ", " + N + ")";
    k.grid[0] = std::min<uint32_t>(cdiv(p.N, launch::kSampleThreads * launch::kSampleRowsItemsPerThread),
                                   launch::kSampleRowsMaxBlocks);
  } else {
    k.name = "kiln_lm_head_sample_" + dt_lower(p.wdt) + "_g" + dt_lower(p.gdt) +
             (p.split > 1 ? "_s" + std::to_string(p.split) : "") + (p.rows > 1 ? "_r" + std::to_string(p.rows) : "") +
             (p.planes ? "_pl" : "") + (p.xq ? "_xq" : "");
    std::string x = e.in(0, "const float*"), g = e.in(1, "const void*"), w = e.in(2, "const u8*");
    std::string tok = e.out(0, "i32*"), lg = e.out(1, "float*");
    std::string toks = e.tokens(), st = e.step(true);
    std::string K = e.i(p.K), V = e.i(p.N), eps = e.f(p.eps);
    k.call = "k_lm_head_sample<" + dt_macro(p.wdt) + ", " + dt_macro(p.gdt) + ", " + std::to_string(p.split) + ", " +
             std::to_string(p.rows) + ", " + std::to_string(p.planes ? 1 : 0) + ", " + std::to_string(p.xq ? 1 : 0) +
             ">(" + x + ", " + g + ", " + w + ", " +
             tok + ", " + lg + ", " + toks + ", " + st + ", " + K + ", " + V + ", " + eps + ")";
    k.grid[0] = cdiv(p.N, (launch::kGemvWarps / p.split) * p.rows);
    if (p.bulk) {
      const GemvBulk& b = *p.bulk;
      k.name = "kiln_lm_head_sample_" + dt_lower(p.wdt) + "_g" + dt_lower(p.gdt) + "_b" + std::to_string(b.warps) +
               "x" + std::to_string(b.stages) + (b.ks > 1 ? "k" + std::to_string(b.ks) : "") + (p.planes ? "_pl" : "") +
               (p.xq ? "_xq" : "_fx");
      k.call = "k_lm_head_sample_bulk<" + dt_macro(p.wdt) + ", " + dt_macro(p.gdt) + ", " + std::to_string(b.rows) +
               ", " + std::to_string(b.stages) + ", " + std::to_string(p.planes ? 1 : 0) + ", " + std::to_string(b.ks) +
               ">(" + x + ", " + g + ", " +
               w + ", " + tok + ", " + lg + ", " + toks + ", " + st + ", " + K + ", " + V + ", " + eps + ")";
      k.block = 32 * b.warps;
      k.grid[0] = b.grid;
      k.smem = b.smem;
      k.min_blocks = b.min_blocks;
    } else if (p.xq) {  // int8 activations: the GEMV family's grid (a few blocks per SM, each looping over rows)
      k.smem = gemv_xq_smem(p.K, 1);
      k.grid[0] = std::min<uint32_t>(k.grid[0], gemv_xq_max_blocks(p.wdt));
      k.min_blocks = launch::kGemvXqMinBlocksPerSm;
    }
  }
  k.take(e);
  return k;
}

// Bytes of weight rows per bulk item of the LM head (gemv_bulk_geometry's
// min_item_bytes: q8_0 and q4_0 rows per item doubled up to 8 until they
// hold this much; measured on the H200 against 3,000 and 12,000 bytes and
// the one or two rows of the other GEMVs, docs/perf.md session 28).
constexpr int64_t kLmHeadMinItemBytes = 6000;

SamplingParams sampling_params(const NodeCtx& c) {
  SamplingParams p;
  p.op = c.n.op;
  if (c.n.op == OpKind::ArgMax) {
    const ir::Value& x = c.in(0);
    c.need_f32(x, "x");
    p.N = x.shape.empty() ? 1 : c.dim(x, x.shape.size() - 1);
    for (size_t i = 0; i + 1 < x.shape.size(); ++i) p.R *= c.dim(x.shape[i]);
    if (p.R != 1)
      throw Error(ErrorCode::kUnsupported,
                  "codegen: argmax lowers to the sampling step, which takes one row of logits (got " +
                      std::to_string(p.R) + ")");
    return p;
  }
  const ir::Value &x = c.in(0), &g = c.in(1), &w = c.in(2);
  c.need_f32(x, "x");
  c.need_float(g, "gain");
  p.K = c.dim(x, 1);
  c.need_weight(w, p.K);
  p.wdt = w.dtype;
  p.gdt = g.dtype;
  p.N = c.dim(w, 0);
  p.eps = c.n.attr_float("eps");
  p.xq = node_xq(c.n);
  if (p.xq && !c.compiled()) unsupported(c.opname() + ": x_q8 (int8 activations) lowers to compiled programs only");
  p.split = p.xq ? gemv_split_xq(p.K) : gemv_split(p.K);
  p.rows = p.xq ? gemv_rows_xq(p.N, p.split, false) : gemv_rows(p.N, p.split, false);
  p.planes = c.planes(2);
  if (c.compiled()) {  // int8 activations, or f32 on F16/BF16 weights (bulk_fx)
    MatmulOperands m;
    m.xq = p.xq;
    m.wdt = p.wdt;
    m.flags = kMmRms;
    m.K = p.K;
    m.N = p.N;
    m.planes = p.planes;
    p.bulk = gemv_bulk_geometry(m, 1, c.target, launch::kGemvWarps, kGemvBulkMinBytes, kLmHeadMinItemBytes);
    // the sampling step runs in the kernel's last block: keep its block size
    if (p.bulk && p.bulk->warps != launch::kGemvWarps) p.bulk.reset();
  }
  if (c.n.outputs.size() < 2)
    throw Error(ErrorCode::kInvalidArgument,
                "codegen: lm_head_sample needs its logits output [1,V] (outputs[1]) as scratch; the pass "
                "that makes it must add one");
  return p;
}

class SamplingFamily final : public Family {
 public:
  std::string_view name() const override { return "sampling"; }
  bool selects(const NodeCtx& c) const override {
    return c.n.op == OpKind::ArgMax || c.n.op == OpKind::LmHeadSample;
  }
  Kernel lower(const NodeCtx& c) const override { return emit(sampling_params(c), c.compiled()); }
  std::vector<Kernel> eager_kernels(DType dt) const override {
    if (dt != DType::F32) return {};
    return {emit(SamplingParams{}, false)};  // argmax-as-sampling, in the f32 module
  }
};

}  // namespace

const Family& sampling_family() {
  static const SamplingFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
