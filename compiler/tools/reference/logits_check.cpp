#include "compiler/tools/reference/logits_check.h"

#include <algorithm>
#include <cmath>

namespace kiln::gen {

double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

double rms_diff(const std::vector<float>& got, const std::vector<float>& ref) {
  double s = 0;
  const size_t n = std::min(got.size(), ref.size());
  for (size_t i = 0; i < n; ++i) s += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
  return n ? std::sqrt(s / double(n)) : 0.0;
}

bool token_agrees(const std::vector<float>& ref, int32_t token, double window) {
  if (ref.empty() || token < 0 || size_t(token) >= ref.size()) return false;
  const float best = *std::max_element(ref.begin(), ref.end());
  return double(best) - ref[size_t(token)] <= window;
}

YardstickStep check_yardstick_step(const std::vector<float>& got, const std::vector<float>& ref,
                                   const std::vector<float>& fp32_ref, double factor, double slack) {
  YardstickStep s;
  s.rel_ref = rel_err(got, ref);
  s.rel_fp32 = rel_err(got, fp32_ref);
  s.ref_vs_fp32 = rel_err(ref, fp32_ref);
  s.bound = factor * s.ref_vs_fp32 + slack;
  s.noise = rms_diff(got, ref);
  s.logits_ok = std::isfinite(s.rel_fp32) && s.rel_fp32 <= s.bound;
  return s;
}

YardstickStep check_q8_step(const std::vector<float>& got, const std::vector<float>& q8_ref,
                            const std::vector<float>& fp32_ref) {
  return check_yardstick_step(got, q8_ref, fp32_ref, kQ8Factor, kQ8Slack);
}

YardstickStep check_prompt_step(const std::vector<float>& got, const std::vector<float>& ref,
                                const std::vector<float>& fp32_ref) {
  return check_yardstick_step(got, ref, fp32_ref, kPromptFactor, kPromptSlack);
}

}  // namespace kiln::gen
