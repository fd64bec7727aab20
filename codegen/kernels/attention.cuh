// attention.cuh: causal GQA attention over the KV cache. One block per (head,
// token); each warp runs an online softmax (Milakov & Gimelshein 2018) over
// groups of kAttKeysPerGroup key rows (group g of warp w: rows (g*kAttWarps + w)*kAttKeysPerGroup ..
// +kAttKeysPerGroup-1, <= pos0 + t), lanes owning head dims lane + 32*i; the K and V rows
// of a group are loaded together (one memory round trip per group, not two per
// key), and the warps' partial states are merged at the end.
#pragma once
#include "att_defer.cuh"
#include "common.cuh"


// window > 0 (a sliding-window layer): query t sees positions
// max(0, pos - window + 1) .. pos only, position j in cache row j mod C (the
// ring of window + chunk - 1 rows the IR gives such a layer, or the full
// cache); keys are visited in position order, as in the interpreter.
// Launch: grid (nh, T), block 32*kAttWarps. out is ODT (f32, or f16/bf16:
// fold-cast).
template <int KDT, int ODT>
__device__ __forceinline__ void k_attention(const float* __restrict__ q, const void* __restrict__ kc,
                                            const void* __restrict__ vc, void* __restrict__ out,
                                            const KilnStep* step, int C, int nh, int nkv, int hd,
                                            float scale, int window) {
  __shared__ float sm[kAttWarps], sl[kAttWarps];
  __shared__ float sacc[kAttWarps][32 * kAttMaxDimsPerLane];
  const int h = blockIdx.x, t = blockIdx.y;
  if (t >= step->n_tokens) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kvh = h / (nh / nkv);
  // Keys are offsets 0..last from the first visible position `first`.
  int first = 0, last = step->pos0 + t;
  if (window > 0) {
    first = max(0, last - window + 1);
    last -= first;
    if (last > C - 1) last = C - 1;  // a ring smaller than the window: never wrap onto itself
  } else if (last > C - 1) {
    last = C - 1;  // never read past the cache
  }
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
      const int j = min(j0 + g, last) + first;  // rows past last: masked below
      const i64 base = (i64)(window > 0 ? j % C : j) * W + (i64)kvh * hd;
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
    stf<ODT>(out, (i64)t * nh * hd + (i64)h * hd + d, L > 0.f ? o / L : 0.f);
  }
}

// ---- split-K decode attention (flash-decoding) ---------------------------------
// For steps of <= kAttSplitMaxRows rows (decode). Grid (nkv, S, T): block
// (g, s, t) takes split s of the KV rows 0..L-1, L = min(pos0 + n_tokens, C)
// read from the step (a split covers chunk = max(ceil(L / S), kAttSplitMinKeys)
// rows; splits past L exit at once), for all G = nh / nkv query heads of KV
// head g and token t, so every K/V row is read once per GQA group. HD / 8
// lanes hold one row, 8 dims each (one 16-byte load of an f16/bf16 row, two of
// an f32 one); a warp covers 32 / (HD / 8) rows per load, U loads of K and of
// V per tile, and with PF the next tile's loads are issued before the current
// tile is computed. Each lane runs an online softmax (base 2: q is scaled by
// scale * log2(e) once) over its rows; lanes, then warps, are merged, and the
// block writes its partial state per head (max m, sum l, unnormalised acc[HD])
// to the scratch. The last block of (g, t) to finish (a counter in the
// scratch, which that block resets to 0, so a replayed graph finds it zero)
// merges the splits, its warps taking interleaved splits, and writes out.
// Scratch (f32, the split-decode-attention pass's state; zeroed at load):
// u32 counters [kAttSplitMaxRows * nkv] (padded to 4 floats), then acc
// [T][nh][S][HD], then (m, l) [T][nh][S][2]: T * nh * S * (HD + 2) floats.

