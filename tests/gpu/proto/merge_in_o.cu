// Where should the split decode attention's merge happen? Session 21 measured
// it at ~2.5 us of a ~13 us SmolLM2 layer at 512 rows (docs/perf.md): the
// partial states' stores, a fence, a completion counter and the last block's
// merge, before the o projection's kernel can start. This prototype times
// three ways to run attention + the o projection (+ residual) for 30 layers of
// SmolLM2's geometry (9 query / 3 KV heads of 64, hidden 576, f16 cache of
// 1024 rows, 16 splits) in one CUDA graph with programmatic dependent launch:
//  A  kiln's split attention kernel as it is (k_attention_split_tc, merge by
//     the last block), then an o-projection kernel that reads its output;
//  A' the attention kernel writing only its partial states (DEFER, as kiln's
//     defer-attention-merge plans do: no fence, no counter, no merge), then
//     an o-projection kernel that merges them after its PDL wait with kiln's
//     own code (AttXMerge, att_defer.cuh: every block merges 9 heads x nsplit
//     partial states, one round of loads, into shared memory);
//  A'2 the same with the split count read from the step before the wait (as
//     kiln's GEMVs do);
//  B  one kernel for both: the attention blocks write their partial states
//     and release them (MODE 2: fence + counter), and the o-projection blocks
//     of the same launch wait for the counters, merge, and multiply (no
//     kernel boundary and no merging block between them);
//  0  the floor: partial states only, and the o projection reading the
//     attention output buffer as it is (no merge anywhere; wrong results,
//     left out of the check).
// The o projection is a plain f16 GEMV (16 rows a block, weights loaded into
// registers before the wait), the same in all three. Random data; the three
// outputs are compared. Standalone: not part of the build or of CI.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -Icodegen/kernels -Ischemas -o merge_in_o tests/gpu/proto/merge_in_o.cu && ./merge_in_o
//
// Prints one JSON object per (variant, rows): us per layer (median of 7 graph
// launches of 30 layers) and the last layer's phase marks (ns, first and last
// block to reach each), then the largest relative difference of A', B and
// A'2 from A.
#include "proto.cuh"

#define KILN_EARLY_TRIGGER 1  // attention lets the o projection launch after its wait, as in kiln's plans
// Phase marks (%globaltimer) of the last layer's launch of each kernel: each
// mark slot is overwritten by every layer, so after a run they hold layer
// 29's. Attention block (g, s): KILN_ATT_MARK (attention.cuh) 0-5; o block b:
// 0 entry, 1 past its wait, 2 past the counters (B), 3 x ready, 4 done.
constexpr int S_ = 16, NKV_ = 3, OBLK_ = 36;
__device__ unsigned long long g_att_marks[S_][NKV_][6];
__device__ unsigned long long g_o_marks[OBLK_][7];
#define KILN_ATT_MARK(i)                                                     \
  do {                                                                       \
    if (threadIdx.x == 0) g_att_marks[blockIdx.y][blockIdx.x][(i)] = gtime(); \
  } while (0)
#include "attention.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using kiln::KilnStep;

constexpr int NH = 9, NKV = 3, HD = 64, G = NH / NKV, H = NH * HD, C = 1024, S = S_, LAYERS = 30;
constexpr int OROWS = 16, OBLK = H / OROWS, THREADS = 256;  // o projection: 36 blocks of 16 rows
static_assert(NKV == NKV_ && OBLK == OBLK_, "mark arrays");
// the clock read after v is known (v is the asm's input)
__device__ __forceinline__ unsigned long long gtime_after(float v) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t) : "f"(v));
  return t;
}
__device__ __forceinline__ void o_mark(int b, int i) {
  if (threadIdx.x == 0) g_o_marks[b][i] = gtime();
}
constexpr int HDR = (kAttSplitMaxRows * NKV + 3) & ~3;       // the scratch's counter words
constexpr float SCALE = 0.125f;

