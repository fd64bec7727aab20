#include "codegen/families/matmul.h"

#include <algorithm>

#include "codegen/kernels/launch.h"
#include "ir/dequant.h"

namespace kiln::codegen::detail {
using ir::DType;
using ir::OpKind;

bool is_matmul_op(OpKind op) {
  return op == OpKind::MatMul || op == OpKind::RmsMatMul || op == OpKind::MatMulAdd ||
         op == OpKind::RmsMatMulSwiGlu || op == OpKind::RmsMatMulRopeStore;
}

bool is_f32_matmul(const NodeCtx& c) {
  return is_matmul_op(c.n.op) && !c.n.inputs.empty() && c.in(0).dtype == ir::DType::F32;
}

namespace {
int flags_of(const ir::Node& n) {
  switch (n.op) {
    case OpKind::RmsMatMul: return kMmRms;
    case OpKind::RmsMatMulRopeStore: return kMmRms | kMmRope;
    case OpKind::MatMulAdd: return kMmAdd;
    case OpKind::RmsMatMulSwiGlu:
      return kMmRms | kMmSwiGlu | (n.attrs.count("act") && n.attr_str("act") == "gelu_tanh" ? kMmGeGlu : 0);
    default: return 0;
  }
}
}  // namespace

int64_t matmul_rows(const NodeCtx& c) {
  // Rows of x: the step's tokens when x is [tokens, K]; a fixed count otherwise
  // (the LM head after last_row has one row whatever the bucket).
  const ir::Value& x = c.in(0);
  const int64_t T = c.dim(x, 0);
  return c.dyn(x) ? std::min<int64_t>(c.bucket(), T) : T;
}

MatmulOperands matmul_operands(const NodeCtx& c) {
  MatmulOperands m;
  m.flags = flags_of(c.n);
  const ir::Value& x = c.in(0);
  c.need_f32(x, "x");
  const ir::InputRange wr = ir::matmul_weight_inputs(c.g, c.n);
  m.w_in = wr.first;
  m.gain_in = m.w_in - 1;  // (kMmRms) the gain precedes the weights
  const size_t wi = m.w_in;
  const ir::Value& w = c.in(wi);
  if (m.flags & kMmRms) {
    const ir::Value& g = c.in(m.gain_in);
    c.need_float(g, "gain");
    m.gdt = g.dtype;
    m.gain_weight = g.kind == ir::ValueKind::Weight;
    m.eps = c.n.attr_float("eps");
  }
  if (m.flags & kMmAdd) c.need_f32(c.in(2), "residual");
  m.K = c.dim(x, 1);
  c.need_weight(w, m.K);
  if (c.dim(w, 1) != m.K) unsupported(c.opname() + ": K of x and w differ");
  m.wdt = w.dtype;
  m.N = c.dim(w, 0);
  if (m.flags & kMmSwiGlu) {
    if (m.N % 2) unsupported(c.opname() + ": w must have 2F rows");
    m.N /= 2;
  }
  // several weights (fuse-qkv-parts): each one's columns, side by side; an
  // rms_matmul_rope_store's frequency factors follow its weights
  const size_t w_end = wr.last;
  if ((m.flags & kMmRope) && w_end < c.n.inputs.size()) m.rope.ff_in = static_cast<int64_t>(w_end);
  if (w_end > wi + 1) {
    m.N = 0;
    for (size_t i = wi; i < w_end; ++i) {
      const ir::Value& wv = c.in(i);
      c.need_weight(wv, m.K);
      if (c.dim(wv, 1) != m.K) unsupported(c.opname() + ": K of x and w differ");
      m.parts.push_back({wv.dtype, c.dim(wv, 0), c.planes(i)});
      m.N += m.parts.back().N;
    }
  }
  m.T = c.dim(x, 0);
  m.dyn = c.dyn(x);
  m.rows = matmul_rows(c);
  m.planes = c.planes(wi);
  m.xq = node_xq(c.n);
  if (m.flags & kMmRope) {
    const ir::Node& n = c.n;
    MatmulOperands::Rope& r = m.rope;
    r.nh = n.attr_int("n_heads");
    r.nkv = n.attr_int("n_kv_heads");
    r.hd = n.attr_int("head_dim");
    r.n_rot = n.attr_int("n_rot");
    r.theta = n.attr_float("theta");
    // the epilogue ropes pairs (2i, 2i+1) of one block's columns
    if (n.attr_str("mode") != "normal")
      unsupported(c.opname() + ": rope mode '" + n.attr_str("mode") + "' (the GEMV epilogue ropes \"normal\" pairs only)");
    if (r.nh <= 0 || r.nkv <= 0 || r.hd <= 0 || r.hd % 2 || r.n_rot <= 0 || r.n_rot > r.hd || r.n_rot % 2)
      unsupported(c.opname() + ": bad n_heads/n_kv_heads/head_dim/n_rot");
    if (m.N != (r.nh + 2 * r.nkv) * r.hd)
      unsupported(c.opname() + ": weight rows must be (n_heads + 2*n_kv_heads)*head_dim");
    const ir::Value &kc = c.in(2), &vc = c.in(3);
    c.need_float(kc, "k cache");
    if (vc.dtype != kc.dtype) unsupported(c.opname() + ": k and v caches must have one dtype");
    if (c.dim(kc, 1) != r.nkv * r.hd || c.dim(vc, 1) != r.nkv * r.hd)
      unsupported(c.opname() + ": cache width must be n_kv_heads*head_dim");
    r.cache_dt = kc.dtype;
    r.C = c.dim(kc, 0);
    if (r.ff_in >= 0) {
      c.need_float(c.in(static_cast<size_t>(r.ff_in)), "freq_factors");
      r.ff_dt = c.in(static_cast<size_t>(r.ff_in)).dtype;
    }
    if (!c.compiled()) unsupported(c.opname() + " lowers to the compiled GEMV only");
  }
  if (c.n.attrs.count("x_merge") && c.n.attr_int("x_merge") == 1) {
    const size_t si = c.n.inputs.size() - 1;
    const ir::Node* a = producer_of(c.g, c.n.inputs[si]);
    if (a == nullptr || a->op != OpKind::Attention || a->outputs.size() != 2 || a->outputs[0] != c.n.inputs[0] ||
        a->outputs[1] != c.n.inputs[si] || !a->attrs.count("defer_merge") || a->attr_int("defer_merge") != 1)
      throw Error(ErrorCode::kInternal, "codegen: " + c.opname() +
                                            " has x_merge, but x and its last input are not a deferring attention's "
                                            "outputs (the defer-attention-merge pass)");
    const NodeCtx ac{c.g, *a, c.dims, c.target, c.mode};
    m.merge = attention_split(ac);
    if (m.merge && m.merge->defer == 0) m.merge.reset();  // that attention merges itself in this program
    m.merge_in = si;
    if (m.merge && (m.K != m.merge->nh * m.merge->hd || m.rows > m.merge->T))
      throw Error(ErrorCode::kInternal, "codegen: " + c.opname() + ": x_merge needs x of the attention's shape");
  }
  if (m.xq && (!c.compiled() || m.rows > launch::kGemvMaxTokens))
    unsupported(c.opname() + ": x_q8 (int8 activations) lowers to the compiled GEMV only (steps of <= " +
                std::to_string(launch::kGemvMaxTokens) + " rows)");
  return m;
}

std::string matmul_name(const MatmulOperands& m, const char* path) {
  std::string n = "kiln_";
  if (m.flags == 0) n += "matmul";
  else if (m.flags == kMmRms) n += "rms_matmul";
  else if (m.flags == kMmAdd) n += "matmul_add";
  else if (m.flags & kMmRope) n += "rms_matmul_rope_store";
  else if (m.flags & kMmGeGlu) n += "rms_matmul_geglu";
  else n += "rms_matmul_swiglu";
  n += std::string("_") + path + "_" + dt_lower(m.wdt);
  if (m.flags & kMmRms) n += "_g" + dt_lower(m.gdt);
  if (m.flags & kMmRope)
    n += "_c" + dt_lower(m.rope.cache_dt) + (m.rope.ff_in >= 0 ? "_ff_" + dt_lower(m.rope.ff_dt) : "");
  return n;
}

std::string matmul_args(const MatmulOperands& m, Emit& e, std::string* step) {
  std::string x = e.in(0, "const float*");
  std::string g = (m.flags & kMmRms) ? e.in(static_cast<int>(m.gain_in), "const void*") : "nullptr";
  std::string w = e.in(static_cast<int>(m.w_in), "const u8*");
  std::string r = (m.flags & kMmAdd) ? e.in(2, "const float*") : "nullptr";
  std::string y = e.out(0, "float*");
  std::string st = e.step();
  if (step) *step = st;
  std::string K = e.i(m.K), N = e.i(m.N);
  std::string eps = (m.flags & kMmRms) ? e.f(m.eps) : "0.f";
  return x + ", " + g + ", " + w + ", " + r + ", " + y + ", " + matmul_nt(m, e, st) + ", " + K + ", " + N + ", " + eps;
}

RopeEpiParams rope_epi_params(const MatmulOperands& m, Emit& e, const std::string& step) {
  RopeEpiParams p;
  p.kc = e.in(2, "void*");
  p.vc = e.in(3, "void*");
  p.ff = m.rope.ff_in >= 0 ? e.in(static_cast<int>(m.rope.ff_in), "const void*") : "nullptr";
  p.step = step;
  return p;
}

std::string rope_epi_arg(const MatmulOperands& m, const RopeEpiParams& p, Emit& e, int64_t c0) {
  const MatmulOperands::Rope& r = m.rope;
  return "RopeEpi<" + (r.ff_in >= 0 ? dt_macro(r.ff_dt) : std::string("DT_F32")) + ", " + dt_macro(r.cache_dt) +
         ">{" + p.kc + ", " + p.vc + ", " + p.ff + ", " + p.step + ", " + e.i(r.C) + ", " + e.i(r.nh) + ", " +
         e.i(r.nkv) + ", " + e.i(r.hd) + ", " + e.i(r.n_rot) + ", " + e.i(c0) + ", " + e.f(r.theta) + "}";
}

std::string matmul_nt(const MatmulOperands& m, Emit& e, const std::string& step) {
  // rows to compute: the step's tokens for [tokens, K] inputs, else the static row count
  return "(" + e.i(m.dyn) + " ? min(" + step + "->n_tokens, " + e.i(m.T) + ") : " + e.i(m.T) + ")";
}

// Warps per output column group of a decode GEMV: keep >= ~4 chunk loads per
// lane, split long rows (units = 8-element chunks per row, for every dtype).
int gemv_split(int64_t K) {
  const int64_t units = K / 8;
  return units >= 512 ? 4 : units >= 256 ? 2 : 1;
}
// Output columns per group (weight rows per warp sharing one x chunk load):
// as many as keep >= 4096 warps in the grid (~30 per SM on 132 SMs, each with
// several 16-byte loads per row in flight), at most 4 (2 with the swiglu "up"
// rows). Small matrices keep 1 (latency-bound: short warps win there).
int gemv_rows(int64_t N, int split, bool swiglu) {
  for (int r = swiglu ? 2 : 4; r > 1; r /= 2)
    if (N * split / r >= 4096) return r;
  return 1;
}

uint32_t gemv_xq_max_blocks(DType dt) {
  return dt == DType::Q8_0 || dt == DType::Q4_K || dt == DType::Q6_K ? launch::kGemvXqMaxBlocksWave
                                                                   : launch::kGemvXqMaxBlocks;
}

bool node_xq(const ir::Node& n) { return n.attrs.count("x_q8") && n.attr_int("x_q8") == 1; }

// int8 activations: a lane's unit is 32 weights, so rows split later (K of
// 8192+ per 2 warps); 4 columns per group (2 with the swiglu "up" rows) while
// the grid keeps >= kGemvXqMinWarps warps, since every group quantises each
// x part once for all its rows.
uint32_t gemv_xq_smem(int64_t K, int64_t tokens) { return static_cast<uint32_t>(tokens * (K + K / 16 * 8)); }

int gemv_split_xq(int64_t K) {
  const int64_t units = K / 32;
  return units >= 512 ? 4 : units >= 256 ? 2 : 1;
}
bool bulk_fx(const MatmulOperands& m) { return !m.xq && (m.wdt == DType::F16 || m.wdt == DType::BF16); }

std::optional<GemvBulk> gemv_bulk_geometry(const MatmulOperands& m, int64_t tokens, const Target& t,
                                           int max_warps, int64_t min_bytes, int64_t min_item_bytes) {
  constexpr int64_t kSmemPerSm = 227 * 1024, kSmemReserved = 1024;  // sm_90: usable per SM, per block
  // bytes of rows a group keeps in flight (at least 2 buffers; 16 and 32 KiB
  // were measured 0.6% and 3% slower on the 8B)
  constexpr int64_t kStageTarget = 8 * 1024;
  // Measured on the H200 (docs/perf.md): the bulk kernel first won only where
  // decoding is heavy per byte (q4_K, q6_K) and the matrix large (>= 24 MiB:
  // the 8B's gate/up, down, LM head, 15-35% faster). Since the int8 unit work
  // of session 10 cut the register loop's instructions, it wins more widely
  // (session 11, GPU ms per token at context 512, same call): 8B Q4_K_M -1.7%
  // (its 9 MiB o projection), 1B Q4_K_M -6.8% (gate/up, the q6_K down and the
  // 2.4 MiB o projection), and for the light types, against the register
  // kernel, 8B Q4_0 -7.0%, 8B Q8_0 -1.8%, 1B Q8_0 -1.0%.
  // Matrices under 2 MiB (SmolLM2's, kGemvBulkMinBytes) keep the
  // register-pipelined kernel, whose grid and prologue are cheaper.
  // sm_90 only: the shared-memory budget below is Hopper's 227 KiB per SM
  // (a newer target must bring its own budget: consumer parts have ~100 KiB)
  // F16 and BF16 weights (fx) keep x in f32 in shared memory, 4 bytes a
  // value, so only while x is at most kGemvBulkFxMaxXBytes: long rows (the
  // 8B's down projection, K = 14336: 56 KiB of x) leave room for few warps
  // per SM, and the register GEMV streamed them faster (session 17, single
  // launches: 30.4 against 33.3 us; docs/perf.md).
  const bool fx = bulk_fx(m);
  if (!(m.xq || fx) || t.sm != 90) return std::nullopt;
  if (fx && tokens * m.K * 4 > kGemvBulkFxMaxXBytes) return std::nullopt;

  const ir::DTypeInfo& di = ir::dtype_info(m.wdt);
  if (m.K % di.block_elems) return std::nullopt;
  const int64_t rb = static_cast<int64_t>(ir::row_bytes(m.wdt, m.K));  // the planes layout keeps the GGUF row size
  const int64_t wrows = (m.flags & kMmSwiGlu) ? 2 * m.N : m.N;
  if (rb * wrows < min_bytes) return std::nullopt;
  GemvBulk b;
  // Two output columns per item (their rows staged together, x read once for
  // both): 1B Q4_K_M -2.7% per token, the 8B's unchanged (+0.2%, within
  // run-to-run noise); q6_K keeps one (8B Q6_K +0.3 to +0.6% with two; 4 columns were
  // slower everywhere: 8B Q4_K_M +1.8%, 1B +3.7%). Session 11, docs/perf.md.
  b.rows = m.wdt == DType::Q6_K && !(m.flags & kMmRope) ? 1 : 2;
  // Larger items for the LM heads (min_item_bytes). A copy moves an item's
  // R rows at once, so rows whose size is not a 16-byte multiple (q8_0 at
  // K = 640 or 576: Gemma 3's and SmolLM2's tied LM heads, 680 and 612
  // bytes) take the bulk kernel where R of them are (they ran the register
  // GEMV). H200, GPU ms per token at 512 rows (docs/perf.md, session 28):
  // Gemma 3 270M 0.5707 -> 0.5484 with 8 rows an item, SmolLM2 0.3284 ->
  // 0.3248 with 8, the 1B Q8_0 (rows of 2,176 bytes) 0.5045 -> 0.4970 with 4
  // (2 rows, under 6,000 bytes, changed nothing). q6_K keeps one row: the
  // 1B's LM head (1,680-byte rows) lost 1% with 2 and 2% with 4. Up to 32
  // warps per SM instead of 16 lost everywhere (1B Q4_K_M +5%). q8_0 and
  // q4_0 take it (the 1B and 8B Q4_0: -0.6% and -0.3% a token with 8 and 4
  // rows; q4_0's LM head cases of 8 rows pass on the GPU); the other types
  // keep their rows until they have been measured (q4_K's LM head of 8 rows
  // passed its GPU cases, untimed).
  const bool larger = min_item_bytes > 0 && (m.wdt == DType::Q8_0 || m.wdt == DType::Q4_0);
  if (larger) {
    while (b.rows < kGemvBulkMaxRows && (b.rows * rb < min_item_bytes || (b.rows * rb) % 16)) b.rows *= 2;
    if ((m.N % b.rows) * rb % 16) return std::nullopt;  // the last item's copy
  }
  if (larger ? (b.rows * rb) % 16 : rb % 16) return std::nullopt;
  const int64_t stage = ((m.flags & kMmSwiGlu) ? 2 : 1) * b.rows * rb;
  const int64_t xs = (fx ? tokens * m.K * 4 : tokens * (m.K + m.K / 16 * 8)) + (m.merge ? tokens * m.K * 4 : 0);
  b.stages = static_cast<int>(std::clamp<int64_t>((kStageTarget + stage - 1) / stage, 2, 4));
  // Warps per group sharing one set of row buffers (ks): the fewest that give
  // the most resident warps per SM. Long rows (the 8B's down projection: 8-12
  // KiB) leave room for only 8 warps' buffers per SM at ks = 1, so those
  // warps were issue-bound (docs/perf.md); at ks = 2 or 4 the same buffers
  // feed twice or four times the warps. f32 activations take at most 2: at
  // 4 (16 warps a block) the 8B's f16 LM head took 296.8 us against 253.8 at
  // 2 (8 warps), its o projection 12.3 against 11.2 (session 17): an fx unit
  // is little arithmetic per byte, so the per-item merge of the KS partial
  // sums weighs more.
  std::optional<GemvBulk> best;
  for (int ks = 1; ks <= (fx ? 2 : 4); ks *= 2) {
    GemvBulk c = b;
    c.ks = ks;
    int64_t smem = 0;
    for (c.warps = max_warps; c.warps >= ks; c.warps /= 2) {
      smem = xs + c.warps / ks * c.stages * (stage + 8);
      if (smem + kSmemReserved <= kSmemPerSm) break;
    }
    if (c.warps < ks) continue;
    c.smem = static_cast<uint32_t>(smem);
    c.min_blocks = static_cast<int>(std::clamp<int64_t>(kSmemPerSm / (smem + kSmemReserved), 1, 16 / c.warps));
    if (!best || c.min_blocks * c.warps > best->min_blocks * best->warps) best = c;
  }
  if (!best) return std::nullopt;
  b = *best;
  const int64_t items = (m.N + b.rows - 1) / b.rows;
  const int64_t groups = b.warps / b.ks;
  const int64_t capacity = kGemvBulkSms * b.min_blocks * groups;  // groups resident at once
  const int64_t per_group = (items + capacity - 1) / capacity;
  const int64_t need = (items + per_group - 1) / per_group;
  b.grid = static_cast<uint32_t>((need + groups - 1) / groups);
  return b;
}

int gemv_rows_xq(int64_t N, int split, bool swiglu) {
  for (int r = swiglu ? 2 : 4; r > 1; r /= 2)
    if (N * split / r >= launch::kGemvXqMinWarps) return r;
  return 1;
}

}  // namespace kiln::codegen::detail
