// Can one persistent kernel run a decode layer's GEMVs closer to the copy
// bandwidth than kiln's chain of PDL kernels? Session 30's layer-count fits
// (tests/gpu/layer_slope.sh, docs/perf.md) put every decode layer at 11-17 us
// over its bytes, 2.2-3.5 us a kernel; the 1B F16 layer takes 41.1 us for
// 122.8 MB (29.2 us at copy bandwidth), attention included.
//
// This program runs L layers of the 1B's GEMVs with f16 weights and f32
// activations (layer_f16.cuh) in one kernel, one block of 512 threads per SM, phases
// separated by a software grid barrier:
//   qkv = Wqkv (3072 x 2048) . rms(x)        (RMS folded: the sum times 1/rms)
//   x  += Wo   (2048 x 2048) . qkv[0:2048]  (attention left out: q stands in)
//   gu  = Wgu  (16384 x 2048) . rms(x)
//   x  += Wd   (2048 x 8192) . silu(g) * u
// 121.6 MB of weights a layer. A warp takes rows gw, gw + GW, ... of a phase;
// a lane streams 8 16-byte loads a unit (2,048 weights of a row), the next
// unit's loads in flight while one is computed. With PF the first unit of
// the next phase is loaded before the grid barrier (weights are constants),
// as kiln's kernels issue their first weight copy before their PDL wait.
// Checks the result of 2 layers against the host, then times 16 (median of
// 7 launches) and prints us a layer against the copy bandwidth it measures;
// a third variant leaves the grid barriers out (timing only).
// Standalone: not part of the build or of CI.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -o layer_persistent tests/gpu/proto/layer_persistent.cu && ./layer_persistent
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "layer_f16.cuh"
#include "proto.cuh"

#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

using namespace layer_f16;
constexpr int NT = 512, NW = NT / 32;  // threads, warps a block
constexpr int LPU = 8;                 // 16-byte loads a lane per unit
constexpr int UNIT = 32 * LPU * 8;     // weights a unit: 2,048

struct Layer {
  const uint4 *qkv, *o, *gu, *d;  // rows of K halves, K / 8 uint4 each
};

__device__ __forceinline__ uint4 ldw(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void grid_barrier(unsigned* bar, unsigned& gen) {  // (namespace scope)
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    ++gen;
    atomicAdd(bar, 1u);
    unsigned v;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
    } while (v < gen * gridDim.x);
  }
  __syncthreads();
}

// The warp's stream over a phase: rows gw, gw + GW, ..., units of UNIT
// weights each. load(): the unit's loads into b.
struct Stream {
  const uint4* w;
  int n, k, gw, GW;
  __device__ int units() const { return k / UNIT; }
  // the warp's i-th (row, unit), or false past its last
  __device__ bool at(int i, int& row, int& u) const {
    const int per = units();
    row = gw + (i / per) * GW;
    u = i % per;
    return row < n;
  }
  __device__ void load(int row, int u, int lane, uint4 (&b)[LPU]) const {
    const uint4* p = w + (size_t)row * (k / 8) + (size_t)u * (UNIT / 8) + lane;
#pragma unroll
    for (int j = 0; j < LPU; ++j) b[j] = ldw(p + 32 * j);
  }
};

__device__ __forceinline__ float dot_unit(const uint4 (&b)[LPU], const float* xs, int u, int lane) {
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < LPU; ++j) {
    const int e = (u * (UNIT / 8) + lane + 32 * j) * 8;
    const float4 a = *(const float4*)(xs + e), c = *(const float4*)(xs + e + 4);
    const __half2* h = (const __half2*)&b[j];
    const float2 f0 = __half22float2(h[0]), f1 = __half22float2(h[1]), f2 = __half22float2(h[2]),
                 f3 = __half22float2(h[3]);
    s += f0.x * a.x + f0.y * a.y + f1.x * a.z + f1.y * a.w + f2.x * c.x + f2.y * c.y + f3.x * c.z + f3.y * c.w;
  }
  return s;
}

