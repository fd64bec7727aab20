// What it costs to hand a small activation vector from one decode phase to the
// next, every block of the next phase needing all of it (a GEMV's x):
//  - pdl: one kernel per phase in a CUDA graph with programmatic dependent
//    launch (what kiln's decode graphs do): each kernel triggers its
//    dependents at once, waits for its predecessor, reads the whole vector
//    and writes its own slice of the next one;
//  - tagged: one kernel for all phases; a block writes its slice as 8-byte
//    entries (the float's bits, the phase's tag in the high word) with plain
//    volatile stores and reads the whole vector back until every entry
//    carries the phase's tag: no fence, no counter, no barrier;
//  - tagged_nap: the same with a 100 ns nap between polling rounds.
// Without any other load on the GPU: a first version that ran a weight stream
// in a second stream beside the phases measured nonsense (1.8 ms a phase for
// the graph of PDL kernels) and hung the tagged kernel, and was dropped.
// Standalone: not part of the build or of CI.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -o handoff_bench tests/gpu/proto/handoff_bench.cu && ./handoff_bench
//
// Prints one JSON object per case: ns per phase (median of 5 runs).
#include <cuda_runtime.h>

#include "proto.cuh"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <vector>

typedef unsigned long long u64;

// ---- pdl: one phase per kernel ----
__global__ void pdl_phase(const float* __restrict__ in, float* __restrict__ out, int n, float* sink) {
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
  extern __shared__ float sm[];
  float acc = 0.f;
  // E loads per thread in flight at once, as the tagged case reads
  constexpr int E = 8;
  for (int i0 = 0; i0 < n; i0 += E * blockDim.x) {
    float x[E];
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int i = i0 + e * blockDim.x + threadIdx.x;
      x[e] = i < n ? __ldcg(in + i) : 0.f;
    }
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int i = i0 + e * blockDim.x + threadIdx.x;
      if (i < n) {
        sm[i] = x[e];
        acc += x[e];
      }
    }
  }
  __syncthreads();
  const int per = (n + gridDim.x - 1) / gridDim.x;
  for (int i = blockIdx.x * per + threadIdx.x; i < min(n, (int)(blockIdx.x + 1) * per); i += blockDim.x)
    out[i] = sm[i] + 1.f;
  if (acc == -1.f) sink[0] = acc;
}

// ---- tagged: every phase in one kernel ----
__device__ __forceinline__ void put(u64* p, float v, unsigned tag) {
  *(volatile u64*)p = (u64)__float_as_uint(v) | ((u64)tag << 32);
}
__device__ __forceinline__ u64 get(const u64* p) { return *(const volatile u64*)p; }

// ent: two vectors of n entries (phases alternate), tags base + phase
template <int E>
__global__ void tagged_phases(u64* ent, int n, int phases, unsigned base, int nap, float* sink,
                              unsigned long long* ns) {
  extern __shared__ float sm[];
  const int per = (n + gridDim.x - 1) / gridDim.x;
  float acc = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sm[i] = float(i);
  __syncthreads();
  const unsigned long long t0 = gtime();
  for (int ph = 0; ph < phases; ++ph) {
    const unsigned tag = base + ph;
    u64* v = ent + (size_t)(ph & 1) * n;
    for (int i = blockIdx.x * per + threadIdx.x; i < min(n, (int)(blockIdx.x + 1) * per); i += blockDim.x)
      put(v + i, sm[i] + 1.f, tag);
    // read the whole vector back: E entries per thread in flight per round
    for (int i0 = 0; i0 < n; i0 += E * blockDim.x) {
      u64 x[E];
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const int i = i0 + e * blockDim.x + threadIdx.x;
        x[e] = i < n ? get(v + i) : ((u64)tag << 32);
      }
      for (;;) {
        bool ok = true;
#pragma unroll
        for (int e = 0; e < E; ++e) ok = ok && (unsigned)(x[e] >> 32) == tag;
        if (ok) break;
        if (nap) __nanosleep(nap);
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int i = i0 + e * blockDim.x + threadIdx.x;
          if ((unsigned)(x[e] >> 32) != tag) x[e] = get(v + i);
        }
      }
      __syncthreads();  // sm is read below and overwritten here: one phase at a time
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const int i = i0 + e * blockDim.x + threadIdx.x;
        if (i < n) {
          sm[i] = __uint_as_float((unsigned)x[e]);
          acc += sm[i];
        }
      }
    }
    __syncthreads();
  }
  const unsigned long long t1 = gtime();
  if (threadIdx.x == 0 && blockIdx.x == 0) *ns = (t1 - t0) / (unsigned long long)phases;
  if (acc == -1.f) sink[0] = acc;
}

