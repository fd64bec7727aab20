// The runtime's fault sites (runtime/fault.h) count and fail exactly the n-th
// call, and CUDA errors are classified: out of memory is kDevice, a sticky
// error (the context is lost) says so and tells the user to restart. No GPU
// needed: the runtime-API error strings come from the static cudart.
#include <gtest/gtest.h>

#include <string>

#include "runtime/cuda/cuda_api.h"
#include "runtime/error.h"
#include "runtime/fault.h"

namespace kiln::rt {
namespace {

TEST(RuntimeFault, FailsExactlyTheArmedCall) {
  fault::arm(fault::Site::kCudaAlloc, 3);
  EXPECT_FALSE(fault::hit(fault::Site::kCudaAlloc));
  EXPECT_FALSE(fault::hit(fault::Site::kTrap));  // another site: counted, never failed
  EXPECT_FALSE(fault::hit(fault::Site::kCudaAlloc));
  EXPECT_TRUE(fault::hit(fault::Site::kCudaAlloc));
  EXPECT_FALSE(fault::hit(fault::Site::kCudaAlloc));
  EXPECT_EQ(fault::count(fault::Site::kCudaAlloc), 4u);
  EXPECT_EQ(fault::count(fault::Site::kTrap), 1u);
  fault::disarm();
  EXPECT_EQ(fault::count(fault::Site::kCudaAlloc), 0u);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(fault::hit(fault::Site::kCudaAlloc));
  EXPECT_STREQ(fault::site_name(fault::Site::kCudaAlloc), "cuda_alloc");
  EXPECT_STREQ(fault::site_name(fault::Site::kTrap), "trap");
}

TEST(RuntimeFault, CudaErrorsAreClassified) {
  EXPECT_NO_THROW(cuda::check(cudaSuccess, "nothing"));
  try {
    cuda::check(cudaErrorMemoryAllocation, "cudaMalloc(arena)");
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDevice);
    EXPECT_NE(std::string(e.what()).find("cudaMalloc(arena)"), std::string::npos) << e.what();
    EXPECT_EQ(e.field(), "");
  }
  for (cudaError_t sticky : {cudaErrorIllegalAddress, cudaErrorLaunchFailure, cudaErrorIllegalInstruction}) {
    EXPECT_TRUE(cuda::is_sticky(sticky));
    try {
      cuda::check(sticky, "step execution");
      ADD_FAILURE() << "no throw";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(e.code(), ErrorCode::kCuda);
      EXPECT_EQ(e.field(), "sticky");
      EXPECT_NE(m.find("step execution failed"), std::string::npos) << m;
      EXPECT_NE(m.find("sticky"), std::string::npos) << m;
      EXPECT_NE(m.find("restart the process"), std::string::npos) << m;
    }
  }
  EXPECT_FALSE(cuda::is_sticky(cudaErrorMemoryAllocation));
  EXPECT_FALSE(cuda::is_sticky(cudaErrorInvalidValue));
  EXPECT_TRUE(cuda::is_sticky(CUDA_ERROR_ILLEGAL_ADDRESS));
  EXPECT_FALSE(cuda::is_sticky(CUDA_ERROR_OUT_OF_MEMORY));
}

}  // namespace
}  // namespace kiln::rt
