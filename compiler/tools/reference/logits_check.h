// logits_check.h: whether a plan's logits agree with the reference
// interpreter, step by step (kiln verify, the GPU end-to-end tests).
#pragma once
#include <cstdint>
#include <vector>

namespace kiln::gen {

// Relative L2 error of got against ref (0 when both are zero).
double rel_err(const std::vector<float>& got, const std::vector<float>& ref);
// Root mean square of got - ref.
double rms_diff(const std::vector<float>& got, const std::vector<float>& ref);
// The greedy token agrees with ref's logits: it is their argmax, or its logit
// is within `window` of the maximum (a near-tie that rounding can flip).
bool token_agrees(const std::vector<float>& ref, int32_t token, double window);

// Compiled decode on int8 activations (q8-activations), one step, against
// both interpreters: q8 (the compiled graphs: the same int8 roundings) and
// fp32 (the model). Rounding to 8 bits is discontinuous, so float
// differences of ~1e-6 from upstream kernels move values across rounding
// boundaries: the plan and the q8 interpreter are two equally valid int8
// computations, each about as far from fp32 as from the other (real SmolLM2
// on an H200, docs/perf.md: medians 2.2% plan-fp32, 1.9% q8-fp32, 2.3%
// plan-q8, single steps up to 9.6%). So the plan is held to the fp32 logits
// with the q8 interpreter's own distance from them as the yardstick:
// rel_fp32 <= kQ8Factor * q8_vs_fp32 + kQ8Slack; and its token to the q8
// interpreter's argmax within kQ8TieNoise times the step's RMS logit
// difference (noise). A wrong kernel is off by far more than either.
inline constexpr double kQ8Factor = 3.0, kQ8Slack = 2e-2, kQ8TieNoise = 3.0;
struct Q8Step {
  double rel_q8 = 0;      // plan vs q8 interpreter
  double rel_fp32 = 0;    // plan vs fp32 interpreter
  double q8_vs_fp32 = 0;  // the q8 interpreter vs the fp32 one
  double bound = 0;       // the largest rel_fp32 accepted
  double noise = 0;       // RMS of plan - q8 interpreter (logit units)
  bool logits_ok = false;
};
Q8Step check_q8_step(const std::vector<float>& got, const std::vector<float>& q8_ref,
                     const std::vector<float>& fp32_ref);

}  // namespace kiln::gen
