// flash_attention.cuh: causal GQA attention for prefill chunks on tensor cores
// (codegen/families/flash_attention.cpp), after FlashAttention-2 (Dao 2023):
// a block takes kFlashRows query rows of one head (kFlashWarps warps x 16
// rows), streams the KV sequence in tiles of flash_keys(HD) keys through a
// two-stage shared-memory ring filled by cp.async (the next tile loads while
// this one is used), reads the operands with ldmatrix (V transposed on the
// way, so K and V tiles are plain row copies of the cache), computes S = Q K^T
// and O += P V with mma.sync m16n8k16 (f16 operands, fp32 accumulation) and
// keeps an online softmax per row in registers. Reads an f16 KV cache.
// Rounding beyond the interpreter's: q (pre-multiplied by scale * log2 e) and
// the probabilities P are rounded to f16 for the tensor cores, and 2^x is the
// SFU's approximation (the per-op tolerance in tests/gpu/kernels_test.cpp says
// why).
#pragma once
#include "common.cuh"

// 16-byte global -> shared copy that bypasses registers and L1; src_bytes 0
// fills the 16 bytes with zeros (keys past the ones the block needs).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
#if __CUDA_ARCH__ >= 800
  const u32 s = (u32)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;");
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
#endif
}
// Four 8x8 f16 matrices from shared memory; lane l gives the address of row
// l % 8 of matrix l / 8. TRANS: each thread gets column pairs instead of row pairs.
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(u32 r[4], const u16* p) {
#if __CUDA_ARCH__ >= 800
  const u32 s = (u32)__cvta_generic_to_shared(p);
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
#endif
}

// Keys per KV tile: two stages of K and V tiles, rows padded by 16 bytes
// (ldmatrix rows then fall in distinct banks), fit the 48 KiB of static
// shared memory for head_dim 128 at 32 keys and for 64 at 64 keys.
__host__ __device__ constexpr int flash_keys(int hd) { return hd >= 128 ? 32 : 64; }