// rows and splits of the step as att_split_rows sees them
__device__ __forceinline__ int step_nsplit(const KilnStep* st) {
  const int L = min(st->pos0 + st->n_tokens, C);
  const int chunk = L <= kAttSplitTcOneBlockRows ? L : max((L + S - 1) / S, kAttSplitMinKeys);
  return (L + chunk - 1) / chunk;
}

// ---- the o projection (f16 weights [H][H], row-major) ----
struct ORows {
  u32 w[2][H / 64];  // lane's half2 words of the warp's two rows: columns 2 lane + 64 j
};
__device__ __forceinline__ void o_load(const u16* __restrict__ W, int blk, ORows& r) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int row = blk * OROWS + 2 * warp + k;
#pragma unroll
    for (int j = 0; j < H / 64; ++j) r.w[k][j] = __ldg((const u32*)(W + (i64)row * H + 2 * lane + 64 * j));
  }
}
__device__ __forceinline__ void o_finish(const ORows& r, const float* xs, const float* __restrict__ hin,
                                         float* __restrict__ hout, int blk) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    float a = 0.f;
#pragma unroll
    for (int j = 0; j < H / 64; ++j) {
      const int c = 2 * lane + 64 * j;
      a += h2f((u16)(r.w[k][j] & 0xFFFF)) * xs[c] + h2f((u16)(r.w[k][j] >> 16)) * xs[c + 1];
    }
