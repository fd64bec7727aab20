#include "compiler/tools/reference/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "ir/error.h"

namespace kiln::gen {

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SplitMix64::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

int32_t argmax(const float* x, int64_t n) {
  int32_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) continue;
    if (best < 0 || x[i] > x[best]) best = static_cast<int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

Sampler::Sampler(SamplerOptions opt) : opt_(opt), rng_(opt.seed) {
  if (!std::isfinite(opt_.temperature))
    throw Error(ErrorCode::kInvalidArgument, "temperature must be a finite number", "temperature");
  if (opt_.top_k < 0)
    throw Error(ErrorCode::kInvalidArgument,
                "top-k must be >= 0 (0 disables the cut), got " + std::to_string(opt_.top_k), "top_k");
  if (!(opt_.top_p > 0.0 && opt_.top_p <= 1.0))
    throw Error(ErrorCode::kInvalidArgument,
                "top-p must be in (0, 1] (1 disables the cut), got " + std::to_string(opt_.top_p), "top_p");
}

bool Sampler::greedy() const { return opt_.temperature <= 0.0 || opt_.top_k == 1; }

int32_t Sampler::sample(const float* logits, int64_t n) {
  if (n <= 0) throw Error(ErrorCode::kInternal, "Sampler::sample called with an empty logit vector");
  if (greedy()) return argmax(logits, n);

  idx_.resize(static_cast<size_t>(n));
  std::iota(idx_.begin(), idx_.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    const float la = std::isnan(logits[a]) ? -INFINITY : logits[a];
    const float lb = std::isnan(logits[b]) ? -INFINITY : logits[b];
    return la > lb || (la == lb && a < b);
  };
  size_t keep = static_cast<size_t>(n);
  if (opt_.top_k > 0 && opt_.top_k < n) {
    keep = static_cast<size_t>(opt_.top_k);
    std::partial_sort(idx_.begin(), idx_.begin() + static_cast<std::ptrdiff_t>(keep), idx_.end(), better);
  } else {
    std::sort(idx_.begin(), idx_.end(), better);
  }
  idx_.resize(keep);

  // Softmax at temperature, in double, shifted by the max for stability.
  prob_.resize(keep);
  const double mx = logits[idx_[0]];
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    const double l = logits[idx_[i]];
    prob_[i] = std::isfinite(l) ? std::exp((l - mx) / opt_.temperature) : 0.0;
    sum += prob_[i];
  }
  if (!(sum > 0)) return idx_[0];
  for (auto& p : prob_) p /= sum;

  if (opt_.top_p < 1.0) {
    double cum = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cum += prob_[i];
      if (cum >= opt_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    double mass = 0;
    for (size_t i = 0; i < keep; ++i) mass += prob_[i];
    for (size_t i = 0; i < keep; ++i) prob_[i] /= mass;
  }

  const double u = rng_.uniform();
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += prob_[i];
    if (u < cum) return idx_[i];
  }
  return idx_[keep - 1];  // rounding left u >= total mass
}

}  // namespace kiln::gen
