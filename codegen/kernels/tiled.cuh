// tiled.cuh: the prefill matmul on CUDA cores (codegen/families/tiled.cpp).
#pragma once
#include "matmul.cuh"

// Launch: block kTiledThreads, grid (ceil(N / (SWIGLU ? kTileN / 2 : kTileN)), ceil(T / kTileM)).
template <int DT, int GDT, int FL, int L = 0>
__device__ __forceinline__ void mm_tiled(const float* __restrict__ x, const void* __restrict__ g,
                                         const u8* __restrict__ w, const float* __restrict__ r,
                                         float* __restrict__ y, int nt, int K, int N, float eps) {
  typedef QT<DT> Q;
  __shared__ float Ws[kTileN][kTileK + 1];
  __shared__ float Xs[kTileM][kTileK];
  __shared__ float inv[kTileM];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.y * kTileM;
  if (m0 >= nt) return;  // uniform per block
  const int ncols = (FL & MM_SWIGLU) ? kTileN / 2 : kTileN;
  const int n0 = blockIdx.x * ncols;
  const int nw_rows = (FL & MM_SWIGLU) ? 2 * N : N;  // rows of w
  const int nb = K / Q::QK;
  if (FL & MM_RMS) {
    for (int rr = warp; rr < kTileM; rr += 8) {
      const int t = m0 + rr;
      float s = 0.f;
      if (t < nt)
        for (int k = lane; k < K; k += 32) { const float v = x[(i64)t * K + k]; s += v * v; }
      s = warp_sum(s);
      if (lane == 0) inv[rr] = 1.0f / sqrtf(s / (float)K + eps);
    }
    __syncthreads();
  }
  float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
  const int cc = tid & 31, r0 = (tid >> 5) * 2;
  const int ktiles = (K + kTileK - 1) / kTileK;
  for (int kt = 0; kt < ktiles; ++kt) {
    for (int e = tid; e < kTileM * kTileK; e += 256) {
      const int rr = e / kTileK, k = e % kTileK, t = m0 + rr, gk = kt * kTileK + k;
      float v = 0.f;
      if (t < nt && gk < K) {
        v = x[(i64)t * K + gk];
        if (FL & MM_RMS) v = (v * inv[rr]) * ldf<GDT>(g, gk);
      }
      Xs[rr][k] = v;
    }
    for (int e = tid; e < kTileN * 16; e += 256) {
      const int i = e >> 4, ci = e & 15;
      int wr;
      if (FL & MM_SWIGLU) wr = i < 32 ? n0 + i : (n0 + i - 32 < N ? N + n0 + i - 32 : nw_rows);
      else wr = n0 + i;
      const int gi = kt * 16 + ci, blk = gi / Q::CH, c = gi % Q::CH;
      if (wr < nw_rows && blk < nb && (wr < N || (FL & MM_SWIGLU))) {
        float v[8];
        int a, b;
        WRow<DT, L>(w, wr, nb, (i64)nw_rows * nb).deq(blk, c, v, a, b);
        const int base = blk * Q::QK - kt * kTileK;
#pragma unroll
        for (int j = 0; j < 4; ++j) { Ws[i][base + a + j] = v[j]; Ws[i][base + b + j] = v[4 + j]; }
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) Ws[i][ci * 8 + j] = 0.f;
      }
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kTileK; ++k) {
      const float w0 = Ws[cc][k], w1 = Ws[cc + 32][k];
      const float x0 = Xs[r0][k], x1 = Xs[r0 + 1][k];
      acc[0][0] += x0 * w0; acc[0][1] += x0 * w1;
      acc[1][0] += x1 * w0; acc[1][1] += x1 * w1;
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int t = m0 + r0 + j;
    if (t >= nt) continue;
    if (FL & MM_SWIGLU) {
      const int n = n0 + cc;
      if (n < N) y[(i64)t * N + n] = mm_gate<FL>(acc[j][0]) * acc[j][1];
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int n = n0 + cc + 32 * h;
        if (n < N) {
          float o = acc[j][h];
          if (FL & MM_ADD) o += r[(i64)t * N + n];
          y[(i64)t * N + n] = o;
        }
      }
    }
  }
}