__device__ __forceinline__ void h8(uint4 w, int bf, float* f) {  // 8 f16 / bf16 values
  const u32 a[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = bf ? bf2f((u16)(a[i] & 0xFFFFu)) : h2f((u16)(a[i] & 0xFFFFu));
    f[2 * i + 1] = bf ? bf2f((u16)(a[i] >> 16)) : h2f((u16)(a[i] >> 16));
  }
}
template <int KDT>
__device__ __forceinline__ void att_cvt8(const uint4* raw, float* f) {
  if (KDT == DT_F32) {
    f[0] = __uint_as_float(raw[0].x); f[1] = __uint_as_float(raw[0].y);
    f[2] = __uint_as_float(raw[0].z); f[3] = __uint_as_float(raw[0].w);
    f[4] = __uint_as_float(raw[1].x); f[5] = __uint_as_float(raw[1].y);
    f[6] = __uint_as_float(raw[1].z); f[7] = __uint_as_float(raw[1].w);
  } else {
    h8(raw[0], KDT == DT_BF16, f);
  }
}
// 2^(a - b), 0 for a = -inf (no NaN when both are -inf)
__device__ __forceinline__ float att_w(float a, float b) { return a == -INFINITY ? 0.f : exp2f(a - b); }

// The rows a split block covers: L rows (att_span_rows) in nsplit splits of
// max(ceil(L / S), kAttSplitMinKeys) rows; block (s, t) takes [j0, j1) of
// split s, token t's rows of it (maybe none). false: the block has nothing to
// do (a token past n_tokens or a split past L). Row indices count from
// position `first` (0 without a window); with a sliding window (win > 0)
// token t also skips the rows before lo (its window's first position), and
// position first + j sits in cache row (first + j) mod C.
struct AttSplitRows {
  int L, nsplit, j0, j1, first, lo;
};
// OB: steps of at most OB rows take one split (kAttSplitTcOneBlockRows); DM:
// the node's DEFER, 0 where it merges itself (att_split_chunk).
template <int OB = 0, int DM = 0>
__device__ __forceinline__ bool att_split_rows(const KilnStep* step, int C, int S, int s, int t, AttSplitRows& r,
                                               int win = 0) {
  if (t >= step->n_tokens) return false;
  r.L = att_span_rows(step, C, win);
  r.first = att_span_first(step, win);
  const int chunk = att_split_chunk(r.L, S, OB, DM);  // (att_defer.cuh: a deferred merge's consumer counts alike)
  r.nsplit = (r.L + chunk - 1) / chunk;
  if (s >= r.nsplit) return false;
  const int last = win > 0 ? step->pos0 + t - r.first : min(step->pos0 + t, C - 1);  // never read past the cache
  r.lo = win > 0 ? max(0, step->pos0 + t - win + 1) - r.first : 0;
  r.j0 = s * chunk;
  r.j1 = min(r.j0 + chunk, last + 1);
  return true;
}
// att_split_prefetch_l2: rows [j0, pe) of both caches (rb bytes a row), the
// g-th of nkv shares, to L2. The split kernels call it before their wait at
// short contexts (L <= kAttSplitL2PrefetchMaxRows) for the split's K and V
// rows before pos0, which earlier steps wrote. Whole cache rows are contiguous, so block g of the split's nkv blocks
// prefetches the g-th share of them (all heads' columns) and the nkv
// blocks together prefetch the split's rows once; the registers then load
// from L2. Measured on the H200 (docs/perf.md, session 15): 8B Q4_K_M -1.0%
// per token at context 512, -0.8% at 1024, 1B -1.0% at 512; at 2000 rows
// +0.4%, and with every length prefetched +1.9% at 4096 and +4.1% at
// 8192 (cause not measured: 16-32 MB per layer then go to L2 while the
// QKV GEMV still streams).
__device__ __forceinline__ void att_split_prefetch_l2(const void* kc, const void* vc, i64 rb, int j0, int pe, int g,
                                                      int nkv) {
  if (pe <= j0) return;
  const int per = (pe - j0 + nkv - 1) / nkv, a = j0 + g * per, b = min(a + per, pe);
  if (b <= a) return;
  kiln_prefetch_l2((const u8*)kc + a * rb, (u64)(b - a) * rb);
  kiln_prefetch_l2((const u8*)vc + a * rb, (u64)(b - a) * rb);
}