// One phase: out[row] = scale * dot(W[row], xs) (ADD: out[row] +=). cur holds
// the warp's first unit already (loaded before the barrier, or now).
template <bool ADD>
__device__ void run_phase(const Stream& s, const float* xs, float scale, float* out, uint4 (&cur)[LPU], int lane) {
  uint4 nxt[LPU];
  float acc = 0.f;
  int row, u;
  for (int i = 0; s.at(i, row, u); ++i) {
    int r2, u2;
    const bool more = s.at(i + 1, r2, u2);
    if (more) s.load(r2, u2, lane, nxt);
    acc += dot_unit(cur, xs, u, lane);
    if (u == s.units() - 1) {  // row done
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xFFFFFFFFu, acc, o);
      if (lane == 0) out[row] = ADD ? out[row] + acc * scale : acc * scale;
      acc = 0.f;
    }
    if (more) {
#pragma unroll
      for (int j = 0; j < LPU; ++j) cur[j] = nxt[j];
    }
  }
}

// xs = v (n floats) from global; returns 1 / rms(v) when RMS, else 1
template <bool RMS>
__device__ float load_vec(const float* v, int n, float* xs, float* red) {
  float ss = 0.f;
  for (int i = threadIdx.x * 4; i < n; i += NT * 4) {
    const float4 a = __ldcg((const float4*)(v + i));
    *(float4*)(xs + i) = a;
    if (RMS) ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
  }
  if constexpr (!RMS) {
    __syncthreads();
    return 1.f;
  } else {
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xFFFFFFFFu, ss, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    float t = 0.f;
#pragma unroll
    for (int w = 0; w < NW; ++w) t += red[w];
    return rsqrtf(t / n + 1e-5f);
  }
}

// xs[i] = silu(gu[i]) * gu[FF + i]
__device__ void load_swiglu(const float* gu, float* xs) {
  for (int i = threadIdx.x; i < FF; i += NT) {
    const float g = __ldcg(gu + i), u = __ldcg(gu + FF + i);
    xs[i] = g / (1.f + __expf(-g)) * u;
  }
  __syncthreads();
}

// MODE 0: phases as above; 1: the first unit of the next phase loaded before
// each grid barrier (PF); 2: PF and no grid barriers (wrong results: how fast
// the phases' code streams the weights by itself, for the timing only).
template <int MODE>
__global__ void __launch_bounds__(NT, 1)
    layers(const Layer* L, int nl, float* x, float* qkv, float* gu, unsigned* bar) {
  constexpr bool PF = MODE >= 1;
  extern __shared__ __align__(16) float xs[];  // FF floats
  __shared__ float red[NW];
  const int lane = threadIdx.x & 31, gw = blockIdx.x * NW + (threadIdx.x >> 5), GW = gridDim.x * NW;
  unsigned gen = 0;
  auto grid_barrier = [&](unsigned* b, unsigned& g) {
    if (MODE == 2) {
      __syncthreads();
      return;
    }
    ::grid_barrier(b, g);
  };
  uint4 cur[LPU];
  int row, u;
  auto first = [&](const Stream& s) {
    if (s.at(0, row, u)) s.load(row, u, lane, cur);
  };
  for (int l = 0; l < nl; ++l) {
    const Layer w = L[l];
    const Stream sq{w.qkv, QKV, H, gw, GW}, so{w.o, H, H, gw, GW}, sg{w.gu, 2 * FF, H, gw, GW}, sd{w.d, H, FF, gw, GW};
    if (!PF || l == 0) first(sq);
    float inv = load_vec<true>(x, H, xs, red);
    run_phase<false>(sq, xs, inv, qkv, cur, lane);
    if (PF) first(so);
    grid_barrier(bar, gen);
    if (!PF) first(so);
    load_vec<false>(qkv, H, xs, red);
    run_phase<true>(so, xs, 1.f, x, cur, lane);
    if (PF) first(sg);
    grid_barrier(bar, gen);
    if (!PF) first(sg);
    inv = load_vec<true>(x, H, xs, red);
    run_phase<false>(sg, xs, inv, gu, cur, lane);
    if (PF) first(sd);
    grid_barrier(bar, gen);
    if (!PF) first(sd);
    load_swiglu(gu, xs);
    run_phase<true>(sd, xs, 1.f, x, cur, lane);
    if (PF && l + 1 < nl) {
      const Stream nq{L[l + 1].qkv, QKV, H, gw, GW};
      first(nq);
    }
    grid_barrier(bar, gen);
  }
}

}  // namespace

