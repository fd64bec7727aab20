// The runtime's window onto CUDA. The CUDA runtime is linked statically
// (cudart_static) and the few driver-API entry points we need (module loading,
// kernel launch) are fetched through cudaGetDriverEntryPointByVersion, so a
// kiln binary starts, and reports "no GPU" cleanly, on a machine without an
// NVIDIA driver (CI) instead of failing to load libcuda.so.
#pragma once
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <optional>
#include <string>

#include "runtime/error.h"

namespace kiln::rt::cuda {

struct DriverApi {
  CUresult (*cuModuleLoadDataEx)(CUmodule*, const void*, unsigned, CUjit_option*, void**) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*cuModuleUnload)(CUmodule) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void**, void**) = nullptr;
  CUresult (*cuLaunchKernelEx)(const CUlaunchConfig*, CUfunction, void**, void**) = nullptr;
  CUresult (*cuFuncSetAttribute)(CUfunction, CUfunction_attribute, int) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char**) = nullptr;
};

// Loads the driver entry points once; throws rt::Error(kCuda) if the driver is missing.
const DriverApi& driver();

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm = 0;               // major*10 + minor
  int sm_count = 0;
  size_t total_mem = 0, free_mem = 0;
  size_t smem_per_block_optin = 0;
  int max_threads_per_block = 0;
};

// Describes device `index`, or returns nullopt with `why` set (no driver, no
// device, index out of range) — the caller decides whether that is an error.
std::optional<DeviceInfo> probe_device(int index, std::string* why);

// Throws rt::Error naming the call if `e` is not cudaSuccess: kDevice for out
// of memory, else kCuda; a sticky error (is_sticky: the context is lost, every
// later call fails) has field "sticky" and a message saying to restart.
void check(cudaError_t e, const char* what);
void check(CUresult r, const char* what);
bool is_sticky(cudaError_t e);
bool is_sticky(CUresult r);

}  // namespace kiln::rt::cuda