// Phase marks of the split kernels, for the prototype that times a layer's
// attention and merge inside a graph (tests/gpu/proto/merge_in_o.cu defines
// KILN_ATT_MARK before including this file; codegen never does).
// KILN_ATT_MARK(i): 0 past the PDL wait (tensor-core kernel), 1 tiles done,
// 2 partial state stored and fenced, 3 the merging block knows it merges,
// 4 its (m, l) loads are in, 5 its output is written.
#ifndef KILN_ATT_MARK
#define KILN_ATT_MARK(i)
#endif
// The end of a split block, shared by both split kernels: its NW warps'
// partial states (s_m, s_l [NW][G], s_acc [NW][G * HD], written before a
// block barrier) are merged per head and written to the scratch, or with one
// split (L <= kAttSplitMinKeys rows) the result straight to out; the last
// block of (g, t) to finish merges the splits.
// DEFER > 0 (the node's defer_merge: the defer-attention-merge pass): at 2
// to DEFER splits (att_defers, att_defer.cuh) the blocks store their partial
// states and stop, and the consuming kernel merges them. MODE 2 (a
// prototype's switch, tests/gpu/proto/merge_in_o.cu; codegen takes 0) stores
// the partial state of every split, one split included, then releases it by
// the fence and an atomicAdd on the (g, t) counter (a consumer in the same
// launch waits for nsplit arrivals and resets the counter).
template <int HD, int G, int NW, int MODE = 0, int DEFER = 0>
__device__ __forceinline__ void att_split_finish(const float (*s_m)[G], const float (*s_l)[G], float (*s_acc)[G * HD],
                                                 float* __restrict__ out, float* __restrict__ scratch, int g, int s,
                                                 int t, int T, int nh, int nkv, int S, int nsplit) {
  __shared__ float s_pm[G][kAttSplitMaxSplits], s_pl[G][kAttSplitMaxSplits], s_pw[G][kAttSplitMaxSplits];
  __shared__ int s_last;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // the block's partial state per head -> scratch; with one split (L <=
  // kAttSplitMinKeys rows) it is the result, written out directly (no scratch
  // round trip, fence or counter: measured ~2.6-3.3 us of a decode layer on
  // the H200, docs/perf.md)
  const int hdr = (kAttSplitMaxRows * nkv + 3) & ~3;
  float* pacc = scratch + hdr;                                // [T][nh][S][HD]
  float* pml = pacc + (i64)T * nh * S * HD;                   // [T][nh][S][2]
  const i64 row0 = ((i64)t * nh + (i64)g * G) * S;            // entry (hh, sp): row0 + hh * S + sp
  for (int idx = threadIdx.x; idx < G * HD; idx += blockDim.x) {
    const int hh = idx / HD, d = idx - hh * HD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; ++w) M = fmaxf(M, s_m[w][hh]);
    float o = 0.f, den = 0.f;
#pragma unroll
    for (int w = 0; w < NW; ++w) {
      const float a = att_w(s_m[w][hh], M);
      o += s_acc[w][idx] * a;
      den += s_l[w][hh] * a;
    }
    if (MODE != 2 && nsplit == 1) {
      out[((i64)t * nh + (i64)g * G) * HD + idx] = den > 0.f ? o / den : 0.f;
      continue;
    }
    const i64 e = row0 + (i64)hh * S + s;
    pacc[e * HD + d] = o;
    if (d == 0) {
      pml[2 * e] = M;
      pml[2 * e + 1] = den;
    }
  }
  if (MODE != 2 && (nsplit == 1 || att_defers(nsplit, DEFER))) return;
  __threadfence();
  __syncthreads();
  KILN_ATT_MARK(2);
  if (MODE == 2) {
    if (threadIdx.x == 0) atomicAdd((unsigned*)scratch + t * nkv + g, 1u);
    return;
  }
  if (threadIdx.x == 0) {
    unsigned* cnt = (unsigned*)scratch + t * nkv + g;
    const unsigned prev = atomicAdd(cnt, 1u);
    s_last = prev == (unsigned)(nsplit - 1);
    if (s_last) atomicExch(cnt, 0u);  // every split of (g, t) has arrived: ready for the next launch
  }
  __syncthreads();
  if (!s_last) return;
  KILN_ATT_MARK(3);
  __threadfence();
  // the last block merges the nsplit partial states of each head. Warp w sums
  // splits w, w + NW, ...; lane takes float4 columns lane, lane + 32, ... of
  // [G][HD]. The first RB of a warp's splits' acc loads are issued with the
  // (m, l) loads, before the weights they need are made, so that both cost
  // one L2 round trip (they took two, one after the other, before session 21).
  constexpr int C4 = G * HD / 4, CPL = (C4 + 31) / 32, RB = CPL >= 8 ? 1 : 8 / CPL;
  float4 raw[RB][CPL];
  auto load_acc = [&](int b0) {
#pragma unroll
    for (int b = 0; b < RB; ++b) {
      const int sp = warp + NW * (b0 + b);
#pragma unroll
      for (int i = 0; i < CPL; ++i) {
        const int c4 = lane + 32 * i;
        if (c4 < C4 && sp < nsplit) {
          const int hh = (c4 * 4) / HD, d = c4 * 4 - hh * HD;
          raw[b][i] = *(const float4*)(pacc + (row0 + (i64)hh * S + sp) * HD + d);
        }
      }
    }
  };
  load_acc(0);
  for (int idx = threadIdx.x; idx < G * nsplit; idx += blockDim.x) {
    const int hh = idx / nsplit, sp = idx - hh * nsplit;
    const i64 e = row0 + (i64)hh * S + sp;
    s_pm[hh][sp] = pml[2 * e];
    s_pl[hh][sp] = pml[2 * e + 1];
  }
  __syncthreads();
  KILN_ATT_MARK(4);
  for (int idx = threadIdx.x; idx < G * nsplit; idx += blockDim.x) {  // weight of each split
    const int hh = idx / nsplit, sp = idx - hh * nsplit;
    float M = -INFINITY;
    for (int x = 0; x < nsplit; ++x) M = fmaxf(M, s_pm[hh][x]);
    s_pw[hh][sp] = att_w(s_pm[hh][sp], M);
  }
  __syncthreads();
  float4 a4[CPL];
