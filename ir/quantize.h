// Test and synthetic-model helpers: random but valid GGML quant blocks, and
// simple reference quantisers (Q8_0, Q4_0) that follow ggml's reference
// rounding, so their output matches the `gguf` Python package's quantiser.
#pragma once
#include <cstdint>
#include <vector>

#include "ir/dtype.h"

namespace kiln::ir {

// Small deterministic PRNG (splitmix64), independent of the standard library.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 24 random bits.
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }

 private:
  uint64_t state_;
};

// Fills `out` with row_bytes(t, n) bytes of n elements of type t: every
// quant bit random, every fp16 scale / min field finite with magnitude in
// [1e-3, 1e-1] and a random sign. For F32/F16/BF16 the elements are finite
// values in [-1, 1]. Deterministic for a seed. Throws kiln::Error if n is not
// a multiple of the block size or t has no float / quant representation.
void random_blocks(DType t, int64_t n, uint64_t seed, std::vector<uint8_t>& out);

// Reference Q8_0 quantiser: per 32 values d = max|x| / 127, q = round(x / d)
// (half away from zero), d stored as fp16. n must be a multiple of 32;
// dst receives n / 32 * 34 bytes.
void quantize_q8_0(const float* src, uint8_t* dst, int64_t n);

// Reference Q4_0 quantiser: per 32 values, m = the value of largest magnitude,
// d = m / -8, q = min(15, trunc(x / d + 8.5)), d stored as fp16. n must be a
// multiple of 32; dst receives n / 32 * 18 bytes.
void quantize_q4_0(const float* src, uint8_t* dst, int64_t n);

}  // namespace kiln::ir
