// What a phase boundary costs inside one persistent kernel, against the
// programmatic-dependent-launch boundary between two kernels of a decode
// graph (design notes 18, 26): a cluster barrier, a cluster barrier plus an
// all-gather of a small activation vector through distributed shared memory,
// a software grid barrier through global memory (plus the same all-gather
// through L2), and how fast 1..132 SMs stream weights. Standalone: not part
// of the build or of CI.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -o sync_bench tests/gpu/proto/sync_bench.cu && ./sync_bench
//
// Prints one JSON object per case (median of 5 launches; each launch runs
// `iters` boundaries back to back and reports ns per boundary).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "proto.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace cg = cooperative_groups;

// Cluster barrier only (gather = 0), or barrier + every CTA reading the whole
// vector of n floats from the CTAs that own its slices (gather = 1).
__global__ void cluster_phases(int iters, int n, int gather, float* sink, unsigned long long* ns) {
  extern __shared__ float sm[];  // [n] the full vector; this CTA owns slice [r*per, (r+1)*per)
  cg::cluster_group cl = cg::this_cluster();
  const int r = cl.block_rank(), C = cl.num_blocks();
  const int per = (n + C - 1) / C;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sm[i] = float(i);
  cl.sync();
  float acc = 0.f;
  const unsigned long long t0 = gtime();
  for (int it = 0; it < iters; ++it) {
    // update own slice (the phase's output)
    for (int i = r * per + threadIdx.x; i < min(n, (r + 1) * per); i += blockDim.x) sm[i] += 1.f;
    cl.sync();
    if (gather) {
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int owner = i / per;
        if (owner != r) {
          const float* peer = cl.map_shared_rank(sm, owner);
          sm[i] = peer[i];
        }
      }
      __syncthreads();
      for (int i = threadIdx.x; i < n; i += blockDim.x) acc += sm[i];
      cl.sync();  // peers may overwrite their slices only after everyone read them
    }
  }
  const unsigned long long t1 = gtime();
  if (threadIdx.x == 0 && r == 0) *ns = (t1 - t0) / (unsigned long long)iters;
  if (acc == -1.f) sink[0] = acc;
}

// Software grid barrier (sense-reversing, one counter), optional all-gather of
// n floats through global memory.
__global__ void grid_phases(int iters, int n, int gather, float* vec, unsigned* bar, float* sink,
                            unsigned long long* ns) {
  extern __shared__ float sm[];
  const int r = blockIdx.x, G = gridDim.x;
  const int per = (n + G - 1) / G;
  float acc = 0.f;
  unsigned gen = 0;
  const unsigned long long t0 = gtime();
  for (int it = 0; it < iters; ++it) {
    for (int i = r * per + threadIdx.x; i < min(n, (r + 1) * per); i += blockDim.x) vec[i] = float(it + i);
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence();
      ++gen;
      const unsigned arrived = atomicAdd(bar, 1u) + 1u;
      if (arrived == gen * (unsigned)G) {
        // last: nothing else; everyone polls the count
      }
      unsigned v;
      do {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
      } while (v < gen * (unsigned)G);
    }
    __syncthreads();
    if (gather) {
      for (int i = threadIdx.x; i < n; i += blockDim.x) sm[i] = __ldcg(vec + i);
      __syncthreads();
      for (int i = threadIdx.x; i < n; i += blockDim.x) acc += sm[i];
      __syncthreads();
    }
  }
  const unsigned long long t1 = gtime();
  if (threadIdx.x == 0 && r == 0) *ns = (t1 - t0) / (unsigned long long)iters;
  if (acc == -1.f) sink[0] = acc;
}

// Streams `bytes_per_block` per block with 16-byte non-coherent loads, 8 in
// flight per thread; reports nothing itself (timed with events).
__global__ void stream_read(const uint4* __restrict__ w, size_t per_block_vec, float* sink) {
  const uint4* p = w + blockIdx.x * per_block_vec;
  unsigned x = 0;
  for (size_t i = threadIdx.x; i < per_block_vec; i += 8 * blockDim.x) {
    uint4 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const size_t j = i + (size_t)u * blockDim.x;
      v[u] = j < per_block_vec ? __ldg(p + j) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) x ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (x == 0x12345678u) sink[0] = float(x);
}