#pragma unroll
  for (int i = 0; i < CPL; ++i) a4[i].x = a4[i].y = a4[i].z = a4[i].w = 0.f;
  for (int b0 = 0; warp + NW * b0 < nsplit; b0 += RB) {
    if (b0 > 0) load_acc(b0);
#pragma unroll
    for (int b = 0; b < RB; ++b) {
      const int sp = warp + NW * (b0 + b);
      if (sp >= nsplit) break;
#pragma unroll
      for (int i = 0; i < CPL; ++i) {
        const int c4 = lane + 32 * i;
        if (c4 < C4) {
          const float w = s_pw[(c4 * 4) / HD][sp];
          const float4 v = raw[b][i];
          a4[i].x += v.x * w; a4[i].y += v.y * w; a4[i].z += v.z * w; a4[i].w += v.w * w;
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < CPL; ++i) {
    const int c4 = lane + 32 * i;
    if (c4 < C4) *(float4*)&s_acc[warp][c4 * 4] = a4[i];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * HD; idx += blockDim.x) {
    const int hh = idx / HD;
    float o = 0.f, den = 0.f;
#pragma unroll
    for (int w = 0; w < NW; ++w) o += s_acc[w][idx];
    for (int sp = 0; sp < nsplit; ++sp) den += s_pl[hh][sp] * s_pw[hh][sp];
    out[((i64)t * nh + (i64)g * G) * HD + idx] = den > 0.f ? o / den : 0.f;
  }
  KILN_ATT_MARK(5);
}

// OW = 1: the kernel waits for its predecessor itself (codegen Kernel::
// own_pdl_wait). The cache rows before step->pos0 were written by earlier
// steps (earlier launches of the program), and the step block by the host
// before the launch, so a warp's first tile of K and V rows is loaded before
// the wait when every row of it lies before pos0; q, the new rows and the
// scratch are touched only after it.
// WIN (a sliding-window layer, window win): the rows are the window's
// positions (att_split_rows), read from the ring at row position mod C.
template <int KDT, int HD, int G, int NW, int U, int PF, int OW = 0, int DEFER = 0, bool WIN = false>
__device__ __forceinline__ void k_attention_split(const float* __restrict__ q, const void* __restrict__ kc,
                                                  const void* __restrict__ vc, float* __restrict__ out,
                                                  float* __restrict__ scratch, const KilnStep* step, int C, int nh,
                                                  int nkv, int S, float scale, int win = 0) {
  constexpr int LPR = HD / 8, RPW = 32 / LPR, TILE = RPW * U;  // lanes per row, rows per warp load / tile
  constexpr int NV = KDT == DT_F32 ? 2 : 1;                     // 16-byte loads per lane per row
  static_assert(HD % 8 == 0 && 32 % LPR == 0, "head_dim in {8, 16, 32, 64, 128, 256}");
  __shared__ float s_m[NW][G], s_l[NW][G];
  __shared__ __align__(16) float s_acc[NW][G * HD];
  // KV heads vary fastest in the grid, so the blocks that have rows at a
  // short context (the first ceil(L / chunk) splits of every head) come
  // first and the block scheduler puts them on different SMs. In (S, nkv, T)
  // order they came in runs of a few per head, a wave apart, and pairs of
  // them shared an SM: 8B Q4_K_M -2.3%, 1B -3.5% per token at context 512
  // with an 8448-row cache (session 14, docs/perf.md).
  const int g = blockIdx.x, s = blockIdx.y, t = blockIdx.z, T = gridDim.z;
  AttSplitRows R;
  if (!att_split_rows<0, DEFER>(step, C, S, s, t, R, WIN ? win : 0)) return;
  const int L = R.L, nsplit = R.nsplit, j0 = R.j0, j1 = R.j1;
  // WIN: the ring row of row 0 (position R.first); rows past C wrap (L <= C)
  const int rb = WIN ? R.first % C : 0, lo = WIN ? R.lo : 0;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = lane / LPR, c8 = (lane % LPR) * 8;
  const i64 W = (i64)nkv * HD;
  const i64 col = (i64)g * HD + c8;
  const float qs = scale * 1.4426950408889634f;  // log2(e): softmax in base 2
  uint4 kr[U][NV], vr[U][NV];
  // vol (a literal at every call): volatile loads (ldw128v), which stay on
  // their side of the PDL wait
  auto load_tile = [&](int r0, uint4 (&kt)[U][NV], uint4 (&vt)[U][NV], bool vol) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      int r = min(r0 + u * RPW + sub, j1 - 1);  // rows past j1: a valid row, masked below
      if (WIN) {
        r += rb;
        if (r >= C) r -= C;
      }
      const i64 e = (i64)r * W + col;
#pragma unroll
      for (int x = 0; x < NV; ++x) {
        const void* kp = KDT == DT_F32 ? (const void*)((const float*)kc + e + 4 * x) : (const void*)((const u16*)kc + e);
        const void* vp = KDT == DT_F32 ? (const void*)((const float*)vc + e + 4 * x) : (const void*)((const u16*)vc + e);
        kt[u][x] = vol ? ldw128v(kp) : ldw128(kp);
        vt[u][x] = vol ? ldw128v(vp) : ldw128(vp);
      }
    }
  };
  int r0 = j0 + warp * TILE;
  // the first tile's highest row is min(r0 + TILE, j1) - 1
  // (rows before position pos0 were written by earlier steps)
  const bool early = OW && r0 < j1 && min(r0 + TILE, j1) <= step->pos0 - (WIN ? R.first : 0);
  if (early) load_tile(r0, kr, vr, true);
  if (OW && !WIN && threadIdx.x == 0 && L <= kAttSplitL2PrefetchMaxRows)
    att_split_prefetch_l2(kc, vc, W * (KDT == DT_F32 ? 4 : 2), j0, min(j1, step->pos0), g, nkv);
  if (OW) kiln_pdl_wait_own();
  if (!early && r0 < j1) load_tile(r0, kr, vr, true);

  float qv[G][8], acc[G][8], m[G], l[G];
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
    const float* qr = q + ((i64)t * nh + (i64)g * G + hh) * HD + c8;
    const float4 a = *(const float4*)qr, b = *(const float4*)(qr + 4);
    qv[hh][0] = a.x * qs; qv[hh][1] = a.y * qs; qv[hh][2] = a.z * qs; qv[hh][3] = a.w * qs;
    qv[hh][4] = b.x * qs; qv[hh][5] = b.y * qs; qv[hh][6] = b.z * qs; qv[hh][7] = b.w * qs;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[hh][i] = 0.f;
    m[hh] = -INFINITY;
    l[hh] = 0.f;
  }
  for (; r0 < j1; r0 += NW * TILE) {
    const int rn = r0 + NW * TILE;
    uint4 kn[U][NV], vn[U][NV];
    if (PF && rn < j1) load_tile(rn, kn, vn, false);  // the next tile's loads fly while this one is computed
    float sc[U][G];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[8];
      att_cvt8<KDT>(kr[u], kf);
#pragma unroll
      for (int hh = 0; hh < G; ++hh) {
        float x = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) x += qv[hh][i] * kf[i];
        sc[u][hh] = x;
      }
    }
