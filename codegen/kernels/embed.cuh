// embed.cuh: token embedding lookup (codegen/families/embed.cpp).
#pragma once
#include "dequant.cuh"

// embed: out[t,:] = dequant(table[ids[t], :]) * scale. Launch: grid T, block 256.
template <int DT, int L = 0>
__device__ __forceinline__ void k_embed(const u8* __restrict__ table, const i32* __restrict__ ids,
                                        float* __restrict__ out, int nt, int V, int H, float scale,
                                        int has_scale) {
  typedef QT<DT> Q;
  const int t = blockIdx.x;
  if (t >= nt) return;
  const int id = ids[t];
  float* o = out + (i64)t * H;
  if (id < 0 || id >= V) {  // out-of-range token id: a zero row, never a wild read
    for (int k = threadIdx.x; k < H; k += blockDim.x) o[k] = 0.f;
    return;
  }
  const WRow<DT, L> row(table, id, H / Q::QK, (i64)V * (H / Q::QK));
  const int units = (H / Q::QK) * Q::CH;
  for (int u = threadIdx.x; u < units; u += blockDim.x) {
    const int blk = u / Q::CH;
    float v[8];
    int a, b;
    row.deq(blk, u % Q::CH, v, a, b);
    const int base = blk * Q::QK;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      o[base + a + i] = has_scale ? v[i] * scale : v[i];
      o[base + b + i] = has_scale ? v[4 + i] * scale : v[4 + i];
    }
  }
}
