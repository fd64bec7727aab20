#include "compiler/tools/synth/weights.h"

#include <cmath>
#include <cstring>
#include <string>

#include "ir/dequant.h"
#include "ir/error.h"

namespace kiln::synth {

uint64_t mix_seed(uint64_t a, uint64_t b) {
  Rng r(a ^ (b * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull));
  r.next();
  return r.next();
}

uint64_t hash_name(const char* s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(s[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // nan
  x += 0x7fffu + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

namespace {

void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Where a block keeps its fp16 fields and the RMS of (dequantised value / d)
// over uniformly random quant bits and sub-block scales, with the min field
// (if any) set to centre the distribution; derived from each type's
// dequantisation formula (ggml-quants.c, dequantize_row_*).
struct BlockRecipe {
  int d_off;
  int min_off;        // -1: no min field
  float rms_per_d;    // sigma = d * rms_per_d
  float min_per_d;    // min field = min_per_d * d (Q4_1/Q5_1 store +m, K-quants store dmin)
};

BlockRecipe recipe(ir::DType t) {
  using ir::DType;
  switch (t) {
    case DType::Q4_0: return {0, -1, 4.64f, 0};          // d * (q - 8), q in 0..15
    case DType::Q4_1: return {0, 2, 4.61f, -7.5f};       // d * q + m
    case DType::Q5_0: return {0, -1, 9.25f, 0};          // d * (q - 16), q in 0..31
    case DType::Q5_1: return {0, 2, 9.23f, -15.5f};      // d * q + m
    case DType::Q8_0: return {0, -1, 73.9f, 0};          // d * q, q int8
    case DType::Q2_K: return {80, 82, 13.9f, 1.5f};      // d*sc*q - dmin*m, sc,m 4-bit, q 0..3
    case DType::Q3_K: return {108, -1, 43.3f, 0};        // d*(sc-32)*q, sc 6-bit, q -4..3
    case DType::Q4_K: return {0, 2, 258.0f, 7.5f};       // d*sc*q - dmin*m, sc,m 6-bit, q 0..15
    case DType::Q5_K: return {0, 2, 527.0f, 15.5f};      // same, q 0..31
    case DType::Q6_K: return {208, -1, 1366.0f, 0};      // d*sc*(q-32), sc int8, q 0..63
    default:
      throw Error(ErrorCode::kUnsupported,
                  "synthetic weights: no block recipe for type " + std::string(ir::dtype_name(t)));
  }
}

constexpr uint64_t kScalarGroup = 32;  // scalar tensors are seeded per 32 elements

}  // namespace

void append_blocks(ir::DType t, uint64_t seed, const WeightDist& dist, uint64_t first_block,
                   uint64_t n_blocks, std::vector<uint8_t>& out) {
  const auto& info = ir::dtype_info(t);
  if (!info.quantized) {
    if (t != ir::DType::F32 && t != ir::DType::F16 && t != ir::DType::BF16)
      throw Error(ErrorCode::kUnsupported,
                  "synthetic weights: type " + std::string(info.name) + " is not a weight type");
    const size_t es = info.block_bytes;
    const size_t base = out.size();
    out.resize(base + n_blocks * es);
    uint8_t* p = out.data() + base;
    uint64_t i = first_block;
    const uint64_t end = first_block + n_blocks;
    while (i < end) {
      const uint64_t g = i / kScalarGroup;
      Rng r(mix_seed(seed, g));
      for (uint64_t k = g * kScalarGroup; k < (g + 1) * kScalarGroup; ++k) {
        const float v = dist.mean + dist.sigma * r.normal();
        if (k < i || k >= end) continue;
        if (t == ir::DType::F32) std::memcpy(p, &v, 4);
        else if (t == ir::DType::F16) put16(p, ir::fp32_to_fp16(v));
        else put16(p, f32_to_bf16(v));
        p += es;
        ++i;
      }
    }
    return;
  }
  const BlockRecipe rc = recipe(t);
  const size_t bb = info.block_bytes;
  const size_t base = out.size();
  out.resize(base + n_blocks * bb);
  for (uint64_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = out.data() + base + b * bb;
    Rng r(mix_seed(seed, first_block + b));
    for (size_t i = 0; i < bb; i += 8) {
      const uint64_t x = r.next();
      const size_t k = bb - i < 8 ? bb - i : 8;
      std::memcpy(blk + i, &x, k);
    }
    const float jitter = 0.5f + r.uniform();
    const float d = dist.sigma * jitter / rc.rms_per_d;
    // Types without a min field are symmetric in d: a random sign (as ggml's
    // own quantisers produce, d = max / -8 etc.) cancels the small bias of
    // their off-centre quant ranges. Types with a min keep d > 0.
    const float sign = (rc.min_off < 0 && (r.next() & 1)) ? -1.0f : 1.0f;
    put16(blk + rc.d_off, ir::fp32_to_fp16(sign * d));
    if (rc.min_off >= 0) put16(blk + rc.min_off, ir::fp32_to_fp16(rc.min_per_d * d));
  }
}

}  // namespace kiln::synth
