// Token sampling for `kiln generate`: greedy by default, or temperature /
// top-k / top-p sampling driven by a documented, platform-independent PRNG so
// that a given --seed reproduces the same text everywhere.
#pragma once
#include <cstdint>
#include <vector>

namespace kiln::gen {

struct SamplerOptions {
  double temperature = 0.0;  // <= 0: greedy (argmax)
  int64_t top_k = 0;         // 0: no top-k cut; 1: greedy
  double top_p = 1.0;        // nucleus mass in (0, 1]; 1: no cut
  uint64_t seed = 0;
};

// SplitMix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number
// generators", OOPSLA 2014; constants as in Vigna's reference splitmix64.c).
// Chosen because it is tiny, fully specified, and gives the same stream on
// every platform and standard library (std::mt19937 would too, but the
// distributions on top of it are implementation-defined).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform in [0, 1) with 53 random bits.
  double uniform();

 private:
  uint64_t state_;
};

class Sampler {
 public:
  explicit Sampler(SamplerOptions opt);
  // Picks a token id from logits[0..n). Throws kiln::Error on n <= 0.
  //
  // Greedy (temperature <= 0 or top_k == 1): the highest logit, lowest id on ties.
  // Otherwise, in this order: sort candidates by logit (descending, ties by
  // id); keep the top_k best (if top_k > 0); softmax of logit/temperature;
  // keep the shortest prefix whose probability mass reaches top_p (at least
  // one token); renormalise; draw u = uniform() and return the first
  // candidate whose cumulative probability exceeds u.
  int32_t sample(const float* logits, int64_t n);
  bool greedy() const;
  const SamplerOptions& options() const { return opt_; }

 private:
  SamplerOptions opt_;
  SplitMix64 rng_;
  std::vector<int32_t> idx_;
  std::vector<double> prob_;
};

// Index of the largest value (lowest index on ties); NaNs never win.
int32_t argmax(const float* x, int64_t n);

}  // namespace kiln::gen
