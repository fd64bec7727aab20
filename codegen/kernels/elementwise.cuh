// elementwise.cuh: embed, rms_norm, add/mul (with [N] broadcast), silu, swiglu,
// last_row, argmax, kv_store. Rows t >= n_tokens are skipped when the row
// dimension is the symbolic "tokens" dim (dyn != 0).

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

// rms_norm: y = x / sqrt(mean(x^2) + eps) * w. Launch: grid T, block 256.
template <int WDT>
__device__ __forceinline__ void k_rms_norm(const float* __restrict__ x, const void* __restrict__ w,
                                           float* __restrict__ y, int nt, int H, float eps) {
  __shared__ float red[33];
  const int t = blockIdx.x;
  if (t >= nt) return;
  const float inv = row_inv_rms(x + (i64)t * H, H, eps, red);
  for (int k = threadIdx.x; k < H; k += blockDim.x)
    y[(i64)t * H + k] = (x[(i64)t * H + k] * inv) * ldf<WDT>(w, k);
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

__device__ __forceinline__ float silu_e(float v) { return v / (1.0f + expf(-v)); }

// silu (up == nullptr) or swiglu: y = silu(x) [* up]. Launch: grid-stride, block 256.
__device__ __forceinline__ void k_silu(const float* __restrict__ x, const float* __restrict__ up,
                                       float* __restrict__ y, int nt, int dyn, int R, int N) {
  const int rows = dyn ? min(R, nt) : R;
  const i64 total = (i64)rows * N;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x)
    y[i] = up ? silu_e(x[i]) * up[i] : silu_e(x[i]);
}

// last_row: y[0,:] = x[n_tokens-1, :] (rows clamped to R). Launch: grid 1.., block 256.
__device__ __forceinline__ void k_last_row(const float* __restrict__ x, float* __restrict__ y, int nt,
                                           int dyn, int R, int H) {
  int t = dyn ? min(R, nt) - 1 : R - 1;
  if (t < 0) return;
  for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < H; k += gridDim.x * blockDim.x)
    y[k] = x[(i64)t * H + k];
}

// argmax over each row of x[R,N] (lowest index among equal maxima; NaN never
// wins). Launch: grid R, block 256.
__device__ __forceinline__ void k_argmax(const float* __restrict__ x, i32* __restrict__ out, int nt,
                                         int dyn, int R, int N) {
  __shared__ float sv[256];
  __shared__ int si[256];
  const int t = blockIdx.x;
  if (dyn && t >= nt) return;
  float best = -INFINITY;
  int bi = N;  // N = "none yet"
  for (int k = threadIdx.x; k < N; k += blockDim.x) {
    const float v = x[(i64)t * N + k];
    if (v > best || (bi == N && v == best)) { best = v; bi = k; }
  }
  sv[threadIdx.x] = best;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float ov = sv[threadIdx.x + s];
      const int oi = si[threadIdx.x + s];
      if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) {
        sv[threadIdx.x] = ov;
        si[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[t] = si[0] == N ? 0 : si[0];
}

// kv_store: cache[pos0 + t, :] = x[t, :] (rows past the cache are dropped).
// Launch: grid T, block 256.
template <int CDT>
__device__ __forceinline__ void k_kv_store(void* __restrict__ cache, const float* __restrict__ x,
                                           const KilnStep* step, int C, int W) {
  const int t = blockIdx.x;
  if (t >= step->n_tokens) return;
  const int pos = step->pos0 + t;
  if (pos < 0 || pos >= C) return;
  for (int k = threadIdx.x; k < W; k += blockDim.x) stf<CDT>(cache, (i64)pos * W + k, x[(i64)t * W + k]);
}
