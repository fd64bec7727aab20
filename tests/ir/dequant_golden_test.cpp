// Bit-exact comparison of kiln's CPU dequantiser and reference quantisers
// against golden vectors produced by the `gguf` Python package
// (tests/golden/make_dequant_golden.py).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ir/dequant.h"
#include "ir/dtype.h"
#include "ir/quantize.h"

namespace kiln::ir {
namespace {

std::string golden_dir() {
  const char* env = std::getenv("KILN_SOURCE_DIR");
  std::string root = env && *env ? env : KILN_SOURCE_DIR;
  return root + "/tests/golden/dequant/";
}

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

struct Golden {
  uint32_t type_id = 0, n = 0, nbytes = 0;
  std::vector<uint8_t> raw;       // block bytes (KDQ1) or quantised bytes (KQT1)
  std::vector<uint32_t> floats;   // expected outputs (KDQ1) or inputs (KQT1), as bits
};

// Reads a golden file; `magic` is "KDQ1" (bytes then floats) or "KQT1"
// (floats then bytes).
Golden load(const std::string& name, const char* magic) {
  Golden g;
  const std::string path = golden_dir() + name;
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open golden file " << path
                        << " (run tests/golden/make_dequant_golden.py)";
  if (!f.good()) return g;
  std::vector<uint8_t> all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_GE(all.size(), 16u);
  if (all.size() < 16) return g;
  EXPECT_EQ(std::memcmp(all.data(), magic, 4), 0) << path;
  g.type_id = le32(&all[4]);
  g.n = le32(&all[8]);
  g.nbytes = le32(&all[12]);
  EXPECT_EQ(all.size(), 16u + g.nbytes + 4ull * g.n) << path;
  if (all.size() != 16u + g.nbytes + 4ull * g.n) return g;
  const bool bytes_first = std::strcmp(magic, "KDQ1") == 0;
  const uint8_t* p = all.data() + 16;
  const uint8_t* bytes = bytes_first ? p : p + 4ull * g.n;
  const uint8_t* fl = bytes_first ? p + g.nbytes : p;
  g.raw.assign(bytes, bytes + g.nbytes);
  g.floats.resize(g.n);
  for (uint32_t i = 0; i < g.n; ++i) g.floats[i] = le32(fl + 4ull * i);
  return g;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

class DequantGolden : public ::testing::TestWithParam<DType> {};

TEST_P(DequantGolden, BitExactWithGguf) {
  const DType t = GetParam();
  const std::string name = std::string(dtype_name(t)) + ".bin";
  const Golden g = load(name, "KDQ1");
  ASSERT_EQ(g.type_id, static_cast<uint32_t>(t)) << name;
  ASSERT_GT(g.n, 0u);
  ASSERT_EQ(row_bytes(t, g.n), g.nbytes) << name;
  std::vector<float> out(g.n, -12345.0f);
  dequantize(t, g.raw.data(), out.data(), g.n);
  int mismatches = 0;
  for (uint32_t i = 0; i < g.n; ++i) {
    const uint32_t got = bits(out[i]);
    if (got != g.floats[i]) {
      float want;
      std::memcpy(&want, &g.floats[i], 4);
      if (++mismatches <= 8)
        ADD_FAILURE() << name << " element " << i << " (block " << i / dtype_info(t).block_elems
                      << "): got " << out[i] << " (0x" << std::hex << got << "), gguf says "
                      << want << " (0x" << g.floats[i] << std::dec << ")";
    }
  }
  EXPECT_EQ(mismatches, 0) << name << ": " << mismatches << " of " << g.n << " elements differ";
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantGolden,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                                           DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                           DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                                           DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Dequantising a sub-range of blocks gives the same floats as the whole run
// (no state carried between blocks).
TEST(DequantGolden, BlockRangesIndependent) {
  const Golden g = load("q4_k.bin", "KDQ1");
  ASSERT_EQ(g.n, 4096u);
  std::vector<float> out(256);
  dequantize(DType::Q4_K, g.raw.data() + 3 * 144, out.data(), 256);
  for (int i = 0; i < 256; ++i) ASSERT_EQ(bits(out[i]), g.floats[3 * 256 + i]) << i;
}

TEST(QuantizeGolden, Q8_0MatchesGguf) {
  const Golden g = load("quant_q8_0.bin", "KQT1");
  ASSERT_EQ(g.type_id, static_cast<uint32_t>(DType::Q8_0));
  std::vector<float> x(g.n);
  std::memcpy(x.data(), g.floats.data(), 4ull * g.n);
  std::vector<uint8_t> q(row_bytes(DType::Q8_0, g.n));
  quantize_q8_0(x.data(), q.data(), g.n);
  ASSERT_EQ(q.size(), g.raw.size());
  for (size_t i = 0; i < q.size(); ++i)
    ASSERT_EQ(q[i], g.raw[i]) << "byte " << i << " of block " << i / 34;
}

TEST(QuantizeGolden, Q4_0MatchesGguf) {
  const Golden g = load("quant_q4_0.bin", "KQT1");
  ASSERT_EQ(g.type_id, static_cast<uint32_t>(DType::Q4_0));
  std::vector<float> x(g.n);
  std::memcpy(x.data(), g.floats.data(), 4ull * g.n);
  std::vector<uint8_t> q(row_bytes(DType::Q4_0, g.n));
  quantize_q4_0(x.data(), q.data(), g.n);
  ASSERT_EQ(q.size(), g.raw.size());
  for (size_t i = 0; i < q.size(); ++i)
    ASSERT_EQ(q[i], g.raw[i]) << "byte " << i << " of block " << i / 18;
}

}  // namespace
}  // namespace kiln::ir
