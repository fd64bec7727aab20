// fp16 / bf16 conversions checked against first-principles values (ldexp),
// over all 65536 half bit patterns and the rounding boundaries between them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "ir/dequant.h"
#include "ir/quantize.h"

namespace kiln::ir {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE 754 binary16 value of h, computed from the definition.
double half_value(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  double v;
  if (e == 0x1F)
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  else if (e == 0)
    v = std::ldexp(static_cast<double>(m), -24);
  else
    v = std::ldexp(static_cast<double>(1024 + m), e - 25);
  return s ? -v : v;  // keeps -0.0
}

TEST(Fp16, AllValuesToFp32MatchDefinition) {
  int checked = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = fp16_to_fp32(static_cast<uint16_t>(h));
    const double want = half_value(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
      ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;
      // The 10-bit payload lands in the top of the fp32 mantissa.
      ASSERT_EQ((bits(got) >> 13) & 0x3FF, h & 0x3FF) << std::hex << h;
    } else {
      ASSERT_EQ(bits(got), bits(static_cast<float>(want))) << std::hex << h;
      ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 65536);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
}

TEST(Fp16, RoundTripEveryNonNaN) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double v = half_value(static_cast<uint16_t>(h));
    if (std::isnan(v)) {
      const uint16_t r = fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h)));
      ASSERT_EQ(r & 0x7C00, 0x7C00) << std::hex << h;
      ASSERT_NE(r & 0x3FF, 0) << "NaN must stay NaN, " << std::hex << h;
      continue;
    }
    ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

// Between every two adjacent halves a < b: the exact midpoint rounds to the
// one with an even mantissa, anything just off the midpoint to the nearer one.
TEST(Fp16, RoundsToNearestEvenAtEveryMidpoint) {
  for (uint32_t a = 0; a < 0x7C00; ++a) {  // b = a + 1 runs up to +inf
    const uint16_t b = static_cast<uint16_t>(a + 1);
    const double va = half_value(static_cast<uint16_t>(a));
    const double vb = b == 0x7C00 ? 65536.0 : half_value(b);  // inf rounds like 2^16
    const float mid = static_cast<float>((va + vb) / 2);
    ASSERT_EQ(static_cast<double>(mid), (va + vb) / 2) << "midpoint not exact in fp32";
    const uint16_t even = (a & 1) ? b : static_cast<uint16_t>(a);
    for (int s = 0; s < 2; ++s) {
      const float sign = s ? -1.0f : 1.0f;
      const uint16_t sb = s ? 0x8000 : 0;
      ASSERT_EQ(fp32_to_fp16(sign * mid), sb | even) << std::hex << a;
      ASSERT_EQ(fp32_to_fp16(sign * std::nextafter(mid, 0.0f)), sb | a) << std::hex << a;
      ASSERT_EQ(fp32_to_fp16(sign * std::nextafter(mid, INFINITY)), sb | b) << std::hex << a;
    }
  }
}

TEST(Fp16, SpecialValues) {
  EXPECT_EQ(fp32_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(INFINITY), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(-INFINITY), 0xFC00);
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(65519.996f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (0)
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::denorm_min()), 0x8000);
  const uint16_t nan = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(fp16_to_fp32(nan)));
  // A signalling NaN whose payload sits in the low fp32 bits still stays NaN.
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(from_bits(0x7F800001u)))));
}

// Random fp32 values: the result is never farther than either neighbour half.
TEST(Fp16, RandomValuesRoundToNearest) {
  SplitMix64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    // Exponents covering subnormal halves through overflow.
    const uint32_t u = static_cast<uint32_t>(rng.next());
    const uint32_t e = 100 + (u >> 24) % 45;  // 2^-27 .. 2^17
    const float f = from_bits((u & 0x80000000u) | (e << 23) | (u & 0x7FFFFF));
    const uint16_t h = fp32_to_fp16(f);
    const double v = half_value(h);
    if (std::isinf(v)) {
      ASSERT_GE(std::fabs(f), 65520.0f) << f;
      continue;
    }
    const double err = std::fabs(static_cast<double>(f) - v);
    const uint16_t mag = h & 0x7FFF;
    if (mag < 0x7BFF) {
      ASSERT_LE(err, std::fabs(f - half_value(static_cast<uint16_t>(h + 1)))) << f;
    }
    if (mag > 0) {
      ASSERT_LE(err, std::fabs(f - half_value(static_cast<uint16_t>(h - 1)))) << f;
    }
  }
}

TEST(Bf16, AllValuesAreTopHalfOfFp32) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = bf16_to_fp32(static_cast<uint16_t>(h));
    ASSERT_EQ(bits(got), h << 16) << std::hex << h;
  }
  EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xC040), -3.0f);
}

}  // namespace
}  // namespace kiln::ir
