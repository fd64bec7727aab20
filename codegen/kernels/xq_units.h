// xq_units.h: how the int8-activation GEMV (gemv.cuh) pairs x with a weight
// row. A unit is 32 weights of a row, two 16-value parts A and B; where the
// parts lie in the row depends on the weight type (its packing), and the
// prologue stores the quantised x in *unit order* so that a warp's lanes,
// which take consecutive units, read consecutive 16-byte slots. Shared by
// NVRTC (the kernels include it) and the host (tests/codegen checks the
// contract below without a GPU), like launch.h: plain integer functions, dt
// the ggml type id (DT_* in common.cuh, ir::DType).
//
// The contract: for every unit u of a row of K weights,
//   xq_slot(dt, xq_part_a(dt, u) / 16, K) == xq_read_a(u)
//   xq_slot(dt, xq_part_b(dt, u) / 16, K) == xq_read_b(u, K)
// and xq_slot is a bijection of the K / 16 blocks onto the K / 16 slots.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define KILN_XQ_FN __host__ __device__ __forceinline__
#else
#define KILN_XQ_FN inline
#endif

namespace kiln {
namespace xq {

constexpr int kDtQ4K = 12, kDtQ6K = 14;  // the types whose parts interleave

// First element of part A / B of unit u (element 0 = the row's first weight).
//   q4_K: a 256-weight super-block holds sub-blocks of 32 with one scale each;
//         unit u takes 16 low nibbles of sub-block 2j and the 16 high nibbles
//         of the same bytes, which are sub-block 2j + 1 (j = (u >> 1) & 3).
//   q6_K: element 128n + 32c + l sits in ql[64n + 32(c & 1) + l] (nibble c >> 1)
//         and qh[32n + l] (bits 2c); A: c = u & 1, B: c + 2 (the same ql
//         bytes' high nibbles), n = (u >> 2) & 1, l from 16 ((u >> 1) & 1).
//   the 32-weight block types: A = the block's first 16, B = its last 16.
KILN_XQ_FN int xq_part_a(int dt, int u) {
  if (dt == kDtQ4K) return 256 * (u >> 3) + 64 * ((u >> 1) & 3) + 16 * (u & 1);
  if (dt == kDtQ6K) return 256 * (u >> 3) + 128 * ((u >> 2) & 1) + 32 * (u & 1) + 16 * ((u >> 1) & 1);
  return 32 * u;
}
KILN_XQ_FN int xq_part_b(int dt, int u) {
  return xq_part_a(dt, u) + (dt == kDtQ4K ? 32 : dt == kDtQ6K ? 64 : 16);
}

// The inverse: 16-value block p of x (elements 16p .. 16p + 15) is part A
// (b = 0) or B (b = 1) of unit u.
KILN_XQ_FN void xq_unit_of(int dt, int p, int& u, int& b) {
  const int r = p & 15;
  if (dt == kDtQ4K) {  // r = 4j + 2b + h, u = 8 sb + 2j + h
    b = (r >> 1) & 1;
    u = 8 * (p >> 4) + 2 * (r >> 2) + (r & 1);
  } else if (dt == kDtQ6K) {  // r = 8n + 4b + 2cp + l, u = 8 sb + 4n + 2l + cp
    b = (r >> 2) & 1;
    u = 8 * (p >> 4) + 4 * (r >> 3) + 2 * (r & 1) + ((r >> 1) & 1);
  } else {
    b = p & 1;
    u = p >> 1;
  }
}

// Slot (16-byte unit of the quantised x, also the index of its (d, d * sum)
// pair) where the prologue stores block p: part A of every unit first, then
// part B, each in unit order.
KILN_XQ_FN int xq_slot(int dt, int p, int K) {
  int u, b;
  xq_unit_of(dt, p, u, b);
  return b * (K / 32) + u;
}
// The slots a lane reads for unit u.
KILN_XQ_FN int xq_read_a(int u) { return u; }
KILN_XQ_FN int xq_read_b(int u, int K) { return K / 32 + u; }

// The bytes the GEMV loads for unit u inside its 256-weight super-block
// (u7 = u & 7; qload in gemv.cuh), offsets into the super-block's quants:
//   q4_K: the 16 bytes of unit u (128 quant bytes per super-block, after
//         d, dmin and the 12 scale bytes in the GGUF block);
//   q6_K: its 16 ql bytes (of 128) and 16 qh bytes (of 64, after ql), and
//         the index of part A's int8 scale (of 16; part B's is 4 further).
KILN_XQ_FN int xq_q4k_quants(int u7) { return 32 * ((u7 >> 1) & 3) + 16 * (u7 & 1); }
KILN_XQ_FN int xq_q6k_ql(int u7) { return 64 * ((u7 >> 2) & 1) + 32 * (u7 & 1) + 16 * ((u7 >> 1) & 1); }
KILN_XQ_FN int xq_q6k_qh(int u7) { return 128 + 32 * ((u7 >> 2) & 1) + 16 * ((u7 >> 1) & 1); }
KILN_XQ_FN int xq_q6k_scale_a(int u7) { return 8 * ((u7 >> 2) & 1) + 2 * (u7 & 1) + ((u7 >> 1) & 1); }

}  // namespace xq
}  // namespace kiln

#undef KILN_XQ_FN