#pragma unroll
    for (int o = LPR / 2; o > 0; o >>= 1)
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int hh = 0; hh < G; ++hh) sc[u][hh] += __shfl_xor_sync(0xFFFFFFFFu, sc[u][hh], o);
#pragma unroll
    for (int hh = 0; hh < G; ++hh) {
      float mn = m[hh];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (r0 + u * RPW + sub >= j1 || (WIN && r0 + u * RPW + sub < lo)) sc[u][hh] = -INFINITY;
        mn = fmaxf(mn, sc[u][hh]);
      }
      const float corr = att_w(m[hh], mn);
      float ls = 0.f;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        sc[u][hh] = att_w(sc[u][hh], mn);  // the weight p of row u
        ls += sc[u][hh];
      }
      l[hh] = l[hh] * corr + ls;
      m[hh] = mn;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[hh][i] *= corr;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float vf[8];
      att_cvt8<KDT>(vr[u], vf);
#pragma unroll
      for (int hh = 0; hh < G; ++hh)
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[hh][i] += sc[u][hh] * vf[i];
    }
    if (PF) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int x = 0; x < NV; ++x) {
          kr[u][x] = kn[u][x];
          vr[u][x] = vn[u][x];
        }
    } else if (rn < j1) {
      load_tile(rn, kr, vr, false);
    }
  }
  // lanes of one dim chunk (one per row slot) -> lane sub 0
