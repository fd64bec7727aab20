// MemoryPlanner: hand-drawn cases with offsets worked out on paper, and
// random property tests (seeded): no two simultaneously live buffers overlap,
// offsets aligned, total close to the lower bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "compiler/plan/memory_planner.h"
#include "ir/error.h"

namespace kiln::plan {
namespace {

std::vector<uint64_t> offsets_of(const std::vector<BufferLife>& b, uint64_t align = 256) {
  return MemoryPlanner(align).plan(b).offsets;
}

TEST(MemoryPlanner, DisjointLifetimesShareOffsetZero) {
  const std::vector<BufferLife> b = {{1, 1000, 0, 1}, {2, 500, 2, 3}, {3, 300, 4, 5}};
  const MemoryPlan p = MemoryPlanner().plan(b);
  EXPECT_EQ(p.offsets, (std::vector<uint64_t>{0, 0, 0}));
  EXPECT_EQ(p.total, 1000u);
  EXPECT_EQ(MemoryPlanner::lower_bound(b), 1000u);
}

// A(1024,[0,1]) B(512,[1,2]) C(1024,[2,3]): A and C (same size, A first by
// input order) both go to 0 as they never live together; B lives with both
// and no gap below 1024 fits, so it goes on top at 1024.
TEST(MemoryPlanner, ChainStacksTheMiddleBuffer) {
  const std::vector<BufferLife> b = {{0, 1024, 0, 1}, {1, 512, 1, 2}, {2, 1024, 2, 3}};
  const MemoryPlan p = MemoryPlanner().plan(b);
  EXPECT_EQ(p.offsets, (std::vector<uint64_t>{0, 1024, 0}));
  EXPECT_EQ(p.total, 1536u);
  EXPECT_EQ(MemoryPlanner::lower_bound(b), 1536u);
}

// Worked on paper (sizes in decreasing order):
//   A 2048 [0,1] -> 0            (first)
//   B 1024 [0,5] -> 2048         (lives with A; no gap)
//   C 1024 [2,3] -> 0            (lives with B only; gap [0,2048) fits)
//   D  512 [2,5] -> 1024         (lives with C@0 and B@2048; gap [1024,2048))
//   E  256 [4,4] -> 1536         (lives with D@1024 and B@2048: gaps [0,1024)
//                                 of 1024 and [1536,2048) of 512; best fit
//                                 takes the smaller one)
// Peak live: t=0,1: A+B = 3072, so the plan is optimal here.
TEST(MemoryPlanner, BestFitTakesTheSmallestGap) {
  const std::vector<BufferLife> b = {
      {10, 1024, 2, 3},  // C (input order deliberately not by size)
      {11, 256, 4, 4},   // E
      {12, 2048, 0, 1},  // A
      {13, 512, 2, 5},   // D
      {14, 1024, 0, 5},  // B: same size as C but later in the input, so placed after C
  };
  // With C placed before B (input order tie-break), C -> 0 first, then B
  // lives with A [0,2048) and C [0,1024): B -> 2048. Same outcome as on paper.
  const MemoryPlan p = MemoryPlanner().plan(b);
  EXPECT_EQ(p.offsets, (std::vector<uint64_t>{0, 1536, 0, 1024, 2048}));
  EXPECT_EQ(p.total, 3072u);
  EXPECT_EQ(MemoryPlanner::lower_bound(b), 3072u);
}

// A(100) B(100) C(1) all live at step 1: 100 rounds up to 256, so B -> 256,
// C -> 512, total 513 against a lower bound of 201 bytes.
TEST(MemoryPlanner, OffsetsAreAligned) {
  const std::vector<BufferLife> b = {{0, 100, 0, 1}, {1, 100, 0, 1}, {2, 1, 1, 2}};
  const MemoryPlan p = MemoryPlanner().plan(b);
  EXPECT_EQ(p.offsets, (std::vector<uint64_t>{0, 256, 512}));
  EXPECT_EQ(p.total, 513u);
  EXPECT_EQ(MemoryPlanner::lower_bound(b), 201u);
  // With 64-byte alignment: 0, 128, 256.
  EXPECT_EQ(offsets_of(b, 64), (std::vector<uint64_t>{0, 128, 256}));
}

// b_i = 1000 bytes live [i, i+1]: neighbours overlap, so they alternate
// between 0 and 1024 (each lands in the gap below its one live neighbour).
TEST(MemoryPlanner, PingPongReuse) {
  std::vector<BufferLife> b;
  for (int i = 0; i < 5; ++i) b.push_back({i, 1000, i, i + 1});
  const MemoryPlan p = MemoryPlanner().plan(b);
  EXPECT_EQ(p.offsets, (std::vector<uint64_t>{0, 1024, 0, 1024, 0}));
  EXPECT_EQ(p.total, 2024u);
  EXPECT_EQ(MemoryPlanner::lower_bound(b), 2000u);
}

TEST(MemoryPlanner, ZeroSizeBuffersTakeNoSpace) {
  const std::vector<BufferLife> b = {{0, 0, 0, 9}, {1, 512, 0, 9}, {2, 512, 3, 4}};
  const MemoryPlan p = MemoryPlanner().plan(b);
  EXPECT_EQ(p.offsets, (std::vector<uint64_t>{0, 0, 512}));
  EXPECT_EQ(p.total, 1024u);
  EXPECT_EQ(MemoryPlanner::lower_bound(b), 1024u);
  EXPECT_EQ(MemoryPlanner().plan({}).total, 0u);
  EXPECT_EQ(MemoryPlanner::lower_bound({}), 0u);
}

TEST(MemoryPlanner, RejectsBadInput) {
  EXPECT_THROW(MemoryPlanner().plan({{7, 10, 5, 4}}), Error);
  EXPECT_THROW(MemoryPlanner().plan({{7, 10, -1, 4}}), Error);
  EXPECT_THROW(MemoryPlanner::lower_bound({{7, 10, 5, 4}}), Error);
  EXPECT_THROW(MemoryPlanner(0), Error);
  EXPECT_THROW(MemoryPlanner(96), Error);
  try {
    MemoryPlanner().plan({{42, 10, 5, 4}});
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("buffer 42"), std::string::npos);
  }
}

// 1000 random instances (seed = instance number): up to 64 buffers over up to
// 100 schedule steps, sizes log-uniform in [64 B, 4 MiB].
TEST(MemoryPlanner, RandomInstancesAreValidAndTight) {
  double sum_ratio = 0, worst = 0;
  int worst_seed = -1;
  const int kInstances = 1000;
  for (int seed = 0; seed < kInstances; ++seed) {
    std::mt19937 rng(static_cast<uint32_t>(seed));
    const int n = 1 + static_cast<int>(rng() % 64);
    const int steps = 1 + static_cast<int>(rng() % 100);
    std::vector<BufferLife> b;
    for (int i = 0; i < n; ++i) {
      BufferLife x;
      x.id = i;
      x.first_use = static_cast<int32_t>(rng() % steps);
      // Mostly short lives (activations), some long (residual stream).
      const int max_len = steps - x.first_use;
      const int len = (rng() % 4 == 0) ? static_cast<int>(rng() % max_len)
                                       : static_cast<int>(rng() % std::min(max_len, 4));
      x.last_use = x.first_use + len;
      const double lg = 6.0 + (22.0 - 6.0) * (rng() / 4294967296.0);
      x.size = static_cast<uint64_t>(std::pow(2.0, lg));
      b.push_back(x);
    }
    const MemoryPlan p = MemoryPlanner().plan(b);
    ASSERT_EQ(p.offsets.size(), b.size());
    uint64_t total = 0;
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(p.offsets[i] % 256, 0u) << "seed " << seed;
      total = std::max(total, p.offsets[i] + b[i].size);
      for (int j = i + 1; j < n; ++j) {
        const bool live_together =
            b[i].first_use <= b[j].last_use && b[j].first_use <= b[i].last_use;
        if (!live_together) continue;
        const bool disjoint = p.offsets[i] + b[i].size <= p.offsets[j] ||
                              p.offsets[j] + b[j].size <= p.offsets[i];
        ASSERT_TRUE(disjoint) << "seed " << seed << ": buffers " << i << " and " << j << " overlap";
      }
    }
    ASSERT_EQ(p.total, total) << "seed " << seed;
    const uint64_t lb = MemoryPlanner::lower_bound(b);
    ASSERT_GE(p.total, lb) << "seed " << seed;
    const double ratio = static_cast<double>(p.total) / static_cast<double>(lb);
    sum_ratio += ratio;
    if (ratio > worst) {
      worst = ratio;
      worst_seed = seed;
    }
  }
  const double mean = sum_ratio / kInstances;
  std::printf("memory planner: %d instances, total / lower bound: mean %.4f, worst %.4f (seed %d)\n",
              kInstances, mean, worst, worst_seed);
  EXPECT_LE(mean, 1.5);
}

}  // namespace
}  // namespace kiln::plan
