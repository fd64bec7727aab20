// CPU dequantisation of GGML block formats, written from the block layouts
// (ggml-common.h). Every result is bit-exact with the `gguf` Python package
// (gguf.quants.dequantize), which computes in float32 with a fixed order of
// operations; the order is noted at each type and must not change:
//   Q4_0, Q5_0, Q8_0:      d * q
//   Q4_1, Q5_1:            (d * q) + m
//   Q2_K, Q4_K, Q5_K:      ((d * sc) * q) - (dmin * m)
//   Q3_K, Q6_K:            (d * sc) * q
// Each product / sum is rounded to float32 on its own: no FMA contraction.
#include "ir/dequant.h"

#include <cstring>
#include <limits>
#include <string>

#include "ir/error.h"

// No FMA contraction in this file (GCC does not honour the STDC pragma).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace kiln::ir {
namespace {

constexpr int kQK = 32;    // elements per block, legacy types
constexpr int kQKK = 256;  // elements per super-block, k-quants

// Every product goes through here, so each is a separately rounded float.
inline float mul(float a, float b) { return a * b; }

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline float h2f(const uint8_t* p) { return fp16_to_fp32(rd16(p)); }

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// ---- legacy 32-element blocks -------------------------------------------

// block_q4_0 { f16 d; u8 qs[16]; }: element l = low nibble of qs[l],
// element 16+l = high nibble; value (q - 8) * d.
void deq_q4_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  const uint8_t* qs = b + 2;
  for (int l = 0; l < kQK / 2; ++l) {
    y[l] = mul(d, static_cast<float>(static_cast<int>(qs[l] & 0x0F) - 8));
    y[l + 16] = mul(d, static_cast<float>(static_cast<int>(qs[l] >> 4) - 8));
  }
}

// block_q4_1 { f16 d; f16 m; u8 qs[16]; }: value d * q + m.
void deq_q4_1(const uint8_t* b, float* y) {
  const float d = h2f(b), m = h2f(b + 2);
  const uint8_t* qs = b + 4;
  for (int l = 0; l < kQK / 2; ++l) {
    const float p0 = mul(d, static_cast<float>(qs[l] & 0x0F));
    const float p1 = mul(d, static_cast<float>(qs[l] >> 4));
    y[l] = p0 + m;
    y[l + 16] = p1 + m;
  }
}

// block_q5_0 { f16 d; u32 qh (LE); u8 qs[16]; }: bit i of qh is bit 4 of
// element i; value (q - 16) * d.
void deq_q5_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  const uint32_t qh = rd32(b + 2);
  const uint8_t* qs = b + 6;
  for (int l = 0; l < kQK / 2; ++l) {
    const int q0 = (qs[l] & 0x0F) | (((qh >> l) & 1u) << 4);
    const int q1 = (qs[l] >> 4) | (((qh >> (l + 16)) & 1u) << 4);
    y[l] = mul(d, static_cast<float>(q0 - 16));
    y[l + 16] = mul(d, static_cast<float>(q1 - 16));
  }
}

// block_q5_1 { f16 d; f16 m; u32 qh; u8 qs[16]; }: value d * q + m.
void deq_q5_1(const uint8_t* b, float* y) {
  const float d = h2f(b), m = h2f(b + 2);
  const uint32_t qh = rd32(b + 4);
  const uint8_t* qs = b + 8;
  for (int l = 0; l < kQK / 2; ++l) {
    const unsigned q0 = (qs[l] & 0x0Fu) | (((qh >> l) & 1u) << 4);
    const unsigned q1 = (qs[l] >> 4) | (((qh >> (l + 16)) & 1u) << 4);
    const float p0 = mul(d, static_cast<float>(q0));
    const float p1 = mul(d, static_cast<float>(q1));
    y[l] = p0 + m;
    y[l + 16] = p1 + m;
  }
}

// block_q8_0 { f16 d; i8 qs[32]; }: value q * d.
void deq_q8_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  const uint8_t* qs = b + 2;
  for (int l = 0; l < kQK; ++l) y[l] = mul(d, static_cast<float>(static_cast<int8_t>(qs[l])));
}

// ---- k-quants: 256-element super-blocks ---------------------------------

