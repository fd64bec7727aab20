#include "ir/quantize.h"

#include <cmath>
#include <cstring>
#include <string>

#include "ir/dequant.h"
#include "ir/error.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace kiln::ir {
namespace {

// Byte offsets of the fp16 scale / min fields inside one block (ggml-common.h).
std::vector<int> fp16_fields(DType t) {
  switch (t) {
    case DType::Q4_0: return {0};
    case DType::Q4_1: return {0, 2};
    case DType::Q5_0: return {0};
    case DType::Q5_1: return {0, 2};
    case DType::Q8_0: return {0};
    case DType::Q2_K: return {80, 82};
    case DType::Q3_K: return {108};
    case DType::Q4_K: return {0, 2};
    case DType::Q5_K: return {0, 2};
    case DType::Q6_K: return {208};
    default: return {};
  }
}

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFF);
  p[1] = static_cast<uint8_t>(v >> 8);
}

void check_blocks(int64_t n, const char* what) {
  if (n < 0 || n % 32 != 0)
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + ": element count " + std::to_string(n) +
                    " must be a non-negative multiple of 32");
}

}  // namespace

void random_blocks(DType t, int64_t n, uint64_t seed, std::vector<uint8_t>& out) {
  const uint64_t bytes = row_bytes(t, n);  // validates t and n
  out.assign(static_cast<size_t>(bytes), 0);
  SplitMix64 rng(seed);
  switch (t) {
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) {
        const float v = rng.uniform() * 2.0f - 1.0f;
        std::memcpy(out.data() + 4 * i, &v, 4);
      }
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i)
        put16(out.data() + 2 * i, fp32_to_fp16(rng.uniform() * 2.0f - 1.0f));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const float v = rng.uniform() * 2.0f - 1.0f;
        uint32_t u;
        std::memcpy(&u, &v, 4);
        put16(out.data() + 2 * i, static_cast<uint16_t>(u >> 16));
      }
      return;
    default:
      break;
  }
  const std::vector<int> fields = fp16_fields(t);
  if (fields.empty())
    throw Error(ErrorCode::kUnsupported,
                "random_blocks: no block layout for type " + std::string(dtype_name(t)));
  for (size_t i = 0; i < out.size(); i += 8) {
    const uint64_t r = rng.next();
    for (size_t k = 0; k < 8 && i + k < out.size(); ++k)
      out[i + k] = static_cast<uint8_t>(r >> (8 * k));
  }
  const uint32_t bb = dtype_info(t).block_bytes;
  const int64_t nb = n / dtype_info(t).block_elems;
  for (int64_t b = 0; b < nb; ++b)
    for (int off : fields) {
      // Log-uniform magnitude in [1e-3, 1e-1], random sign.
      const float mag = 1e-3f * std::pow(100.0f, rng.uniform());
      const float v = (rng.next() & 1) ? -mag : mag;
      put16(out.data() + b * bb + off, fp32_to_fp16(v));
    }
}

void quantize_q8_0(const float* src, uint8_t* dst, int64_t n) {
  check_blocks(n, "quantize_q8_0");
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* x = src + b * 32;
    uint8_t* y = dst + b * 34;
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(y, fp32_to_fp16(d));
    for (int i = 0; i < 32; ++i) {
      const float s = x[i] * id;
      y[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::round(s)));  // half away from zero
    }
  }
}

void quantize_q4_0(const float* src, uint8_t* dst, int64_t n) {
  check_blocks(n, "quantize_q4_0");
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* x = src + b * 32;
    uint8_t* y = dst + b * 18;
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < 32; ++i)
      if (std::fabs(x[i]) > amax) {  // first element of largest magnitude
        amax = std::fabs(x[i]);
        max = x[i];
      }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(y, fp32_to_fp16(d));
    uint8_t q[32];
    for (int i = 0; i < 32; ++i) {
      const float s = x[i] * id + 8.5f;
      const int v = static_cast<int>(std::trunc(s));
      q[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 15 ? 15 : v));
    }
    for (int i = 0; i < 16; ++i) y[2 + i] = static_cast<uint8_t>(q[i] | (q[i + 16] << 4));
  }
}

bool act_q8_weight(DType t) {
  return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 || t == DType::Q5_1 || t == DType::Q8_0 ||
         t == DType::Q4_K || t == DType::Q6_K;
}

void act_q8_block(const float* v, int8_t* q, float* d) {
  float amax = 0.0f;
  for (int64_t i = 0; i < kActQ8Block; ++i) amax = std::fmax(amax, std::fabs(v[i]));
  if (!(amax > 0.0f)) {
    for (int64_t i = 0; i < kActQ8Block; ++i) q[i] = 0;
    *d = 0.0f;
    return;
  }
  const float id = 127.0f / amax;
  for (int64_t i = 0; i < kActQ8Block; ++i) {
    const float p = v[i] * id;  // one rounding, then to nearest even (as __float2int_rn)
    q[i] = static_cast<int8_t>(std::nearbyint(p));
  }
  *d = amax / 127.0f;
}

void act_q8_roundtrip(float* v, int64_t n) {
  if (n % kActQ8Block != 0)
    throw Error(ErrorCode::kInternal, "act_q8: " + std::to_string(n) + " values are not whole blocks of " +
                                          std::to_string(kActQ8Block));
  int8_t q[kActQ8Block];
  float d;
  for (int64_t b = 0; b < n; b += kActQ8Block) {
    act_q8_block(v + b, q, &d);
    for (int64_t i = 0; i < kActQ8Block; ++i) v[b + i] = static_cast<float>(q[i]) * d;
  }
}

}  // namespace kiln::ir
