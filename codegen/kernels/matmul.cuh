// matmul.cuh: y[T,N] = x[T,K] @ w[N,K]^T with w in its GGUF block layout, plus
// the fused prologue / epilogues of plan-abi.md:
//   MM_RMS    x rows are rms-normalised with gain g first (rms_matmul)
//   MM_ADD    y += r[T,N] (matmul_add, residual epilogue)
//   MM_SWIGLU w has 2N rows; y[t,n] = silu(h[t,n]) * h[t,N+n] (rms_matmul_swiglu)
// Two paths: mm_gemv (few tokens: R output columns per group of SPLIT warps, every weight
// byte read once, warp-shuffle reduction) and mm_tiled (a 128-wide K tile of 64
// weight rows is dequantised into shared memory once and reused by 16 tokens).
#define MM_RMS 1
#define MM_ADD 2
#define MM_SWIGLU 4

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }

#define GEMV_WARPS 4

// Launch: block (32*GEMV_WARPS), grid ceil(N / ((GEMV_WARPS / SPLIT) * R)).
// A block holds GEMV_WARPS / SPLIT column groups; a group is SPLIT warps that
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
  __shared__ float part[GEMV_WARPS][MT][2 * R + 1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int grp = warp / SPLIT, sub = warp % SPLIT;
  const int n0 = (blockIdx.x * (GEMV_WARPS / SPLIT) + grp) * R;
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
          if (FL & MM_SWIGLU) o = silu_f(acc[j][t] * inv) * (acc[R + j][t] * inv);
          else o = (FL & MM_RMS) ? acc[j][t] * inv : acc[j][t];
          if (FL & MM_ADD) o += r[(i64)t * N + n];
          y[(i64)t * N + n] = o;
          if (ys && t == 0) ys[grp * R + j] = o;
        }
      }
    }
  }
}

#define TILE_M 16
#define TILE_N 64
#define TILE_K 128
// Launch: block 256, grid (ceil(N / (SWIGLU ? 32 : 64)), ceil(T / 16)).
template <int DT, int GDT, int FL, int L = 0>
__device__ __forceinline__ void mm_tiled(const float* __restrict__ x, const void* __restrict__ g,
                                         const u8* __restrict__ w, const float* __restrict__ r,
                                         float* __restrict__ y, int nt, int K, int N, float eps) {
  typedef QT<DT> Q;
  __shared__ float Ws[TILE_N][TILE_K + 1];
  __shared__ float Xs[TILE_M][TILE_K];
  __shared__ float inv[TILE_M];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.y * TILE_M;
  if (m0 >= nt) return;  // uniform per block
  const int ncols = (FL & MM_SWIGLU) ? TILE_N / 2 : TILE_N;
  const int n0 = blockIdx.x * ncols;
  const int nw_rows = (FL & MM_SWIGLU) ? 2 * N : N;  // rows of w
  const int nb = K / Q::QK;
  if (FL & MM_RMS) {
    for (int rr = warp; rr < TILE_M; rr += 8) {
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
  const int ktiles = (K + TILE_K - 1) / TILE_K;
  for (int kt = 0; kt < ktiles; ++kt) {
    for (int e = tid; e < TILE_M * TILE_K; e += 256) {
      const int rr = e / TILE_K, k = e % TILE_K, t = m0 + rr, gk = kt * TILE_K + k;
      float v = 0.f;
      if (t < nt && gk < K) {
        v = x[(i64)t * K + gk];
        if (FL & MM_RMS) v = (v * inv[rr]) * ldf<GDT>(g, gk);
      }
      Xs[rr][k] = v;
    }
    for (int e = tid; e < TILE_N * 16; e += 256) {
      const int i = e >> 4, ci = e & 15;
      int wr;
      if (FL & MM_SWIGLU) wr = i < 32 ? n0 + i : (n0 + i - 32 < N ? N + n0 + i - 32 : nw_rows);
      else wr = n0 + i;
      const int gi = kt * 16 + ci, blk = gi / Q::CH, c = gi % Q::CH;
      if (wr < nw_rows && blk < nb && (wr < N || (FL & MM_SWIGLU))) {
        float v[8];
        int a, b;
        WRow<DT, L>(w, wr, nb, (i64)nw_rows * nb).deq(blk, c, v, a, b);
        const int base = blk * Q::QK - kt * TILE_K;
#pragma unroll
        for (int j = 0; j < 4; ++j) { Ws[i][base + a + j] = v[j]; Ws[i][base + b + j] = v[4 + j]; }
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) Ws[i][ci * 8 + j] = 0.f;
      }
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < TILE_K; ++k) {
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
      if (n < N) y[(i64)t * N + n] = silu_f(acc[j][0]) * acc[j][1];
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
