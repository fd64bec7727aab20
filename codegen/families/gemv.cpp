// GEMV family: matmul-family ops on decode-sized steps. Every weight byte is
// read once; a group of `split` warps computes `rows` output columns
// (kernels/gemv.cuh documents the scheme).
#include <algorithm>

#include "codegen/families/matmul.h"
#include "codegen/kernels/launch.h"
#include "ir/dequant.h"

namespace kiln::codegen::detail {
namespace {
using ir::DType;

// Blocks of a GEMV of N columns in groups of `rows` (kGemvWarps / split groups
// per block); int8 activations: at most one wave of resident blocks
// (gemv_xq_max_blocks), each quantising x once and then streaming many rows.
uint32_t gemv_grid(int64_t N, int split, int rows, bool xq, DType wdt, int warps = launch::kGemvWarps) {
  const uint32_t g = cdiv(N, (warps / split) * rows);
  return xq ? std::min<uint32_t>(g, gemv_xq_max_blocks(wdt)) : g;
}

struct GemvParams {
  MatmulOperands m;
  int max_tokens = 1;  // MT: rows computed (compile-time)
  int split = 1;       // warps per output column group
  int rows = 1;        // output columns per group
  std::optional<GemvBulk> bulk;  // streamed by bulk copies (sm_90; int8 activations, or f32 on F16/BF16)
};

// "mm_gemv_bulk<...>" for weight dtype wdt in layout planes (no arguments)
std::string bulk_call(const MatmulOperands& m, DType wdt, bool planes, const GemvBulk& b, int max_tokens) {
  return "mm_gemv_bulk<" + dt_macro(wdt) + ", " + ((m.flags & kMmRms) ? dt_macro(m.gdt) : "DT_F32") + ", " +
         std::to_string(m.flags) + ", " + std::to_string(max_tokens) + ", " + std::to_string(b.rows) + ", " +
         std::to_string(b.stages) + ", " + std::to_string(planes ? 1 : 0) + ", " + std::to_string(b.ks) + ", " +
         (m.gain_weight ? "true" : "false") + ">";
}

// The bulk-copy geometry of each part of a multi-weight int8 GEMV, one block
// size for all: every part's shape where each fits 16 warps (or the fewest
// any part needs), their weights together at least kGemvBulkMinBytes. grid:
// the parts' blocks, one wave on 132 SMs shared in proportion to their
// bytes, each part no more blocks than it has items for. nullopt: the
// register GEMV.
std::optional<std::vector<GemvBulk>> parts_bulk_geometry(const MatmulOperands& m, int64_t tokens, const Target& t) {
  if (m.parts.empty()) return std::nullopt;
  std::vector<GemvBulk> v;
  std::vector<int64_t> bytes;
  int warps = 16;
  for (int pass = 0; pass < 2; ++pass) {
    v.clear();
    bytes.clear();
    for (const auto& p : m.parts) {
      MatmulOperands pm = m;
      pm.parts.clear();
      pm.wdt = p.wdt;
      pm.planes = p.planes;
      pm.N = p.N;
      const std::optional<GemvBulk> b = gemv_bulk_geometry(pm, tokens, t, warps, 0);
      if (!b) return std::nullopt;
      v.push_back(*b);
      bytes.push_back(p.N * static_cast<int64_t>(ir::row_bytes(p.wdt, m.K)));
    }
    int fewest = warps;
    for (const GemvBulk& b : v) fewest = std::min(fewest, b.warps);
    if (fewest == warps) break;
    warps = fewest;
  }
  int64_t total = 0;
  int min_blocks = 16;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].warps != warps) return std::nullopt;
    total += bytes[i];
    min_blocks = std::min(min_blocks, v[i].min_blocks);
  }
  if (total < kGemvBulkMinBytes) return std::nullopt;
  const int64_t budget = kGemvBulkSms * min_blocks;
  for (size_t i = 0; i < v.size(); ++i) {
    const int64_t items = (m.parts[i].N + v[i].rows - 1) / v[i].rows, groups = v[i].warps / v[i].ks;
    const int64_t share = std::max<int64_t>(1, budget * bytes[i] / total);
    v[i].grid = static_cast<uint32_t>(std::min(share, (items + groups - 1) / groups));
    v[i].min_blocks = min_blocks;
  }
  return v;
}

