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
// A block takes one row at a time (grid-stride over rows); its threads sweep
// the row's 8-element chunks, two per iteration so two weight loads are in
// flight, and store each chunk's two 4-element runs as 8-byte stores (every
// run starts at a multiple of 4 elements). Row indices stay 32-bit and the
// chunk -> block split divides by a power of two, so the loop is a handful of
// integer instructions per 8 weights. Launch: grid min(N, kConvertMaxBlocks),
// block kElementwiseThreads.
// L: the weight's layout (0 GGUF blocks, 1 planes; dequant.cuh WRow).
template <int DT, int ODT, int L = 0>
__device__ __forceinline__ void k_dequant_rows(const u8* __restrict__ w, void* __restrict__ y, int N, int K) {
  typedef QT<DT> Q;
  const int nb = K / Q::QK, units = nb * Q::CH;
  for (int row = blockIdx.x; row < N; row += gridDim.x) {
    const WRow<DT, L> wr(w, row, nb, (i64)N * nb);
    for (int u0 = threadIdx.x; u0 < units; u0 += 2 * blockDim.x) {
      float v[2][8];
      int a[2], b[2], blk[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int u = min(u0 + j * (int)blockDim.x, units - 1);  // a duplicate of the last chunk is not stored
        blk[j] = u / Q::CH;
        wr.deq(blk[j], u % Q::CH, v[j], a[j], b[j]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        if (u0 + j * (int)blockDim.x >= units) break;
        const i64 yb = (i64)row * K + (i64)blk[j] * Q::QK;
        st4<ODT>(y, yb + a[j], v[j]);
        st4<ODT>(y, yb + b[j], v[j] + 4);
      }
    }
  }
}
