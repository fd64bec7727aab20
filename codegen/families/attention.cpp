// Attention family: causal GQA attention over the KV cache (kernels/attention.cuh).
// Two variants:
//  - split (flash-decoding), compiled steps of <= kAttSplitMaxRows rows whose
//    node carries the split scratch (input 4, the split-decode-attention pass):
//    one block per (split of the KV sequence, KV head, row) covering the whole
//    GQA group, the last block of each (KV head, row) merging the splits; on
//    tensor cores (split_tc) where the target, cache and shape allow;
//    a sliding-window layer's split kernel covers its window's rows, read from
//    its ring (CUDA cores only);
//  - otherwise (prefill buckets, eager programs, shapes the split kernel does not
//    take) one block per (head, token), online softmax per warp; attr window
//    limits each query to its window, read from a ring.
#include <algorithm>

#include "codegen/family.h"
#include "codegen/kernels/launch.h"

namespace kiln::codegen {

namespace {
int64_t cdiv64(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Whether the split kernel takes this geometry (head_dim / 8 lanes per row
// divide a warp; the block merge's shared memory holds group * head_dim floats).
bool split_geometry(int64_t nh, int64_t nkv, int64_t hd) {
  if (nkv <= 0 || nh % nkv) return false;
  const int64_t G = nh / nkv;
  const bool hd_ok = hd == 8 || hd == 16 || hd == 32 || hd == 64 || hd == 128 || hd == 256;
  return hd_ok && G <= launch::kAttSplitMaxGroup && G * hd <= launch::kAttSplitMaxGroupDims;
}
// Whether the split variant runs on tensor cores (k_attention_split_tc):
// mma.sync m16n8k16 (sm_80+), f16 operands, the group's hi and lo rows in one
// 16-row fragment (G <= 8), head_dim 64. The kernel also takes head_dim 128,
// where it measured slower than the CUDA-core kernel at contexts 512 and 4096
// and faster at 8192 (8B Q4_K_M +1.1 / +1.3 / -1.9% per token on the H200,
// docs/perf.md): not chosen there.
bool split_tc(int sm, ir::DType kv_dt, int64_t nh, int64_t nkv, int64_t hd) {
  return sm >= 80 && kv_dt == ir::DType::F16 && hd == 64 && nh / nkv <= 8;
}
int64_t split_header_floats(int64_t nkv) { return (launch::kAttSplitMaxRows * nkv + 3) / 4 * 4; }
}  // namespace

int attention_splits(int64_t n_kv_heads, int64_t rows, int64_t kv_len) {
  const int64_t per = std::max<int64_t>(1, n_kv_heads * rows);  // blocks per split
  const int64_t want = cdiv64(launch::kAttSplitTargetBlocks, per);
  const int64_t cap = std::min<int64_t>(launch::kAttSplitMaxSplits, cdiv64(kv_len, launch::kAttSplitMinKeys));
  int64_t s = std::max<int64_t>(1, std::min(want, cap));
  const int64_t wave = launch::kAttSplitWaveBlocks, spill = (s * per) % wave;
  if (s * per > wave && spill > 0 && spill <= wave / 4) s = std::max<int64_t>(1, (s * per - spill) / per);
  return static_cast<int>(s);
}

int64_t attention_split_scratch_floats(int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t kv_len) {
  if (!split_geometry(n_heads, n_kv_heads, head_dim) || kv_len <= 0) return 0;
  return split_header_floats(n_kv_heads) +
         launch::kAttSplitMaxRows * n_heads * attention_splits(n_kv_heads, 1, kv_len) * (head_dim + 2);
}

int attention_defer_splits(int64_t n_heads, int64_t head_dim) {
  const int64_t x = std::max<int64_t>(1, n_heads * head_dim);
  const int64_t d = std::min<int64_t>(launch::kAttDeferMaxSplits, launch::kAttDeferMaxFloats / x);
  return d >= launch::kAttDeferMinLimit ? static_cast<int>(d) : 0;
}

namespace detail {
namespace {

struct AttentionParams {
  ir::DType kv_dt = ir::DType::F32;  // KV cache dtype
  ir::DType out = ir::DType::F32;    // output: f32, or f16/bf16 (fold-cast; not the split variant)
  int64_t T = 0, C = 0, nh = 0, nkv = 0, hd = 0;
  double scale = 1.0;
  int64_t window = 0;  // sliding window (attr window; 0 = none)
  int splits = 0;  // > 0: the split-K variant with this many splits (grid (nkv, splits, T))
  bool tc = false;  // the split variant on tensor cores (split_tc)
  int defer = 0;  // defer_merge: the consumer merges 2..defer splits (att_split_finish DEFER)
};

Kernel emit(const AttentionParams& p, bool compiled) {
  Emit e{compiled, {}, {}};
  Kernel k;
  k.header = "attention.cuh";
  if (p.splits > 0) {
    const int64_t G = p.nh / p.nkv;
    const std::string defer = std::to_string(p.defer);
    const std::string shape = "_hd" + std::to_string(p.hd) + "_g" + std::to_string(G) + "_s" + std::to_string(p.splits) +
                              (p.defer ? "_dm" + defer : "");
    const char* cache_t = p.tc ? "const u16*" : "const void*";
    std::string q = e.in(0, "const float*"), kc = e.in(1, cache_t), vc = e.in(2, cache_t), y = e.out(0, "float*"),
                sc = e.in(4, "float*"), st = e.step();
    std::string C = e.i(p.C), nh = e.i(p.nh), nkv = e.i(p.nkv), S = e.i(p.splits), scale = e.f(p.scale);
    const std::string args = "(" + q + ", " + kc + ", " + vc + ", " + y + ", " + sc + ", " + st + ", " + C + ", " + nh +
                             ", " + nkv + ", " + S + ", " + scale + (p.window > 0 ? ", " + e.i(p.window) : "") + ")";
    if (p.tc) {  // f16 cache only (split_tc)
      k.name = "kiln_attention_split_tc_f16" + shape;
      k.call = "k_attention_split_tc<" + std::to_string(p.hd) + ", " + std::to_string(G) + ", kAttSplitTcWarps, 1" +
               (p.defer ? ", 0, " + defer : "") + ">" + args;
      k.block = launch::kAttSplitTcThreads;
      k.min_blocks = launch::kAttSplitTcMinBlocks;
    } else {
      k.name = "kiln_attention_split_" + dt_lower(p.kv_dt) + shape + (p.window > 0 ? "_win" : "");
      k.call = "k_attention_split<" + dt_macro(p.kv_dt) + ", " + std::to_string(p.hd) + ", " + std::to_string(G) +
               ", kAttSplitWarps, kAttSplitLoads, kAttSplitPrefetch, 1" +
               (p.window > 0 ? ", " + defer + ", true" : p.defer ? ", " + defer : "") + ">" + args;
      k.block = launch::kAttSplitThreads;
    }
    k.take(e);
    k.grid = {static_cast<uint32_t>(p.nkv), static_cast<uint32_t>(p.splits), cdiv(p.T, 1)};  // heads fastest
    k.own_pdl_wait = true;  // loads its first tile of earlier steps' rows before the wait (attention.cuh)
    k.eager_module = p.kv_dt;
    return k;
  }
  k.name = "kiln_attention_" + dt_lower(p.kv_dt) + (p.out == ir::DType::F32 ? "" : "_o" + dt_lower(p.out));
  std::string q = e.in(0, "const float*"), kc = e.in(1, "const void*"), vc = e.in(2, "const void*"),
              y = e.out(0, "void*"), st = e.step();
  std::string C = e.i(p.C), nh = e.i(p.nh), nkv = e.i(p.nkv), hd = e.i(p.hd), sc = e.f(p.scale),
              win = e.i(p.window);
  k.call = "k_attention<" + dt_macro(p.kv_dt) + ", " + dt_macro(p.out) + ">(" + q + ", " + kc + ", " + vc + ", " + y +
           ", " + st + ", " + C + ", " + nh + ", " + nkv + ", " + hd + ", " + sc + ", " + win + ")";
  k.take(e);
  k.block = launch::kAttThreads;
  k.grid = {static_cast<uint32_t>(p.nh), cdiv(p.T, 1), 1};
  k.eager_module = p.kv_dt;
  return k;
}

}  // namespace

// The split variant: compiled decode-sized steps whose node has the scratch.
// A sliding-window layer's runs on CUDA cores (k_attention_split WIN: its
// rows are the window's positions, read from the ring), where its cache
// holds window + rows - 1 rows (the verifier's ring rule).
std::optional<AttentionSplit> attention_split(const NodeCtx& c) {
  if (c.n.op != ir::OpKind::Attention || !c.compiled() || c.n.inputs.size() <= 4) return std::nullopt;
  AttentionSplit a;
  a.window = c.n.attrs.count("window") ? c.n.attr_int("window") : 0;
  a.nh = c.n.attr_int("n_heads");
  a.nkv = c.n.attr_int("n_kv_heads");
  a.hd = c.n.attr_int("head_dim");
  a.T = c.dim(c.in(0), 0);
  a.C = c.dim(c.in(1), 0);
  if (a.T > launch::kAttSplitMaxRows || !split_geometry(a.nh, a.nkv, a.hd)) return std::nullopt;
  if (a.window < 0 || (a.window > 0 && a.C < a.window + a.T - 1)) return std::nullopt;
  // (a window's step covers at most window + T - 1 rows, which the check above keeps within C)
  a.splits = attention_splits(a.nkv, a.T, a.window > 0 ? a.window + a.T - 1 : a.C);
  a.tc = a.window == 0 && split_tc(c.target.sm, c.in(1).dtype, a.nh, a.nkv, a.hd);
  a.one_block_rows = a.tc ? launch::kAttSplitTcOneBlockRows : 0;
  // defer_merge: both split kernels defer (the CUDA-core one since session
  // 24, at every head_dim since session 25, when GpuDeferredMerge ran it at
  // head_dim 128 and 256 as well as 64)
  if (c.n.attrs.count("defer_merge") && c.n.attr_int("defer_merge") == 1) {
    a.defer = attention_defer_splits(a.nh, a.hd);
    if (a.defer == 0)
      throw Error(ErrorCode::kInternal, "codegen: attention has defer_merge, but x of " + std::to_string(a.nh * a.hd) +
                                            " values defers no splits (attention_defer_splits)");
  }
  return a;
}

const ir::Node* producer_of(const ir::Graph& g, ir::ValueId v) {
  for (const ir::Node& n : g.nodes())
    for (ir::ValueId o : n.outputs)
      if (o == v) return &n;
  return nullptr;
}

namespace {

class AttentionFamily final : public Family {
 public:
  std::string_view name() const override { return "attention"; }
  // Every attention node the flash-attention family (prefill on tensor cores) does not take.
  bool selects(const NodeCtx& c) const override {
    return c.n.op == ir::OpKind::Attention && !flash_attention_family().selects(c);
  }
  Kernel lower(const NodeCtx& c) const override {
    c.need_f32(c.in(0), "q");
    c.need_float(c.in(1), "k");
    if (c.in(2).dtype != c.in(1).dtype) unsupported("attention: k and v must have one dtype");
    AttentionParams p;
    p.kv_dt = c.in(1).dtype;
    p.out = c.out(0).dtype;
    if (p.out != ir::DType::F32 && (!c.compiled() || c.n.inputs.size() > 4 ||
                                    (p.out != ir::DType::F16 && p.out != ir::DType::BF16)))
      unsupported("attention: output %" + c.out(0).name + " is " + dt_lower(p.out) +
                  "; only compiled attention without the split-K scratch writes f16/bf16");
    p.nh = c.n.attr_int("n_heads");
    p.nkv = c.n.attr_int("n_kv_heads");
    p.hd = c.n.attr_int("head_dim");
    p.scale = c.n.attr_float("scale");
    if (p.hd <= 0 || p.hd > 32 * launch::kAttMaxDimsPerLane)
      unsupported("attention: head_dim " + std::to_string(p.hd) + " > " +
                  std::to_string(32 * launch::kAttMaxDimsPerLane));
    if (p.nkv <= 0 || p.nh % p.nkv) unsupported("attention: n_heads must be a multiple of n_kv_heads");
    p.C = c.dim(c.in(1), 0);
    p.T = c.dim(c.in(0), 0);
    p.window = c.n.attrs.count("window") ? c.n.attr_int("window") : 0;
    if (p.window < 0) unsupported("attention: window must be >= 0");
    if (const std::optional<AttentionSplit> sp = attention_split(c)) {
      const ir::Value& sc = c.in(4);
      if (sc.dtype != ir::DType::F32 || sc.shape.size() != 1)
        unsupported("attention: split scratch %" + sc.name + " must be f32 [n]");
      p.splits = sp->splits;
      p.tc = sp->tc;
      p.defer = sp->defer;
      const int64_t need = split_header_floats(p.nkv) + p.T * p.nh * p.splits * (p.hd + 2);
      if (c.dim(sc, 0) < need)
        throw Error(ErrorCode::kInternal, "codegen: attention split scratch %" + sc.name + " holds " +
                                              std::to_string(c.dim(sc, 0)) + " floats, the kernel needs " +
                                              std::to_string(need) + " (attention_split_scratch_floats)");
    }
    return emit(p, c.compiled());
  }
  std::vector<Kernel> eager_kernels(ir::DType dt) const override {
    if (!is_float(dt)) return {};
    AttentionParams p;
    p.kv_dt = dt;
    return {emit(p, false)};
  }
};

}  // namespace

const Family& attention_family() {
  static const AttentionFamily f;
  return f;
}

}  // namespace detail
}  // namespace kiln::codegen
