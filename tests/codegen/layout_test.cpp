// Weight layouts (codegen.h): repack/unpack are exact inverses for every dtype
// and layout, "planes" puts each row's quants and then its scales where the
// format says, and input_layout picks the layout for the weight operands whose
// dtype and row length fit it, in compiled and eager programs. Also the int8
// GEMV's unit map (kernels/xq_units.h): where a unit's parts lie in a row, and
// the unit-order x that the prologue writes and the lanes read.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "codegen/codegen.h"
#include "codegen/kernels/xq_units.h"
#include "ir/dequant.h"
#include "ir/dtype.h"
#include "ir/error.h"
#include "ir/graph.h"
#include "ir/quantize.h"
#include "op_cases.h"

namespace kiln::codegen {
namespace {
using ir::DType;

const DType kAll[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                      DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// The int8 GEMV's prologue writes block p of the quantised x to slot
// xq_slot(p); a lane reads unit u's parts from xq_read_a(u) and
// xq_read_b(u). Every block gets its own slot, and each unit reads the blocks
// its parts cover, for the types whose parts interleave (q4_K, q6_K) and the
// 32-weight block types, at the decode shapes.
TEST(XqUnits, PrologueSlotsAreWhereTheLanesReadEachUnitsParts) {
  for (DType dt : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K})
    for (int K : {256, 576, 2048, 4096, 14336}) {
      if (K % ir::dtype_info(dt).block_elems) continue;
      const int d = static_cast<int>(dt), blocks = K / 16;
      std::vector<int> owner(static_cast<size_t>(blocks), -1);
      for (int p = 0; p < blocks; ++p) {
        const int s = xq::xq_slot(d, p, K);
        ASSERT_TRUE(s >= 0 && s < blocks) << ir::dtype_name(dt) << " K " << K << " block " << p;
        ASSERT_EQ(owner[static_cast<size_t>(s)], -1) << ir::dtype_name(dt) << " K " << K << ": slot " << s << " twice";
        owner[static_cast<size_t>(s)] = p;
      }
      for (int u = 0; u < K / 32; ++u) {
        const int pa = xq::xq_part_a(d, u), pb = xq::xq_part_b(d, u);
        ASSERT_TRUE(pa % 16 == 0 && pb % 16 == 0 && pa != pb && pa < K && pb < K);
        EXPECT_EQ(owner[static_cast<size_t>(xq::xq_read_a(u))], pa / 16) << ir::dtype_name(dt) << " K " << K << " unit " << u;
        EXPECT_EQ(owner[static_cast<size_t>(xq::xq_read_b(u, K))], pb / 16) << ir::dtype_name(dt) << " K " << K << " unit " << u;
        // a warp's lanes take consecutive units: consecutive slots
        if (u > 0) {
          EXPECT_EQ(xq::xq_read_a(u), xq::xq_read_a(u - 1) + 1);
        }
      }
    }
}

// The part map against the formats (the reference dequantiser is the oracle):
// the bytes the GEMV loads for unit u (xq_q4k_quants; q6_K's xq_q6k_ql,
// xq_q6k_qh and its scales xq_q6k_scale_a, the same functions qload calls)
// are the weights xq_part_a / xq_part_b name.
TEST(XqUnits, PartsAreTheWeightsOfTheBytesAUnitLoads) {
  const int K = 512;
  std::vector<uint8_t> row;
  // q4_K: d = 1, dmin = 0, every scale 1 and min 0, so a weight is its nibble
  row.assign(static_cast<size_t>(K / 256 * 144), 0);
  for (int sb = 0; sb < K / 256; ++sb) {
    uint8_t* b = &row[static_cast<size_t>(sb * 144)];
    const uint16_t one = ir::fp32_to_fp16(1.0f);
    std::memcpy(b, &one, 2);
    for (int j = 0; j < 4; ++j) b[4 + j] = 1;  // scales 0..3 = 1, mins 0..3 = 0
    for (int j = 0; j < 4; ++j) b[12 + j] = 1;  // scales 4..7 = 1 (low nibble), mins 4..7 = 0
    for (int i = 0; i < 128; ++i) b[16 + i] = static_cast<uint8_t>((i * 37 + sb * 11) & 0xFF);
  }
  std::vector<float> w(static_cast<size_t>(K));
  ir::dequantize(DType::Q4_K, row.data(), w.data(), K);
  for (int u = 0; u < K / 32; ++u) {
    const int sb = u >> 3;
    const int pa = xq::xq_part_a(static_cast<int>(DType::Q4_K), u);
    const int pb = xq::xq_part_b(static_cast<int>(DType::Q4_K), u);
    for (int i = 0; i < 16; ++i) {
      // the bytes qload reads: the GGUF block's quants start at byte 16
      const uint8_t q = row[static_cast<size_t>(sb * 144 + 16 + xq::xq_q4k_quants(u & 7) + i)];
      EXPECT_EQ(w[static_cast<size_t>(pa + i)], static_cast<float>(q & 0xF)) << "q4_K unit " << u << " A " << i;
      EXPECT_EQ(w[static_cast<size_t>(pb + i)], static_cast<float>(q >> 4)) << "q4_K unit " << u << " B " << i;
    }
  }
  // q6_K: d = 1, scale i of a super-block i + 1 (16 of them, one per 16
  // weights), so a weight is (its 6-bit value - 32) times its scale
  row.assign(static_cast<size_t>(K / 256 * 210), 0);
  for (int sb = 0; sb < K / 256; ++sb) {
    uint8_t* b = &row[static_cast<size_t>(sb * 210)];
    for (int i = 0; i < 192; ++i) b[i] = static_cast<uint8_t>((i * 53 + sb * 7 + 3) & 0xFF);
    for (int i = 0; i < 16; ++i) b[192 + i] = static_cast<uint8_t>(i + 1);
    const uint16_t one = ir::fp32_to_fp16(1.0f);
    std::memcpy(b + 208, &one, 2);
  }
  ir::dequantize(DType::Q6_K, row.data(), w.data(), K);
  for (int u = 0; u < K / 32; ++u) {
    const int sb = u >> 3, cp = u & 1;  // cp: the qh bit pair of part A (B: cp + 2)
    const int pa = xq::xq_part_a(static_cast<int>(DType::Q6_K), u);
    const int pb = xq::xq_part_b(static_cast<int>(DType::Q6_K), u);
    // the scales qload reads: part A's index, part B's 4 further
    const int sa = xq::xq_q6k_scale_a(u & 7) + 1, sbb = xq::xq_q6k_scale_a(u & 7) + 4 + 1;
    for (int i = 0; i < 16; ++i) {
      // the bytes qload reads
      const uint8_t ql = row[static_cast<size_t>(sb * 210 + xq::xq_q6k_ql(u & 7) + i)];
      const uint8_t qh = row[static_cast<size_t>(sb * 210 + xq::xq_q6k_qh(u & 7) + i)];
      const int a = (ql & 0xF) | (((qh >> (2 * cp)) & 3) << 4), bq = (ql >> 4) | (((qh >> (2 * cp + 4)) & 3) << 4);
      EXPECT_EQ(w[static_cast<size_t>(pa + i)], static_cast<float>((a - 32) * sa)) << "q6_K unit " << u << " A " << i;
      EXPECT_EQ(w[static_cast<size_t>(pb + i)], static_cast<float>((bq - 32) * sbb)) << "q6_K unit " << u << " B " << i;
    }
  }
}

TEST(Layout, UnpackInvertsRepackForEveryDtypeAndLayout) {
  int planes = 0;
  for (DType dt : kAll)
    for (const char* layout : {kLayoutGgml, kLayoutPlanes}) {
      if (!layout_supported(dt, layout)) continue;
      planes += std::string(layout) == kLayoutPlanes;
      const int64_t qk = ir::dtype_info(dt).block_elems == 1 ? 8 : ir::dtype_info(dt).block_elems;
      for (int64_t rows : {1, 3, 7})
        for (int64_t nb : {1, 3}) {
          const int64_t K = qk * nb;
          std::vector<uint8_t> src;
          ir::random_blocks(dt, rows * K, 100 + rows * 7 + nb, src);
          ASSERT_EQ(src.size(), ir::row_bytes(dt, K) * rows);
          std::vector<uint8_t> packed(src.size(), 0xAB), back(src.size(), 0xCD);
          repack(dt, layout, rows, K, src.data(), packed.data());
          unpack(dt, layout, rows, K, packed.data(), back.data());
          EXPECT_EQ(back, src) << ir::dtype_name(dt) << " " << layout << " rows " << rows << " K " << K;
          if (std::string(layout) == kLayoutPlanes && nb > 1) {  // one block per row: q6_K rows stay as they are
            EXPECT_NE(packed, src) << ir::dtype_name(dt) << ": planes must move bytes";
          }
        }
    }
  EXPECT_EQ(planes, 5) << "q4_0, q4_1, q8_0, q4_K and q6_K have a plane layout";
}

// q8_0 block (GGUF): fp16 scale d, then 32 int8 quants. In "planes" every row
// is its K quant bytes in element order, then one fp16 d per block; rows keep
// the GGUF row size, so row r starts where it starts in GGUF.
TEST(Layout, PlanesHoldEachRowsQuantsInElementOrderThenItsScales) {
  const int64_t rows = 5, K = 256, nb = K / 32, rb = nb * 34;
  std::vector<uint8_t> src, out;
  ir::random_blocks(DType::Q8_0, rows * K, 9, src);
  out.resize(src.size());
  repack(DType::Q8_0, kLayoutPlanes, rows, K, src.data(), out.data());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < K; ++k)
      ASSERT_EQ(out[static_cast<size_t>(r * rb + k)], src[static_cast<size_t>(r * rb + (k / 32) * 34 + 2 + k % 32)]);
    for (int64_t b = 0; b < nb; ++b)
      EXPECT_EQ(std::memcmp(&out[static_cast<size_t>(r * rb + K + 2 * b)], &src[static_cast<size_t>(r * rb + b * 34)], 2),
                0);
  }
  // q4_K: 4 + 12 scale bytes lead the 144-byte block, 128 quant bytes follow.
  // In planes d and dmin stay first; the 8 6-bit scales and mins (GGUF: sub-block
  // j < 4 in the low 6 bits of bytes j and j+4, j >= 4 split over byte j+4's
  // nibbles and the top 2 bits of bytes j-4 and j) become four 24-bit groups,
  // group p = sc[2p] | sc[2p+1] << 6 | m[2p] << 12 | m[2p+1] << 18.
  std::vector<uint8_t> k4, k4p;
  ir::random_blocks(DType::Q4_K, 2 * 512, 4, k4);
  k4p.resize(k4.size());
  repack(DType::Q4_K, kLayoutPlanes, 2, 512, k4.data(), k4p.data());
  int distinct = 0;
  for (int r = 0; r < 2; ++r)
    for (int b = 0; b < 2; ++b) {
      const size_t row = static_cast<size_t>(r) * 288, blk = row + static_cast<size_t>(b) * 144;
      EXPECT_EQ(std::memcmp(&k4p[row + static_cast<size_t>(b) * 128], &k4[blk + 16], 128), 0);
      const uint8_t* g = &k4[blk + 4];
      const uint8_t* pl = &k4p[row + 256 + static_cast<size_t>(b) * 16];
      EXPECT_EQ(std::memcmp(pl, &k4[blk], 4), 0);  // d, dmin
      for (int j = 0; j < 8; ++j) {
        const int sc = j < 4 ? (g[j] & 63) : ((g[j + 4] & 15) | ((g[j - 4] >> 6) << 4));
        const int m = j < 4 ? (g[j + 4] & 63) : ((g[j + 4] >> 4) | ((g[j] >> 6) << 4));
        const int p = j / 2, e = j % 2;
        const uint32_t w = uint32_t(pl[4 + 3 * p]) | uint32_t(pl[5 + 3 * p]) << 8 | uint32_t(pl[6 + 3 * p]) << 16;
        EXPECT_EQ(static_cast<int>((w >> (6 * e)) & 63), sc) << "block " << b << " sub-block " << j;
        EXPECT_EQ(static_cast<int>((w >> (12 + 6 * e)) & 63), m) << "block " << b << " sub-block " << j;
        distinct += sc != m;
      }
    }
  EXPECT_GT(distinct, 8);  // random scales: the test tells scales from mins
  // q6_K: the 192 quant bytes (ql, qh) lead the 210-byte block, 16 scales and d follow.
  std::vector<uint8_t> k6, k6p;
  ir::random_blocks(DType::Q6_K, 3 * 256, 5, k6);
  k6p.resize(k6.size());
  repack(DType::Q6_K, kLayoutPlanes, 3, 256, k6.data(), k6p.data());
  for (int r = 0; r < 3; ++r) {  // one block per row: quants, then the 18 scale bytes
    EXPECT_EQ(std::memcmp(&k6p[static_cast<size_t>(r * 210)], &k6[static_cast<size_t>(r * 210)], 192), 0);
    EXPECT_EQ(std::memcmp(&k6p[static_cast<size_t>(r * 210 + 192)], &k6[static_cast<size_t>(r * 210 + 192)], 18), 0);
  }
}

