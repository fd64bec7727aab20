// launch.h: launch geometry shared by the kernels (NVRTC includes this file)
// and codegen's host code (codegen/families/*.cpp include it as C++), so a
// block size or tile shape is written once. Plain constexpr ints: valid in
// both compilers, usable as array bounds and template arguments.
#pragma once

namespace kiln {
namespace launch {

// GEMV (codegen/families/gemv.cpp, gemv.cuh): decode-sized steps.
constexpr int kGemvWarps = 4;                    // warps per block
constexpr int kGemvThreads = 32 * kGemvWarps;    // block size
constexpr int kGemvMaxTokens = 4;                // compiled programs use the GEMV for steps of <= 4 rows
constexpr int kGemvXqMinWarps = 1024;            // int8-activation GEMV: grid size that keeps 4 columns per group
constexpr int kGemvXqMaxBlocks = 4 * 132;        // its grid: ~4 blocks per SM of an H100/H200, each looping over rows
// Its __launch_bounds__ minimum blocks per SM (<= 170 registers per thread):
// without it q6_K (R = 4) and the multi-weight kernels took 172-176 and ran
// two blocks per SM, so a 384-block qkv grid took two waves.
constexpr int kGemvXqMinBlocksPerSm = 3;
// The q8_0, q4_K and q6_K kernels keep only 3 blocks per SM resident, so
// their grids stop at one such wave (measured on the H200: 8B Q8_0 decode
// -7.4%, 1B Q8_0 -6.3%, 1B Q4_K_M -6.4%, 8B Q4_K_M unchanged); q4_0 and q4_1,
// whose blocks fit 4 per SM, keep kGemvXqMaxBlocks (the 3-block cap made
// q4_0 5.8% slower).
constexpr int kGemvXqMaxBlocksWave = kGemvXqMinBlocksPerSm * 132;
// The register int8 GEMV (mm_gemv_xq) of a weight under this many bytes
// bulk-prefetches every row its block reads into L2 before its PDL wait, so
// the loads after the first unit's hit L2. Measured on the H200 (session 12,
// GPU ms per token at context 512): SmolLM2 geometry -3.5%, 1B Q4_K_M and Q8_0
// unchanged; prefetching the 8B's 9-14 MB QKV parts as well made it +1.5%.
constexpr int kGemvPrefetchMaxBytes = 2 * 1024 * 1024;

// Tiled matmul (tiled.cuh): a kTileK-wide K tile of kTileN weight rows in
// shared memory, reused by kTileM tokens; with the SwiGLU epilogue a block
// computes kTileN / 2 output columns (gate and up rows).
constexpr int kTiledThreads = 256;
constexpr int kTileM = 16;
constexpr int kTileN = 64;
constexpr int kTileK = 128;

// Elementwise (elementwise.cuh) and embedding (embed.cuh).
constexpr int kRowThreads = 256;                 // one block per row: embed, rms_norm, kv_store
constexpr int kElementwiseThreads = 256;         // grid-stride kernels: add, mul, silu, swiglu, last_row
constexpr int kElementwiseMaxBlocks = 4096;
constexpr int kLastRowMaxBlocks = 1024;

// Convert (convert.cuh): dequantising a whole weight matrix to f16.
constexpr int kConvertMaxBlocks = 132 * 16;      // grid-stride: ~16 blocks per SM of an H100/H200

// RoPE and KV store (rope.cuh): one block per (token, head), one thread per pair.
constexpr int kRopeThreads = 64;

// Attention (attention.cuh): one block per (head, token).
constexpr int kAttWarps = 8;
constexpr int kAttThreads = 32 * kAttWarps;
constexpr int kAttKeysPerGroup = 4;              // key rows a warp loads together
constexpr int kAttMaxDimsPerLane = 8;            // head_dim <= 32 * 8 = 256

// Split-K decode attention (attention.cuh k_attention_split, flash-decoding):
// steps of <= kAttSplitMaxRows rows; one block per (split of the KV sequence,
// KV head, row) covers the whole GQA group; the last block of a (KV head, row)
// merges the splits. Split count S (compile time, codegen attention_splits):
// ceil(kAttSplitTargetBlocks / (n_kv_heads * rows)), at most kAttSplitMaxSplits
// and at most kv_len / kAttSplitMinKeys, trimmed to whole waves where it spills
// a few blocks past them (kAttSplitWaveBlocks); at run time a split covers
// max(ceil(L / S), kAttSplitMinKeys) of the L = pos0 + n_tokens rows (the
// tensor-core kernel: one split while L <= kAttSplitTcOneBlockRows).
constexpr int kAttSplitMaxRows = 4;
// Chosen on an H200 (AttentionBench in tests/gpu/kernels_test.cpp, docs/perf-notes.md):
// 8 warps, 2 loads of K and V per lane and tile with the next tile prefetched
// (128 registers at head_dim 128 and 4 heads per KV head: 2 blocks per SM),
// ~2 blocks per SM; more splits (4 per SM) or fewer (1) were slower.
constexpr int kAttSplitWarps = 8;                // warps per block
constexpr int kAttSplitThreads = 32 * kAttSplitWarps;
constexpr int kAttSplitLoads = 2;                // K and V row loads of a lane per tile
constexpr int kAttSplitPrefetch = 1;             // the next tile's loads fly while one is computed
constexpr int kAttSplitWaveBlocks = 132;          // one block per SM of an H100/H200
constexpr int kAttSplitTargetBlocks = 2 * kAttSplitWaveBlocks;  // ~2 blocks per SM
// A grid that spills past whole waves of kAttSplitWaveBlocks by at most a
// quarter wave is trimmed to those waves: SmolLM2's 3 KV heads x 48 splits
// = 144 blocks gave 12 SMs two blocks' work; 3 x 44 = 132 measured -4.5% per
// token at 4096 and 8000 rows (docs/perf.md, session 16).
constexpr int kAttSplitMaxSplits = 48;
constexpr int kAttSplitMinKeys = 64;
// A deferring split attention (the defer-attention-merge pass; att_defer.cuh)
// leaves the merge to its consumer at 2 to D splits, D = min(
// kAttDeferMaxSplits, kAttDeferMaxFloats / (n_heads * head_dim)) (codegen
// attention_defer_splits), and its splits take at least kAttDeferMinKeys
// rows: every block of the consumer loads nsplit partial states of each of
// its x values from L2 (in one round of at most kAttDeferMaxSplits loads a
// value), so fewer, longer splits pay there. Nodes whose D would be under
// kAttDeferMinLimit are not deferred. Measured on the H200 (docs/perf.md,
// session 23, GPU ms per token): 1B Q4_K_M (x of 2048) at 512 rows 0.449 ->
// 0.420 with splits of 64 rows, 0.416 of 128; at 960 rows (15 splits of 64,
// past D = 10, so not deferred) 0.452 -> 0.452, 0.418 of 128 (8 splits);
// the 8B (x of 4096: D = 5) deferring 4 splits of 128 at 512 rows lost
// (1.733 -> 1.792), and only carrying the merge, never deferring, lost
// 0.6% (the GEMV's larger shared memory).
constexpr int kAttDeferMaxSplits = 16;
constexpr int kAttDeferMaxFloats = 20480;
constexpr int kAttDeferMinKeys = 128;
constexpr int kAttDeferMinLimit = 8;
// While L <= kAttDeferCapMaxRows a deferring node's splits are also at least
// ceil(L / D) rows (att_split_chunk), so it defers at most D of them instead
// of merging more than D itself. H200, GPU ms per token (docs/perf.md,
// session 24): 1B Q4_K_M at 2048 rows 0.481 -> 0.453, at 4096 0.503 ->
// 0.491, at 8192 0.533 -> 0.546 (10 splits of 820 rows: slower); SmolLM2
// geometry (16 merging warps) at 2048 0.411 -> 0.389, at 4096 0.435 ->
// 0.445, at 8000 0.473 -> 0.500. Gains at 2048 in both, mixed at 4096,
// losses at 8000-8192: the limit lies between (3072 itself not measured).
constexpr int kAttDeferCapMaxRows = 3072;
// Warps of the register GEMV that merges (mm_gemv NW): fewer blocks merge
// (each loads every split's partial state of all of x), and 16 warps take
// SmolLM2's 144 float4 columns of x in one round of loads. H200, SmolLM2
// geometry, GPU ms per token (docs/perf.md, session 24): 8 warps (72
// blocks) -> 16 (36 blocks) at 512 rows 0.3644 -> 0.3443, at 2048 0.4365
// -> 0.4114, at 4096 0.4457 -> 0.4346, at 8000 (44 splits: the attention
// merges itself) 0.4559 -> 0.4731; 32 warps 0.4029 at 512.
constexpr int kGemvMergeWarps = 16;
// Steps of at most this many KV rows (L = pos0 + n_tokens) prefetch their
// K and V rows to L2 before the PDL wait (attention.cuh). Measured: faster
// at L <= 1056, slower at L >= 2000; the limit between is not measured.
constexpr int kAttSplitL2PrefetchMaxRows = 1536;
constexpr int kAttSplitMaxGroup = 8;             // query heads per KV head (n_heads / n_kv_heads)
constexpr int kAttSplitMaxGroupDims = 1024;      // group * head_dim (shared memory of the block merge)
// The split kernel on tensor cores (k_attention_split_tc: sm_80+, f16 cache,
// head_dim 64, at most 8 query heads per KV head): 8 warps a block of 126
// registers, 2 blocks per SM, so the splits' kAttSplitTargetBlocks still fit
// one wave. (At head_dim 128 it needs 224 registers, so 4 warps a block; that
// lost to the CUDA-core kernel at contexts 512 and 4096: docs/perf.md.)
constexpr int kAttSplitTcWarps = 8;
constexpr int kAttSplitTcThreads = 32 * kAttSplitTcWarps;
constexpr int kAttSplitTcMinBlocks = 2;
// Steps of at most this many KV rows run the tensor-core split kernel as one
// split: one block per (KV head, row), its 8 warps taking 16-key tiles (at
// most 3 each), merged in shared memory, with no partial states, completion
// counter or merging block. Splitting such short sequences bought
// parallelism the merge's dependent memory round trips cost again. H200, GPU
// ms per token, old -> one split (docs/perf.md, session 19): SmolLM2
// geometry Q4_1 at 64-128 rows 0.373 -> 0.314, at 128-192 0.378 -> 0.327;
// 1B Q4_K_M 0.440 -> 0.408, 0.441 -> 0.422, at 192-256 0.442 -> 0.426, at
// 320-384 0.446 -> 0.439. One split of 512-576 rows (4 tiles a warp) was
// slower than 8 splits: SmolLM2 0.399 -> 0.413, 1B 0.451 -> 0.457.
constexpr int kAttSplitTcOneBlockRows = 384;

// Flash attention for prefill (flash_attention.cuh): a block is kFlashWarps
// warps of 16 query rows of one head; KV tiles of flash_keys(head_dim) keys
// (flash_attention.cuh) in a two-stage shared-memory ring.
constexpr int kFlashWarps = 4;
constexpr int kFlashThreads = 32 * kFlashWarps;
constexpr int kFlashRows = 16 * kFlashWarps;

// Sampling (sample.cuh): LM head GEMV blocks, and the argmax-as-sampling kernel.
constexpr int kSampleThreads = kGemvThreads;
constexpr int kSampleRowsItemsPerThread = 8;     // logits per thread of the argmax kernel
constexpr int kSampleRowsMaxBlocks = 256;

}  // namespace launch
}  // namespace kiln