bool is_gemv(const NodeCtx& c) {
  if (!is_f32_matmul(c)) return false;
  const int64_t rows = matmul_rows(c);
  return c.compiled() ? rows <= launch::kGemvMaxTokens : rows == 1;
}

// The trailing arguments that hand a deferring attention's merge to the GEMV
// (", nullptr, GemvSlice{0, 0, 0}, NoRope{}, AttXMerge<HD>{...}"), or "".
// A register GEMV that merges runs kGemvMergeWarps warps a block (the f32
// one keeps the merged x in dynamic shared memory).
std::string merge_args(const MatmulOperands& m, Emit& e, const std::string& step) {
  if (!m.merge) return "";
  const AttentionSplit& a = *m.merge;
  const std::string sc = e.in(static_cast<int>(m.merge_in), "const float*");
  return ", nullptr, GemvSlice{0, 0, 0}, NoRope{}, AttXMerge<" + std::to_string(a.hd) + ">{" + sc + ", " + step +
         ", " + std::to_string(a.C) + ", " + std::to_string(a.nh) + ", " + std::to_string(a.nkv) + ", " +
         std::to_string(a.splits) + ", " + std::to_string(a.one_block_rows) + ", " + std::to_string(a.T) + ", " +
         std::to_string(a.defer) + ", " + std::to_string(a.window) + "}";  // (then nsplit, set by init())
}

Kernel emit(const GemvParams& p, bool compiled) {
  const MatmulOperands& m = p.m;
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "gemv.cuh";
  const std::string xm = m.merge ? "_xm" : "";
  k.name = matmul_name(m, "gemv") + "_t" + std::to_string(p.max_tokens) +
           (p.split > 1 ? "_s" + std::to_string(p.split) : "") + (p.rows > 1 ? "_r" + std::to_string(p.rows) : "") +
           (m.planes ? "_pl" : "") + (m.xq ? "_xq" : "") + xm;
  std::string st;
  const std::string args = matmul_args(m, e, &st);
  const std::string margs = merge_args(m, e, st);
  if (p.bulk) {
    const GemvBulk& b = *p.bulk;
    k.name = matmul_name(m, "gemv") + "_t" + std::to_string(p.max_tokens) + "_b" + std::to_string(b.warps) + "x" +
             std::to_string(b.stages) + (b.ks > 1 ? "k" + std::to_string(b.ks) : "") + (m.planes ? "_pl" : "") +
             (m.xq ? "_xq" : "_fx") + (m.gain_weight ? "_gw" : "") + xm;
    // kMmRope: the rope_store epilogue (y, output 0, is q')
    const std::string epi = (m.flags & kMmRope) ? rope_epi_arg(m, rope_epi_params(m, e, st), e, 0) : "";
    k.call = bulk_call(m, m.wdt, m.planes, b, p.max_tokens) + "(" + args +
             (epi.empty() ? "" : ", nullptr, GemvSlice{0, 0, 0}, " + epi) + margs + ")";
    k.take(e);
    k.block = 32 * b.warps;
    k.grid[0] = b.grid;
    k.smem = b.smem;
    k.min_blocks = b.min_blocks;
    k.own_pdl_wait = true;
    k.eager_module = m.wdt;
    return k;
  }
  // kMmRope: the rope_store epilogue (y, output 0, is q', rope_block_store)
  const std::string epi = (m.flags & kMmRope) ? rope_epi_arg(m, rope_epi_params(m, e, st), e, 0) : "";
  const int warps = m.merge ? launch::kGemvMergeWarps : launch::kGemvWarps;
  // (the int8 GEMV reads a weight gain before its PDL wait: MM_GW)
  const int fl = m.flags | (m.xq && m.gain_weight && (m.flags & kMmRms) ? kMmGainWeight : 0);
  k.call = "mm_gemv<" + dt_macro(m.wdt) + ", " + ((m.flags & kMmRms) ? dt_macro(m.gdt) : "DT_F32") + ", " +
           std::to_string(fl) + ", " + std::to_string(p.max_tokens) + ", " + std::to_string(p.split) + ", " +
           std::to_string(p.rows) + ", " + std::to_string(m.planes ? 1 : 0) + ", " + std::to_string(m.xq ? 1 : 0) +
           (m.merge ? ", NoRope, AttXMerge<" + std::to_string(m.merge->hd) + ">, " + std::to_string(warps) : "") +
           ">(" + args + (epi.empty() ? "" : ", nullptr, GemvSlice{0, 0, 0}, " + epi) + margs + ")";
  k.take(e);
  k.block = 32 * warps;
  k.grid[0] = gemv_grid(m.N, p.split, p.rows, m.xq, m.wdt, warps);
  if (m.xq) {
    k.smem = gemv_xq_smem(m.K, p.max_tokens) + (m.merge ? static_cast<uint32_t>(p.max_tokens * m.K * 4) : 0u);
    // (merging: the merge's loads take registers, and the grid is under a wave)
    k.min_blocks = m.merge ? 1 : launch::kGemvXqMinBlocksPerSm;
    k.own_pdl_wait = true;  // mm_gemv_xq waits after its first weight loads
  } else if (m.merge) {
    k.smem = static_cast<uint32_t>(p.max_tokens * m.K * 4);  // the merged x (f32)
  }
  k.eager_module = m.wdt;
  return k;
}