// Planes only where every row's quants start 16-byte aligned.
TEST(Layout, PlanesFitOnlyAlignedRows) {
  EXPECT_TRUE(layout_fits(DType::Q4_0, kLayoutPlanes, 4096));
  EXPECT_FALSE(layout_fits(DType::Q4_0, kLayoutPlanes, 576));  // SmolLM2: 18 blocks x 2 scale bytes
  EXPECT_TRUE(layout_fits(DType::Q4_1, kLayoutPlanes, 128));
  EXPECT_TRUE(layout_fits(DType::Q4_K, kLayoutPlanes, 256));
  EXPECT_TRUE(layout_fits(DType::Q6_K, kLayoutPlanes, 14336));  // 56 blocks x 18 = 1008 = 63 x 16
  EXPECT_FALSE(layout_fits(DType::Q6_K, kLayoutPlanes, 768));
  EXPECT_FALSE(layout_fits(DType::Q5_K, kLayoutPlanes, 4096));
  EXPECT_TRUE(layout_fits(DType::Q5_K, kLayoutGgml, 4096));
}

TEST(Layout, BadRequestsThrow) {
  std::vector<uint8_t> a(1024), b(1024);
  EXPECT_THROW(repack(DType::Q5_K, kLayoutPlanes, 1, 256, a.data(), b.data()), Error);
  EXPECT_THROW(repack(DType::Q8_0, "tiles", 1, 32, a.data(), b.data()), Error);
  EXPECT_THROW(repack(DType::Q8_0, kLayoutPlanes, 1, 48, a.data(), b.data()), Error);
  EXPECT_THROW(unpack(DType::Q4_K, kLayoutPlanes, 1, 128, a.data(), b.data()), Error);
}

