// gen::check_q8_step, gen::check_prompt_step and gen::token_agrees: the rules kiln verify and the GPU
// end-to-end tests judge a plan's logits by.
#include "compiler/tools/reference/logits_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace kiln::gen {
namespace {

// logits 0.5 * sin(i) * 10 plus a perturbation of relative size f along cos
std::vector<float> logits(double f) {
  std::vector<float> v(1000);
  double n2 = 0, p2 = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    n2 += 25 * std::sin(double(i)) * std::sin(double(i));
    p2 += std::cos(3.0 * double(i)) * std::cos(3.0 * double(i));
  }
  const double k = f * std::sqrt(n2 / p2);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(5 * std::sin(double(i)) + k * std::cos(3.0 * double(i)));
  return v;
}

TEST(LogitsCheck, RelErrAndRms) {
  const std::vector<float> a = {3, 4}, b = {0, 0};
  EXPECT_DOUBLE_EQ(rel_err(a, a), 0.0);
  EXPECT_NEAR(rel_err(logits(0.01), logits(0)), 0.01, 1e-5);
  EXPECT_TRUE(std::isinf(rel_err(a, b)));
  EXPECT_DOUBLE_EQ(rel_err(b, b), 0.0);
  EXPECT_NEAR(rms_diff(a, b), std::sqrt(12.5), 1e-12);
}

TEST(LogitsCheck, TokenIsTheArgmaxOrWithinTheWindow) {
  const std::vector<float> ref = {1.0f, 3.0f, 2.9f, -1.0f};
  EXPECT_TRUE(token_agrees(ref, 1, 0.0));
  EXPECT_FALSE(token_agrees(ref, 2, 0.05));
  EXPECT_TRUE(token_agrees(ref, 2, 0.11));
  EXPECT_FALSE(token_agrees(ref, 0, 1.5));
  EXPECT_FALSE(token_agrees(ref, -1, 100.0));  // not a token
  EXPECT_FALSE(token_agrees(ref, 4, 100.0));
}

// The plan's error against fp32 is judged against the int8 interpreter's own:
// as far as it (or 3x + 2e-2) passes; a kernel-sized error does not.
TEST(LogitsCheck, Q8StepUsesTheInt8InterpretersDistanceAsYardstick) {
  const std::vector<float> fp32 = logits(0), q8 = logits(0.03);
  YardstickStep s = check_q8_step(logits(0.05), q8, fp32);
  EXPECT_NEAR(s.ref_vs_fp32, 0.03, 1e-5);
  EXPECT_NEAR(s.rel_fp32, 0.05, 1e-5);
  EXPECT_NEAR(s.bound, kQ8Factor * 0.03 + kQ8Slack, 1e-5);
  EXPECT_TRUE(s.logits_ok);
  EXPECT_NEAR(s.rel_ref, 0.02, 1e-5);
  EXPECT_GT(s.noise, 0.0);
  // an error 3x the int8 interpreter's plus more than the slack fails
  EXPECT_FALSE(check_q8_step(logits(kQ8Factor * 0.03 + kQ8Slack + 0.01), q8, fp32).logits_ok);
  // the measured rule (real SmolLM2 used at most 74% of it): 3x + 2e-2
  EXPECT_TRUE(check_q8_step(logits(0.105), q8, fp32).logits_ok);
  EXPECT_FALSE(check_q8_step(logits(0.115), q8, fp32).logits_ok);
  // where the interpreters agree exactly, only the slack is left
  EXPECT_TRUE(check_q8_step(logits(0.015), fp32, fp32).logits_ok);
  EXPECT_FALSE(check_q8_step(logits(0.025), fp32, fp32).logits_ok);
  // non-finite logits never pass
  std::vector<float> bad = logits(0);
  bad[7] = NAN;
  EXPECT_FALSE(check_q8_step(bad, q8, fp32).logits_ok);
}

// A compiled prompt step that misses the fixed tolerance against the
// compiled-graph interpreter: as close to fp32 as that interpreter (the
// measured bf16 case: both ~1.2e-2 from fp32, more than 5e-3 apart) passes,
// within 2x its distance + 5e-3; an error past that fails, and so does a
// kernel-sized one.
TEST(LogitsCheck, PromptStepUsesTheCompiledInterpretersDistanceAsYardstick) {
  const std::vector<float> fp32 = logits(0), ref = logits(0.012);
  const YardstickStep s = check_prompt_step(logits(0.0115), ref, fp32);
  EXPECT_NEAR(s.ref_vs_fp32, 0.012, 1e-5);
  EXPECT_NEAR(s.bound, kPromptFactor * 0.012 + kPromptSlack, 1e-5);
  EXPECT_TRUE(s.logits_ok);
  EXPECT_TRUE(check_prompt_step(logits(0.028), ref, fp32).logits_ok);   // 2 x 1.2e-2 + 5e-3 = 2.9e-2
  EXPECT_FALSE(check_prompt_step(logits(0.030), ref, fp32).logits_ok);
  EXPECT_FALSE(check_prompt_step(logits(0.5), ref, fp32).logits_ok);    // a wrong kernel
  // the rule is tighter than the int8 one for the same interpreter distance
  EXPECT_TRUE(check_q8_step(logits(0.030), ref, fp32).logits_ok);
  // where the interpreter is exactly fp32, only the slack is left
  EXPECT_TRUE(check_prompt_step(logits(0.004), fp32, fp32).logits_ok);
  EXPECT_FALSE(check_prompt_step(logits(0.006), fp32, fp32).logits_ok);
  std::vector<float> bad = logits(0);
  bad[3] = INFINITY;
  EXPECT_FALSE(check_prompt_step(bad, ref, fp32).logits_ok);
}

}  // namespace
}  // namespace kiln::gen
