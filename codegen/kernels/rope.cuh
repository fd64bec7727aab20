// rope.cuh: rotary position embedding ("normal": pairs (2i, 2i+1); "neox":
// pairs (i, i + n_rot/2)) on the first n_rot dims of every head, the rest
// passed through; optional per-pair frequency factors (divide the frequency).
// Position of token t is step->pos0 + t (plan-abi.md; the IR pos input is that
// same vector). One block per (token, head), one thread per pair: every angle
// is computed once, in parallel. The angle pos * theta^(-2i/n_rot) is formed
// and reduced modulo 2*pi in double (exact enough for any position), then
// sincosf of the reduced float argument (|error| ~1e-7, as the interpreter's
// double cos/sin rounded to float).
// rope_store additionally writes k (roped) and v rows into the KV caches;
// kv_store writes rows of the KV cache (the unfused graph).

#pragma once
#include "common.cuh"

// fscale: linear rope scaling (the angle of position pos * fscale; 1 = none).
template <int FDT>
__device__ __forceinline__ void rope_cs(int pos, int i, int n_rot, float theta, const void* ff, float& cs,
                                        float& sn, float fscale = 1.f) {
  double freq = pow((double)theta, -2.0 * (double)i / (double)n_rot);
  if (ff) freq /= (double)ldf<FDT>(ff, i);
  const double a = (double)pos * (double)fscale * freq;
  const double k = rint(a * 0.15915494309189533577);  // 1 / (2 pi)
  const float r = (float)fma(-k, 6.28318530717958647693, a);
  sincosf(r, &sn, &cs);
}

// Ropes one head (hd floats at src) into dst, threads over pairs; dst of type
// ODT (F32 for activations, the cache dtype for k). cs0 (non-null): the
// angle's cos and sin of pair threadIdx.x, computed already (k_rope_store);
// every other pair computes its own.
template <int FDT, int ODT>
__device__ __forceinline__ void rope_head(const float* __restrict__ src, void* __restrict__ dst, i64 o,
                                          int hd, int n_rot, int neox, int pos, float theta, const void* ff,
                                          float fscale = 1.f, const float2* cs0 = nullptr) {
  const int half = n_rot / 2;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float x0 = src[i0], x1 = src[i1];
    float cs, sn;
    if (cs0 && i == (int)threadIdx.x) {
      cs = cs0->x;
      sn = cs0->y;
    } else {
      rope_cs<FDT>(pos, i, n_rot, theta, ff, cs, sn, fscale);
    }
    stf<ODT>(dst, o + i0, x0 * cs - x1 * sn);
    stf<ODT>(dst, o + i1, x0 * sn + x1 * cs);
  }
  for (int d = n_rot + threadIdx.x; d < hd; d += blockDim.x) stf<ODT>(dst, o + d, src[d]);
}

// rope: y[t] = rope(x[t]). Launch: grid (T, nh), block 64.
template <int FDT>
__device__ __forceinline__ void k_rope(const float* __restrict__ x, const void* __restrict__ ff,
                                       float* __restrict__ y, const KilnStep* step, int nh, int hd, int n_rot,
                                       int neox, float theta, float fscale) {
  const int t = blockIdx.x, h = blockIdx.y;
  if (t >= step->n_tokens || h >= nh) return;
  const i64 W = (i64)nh * hd;
  rope_head<FDT, DT_F32>(x + t * W + (i64)h * hd, y, t * W + (i64)h * hd, hd, n_rot, neox, step->pos0 + t,
                         theta, ff, fscale);
}

// rope_store: qkv[t] = [q (nh*hd) | k (nkv*hd) | v (nkv*hd)]; q' -> y[t],
// k' -> kc[pos], v -> vc[pos]. Launch: grid (T, nh + nkv), block 64: blocks
// y < nh rope q head y; the others rope k head y - nh and copy its v.
// Waits for the previous kernel itself (own_pdl_wait): a thread's first
// angle depends only on the position (the step block, written by the host
// before the step) and the constant frequency factors, so it is computed
// while the projection that feeds qkv finishes.
// QN (attr qk_norm_eps, Gemma 3): each q and k head is first RMS-normalised
// over its hd values and scaled by gq / gk (rms_norm {head_dim}'s
// arithmetic), through shared memory (hd <= kRopeNormMaxHd). ring: position
// p goes to cache row p mod C (a sliding-window layer's ring).
constexpr int kRopeNormMaxHd = 512;
template <int FDT, int CDT, bool QN = false>
__device__ __forceinline__ void k_rope_store(const float* __restrict__ qkv, const void* __restrict__ ff,
                                             void* __restrict__ kc, void* __restrict__ vc,
                                             float* __restrict__ y, const KilnStep* step, int C, int nh,
                                             int nkv, int hd, int n_rot, int neox, float theta,
                                             const float* __restrict__ gq = nullptr,
                                             const float* __restrict__ gk = nullptr, float qeps = 0.f,
                                             int ring = 0) {
  const int t = blockIdx.x, h = blockIdx.y;
  const bool live = t < step->n_tokens && h < nh + nkv;
  const int pos = step->pos0 + t;
  float2 cs0 = make_float2(1.f, 0.f);
  if (live && (int)threadIdx.x < n_rot / 2) rope_cs<FDT>(pos, threadIdx.x, n_rot, theta, ff, cs0.x, cs0.y);
  kiln_pdl_wait_own();
  if (!live) return;
  const i64 Wq = (i64)nh * hd, Wk = (i64)nkv * hd;
  const float* row = qkv + t * (Wq + 2 * Wk);
  const float* src = h < nh ? row + (i64)h * hd : row + Wq + (i64)(h - nh) * hd;
  if constexpr (QN) {
    __shared__ float red[33];
    __shared__ float hbuf[kRopeNormMaxHd];
    const float* gw = h < nh ? gq : gk;
    const float inv = row_inv_rms(src, hd, qeps, red);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) hbuf[d] = (src[d] * inv) * gw[d];
    __syncthreads();
    src = hbuf;
  }
  if (h < nh) {
    rope_head<FDT, DT_F32>(src, y, t * Wq + (i64)h * hd, hd, n_rot, neox, pos, theta, ff, 1.f, &cs0);
    return;
  }
  if (pos < 0 || (pos >= C && !ring)) return;
  const int j = h - nh;
  const i64 o = (i64)(pos % C) * Wk + (i64)j * hd;
  rope_head<FDT, CDT>(src, kc, o, hd, n_rot, neox, pos, theta, ff, 1.f, &cs0);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) stf<CDT>(vc, o + d, row[Wq + Wk + (i64)j * hd + d]);
}

// kv_store: cache[pos0 + t, :] = x[t, :] (rows past the cache are dropped),
// or with ring != 0 cache[(pos0 + t) mod C, :] (a sliding-window layer's ring).
// Launch: grid T, block 256.
template <int CDT>
__device__ __forceinline__ void k_kv_store(void* __restrict__ cache, const float* __restrict__ x,
                                           const KilnStep* step, int C, int W, int ring) {
  const int t = blockIdx.x;
  if (t >= step->n_tokens) return;
  int pos = step->pos0 + t;
  if (pos < 0 || (pos >= C && !ring)) return;
  if (ring) pos %= C;
  for (int k = threadIdx.x; k < W; k += blockDim.x) stf<CDT>(cache, (i64)pos * W + k, x[(i64)t * W + k]);
}
