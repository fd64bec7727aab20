// Argument checking, row_bytes, random_blocks and the reference quantisers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ir/dequant.h"
#include "ir/dtype.h"
#include "ir/error.h"
#include "ir/quantize.h"

namespace kiln::ir {
namespace {

const DType kAll[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                      DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                      DType::Q4_K, DType::Q5_K, DType::Q6_K};

template <class F>
ErrorCode error_code_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()), "");
    return e.code();
  }
  ADD_FAILURE() << "expected kiln::Error";
  return ErrorCode::kInternal;
}

TEST(RowBytes, MatchesBlockSizes) {
  // Sizes from the GGML block layouts (ggml-common.h).
  EXPECT_EQ(row_bytes(DType::F32, 7), 28u);
  EXPECT_EQ(row_bytes(DType::F16, 3), 6u);
  EXPECT_EQ(row_bytes(DType::BF16, 5), 10u);
  EXPECT_EQ(row_bytes(DType::I32, 5), 20u);
  EXPECT_EQ(row_bytes(DType::Q4_0, 64), 36u);
  EXPECT_EQ(row_bytes(DType::Q4_1, 64), 40u);
  EXPECT_EQ(row_bytes(DType::Q5_0, 32), 22u);
  EXPECT_EQ(row_bytes(DType::Q5_1, 32), 24u);
  EXPECT_EQ(row_bytes(DType::Q8_0, 96), 102u);
  EXPECT_EQ(row_bytes(DType::Q2_K, 256), 84u);
  EXPECT_EQ(row_bytes(DType::Q3_K, 256), 110u);
  EXPECT_EQ(row_bytes(DType::Q4_K, 512), 288u);
  EXPECT_EQ(row_bytes(DType::Q5_K, 256), 176u);
  EXPECT_EQ(row_bytes(DType::Q6_K, 768), 630u);
  EXPECT_EQ(row_bytes(DType::Q6_K, 0), 0u);
}