#pragma unroll
  for (int o = LPR; o < 32; o <<= 1)
#pragma unroll
    for (int hh = 0; hh < G; ++hh) {
      const float om = __shfl_xor_sync(0xFFFFFFFFu, m[hh], o), ol = __shfl_xor_sync(0xFFFFFFFFu, l[hh], o);
      const float M = fmaxf(m[hh], om), a = att_w(m[hh], M), b = att_w(om, M);
      l[hh] = l[hh] * a + ol * b;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[hh][i] = acc[hh][i] * a + __shfl_xor_sync(0xFFFFFFFFu, acc[hh][i], o) * b;
      m[hh] = M;
    }
  if (sub == 0) {
#pragma unroll
    for (int hh = 0; hh < G; ++hh) {
#pragma unroll
      for (int i = 0; i < 8; ++i) s_acc[warp][hh * HD + c8 + i] = acc[hh][i];
      if (lane == 0) {
        s_m[warp][hh] = m[hh];
        s_l[warp][hh] = l[hh];
      }
    }
  }
  __syncthreads();
  att_split_finish<HD, G, NW, 0, DEFER>(s_m, s_l, s_acc, out, scratch, g, s, t, T, nh, nkv, S, nsplit);
}

// ---- split-K decode attention on tensor cores -----------------------------------
// k_attention_split's work as mma.sync m16n8k16 products (sm_80+, f16 cache,
// head_dim 64 or 128, G <= 8 query heads per KV head; codegen
// attention_split_tc). Grid, split ranges, scratch and the merge are
// k_attention_split's. A warp takes tiles of 16 keys (tiles warp, warp + NW,
// ... of its split) and keeps the next tile's K and V loads in flight while
// it computes one. Lane (r, c) = (lane / 4, lane % 4) of the fragments:
//  - S = Q K^T. A: row r < G is head r's q, rounded to f16, row r + 8 the f16
//    of what that rounding left (q - f16(q)), so q is carried to ~22 bits
//    and a score is the sum of the two rows. q (times scale * log2 e) is first
//    scaled by a power of two per head that puts its largest |value| in
//    [1, 2), undone on the score, so neither part leaves f16's normal range.
//    B (8 keys): lane (r, c) loads key r's 16-byte pieces c, c + 4, c + 8,
//    ... (the 4 lanes of a key read 64 contiguous bytes per load), and the
//    fragment's k index runs over those dims in that order; A uses the same
//    order (a permutation of the dims that both operands share leaves the dot
//    product as it is).
//  - O += P V. A: row r the f16 probabilities of head r, row r + 8 their
//    remainders. B: lane (r, c) loads the 16-byte pieces r, r + 8 of keys 2c,
//    2c+1, 2c+8, 2c+9 of the tile (8 lanes read 128 contiguous bytes) and
//    pairs the two keys' halves per register (one byte permute); the output
//    column (n-tile j, n) is dim (8 (j / 8) + n) * 8 + j % 8.
// f16 products are exact in the tensor cores' fp32 accumulation, so the
// result differs from the CUDA-core kernel's by summation order and by the
// ~2^-22 of the two-part operands (the interpreter's attention tolerance).
// v as hi + lo: hi = f16(v) exactly as a float, lo = v - hi (exact in fp32,
// rounded to f16 when packed), so the two f16 values carry ~22 bits of v
__device__ __forceinline__ void f16_parts(float v, float& hi, float& lo) {
  hi = h2f(f2h(v));
  lo = v - hi;
}
__device__ __forceinline__ u32 u4w(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
template <int HD, int G, int NW, int OW = 0, int MODE = 0, int DEFER = 0>
__device__ __forceinline__ void k_attention_split_tc(const float* __restrict__ q, const u16* __restrict__ kc,
                                                     const u16* __restrict__ vc, float* __restrict__ out,
                                                     float* __restrict__ scratch, const KilnStep* step, int C, int nh,
                                                     int nkv, int S, float scale) {
  static_assert((HD == 64 || HD == 128) && G >= 1 && G <= 8, "tensor-core split attention: head_dim 64 or 128, G <= 8");
  constexpr int KS = HD / 16;  // k steps of S = Q K^T
  constexpr int ND = HD / 8;   // n tiles of O
  constexpr int KW = HD / 32;  // 16-byte K loads of a lane per 8 keys (pieces c + 4x of one key)
  constexpr int VW = HD / 64;  // 16-byte V loads of a lane per key (pieces r + 8x of 4 keys)
  constexpr int TK = 16;       // keys per warp tile
  __shared__ float s_m[NW][G], s_l[NW][G];
  __shared__ __align__(16) float s_acc[NW][G * HD];
  __shared__ __align__(16) uint4 s_qa[KS][32];  // the A fragments of Q, per k step and lane
  const int g = blockIdx.x, s = blockIdx.y, t = blockIdx.z, T = gridDim.z;
  AttSplitRows R;
  if (!att_split_rows<kAttSplitTcOneBlockRows, DEFER>(step, C, S, s, t, R)) return;
  const int j0 = R.j0, j1 = R.j1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 2, c = lane & 3;
  const i64 W = (i64)nkv * HD;
  const u16* kh = kc + (i64)g * HD + 8 * c;
  const u16* vh = vc + (i64)g * HD + 8 * r;
  // vol (a literal at every call): volatile loads (ldw128v), which stay on
  // their side of the PDL wait; keys past j1 load a valid row, masked below
  auto load_tile = [&](int kb, uint4 (&K)[2][KW], uint4 (&V)[4][VW], bool vol) {
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
      const u16* p = kh + (i64)min(kb + 8 * tt + r, j1 - 1) * W;
#pragma unroll
      for (int x = 0; x < KW; ++x) K[tt][x] = vol ? ldw128v(p + 32 * x) : ldw128(p + 32 * x);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const u16* p = vh + (i64)min(kb + 2 * c + (i & 1) + 8 * (i >> 1), j1 - 1) * W;
#pragma unroll
      for (int x = 0; x < VW; ++x) V[i][x] = vol ? ldw128v(p + 64 * x) : ldw128(p + 64 * x);
    }
  };
  uint4 kt[2][KW], vt[4][VW];
  int kb = j0 + warp * TK;
  const bool early = OW && kb < j1 && min(kb + TK, j1) <= step->pos0;
  if (early) load_tile(kb, kt, vt, true);
  if (OW && threadIdx.x == 0 && R.L <= kAttSplitL2PrefetchMaxRows)
    att_split_prefetch_l2(kc, vc, W * 2, j0, min(j1, step->pos0), g, nkv);
  if (OW) kiln_pdl_wait_own();
  KILN_ATT_MARK(0);
  if (!early && kb < j1) load_tile(kb, kt, vt, true);

  // q of head r (rows r >= G: zeros), in base 2: k step i's 4 dims, the
  // halves of the pieces c + 4 (i / 2) that K's words 2i, 2i + 1 hold
  const float qs = scale * 1.4426950408889634f;
  float qv[HD / 4];
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < HD / 16; ++i) {
    float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < G) a = *(const float4*)(q + ((i64)t * nh + (i64)g * G + r) * HD + (4 * (i / 2) + c) * 8 + 4 * (i % 2));
    qv[4 * i] = a.x * qs; qv[4 * i + 1] = a.y * qs; qv[4 * i + 2] = a.z * qs; qv[4 * i + 3] = a.w * qs;
