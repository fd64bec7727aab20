#include "runtime/cuda/cublaslt.h"

#include <cublasLt.h>
#include <dlfcn.h>

#include <mutex>
#include <string>

#include "runtime/error.h"

namespace kiln::rt::cuda {
namespace {

// The entry points kiln uses, from a dlopen'ed libcublasLt.
struct LtApi {
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
  cublasLtHandle_t handle = nullptr;
  std::string error;  // why it could not be loaded
};

const LtApi& lt() {
  static LtApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = nullptr;
    for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"})
      if ((h = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
    if (!h) {
      api.error = "libcublasLt (CUDA 12 or 13) is not installed or not on the library path";
      return;
    }
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      ok = ok && fn != nullptr;
    };
    sym(api.create, "cublasLtCreate");
    sym(api.desc_create, "cublasLtMatmulDescCreate");
    sym(api.desc_destroy, "cublasLtMatmulDescDestroy");
    sym(api.desc_set, "cublasLtMatmulDescSetAttribute");
    sym(api.layout_create, "cublasLtMatrixLayoutCreate");
    sym(api.layout_destroy, "cublasLtMatrixLayoutDestroy");
    sym(api.pref_create, "cublasLtMatmulPreferenceCreate");
    sym(api.pref_destroy, "cublasLtMatmulPreferenceDestroy");
    sym(api.pref_set, "cublasLtMatmulPreferenceSetAttribute");
    sym(api.heuristic, "cublasLtMatmulAlgoGetHeuristic");
    sym(api.matmul, "cublasLtMatmul");
    if (!ok) {
      api.error = "libcublasLt lacks an entry point kiln needs";
      return;
    }
    if (api.create(&api.handle) != CUBLAS_STATUS_SUCCESS) api.error = "cublasLtCreate failed";
  });
  if (!api.error.empty())
    throw Error(ErrorCode::kDevice, "this plan's prefill runs cuBLASLt GEMMs, but " + api.error +
                                        ": install the CUDA toolkit's cuBLAS (libcublasLt), or recompile without "
                                        "tensor-core prefill",
                "cublasLt");
  return api;
}

void lt_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::kDevice, std::string("cuBLASLt: ") + what + " failed (status " +
                                        std::to_string(static_cast<int>(s)) + ")", "cublasLt");
}

}  // namespace

struct LtGemm::Impl {
  const LtApi* api = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  float beta = 0.f;
};

LtGemm::LtGemm(uint32_t m, uint32_t n, uint32_t k, bool bf16, bool residual, size_t workspace_bytes)
    : impl_(std::make_unique<Impl>()) {
  const LtApi& api = lt();
  Impl& I = *impl_;
  I.api = &api;
  I.beta = residual ? 1.f : 0.f;
  const cudaDataType_t ab = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  lt_check(api.desc_create(&I.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul descriptor");
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  lt_check(api.desc_set(I.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
  lt_check(api.desc_set(I.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
  // column-major: A = w as k x n (ld k), B = x as k x m (ld k), C = D = y as n x m (ld n)
  lt_check(api.layout_create(&I.a, ab, k, n, k), "layout A");
  lt_check(api.layout_create(&I.b, ab, k, m, k), "layout B");
  lt_check(api.layout_create(&I.c, CUDA_R_32F, n, m, n), "layout C");
  cublasLtMatmulPreference_t pref = nullptr;
  lt_check(api.pref_create(&pref), "preference");
  const uint64_t ws = workspace_bytes;
  api.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t s = api.heuristic(api.handle, I.desc, I.a, I.b, I.c, I.c, pref, 1, &res, &found);
  api.pref_destroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS || found == 0)
    throw Error(ErrorCode::kDevice,
                "cuBLASLt has no algorithm for a " + std::string(bf16 ? "bf16" : "f16") + " GEMM of " +
                    std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " on this GPU",
                "cublasLt");
  I.algo = res.algo;
  I.workspace = res.workspaceSize;
}

LtGemm::~LtGemm() {
  if (!impl_ || !impl_->api) return;
  const LtApi& api = *impl_->api;
  if (impl_->a) api.layout_destroy(impl_->a);
  if (impl_->b) api.layout_destroy(impl_->b);
  if (impl_->c) api.layout_destroy(impl_->c);
  if (impl_->desc) api.desc_destroy(impl_->desc);
}

void LtGemm::run(const void* x, const void* w, const void* r, void* y, void* workspace, cudaStream_t stream) const {
  const Impl& I = *impl_;
  const float alpha = 1.f;
  lt_check(I.api->matmul(I.api->handle, I.desc, &alpha, w, I.a, x, I.b, &I.beta, r ? r : y, I.c, y, I.c, &I.algo,
                         workspace, I.workspace, stream),
           "matmul");
}

}  // namespace kiln::rt::cuda
