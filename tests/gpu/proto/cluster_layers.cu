// A feasibility prototype, not kiln code yet: every decoder layer of a
// SmolLM2-135M-shaped model (hidden 576, 9 query / 3 KV heads of 64, FFN
// 1536, 30 layers) run for one decode token by ONE thread-block cluster of 16
// CTAs in one launch. Activations stay in shared memory and move between CTAs
// through distributed shared memory; the five phase boundaries of a layer are
// cluster barriers instead of kernel boundaries; each CTA streams its own
// slice of every layer's weights (4-bit, scales pre-expanded, one bulk copy
// per segment) into shared memory a phase or more ahead. It measures how long
// a layer takes this way, against ~12.7 us per layer for five PDL kernels
// (docs/perf.md, session 18). Random weights and a CPU check of one layer's
// output (same math, fp32 accumulation) so the timing is of work done right.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -o cluster_layers tests/gpu/proto/cluster_layers.cu && ./cluster_layers
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "proto.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace cg = cooperative_groups;
typedef unsigned int u32;
typedef unsigned long long u64;

// ---- geometry ----
constexpr int H = 576, NH = 9, NKV = 3, HD = 64, FF = 1536, C = 16, T = 512, NW = T / 32;
constexpr int QKV = (NH + 2 * NKV) * HD;  // 960
constexpr int R_QKV = QKV / C, R_O = H / C, R_G = FF / C, R_D = H / C;  // 60, 36, 96 (x2: gate, up), 36
constexpr int KB_H = H / 32, KB_F = FF / 32;                           // 18, 48 blocks of 32
// a row: K/2 bytes of nibbles (block b: 16 bytes, element j low nibble of byte j%16 for j<16, high for j>=16),
// then K/32 float2 (scale d, min m): w = d * q + m
constexpr int ROW_H = H / 2 + KB_H * 8, ROW_F = FF / 2 + KB_F * 8;  // 432, 1152 bytes
constexpr int SEG_A = (R_QKV + R_O) * ROW_H;                         // qkv + o rows: 41,472
constexpr int SEG_G = 2 * R_G * ROW_H;                               // gate + up rows: 82,944
constexpr int SEG_D = R_D * ROW_F;                                   // down rows: 41,472
constexpr int SEG_ALL = SEG_A + SEG_G + SEG_D;                       // per CTA per layer
constexpr int SPLITS = 5;                                            // attention: (KV head, split) = CTA 0..14
constexpr int MAX_SPLIT_ROWS = 112;
constexpr float EPS = 1e-5f, THETA = 100000.f;

// ---- PTX helpers (bulk copy on an mbarrier) ----
__device__ __forceinline__ u32 sa(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(u64* b) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(sa(b)) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void mbar_expect(u64* b, u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sa(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk(void* dst, const void* src, u32 bytes, u64* b) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(sa(dst)),
               "l"(src), "r"(bytes), "r"(sa(b))
               : "memory");
}
__device__ __forceinline__ void mbar_wait(u64* b, u32 par) {
  u32 done = 0;
  do {
    asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
                 : "=r"(done)
                 : "r"(sa(b)), "r"(par)
                 : "memory");
  } while (!done);
}
__device__ __forceinline__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
__device__ __forceinline__ float wsum(float v) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float wmax(float v) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

struct Smem {
  alignas(128) unsigned char segA[SEG_A];
  alignas(128) unsigned char segG[SEG_G];
  alignas(128) unsigned char segD[SEG_D];
  alignas(16) __half kc[MAX_SPLIT_ROWS * HD], vc[MAX_SPLIT_ROWS * HD];  // this CTA's split of K and V rows
  alignas(16) float xa[H];         // residual stream (full, gathered) at layer start
  alignas(16) float xb[H];         // after attention (full, gathered)
  alignas(16) float xs[R_D];       // own slice of the layer output (phase E)
  alignas(16) float xbs[R_O];      // own slice after attention (phase C)
  alignas(16) float qkv[R_QKV];    // own qkv rows (after rope)
  alignas(16) float hs[R_G];       // own swiglu slice
  alignas(16) float part[3 * (HD + 2)];  // attention partial: per head of the group: m, l, acc[64]
  alignas(16) float att[H];        // merged attention output (full)
  alignas(16) float hbuf[FF];      // gathered swiglu (full)
  alignas(16) signed char xq[FF];  // int8 activations
  alignas(16) float xd[KB_F], xsum[KB_F];  // per block scale and d * sum(q)
  alignas(16) float wred[NW * 3 * (HD + 2)];
  float red[NW + 1];
  u64 bar[4];  // A, G, D, KV
};

// x[K] (smem) -> xq int8 per 32-block + xd, xsum (q8_1-like). One warp per block.
__device__ void quantize(const float* x, int K, Smem& s, int variant) {
  if (variant & 8) {  // a thread per block of 32: no shuffles
    const int b = threadIdx.x;
    if (b < K / 32) {
      float v[32];
      float amax = 0.f;
#pragma unroll
      for (int j = 0; j < 32; j += 4) {
        const float4 f = *reinterpret_cast<const float4*>(x + b * 32 + j);
        v[j] = f.x, v[j + 1] = f.y, v[j + 2] = f.z, v[j + 3] = f.w;
        amax = fmaxf(amax, fmaxf(fmaxf(fabsf(f.x), fabsf(f.y)), fmaxf(fabsf(f.z), fabsf(f.w))));
      }
      const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
      int qs = 0;
#pragma unroll
      for (int j = 0; j < 32; j += 4) {
        const int q0 = __float2int_rn(v[j] * id), q1 = __float2int_rn(v[j + 1] * id), q2 = __float2int_rn(v[j + 2] * id),
                  q3 = __float2int_rn(v[j + 3] * id);
        qs += q0 + q1 + q2 + q3;
        *reinterpret_cast<char4*>(s.xq + b * 32 + j) = make_char4((signed char)q0, (signed char)q1, (signed char)q2, (signed char)q3);
      }
      s.xd[b] = d;
      s.xsum[b] = d * (float)qs;
    }
    return;
  }
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  for (int b = w; b < K / 32; b += NW) {
    const float v = x[b * 32 + l];
    const float amax = wmax(fabsf(v));
    const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
    const int q = __float2int_rn(v * id);
    s.xq[b * 32 + l] = (signed char)q;
    const float qs = wsum((float)q);
    if (l == 0) {
      s.xd[b] = d;
      s.xsum[b] = d * qs;
    }
  }
}