TEST(RowBytes, RejectsBadCountsAndOverflow) {
  EXPECT_EQ(error_code_of([] { row_bytes(DType::Q4_K, 100); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_of([] { row_bytes(DType::Q4_0, 33); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_of([] { row_bytes(DType::F32, -1); }), ErrorCode::kInvalidArgument);
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(error_code_of([&] { row_bytes(DType::F32, big); }), ErrorCode::kInvalidArgument);
  // 2 * (2^63 - 1) still fits in 64 bits.
  EXPECT_EQ(row_bytes(DType::F16, big), static_cast<uint64_t>(big) * 2);
  const int64_t big_k = big / 256 * 256;
  EXPECT_EQ(row_bytes(DType::Q6_K, big_k), static_cast<uint64_t>(big_k / 256) * 210);
  EXPECT_EQ(error_code_of([] { row_bytes(static_cast<DType>(99), 1); }), ErrorCode::kUnsupported);
}

TEST(Dequantize, RejectsBadArguments) {
  std::vector<uint8_t> src(1024, 0);
  std::vector<float> dst(1024);
  EXPECT_EQ(error_code_of([&] { dequantize(DType::Q4_0, src.data(), dst.data(), 33); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_of([&] { dequantize(DType::Q6_K, src.data(), dst.data(), 128); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_of([&] { dequantize(DType::Q8_0, src.data(), dst.data(), -32); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_of([&] { dequantize(DType::Q8_0, nullptr, dst.data(), 32); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_of([&] { dequantize(DType::F16, src.data(), nullptr, 4); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_of([&] { dequantize(DType::I32, src.data(), dst.data(), 4); }),
            ErrorCode::kUnsupported);
  EXPECT_EQ(error_code_of([&] { dequantize(static_cast<DType>(16), src.data(), dst.data(), 256); }),
            ErrorCode::kUnsupported);  // iq2_xxs
  // n = 0 is a no-op, even without buffers.
  dequantize(DType::Q4_K, nullptr, nullptr, 0);
  // A rejected call writes nothing.
  dst.assign(dst.size(), 7.0f);
  EXPECT_THROW(dequantize(DType::Q4_0, src.data(), dst.data(), 31), Error);
  EXPECT_EQ(dst[0], 7.0f);
}

// Hand-built blocks with values worked out from the format description.
TEST(Dequantize, HandBuiltQ4_0AndQ8_0) {
  uint8_t q4[18] = {};
  q4[0] = 0x00; q4[1] = 0x40;  // d = 2.0 (fp16 0x4000)
  for (int l = 0; l < 16; ++l) q4[2 + l] = static_cast<uint8_t>(l | ((15 - l) << 4));
  float y[32];
  dequantize(DType::Q4_0, q4, y, 32);
  for (int l = 0; l < 16; ++l) {
    EXPECT_EQ(y[l], 2.0f * (l - 8));
    EXPECT_EQ(y[16 + l], 2.0f * (15 - l - 8));
  }
  uint8_t q8[34] = {};
  q8[0] = 0x00; q8[1] = 0xB8;  // d = -0.5
  for (int l = 0; l < 32; ++l) q8[2 + l] = static_cast<uint8_t>(static_cast<int8_t>(l * 8 - 128));
  dequantize(DType::Q8_0, q8, y, 32);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(y[l], -0.5f * (l * 8 - 128));
}

TEST(RandomBlocks, DeterministicAndValid) {
  for (DType t : kAll) {
    const int64_t n = 4 * dtype_info(t).block_elems * (dtype_info(t).block_elems == 1 ? 64 : 1);
    std::vector<uint8_t> a, b, c;
    random_blocks(t, n, 42, a);
    random_blocks(t, n, 42, b);
    random_blocks(t, n, 43, c);
    ASSERT_EQ(a.size(), row_bytes(t, n)) << dtype_name(t);
    EXPECT_EQ(a, b) << dtype_name(t);
    EXPECT_NE(a, c) << dtype_name(t);
    std::vector<float> y(n);
    dequantize(t, a.data(), y.data(), n);
    float amax = 0;
    for (float v : y) {
      ASSERT_TRUE(std::isfinite(v)) << dtype_name(t);
      amax = std::fmax(amax, std::fabs(v));
    }
    EXPECT_GT(amax, 0.0f) << dtype_name(t);
    if (!dtype_info(t).quantized) {
      EXPECT_LE(amax, 1.0f) << dtype_name(t);
    }
    // Largest possible |value| with |d|, |dmin| <= 0.1: 6-bit scale 63 times
    // 6-bit quant 63 (q5_k) plus min, well under 1000.
    EXPECT_LT(amax, 1000.0f) << dtype_name(t);
  }
}

TEST(RandomBlocks, ScaleFieldsInRange) {
  std::vector<uint8_t> a;
  random_blocks(DType::Q4_K, 256 * 64, 1, a);
  for (int b = 0; b < 64; ++b)
    for (int off : {0, 2}) {
      const uint8_t* p = a.data() + b * 144 + off;
      const float d = std::fabs(fp16_to_fp32(static_cast<uint16_t>(p[0] | (p[1] << 8))));
      EXPECT_GE(d, 0.999e-3f);
      EXPECT_LE(d, 1.001e-1f);
    }
  random_blocks(DType::Q6_K, 256 * 64, 1, a);
  for (int b = 0; b < 64; ++b) {
    const uint8_t* p = a.data() + b * 210 + 208;
    const float d = std::fabs(fp16_to_fp32(static_cast<uint16_t>(p[0] | (p[1] << 8))));
    EXPECT_GE(d, 0.999e-3f);
    EXPECT_LE(d, 1.001e-1f);
  }
  EXPECT_THROW(random_blocks(DType::Q4_K, 100, 1, a), Error);
  EXPECT_THROW(random_blocks(DType::I32, 4, 1, a), Error);
}

std::vector<float> test_signal(int64_t n, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    const float scale = 0.01f + 3.0f * static_cast<float>((i / 32) % 7);
    x[i] = (rng.uniform() * 2.0f - 1.0f) * scale;
  }
  return x;
}

TEST(Quantize, Q8_0ErrorBound) {
  const int64_t n = 32 * 200;
  std::vector<float> x = test_signal(n, 3);
  std::vector<uint8_t> q(row_bytes(DType::Q8_0, n));
  quantize_q8_0(x.data(), q.data(), n);
  std::vector<float> y(n);
  dequantize(DType::Q8_0, q.data(), y.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[b * 32 + i]));
    const float step = amax / 127.0f;
    // Half a step of rounding, plus the fp16 rounding of d (2^-11 relative) times |q| <= 127.
    const float bound = step * (0.5f + 127.0f / 2048.0f) * 1.001f;
    for (int i = 0; i < 32; ++i)
      ASSERT_LE(std::fabs(x[b * 32 + i] - y[b * 32 + i]), bound) << "block " << b << " elem " << i;
  }
  // All-zero input stays zero.
  std::vector<float> z(32, 0.0f), zy(32, 1.0f);
  quantize_q8_0(z.data(), q.data(), 32);
  dequantize(DType::Q8_0, q.data(), zy.data(), 32);
  for (float v : zy) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(quantize_q8_0(x.data(), q.data(), 33), Error);
}

TEST(Quantize, Q4_0ErrorBound) {
  const int64_t n = 32 * 200;
  std::vector<float> x = test_signal(n, 4);
  std::vector<uint8_t> q(row_bytes(DType::Q4_0, n));
  quantize_q4_0(x.data(), q.data(), n);
  std::vector<float> y(n);
  dequantize(DType::Q4_0, q.data(), y.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[b * 32 + i]));
    const float step = amax / 8.0f;
    for (int i = 0; i < 32; ++i) {
      const float err = std::fabs(x[b * 32 + i] - y[b * 32 + i]);
      // Values of the sign opposite to the extreme may be clipped at +7 steps
      // (one step off at worst); all others are within half a step (+ fp16 d).
      ASSERT_LE(err, step * 1.01f) << "block " << b << " elem " << i;
      const int nib = (q[b * 18 + 2 + i % 16] >> (i < 16 ? 0 : 4)) & 0xF;
      if (nib != 15) {
        ASSERT_LE(err, step * 0.51f) << "block " << b << " elem " << i;
      }
    }
  }
  EXPECT_THROW(quantize_q4_0(x.data(), q.data(), -32), Error);
}

}  // namespace
}  // namespace kiln::ir
