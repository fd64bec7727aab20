// elementwise.cuh: rms_norm (per row or per head), add/mul (with [N] broadcast),
// silu, swiglu, geglu, last_row. Rows t >= n_tokens are skipped when the row dimension is the
// symbolic "tokens" dim (dyn != 0).
#pragma once
#include "common.cuh"

// rms_norm: y = x / sqrt(mean(x^2) + eps) * w over rows of H, written as ODT
// (f32, or f16/bf16 when it feeds a tensor-core GEMM: fold-cast). A token row
// holds `heads` such rows (1, or the heads of a per-head Q/K norm, w one head
// wide). Rows of a multiple of 4 elements move as float4 (x is read twice, the
// second time from L1/L2). Launch: grid T * heads, block kRowThreads.
// res (attr residual, fuse-norm-residual): y = res + the norm (f32 rows of H,
// one head), as add(res, rms_norm(x, w)) computes it.
template <int WDT, int ODT>
__device__ __forceinline__ void k_rms_norm(const float* __restrict__ x, const void* __restrict__ w,
                                           void* __restrict__ y, int nt, int H, float eps, int heads,
                                           const float* __restrict__ res = nullptr) {
  __shared__ float red[33];
  const int r = blockIdx.x;  // row r of H: token r / heads
  if (r / heads >= nt) return;
  const float* xr = x + (i64)r * H;
  if ((H & 3) == 0) {
    const float4* x4 = (const float4*)xr;
    float s = 0.f;
    for (int k = threadIdx.x; k < H / 4; k += blockDim.x) {
      const float4 v = x4[k];
      s += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    s = block_sum(s, red);
    const float inv = 1.0f / sqrtf(s / (float)H + eps);
    for (int k = threadIdx.x; k < H / 4; k += blockDim.x) {
      const float4 v = x4[k];
      float o[4] = {(v.x * inv) * ldf<WDT>(w, 4 * k), (v.y * inv) * ldf<WDT>(w, 4 * k + 1),
                    (v.z * inv) * ldf<WDT>(w, 4 * k + 2), (v.w * inv) * ldf<WDT>(w, 4 * k + 3)};
      if (res) {
        const float4 a = ((const float4*)(res + (i64)r * H))[k];
        o[0] = a.x + o[0];
        o[1] = a.y + o[1];
        o[2] = a.z + o[2];
        o[3] = a.w + o[3];
      }
      st4<ODT>(y, (i64)r * H + 4 * k, o);
    }
    return;
  }
  const float inv = row_inv_rms(xr, H, eps, red);
  for (int k = threadIdx.x; k < H; k += blockDim.x) {
    const float o = (xr[k] * inv) * ldf<WDT>(w, k);
    stf<ODT>(y, (i64)r * H + k, res ? res[(i64)r * H + k] + o : o);
  }
}

// add / mul over a [R, N] view; b is [R, N] or (bcast) [N]. Launch: grid-stride,
// block 256. rows = R, or min(R, n_tokens) when dyn.
template <int BDT, int MUL>
__device__ __forceinline__ void k_binary(const float* __restrict__ a, const void* __restrict__ b,
                                         float* __restrict__ y, int nt, int dyn, int R, int N, int bcast) {
  const int rows = dyn ? min(R, nt) : R;
  const i64 total = (i64)rows * N;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
    const float bv = ldf<BDT>(b, bcast ? i % N : i);
    y[i] = MUL ? a[i] * bv : a[i] + bv;
  }
}


// silu (up == nullptr) or swiglu: y = silu(x) [* up], written as ODT (f32,
// or f16/bf16: fold-cast). Rows of a multiple of 4 elements move as float4.
// Launch: grid-stride, block 256.
template <int ODT>
__device__ __forceinline__ void k_silu(const float* __restrict__ x, const float* __restrict__ up,
                                       void* __restrict__ y, int nt, int dyn, int R, int N) {
  const int rows = dyn ? min(R, nt) : R;
  const i64 total = (i64)rows * N;
  if ((N & 3) == 0) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total / 4; i += (i64)gridDim.x * blockDim.x) {
      const float4 a = ((const float4*)x)[i];
      float o[4] = {silu(a.x), silu(a.y), silu(a.z), silu(a.w)};
      if (up) {
        const float4 b = ((const float4*)up)[i];
        o[0] *= b.x;
        o[1] *= b.y;
        o[2] *= b.z;
        o[3] *= b.w;
      }
      st4<ODT>(y, 4 * i, o);
    }
    return;
  }
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x)
    stf<ODT>(y, i, up ? silu(x[i]) * up[i] : silu(x[i]));
}

// geglu: y = gelu_tanh(x) * up (Gemma's feed-forward), written as ODT (f32, or
// f16/bf16: fold-cast). Launch: grid-stride, block 256.
template <int ODT>
__device__ __forceinline__ void k_geglu(const float* __restrict__ x, const float* __restrict__ up,
                                        void* __restrict__ y, int nt, int dyn, int R, int N) {
  const int rows = dyn ? min(R, nt) : R;
  const i64 total = (i64)rows * N;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x)
    stf<ODT>(y, i, gelu_tanh(x[i]) * up[i]);
}

// last_row: y[0,:] = x[n_tokens-1, :] (rows clamped to R). Launch: grid 1.., block 256.
__device__ __forceinline__ void k_last_row(const float* __restrict__ x, float* __restrict__ y, int nt,
                                           int dyn, int R, int H) {
  int t = dyn ? min(R, nt) - 1 : R - 1;
  if (t < 0) return;
  for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < H; k += gridDim.x * blockDim.x)
    y[k] = x[(i64)t * H + k];
}
