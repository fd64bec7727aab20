// sample.cuh: lm_head_sample = last row, rms_norm, LM head (GEMV into the
// logits buffer), then sampling.
// Greedy (temperature <= 0; argmax, lowest index on ties) is fully parallel:
// every block reduces its logits to one 64-bit key (ordered float bits << 32 |
// ~index) and merges it with atomicMax into step->pad[1..2] (8-aligned: the
// Step block is 16-aligned in the arena and pad[1] is at byte 40); the last
// block to finish (completion counter in step->pad[0]) decodes the key and
// resets both words to 0. Non-greedy sampling runs in that last block over
// the whole logits buffer: softmax(logits / T) restricted to the top-k logits
// (top_k > 0) and then to the smallest top set with probability mass >= top_p
// (top_p < 1). Both cuts are value thresholds found by bisection (ties at a
// cut are all kept). The draw uses splitmix64(seed ^ step * golden) -> u in
// [0, 1), and the token is the first in index order whose inclusive prefix
// mass exceeds u * mass.
#pragma once
#include "gemv.cuh"


__device__ __forceinline__ int argmax_key_index(u64 key) { return (int)(0xFFFFFFFFu - (u32)(key & 0xFFFFFFFFull)); }
__device__ __forceinline__ u64 warp_max_u64(u64 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const u64 w = __shfl_xor_sync(0xFFFFFFFFu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
// Block-wide max of a key; every thread gets it.
__device__ __forceinline__ u64 block_max_u64(u64 v) {
  __shared__ u64 kred[33];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max_u64(v);
  __syncthreads();
  if (lane == 0) kred[w] = v;
  __syncthreads();
  if (w == 0) {
    u64 s = lane < nw ? kred[lane] : 0ull;
    s = warp_max_u64(s);
    if (lane == 0) kred[32] = s;
  }
  __syncthreads();
  return kred[32];
}
__device__ __forceinline__ u64* step_key(KilnStep* step) { return &step->greedy_key; }

__device__ __forceinline__ u64 splitmix64(u64 z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}


__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  if (w == 0) {
    float s = lane < nw ? red[lane] : -INFINITY;
    s = warp_max(s);
    if (lane == 0) red[32] = s;
  }
  __syncthreads();
  return red[32];
}

// Whole block: returns the sampled token id over logits[0..V).
__device__ int sample_block(const float* logits, int V, const KilnStep* step) {
  __shared__ float red[33];
  __shared__ float part[kSampleThreads];
  __shared__ int found;
  const int tid = threadIdx.x, nthr = blockDim.x;
  float mx = -INFINITY, mn = INFINITY;
  for (int i = tid; i < V; i += nthr) {
    const float v = __ldcg(logits + i);
    mx = fmaxf(mx, v);
    mn = fminf(mn, v);
  }
  mx = block_max(mx, red);
  mn = -block_max(-mn, red);
  // argmax (lowest index among the maxima)
  int bi = V;
  for (int i = tid; i < V; i += nthr)
    if (__ldcg(logits + i) == mx) { bi = i; break; }
  bi = -(int)block_max(-(float)bi, red);  // exact for V < 2^24
  const float temp = step->temperature;
  if (!(temp > 0.f) || bi >= V) return bi >= V ? 0 : bi;
  const float invt = 1.0f / temp;
  float thr = mn;
  const int k = step->top_k;
  if (k > 0 && k < V) {  // largest thr with count(l >= thr) >= k
    float lo = mn, hi = mx;
    for (int it = 0; it < 40 && lo < hi; ++it) {
      const float mid = lo + (hi - lo) * 0.5f;
      if (mid <= lo || mid >= hi) break;
      float c = 0.f;
      for (int i = tid; i < V; i += nthr) c += __ldcg(logits + i) >= mid ? 1.f : 0.f;
      c = block_sum(c, red);
      if (c >= (float)k) lo = mid; else hi = mid;
    }
    thr = lo;
  }
  float z = 0.f;
  for (int i = tid; i < V; i += nthr) {
    const float v = __ldcg(logits + i);
    if (v >= thr) z += expf((v - mx) * invt);
  }
  z = block_sum(z, red);
  const float p = step->top_p;
  if (p < 1.f) {  // largest thr' >= thr with mass(l >= thr') >= p * z
    float lo = thr, hi = mx;
    for (int it = 0; it < 40 && lo < hi; ++it) {
      const float mid = lo + (hi - lo) * 0.5f;
      if (mid <= lo || mid >= hi) break;
      float s = 0.f;
      for (int i = tid; i < V; i += nthr) {
        const float v = __ldcg(logits + i);
        if (v >= mid) s += expf((v - mx) * invt);
      }
      s = block_sum(s, red);
      if (s >= p * z) lo = mid; else hi = mid;
    }
    // mass at hi may still reach p (the top value alone); prefer the tighter cut
    float s = 0.f;
    for (int i = tid; i < V; i += nthr) {
      const float v = __ldcg(logits + i);
      if (v >= hi) s += expf((v - mx) * invt);
    }
    s = block_sum(s, red);
    thr = s >= p * z ? hi : lo;
  }
  // mass of the kept set, per contiguous segment of the vocab
  const int seg = (V + nthr - 1) / nthr;
  const int b0 = tid * seg, b1 = min(V, b0 + seg);
  float ps = 0.f;
  for (int i = b0; i < b1; ++i) {
    const float v = __ldcg(logits + i);
    if (v >= thr) ps += expf((v - mx) * invt);
  }
  part[tid] = ps;
  if (tid == 0) found = -1;
  __syncthreads();
  const u64 seed = ((u64)step->seed_hi << 32) | step->seed_lo;
  const u64 rnd = splitmix64(seed ^ ((u64)step->step * 0xD1B54A32D192ED03ull));
  const float u = (float)(rnd >> 40) * (1.0f / 16777216.0f);
  float pre = 0.f, total = 0.f;
  for (int i = 0; i < nthr; ++i) { if (i < tid) pre += part[i]; total += part[i]; }
  const float target = u * total;
  if (ps > 0.f && target >= pre && target < pre + ps) {
    float run = pre;
    int pick = -1, lastk = -1;
    for (int i = b0; i < b1; ++i) {
      const float v = __ldcg(logits + i);
      if (v >= thr) {
        lastk = i;
        run += expf((v - mx) * invt);
        if (target < run) { pick = i; break; }
      }
    }
    atomicMax(&found, pick >= 0 ? pick : lastk);
  }
  __syncthreads();
  return found >= 0 ? found : bi;
}

// Merges this block's key, counts the block done; returns true in the last
// block (every thread), after which all blocks' logits and keys are visible.
__device__ __forceinline__ bool merge_and_count(KilnStep* step, u64 key) {
  __shared__ int is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    atomicMax(step_key(step), key);
    __threadfence();
    is_last = atomicAdd(&step->sample_done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (is_last) __threadfence();
  return is_last;
}
// Last block: the token (greedy from the merged key, else sample_block), written
// to out, step->out_token and tokens[0]; the counter and key are reset.
__device__ __forceinline__ void finish_sample(const float* logits, int V, i32* out, i32* tokens, KilnStep* step) {
  __shared__ int tok_s;
  const float temp = step->temperature;
  if (threadIdx.x == 0) {
    const u64 key = atomicExch(step_key(step), 0ull);
    const int bi = argmax_key_index(key);
    tok_s = key == 0ull || bi < 0 || bi >= V ? 0 : bi;
  }
  __syncthreads();
  int tok = tok_s;
  if (temp > 0.f) tok = sample_block(logits, V, step);
  __syncthreads();  // every read of *step (sample_block's step, temperature) is done
  if (threadIdx.x == 0) {
    out[0] = tok;
    step->out_token = tok;
    if (tokens) tokens[0] = tok;
    step->sample_done = 0;
    const unsigned ring = step->ring;
    if (ring != 0u) {  // device_step (schemas/kiln_step.h): hand the token to the host, advance the block
      const unsigned s = step->step;
      reinterpret_cast<volatile int*>(step->host_tokens)[s & (ring - 1u)] = tok;
      step->pos0 += step->n_tokens;
      step->n_tokens = 1;
      step->step = s + 1u;
    }
  }
}

// Every thread's argmax key of the logits it stored -> the block's, merged
// across blocks; the last block samples.
__device__ __forceinline__ void sample_with_keys(u64 key, const float* logits, int V, i32* out, i32* tokens,
                                                 KilnStep* step) {
  key = block_max_u64(key);
  if (!merge_and_count(step, key)) return;
  finish_sample(logits, V, out, tokens, step);
}

// Launch: block 32*kGemvWarps; grid ceil(V / ((kGemvWarps / SPLIT) * R)), or
// with XQ (int8 activations) any grid (mm_gemv_xq: blocks loop over column
// groups; each thread that stores a logit keeps the argmax key of those it
// stored, and the block reduces them).
template <int DT, int GDT, int SPLIT, int R = 1, int L = 0, int XQ = 0>
__device__ __forceinline__ void k_lm_head_sample(const float* __restrict__ x, const void* __restrict__ g,
                                                 const u8* __restrict__ w, i32* __restrict__ out,
                                                 float* __restrict__ logits, i32* __restrict__ tokens,
                                                 KilnStep* step, int K, int V, float eps) {
  const int nt = step->n_tokens;
  if (nt <= 0) return;
  if constexpr (XQ != 0) {
    u64 key = 0ull;
    mm_gemv_xq<DT, GDT, MM_RMS, 1, SPLIT, R, L>(x + (i64)(nt - 1) * K, g, w, nullptr, logits, 1, K, V, eps, &key,
                                                GemvSlice{0, 0, 0});
    sample_with_keys(key, logits, V, out, tokens, step);
    return;
  }
  __shared__ float ys[kGemvWarps * R];  // <= 32 (R <= 8)
  mm_gemv<DT, GDT, MM_RMS, 1, SPLIT, R, L, 0>(x + (i64)(nt - 1) * K, g, w, nullptr, logits, 1, K, V, eps, ys);
  __syncthreads();
  const int rows = (kGemvWarps / SPLIT) * R, n0 = blockIdx.x * rows;
  u64 key = 0ull;
  if (threadIdx.x < 32) {
    if (threadIdx.x < rows && n0 + (int)threadIdx.x < V) key = argmax_key(ys[threadIdx.x], n0 + threadIdx.x);
    key = warp_max_u64(key);
  }
  if (!merge_and_count(step, key)) return;
  finish_sample(logits, V, out, tokens, step);
}

// The same on sm_90's bulk-copy GEMV (mm_gemv_bulk; int8 activations, or
// f32 ones on F16/BF16 weights):
// block 32*NW with NW = kGemvWarps (the sampling step's block), grid and
// dynamic shared memory from gemv_bulk_geometry. The entry waits for the
// previous kernel first (the row read depends on the step), so unlike the
// GEMV family's bulk kernels no weight copy starts before that.
template <int DT, int GDT, int R, int S, int L, int KS>
__device__ __forceinline__ void k_lm_head_sample_bulk(const float* __restrict__ x, const void* __restrict__ g,
                                                      const u8* __restrict__ w, i32* __restrict__ out,
                                                      float* __restrict__ logits, i32* __restrict__ tokens,
                                                      KilnStep* step, int K, int V, float eps) {
  const int nt = step->n_tokens;
  if (nt <= 0) return;
  u64 key = 0ull;
  mm_gemv_bulk<DT, GDT, MM_RMS, 1, R, S, L, KS>(x + (i64)(nt - 1) * K, g, w, nullptr, logits, 1, K, V, eps, &key);
  sample_with_keys(key, logits, V, out, tokens, step);
}

// Sampling after an unfused LM head (eager programs; IR argmax): the last valid
// row of x[R, N] (row 0 when R == 1). Launch: any grid (blocks take strided
// chunks of the row), block kSampleThreads.
__device__ __forceinline__ void k_sample_rows(const float* __restrict__ x, i32* __restrict__ out,
                                              i32* __restrict__ tokens, KilnStep* step, int R, int N) {
  const int nt = step->n_tokens;
  const int row = R == 1 ? 0 : (nt > 0 ? min(nt, R) - 1 : 0);
  const float* xr = x + (i64)row * N;
  u64 key = 0ull;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x) {
    const u64 k = argmax_key(xr[i], i);
    key = k > key ? k : key;
  }
  key = block_max_u64(key);
  if (!merge_and_count(step, key)) return;
  finish_sample(xr, N, out, tokens, step);
}