TEST(Layout, PlanesOnlyWhenAsked) {
  const testcases::OpCase c = testcases::matmul_case(ir::OpKind::MatMul, DType::Q8_0, 1, DType::F32, 256, 64);
  const Target ggml{90, kLayoutGgml};
  EXPECT_EQ(input_layout(c.g, c.g.nodes()[0], 1, ProgramMode::Compiled, ggml), kLayoutGgml);
  EXPECT_EQ(lower(c.g, c.g.nodes()[0], {1}, ggml, ProgramMode::Compiled).kernel.entry.find("_pl_"), std::string::npos);
  // the environment variable that used to switch layouts changes nothing now
  setenv("KILN_WEIGHT_LAYOUT", "planes", 1);
  EXPECT_EQ(input_layout(c.g, c.g.nodes()[0], 1, ProgramMode::Compiled, ggml), kLayoutGgml);
  unsetenv("KILN_WEIGHT_LAYOUT");
}

TEST(Layout, InputLayoutForWeightOperandsThatFit) {
  using ir::OpKind;
  const Target planes_target{90, kLayoutPlanes};
  for (OpKind op : {OpKind::MatMul, OpKind::RmsMatMul, OpKind::MatMulAdd, OpKind::RmsMatMulSwiGlu}) {
    for (DType wt : {DType::Q8_0, DType::Q4_1, DType::Q6_K, DType::Q5_K, DType::F16}) {
      const testcases::OpCase c = testcases::matmul_case(op, wt, 1, DType::F32, 256, 64);
      const ir::Node& n = c.g.nodes()[0];
      const size_t w = (op == OpKind::RmsMatMul || op == OpKind::RmsMatMulSwiGlu) ? 2 : 1;
      const bool planes = wt == DType::Q8_0 || wt == DType::Q4_1;  // q6_K rows of 256: 18 scale bytes
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        EXPECT_EQ(input_layout(c.g, n, i, ProgramMode::Compiled, planes_target), i == w && planes ? kLayoutPlanes : kLayoutGgml)
            << c.name << " input " << i;
        EXPECT_EQ(input_layout(c.g, n, i, ProgramMode::Eager, planes_target),
                  input_layout(c.g, n, i, ProgramMode::Compiled, planes_target))
            << c.name << " input " << i;
      }
      // the lowered kernel is the plane variant exactly when the weight is in planes
      const Lowered l = lower(c.g, n, {1}, planes_target, ProgramMode::Compiled);
      EXPECT_EQ(l.kernel.entry.find("_pl_") != std::string::npos, planes) << l.kernel.entry;
    }
  }
}

}  // namespace
}  // namespace kiln::codegen
