// rope.cuh: rotary position embedding ("normal": pairs (2i, 2i+1); "neox":
// pairs (i, i + n_rot/2)) on the first n_rot dims of every head, the rest
// passed through; optional per-pair frequency factors (divide the frequency).
// Position of token t is step->pos0 + t (plan-abi.md; the IR pos input is that
// same vector). Angles are computed in double so long positions stay exact.
// rope_store additionally writes k (roped) and v rows into the KV caches.

template <int FDT>
__device__ __forceinline__ void rope_pair(float x0, float x1, int pos, int i, int n_rot, float theta,
                                          const void* ff, float& o0, float& o1) {
  double freq = pow((double)theta, -2.0 * (double)i / (double)n_rot);
  if (ff) freq /= (double)ldf<FDT>(ff, i);
  double s, c;
  sincos((double)pos * freq, &s, &c);
  const float cs = (float)c, sn = (float)s;
  o0 = x0 * cs - x1 * sn;
  o1 = x0 * sn + x1 * cs;
}

// Ropes heads [0, nheads) of the row src (stride hd) into dst.
template <int FDT>
__device__ __forceinline__ void rope_row(const float* __restrict__ src, float* __restrict__ dst, int nheads,
                                         int hd, int n_rot, int neox, int pos, float theta, const void* ff) {
  const int half = n_rot / 2;
  for (int p = threadIdx.x; p < nheads * half; p += blockDim.x) {
    const int h = p / half, i = p % half;
    const int i0 = h * hd + (neox ? i : 2 * i), i1 = h * hd + (neox ? i + half : 2 * i + 1);
    float o0, o1;
    rope_pair<FDT>(src[i0], src[i1], pos, i, n_rot, theta, ff, o0, o1);
    dst[i0] = o0;
    dst[i1] = o1;
  }
  if (n_rot < hd)
    for (int p = threadIdx.x; p < nheads * (hd - n_rot); p += blockDim.x) {
      const int h = p / (hd - n_rot), d = n_rot + p % (hd - n_rot);
      dst[h * hd + d] = src[h * hd + d];
    }
}

// rope: y[t] = rope(x[t]). Launch: grid T, block 128.
template <int FDT>
__device__ __forceinline__ void k_rope(const float* __restrict__ x, const void* __restrict__ ff,
                                       float* __restrict__ y, const KilnStep* step, int nh, int hd, int n_rot,
                                       int neox, float theta) {
  const int t = blockIdx.x;
  if (t >= step->n_tokens) return;
  const i64 W = (i64)nh * hd;
  rope_row<FDT>(x + t * W, y + t * W, nh, hd, n_rot, neox, step->pos0 + t, theta, ff);
}

// rope_store: qkv[t] = [q (nh*hd) | k (nkv*hd) | v (nkv*hd)]; q' -> y[t],
// k' -> kc[pos], v -> vc[pos]. Launch: grid T, block 128.
template <int FDT, int CDT>
__device__ __forceinline__ void k_rope_store(const float* __restrict__ qkv, const void* __restrict__ ff,
                                             void* __restrict__ kc, void* __restrict__ vc,
                                             float* __restrict__ y, const KilnStep* step, int C, int nh,
                                             int nkv, int hd, int n_rot, int neox, float theta) {
  __shared__ float kbuf[8 * 1024];  // nkv * hd <= 8192 (checked by codegen)
  const int t = blockIdx.x;
  if (t >= step->n_tokens) return;
  const int pos = step->pos0 + t;
  const i64 Wq = (i64)nh * hd, Wk = (i64)nkv * hd;
  const float* row = qkv + t * (Wq + 2 * Wk);
  rope_row<FDT>(row, y + t * Wq, nh, hd, n_rot, neox, pos, theta, ff);
  rope_row<FDT>(row + Wq, kbuf, nkv, hd, n_rot, neox, pos, theta, ff);
  __syncthreads();
  if (pos < 0 || pos >= C) return;
  for (int k = threadIdx.x; k < Wk; k += blockDim.x) {
    stf<CDT>(kc, (i64)pos * Wk + k, kbuf[k]);
    stf<CDT>(vc, (i64)pos * Wk + k, row[Wq + Wk + k]);
  }
}