// Launch: grid (ceil(T / kFlashRows), nh), block kFlashThreads. Rows t >=
// n_tokens are not written; row t sees keys 0 .. pos0 + t (< C). Blocks take
// row groups last-first, so the longest causal prefixes start first. out is
// ODT: f32, or f16/bf16 (fold-cast: the operand of the output projection).
template <int HD, int ODT>
__device__ __forceinline__ void k_flash_attention(const float* __restrict__ q, const u16* __restrict__ kc,
                                                  const u16* __restrict__ vc, void* __restrict__ out,
                                                  const KilnStep* step, int C, int nh, int nkv, float scale) {
  constexpr int BK = flash_keys(HD), LD = HD + 8, NKT = BK / 8, KS = HD / 16, ND = HD / 8;
  constexpr int CHUNKS = BK * HD / 8;  // 16-byte pieces per tile
  __shared__ __align__(128) u16 Ks[2][BK][LD];
  __shared__ __align__(128) u16 Vs[2][BK][LD];
  const int nt = step->n_tokens, pos0 = step->pos0;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kFlashRows;
  if (q0 >= nt) return;  // uniform per block
  const int h = blockIdx.y, kvh = h / (nh / nkv);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const i64 W = (i64)nkv * HD, QW = (i64)nh * HD;
  const int qw = q0 + warp * 16;  // this warp's first row
  const int block_last = min(pos0 + min(q0 + kFlashRows, nt) - 1, C - 1);  // last key the block needs
  const int n_tiles = block_last / BK + 1;
  const u16* kbase = kc + (i64)kvh * HD;
  const u16* vbase = vc + (i64)kvh * HD;
  auto load_tile = [&](int stage, int j0) {
#pragma unroll
    for (int u = threadIdx.x; u < CHUNKS; u += kFlashThreads) {
      const int j = u / (HD / 8), d = (u % (HD / 8)) * 8;
      const bool in = j0 + j <= block_last;
      const i64 off = in ? (i64)(j0 + j) * W + d : 0;
      cp_async16(&Ks[stage][j][d], kbase + off, in ? 16 : 0);
      cp_async16(&Vs[stage][j][d], vbase + off, in ? 16 : 0);
    }
    cp_async_commit();
  };
  load_tile(0, 0);
  // Q * scale * log2(e) as A fragments (rows qw+g, qw+g+8), rounded to f16
  // (overlaps the first tile's copy): S comes out of the tensor cores in the
  // base-2 domain of the softmax, with no multiply per score.
  const float sl2 = scale * 1.4426950408889634f;
  u32 qa[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    const int c = 16 * kk + 2 * tq;
    auto ld = [&](int r, int col) -> u32 {
      if (r >= nt) return 0u;
      const float2 v = *(const float2*)(q + (i64)r * QW + (i64)h * HD + col);
      return pack_f16x2(v.x * sl2, v.y * sl2);
    };
    qa[kk][0] = ld(qw + g, c);
    qa[kk][1] = ld(qw + g + 8, c);
    qa[kk][2] = ld(qw + g, c + 8);
    qa[kk][3] = ld(qw + g + 8, c + 8);
  }
  float o[ND][4];
#pragma unroll
  for (int i = 0; i < ND; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const int prow[2] = {pos0 + qw + g, pos0 + qw + g + 8};  // positions of this thread's rows
  const int warp_first = pos0 + qw;                         // the earliest row of this warp sees keys <= it
  const int warp_last = pos0 + min(qw + 15, nt - 1);        // last key this warp needs
  // ldmatrix lane addressing: matrix mi = lane / 8, row lr = lane % 8
  const int mi = lane >> 3, lr = lane & 7;
  for (int t = 0; t < n_tiles; ++t) {
    const int j0 = t * BK, st = t & 1;
    if (t + 1 < n_tiles) {
      load_tile(st ^ 1, j0 + BK);  // the stage read in iteration t - 1 (everyone passed its last barrier)
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (j0 <= warp_last) {
      float s[NKT][4];
#pragma unroll
      for (int n8 = 0; n8 < NKT; ++n8) {
        s[n8][0] = s[n8][1] = s[n8][2] = s[n8][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KS; kk += 2) {  // matrices: (keys n8, d 16kk + 8 mi), mi = 0..3
          u32 b[4];
          ldmatrix_x4<false>(b, &Ks[st][n8 * 8 + lr][16 * kk + 8 * mi]);
          mma_16816(s[n8], qa[kk], b[0], b[1]);
          mma_16816(s[n8], qa[kk + 1], b[2], b[3]);
        }
      }
      // scale, mask (only tiles that reach the diagonal or the cache end), new row maxima
      const bool masked = j0 + BK - 1 > warp_first || j0 + BK > C;
      float mx[2] = {m[0], m[1]};
#pragma unroll
      for (int n8 = 0; n8 < NKT; ++n8)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = e >> 1, key = j0 + n8 * 8 + 2 * tq + (e & 1);
          const float v = (!masked || (key <= prow[r] && key < C)) ? s[n8][e] : -INFINITY;
          s[n8][e] = v;
          mx[r] = fmaxf(mx[r], v);
        }
      float alpha[2], base[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xFFFFFFFFu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xFFFFFFFFu, mx[r], 2));
        base[r] = mx[r] == -INFINITY ? 0.f : mx[r];
        alpha[r] = m[r] == -INFINITY ? 0.f : ex2(m[r] - base[r]);
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
            p[half][e] = ex2(s[2 * kk + half][e] - base[r]);
            l[r] += p[half][e];
          }
        pa[0] = pack_f16x2(p[0][0], p[0][1]);
        pa[1] = pack_f16x2(p[0][2], p[0][3]);
        pa[2] = pack_f16x2(p[1][0], p[1][1]);
        pa[3] = pack_f16x2(p[1][2], p[1][3]);
#pragma unroll
        for (int nd = 0; nd < ND; nd += 2) {  // matrices: (keys 16kk + 8 (mi & 1), d 8 (nd + mi / 2)), transposed
          u32 b[4];
          ldmatrix_x4<true>(b, &Vs[st][16 * kk + 8 * (mi & 1) + lr][8 * (nd + (mi >> 1))]);
          mma_16816(o[nd], pa, b[0], b[1]);
          mma_16816(o[nd + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // stage st is consumed before iteration t + 1 refills it
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
    const i64 orow = (i64)rows[r] * QW + (i64)h * HD;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      const float a = o[nd][2 * r] * inv, b = o[nd][2 * r + 1] * inv;
      const i64 i = orow + nd * 8 + 2 * tq;
      if (ODT == DT_F32) *(float2*)((float*)out + i) = make_float2(a, b);
      else if (ODT == DT_F16) *(u32*)((u16*)out + i) = pack_f16x2(a, b);
      else *(u32*)((u16*)out + i) = (u32)f2bf(a) | ((u32)f2bf(b) << 16);
    }
  }
}