// Per-weight geometry of a GEMV of N output columns (split, rows, grid).
struct GemvGeometry {
  int split = 1, rows = 1;
  uint32_t grid = 1;
};
// rope: the rope_store epilogue needs an even number of columns per block
// (gemv.cuh rope_block_store; only 4 split warps of single columns make it odd).
GemvGeometry gemv_geometry(int64_t K, int64_t N, bool swiglu, bool xq, DType wdt, bool rope = false) {
  GemvGeometry g;
  g.split = xq ? gemv_split_xq(K) : gemv_split(K);
  g.rows = xq ? gemv_rows_xq(N, g.split, swiglu) : gemv_rows(N, g.split, swiglu);
  if (rope && (launch::kGemvWarps / g.split) * g.rows % 2) g.rows = 2;
  g.grid = gemv_grid(N, g.split, g.rows, xq, wdt);
  return g;
}

// An rms_matmul with several weights (fuse-qkv-parts; compiled only): one
// launch whose blocks are cut into one range per weight, each running that
// weight's GEMV (its own dtype, layout and geometry) on the same x and writing
// its columns of y (GemvSlice in gemv.cuh). Every part quantises x itself,
// as separate launches would. On sm_90 with int8 activations and >= 2 MiB of
// weights in all (the 8B's and 1B's QKV) each part is a bulk-copy GEMV
// (parts_bulk_geometry), else a register GEMV.
Kernel emit_parts(const MatmulOperands& m, int max_tokens, const Target& t) {
  Emit e{true, {}, {}};
  Kernel k;
  const bool rope = m.flags & kMmRope;
  const std::optional<std::vector<GemvBulk>> bulk = parts_bulk_geometry(m, max_tokens, t);
  // register GEMV: split and rows from the whole launch's columns (as one
  // GEMV of all the rows would take them); each part's blocks from its own
  const GemvGeometry whole = gemv_geometry(m.K, m.N, false, m.xq, m.wdt, rope);
  k.header = "gemv.cuh";
  k.name = rope ? "kiln_rms_matmul_rope_store_gemv_parts" : "kiln_rms_matmul_gemv_parts";
  for (size_t i = 0; i < m.parts.size(); ++i) {
    k.name += "_" + dt_lower(m.parts[i].wdt) + (m.parts[i].planes ? "_pl" : "");
    if (bulk) {
      const GemvBulk& b = (*bulk)[i];
      k.name += "_b" + std::to_string(b.warps) + "x" + std::to_string(b.stages) +
                (b.ks > 1 ? "k" + std::to_string(b.ks) : "");
    }
  }
  k.name += "_g" + dt_lower(m.gdt) + "_t" + std::to_string(max_tokens);
  if (bulk)
    k.name += std::string(m.xq ? "_xq" : "_fx") + (m.gain_weight ? "_gw" : "");
  else
    k.name += (whole.split > 1 ? "_s" + std::to_string(whole.split) : "") +
              (whole.rows > 1 ? "_r" + std::to_string(whole.rows) : "") + (m.xq ? "_xq" : "");
  if (rope)
    k.name += "_c" + dt_lower(m.rope.cache_dt) + (m.rope.ff_in >= 0 ? "_ff_" + dt_lower(m.rope.ff_dt) : "");
  const std::string x = e.in(0, "const float*"), g = e.in(static_cast<int>(m.gain_in), "const void*");
  std::vector<std::string> w;
  for (size_t i = 0; i < m.parts.size(); ++i) w.push_back(e.in(static_cast<int>(m.w_in + i), "const u8*"));
  const std::string y = e.out(0, "float*"), st = e.step();
  const std::string nt = matmul_nt(m, e, st), K = e.i(m.K), eps = e.f(m.eps);
  const RopeEpiParams rp = rope ? rope_epi_params(m, e, st) : RopeEpiParams{};
  std::vector<uint32_t> grids;
  if (bulk) {
    for (const GemvBulk& b : *bulk) grids.push_back(b.grid);
  } else {
    uint32_t total = 0;
    for (const auto& p : m.parts) {
      grids.push_back(gemv_grid(p.N, whole.split, whole.rows, false, p.wdt));
      total += grids.back();
    }
    // int8 activations: the parts share the one-wave budget of a single GEMV
    // (each block quantises x once, then streams its part's rows; the smallest
    // of the parts' budgets), in proportion to their column groups
    uint32_t budget = launch::kGemvXqMaxBlocks;
    for (const auto& p : m.parts) budget = std::min(budget, gemv_xq_max_blocks(p.wdt));
    if (m.xq && total > budget) {
      uint32_t sum = 0;
      size_t largest = 0;
      for (size_t i = 0; i < grids.size(); ++i) {
        grids[i] = std::max<uint32_t>(1, grids[i] * budget / total);
        sum += grids[i];
        if (grids[i] > grids[largest]) largest = i;
      }
      if (sum < budget) grids[largest] += budget - sum;
    }
  }
  uint32_t b0 = 0;
  int64_t c0 = 0;
  for (size_t i = 0; i < m.parts.size(); ++i) {
    const auto& p = m.parts[i];
    const std::string kernel =
        bulk ? bulk_call(m, p.wdt, p.planes, (*bulk)[i], max_tokens)
             : "mm_gemv<" + dt_macro(p.wdt) + ", " + dt_macro(m.gdt) + ", " + std::to_string(m.flags) + ", " +
                   std::to_string(max_tokens) + ", " + std::to_string(whole.split) + ", " +
                   std::to_string(whole.rows) + ", " + std::to_string(p.planes ? 1 : 0) + ", " +
                   std::to_string(m.xq ? 1 : 0) + ">";
    // rope: every part gets q' (y) itself and its first qkv column in the epilogue
    const std::string call = kernel + "(" + x + ", " + g + ", " + w[i] + ", nullptr, " + y +
                             (rope ? "" : " + " + std::to_string(c0)) + ", " + nt + ", " + K + ", " +
                             std::to_string(p.N) + ", " + eps + ", nullptr, GemvSlice{" + std::to_string(b0) + ", " +
                             std::to_string(grids[i]) + ", " + std::to_string(m.N) + "}" +
                             (rope ? ", " + rope_epi_arg(m, rp, e, c0) : "") + ")";
    b0 += grids[i];
    c0 += p.N;
    if (i + 1 < m.parts.size()) k.call += "if (blockIdx.x < " + std::to_string(b0) + "u) " + call + ";\n  else ";
    else k.call += call;
  }
  k.take(e);
  k.grid[0] = b0;
  if (bulk) {
    k.block = 32 * bulk->front().warps;
    for (const GemvBulk& b : *bulk) k.smem = std::max(k.smem, b.smem);
    k.min_blocks = bulk->front().min_blocks;
    k.own_pdl_wait = true;  // every part fills its first buffers before the wait
  } else {
    k.block = launch::kGemvThreads;
    if (m.xq) {
      k.smem = gemv_xq_smem(m.K, max_tokens);
      k.min_blocks = launch::kGemvXqMinBlocksPerSm;
      k.own_pdl_wait = true;  // every part's mm_gemv_xq waits after its first weight loads
    }
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
    if (!p.m.parts.empty()) {
      if (!c.compiled()) unsupported(c.opname() + ": several weights lower to the compiled GEMV only");
      return emit_parts(p.m, p.max_tokens, c.target);
    }
    // (with the rope_store epilogue too: an item's columns are rope pairs)
    const bool rope = p.m.flags & kMmRope;
    if (c.compiled()) p.bulk = gemv_bulk_geometry(p.m, p.max_tokens, c.target);
    if (p.m.xq || c.compiled()) {
      const GemvGeometry geo = gemv_geometry(p.m.K, p.m.N, p.m.flags & kMmSwiGlu, p.m.xq, p.m.wdt, rope);
      p.split = geo.split;
      p.rows = geo.rows;
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

// Whether the kernel before c's GEMV should let it launch early (codegen.cpp
// early_trigger). Only int8-activation GEMVs and the bulk-copy GEMV (int8 or
// f32 activations) issue weight loads before their wait, so only they gain
// from landing early, and measured on the H200 (docs/perf.md, session 9)
// only two kinds did:
//  - the bulk-copy GEMV: its blocks fill shared memory, so they land one or
//    two per SM wherever they land, and their first rows stream while the
//    previous kernel finishes (8B Q4_K_M: -3.6% with the gate/up GEMV
//    triggering the down projection early, -2.4% with o and down triggering
//    their successors early);
//  - small matrices (< kGemvEarlyMaxBytes of weights), whose GEMV is a chain
//    of latencies rather than a stream (SmolLM2's four: -8.5% per token with
//    early triggers everywhere).
// Register GEMVs of a few MB lost (session 9, when the 1B's 2.4-19 MB and
// the 8B's o projection were register GEMVs; since session 15 every int8
// GEMV of >= 2 MiB on sm_90 is a bulk one, the QKV with its rope epilogue and
// the mixed-type parts included): their blocks, landing early, pile up on
// whichever SMs have room, and each block's share of the rows is fixed (1B:
// 0% to +3.6% by the kind of kernel triggering; 8B +1.9% when the QKV GEMV
// let attention land early). The bulk QKV gains only with its early launch
// (session 15: 8B Q4_K_M -1.5% with it, -0.2% without). Since session 17
// F16 and BF16 weights have a bulk GEMV too (f32 activations).
bool gemv_wants_early_launch(const NodeCtx& c) {
  if (!is_gemv(c) || !c.compiled()) return false;
  const MatmulOperands m = matmul_operands(c);
  const int64_t tokens = std::max<int64_t>(1, m.rows);
  if (m.parts.empty() ? gemv_bulk_geometry(m, tokens, c.target).has_value()
                      : parts_bulk_geometry(m, tokens, c.target).has_value())
    return true;
  return gemv_small(c);
}

bool gemv_small(const NodeCtx& c) {
  if (!is_gemv(c) || !node_xq(c.n)) return false;
  constexpr int64_t kGemvEarlyMaxBytes = int64_t{2} << 20;
  int64_t bytes = 0;
  const ir::InputRange wr = ir::matmul_weight_inputs(c.g, c.n);
  for (size_t i = wr.first; i < wr.last; ++i) bytes += static_cast<int64_t>(ir::resolve_bytes(c.g, c.in(i), c.dims));
  return bytes < kGemvEarlyMaxBytes;
}

const Family& gemv_family() {
  static const GemvFamily f;
  return f;
}

}  // namespace kiln::codegen::detail