int main() {
  print_device();
  float* sink;
  unsigned long long* ns;
  CK(cudaMalloc(&sink, 64));
  CK(cudaMallocManaged(&ns, sizeof(unsigned long long)));
  const int iters = 2000;
  CK(cudaFuncSetAttribute(cluster_phases, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  for (int C : {2, 4, 8, 16}) {
    for (int threads : {256, 512}) {
      for (int n : {576, 1536, 2048, 8192}) {
        for (int gather : {0, 1}) {
          if (!gather && n != 576) continue;
          cudaLaunchConfig_t cfg = {};
          cfg.gridDim = dim3(C);
          cfg.blockDim = dim3(threads);
          cfg.dynamicSmemBytes = n * sizeof(float);
          cudaLaunchAttribute at[1];
          at[0].id = cudaLaunchAttributeClusterDimension;
          at[0].val.clusterDim.x = C;
          at[0].val.clusterDim.y = 1;
          at[0].val.clusterDim.z = 1;
          cfg.attrs = at;
          cfg.numAttrs = 1;
          std::vector<double> v;
          for (int rep = 0; rep < 6; ++rep) {
            CK(cudaLaunchKernelEx(&cfg, cluster_phases, iters, n, gather, sink, ns));
            CK(cudaDeviceSynchronize());
            if (rep) v.push_back(double(*ns));
          }
          std::printf("{\"case\": \"cluster\", \"ctas\": %d, \"threads\": %d, \"n\": %d, \"gather\": %d, \"ns_per_phase\": %.0f}\n",
                      C, threads, n, gather, median(v));
        }
      }
    }
  }
  float* vec;
  unsigned* bar;
  CK(cudaMalloc(&vec, 8192 * sizeof(float)));
  CK(cudaMalloc(&bar, sizeof(unsigned)));
  for (int G : {16, 66, 132}) {
    for (int n : {576, 2048, 8192}) {
      for (int gather : {0, 1}) {
        if (!gather && n != 576) continue;
        std::vector<double> v;
        for (int rep = 0; rep < 6; ++rep) {
          CK(cudaMemset(bar, 0, sizeof(unsigned)));
          grid_phases<<<G, 256, n * sizeof(float)>>>(iters, n, gather, vec, bar, sink, ns);
          CK(cudaDeviceSynchronize());
          if (rep) v.push_back(double(*ns));
        }
        std::printf("{\"case\": \"grid\", \"ctas\": %d, \"threads\": 256, \"n\": %d, \"gather\": %d, \"ns_per_phase\": %.0f}\n", G,
                    n, gather, median(v));
      }
    }
  }
  // Weight streaming by 1..132 blocks of 1024 threads (one per SM), 256 MiB ring
  // so every launch reads HBM.
  const size_t ring = 256ull << 20;
  uint4* w;
  CK(cudaMalloc(&w, ring));
  CK(cudaMemset(w, 1, ring));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int B : {1, 4, 8, 16, 32, 66, 132}) {
    for (size_t per_block : {size_t(64) << 10, size_t(256) << 10, size_t(1) << 20}) {
      const size_t per_vec = per_block / 16;
      const size_t launch_bytes = per_block * B;
      const int slots = int(ring / launch_bytes);
      std::vector<double> v;
      for (int rep = 0; rep < 7; ++rep) {
        const uint4* base = w + (size_t(rep % std::max(1, slots)) * launch_bytes) / 16;
        CK(cudaEventRecord(e0));
        stream_read<<<B, 1024>>>(base, per_vec, sink);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (rep) v.push_back(ms);
      }
      const double ms = median(v);
      std::printf("{\"case\": \"stream\", \"blocks\": %d, \"bytes_per_block\": %zu, \"us\": %.2f, \"GBps_per_block\": %.1f, \"GBps\": %.0f}\n",
                  B, per_block, ms * 1e3, per_block / (ms * 1e-3) / 1e9, launch_bytes / (ms * 1e-3) / 1e9);
    }
  }
  return 0;
}