// block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }
// scales[j]: low nibble scale, high nibble min, for the 16 elements j*16..
// Element h*128 + s*32 + l (h<2, s<4, l<32) is bits 2s..2s+1 of qs[h*32 + l].
void deq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = h2f(b + 80), dmin = h2f(b + 82);
  for (int h = 0; h < 2; ++h)
    for (int s = 0; s < 4; ++s)
      for (int l = 0; l < 32; ++l) {
        const int i = h * 128 + s * 32 + l;
        const uint8_t sc = scales[i / 16];
        const float dl = mul(d, static_cast<float>(sc & 0x0F));
        const float ml = mul(dmin, static_cast<float>(sc >> 4));
        const float p = mul(dl, static_cast<float>((qs[h * 32 + l] >> (2 * s)) & 3));
        y[i] = p - ml;
      }
}

// 6-bit scales of Q3_K, packed into 12 bytes: scale k (k<16) has its low
// nibble in byte k%8 (low half for k<8, high half for k>=8) and its top two
// bits in byte 8 + k%4 at bit position 2*(k/4). Stored with a +32 bias.
inline int q3k_scale(const uint8_t* sc, int k) {
  const int lo = (sc[k % 8] >> (4 * (k / 8))) & 0x0F;
  const int hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 0x03;
  return (lo | (hi << 4)) - 32;
}

// block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }
// Element i = h*128 + s*32 + l: low two bits are bits 2s.. of qs[h*32+l];
// hmask bit (i/32) of hmask[l] set means +0, clear means -4.
void deq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = h2f(b + 108);
  float dl[16];
  for (int k = 0; k < 16; ++k) dl[k] = mul(d, static_cast<float>(q3k_scale(sc, k)));
  for (int h = 0; h < 2; ++h)
    for (int s = 0; s < 4; ++s)
      for (int l = 0; l < 32; ++l) {
        const int i = h * 128 + s * 32 + l;
        const int lo = (qs[h * 32 + l] >> (2 * s)) & 3;
        const int hb = (hmask[l] >> (i / 32)) & 1;
        const int q = lo - (hb ? 0 : 4);
        y[i] = mul(dl[i / 16], static_cast<float>(q));
      }
}

// block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
// Element c*64 + s*32 + l (c<4, s<2) is nibble s of qs[c*32 + l]; group i/32.
void deq_q4_k(const uint8_t* b, float* y) {
  const float d = h2f(b), dmin = h2f(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int g = 0; g < 8; ++g) {
    int sc, m;
    k4_scale_min(scales, g, &sc, &m);
    const float dl = mul(d, static_cast<float>(sc));
    const float ml = mul(dmin, static_cast<float>(m));
    const int c = g / 2, s = g % 2;
    for (int l = 0; l < 32; ++l) {
      const float p = mul(dl, static_cast<float>((qs[c * 32 + l] >> (4 * s)) & 0x0F));
      y[g * 32 + l] = p - ml;
    }
  }
}

// block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
// As Q4_K, plus bit 4 of element i = bit (i/32) of qh[i%32].
void deq_q5_k(const uint8_t* b, float* y) {
  const float d = h2f(b), dmin = h2f(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int g = 0; g < 8; ++g) {
    int sc, m;
    k4_scale_min(scales, g, &sc, &m);
    const float dl = mul(d, static_cast<float>(sc));
    const float ml = mul(dmin, static_cast<float>(m));
    const int c = g / 2, s = g % 2;
    for (int l = 0; l < 32; ++l) {
      const int q = ((qs[c * 32 + l] >> (4 * s)) & 0x0F) | (((qh[l] >> g) & 1) << 4);
      const float p = mul(dl, static_cast<float>(q));
      y[g * 32 + l] = p - ml;
    }
  }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }
// Element i = h*128 + r (h<2, r<128): low nibble is nibble (r/64) of
// ql[h*64 + r%64]; top two bits are bits 2*(r/32).. of qh[h*32 + r%32];
// value d * scales[i/16] * (q - 32).
void deq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const uint8_t* scales = b + 192;
  const float d = h2f(b + 208);
  for (int h = 0; h < 2; ++h)
    for (int r = 0; r < 128; ++r) {
      const int i = h * 128 + r;
      const int lo = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
      const int hi = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
      const int q = (lo | (hi << 4)) - 32;
      const float dl = mul(d, static_cast<float>(static_cast<int8_t>(scales[i / 16])));
      y[i] = mul(dl, static_cast<float>(q));
    }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(DType t) {
  switch (t) {
    case DType::Q4_0: return deq_q4_0;
    case DType::Q4_1: return deq_q4_1;
    case DType::Q5_0: return deq_q5_0;
    case DType::Q5_1: return deq_q5_1;
    case DType::Q8_0: return deq_q8_0;
    case DType::Q2_K: return deq_q2_k;
    case DType::Q3_K: return deq_q3_k;
    case DType::Q4_K: return deq_q4_k;
    case DType::Q5_K: return deq_q5_k;
    case DType::Q6_K: return deq_q6_k;
    default: return nullptr;
  }
}

