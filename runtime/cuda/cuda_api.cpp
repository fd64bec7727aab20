#include "runtime/cuda/cuda_api.h"

#include <unistd.h>

#include <mutex>
#include <string>

namespace kiln::rt::cuda {
namespace {

template <typename Fn>
void load(Fn& fn, const char* name) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult status{};
  cudaError_t e = cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &status);
  if (e != cudaSuccess || status != cudaDriverEntryPointSuccess || p == nullptr)
    throw Error(ErrorCode::kCuda,
                std::string("CUDA driver entry point ") + name + " is unavailable (" + cudaGetErrorString(e) +
                    "): is the NVIDIA driver installed and new enough for CUDA 13?");
  fn = reinterpret_cast<Fn>(p);
}

}  // namespace

const DriverApi& driver() {
  static DriverApi api;
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    try {
      load(api.cuModuleLoadDataEx, "cuModuleLoadDataEx");
      load(api.cuModuleGetFunction, "cuModuleGetFunction");
      load(api.cuModuleUnload, "cuModuleUnload");
      load(api.cuLaunchKernel, "cuLaunchKernel");
      load(api.cuLaunchKernelEx, "cuLaunchKernelEx");
      load(api.cuFuncSetAttribute, "cuFuncSetAttribute");
      load(api.cuGetErrorString, "cuGetErrorString");
    } catch (const Error& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throw Error(ErrorCode::kCuda, failure);
  return api;
}

std::optional<DeviceInfo> probe_device(int index, std::string* why) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    // Without the kernel driver cudart reports "driver version is insufficient",
    // which reads like a version problem; say what it is.
    const bool no_driver = ::access("/dev/nvidiactl", F_OK) != 0 &&
                           (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice);
    if (why)
      *why = no_driver ? std::string("no NVIDIA GPU or driver on this machine")
                       : std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    cudaGetLastError();
    return std::nullopt;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device found";
    return std::nullopt;
  }
  if (index < 0 || index >= count) {
    if (why) *why = "device " + std::to_string(index) + " does not exist (found " + std::to_string(count) + ")";
    return std::nullopt;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  check(cudaSetDevice(index), "cudaSetDevice");
  DeviceInfo d;
  d.index = index;
  d.name = prop.name;
  d.sm = prop.major * 10 + prop.minor;
  d.sm_count = prop.multiProcessorCount;
  d.smem_per_block_optin = prop.sharedMemPerBlockOptin;
  d.max_threads_per_block = prop.maxThreadsPerBlock;
  check(cudaMemGetInfo(&d.free_mem, &d.total_mem), "cudaMemGetInfo");
  return d;
}

bool is_sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress: case cudaErrorLaunchFailure: case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction: case cudaErrorMisalignedAddress: case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc: case cudaErrorAssert: case cudaErrorLaunchTimeout: case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

bool is_sticky(CUresult r) {
  switch (r) {
    case CUDA_ERROR_ILLEGAL_ADDRESS: case CUDA_ERROR_LAUNCH_FAILED: case CUDA_ERROR_HARDWARE_STACK_ERROR:
    case CUDA_ERROR_ILLEGAL_INSTRUCTION: case CUDA_ERROR_MISALIGNED_ADDRESS: case CUDA_ERROR_INVALID_ADDRESS_SPACE:
    case CUDA_ERROR_INVALID_PC: case CUDA_ERROR_ASSERT: case CUDA_ERROR_LAUNCH_TIMEOUT:
    case CUDA_ERROR_ECC_UNCORRECTABLE:
      return true;
    default:
      return false;
  }
}

namespace {
// A sticky error says so and what to do: no later CUDA call of this process
// can succeed, so retrying in-process is pointless.
[[noreturn]] void fail(ErrorCode code, bool sticky, std::string msg) {
  if (sticky)
    throw Error(ErrorCode::kCuda,
                msg + "; this is a sticky CUDA error: the process's GPU context is lost and every later CUDA call "
                      "fails, so restart the process (if it recurs, run it under compute-sanitizer to find the "
                      "kernel at fault)",
                "sticky");
  throw Error(code, std::move(msg));
}
}  // namespace

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    fail(e == cudaErrorMemoryAllocation ? ErrorCode::kDevice : ErrorCode::kCuda, is_sticky(e),
         std::string(what) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

void check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return;
  const char* s = "unknown error";
  if (driver().cuGetErrorString) driver().cuGetErrorString(r, &s);
  fail(r == CUDA_ERROR_OUT_OF_MEMORY ? ErrorCode::kDevice : ErrorCode::kCuda, is_sticky(r),
       std::string(what) + " failed: " + s);
}

}  // namespace kiln::rt::cuda