int main() {
  const cudaDeviceProp prop = print_device();
  const int sms = prop.multiProcessorCount, NL = 16, CHECK = 2;
  const auto wl = make_weights(NL);
  std::vector<Layer> hl(NL);
  for (int l = 0; l < NL; ++l)
    hl[l] = {(const uint4*)wl[l][0], (const uint4*)wl[l][1], (const uint4*)wl[l][2], (const uint4*)wl[l][3]};
  Layer* dl = nullptr;
  float *x = nullptr, *qkv = nullptr, *gu = nullptr;
  unsigned* bar = nullptr;
  CK(cudaMalloc(&dl, NL * sizeof(Layer)));
  CK(cudaMemcpy(dl, hl.data(), NL * sizeof(Layer), cudaMemcpyHostToDevice));
  CK(cudaMalloc(&x, H * 4));
  CK(cudaMalloc(&qkv, QKV * 4));
  CK(cudaMalloc(&gu, 2 * FF * 4));
  CK(cudaMalloc(&bar, 4));
  const std::vector<float> x0 = layer_f16::x0();
  const size_t smem = FF * sizeof(float);
  void* const kern[3] = {(void*)layers<0>, (void*)layers<1>, (void*)layers<2>};
  for (void* k : kern) CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  auto reset = [&] {
    CK(cudaMemcpy(x, x0.data(), H * 4, cudaMemcpyHostToDevice));
    CK(cudaMemset(bar, 0, 4));
  };
  auto launch = [&](int pf, int nl) {
    void* args[] = {(void*)&dl, (void*)&nl, (void*)&x, (void*)&qkv, (void*)&gu, (void*)&bar};
    CK(cudaLaunchCooperativeKernel(kern[pf], dim3(sms), dim3(NT), args, smem, 0));
  };

  // correctness: CHECK layers against the host
  std::vector<float> want = x0;
  host_layers(CHECK, want);
  bool ok = true;
  for (int pf = 0; pf < 2; ++pf) {
    reset();
    launch(pf, CHECK);
    CK(cudaDeviceSynchronize());
    const double rel = rel_err(x, want);
    std::printf("{\"check\": \"%d layers, PF=%d\", \"rel_err\": %.3g, \"ok\": %s}\n", CHECK, pf, rel,
                rel < 1e-4 ? "true" : "false");
    ok = ok && rel < 1e-4;
  }

  const double copy = copy_gbps();  // for the roofline
  const double bytes = kPerLayer * 2.0;
  for (int pf = 0; pf < 3; ++pf) {
    const double us = time_ms(reset, [&] { launch(pf, NL); }) * 1e3 / NL;
    std::printf(
"{\"case\": \"%s\", \"layers\": %d, \"us_per_layer\": %.2f, \"MB_per_layer\": %.1f, "
        "\"us_at_copy_bw\": %.2f, \"copy_GBps\": %.0f, \"fraction\": %.3f}\n",
        pf == 0   ? "grid barriers"
        : pf == 1 ? "grid barriers, next phase's first loads before each"
                  : "no barriers (timing only)",
        NL, us, bytes / 1e6, bytes / copy / 1e3, copy, bytes / copy / 1e3 / us);
  }
  return ok ? 0 : 1;
}
