// Stage "nvrtc" (compiler/compile/kernel_build.h): the parallel helper runs
// every index once, keeps results in order, propagates errors; compile_all
// compiles each distinct module once and gives the same result for any jobs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "compiler/compile/kernel_build.h"
#include "ir/error.h"

namespace kiln::compile {
namespace {

TEST(ParallelFor, EveryIndexOnceResultsInOrderForAnyJobs) {
  for (int jobs : {1, 4, 0, 64}) {
    std::vector<std::atomic<int>> runs(100);
    std::vector<int64_t> out(100, -1);
    parallel_for(100, jobs, [&](size_t i) {
      ++runs[i];
      out[i] = static_cast<int64_t>(i * i);
    });
    for (size_t i = 0; i < 100; ++i) {
      EXPECT_EQ(runs[i].load(), 1) << i << " jobs " << jobs;
      EXPECT_EQ(out[i], static_cast<int64_t>(i * i)) << i << " jobs " << jobs;
    }
  }
  parallel_for(0, 4, [](size_t) { FAIL() << "no work"; });
}

TEST(ParallelFor, ProgressCountsUpSerialised) {
  std::vector<size_t> seen;
  parallel_for(
      40, 4, [](size_t) {}, [&](size_t done, size_t total) {
        EXPECT_EQ(total, 40u);
        seen.push_back(done);
      });
  ASSERT_EQ(seen.size(), 40u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i + 1);
}

TEST(ParallelFor, FirstErrorPropagatesAndStopsNewWork) {
  for (int jobs : {1, 4}) {
    std::atomic<int> ran{0};
    try {
      parallel_for(1000, jobs, [&](size_t i) {
        ++ran;
        if (i == 5) throw Error(ErrorCode::kInternal, "index 5 failed");
        // every other item takes a while, so that on a loaded machine the
        // threads cannot run all 1000 before index 5 has thrown
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      });
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "index 5 failed");
    }
    if (jobs == 1) {
      EXPECT_EQ(ran.load(), 6);  // nothing after the failure starts
    }
    EXPECT_LT(ran.load(), 1000);
  }
  EXPECT_THROW(parallel_for(3, 2, [](size_t i) { if (i == 2) throw std::runtime_error("x"); }), std::runtime_error);
}

codegen::KernelSource kernel(const std::string& entry, const std::string& source, uint64_t hash) {
  return {entry, source, {}, hash};
}

// Two entries of one module source (one hash: compiled once) and one of another.
std::vector<codegen::KernelSource> sources() {
  const std::string m1 =
      "extern \"C\" __global__ void k_one(float* p) { p[threadIdx.x] = 1.0f; }\n"
      "extern \"C\" __global__ void k_two(float* p) { p[threadIdx.x] = 2.0f; }\n";
  const std::string m2 = "extern \"C\" __global__ void k_three(int* p) { p[threadIdx.x] += 3; }\n";
  return {kernel("k_one", m1, 0x111), kernel("k_three", m2, 0x222), kernel("k_two", m1, 0x111)};
}

TEST(CompileAll, EachDistinctModuleOnceInFirstUseOrder) {
  const auto src = sources();
  const uint64_t before = codegen::nvrtc_compile_count();
  const KernelBuild b = compile_all(src, 90, "", 4);
  EXPECT_EQ(codegen::nvrtc_compile_count() - before, 2u);
  ASSERT_EQ(b.modules.size(), 2u);
  EXPECT_EQ(b.module_of, (std::vector<size_t>{0, 1, 0}));
  EXPECT_NE(b.modules[0].ptx.find("k_one"), std::string::npos);
  EXPECT_NE(b.modules[0].ptx.find("k_two"), std::string::npos);
  EXPECT_NE(b.modules[1].ptx.find("k_three"), std::string::npos);
  EXPECT_EQ(b.modules[1].ptx.find("k_one"), std::string::npos);
  for (const auto& m : b.modules) EXPECT_FALSE(m.cubin.empty());
}

TEST(CompileAll, OneJobAndFourJobsGiveTheSame) {
  std::vector<codegen::KernelSource> src;
  for (int i = 0; i < 6; ++i)
    src.push_back(kernel("k" + std::to_string(i),
                         "extern \"C\" __global__ void k" + std::to_string(i) + "(float* p) { p[0] = " +
                             std::to_string(i) + ".0f; }\n",
                         0x1000 + static_cast<uint64_t>(i)));
  std::vector<size_t> progress;
  const KernelBuild one = compile_all(src, 86, "", 1, [&](size_t d, size_t) { progress.push_back(d); });
  const KernelBuild four = compile_all(src, 86, "", 4);
  EXPECT_EQ(progress, (std::vector<size_t>{1, 2, 3, 4, 5, 6}));
  ASSERT_EQ(one.modules.size(), 6u);
  ASSERT_EQ(four.modules.size(), 6u);
  EXPECT_EQ(one.module_of, four.module_of);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(one.modules[i].ptx, four.modules[i].ptx) << i;
    EXPECT_EQ(one.modules[i].cubin, four.modules[i].cubin) << i;
    EXPECT_NE(one.modules[i].ptx.find("k" + std::to_string(i)), std::string::npos) << i;
  }
}

TEST(CompileAll, CompileErrorPropagatesWithTheLog) {
  auto src = sources();
  src.push_back(kernel("k_bad", "extern \"C\" __global__ void k_bad(float* p) { p[0] = undefined_name; }\n", 0x333));
  for (int jobs : {1, 3}) {
    try {
      compile_all(src, 90, "", jobs);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInternal);
      const std::string msg = e.what();
      EXPECT_NE(msg.find("k_bad"), std::string::npos) << msg;
      EXPECT_NE(msg.find("undefined_name"), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace kiln::compile
