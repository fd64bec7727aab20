// What the GEMV and tiled-matmul families share: reading a matmul-family node
// (matmul, rms_matmul, matmul_add, rms_matmul_swiglu) into its operands and
// shapes, and the entry-name / template-argument conventions of matmul.cuh.
#pragma once
#include "codegen/family.h"

namespace kiln::codegen::detail {

// matmul.cuh's MM_* flags (kMmGeGlu comes with kMmSwiGlu: the gate/up rows, GELU-tanh gating)
// (kMmRope comes with kMmRms: rms_matmul_rope_store, the rope_store epilogue of a GEMV)
constexpr int kMmRms = 1, kMmAdd = 2, kMmSwiGlu = 4, kMmGeGlu = 8, kMmRope = 16;
// MM_GW (matmul.cuh): set on the register int8 GEMV's template argument only, where the
// rms gain is a weight (MatmulOperands::gain_weight), not in MatmulOperands::flags
constexpr int kMmGainWeight = 32;

struct MatmulOperands {
  ir::DType wdt = ir::DType::F32;  // weight dtype
  ir::DType gdt = ir::DType::F32;  // rms gain dtype (MM_RMS)
  bool gain_weight = false;         // the rms gain is a weight (a constant: read before the PDL wait)
  int flags = 0;                   // MM_* of the op
  int64_t K = 0, N = 0, T = 0;     // N: output columns (half the weight rows with MM_SWIGLU)
  bool dyn = false;                // x is [tokens, K]: rows past n_tokens skipped
  int64_t rows = 0;                // rows this program computes (bucket-bounded when dyn)
  double eps = 0;
  bool planes = false;             // weight read in the "planes" layout
  bool xq = false;                 // x_q8: int8 activations (GEMV only)
  // An rms_matmul with several weights (fuse-qkv-parts): each weight's dtype,
  // output columns and layout, in order (their columns side by side in y;
  // wdt / planes above are part 0's, N the total). Empty: one weight.
  struct Part {
    ir::DType wdt = ir::DType::F32;
    int64_t N = 0;
    bool planes = false;
  };
  std::vector<Part> parts;
  // inputs of the (first) weight (ir::matmul_weight_inputs) and, with
  // kMmRms, of the gain just before it: rms_matmul 2, rms_matmul_rope_store 5
  size_t gain_in = 1, w_in = 2;
  // rms_matmul_rope_store (kMmRope): rope_store's operands (inputs 2, 3: the
  // k and v caches; the frequency factors, if any, the last input)
  struct Rope {
    ir::DType cache_dt = ir::DType::F16, ff_dt = ir::DType::F32;
    int64_t ff_in = -1;  // input index of the frequency factors (-1: none)
    int64_t C = 0, nh = 0, nkv = 0, hd = 0, n_rot = 0;
    double theta = 0;
  };
  Rope rope;
  // x_merge (the defer-attention-merge pass): x is a deferring split
  // attention's output and the node's last input (merge_in) that attention's
  // scratch'; the GEMV merges the partial states itself (att_defer.cuh).
  // Empty where that attention does not run split, or does not defer, in
  // this program (it then writes x itself).
  std::optional<AttentionSplit> merge;
  size_t merge_in = 0;
};

bool is_matmul_op(ir::OpKind op);
// A matmul-family node on f32 activations (the GEMV and tiled families; half
// x goes to the gemm family).
bool is_f32_matmul(const NodeCtx& c);
// Rows of x this node computes in this program (without validating it).
int64_t matmul_rows(const NodeCtx& c);
// Reads and validates the node.
MatmulOperands matmul_operands(const NodeCtx& c);
// "kiln_rms_matmul_gemv_q4_k_gf32" (path "gemv" or "tiled").
std::string matmul_name(const MatmulOperands& m, const char* path);
// Emits the operand parameters in the kernel ABI order (x, [g,] w, [r,] y,
// step) and returns the call arguments "x, g, w, r, y, nt, K, N, eps".
// step (optional): receives the step parameter's name.
std::string matmul_args(const MatmulOperands& m, Emit& e, std::string* step = nullptr);
// kMmRope: the epilogue argument of gemv.cuh's mm_gemv ("RopeEpi<FDT, CDT>{kc,
// vc, ff, step, C, nh, nkv, hd, n_rot, c0, theta}"), c0 the first qkv column
// the GEMV computes. The caches' and frequency factors' parameters are
// emitted once (rope_epi_params) for all the parts of a launch.
struct RopeEpiParams {
  std::string kc, vc, ff, step;
};
RopeEpiParams rope_epi_params(const MatmulOperands& m, Emit& e, const std::string& step);
std::string rope_epi_arg(const MatmulOperands& m, const RopeEpiParams& p, Emit& e, int64_t c0);
// The rows-to-compute expression of the call ("nt"), given the step parameter.
std::string matmul_nt(const MatmulOperands& m, Emit& e, const std::string& step);

// Decode GEMV geometry, shared with the LM head of the sampling family:
// warps per output column group (split long rows) and columns per group.
int gemv_split(int64_t K);
int gemv_rows(int64_t N, int split, bool swiglu);
// The same for int8-activation GEMVs (x_q8): 32-weight units, and more
// columns per group, which share one quantisation of each x part.
int gemv_split_xq(int64_t K);
int gemv_rows_xq(int64_t N, int split, bool swiglu);
// Largest grid of an int8-activation GEMV on weights of dtype dt (one wave of
// the blocks that stay resident: launch.h kGemvXqMaxBlocks, kGemvXqMaxBlocksWave).
uint32_t gemv_xq_max_blocks(ir::DType dt);
// The node's x_q8 attribute (0 when absent).
bool node_xq(const ir::Node& n);
// Whether the kernel launched before c's GEMV should trigger early (gemv.cpp).
bool gemv_wants_early_launch(const NodeCtx& c);
// Whether c is an int8-activation GEMV of small weights (under 2 MiB: a chain
// of latencies rather than a stream; SmolLM2's matrices).
bool gemv_small(const NodeCtx& c);
// Dynamic shared memory of an int8-activation GEMV (gemv.cuh): each of the
// `tokens` rows of K values quantised once per block, int8 plus (d, sum) per
// 16 values.
uint32_t gemv_xq_smem(int64_t K, int64_t tokens);

// The bulk-copy decode GEMV (gemv.cuh mm_gemv_bulk): sm_90, matrices of
// >= 2 MiB whose rows are a multiple of 16 bytes, on int8 activations or
// (F16 and BF16 weights, bulk_fx) on f32 activations. `warps` per block in
// groups of `ks` warps, each group with `stages` row buffers of `rows`
// output columns each; grid and shared memory sized so that the grid is one
// wave on a 132-SM GPU with every group taking the same number of items.
// nullopt where it does not apply.
struct GemvBulk {
  int warps = 0, stages = 0, rows = 1, min_blocks = 1, ks = 1;
  uint32_t smem = 0, grid = 0;
};
// max_warps: at most this many warps per block (16: one block per SM
// quantises x once for all its warps, measured 1.0-1.3% faster per 8B token
// than 8 warps in 2 blocks; the LM head keeps the sampling step's 4).
// min_bytes: smaller weights keep the register GEMV (a part of a
// multi-weight launch passes 0: the launch's total decides).
// kMmRope (the rope_store epilogue) takes column pairs: 2 columns per item.
constexpr int64_t kGemvBulkMinBytes = int64_t{2} << 20;
// SMs the bulk GEMV's grids are one wave on (H100 SXM / H200; fewer SMs: the
// grid takes a second wave).
constexpr int64_t kGemvBulkSms = 132;
// f32 activations (bulk_fx): x's bytes in shared memory at most this (K =
// 8192 at one token: the 1B's down projection; not the 8B's K = 14336).
constexpr int64_t kGemvBulkFxMaxXBytes = 32 * 1024;
// Whether the bulk GEMV of m takes f32 activations (16-bit float weights).
bool bulk_fx(const MatmulOperands& m);
// min_item_bytes (> 0: the LM head's sampling kernels): for q8_0 and q4_0 weights,
// output columns per item doubled, up to kGemvBulkMaxRows, until
// an item's rows hold at least this many bytes and a multiple of 16 (then
// rows themselves need not be).
constexpr int kGemvBulkMaxRows = 8;
std::optional<GemvBulk> gemv_bulk_geometry(const MatmulOperands& m, int64_t tokens, const Target& t,
                                           int max_warps = 16, int64_t min_bytes = kGemvBulkMinBytes,
                                           int64_t min_item_bytes = 0);

}  // namespace kiln::codegen::detail
