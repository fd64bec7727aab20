// att_defer.cuh: the split decode attention's merge, deferred to the kernel
// that consumes its output (the defer-attention-merge pass: the o
// projection's GEMV). Split attention (attention.cuh) leaves one partial
// softmax state per (token, head, split) in its scratch; merging them in the
// attention launch costs a chain of dependent memory round trips (partial
// stores, a fence, a completion counter, the last block's loads and merge)
// before the next kernel may start. Deferred, the attention blocks store
// their states and finish, and every block of the consumer merges the states
// into shared memory right after its PDL wait, in one round of loads, before
// it quantises x. Both kernels read the split count from the step block (the
// host writes it before the launch), so they agree without a flag: one split
// (the attention wrote its output directly) or more than the node's dmax
// (codegen attention_defer_splits: the attention merged itself, as without
// the pass; every consumer block loads nsplit partial states of every x
// value, so the limit falls with x's width) leave the output in y.
#pragma once
#include "common.cuh"

// Splits of a step as the split kernels cut it (att_split_rows): L rows
// (att_span_rows), one split while L <= ob, else splits of max(ceil(L /
// S), mk) rows. dm: the node's DEFER, 0 where it merges itself (mk =
// kAttSplitMinKeys); a deferring node (dm > 0) takes splits of at least
// kAttDeferMinKeys rows and, while L <= kAttDeferCapMaxRows, of at least
// ceil(L / dm), so that there are at most dm of them and the consumer merges
// them; past that the count is not capped and the node merges itself beyond
// dm splits.
__device__ __forceinline__ int att_split_chunk(int L, int S, int ob, int dm) {
  if (L <= ob) return L;
  const int c = max((L + S - 1) / S, dm > 0 ? kAttDeferMinKeys : kAttSplitMinKeys);
  return dm > 0 && L <= kAttDeferCapMaxRows ? max(c, (L + dm - 1) / dm) : c;
}
// The rows a split attention covers in a step: min(pos0 + n_tokens, C); for a
// sliding-window layer (win > 0) the positions max(0, pos0 - win + 1) ..
// pos0 + n_tokens - 1 that some token of the step sees (at most win + n_tokens
// - 1 <= C: the verifier's ring size), counted from the first.
__device__ __forceinline__ int att_span_first(const KilnStep* step, int win) {
  return win > 0 ? max(0, step->pos0 - win + 1) : 0;
}
__device__ __forceinline__ int att_span_rows(const KilnStep* step, int C, int win) {
  return win > 0 ? step->pos0 + step->n_tokens - att_span_first(step, win) : min(step->pos0 + step->n_tokens, C);
}
__device__ __forceinline__ int att_split_count(const KilnStep* step, int C, int S, int ob, int dm, int win = 0) {
  const int L = att_span_rows(step, C, win);
  const int chunk = att_split_chunk(L, S, ob, dm);
  return (L + chunk - 1) / chunk;
}
// Whether an attention deferring up to dmax splits (att_split_finish DEFER)
// leaves them to the consumer at this split count.
__device__ __forceinline__ bool att_defers(int nsplit, int dmax) { return nsplit > 1 && nsplit <= dmax; }

// The merge: x[t][h * HD + d] for the nt tokens from the partial states of
// the scratch (attention.cuh's layout: counter words, then acc [T][nh][S][HD],
// then (m, l) [T][nh][S][2]). Thread i takes float4 columns i, i + blockDim,
// ...; per column it loads every split's (m, l) and acc float4 in one round
// (kAttDeferMaxSplits of each at most) and merges them in registers, as the
// merging block of attention.cuh does (weights 2^(m_s - max m), base 2).
// Ends with the block synchronised.
template <int HD>
__device__ __forceinline__ void att_defer_merge(const float* __restrict__ scratch, int nkv, int nh, int S, int T,
                                                int nt, int nsplit, float* __restrict__ x) {
  constexpr int RS = kAttDeferMaxSplits;
  const int hdr = (kAttSplitMaxRows * nkv + 3) & ~3;
  const float* pacc = scratch + hdr;
  const float* pml = pacc + (i64)T * nh * S * HD;
  const int C4 = nh * HD / 4, items = nt * C4;
  for (int it = threadIdx.x; it < items; it += blockDim.x) {
    const int t = it / C4, c4 = it - t * C4, h = c4 / (HD / 4), d4 = c4 - h * (HD / 4);
    const i64 row = ((i64)t * nh + h) * S;
    float4 a[RS];
    float2 ml[RS];
#pragma unroll
    for (int s = 0; s < RS; ++s)
      if (s < nsplit) {
        ml[s] = *(const float2*)(pml + 2 * (row + s));
        a[s] = *(const float4*)(pacc + (row + s) * HD + 4 * d4);
      }
    float M = -INFINITY;
#pragma unroll
    for (int s = 0; s < RS; ++s)
      if (s < nsplit) M = fmaxf(M, ml[s].x);
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
    float den = 0.f;
#pragma unroll
    for (int s = 0; s < RS; ++s)
      if (s < nsplit) {
        const float w = ml[s].x == -INFINITY ? 0.f : exp2f(ml[s].x - M);
        o.x += a[s].x * w; o.y += a[s].y * w; o.z += a[s].z * w; o.w += a[s].w * w;
        den += ml[s].y * w;
      }
    const float r = den > 0.f ? 1.f / den : 0.f;
    *(float4*)(x + (i64)t * nh * HD + 4 * c4) = make_float4(o.x * r, o.y * r, o.z * r, o.w * r);
  }
  __syncthreads();
}

// The consumer's side, a GEMV template argument (gemv.cuh): NoXMerge reads x
// as it is; AttXMerge<HD> knows the producing attention's scratch and split
// geometry (C cache rows, nh / nkv heads, S splits, ob its one-split rows, T
// its rows: the scratch's layout; dmax its DEFER).
struct NoXMerge {
  static constexpr bool kOn = false;
  __device__ __forceinline__ void init() {}
  __device__ __forceinline__ const float* x(const float* y, float*, int) const { return y; }
};
template <int HD>
struct AttXMerge {
  static constexpr bool kOn = true;
  const float* scratch;
  const KilnStep* step;
  int C, nh, nkv, S, ob, T, dmax;
  int win = 0;  // the attention's sliding window (0: none)
  int nsplit = 0;
  // before the PDL wait (the step block is the host's)
  __device__ __forceinline__ void init() { nsplit = att_split_count(step, C, S, ob, dmax, win); }
  // after it: y itself, or the merge of the partial states in xs ([nt][nh * HD] f32)
  __device__ __forceinline__ const float* x(const float* y, float* xs, int nt) const {
    if (!att_defers(nsplit, dmax)) return y;
    att_defer_merge<HD>(scratch, nkv, nh, S, T, nt, nsplit, xs);
    return xs;
  }
};