#pragma unroll
    for (int e = 0; e < 4; ++e) amax = fmaxf(amax, fabsf(qv[4 * i + e]));
  }
  amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, 2));
  // f = 2^(127 - e) for amax's biased exponent e, qinv = 1 / f (both normal
  // floats); zero, subnormal or non-finite amax: 1
  const int ex = (__float_as_int(amax) >> 23) & 0xFF;
  const bool sc_ok = ex != 0 && ex != 0xFF;
  const int fe = max(254 - ex, 1);
  const float f = sc_ok ? __int_as_float(fe << 23) : 1.f, qinv = sc_ok ? __int_as_float((254 - fe) << 23) : 1.f;
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    if (ks % NW != warp) continue;
    float hi[4], lo[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      f16_parts(qv[4 * ks + e] * f, hi[e], lo[e]);
    }
    s_qa[ks][lane] = make_uint4(pack_f16x2(hi[0], hi[1]), pack_f16x2(lo[0], lo[1]), pack_f16x2(hi[2], hi[3]),
                                pack_f16x2(lo[2], lo[3]));
  }
  __syncthreads();

  float o[ND][4], m = -INFINITY, l = 0.f;
#pragma unroll
  for (int j = 0; j < ND; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  for (; kb < j1; kb += NW * TK) {
    const int kn = kb + NW * TK;
    uint4 kx[2][KW], vx[4][VW];
    if (kn < j1) load_tile(kn, kx, vx, false);  // the next tile's loads fly while this one is computed
    float sc[2][4];
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) sc[tt][0] = sc[tt][1] = sc[tt][2] = sc[tt][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      const uint4 qa = s_qa[ks][lane];
      const u32 a[4] = {qa.x, qa.y, qa.z, qa.w};
#pragma unroll
      for (int tt = 0; tt < 2; ++tt)
        mma_16816(sc[tt], a, u4w(kt[tt][(2 * ks) / 4], (2 * ks) % 4), u4w(kt[tt][(2 * ks + 1) / 4], (2 * ks + 1) % 4));
    }
    // scores (hi row + remainder row, scaling undone), masked past j1
    float v[4], mx = m;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int tt = i >> 1, e = i & 1;
      const float x = (sc[tt][e] + sc[tt][2 + e]) * qinv;
      v[i] = kb + 8 * tt + 2 * c + e < j1 ? x : -INFINITY;
      mx = fmaxf(mx, v[i]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 2));
    const float corr = m == -INFINITY ? 0.f : ex2(m - mx);
    m = mx;
    float p[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) p[i] = ex2(v[i] - mx);
    l = l * corr + ((p[0] + p[1]) + (p[2] + p[3]));
    if (__any_sync(0xFFFFFFFFu, corr != 1.f)) {
#pragma unroll
      for (int j = 0; j < ND; ++j) {
        o[j][0] *= corr; o[j][1] *= corr; o[j][2] *= corr; o[j][3] *= corr;
      }
    }
    float ph[4], pl[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) f16_parts(p[i], ph[i], pl[i]);
    const u32 pa[4] = {pack_f16x2(ph[0], ph[1]), pack_f16x2(pl[0], pl[1]), pack_f16x2(ph[2], ph[3]),
                       pack_f16x2(pl[2], pl[3])};
