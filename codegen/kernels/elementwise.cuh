// elementwise.cuh: rms_norm (per row or per head), add/mul (with [N] broadcast),
// silu, swiglu, geglu, last_row. Rows t >= n_tokens are skipped when the row dimension is the
// symbolic "tokens" dim (dyn != 0).
#pragma once
#include "common.cuh"

// rms_norm: y = x / sqrt(mean(x^2) + eps) * w over rows of H. A token row
// holds `heads` such rows (1, or the heads of a per-head Q/K norm, w one head
// wide). Launch: grid T * heads, block 256.
template <int WDT>
__device__ __forceinline__ void k_rms_norm(const float* __restrict__ x, const void* __restrict__ w,
                                           float* __restrict__ y, int nt, int H, float eps, int heads) {
  __shared__ float red[33];
  const int r = blockIdx.x;
  if (r / heads >= nt) return;
  const float inv = row_inv_rms(x + (i64)r * H, H, eps, red);
  for (int k = threadIdx.x; k < H; k += blockDim.x)
    y[(i64)r * H + k] = (x[(i64)r * H + k] * inv) * ldf<WDT>(w, k);
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


// silu (up == nullptr) or swiglu: y = silu(x) [* up]. Launch: grid-stride, block 256.
__device__ __forceinline__ void k_silu(const float* __restrict__ x, const float* __restrict__ up,
                                       float* __restrict__ y, int nt, int dyn, int R, int N) {
  const int rows = dyn ? min(R, nt) : R;
  const i64 total = (i64)rows * N;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x)
    y[i] = up ? silu(x[i]) * up[i] : silu(x[i]);
}

// geglu: y = gelu_tanh(x) * up (Gemma's feed-forward). Launch: grid-stride, block 256.
__device__ __forceinline__ void k_geglu(const float* __restrict__ x, const float* __restrict__ up,
                                        float* __restrict__ y, int nt, int dyn, int R, int N) {
  const int rows = dyn ? min(R, nt) : R;
  const i64 total = (i64)rows * N;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x)
    y[i] = gelu_tanh(x[i]) * up[i];
}

// last_row: y[0,:] = x[n_tokens-1, :] (rows clamped to R). Launch: grid 1.., block 256.
__device__ __forceinline__ void k_last_row(const float* __restrict__ x, float* __restrict__ y, int nt,
                                           int dyn, int R, int H) {
  int t = dyn ? min(R, nt) - 1 : R - 1;
  if (t < 0) return;
  for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < H; k += gridDim.x * blockDim.x)
    y[k] = x[(i64)t * H + k];
}
