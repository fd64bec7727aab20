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

// RoPE and KV store (rope.cuh): one block per (token, head), one thread per pair.
constexpr int kRopeThreads = 64;

// Attention (attention.cuh): one block per (head, token).
constexpr int kAttWarps = 8;
constexpr int kAttThreads = 32 * kAttWarps;
constexpr int kAttKeysPerGroup = 4;              // key rows a warp loads together
constexpr int kAttMaxDimsPerLane = 8;            // head_dim <= 32 * 8 = 256

// Sampling (sample.cuh): LM head GEMV blocks, and the argmax-as-sampling kernel.
constexpr int kSampleThreads = kGemvThreads;
constexpr int kSampleRowsItemsPerThread = 8;     // logits per thread of the argmax kernel
constexpr int kSampleRowsMaxBlocks = 256;

}  // namespace launch
}  // namespace kiln
