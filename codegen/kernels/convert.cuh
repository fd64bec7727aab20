// convert.cuh: the half-precision operands of tensor-core GEMMs
// (codegen/families/convert.cpp): cast of f32 activations to f16/bf16, and
// dequantisation of a whole weight matrix (any weight dtype) to f16/bf16.
#pragma once
#include "dequant.cuh"

// cast: y[r, k] = round(x[r, k]) for rows r < rows (the step's tokens when
// dyn); later rows are left alone like every kernel's (a GEMM over the whole
// bucket computes garbage rows from them, which nothing reads: GEMM rows are
// independent). Launch: grid-stride, block kElementwiseThreads.
template <int ODT>
__device__ __forceinline__ void k_cast(const float* __restrict__ x, void* __restrict__ y, int nt, int dyn, int R,
                                       int N) {
  const int rows = dyn ? min(nt, R) : R;
  const i64 total = (i64)rows * N;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x)
    stf<ODT>(y, i, x[i]);
}

// dequant: y[n, :] = round(dequant(w[n, :])) for the N rows of K elements,
// value for value what ir::dequantize gives (dequant.cuh), then rounded.
// One 8-element chunk per thread per iteration. Launch: grid-stride, block
// kElementwiseThreads.
template <int DT, int ODT>
__device__ __forceinline__ void k_dequant_rows(const u8* __restrict__ w, void* __restrict__ y, int N, int K) {
  typedef QT<DT> Q;
  const int nb = K / Q::QK;
  const i64 units_row = (i64)nb * Q::CH, total = (i64)N * units_row;
  for (i64 u = (i64)blockIdx.x * blockDim.x + threadIdx.x; u < total; u += (i64)gridDim.x * blockDim.x) {
    const i64 row = u / units_row;
    const int c = (int)(u - row * units_row), blk = c / Q::CH;
    float v[8];
    int a, b;
    deq8<DT>(w + (row * nb + blk) * Q::BB, c % Q::CH, v, a, b);
    const i64 base = row * K + (i64)blk * Q::QK;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      stf<ODT>(y, base + a + i, v[i]);
      stf<ODT>(y, base + b + i, v[4 + i]);
    }
  }
}