#pragma unroll
    for (int j = 0; j < ND; ++j) {
      const int w = j >> 1, x = w >> 2, y = w & 3;
      const u32 sel = (j & 1) ? 0x7632u : 0x5410u;
      mma_16816(o[j], pa, __byte_perm(u4w(vt[0][x], y), u4w(vt[1][x], y), sel),
                __byte_perm(u4w(vt[2][x], y), u4w(vt[3][x], y), sel));
    }
#pragma unroll
    for (int tt = 0; tt < 2; ++tt)
#pragma unroll
      for (int x = 0; x < KW; ++x) kt[tt][x] = kx[tt][x];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int x = 0; x < VW; ++x) vt[i][x] = vx[i][x];
  }
  // the row's sum over its 4 lanes; the warp's state of head r -> shared memory
  l += __shfl_xor_sync(0xFFFFFFFFu, l, 1);
  l += __shfl_xor_sync(0xFFFFFFFFu, l, 2);
  if (r < G) {
#pragma unroll
    for (int j = 0; j < ND; ++j) {
      const int d = (8 * (j / 8) + 2 * c) * 8 + j % 8;  // column (j, 2c); (j, 2c + 1) is 8 dims on
      s_acc[warp][r * HD + d] = o[j][0] + o[j][2];
      s_acc[warp][r * HD + d + 8] = o[j][1] + o[j][3];
    }
    if (c == 0) {
      s_m[warp][r] = m;
      s_l[warp][r] = l;
    }
  }
  __syncthreads();
  KILN_ATT_MARK(1);
  att_split_finish<HD, G, NW, MODE, DEFER>(s_m, s_l, s_acc, out, scratch, g, s, t, T, nh, nkv, S, R.nsplit);
}
