// Random but valid tensor data for synthetic models, with controlled
// magnitude. ir::random_blocks (ir/quantize.h) makes blocks whose scales span
// [1e-3, 1e-1]; fine for testing a dequantiser, but a 32-layer model built
// from them blows its activations up. Here every block's fp16 scale / min
// fields are chosen so the dequantised weights have a standard deviation near
// the requested sigma (x a per-block jitter in [0.5, 1.5]) and mean near 0:
// with sigma = 0.02 and norm weights ~1 a random llama stays finite (and fp16
// representable) through all layers. Quant bits are uniformly random.
//
// Data is a pure function of (seed, block index): any chunking of a tensor
// gives the same bytes, so tensors can be streamed in pieces.
#pragma once
#include <cstdint>
#include <vector>

#include "ir/dtype.h"
#include "ir/quantize.h"

namespace kiln::synth {

// splitmix64 (Steele, Lea, Flood 2014; ir::SplitMix64) plus a cheap normal.
class Rng : public ir::SplitMix64 {
 public:
  using ir::SplitMix64::SplitMix64;
  // Approximately N(0, 1): Irwin-Hall sum of 4 uniforms, rescaled (cheap, bounded by +-3.46).
  float normal() {
    const uint64_t r = next();
    float s = 0;
    for (int k = 0; k < 4; ++k) s += static_cast<float>((r >> (16 * k)) & 0xffff) * (1.0f / 65536.0f);
    return (s - 2.0f) * 1.7320508f;
  }
};

// Mixes two 64-bit values into a seed (for per-tensor / per-block seeds).
uint64_t mix_seed(uint64_t a, uint64_t b);
// Stable 64-bit FNV-1a hash of a string (tensor names -> seeds).
uint64_t hash_name(const char* s, size_t n);

uint16_t f32_to_bf16(float f);  // round to nearest even

struct WeightDist {
  float mean = 0.0f;   // F32/F16/BF16 only; quantised weights are centred near 0
  float sigma = 0.02f;
};

// Appends the bytes of blocks [first_block, first_block + n_blocks) of a
// tensor of type t (for scalar types a "block" is one element).
void append_blocks(ir::DType t, uint64_t seed, const WeightDist& dist, uint64_t first_block,
                   uint64_t n_blocks, std::vector<uint8_t>& out);

}  // namespace kiln::synth