// One block of 32: 16 nibble bytes against 32 int8 activations (low nibbles x elements 0..15,
// high nibbles x 16..31), summed in int32.
__device__ __forceinline__ int block_isum(uint4 wq, int4 xlo, int4 xhi) {
  int is = 0;
  is = __dp4a((int)(wq.x & 0x0F0F0F0Fu), xlo.x, is);
  is = __dp4a((int)(wq.y & 0x0F0F0F0Fu), xlo.y, is);
  is = __dp4a((int)(wq.z & 0x0F0F0F0Fu), xlo.z, is);
  is = __dp4a((int)(wq.w & 0x0F0F0F0Fu), xlo.w, is);
  is = __dp4a((int)((wq.x >> 4) & 0x0F0F0F0Fu), xhi.x, is);
  is = __dp4a((int)((wq.y >> 4) & 0x0F0F0F0Fu), xhi.y, is);
  is = __dp4a((int)((wq.z >> 4) & 0x0F0F0F0Fu), xhi.z, is);
  is = __dp4a((int)((wq.w >> 4) & 0x0F0F0F0Fu), xhi.w, is);
  return is;
}

// dot of rows [r0, r0 + n) of a weight segment (rows of K) with xq: warp per row, lanes over 16-byte words.
// out[r] = sum_b d_b * xd_b * sum(q * xq) + m_b * xsum_b
template <int K>
__device__ __forceinline__ float row_dot(const unsigned char* row, const Smem& s) {
  constexpr int KB = K / 32;
  const int l = threadIdx.x % 32;
  const float2* sc = reinterpret_cast<const float2*>(row + K / 2);
  float acc = 0.f;
  // lane handles blocks l, l + 32 (each block: 16 nibble bytes = 4 words)
  for (int b = l; b < KB; b += 32) {
    const uint4 wq = *reinterpret_cast<const uint4*>(row + b * 16);
    const int4 xlo = *reinterpret_cast<const int4*>(s.xq + b * 32);       // elements 0..15
    const int4 xhi = *reinterpret_cast<const int4*>(s.xq + b * 32 + 16);  // elements 16..31
    const int isum = block_isum(wq, xlo, xhi);
    const float2 dm = sc[b];
    acc += dm.x * s.xd[b] * (float)isum + dm.y * s.xsum[b];
  }
  return wsum(acc);
}

// two rows at once (independent chains and reductions interleave)
template <int K>
__device__ __forceinline__ float2 row_dot2(const unsigned char* ra, const unsigned char* rb, const Smem& s) {
  constexpr int KB = K / 32;
  const int l = threadIdx.x % 32;
  const float2* sa_ = reinterpret_cast<const float2*>(ra + K / 2);
  const float2* sb_ = reinterpret_cast<const float2*>(rb + K / 2);
  float acca = 0.f, accb = 0.f;
  for (int b = l; b < KB; b += 32) {
    const uint4 wa = *reinterpret_cast<const uint4*>(ra + b * 16);
    const uint4 wb = *reinterpret_cast<const uint4*>(rb + b * 16);
    const int4 xlo = *reinterpret_cast<const int4*>(s.xq + b * 32);
    const int4 xhi = *reinterpret_cast<const int4*>(s.xq + b * 32 + 16);
    const int ia = block_isum(wa, xlo, xhi), ib = block_isum(wb, xlo, xhi);  // two chains the scheduler interleaves
    const float2 da = sa_[b], db = sb_[b];
    const float xd = s.xd[b], xs = s.xsum[b];
    acca += da.x * xd * (float)ia + da.y * xs;
    accb += db.x * xd * (float)ib + db.y * xs;
  }
#pragma unroll
  for (int o = 16; o; o >>= 1) {
    acca += __shfl_xor_sync(0xffffffffu, acca, o);
    accb += __shfl_xor_sync(0xffffffffu, accb, o);
  }
  return make_float2(acca, accb);
}

