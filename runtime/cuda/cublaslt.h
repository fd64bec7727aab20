// cuBLASLt for the plan's GEMM launches (prefill matmuls on tensor cores),
// loaded at run time with dlopen only when a plan has such launches: the
// runtime links no CUDA library, starts without cuBLAS, and a plan without
// GEMMs never touches it. The GEMM is y[m,n] (f32, row-major) = x[m,k] @
// w[n,k]^T (+ r[m,n]), x and w f16 or bf16, fp32 accumulation: in cuBLAS's
// column-major terms D(n x m) = op(A = w, transposed) * B (= x) + beta * C.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace kiln::rt::cuda {

class LtGemm {
 public:
  // Prepares the descriptors and picks an algorithm for this shape with at
  // most `workspace_bytes` of workspace (cuBLASLt's heuristic, at load).
  // Throws rt::Error(kDevice) when cuBLASLt cannot be loaded or offers no
  // algorithm, naming the library and the fix.
  LtGemm(uint32_t m, uint32_t n, uint32_t k, bool bf16, bool residual, size_t workspace_bytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;
  // Enqueues the GEMM on `stream` (capturable into a CUDA graph). r may be
  // null when not residual.
  void run(const void* x, const void* w, const void* r, void* y, void* workspace, cudaStream_t stream) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::rt::cuda
