// Does compute-sanitizer's racecheck order a block barrier (__syncthreads)
// that follows the named barriers of two-warp groups? Session 28 found
// racecheck reporting a "potential RAW hazard" in the LM head's bulk GEMV
// kernels whose groups have two warps (mm_gemv_bulk KS = 2, then the
// sampling step's block_max_u64): warp 0 writes the block's key to shared
// memory, a BAR.SYNC 0 that all four warps reach follows, and every thread
// then reads it. The same kernel family with one-warp groups, and the
// matmul kernels with two-warp groups (which end without a block barrier),
// report nothing. This program has only that barrier pattern: 4 warps in
// groups of KS, an item loop whose groups meet at `bar.sync 1 + group,
// 32 * KS` (the second warp of a group leaving each item, and so the loop,
// first), groups with different item counts in alternate blocks, then
// block_max_u64's three block barriers. It is race-free by construction, so
// a report on KS = 2 and none on KS = 1 says the tool, not the kernel.
// Standalone: not part of the build or of CI.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -o racecheck_groups tests/gpu/proto/racecheck_groups.cu
//   for v in 0 1 2 3 4; do compute-sanitizer --tool racecheck ./racecheck_groups $v; done
//
// Variants (MODE) for KS = 2, to find what the report depends on: 1 adds a
// __syncthreads() after the loop, 2 gives every group the same item count,
// 3 keeps the uneven counts but has the groups with fewer items pass their
// named barrier as often as the others (a candidate fix if 2 is clean).
// Prints the kernels' checksums (equal when both ran right) and exits
// non-zero if the results differ from the host's.
//
// Found (H200, compute-sanitizer of CUDA 13.0, session 30): KS = 1
// clean; KS = 2 reports 113 hazards, and 177 with the __syncthreads() after
// the loop (the write is red[32] by thread 0, the read a thread of the group
// with fewer items, in odd blocks only); equal item counts and pad barriers
// are clean. Results are right in every variant. So the report follows the
// groups' unequal named-barrier counts, not an unordered access: mm_gemv_bulk
// now pads under the sampling step (codegen/kernels/gemv.cuh).
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

__device__ __forceinline__ void group_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ unsigned long long warp_max(unsigned long long v) {
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long t = __shfl_xor_sync(0xFFFFFFFFu, v, o);
    v = t > v ? t : v;
  }
  return v;
}

// As the sampling step's block_max_u64 (codegen/kernels/sample.cuh).
__device__ __forceinline__ unsigned long long block_max(unsigned long long v) {
  __shared__ unsigned long long red[33];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  if (w == 0) {
    unsigned long long s = lane < nw ? red[lane] : 0ull;
    s = warp_max(s);
    if (lane == 0) red[32] = s;
  }
  __syncthreads();
  return red[32];
}

// Block of 128 threads. Group g of block b takes items(b, g) items; the
// second warp of a group hands its value to the first through shared memory
// at the group's named barrier, as mm_gemv_bulk's kpart does.
template <int KS, int MODE>
__global__ void groups_then_block_max(int items, unsigned long long* out) {
  __shared__ unsigned part[4][2];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, grp = warp / KS, sub = warp % KS;
  const int mine = items - ((blockIdx.x & 1) && grp == 1 && MODE != 2 ? 1 : 0);
  unsigned acc = 0;
  for (int i = 0; i < mine; ++i) {
    unsigned v = (unsigned)(blockIdx.x * 131 + i * 7 + warp * 3 + lane);
    if (KS > 1) {
      if (sub > 0 && lane == 0) part[grp][i & 1] = v;
      group_sync(1 + grp, 32 * KS);
      if (sub > 0) continue;
      if (lane == 0) v += part[grp][i & 1];
    }
    acc += v;
  }
  if (MODE == 1) __syncthreads();  // the block meets once more after the groups' loop
  if (MODE == 3 && KS > 1)           // every group passes its named barrier equally often
    for (int i = mine; i < items; ++i) group_sync(1 + grp, 32 * KS);
  const unsigned long long key = ((unsigned long long)acc << 8) | (unsigned)threadIdx.x;
  out[(size_t)blockIdx.x * blockDim.x + threadIdx.x] = block_max(key);
}

const char* const kModes[] = {"", " + a block barrier after the loop", " with equal items per group",
                              " + pad barriers (equal named-barrier counts)"};

template <int KS>
std::vector<unsigned long long> expected(int blocks, int items, bool even) {
  std::vector<unsigned long long> v(blocks * 128);
  for (int b = 0; b < blocks; ++b) {
    unsigned long long best = 0;
    for (int t = 0; t < 128; ++t) {
      const int lane = t & 31, warp = t >> 5, grp = warp / KS, sub = warp % KS;
      const int mine = items - ((b & 1) && grp == 1 && !even ? 1 : 0);
      unsigned acc = 0;
      for (int i = 0; i < mine; ++i) {
        unsigned x = (unsigned)(b * 131 + i * 7 + warp * 3 + lane);
        if (KS > 1) {
          if (sub > 0) continue;
          if (lane == 0) x += (unsigned)(b * 131 + i * 7 + (warp + 1) * 3 + 0);
        }
        acc += x;
      }
      const unsigned long long key = ((unsigned long long)acc << 8) | (unsigned)t;
      best = key > best ? key : best;
    }
    for (int t = 0; t < 128; ++t) v[b * 128 + t] = best;
  }
  return v;
}

template <int KS, int MODE = 0>
bool run(int blocks, int items) {
  unsigned long long* d = nullptr;
  cudaMalloc(&d, sizeof(unsigned long long) * blocks * 128);
  groups_then_block_max<KS, MODE><<<blocks, 128>>>(items, d);
  std::vector<unsigned long long> h(blocks * 128);
  const cudaError_t e = cudaMemcpy(h.data(), d, h.size() * sizeof(h[0]), cudaMemcpyDeviceToHost);
  cudaFree(d);
  if (e != cudaSuccess) {
    std::printf("KS=%d: %s\n", KS, cudaGetErrorString(e));
    return false;
  }
  const bool ok = h == expected<KS>(blocks, items, MODE == 2);
  unsigned long long sum = 0;
  for (unsigned long long x : h) sum += x;
  std::printf("KS=%d%s: %s, checksum %llu\n", KS, kModes[MODE], ok ? "results right" : "RESULTS WRONG", sum);
  return ok;
}

// With an argument V (0: KS = 1; 1..4: KS = 2, MODE V - 1) runs that variant
// alone, so that racecheck's report (it shows at most 100 hazards) names one
// variant; with none, all five.
int main(int argc, char** argv) {
  const int v = argc > 1 ? std::atoi(argv[1]) : -1;
  bool ok = true;
  if (v < 0 || v == 0) ok = run<1>(264, 5) && ok;
  if (v < 0 || v == 1) ok = run<2, 0>(264, 5) && ok;
  if (v < 0 || v == 2) ok = run<2, 1>(264, 5) && ok;
  if (v < 0 || v == 3) ok = run<2, 2>(264, 5) && ok;
  if (v < 0 || v == 4) ok = run<2, 3>(264, 5) && ok;
  return ok ? 0 : 1;
}