// A thread's share of a row: blocks [b0, b1) of the row (K = 32 * blocks); no reduction.
__device__ __forceinline__ float part_dot(const unsigned char* row, int K, int b0, int b1, const Smem& s) {
  const float2* sc = reinterpret_cast<const float2*>(row + K / 2);
  float acc = 0.f;
  for (int b = b0; b < b1; ++b) {
    const uint4 wq = *reinterpret_cast<const uint4*>(row + b * 16);
    const int4 xlo = *reinterpret_cast<const int4*>(s.xq + b * 32);
    const int4 xhi = *reinterpret_cast<const int4*>(s.xq + b * 32 + 16);
    const int is = block_isum(wq, xlo, xhi);
    const float2 dm = sc[b];
    acc += dm.x * s.xd[b] * (float)is + dm.y * s.xsum[b];
  }
  return acc;
}
// Rows [0, R) of K, P threads per row (P a power of two <= 32 dividing the warp), each a contiguous
// share of the blocks, summed over the P lanes by shuffles. fn(row, value) for the row's first lane.
template <int K, int P, typename Row, typename Fn>
__device__ __forceinline__ void rows_by_parts(int R, Row row_ptr, Fn fn, const Smem& s) {
  constexpr int KB = K / 32, per = (KB + P - 1) / P;
  for (int u = threadIdx.x; u < ((R * P + 31) / 32) * 32; u += T) {
    const int rr = u / P, part = u % P;
    float v = 0.f;
    if (rr < R) v = part_dot(row_ptr(rr), K, min(KB, part * per), min(KB, part * per + per), s);
#pragma unroll
    for (int o = P / 2; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (rr < R && part == 0) fn(rr, v);
  }
}

// all-gather: full[i] for i in [0, n) from the CTA owning slice i / per (its `slice` array)
__device__ __forceinline__ void gather(cg::cluster_group& cl, float* full, float* slice, int n, int per) {
  for (int i = threadIdx.x * 4; i < n; i += T * 4) {  // per is a multiple of 4
    const int owner = i / per;
    const float4* src = reinterpret_cast<const float4*>(cl.map_shared_rank(slice, owner) + (i - owner * per));
    *reinterpret_cast<float4*>(full + i) = *src;
  }
}

__device__ float block_sum(float v, Smem& s) {
  v = wsum(v);
  if (threadIdx.x % 32 == 0) s.red[threadIdx.x / 32] = v;
  __syncthreads();
  float t = 0.f;
  for (int i = 0; i < NW; ++i) t += s.red[i];
  __syncthreads();
  return t;
}

struct Args {
  const unsigned char* w;  // [layer][cta][SEG_ALL]
  const float* gains;      // [layer][2][H]: attention norm, ffn norm
  __half* kcache;          // [layer][kv][ctx][HD]
  __half* vcache;
  int ctx, pos, layers;
  float* x_in;   // [H]
  float* x_out;  // [H]
  u64* stamps;   // [C][layers][8]: %globaltimer at phase ends (thread 0 of each CTA)
  int variant;   // bit 0: attention with a thread per (row, head) and per (head, dim); bit 1: GEMV rows two at a time;
                 // bit 2 (ablation): layer 0's weights reused by every layer (no weight stream after the first);
                 // bit 3: int8 quantisation a thread per block of 32;
                 // bit 4: GEMV rows split over 2-8 threads each (no per-row warp reduction)
};

__global__ void __cluster_dims__(C, 1, 1) __launch_bounds__(T, 1) layers_kernel(Args a) {
  extern __shared__ __align__(128) unsigned char smraw[];
  Smem& s = *reinterpret_cast<Smem*>(smraw);
  cg::cluster_group cl = cg::this_cluster();
  const int r = cl.block_rank(), tid = threadIdx.x, w = tid / 32, l = tid % 32;
  const int pos = a.pos, L = pos + 1;
  // attention split of this CTA
  const int kvh = r / SPLITS, sp = r % SPLITS;
  const bool att_cta = r < NKV * SPLITS;
  const int per_split = (L + SPLITS - 1) / SPLITS;
  const int j0 = min(L, sp * per_split), j1 = min(L, j0 + per_split);
  // rows among the cached ones (< pos) that come by bulk copy; the row at pos comes from its owner's smem
  const int c1 = min(j1, pos);
  const int cached = max(0, c1 - j0);

  if (tid == 0) {
    for (int i = 0; i < 4; ++i) mbar_init(&s.bar[i]);
  }
  __syncthreads();
  auto seg = [&](int layer) { return a.w + ((size_t)layer * C + r) * SEG_ALL; };
  u32 fillA = 0, fillG = 0, fillD = 0, fillKV = 0;
  if (tid == 0) {
    const unsigned char* g0 = seg(0);
    mbar_expect(&s.bar[0], SEG_A);
    bulk(s.segA, g0, SEG_A, &s.bar[0]);
    mbar_expect(&s.bar[1], SEG_G);
    bulk(s.segG, g0 + SEG_A, SEG_G, &s.bar[1]);
    mbar_expect(&s.bar[2], SEG_D);
    bulk(s.segD, g0 + SEG_A + SEG_G, SEG_D, &s.bar[2]);
  }
  for (int i = tid; i < H; i += T) s.xa[i] = a.x_in[i];
  for (int i = tid; i < R_D; i += T) s.xs[i] = a.x_in[r * R_D + i];
  cl.sync();

  auto stamp = [&](int layer, int k) {
    if (tid == 0 && a.stamps) {
      a.stamps[((size_t)r * a.layers + layer) * 8 + k] = gtime();
    }
  };
  for (int layer = 0; layer < a.layers; ++layer) {
    stamp(layer, 0);
    const float* g_att = a.gains + (size_t)layer * 2 * H;
    const float* g_ffn = g_att + H;
    const size_t kvoff = ((size_t)layer * NKV + kvh) * a.ctx * HD;
    // K/V rows of this CTA's split (cached positions) by bulk copy, landing during phase A
    if (att_cta && tid == 0 && cached > 0) {
      fence_async();  // phase B of the layer before read these bytes (ordered by the cluster barriers since)
      const u32 bytes = cached * HD * 2;
      mbar_expect(&s.bar[3], 2 * bytes);
      bulk(s.kc, a.kcache + kvoff + (size_t)j0 * HD, bytes, &s.bar[3]);
      bulk(s.vc, a.vcache + kvoff + (size_t)j0 * HD, bytes, &s.bar[3]);
    }
    // ---- phase A: gather x, RMS, quantize, QKV rows, rope, KV store ----
    if (layer > 0) gather(cl, s.xa, s.xs, H, R_D);
    __syncthreads();
    {
      float ss = 0.f;
      for (int i = tid; i < H; i += T) ss += s.xa[i] * s.xa[i];
      const float inv = rsqrtf(block_sum(ss, s) / H + EPS);
      for (int i = tid; i < H; i += T) s.xb[i] = s.xa[i] * inv * g_att[i];  // xb as scratch for the normed x
      __syncthreads();
      quantize(s.xb, H, s, a.variant);
      __syncthreads();
    }
    if (!(a.variant & 4) || layer == 0) mbar_wait(&s.bar[0], fillA & 1);
    if (a.variant & 16) {
      rows_by_parts<H, 4>(R_QKV, [&](int i) { return s.segA + i * ROW_H; }, [&](int i, float v) { s.qkv[i] = v; }, s);
    } else if (a.variant & 2) {
      for (int i = 2 * w; i < R_QKV; i += 2 * NW) {  // R_QKV even: rows i, i + 1
        const float2 v = row_dot2<H>(s.segA + i * ROW_H, s.segA + (i + 1) * ROW_H, s);
        if (l == 0) {
          s.qkv[i] = v.x;
          s.qkv[i + 1] = v.y;
        }
      }
    } else {
      for (int i = w; i < R_QKV; i += NW) {
        const float v = row_dot<H>(s.segA + i * ROW_H, s);
        if (l == 0) s.qkv[i] = v;
      }
    }
    __syncthreads();
    // rope on pairs (2i, 2i+1) of q and k rows (global row index g); store k, v rows at pos
    for (int i = tid; i < R_QKV / 2; i += T) {
      const int g = r * R_QKV + 2 * i;
      if (g < (NH + NKV) * HD) {
        const int d = g % HD;  // even
        const float ang = pos * powf(THETA, -(float)d / HD);
        float sn, cs;
        sincosf(ang, &sn, &cs);
        const float x0 = s.qkv[2 * i], x1 = s.qkv[2 * i + 1];
        s.qkv[2 * i] = x0 * cs - x1 * sn;
        s.qkv[2 * i + 1] = x0 * sn + x1 * cs;
      }
    }
    __syncthreads();
    for (int i = tid; i < R_QKV; i += T) {
      const int g = r * R_QKV + i;
      if (g >= NH * HD) {
        const bool isv = g >= (NH + NKV) * HD;
        const int off = g - (isv ? (NH + NKV) * HD : NH * HD);
        const int h = off / HD, d = off % HD;
        __half* cache = isv ? a.vcache : a.kcache;
        cache[(((size_t)layer * NKV + h) * a.ctx + pos) * HD + d] = __float2half_rn(s.qkv[i]);
        s.qkv[i] = __half2float(__float2half_rn(s.qkv[i]));  // attention reads the f16-rounded row
      }
    }
    stamp(layer, 1);
    cl.sync();  // #1: qkv rows visible cluster-wide
    stamp(layer, 2);
    // ---- phase B: attention partial for (kvh, split) over rows [j0, j1) ----
    if (att_cta) {
      // q of the 3 heads of this group: 192 values from their owners
      __shared__ float q[3 * HD];
      for (int i = tid; i < 3 * HD; i += T) {
        const int g = kvh * 3 * HD + i;
        q[i] = *(cl.map_shared_rank(s.qkv, g / R_QKV) + g % R_QKV);
      }
      // the row at pos (if in this split): k and v from their owners
      __shared__ float kcur[HD], vcur[HD];
      if (j1 > pos && pos >= j0) {
        for (int i = tid; i < 2 * HD; i += T) {
          const int g = (i < HD ? NH * HD : (NH + NKV) * HD) + kvh * HD + (i % HD);
          const float v = *(cl.map_shared_rank(s.qkv, g / R_QKV) + g % R_QKV);
          (i < HD ? kcur : vcur)[i % HD] = v;
        }
      }
      if (cached > 0) mbar_wait(&s.bar[3], fillKV & 1);
      __syncthreads();
      if (a.variant & 1) {
        // scores: a thread per (row, head); no shuffles
        const int n = j1 - j0;
        float* sc = s.wred;  // [3][MAX_SPLIT_ROWS] scores, then p
        const float scale = rsqrtf((float)HD);
        for (int t = tid; t < 3 * n; t += T) {
          const int j = t / 3, h = t % 3;
          const __half2* kr = reinterpret_cast<const __half2*>(j0 + j < pos ? s.kc + j * HD : nullptr);
          const float* qh = q + h * HD;
          float acc0 = 0.f, acc1 = 0.f;
          if (kr) {
#pragma unroll
            for (int e = 0; e < HD / 2; e += 2) {
              const float2 k0 = __half22float2(kr[e]), k1 = __half22float2(kr[e + 1]);
              acc0 += qh[2 * e] * k0.x + qh[2 * e + 1] * k0.y;
              acc1 += qh[2 * e + 2] * k1.x + qh[2 * e + 3] * k1.y;
            }
          } else {
#pragma unroll
            for (int e = 0; e < HD; e += 2) {
              acc0 += qh[e] * kcur[e];
              acc1 += qh[e + 1] * kcur[e + 1];
            }
          }
          sc[h * MAX_SPLIT_ROWS + j] = (acc0 + acc1) * scale;
        }
        __syncthreads();
        if (w < 3) {  // warp h: max and sum of head h
          float mx = -INFINITY;
          for (int j = l; j < n; j += 32) mx = fmaxf(mx, sc[w * MAX_SPLIT_ROWS + j]);
          mx = wmax(mx);
          float sum = 0.f;
          for (int j = l; j < n; j += 32) {
            const float p = __expf(sc[w * MAX_SPLIT_ROWS + j] - mx);
            sc[w * MAX_SPLIT_ROWS + j] = p;
            sum += p;
          }
          sum = wsum(sum);
          if (l == 0) {
            s.part[w * (HD + 2)] = n > 0 ? mx : -INFINITY;
            s.part[w * (HD + 2) + 1] = sum;
          }
        }
        __syncthreads();
        // p v: a thread per (head, dim, half of the rows); halves added through shared memory
        float* half_acc = s.wred + 3 * MAX_SPLIT_ROWS;
        if (tid < 2 * 3 * HD) {
          const int hf = tid / (3 * HD), hd = tid % (3 * HD), h = hd / HD, d = hd % HD;
          const int ja = hf * ((n + 1) / 2), jb = hf ? n : (n + 1) / 2;
          float acc = 0.f;
          for (int j = ja; j < jb; ++j) {
            const float v = j0 + j < pos ? __half2float(s.vc[j * HD + d]) : vcur[d];
            acc += sc[h * MAX_SPLIT_ROWS + j] * v;
          }
          half_acc[tid] = acc;
        }
        __syncthreads();
        if (tid < 3 * HD) s.part[(tid / HD) * (HD + 2) + 2 + tid % HD] = half_acc[tid] + half_acc[tid + 3 * HD];
      } else {
      // warp w takes rows j0 + w, + NW, ...; lane holds dims 2l, 2l+1; 3 heads
      float m[3] = {-INFINITY, -INFINITY, -INFINITY}, ls[3] = {0.f, 0.f, 0.f}, acc[3][2] = {};
      const float scale = rsqrtf((float)HD);
      for (int j = j0 + w; j < j1; j += NW) {
        float2 kk, vv;
        if (j < pos) {
          kk = __half22float2(reinterpret_cast<const __half2*>(s.kc + (j - j0) * HD)[l]);
          vv = __half22float2(reinterpret_cast<const __half2*>(s.vc + (j - j0) * HD)[l]);
        } else {
          kk = make_float2(kcur[2 * l], kcur[2 * l + 1]);
          vv = make_float2(vcur[2 * l], vcur[2 * l + 1]);
        }
#pragma unroll
        for (int h = 0; h < 3; ++h) {
          const float sc = wsum(q[h * HD + 2 * l] * kk.x + q[h * HD + 2 * l + 1] * kk.y) * scale;
          const float mn = fmaxf(m[h], sc);
          const float corr = __expf(m[h] - mn), p = __expf(sc - mn);
          ls[h] = ls[h] * corr + p;
          acc[h][0] = acc[h][0] * corr + p * vv.x;
          acc[h][1] = acc[h][1] * corr + p * vv.y;
          m[h] = mn;
        }
      }
      // combine warps
#pragma unroll
      for (int h = 0; h < 3; ++h) {
        float* o = s.wred + (w * 3 + h) * (HD + 2);
        if (l == 0) {
          o[0] = m[h];
          o[1] = ls[h];
        }
        o[2 + 2 * l] = acc[h][0];
        o[3 + 2 * l] = acc[h][1];
      }
      __syncthreads();
      for (int i = tid; i < 3 * (HD + 2); i += T) {
        const int h = i / (HD + 2), e = i % (HD + 2);
        float M = -INFINITY;
        for (int ww = 0; ww < NW; ++ww) M = fmaxf(M, s.wred[(ww * 3 + h) * (HD + 2)]);
        float v = 0.f;
        for (int ww = 0; ww < NW; ++ww) {
          const float* o = s.wred + (ww * 3 + h) * (HD + 2);
          const float f = o[0] == -INFINITY ? 0.f : __expf(o[0] - M);
          v += (e == 0 ? 0.f : f * o[e]);
        }
        s.part[i] = e == 0 ? M : v;
      }
      }  // variant
    }
    if (att_cta && cached > 0) ++fillKV;  // uniform in the CTA
    stamp(layer, 3);
    cl.sync();  // #2: partials visible
    stamp(layer, 4);
    // ---- phase C: merge 5 splits x 9 heads, quantize, o rows + residual ----
    for (int i = tid; i < NH * HD; i += T) {
      const int qh = i / HD, d = i % HD, g = qh / 3, hh = qh % 3;
      float M = -INFINITY;
      float pm[SPLITS], pl[SPLITS], pa[SPLITS];
#pragma unroll
      for (int sp2 = 0; sp2 < SPLITS; ++sp2) {
        const float* p = cl.map_shared_rank(s.part, g * SPLITS + sp2) + hh * (HD + 2);
        pm[sp2] = p[0];
        pl[sp2] = p[1];
        pa[sp2] = p[2 + d];
        M = fmaxf(M, pm[sp2]);
      }
      float num = 0.f, den = 0.f;
#pragma unroll
      for (int sp2 = 0; sp2 < SPLITS; ++sp2) {
        const float f = pm[sp2] == -INFINITY ? 0.f : __expf(pm[sp2] - M);
        num += f * pa[sp2];
        den += f * pl[sp2];
      }
      s.att[i] = num / den;
    }
    __syncthreads();
    quantize(s.att, H, s, a.variant);
    __syncthreads();
    if (a.variant & 16) {
      rows_by_parts<H, 8>(R_O, [&](int i) { return s.segA + (R_QKV + i) * ROW_H; },
                          [&](int i, float v) { s.xbs[i] = s.xa[r * R_O + i] + v; }, s);
    } else {
      for (int i = w; i < R_O; i += NW) {
        const float v = row_dot<H>(s.segA + (R_QKV + i) * ROW_H, s);
        if (l == 0) s.xbs[i] = s.xa[r * R_O + i] + v;
      }
    }
    __syncthreads();
    // segA is free: fetch the next layer's qkv + o rows
    if (tid == 0 && layer + 1 < a.layers && !(a.variant & 4)) {
      fence_async();
      mbar_expect(&s.bar[0], SEG_A);
      bulk(s.segA, seg(layer + 1), SEG_A, &s.bar[0]);
    }
    ++fillA;
    stamp(layer, 5);
    cl.sync();  // #3
    // ---- phase D: gather xb, RMS, quantize, gate/up rows, swiglu ----
    gather(cl, s.xb, s.xbs, H, R_O);
    __syncthreads();
    {
      float ss = 0.f;
      for (int i = tid; i < H; i += T) ss += s.xb[i] * s.xb[i];
      const float inv = rsqrtf(block_sum(ss, s) / H + EPS);
      for (int i = tid; i < H; i += T) s.att[i] = s.xb[i] * inv * g_ffn[i];
      __syncthreads();
      quantize(s.att, H, s, a.variant);
      __syncthreads();
    }
    if (!(a.variant & 4) || layer == 0) mbar_wait(&s.bar[1], fillG & 1);
    if (a.variant & 16) {
      // gate rows 0..R_G-1, up rows R_G..2R_G-1 as 2R_G rows; swiglu after both are stored
      rows_by_parts<H, 2>(2 * R_G, [&](int i) { return s.segG + i * ROW_H; }, [&](int i, float v) { s.att[i] = v; }, s);
      __syncthreads();
      for (int i = tid; i < R_G; i += T) {
        const float gt = s.att[i], up = s.att[R_G + i];
        s.hs[i] = gt / (1.f + __expf(-gt)) * up;
      }
    } else
    for (int i = w; i < R_G; i += NW) {
      float gt, up;
      if (a.variant & 2) {
        const float2 v = row_dot2<H>(s.segG + i * ROW_H, s.segG + (R_G + i) * ROW_H, s);
        gt = v.x;
        up = v.y;
      } else {
        gt = row_dot<H>(s.segG + i * ROW_H, s);
        up = row_dot<H>(s.segG + (R_G + i) * ROW_H, s);
      }
      if (l == 0) s.hs[i] = gt / (1.f + __expf(-gt)) * up;
    }
    __syncthreads();
    if (tid == 0 && layer + 1 < a.layers && !(a.variant & 4)) {
      fence_async();
      mbar_expect(&s.bar[1], SEG_G);
      bulk(s.segG, seg(layer + 1) + SEG_A, SEG_G, &s.bar[1]);
    }
    ++fillG;
    stamp(layer, 6);
    cl.sync();  // #4
    // ---- phase E: gather h, quantize, down rows + residual ----
    gather(cl, s.hbuf, s.hs, FF, R_G);
    __syncthreads();
    quantize(s.hbuf, FF, s, a.variant);
    __syncthreads();
    if (!(a.variant & 4) || layer == 0) mbar_wait(&s.bar[2], fillD & 1);
    if (a.variant & 16) {
      rows_by_parts<FF, 8>(R_D, [&](int i) { return s.segD + i * ROW_F; },
                           [&](int i, float v) { s.xs[i] = s.xb[r * R_D + i] + v; }, s);
    } else {
      for (int i = w; i < R_D; i += NW) {
        const float v = row_dot<FF>(s.segD + i * ROW_F, s);
        if (l == 0) s.xs[i] = s.xb[r * R_D + i] + v;
      }
    }
    __syncthreads();
    if (tid == 0 && layer + 1 < a.layers && !(a.variant & 4)) {
      fence_async();
      mbar_expect(&s.bar[2], SEG_D);
      bulk(s.segD, seg(layer + 1) + SEG_A + SEG_G, SEG_D, &s.bar[2]);
    }
    ++fillD;
    stamp(layer, 7);
    cl.sync();  // #5
  }
  for (int i = tid; i < R_D; i += T) a.x_out[r * R_D + i] = s.xs[i];
}

// ---------------- host ----------------
static float h2f_host(__half h) { return __half2float(h); }

// CPU reference of layer 0 with the same roundings (int8 activations per 32, f16 K/V rows).
static void quant_ref(const std::vector<float>& x, std::vector<int>& q, std::vector<float>& d, std::vector<float>& sq) {
  const int KB = int(x.size()) / 32;
  q.assign(x.size(), 0);
  d.assign(KB, 0);
  sq.assign(KB, 0);
  for (int b = 0; b < KB; ++b) {
    float am = 0;
    for (int j = 0; j < 32; ++j) am = std::max(am, std::fabs(x[b * 32 + j]));
    const float dd = am / 127.f, id = dd > 0 ? 1.f / dd : 0.f;
    int s = 0;
    for (int j = 0; j < 32; ++j) {
      q[b * 32 + j] = int(std::nearbyint(x[b * 32 + j] * id));
      s += q[b * 32 + j];
    }
    d[b] = dd;
    sq[b] = dd * s;
  }
}
static float dot_ref(const unsigned char* row, int K, const std::vector<int>& q, const std::vector<float>& d,
                     const std::vector<float>& sq) {
  const float* sc = reinterpret_cast<const float*>(row + K / 2);
  double acc = 0;
  for (int b = 0; b < K / 32; ++b) {
    int is = 0;
    for (int j = 0; j < 16; ++j) {
      const unsigned char byte = row[b * 16 + j];
      is += (byte & 15) * q[b * 32 + j] + (byte >> 4) * q[b * 32 + 16 + j];
    }
    acc += double(sc[2 * b]) * d[b] * is + double(sc[2 * b + 1]) * sq[b];
  }
  return float(acc);
}

int main(int argc, char** argv) {
  const int layers = 30, ctx = 640;
  const int pos = argc > 1 ? std::atoi(argv[1]) : 512;
  const int variant = argc > 2 ? std::atoi(argv[2]) : 0;
  if (pos + 1 > SPLITS * MAX_SPLIT_ROWS || pos >= ctx) {
    std::fprintf(stderr, "pos too large for this prototype\n");
    return 1;
  }
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> nib(0, 255);
  std::normal_distribution<float> nd(0.f, 1.f);
  const size_t wbytes = (size_t)layers * C * SEG_ALL;
  std::vector<unsigned char> w(wbytes);
  // rows: nibbles random, scales d ~ 0.02, m = -8 d (zero-centred weights)
  auto fill_rows = [&](unsigned char* p, int rows, int K) {
    const int rb = K / 2 + K / 32 * 8;
    for (int i = 0; i < rows; ++i) {
      unsigned char* row = p + (size_t)i * rb;
      for (int j = 0; j < K / 2; ++j) row[j] = (unsigned char)nib(rng);
      float* sc = reinterpret_cast<float*>(row + K / 2);
      for (int b = 0; b < K / 32; ++b) {
        const float d = 0.02f * (1.f + 0.1f * nd(rng)) * (K == FF ? 0.6f : 1.f);
        sc[2 * b] = d;
        sc[2 * b + 1] = -8.f * d;
      }
    }
  };
  for (int l = 0; l < layers; ++l)
    for (int c = 0; c < C; ++c) {
      unsigned char* s = w.data() + ((size_t)l * C + c) * SEG_ALL;
      fill_rows(s, R_QKV + R_O, H);
      fill_rows(s + SEG_A, 2 * R_G, H);
      fill_rows(s + SEG_A + SEG_G, R_D, FF);
    }
  std::vector<float> gains((size_t)layers * 2 * H);
  for (auto& g : gains) g = 1.f + 0.1f * nd(rng);
  std::vector<float> x(H);
  for (auto& v : x) v = nd(rng);
  std::vector<__half> kc((size_t)layers * NKV * ctx * HD), vc(kc.size());
  for (size_t i = 0; i < kc.size(); ++i) {
    kc[i] = __float2half(0.5f * nd(rng));
    vc[i] = __float2half(nd(rng));
  }

  unsigned char* dw;
  float *dg, *dx, *dy;
  __half *dk, *dv;
  CK(cudaMalloc(&dw, wbytes));
  CK(cudaMalloc(&dg, gains.size() * 4));
  CK(cudaMalloc(&dx, H * 4));
  CK(cudaMalloc(&dy, H * 4));
  CK(cudaMalloc(&dk, kc.size() * 2));
  CK(cudaMalloc(&dv, vc.size() * 2));
  CK(cudaMemcpy(dw, w.data(), wbytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dg, gains.data(), gains.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dx, x.data(), H * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dk, kc.data(), kc.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dv, vc.data(), vc.size() * 2, cudaMemcpyHostToDevice));
  const int smem = sizeof(Smem);
  CK(cudaFuncSetAttribute(layers_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  CK(cudaFuncSetAttribute(layers_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  std::printf("{\"smem_bytes\": %d, \"weights_per_layer\": %d, \"pos\": %d, \"variant\": %d}\n", smem, C * SEG_ALL, pos, variant);

  // correctness: one layer, against the CPU (same roundings)
  {
    Args a{dw, dg, dk, dv, ctx, pos, 1, dx, dy, nullptr, variant};
    layers_kernel<<<C, T, smem>>>(a);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<float> y(H);
    CK(cudaMemcpy(y.data(), dy, H * 4, cudaMemcpyDeviceToHost));
    // reference
    std::vector<int> q;
    std::vector<float> d, sq;
    std::vector<float> xn(H);
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const float inv = 1.f / std::sqrt(float(ss / H) + EPS);
    for (int i = 0; i < H; ++i) xn[i] = x[i] * inv * gains[i];
    quant_ref(xn, q, d, sq);
    std::vector<float> qkv(QKV);
    for (int g = 0; g < QKV; ++g) {
      const int c = g / R_QKV, i = g % R_QKV;
      qkv[g] = dot_ref(w.data() + (size_t)c * SEG_ALL + (size_t)i * ROW_H, H, q, d, sq);
    }
    for (int g = 0; g < (NH + NKV) * HD; g += 2) {
      const int dd = g % HD;
      const float ang = pos * std::pow(THETA, -float(dd) / HD);
      const float x0 = qkv[g], x1 = qkv[g + 1];
      qkv[g] = x0 * std::cos(ang) - x1 * std::sin(ang);
      qkv[g + 1] = x0 * std::sin(ang) + x1 * std::cos(ang);
    }
    for (int g = NH * HD; g < QKV; ++g) qkv[g] = h2f_host(__float2half(qkv[g]));
    std::vector<float> att(H);
    for (int qh = 0; qh < NH; ++qh) {
      const int kvh = qh / 3;
      std::vector<double> sc(pos + 1);
      double mx = -1e30;
      for (int j = 0; j <= pos; ++j) {
        double s = 0;
        for (int e = 0; e < HD; ++e) {
          const float kv = j < pos ? h2f_host(kc[((size_t)kvh * ctx + j) * HD + e]) : qkv[NH * HD + kvh * HD + e];
          s += double(qkv[qh * HD + e]) * kv;
        }
        sc[j] = s / std::sqrt(double(HD));
        mx = std::max(mx, sc[j]);
      }
      double den = 0;
      for (auto& v : sc) den += (v = std::exp(v - mx));
      for (int e = 0; e < HD; ++e) {
        double num = 0;
        for (int j = 0; j <= pos; ++j)
          num += sc[j] * (j < pos ? h2f_host(vc[((size_t)kvh * ctx + j) * HD + e]) : qkv[(NH + NKV) * HD + kvh * HD + e]);
        att[qh * HD + e] = float(num / den);
      }
    }
    quant_ref(att, q, d, sq);
    std::vector<float> xb(H);
    for (int g = 0; g < H; ++g) {
      const int c = g / R_O, i = g % R_O;
      xb[g] = x[g] + dot_ref(w.data() + (size_t)c * SEG_ALL + (size_t)(R_QKV + i) * ROW_H, H, q, d, sq);
    }
    ss = 0;
    for (float v : xb) ss += double(v) * v;
    const float inv2 = 1.f / std::sqrt(float(ss / H) + EPS);
    for (int i = 0; i < H; ++i) xn[i] = xb[i] * inv2 * gains[H + i];
    quant_ref(xn, q, d, sq);
    std::vector<float> hh(FF);
    for (int g = 0; g < FF; ++g) {
      const int c = g / R_G, i = g % R_G;
      const unsigned char* sg = w.data() + (size_t)c * SEG_ALL + SEG_A;
      const float gt = dot_ref(sg + (size_t)i * ROW_H, H, q, d, sq), up = dot_ref(sg + (size_t)(R_G + i) * ROW_H, H, q, d, sq);
      hh[g] = gt / (1.f + std::exp(-gt)) * up;
    }
    quant_ref(hh, q, d, sq);
    double num = 0, den = 0;
    for (int g = 0; g < H; ++g) {
      const int c = g / R_D, i = g % R_D;
      const float ref = xb[g] + dot_ref(w.data() + (size_t)c * SEG_ALL + SEG_A + SEG_G + (size_t)i * ROW_F, FF, q, d, sq);
      num += double(y[g] - ref) * (y[g] - ref);
      den += double(ref) * ref;
    }
    std::printf("{\"check\": \"layer 0 vs CPU\", \"rel_err\": %.3e, \"ref_rms\": %.3f}\n", std::sqrt(num / den),
                std::sqrt(den / H));
  }
  // timing: all layers, one launch per token, median of 50 after 10 warm-ups
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int nl : {1, layers}) {
    Args a{dw, dg, dk, dv, ctx, pos, nl, dx, dy, nullptr, variant};
    std::vector<float> ms;
    for (int it = 0; it < 60; ++it) {
      CK(cudaEventRecord(e0));
      layers_kernel<<<C, T, smem>>>(a);
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float t;
      CK(cudaEventElapsedTime(&t, e0, e1));
      if (it >= 10) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    // a graph of back-to-back launches, to take the launch out
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int k = 0; k < 20; ++k) layers_kernel<<<C, T, smem, st>>>(a);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, st));
    CK(cudaStreamSynchronize(st));
    std::vector<float> gm;
    for (int it = 0; it < 7; ++it) {
      CK(cudaEventRecord(e0, st));
      CK(cudaGraphLaunch(ge, st));
      CK(cudaEventRecord(e1, st));
      CK(cudaEventSynchronize(e1));
      float t;
      CK(cudaEventElapsedTime(&t, e0, e1));
      gm.push_back(t / 20);
    }
    std::sort(gm.begin(), gm.end());
    std::printf("{\"layers\": %d, \"pos\": %d, \"ms_per_launch_p50\": %.4f, \"ms_per_launch_in_graph\": %.4f, \"us_per_layer\": %.2f}\n",
                nl, pos, ms[ms.size() / 2], gm[3], gm[3] * 1e3 / nl);
  }
  // phase timeline of one 30-layer launch: median over layers 1.. of each phase (us), CTA 0 and the slowest CTA
  {
    u64* st;
    CK(cudaMallocManaged(&st, sizeof(u64) * C * layers * 8));
    Args a{dw, dg, dk, dv, ctx, pos, layers, dx, dy, st, variant};
    layers_kernel<<<C, T, smem>>>(a);
    CK(cudaDeviceSynchronize());
    const char* names[8] = {"A: gather, rms, qkv, rope, store", "barrier 1", "B: attention split", "barrier 2",
                            "C: merge, o + residual", "D: gather, rms, gate/up", "E: gather, down + residual", "barrier 5 + next"};
    for (int k = 0; k < 8; ++k) {
      std::vector<double> v0, vmax;
      for (int l = 1; l < layers; ++l) {
        auto at = [&](int c, int kk, int ll) { return st[((size_t)c * layers + ll) * 8 + kk]; };
        auto dur = [&](int c) {
          const u64 b = at(c, k, l);
          const u64 e = k < 7 ? at(c, k + 1, l) : at(c, 0, std::min(l + 1, layers - 1));
          return (e > b ? e - b : 0) / 1e3;
        };
        v0.push_back(dur(0));
        double mx = 0;
        for (int c = 0; c < C; ++c) mx = std::max(mx, dur(c));
        vmax.push_back(mx);
      }
      std::sort(v0.begin(), v0.end());
      std::sort(vmax.begin(), vmax.end());
      std::printf("{\"phase\": \"%s\", \"us_cta0\": %.2f, \"us_slowest_cta\": %.2f}\n", names[k], v0[v0.size() / 2],
                  vmax[vmax.size() / 2]);
    }
  }
  return 0;
}
