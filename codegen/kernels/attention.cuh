// attention.cuh: causal GQA attention over the KV cache. One block per (head,
// token); each warp runs an online softmax (Milakov & Gimelshein 2018) over
// groups of kAttKeysPerGroup key rows (group g of warp w: rows (g*kAttWarps + w)*kAttKeysPerGroup ..
// +kAttKeysPerGroup-1, <= pos0 + t), lanes owning head dims lane + 32*i; the K and V rows
// of a group are loaded together (one memory round trip per group, not two per
// key), and the warps' partial states are merged at the end.
#pragma once
#include "common.cuh"


// Launch: grid (nh, T), block 32*kAttWarps.
template <int KDT>
__device__ __forceinline__ void k_attention(const float* __restrict__ q, const void* __restrict__ kc,
                                            const void* __restrict__ vc, float* __restrict__ out,
                                            const KilnStep* step, int C, int nh, int nkv, int hd,
                                            float scale) {
  __shared__ float sm[kAttWarps], sl[kAttWarps];
  __shared__ float sacc[kAttWarps][32 * kAttMaxDimsPerLane];
  const int h = blockIdx.x, t = blockIdx.y;
  if (t >= step->n_tokens) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kvh = h / (nh / nkv);
  int last = step->pos0 + t;
  if (last > C - 1) last = C - 1;  // never read past the cache
  const i64 W = (i64)nkv * hd;
  const float* qr = q + (i64)t * nh * hd + (i64)h * hd;
  float qv[kAttMaxDimsPerLane], acc[kAttMaxDimsPerLane];
#pragma unroll
  for (int i = 0; i < kAttMaxDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < hd ? qr[d] : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j0 = warp * kAttKeysPerGroup; j0 <= last; j0 += kAttWarps * kAttKeysPerGroup) {
    float kv[kAttKeysPerGroup][kAttMaxDimsPerLane], vv[kAttKeysPerGroup][kAttMaxDimsPerLane], s[kAttKeysPerGroup];
#pragma unroll
    for (int g = 0; g < kAttKeysPerGroup; ++g) {
      const i64 base = (i64)min(j0 + g, last) * W + (i64)kvh * hd;  // rows past last: masked below
#pragma unroll
      for (int i = 0; i < kAttMaxDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        kv[g][i] = d < hd ? ldf<KDT>(kc, base + d) : 0.f;
        vv[g][i] = d < hd ? ldf<KDT>(vc, base + d) : 0.f;
      }
    }
#pragma unroll
    for (int g = 0; g < kAttKeysPerGroup; ++g) {
      float x = 0.f;
#pragma unroll
      for (int i = 0; i < kAttMaxDimsPerLane; ++i) x += qv[i] * kv[g][i];
      s[g] = x;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
      for (int g = 0; g < kAttKeysPerGroup; ++g) s[g] += __shfl_xor_sync(0xFFFFFFFFu, s[g], o);
    float mn = m;
#pragma unroll
    for (int g = 0; g < kAttKeysPerGroup; ++g) {
      s[g] = j0 + g <= last ? s[g] * scale : -INFINITY;
      mn = fmaxf(mn, s[g]);
    }
    const float corr = expf(m - mn);
    float p[kAttKeysPerGroup];
#pragma unroll
    for (int g = 0; g < kAttKeysPerGroup; ++g) p[g] = expf(s[g] - mn);
    l *= corr;
#pragma unroll
    for (int g = 0; g < kAttKeysPerGroup; ++g) l += p[g];
#pragma unroll
    for (int i = 0; i < kAttMaxDimsPerLane; ++i) {
      float a = acc[i] * corr;
#pragma unroll
      for (int g = 0; g < kAttKeysPerGroup; ++g) a += p[g] * vv[g][i];
      acc[i] = a;
    }
    m = mn;
  }
  if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
  for (int i = 0; i < kAttMaxDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) sacc[warp][d] = acc[i];
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < kAttWarps; ++w) M = fmaxf(M, sm[w]);
  float L = 0.f;
  for (int w = 0; w < kAttWarps; ++w) L += sm[w] == -INFINITY ? 0.f : sl[w] * expf(sm[w] - M);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.f;
    for (int w = 0; w < kAttWarps; ++w)
      if (sm[w] != -INFINITY) o += sacc[w][d] * expf(sm[w] - M);
    out[(i64)t * nh * hd + (i64)h * hd + d] = L > 0.f ? o / L : 0.f;
  }
}
