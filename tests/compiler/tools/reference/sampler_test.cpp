// Sampler: greedy rules, top-k / top-p cuts, the seeded PRNG's determinism and
// that sampled frequencies follow softmax(logits / T).
#include <cmath>
#include <map>
#include <vector>

#include <gtest/gtest.h>

#include "compiler/tools/reference/sampler.h"
#include "ir/error.h"

namespace {

using kiln::gen::Sampler;
using kiln::gen::SamplerOptions;

TEST(Sampler, SplitMix64ReferenceValues) {
  // First outputs of Vigna's splitmix64.c for seed 0 (published test vector).
  kiln::gen::SplitMix64 r(0);
  EXPECT_EQ(r.next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(r.next(), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(r.next(), 0x06C45D188009454Full);
  kiln::gen::SplitMix64 u(42);
  for (int i = 0; i < 1000; ++i) {
    double x = u.uniform();
    ASSERT_GE(x, 0.0);
    ASSERT_LT(x, 1.0);
  }
}

TEST(Sampler, GreedyPicksMaxLowestIdOnTies) {
  Sampler s(SamplerOptions{});
  std::vector<float> l{0.1f, 3.0f, -1.0f, 3.0f, NAN};
  EXPECT_EQ(s.sample(l.data(), 5), 1);
  SamplerOptions k1;
  k1.temperature = 1.0;
  k1.top_k = 1;
  Sampler s1(k1);
  EXPECT_TRUE(s1.greedy());
  EXPECT_EQ(s1.sample(l.data(), 5), 1);
}

TEST(Sampler, FrequenciesFollowSoftmax) {
  SamplerOptions o;
  o.temperature = 2.0;
  o.seed = 123;
  Sampler s(o);
  std::vector<float> l{std::log(0.5f) * 2, std::log(0.3f) * 2, std::log(0.2f) * 2};  // /T -> log p
  std::map<int, int> n;
  const int N = 40000;
  for (int i = 0; i < N; ++i) n[s.sample(l.data(), 3)]++;
  EXPECT_NEAR(n[0] / double(N), 0.5, 0.015);
  EXPECT_NEAR(n[1] / double(N), 0.3, 0.015);
  EXPECT_NEAR(n[2] / double(N), 0.2, 0.015);
}

TEST(Sampler, TopKAndTopPCut) {
  std::vector<float> l{std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  SamplerOptions o;
  o.temperature = 1.0;
  o.top_k = 2;
  Sampler k(o);
  std::map<int, int> n;
  for (int i = 0; i < 5000; ++i) n[k.sample(l.data(), 4)]++;
  EXPECT_EQ(n.count(2) + n.count(3), 0u);
  EXPECT_NEAR(n[0] / 5000.0, 0.4 / 0.7, 0.03);

  o.top_k = 0;
  o.top_p = 0.65;  // 0.4 + 0.3 reaches it: {0, 1}
  Sampler p(o);
  n.clear();
  for (int i = 0; i < 5000; ++i) n[p.sample(l.data(), 4)]++;
  EXPECT_EQ(n.count(2) + n.count(3), 0u);
  EXPECT_GT(n[1], 0);

  o.top_p = 0.1;  // the top token alone
  Sampler p1(o);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(p1.sample(l.data(), 4), 0);
}

TEST(Sampler, SeedDeterminesSequence) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[i] = std::sin(i * 0.7f);
  SamplerOptions o;
  o.temperature = 1.0;
  o.seed = 9;
  Sampler a(o), b(o);
  o.seed = 10;
  Sampler c(o);
  std::vector<int> sa, sb, sc;
  for (int i = 0; i < 50; ++i) {
    sa.push_back(a.sample(l.data(), 100));
    sb.push_back(b.sample(l.data(), 100));
    sc.push_back(c.sample(l.data(), 100));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(Sampler, RejectsBadOptions) {
  SamplerOptions o;
  o.top_p = 0;
  EXPECT_THROW(Sampler{o}, kiln::Error);
  o.top_p = 1.5;
  EXPECT_THROW(Sampler{o}, kiln::Error);
  o = {};
  o.top_k = -1;
  EXPECT_THROW(Sampler{o}, kiln::Error);
  o = {};
  o.temperature = NAN;
  EXPECT_THROW(Sampler{o}, kiln::Error);
}

}  // namespace