const DTypeInfo& checked_info(DType t, const char* what) {
  const DTypeInfo* info = dtype_info(static_cast<uint32_t>(t));
  if (!info)
    throw Error(ErrorCode::kUnsupported,
                std::string(what) + ": unsupported element type id " +
                    std::to_string(static_cast<uint32_t>(t)) + " (" +
                    std::string(ggml_type_name(static_cast<uint32_t>(t))) + ")");
  return *info;
}

void check_count(const DTypeInfo& info, int64_t n, const char* what) {
  if (n < 0)
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + ": negative element count " + std::to_string(n));
  if (n % info.block_elems != 0)
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + ": element count " + std::to_string(n) +
                    " is not a multiple of the " + std::string(info.name) + " block size " +
                    std::to_string(info.block_elems) +
                    "; quantised rows must hold whole blocks");
}

}  // namespace

void k4_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 0x3F;
    *m = s[j + 4] & 0x3F;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf / NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // 127 - 15 = 112
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal: value mant * 2^-24. Normalise: shift until the hidden bit
    // (bit 10) is set, decrementing the exponent.
    int e = -14;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    mant &= 0x3FFu;
    bits = sign | (static_cast<uint32_t>(e + 127) << 23) | (mant << 13);
  }
  return bits_to_float(bits);
}

uint16_t fp32_to_fp16(float f) {
  const uint32_t x = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) {  // NaN: keep it quiet and keep the top payload bits
    return static_cast<uint16_t>(sign | 0x7E00 | ((ax >> 13) & 0x3FF));
  }
  // 65520 = halfway between 65504 (max half, odd mantissa) and 2^16: ties
  // to even round up, so everything from there on is inf.
  if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00);
  const uint32_t e = ax >> 23;  // biased fp32 exponent
  if (e >= 113) {               // normal half: 2^-14 and up
    uint32_t h = ((e - 112) << 10) | ((ax >> 13) & 0x3FF);
    const uint32_t rest = ax & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // carry may bump exponent
    return static_cast<uint16_t>(sign | h);
  }
  if (e < 102) return sign;  // below 2^-25: rounds to zero
  // Subnormal half: value in units of 2^-24 is m >> (126 - e).
  const uint32_t m = (ax & 0x7FFFFF) | 0x800000;
  const uint32_t shift = 126 - e;  // 14 .. 24
  uint32_t h = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1))) ++h;  // may become the smallest normal
  return static_cast<uint16_t>(sign | h);
}

float bf16_to_fp32(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float round_to_dtype(DType t, float v) {
  if (t == DType::F16) return fp16_to_fp32(fp32_to_fp16(v));
  if (t == DType::BF16) return bf16_to_fp32(fp32_to_bf16(v));
  return v;
}

uint64_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = checked_info(t, "row_bytes");
  check_count(info, n, "row_bytes");
  const uint64_t blocks = static_cast<uint64_t>(n) / info.block_elems;
  if (blocks > std::numeric_limits<uint64_t>::max() / info.block_bytes)
    throw Error(ErrorCode::kInvalidArgument,
                "row_bytes: " + std::to_string(n) + " elements of " + std::string(info.name) +
                    " overflow a 64-bit byte count");
  return blocks * info.block_bytes;
}

void dequantize(DType t, const uint8_t* src, float* dst, int64_t n) {
  const DTypeInfo& info = checked_info(t, "dequantize");
  check_count(info, n, "dequantize");
  if (n == 0) return;
  if (!src || !dst)
    throw Error(ErrorCode::kInvalidArgument, "dequantize: null source or destination buffer");
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(rd16(src + 2 * i));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(rd16(src + 2 * i));
      return;
    default:
      break;
  }
  const BlockFn fn = block_fn(t);
  if (!fn)
    throw Error(ErrorCode::kUnsupported,
                "dequantize: element type " + std::string(info.name) +
                    " is not a floating-point or quantised type and cannot be dequantised");
  const int64_t nb = n / info.block_elems;
  for (int64_t i = 0; i < nb; ++i)
    fn(src + static_cast<size_t>(i) * info.block_bytes, dst + i * info.block_elems);
}

}  // namespace kiln::ir
