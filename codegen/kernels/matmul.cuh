// matmul.cuh: y[T,N] = x[T,K] @ w[N,K]^T with w in its GGUF block layout, plus
// the fused prologue / epilogues of plan-abi.md:
//   MM_RMS    x rows are rms-normalised with gain g first (rms_matmul)
//   MM_ADD    y += r[T,N] (matmul_add, residual epilogue)
//   MM_SWIGLU w has 2N rows; y[t,n] = silu(h[t,n]) * h[t,N+n] (rms_matmul_swiglu)
//   MM_GEGLU  with MM_SWIGLU: gelu_tanh instead of silu (rms_matmul_swiglu act "gelu_tanh")
//   MM_ROPE   with MM_RMS: the columns are a qkv row that rope_store's rotation and KV-cache
//             stores consume in the epilogue (rms_matmul_rope_store; GEMV only, gemv.cuh RopeEpi)
//   MM_GW     with MM_RMS: the gain is a weight (a constant), so the register int8 GEMV
//             (gemv.cuh mm_gemv_xq) reads it before its PDL wait
// Two families: mm_gemv (gemv.cuh; few tokens: R output columns per group of
// SPLIT warps, every weight byte read once, warp-shuffle reduction) and
// mm_tiled (tiled.cuh; a 128-wide K tile of 64 weight rows is dequantised into
// shared memory once and reused by 16 tokens).
#pragma once
#include "dequant.cuh"

#define MM_RMS 1
#define MM_ADD 2
#define MM_SWIGLU 4
#define MM_GEGLU 8
#define MM_ROPE 16
#define MM_GW 32

// The gating of MM_SWIGLU: silu(gate) or, with MM_GEGLU, gelu_tanh(gate).
template <int FL>
__device__ __forceinline__ float mm_gate(float g) {
  return (FL & MM_GEGLU) ? gelu_tanh(g) : silu(g);
}
