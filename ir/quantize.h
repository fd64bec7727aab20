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

namespace kiln::ir {

// Activation quantisation of the decode GEMVs (matmul-family attribute
// x_q8 = 1; docs/plan-abi.md "Activation quantisation"): each row of v is
// cut into blocks of kActQ8Block values; per block amax = max |v|, and
// (amax > 0) q = rint(v * (127 / amax)) (ties to even, |q| <= 127) with
// scale d = amax / 127, else q = 0, d = 0. Every step is one IEEE f32
// operation, so the GPU kernel produces the same q and d bit for bit.
constexpr int64_t kActQ8Block = 16;
// Weight dtypes whose GEMV reads q8 activations (integer dot products).
bool act_q8_weight(DType t);
// Replaces v[0..n) (n a multiple of kActQ8Block) by q * d, the values the
// integer dot products see.
void act_q8_roundtrip(float* v, int64_t n);
// One block: the quants and the scale.
void act_q8_block(const float* v, int8_t* q, float* d);

}  // namespace kiln::ir