#pragma unroll
    for (int o = 16; o; o >>= 1) a += __shfl_xor_sync(0xFFFFFFFFu, a, o);
    const int row = blk * OROWS + 2 * warp + k;
    if (lane == 0) hout[row] = hin[row] + a;
  }
}
// An o block's start in every variant: its weight rows into registers before
// the PDL wait, then the wait and the early trigger (marks 0 and 1)
__device__ __forceinline__ void o_begin(const u16* __restrict__ W, int blk, ORows& r) {
  o_mark(blk, 0);
  o_load(W, blk, r);
  kiln_pdl_wait();
  kiln_pdl_trigger();
  o_mark(blk, 1);
}
// x = the merged attention output of every head, from the scratch's partial
// states (kiln's layout, token 0): thread i < H / 4 owns the float4 of
// columns 4i..4i+3 and loads that float4 and the (m, l) pair of each split
// of its head in one round into registers, then merges there (the weights
// are recomputed by the 16 threads of a head: cheaper than a shared-memory
// pass and a barrier)
__device__ __forceinline__ void merge_x(const float* __restrict__ scratch, int nsplit, float* xs, float*) {
  const float* pacc = scratch + HDR;                // [T][nh][S][HD], T = 1
  const float* pml = pacc + (i64)NH * S * HD;       // [T][nh][S][2]
  static_assert(H / 4 <= THREADS, "one float4 of x a thread");
  const int i = threadIdx.x;
  if (i < H / 4) {
    const int hg = i / (HD / 4), d4 = i - hg * (HD / 4);
    float4 a[S];
    float2 ml[S];
#pragma unroll
    for (int sp = 0; sp < S; ++sp)
      if (sp < nsplit) {
        a[sp] = *(const float4*)(pacc + ((i64)hg * S + sp) * HD + 4 * d4);
        ml[sp] = *(const float2*)(pml + 2 * ((i64)hg * S + sp));
      }
    float M = -INFINITY;
#pragma unroll
    for (int sp = 0; sp < S; ++sp)
      if (sp < nsplit) M = fmaxf(M, ml[sp].x);
    if (i == 0) g_o_marks[blockIdx.x % OBLK][5] = gtime_after(M);
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
    float den = 0.f;
#pragma unroll
    for (int sp = 0; sp < S; ++sp)
      if (sp < nsplit) {
        const float w = att_w(ml[sp].x, M);
        o.x += a[sp].x * w; o.y += a[sp].y * w; o.z += a[sp].z * w; o.w += a[sp].w * w;
        den += ml[sp].y * w;
      }
    if (i == 0) g_o_marks[blockIdx.x % OBLK][6] = gtime_after(o.x + o.y + o.z + o.w + den);
    *(float4*)(xs + 4 * i) = den > 0.f ? make_float4(o.x / den, o.y / den, o.z / den, o.w / den)
                                       : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  __syncthreads();
}

// ---- A: kiln's attention, then an o projection reading its output ----
__global__ void __launch_bounds__(THREADS, 2) att_merge(const float* q, const u16* kc, const u16* vc, float* out,
                                                         float* scratch, const KilnStep* st) {
  k_attention_split_tc<HD, G, 8, 1, 0>(q, kc, vc, out, scratch, st, C, NH, NKV, S, SCALE);
}
__global__ void __launch_bounds__(THREADS) o_plain(const u16* W, const float* x, const float* hin, float* hout) {
  __shared__ float xs[H];
  ORows r;
  o_begin(W, blockIdx.x, r);
  for (int i = threadIdx.x; i < H / 4; i += blockDim.x) *(float4*)(xs + 4 * i) = *(const float4*)(x + 4 * i);
  __syncthreads();
  o_mark(blockIdx.x, 3);
  o_finish(r, xs, hin, hout, blockIdx.x);
  o_mark(blockIdx.x, 4);
}
// ---- A': partial states only, merged in the o projection's prologue ----
__global__ void __launch_bounds__(THREADS, 2) att_partials(const float* q, const u16* kc, const u16* vc, float* out,
                                                            float* scratch, const KilnStep* st) {
  k_attention_split_tc<HD, G, 8, 1, 0, kAttDeferMaxSplits>(q, kc, vc, out, scratch, st, C, NH, NKV, S, SCALE);
}
// A' (EARLY = false): the split count read from the step after the PDL
// wait; A'2 (EARLY = true): before it (the host wrote the step before the
// launch), so the merge's loads are the first after the wait, as kiln's
// GEMVs do (AttXMerge::init before the wait)
template <bool EARLY>
__global__ void __launch_bounds__(THREADS) o_merge(const u16* W, const float* x, const float* scratch,
                                                   const KilnStep* st, const float* hin, float* hout) {
  __shared__ __align__(16) float xs[H];
  AttXMerge<HD> xm{scratch, st, C, NH, NKV, S, kAttSplitTcOneBlockRows, 1, kAttDeferMaxSplits, 0};
  if (EARLY) xm.init();
  ORows r;
  o_begin(W, blockIdx.x, r);
  if (!EARLY) xm.init();
  if (xm.x(x, xs, 1) == x) {  // not deferred: x as the attention wrote it
    for (int i = threadIdx.x; i < H / 4; i += blockDim.x) *(float4*)(xs + 4 * i) = *(const float4*)(x + 4 * i);
    __syncthreads();
  }
  o_mark(blockIdx.x, 3);
  o_finish(r, xs, hin, hout, blockIdx.x);
  o_mark(blockIdx.x, 4);
}
// ---- B: one launch; blocks (g, s < S) attention, (g, s >= S) the o projection ----
__global__ void __launch_bounds__(THREADS, 2) att_o_fused(const float* q, const u16* kc, const u16* vc, float* out,
                                                           float* scratch, const KilnStep* st, const u16* W,
                                                           const float* hin, float* hout, unsigned* consumed) {
  if (blockIdx.y < S) {
    k_attention_split_tc<HD, G, 8, 1, 2>(q, kc, vc, out, scratch, st, C, NH, NKV, S, SCALE);
    return;
  }
  __shared__ __align__(16) float xs[H];
  float* stage = nullptr;
  const int blk = (blockIdx.y - S) * NKV + blockIdx.x;
  ORows r;
  o_begin(W, blk, r);
  const int nsplit = step_nsplit(st);
  if (threadIdx.x < NKV) {  // every split of KV head threadIdx.x has released its state
    unsigned v;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"((unsigned*)scratch + threadIdx.x) : "memory");
    } while (v < (unsigned)nsplit);
  }
  __syncthreads();
  o_mark(blk, 2);
  merge_x(scratch, nsplit, xs, stage);
  o_mark(blk, 3);
  // the last o block to have read the states resets the counters for the next launch
  if (threadIdx.x == 0 && atomicAdd(consumed, 1u) == OBLK - 1) {
    for (int g = 0; g < NKV; ++g) ((volatile unsigned*)scratch)[g] = 0;
    *(volatile unsigned*)consumed = 0;
  }
  o_finish(r, xs, hin, hout, blk);
  o_mark(blk, 4);
}

