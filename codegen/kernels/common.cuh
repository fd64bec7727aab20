// common.cuh: types, the KilnStep control block (docs/plan-abi.md), fp16/bf16
// conversions by raw bits / PTX cvt (no CUDA headers needed), reductions.
// Kernel files are NVRTC headers: each #includes what it uses.
#pragma once
#include "kiln_step.h"
#include "launch.h"

typedef signed char i8;
typedef unsigned char u8;
typedef unsigned short u16;
typedef int i32;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

// The per-step block: the one declaration in schemas/kiln_step.h, handed to
// NVRTC as a header; the launch geometry: launch.h (shared with codegen).
using kiln::KilnStep;
using namespace kiln::launch;

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// Element type ids (= ggml ids, ir/dtype.h).
#define DT_F32 0
#define DT_F16 1
#define DT_Q4_0 2
#define DT_Q4_1 3
#define DT_Q5_0 6
#define DT_Q5_1 7
#define DT_Q8_0 8
#define DT_Q2_K 10
#define DT_Q3_K 11
#define DT_Q4_K 12
#define DT_Q5_K 13
#define DT_Q6_K 14
#define DT_BF16 30

__device__ __forceinline__ float h2f(u16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ u16 f2h(float f) {  // round to nearest even
  u16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
__device__ __forceinline__ float bf2f(u16 h) { return __uint_as_float(((u32)h) << 16); }
__device__ __forceinline__ u16 f2bf(float f) {  // round to nearest even, NaN kept quiet
  u32 u = __float_as_uint(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u16)((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (u16)(u >> 16);
}
// mma.sync m16n8k16 exists from sm_80; no family selects a kernel that uses it
// for an older target (flash_attention.cpp, attention.cpp), the guard only
// keeps the headers compilable for every SM.
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
// 2^x by the SFU (ex2.approx: ~2 ulp, -inf -> 0), without exp2f's range handling.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ u32 pack_f16x2(float lo, float hi) { return (u32)f2h(lo) | ((u32)f2h(hi) << 16); }

// Weight loads (read-only for the whole kernel, streamed once): non-coherent
// path with an L1 evict-first hint, so activations read many times (the GEMV's
// x) keep their L1 lines. Only for global memory.
__device__ __forceinline__ u16 ld16(const u8* p) {  // 2-byte aligned
  u16 v;
  asm("ld.global.nc.L1::evict_first.u16 %0, [%1];" : "=h"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ uint4 ldw128(const void* p) {  // 16-byte aligned
  uint4 v;
  asm("ld.global.nc.L1::evict_first.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
// ldw128 as a volatile asm: kept in program order with kiln_pdl_wait's
// (volatile) griddepcontrol.wait, for a load that must stay before the wait
// or after it (a plain asm without side effects may be moved across it)
__device__ __forceinline__ uint4 ldw128v(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::evict_first.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ float ldh(const u8* p) { return h2f(ld16(p)); }
__device__ __forceinline__ u32 ld32u(const u8* p) {  // 2-byte aligned 32-bit load
  return (u32)ld16(p) | ((u32)ld16(p + 2) << 16);
}

// Scalar float element i of a float-typed tensor (F32 / F16 / BF16).
template <int DT>
__device__ __forceinline__ float ldf(const void* p, i64 i) {
  if (DT == DT_F32) return ((const float*)p)[i];
  if (DT == DT_F16) return h2f(((const u16*)p)[i]);
  return bf2f(((const u16*)p)[i]);
}
template <int DT>
__device__ __forceinline__ void stf(void* p, i64 i, float v) {
  if (DT == DT_F32) ((float*)p)[i] = v;
  else if (DT == DT_F16) ((u16*)p)[i] = f2h(v);
  else ((u16*)p)[i] = f2bf(v);
}

// Four consecutive elements i..i+3 of a float-typed tensor in one store
// (16 bytes for f32, 8 for f16/bf16; p + i must be aligned to that), each
// rounded exactly as stf rounds it.
template <int DT>
__device__ __forceinline__ void st4(void* p, i64 i, const float v[4]) {
  if (DT == DT_F32) {
    *(float4*)((float*)p + i) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    u16 h[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) h[j] = DT == DT_F16 ? f2h(v[j]) : f2bf(v[j]);
    *(uint2*)((u16*)p + i) = make_uint2((u32)h[0] | ((u32)h[1] << 16), (u32)h[2] | ((u32)h[3] << 16));
  }
}

// Programmatic dependent launch (sm_90+; Program.pdl): a kernel launched with
// the attribute may be scheduled before the previous kernel of the stream has
// finished. kiln_pdl_wait blocks until that kernel has finished and its
// writes are visible, so nothing of this kernel touches memory before it (the
// memory planner reuses arena buffers between kernels). kiln_pdl_trigger, at
// the end of each block's work, lets the next kernel be launched once every
// block has reached it: its launch overlaps this kernel's tail, and its blocks
// land on SMs as ours retire. (Triggering at the start instead parked the next
// kernel's blocks on whichever SMs had room early and made bandwidth-bound
// decode 2-3% slower on the H200.) Both are no-ops for a kernel launched
// without the attribute (eager programs) and before sm_90.
__device__ __forceinline__ void kiln_pdl_wait() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void kiln_pdl_trigger() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// The wait of a kernel that waits itself (codegen Kernel::own_pdl_wait, after
// issuing its weight loads). Codegen defines KILN_EARLY_TRIGGER in the source
// of such a kernel when it should let its successor launch early
// (Kernel::early_trigger): it then triggers right after the wait, as the
// wrapper does for kernels that do not wait themselves.
__device__ __forceinline__ void kiln_pdl_wait_own() {
  kiln_pdl_wait();
#ifdef KILN_EARLY_TRIGGER
  kiln_pdl_trigger();
#endif
}

// Bulk copies global -> shared memory (sm_90 TMA, 1-D: cp.async.bulk) that
// complete on an mbarrier. A barrier counts one arrival (the thread that
// issues a stage's copies announces their total bytes with kiln_mbar_expect)
// and flips its phase when those bytes have landed; waiters spin on the
// parity of the fill they expect (fill f of a buffer: (f & 1)). Addresses and
// sizes are multiples of 16. Only the int8 GEMV's bulk variant (selected for
// sm_90 targets) calls these; before sm_90 they trap.
__device__ __forceinline__ u32 kiln_smem_u32(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void kiln_mbar_init(u64* bar) {
#if __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(kiln_smem_u32(bar)) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void kiln_mbar_expect(u64* bar, u32 bytes) {
#if __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(kiln_smem_u32(bar)), "r"(bytes)
               : "memory");
#else
  __trap();
#endif
}
// A hint: bring global bytes [src, src + bytes) into L2 (sm_90's bulk
// prefetch, one instruction for the whole range; the range is trimmed inward
// to 16-byte bounds, so it never reaches past the bytes named). Older targets:
// nothing.
__device__ __forceinline__ void kiln_prefetch_l2(const void* src, u64 bytes) {
#if __CUDA_ARCH__ >= 900
  const u64 a = (u64)src, b = (a + 15) & ~15ull, e = (a + bytes) & ~15ull;
  if (e > b) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(b), "r"((u32)(e - b)) : "memory");
#endif
}
// An L2 cache policy for bytes read once per step (kiln_bulk_load): their
// lines are the first evicted, so the L2 keeps what is read again soon (the
// activations, the norm gains, the KV cache) rather than weight lines that
// will not be read again until the next step. Measured on the H200 (session
// 13, docs/perf.md, a GEMV streaming HBM-resident weights back to back):
// 8B gate/up -3.3%, down -3.4%, o -1.5% per launch.
__device__ __forceinline__ u64 kiln_l2_evict_first() {
  u64 pol = 0;
#if __CUDA_ARCH__ >= 900
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
#endif
  return pol;
}
// pol: an L2 cache policy (kiln_l2_evict_first)
__device__ __forceinline__ void kiln_bulk_load(void* dst, const void* src, u32 bytes, u64* bar, u64 pol) {
#if __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
          kiln_smem_u32(dst)),
      "l"(src), "r"(bytes), "r"(kiln_smem_u32(bar)), "l"(pol)
      : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void kiln_mbar_wait(u64* bar, u32 parity) {
#if __CUDA_ARCH__ >= 900
  u32 done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(kiln_smem_u32(bar)), "r"(parity)
        : "memory");
  } while (!done);
#else
  __trap();
#endif
}
// Orders this thread's earlier generic-proxy shared-memory accesses before
// its later bulk copies into the same bytes (a buffer refilled after use).
__device__ __forceinline__ void kiln_fence_async_smem() {
#if __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

// Ordered key of (value, index): a larger value gives a larger key, and among
// equal values the lower index does; -0 counts as +0, NaN loses to everything.
// (The sampling step's argmax, sample.cuh; GEMVs keep it for what they store.)
__device__ __forceinline__ u64 argmax_key(float v, int i) {
  u32 u = __float_as_uint(v);
  if (v == 0.f) u = 0u;
  u32 k = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  if (v != v) k = 0u;
  return ((u64)k << 32) | (u64)(0xFFFFFFFFu - (u32)i);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}
// Block-wide sum; every thread gets the result. blockDim.x multiple of 32, <= 1024.
__device__ __forceinline__ float block_sum(float v, float* red /* >= 33 floats */) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  if (w == 0) {
    float s = lane < nw ? red[lane] : 0.f;
    s = warp_sum(s);
    if (lane == 0) red[32] = s;
  }
  __syncthreads();
  return red[32];
}

// Sum of squares of a float row of length K, by the whole block; inverse RMS.
__device__ __forceinline__ float row_inv_rms(const float* x, int K, float eps, float* red) {
  float s = 0.f;
  for (int k = threadIdx.x; k < K; k += blockDim.x) s += x[k] * x[k];
  s = block_sum(s, red);
  return 1.0f / sqrtf(s / (float)K + eps);
}

// SiLU, as the interpreter computes it: x * sigmoid(x) = x / (1 + e^-x).
__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }
// GELU, tanh approximation, as the interpreter's gelu_tanh (ir/interpreter.cpp).
__device__ __forceinline__ float gelu_tanh(float v) {
  return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * v * (1.0f + 0.044715f * v * v)));
}