// waits for stream s for at most 5 s; a case that hangs is reported and ends the run
static void wait_or_die(cudaStream_t s, const char* what) {
  for (int i = 0; i < 5000; ++i) {
    const cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) CK(e);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, nullptr);
  }
  std::printf("{\"hang\": \"%s\"}\n", what);
  std::fflush(stdout);
  std::_Exit(3);
}

int main() {
  print_device();
  float *sink, *va, *vb;
  unsigned long long* ns;
  u64* ent;
  CK(cudaMalloc(&sink, 64));
  CK(cudaMallocManaged(&ns, sizeof(unsigned long long)));
  CK(cudaMalloc(&va, 8192 * 4));
  CK(cudaMalloc(&vb, 8192 * 4));
  CK(cudaMemset(va, 0, 8192 * 4));
  CK(cudaMemset(vb, 0, 8192 * 4));
  CK(cudaMalloc(&ent, 2 * 8192 * 8));
  CK(cudaMemset(ent, 0, 2 * 8192 * 8));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  unsigned base = 1;
  const int phases = 1000;

  for (int G : {24, 66, 132}) {
      for (int n : {576, 1536}) {
        // pdl: a graph of `phases` kernels
        {
          cudaGraph_t g;
          cudaGraphExec_t ge;
          CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
          for (int p = 0; p < phases; ++p) {
            cudaLaunchConfig_t cfg = {};
            cfg.gridDim = dim3(G);
            cfg.blockDim = dim3(256);
            cfg.dynamicSmemBytes = n * 4;
            cfg.stream = s;
            cudaLaunchAttribute at[1];
            at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
            at[0].val.programmaticStreamSerializationAllowed = 1;
            cfg.attrs = at;
            cfg.numAttrs = 1;
            CK(cudaLaunchKernelEx(&cfg, pdl_phase, (const float*)((p & 1) ? vb : va), (p & 1) ? va : vb, n, sink));
          }
          CK(cudaStreamEndCapture(s, &g));
          CK(cudaGraphInstantiate(&ge, g, 0));
          std::vector<double> v;
          for (int rep = 0; rep < 6; ++rep) {
            CK(cudaEventRecord(e0, s));
            CK(cudaGraphLaunch(ge, s));
            CK(cudaEventRecord(e1, s));
            wait_or_die(s, "pdl");
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (rep) v.push_back(ms * 1e6 / phases);
          }
          std::printf("{\"case\": \"pdl\", \"blocks\": %d, \"n\": %d, \"ns_per_phase\": %.0f}\n", G, n,
                      median(v));
          std::fflush(stdout);
          CK(cudaGraphExecDestroy(ge));
          CK(cudaGraphDestroy(g));
        }
        for (int nap : {0, 100}) {
          std::vector<double> v;
          for (int rep = 0; rep < 6; ++rep) {
            tagged_phases<8><<<G, 256, n * 4, s>>>(ent, n, phases, base, nap, sink, ns);
            wait_or_die(s, "tagged");
            base += phases;
            if (rep) v.push_back(double(*ns));
          }
          std::printf("{\"case\": \"tagged%s\", \"blocks\": %d, \"n\": %d, \"ns_per_phase\": %.0f}\n",
                      nap ? "_nap" : "", G, n, median(v));
          std::fflush(stdout);
        }
      }
    }
  return 0;
}