int main() {
  print_device();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  auto f2h_host = [](float f) {
    __half h = __float2half(f);
    u16 u;
    std::memcpy(&u, &h, 2);
    return u;
  };
  const size_t kv_elems = (size_t)C * NKV * HD;
  std::vector<u16> hk(kv_elems * LAYERS), hv(kv_elems * LAYERS), hw((size_t)H * H * LAYERS);
  for (auto& x : hk) x = f2h_host(nd(rng));
  for (auto& x : hv) x = f2h_host(nd(rng));
  for (auto& x : hw) x = f2h_host(nd(rng) * 0.04f);
  std::vector<float> hq(H), hh(H);
  for (auto& x : hq) x = nd(rng);
  for (auto& x : hh) x = nd(rng);
  u16 *kc, *vc, *W;
  float *q, *att, *scratch, *hbuf;
  KilnStep* st;
  unsigned* consumed;
  const size_t scratch_floats = HDR + (size_t)kAttSplitMaxRows * NH * S * (HD + 2);
  CK(cudaMalloc(&kc, hk.size() * 2));
  CK(cudaMalloc(&vc, hv.size() * 2));
  CK(cudaMalloc(&W, hw.size() * 2));
  CK(cudaMalloc(&q, H * 4));
  CK(cudaMalloc(&att, H * 4));
  CK(cudaMalloc(&scratch, scratch_floats * 4));
  CK(cudaMalloc(&hbuf, (size_t)(LAYERS + 1) * H * 4));
  CK(cudaMalloc(&st, sizeof(KilnStep)));
  CK(cudaMalloc(&consumed, 4));
  CK(cudaMemcpy(kc, hk.data(), hk.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(vc, hv.data(), hv.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(W, hw.data(), hw.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(q, hq.data(), H * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(hbuf, hh.data(), H * 4, cudaMemcpyHostToDevice));
  CK(cudaMemset(scratch, 0, scratch_floats * 4));
  CK(cudaMemset(consumed, 0, 4));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));

  auto launch = [&](auto kern, dim3 grid, auto... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(THREADS);
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    CK(cudaLaunchKernelEx(&cfg, kern, args...));
  };
  const char* names[5] = {"A_merge_then_o", "Ap_merge_in_o_prologue", "B_fused", "floor_no_merge",
                          "Ap2_nsplit_before_wait"};
  for (int rows : {128, 512, 960}) {
    KilnStep hst = {};
    hst.n_tokens = 1;
    hst.pos0 = rows - 1;
    hst.top_p = 1.f;
    CK(cudaMemcpy(st, &hst, sizeof hst, cudaMemcpyHostToDevice));
    std::vector<std::vector<float>> outs;
    for (int v = 0; v < 5; ++v) {
      cudaGraph_t g;
      cudaGraphExec_t ge;
      CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
      for (int l = 0; l < LAYERS; ++l) {
        const u16 *k = kc + kv_elems * l, *vv = vc + kv_elems * l, *w = W + (size_t)H * H * l;
        const float* hin = hbuf + (size_t)l * H;
        float* hout = hbuf + (size_t)(l + 1) * H;
        if (v == 0) {
          launch(att_merge, dim3(NKV, S, 1), (const float*)q, k, vv, att, scratch, (const KilnStep*)st);
          launch(o_plain, dim3(OBLK), w, (const float*)att, hin, hout);
        } else if (v == 1) {
          launch(att_partials, dim3(NKV, S, 1), (const float*)q, k, vv, att, scratch, (const KilnStep*)st);
          launch(o_merge<false>, dim3(OBLK), w, (const float*)att, (const float*)scratch, (const KilnStep*)st, hin,
                 hout);
        } else if (v == 2) {
          launch(att_o_fused, dim3(NKV, S + OBLK / NKV, 1), (const float*)q, k, vv, att, scratch,
                 (const KilnStep*)st, w, hin, hout, consumed);
        } else if (v == 4) {
          launch(att_partials, dim3(NKV, S, 1), (const float*)q, k, vv, att, scratch, (const KilnStep*)st);
          launch(o_merge<true>, dim3(OBLK), w, (const float*)att, (const float*)scratch, (const KilnStep*)st, hin,
                 hout);
        } else {
          launch(att_partials, dim3(NKV, S, 1), (const float*)q, k, vv, att, scratch, (const KilnStep*)st);
          launch(o_plain, dim3(OBLK), w, (const float*)att, hin, hout);
        }
      }
      CK(cudaStreamEndCapture(s, &g));
      CK(cudaGraphInstantiate(&ge, g, 0));
      std::vector<double> t;
      for (int rep = 0; rep < 9; ++rep) {
        CK(cudaEventRecord(e0, s));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (rep >= 2) t.push_back(ms * 1e3 / LAYERS);
      }
      {  // the last layer's phase marks, ns after the first attention block passed its wait
        static unsigned long long am[S_][NKV_][6], om[OBLK_][7];
        std::memset(am, 0, sizeof am);
        std::memset(om, 0, sizeof om);
        CK(cudaMemcpyToSymbol(g_att_marks, am, sizeof am));
        CK(cudaMemcpyToSymbol(g_o_marks, om, sizeof om));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaStreamSynchronize(s));
        CK(cudaMemcpyFromSymbol(am, g_att_marks, sizeof am));
        CK(cudaMemcpyFromSymbol(om, g_o_marks, sizeof om));
        unsigned long long t0 = ~0ull;
        for (auto& a : am)
          for (auto& b : a)
            if (b[0]) t0 = std::min(t0, b[0]);
        auto span = [&](const char* what, auto get, int n) {  // min / max over the blocks that marked
          long long lo = -1, hi = -1;
          for (int i = 0; i < n; ++i) {
            const unsigned long long v = get(i);
            if (!v) continue;
            const long long d = (long long)(v - t0);
            lo = lo < 0 ? d : std::min(lo, d);
            hi = std::max(hi, d);
          }
          if (hi >= 0) std::printf(", \"%s\": [%lld, %lld]", what, lo, hi);
        };
        std::printf("{\"timeline\": \"%s\", \"rows\": %d", names[v], rows);
        const char* an[6] = {"att_past_wait", "att_tiles_done", "att_stored", "merge_start", "merge_loads_in",
                             "merge_done"};
        for (int i = 0; i < 6; ++i)
          span(an[i], [&](int b) { return am[b / NKV][b % NKV][i]; }, S * NKV);
        const char* on[7] = {"o_entry", "o_past_wait", "o_past_counters", "o_x_ready", "o_done", "o_ml_in",
                             "o_acc_in"};
        for (int i = 0; i < 7; ++i) span(on[i], [&](int b) { return om[b][i]; }, OBLK);
        std::printf("}\n");
      }
      std::vector<float> o(H);
      CK(cudaMemcpy(o.data(), hbuf + (size_t)LAYERS * H, H * 4, cudaMemcpyDeviceToHost));
      outs.push_back(o);
      std::printf("{\"variant\": \"%s\", \"rows\": %d, \"us_per_layer\": %.3f}\n", names[v], rows, median(t));
      std::fflush(stdout);
      CK(cudaGraphExecDestroy(ge));
      CK(cudaGraphDestroy(g));
    }
    for (int v : {1, 2, 4}) {
      double worst = 0;
      for (int i = 0; i < H; ++i)
        worst = std::max(worst, (double)std::fabs(outs[v][i] - outs[0][i]) / std::max(1e-3, (double)std::fabs(outs[0][i])));
      std::printf("{\"check\": \"%s vs A\", \"rows\": %d, \"max_rel_diff\": %.2e}\n", names[v], rows, worst);
    }
  }
  return 0;
}
