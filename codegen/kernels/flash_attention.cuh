// flash_attention.cuh: causal GQA attention for prefill chunks on tensor cores
// (codegen/families/flash_attention.cpp), after FlashAttention-2 (Dao 2023):
// a block takes kFlashRows query rows of one head (kFlashWarps warps x 16
// rows), streams the KV sequence in tiles of kFlashKeys keys through shared
// memory (K as rows, V transposed), computes S = Q K^T and O += P V with
// mma.sync m16n8k16 (f16 operands, fp32 accumulation) and keeps an online
// softmax per row in registers. Reads an f16 KV cache. Rounding beyond the
// interpreter's: q and the probabilities P are rounded to f16 for the tensor
// cores (the per-op tolerance in tests/gpu/kernels_test.cpp says why).
#pragma once
#include "common.cuh"

// mma.sync m16n8k16 exists from sm_80; the family never selects this kernel
// for an older target (codegen/families/flash_attention.cpp), the guard only
// keeps the header compilable for every SM.
__device__ __forceinline__ void mma_16816(float c[4], const u32 a[4], u32 b0, u32 b1) {
#if __CUDA_ARCH__ < 800
  __trap();
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
__device__ __forceinline__ u32 pack_f16x2(float lo, float hi) { return (u32)f2h(lo) | ((u32)f2h(hi) << 16); }

// Launch: grid (ceil(T / kFlashRows), nh), block kFlashThreads. Rows t >=
// n_tokens are not written; row t sees keys 0 .. pos0 + t (< C).
template <int HD>
__device__ __forceinline__ void k_flash_attention(const float* __restrict__ q, const u16* __restrict__ kc,
                                                  const u16* __restrict__ vc, float* __restrict__ out,
                                                  const KilnStep* step, int C, int nh, int nkv, float scale) {
  constexpr int BK = kFlashKeys, PAD = 8, NKT = BK / 8, KS = HD / 16, ND = HD / 8;
  __shared__ __align__(16) u16 Ks[BK][HD + PAD];
  __shared__ __align__(16) u16 Vt[HD][BK + PAD];
  const int nt = step->n_tokens, pos0 = step->pos0;
  const int q0 = blockIdx.x * kFlashRows;
  if (q0 >= nt) return;  // uniform per block
  const int h = blockIdx.y, kvh = h / (nh / nkv);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const i64 W = (i64)nkv * HD, QW = (i64)nh * HD;
  const int qw = q0 + warp * 16;  // this warp's first row
  // Q as A fragments (rows qw+g, qw+g+8), rounded to f16.
  u32 qa[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    const int c = 16 * kk + 2 * tq;
    auto ld = [&](int r, int col) -> u32 {
      if (r >= nt) return 0u;
      const float* p = q + (i64)r * QW + (i64)h * HD + col;
      return pack_f16x2(p[0], p[1]);
    };
    qa[kk][0] = ld(qw + g, c);
    qa[kk][1] = ld(qw + g + 8, c);
    qa[kk][2] = ld(qw + g, c + 8);
    qa[kk][3] = ld(qw + g + 8, c + 8);
  }
  float o[ND][4];
#pragma unroll
  for (int i = 0; i < ND; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  const float sl2 = scale * 1.4426950408889634f;  // softmax in base 2
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const int prow[2] = {pos0 + qw + g, pos0 + qw + g + 8};                 // positions of this thread's rows
  const int warp_last = pos0 + min(qw + 15, nt - 1);                       // last key this warp needs
  const int block_last = min(pos0 + min(q0 + kFlashRows, nt) - 1, C - 1);  // last key the block needs
  for (int j0 = 0; j0 <= block_last; j0 += BK) {
    __syncthreads();  // the previous tile is consumed
    // K rows j0.. as rows, V transposed; keys past block_last as zeros (never NaN)
    for (int u = threadIdx.x; u < BK * HD / 8; u += kFlashThreads) {
      const int j = u / (HD / 8), d = (u % (HD / 8)) * 8;
      uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
      if (j0 + j <= block_last) {
        const i64 off = (i64)(j0 + j) * W + (i64)kvh * HD + d;
        kv4 = *(const uint4*)(kc + off);
        vv4 = *(const uint4*)(vc + off);
      }
      *(uint4*)&Ks[j][d] = kv4;
      const u16* vh = (const u16*)&vv4;
#pragma unroll
      for (int i = 0; i < 8; ++i) Vt[d + i][j] = vh[i];
    }
    __syncthreads();
    if (j0 > warp_last) continue;  // every key of this tile is in the future of every row of this warp
    float s[NKT][4];
#pragma unroll
    for (int n8 = 0; n8 < NKT; ++n8) {
      s[n8][0] = s[n8][1] = s[n8][2] = s[n8][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        const u32 b0 = *(const u32*)&Ks[n8 * 8 + g][16 * kk + 2 * tq];
        const u32 b1 = *(const u32*)&Ks[n8 * 8 + g][16 * kk + 2 * tq + 8];
        mma_16816(s[n8], qa[kk], b0, b1);
      }
    }
    // mask, scale, new row maxima (rows: r = 0 -> g, r = 1 -> g + 8)
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int n8 = 0; n8 < NKT; ++n8)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1, key = j0 + n8 * 8 + 2 * tq + (e & 1);
        const float v = (key <= prow[r] && key < C) ? s[n8][e] * sl2 : -INFINITY;
        s[n8][e] = v;
        mx[r] = fmaxf(mx[r], v);
      }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xFFFFFFFFu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xFFFFFFFFu, mx[r], 2));
      const float base = mx[r] == -INFINITY ? 0.f : mx[r];
      alpha[r] = m[r] == -INFINITY ? 0.f : exp2f(m[r] - base);
      m[r] = mx[r];
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int i = 0; i < ND; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[0];
      o[i][2] *= alpha[1];
      o[i][3] *= alpha[1];
    }
    // P = 2^(s - m), rounded to f16 as A fragments of O += P V
#pragma unroll
    for (int kk = 0; kk < NKT / 2; ++kk) {
      u32 pa[4];
      float p[2][4];
#pragma unroll
      for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = e >> 1;
          const float base = m[r] == -INFINITY ? 0.f : m[r];
          p[half][e] = exp2f(s[2 * kk + half][e] - base);
          l[r] += p[half][e];
        }
      pa[0] = pack_f16x2(p[0][0], p[0][1]);
      pa[1] = pack_f16x2(p[0][2], p[0][3]);
      pa[2] = pack_f16x2(p[1][0], p[1][1]);
      pa[3] = pack_f16x2(p[1][2], p[1][3]);
#pragma unroll
      for (int nd = 0; nd < ND; ++nd) {
        const u32 b0 = *(const u32*)&Vt[nd * 8 + g][16 * kk + 2 * tq];
        const u32 b1 = *(const u32*)&Vt[nd * 8 + g][16 * kk + 2 * tq + 8];
        mma_16816(o[nd], pa, b0, b1);
      }
    }
  }
  // full row sums across the 4 threads of a row, then normalise and store
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xFFFFFFFFu, l[r], 1);
    l[r] += __shfl_xor_sync(0xFFFFFFFFu, l[r], 2);
  }
  const int rows[2] = {qw + g, qw + g + 8};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rows[r] >= nt) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    float* orow = out + (i64)rows[r] * QW + (i64)h * HD;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      orow[nd * 8 + 2 * tq] = o[nd][2 * r] * inv;
      orow[nd * 8 + 2 * tq + 1] = o[nd][2 * r + 1] * inv;
    }
  }
}
