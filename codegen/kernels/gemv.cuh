// gemv.cuh: the decode matmul (codegen/families/gemv.cpp).
#pragma once
#include "matmul.cuh"

// Launch: block (32*kGemvWarps), grid ceil(N / ((kGemvWarps / SPLIT) * R)).
// A block holds kGemvWarps / SPLIT column groups; a group is SPLIT warps that
// take interleaved K chunks (more warps in flight for long rows) and computes
// R consecutive output columns (R weight rows; with MM_SWIGLU each column also
// has its "up" row): every x chunk is loaded once per lane and used against
// R rows from registers, so x traffic (K floats per column group, from L1/L2)
// drops R-fold; at R = 1 and SPLIT = 4 it was 2x the f16 weight bytes.
// MT: max tokens (compile-time, the bucket); tokens 0 .. min(nt,MT)-1 are
// computed.
// MM_RMS: no prologue. rms_norm(x) @ w^T = inv * ((x * g) @ w^T) with inv a
// per-token scalar, so the sum of squares of x is accumulated in the same pass
// over K as the dot products (the group reads every x element of the row
// exactly once) and inv is applied to the finished sums. (Before: every block
// re-read and reduced all of x before its first weight load.)
// Weights are read with an L1 evict-first hint (ldw*) so x stays in L1.
// ys (optional, shared memory): column n's value of token 0 is also stored in
// ys[group * R + r] (lm_head_sample reduces its block's logits from there).
template <int DT, int GDT, int FL, int MT, int SPLIT = 1, int R = 1, int L = 0>
__device__ __forceinline__ void mm_gemv(const float* __restrict__ x, const void* __restrict__ g,
                                        const u8* __restrict__ w, const float* __restrict__ r,
                                        float* __restrict__ y, int nt, int K, int N, float eps,
                                        float* ys = nullptr) {
  typedef QT<DT> Q;
  const int RR = (FL & MM_SWIGLU) ? 2 * R : R;  // weight rows per group
  __shared__ float part[kGemvWarps][MT][2 * R + 1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int grp = warp / SPLIT, sub = warp % SPLIT;
  const int n0 = (blockIdx.x * (kGemvWarps / SPLIT) + grp) * R;
  const int nr = min(R, N - n0);  // columns of this group (<= 0: none)
  const int nb = K / Q::QK;
  const i64 nblk = (i64)((FL & MM_SWIGLU) ? 2 * N : N) * nb;
  WRow<DT, L> wr[2 * R];
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int n = n0 + min(j, max(nr - 1, 0));  // clamp: rows past N are never used
    wr[j] = WRow<DT, L>(w, n, nb, nblk);
    if (FL & MM_SWIGLU) wr[R + j] = WRow<DT, L>(w, n + N, nb, nblk);
  }
  const int units = (K / Q::QK) * Q::CH;
  if (nt > MT) nt = MT;
  float acc[2 * R][MT], ss[MT];
#pragma unroll
  for (int t = 0; t < MT; ++t) {
    ss[t] = 0.f;
#pragma unroll
    for (int j = 0; j < 2 * R; ++j) acc[j][t] = 0.f;
  }
  if (nr > 0) {
#pragma unroll 2
    for (int u = sub * 32 + lane; u < units; u += 32 * SPLIT) {
      const int blk = u / Q::CH, c = u % Q::CH;
      float v[2 * R][8];
      int a, b;
#pragma unroll
      for (int j = 0; j < RR; ++j) wr[j].deq(blk, c, v[j], a, b);
      const int ka = blk * Q::QK + a, kb = blk * Q::QK + b;
      float ga[4], gb[4];
      if (FL & MM_RMS) {
#pragma unroll
        for (int i = 0; i < 4; ++i) { ga[i] = ldf<GDT>(g, ka + i); gb[i] = ldf<GDT>(g, kb + i); }
      }
#pragma unroll
      for (int t = 0; t < MT; ++t) {
        if (t < nt) {
          const float4 xa = *(const float4*)(x + (i64)t * K + ka);
          const float4 xb = *(const float4*)(x + (i64)t * K + kb);
          float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
          if (FL & MM_RMS) {
#pragma unroll
            for (int i = 0; i < 8; ++i) ss[t] += xs[i] * xs[i];
#pragma unroll
            for (int i = 0; i < 4; ++i) { xs[i] *= ga[i]; xs[4 + i] *= gb[i]; }
          }
#pragma unroll
          for (int j = 0; j < RR; ++j)
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[j][t] += xs[i] * v[j][i];
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < MT; ++t) {
#pragma unroll
    for (int j = 0; j < RR; ++j) acc[j][t] = warp_sum(acc[j][t]);
    if (FL & MM_RMS) ss[t] = warp_sum(ss[t]);
  }
  if (SPLIT > 1) {
    if (lane == 0) {
#pragma unroll
      for (int t = 0; t < MT; ++t) {
#pragma unroll
        for (int j = 0; j < RR; ++j) part[warp][t][j] = acc[j][t];
        if (FL & MM_RMS) part[warp][t][RR] = ss[t];
      }
    }
    __syncthreads();
    if (sub == 0 && lane == 0) {
#pragma unroll
      for (int t = 0; t < MT; ++t)
        for (int s = 1; s < SPLIT; ++s) {
#pragma unroll
          for (int j = 0; j < RR; ++j) acc[j][t] += part[warp + s][t][j];
          if (FL & MM_RMS) ss[t] += part[warp + s][t][RR];
        }
    }
  }
  if (nr <= 0 || sub != 0 || lane != 0) return;
#pragma unroll
  for (int t = 0; t < MT; ++t) {
    if (t < nt) {
      const float inv = (FL & MM_RMS) ? 1.0f / sqrtf(ss[t] / (float)K + eps) : 1.0f;
#pragma unroll
      for (int j = 0; j < R; ++j) {
        if (j < nr) {
          const int n = n0 + j;
          float o;
          if (FL & MM_SWIGLU) o = mm_gate<FL>(acc[j][t] * inv) * (acc[R + j][t] * inv);
          else o = (FL & MM_RMS) ? acc[j][t] * inv : acc[j][t];
          if (FL & MM_ADD) o += r[(i64)t * N + n];
          y[(i64)t * N + n] = o;
          if (ys && t == 0) ys[grp * R + j] = o;
        }
      }
    }
  }
}
