// dequant.cuh: device-side dequantisation of every IR weight dtype, written from
// the GGML block layouts; mirrors ir/dequant.cpp value for value (same operation
// order, no FMA contraction: __fmul_rn / __fadd_rn / __fsub_rn).
//
// Uniform interface. A row of K elements is K/QK blocks of BB bytes; a block is
// CH "chunks" of 8 elements. deq8(blk, c, v, a, b) dequantises chunk c of the
// block at blk into v[0..7], where v[0..3] are elements a..a+3 of the block and
// v[4..7] elements b..b+3. Chunks 16h..16h+15 of a 256-element super-block
// cover exactly its elements 128h..128h+127, so a 128-wide K tile is always
// 16 consecutive chunks (matmul.cuh relies on this). Float types use QK = 8.
#pragma once
#include "common.cuh"

template <int DT> struct QT;
template <> struct QT<DT_F32>  { enum { QK = 8,   BB = 32,  CH = 1 }; };
template <> struct QT<DT_F16>  { enum { QK = 8,   BB = 16,  CH = 1 }; };
template <> struct QT<DT_BF16> { enum { QK = 8,   BB = 16,  CH = 1 }; };
template <> struct QT<DT_Q4_0> { enum { QK = 32,  BB = 18,  CH = 4 }; };
template <> struct QT<DT_Q4_1> { enum { QK = 32,  BB = 20,  CH = 4 }; };
template <> struct QT<DT_Q5_0> { enum { QK = 32,  BB = 22,  CH = 4 }; };
template <> struct QT<DT_Q5_1> { enum { QK = 32,  BB = 24,  CH = 4 }; };
template <> struct QT<DT_Q8_0> { enum { QK = 32,  BB = 34,  CH = 4 }; };
template <> struct QT<DT_Q2_K> { enum { QK = 256, BB = 84,  CH = 32 }; };
template <> struct QT<DT_Q3_K> { enum { QK = 256, BB = 110, CH = 32 }; };
template <> struct QT<DT_Q4_K> { enum { QK = 256, BB = 144, CH = 32 }; };
template <> struct QT<DT_Q5_K> { enum { QK = 256, BB = 176, CH = 32 }; };
template <> struct QT<DT_Q6_K> { enum { QK = 256, BB = 210, CH = 32 }; };

__device__ __forceinline__ int nib(u32 w, int i, int hi) { return (w >> (8 * i + 4 * hi)) & 0xF; }

// Exact small-integer -> float without the quarter-rate I2F instruction:
// 0x4B000000 | q is the float 2^23 + q (q < 2^23), so subtracting 2^23 + off
// gives q - off exactly. Used for every quant value and scale below.
__device__ __forceinline__ float qf(u32 q, int off = 0) {
  return __int_as_float(0x4B000000u | q) - (8388608.f + (float)off);
}

// 6-bit scale/min j of Q4_K / Q5_K (12 packed bytes).
__device__ __forceinline__ void k4_scale_min(const u8* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 0x3F;
    m = s[j + 4] & 0x3F;
  } else {
    sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}
// The same in the planes layout, where codegen::repack stores the 12 bytes as
// four 24-bit groups, group p (bytes 3p .. 3p+2) = sc[2p] | sc[2p+1] << 6 |
// m[2p] << 12 | m[2p+1] << 18: what sub-blocks 2p and 2p+1 need in one word.
__device__ __forceinline__ void k4p_scale_min(const u8* s, int j, int& sc, int& m) {
  const u8* g = s + 3 * (j >> 1);
  const u32 v = (u32)g[0] | ((u32)g[1] << 8) | ((u32)g[2] << 16);
  sc = (v >> (6 * (j & 1))) & 0x3F;
  m = (v >> (12 + 6 * (j & 1))) & 0x3F;
}
// 6-bit signed scale k of Q3_K (12 packed bytes, bias 32).
__device__ __forceinline__ int q3k_scale(const u8* sc, int k) {
  const int lo = (sc[k % 8] >> (4 * (k / 8))) & 0x0F;
  const int hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 0x03;
  return (lo | (hi << 4)) - 32;
}

// Plane layout ("planes", codegen::repack; the compile default): each row
// of nb blocks is stored as its nb * QB quant bytes (one contiguous,
// 16-byte-aligned run), then its nb * SB scale bytes. Rows keep their GGUF
// size, so a row range of a concatenated weight is a view in either layout;
// codegen uses planes only where nb * SB is a multiple of 16 (every row
// starts aligned). In the GGUF block the scale bytes come first (bytes
// [0, SB)), the quants after ([SB, SB + QB)), except for q6_k (quants
// first). q4_k's 12 packed 6-bit scale/min bytes are also permuted into four
// 24-bit groups, one per pair of sub-blocks (k4p_scale_min), so that a GEMV
// lane decodes its two scales and mins with a few shifts. Types without a
// plane layout have SB = 0 and are never read through it.
template <int DT> struct PL { enum { SB = 0, QB = QT<DT>::BB }; };
template <> struct PL<DT_Q4_0> { enum { SB = 2, QB = 16 }; };
template <> struct PL<DT_Q4_1> { enum { SB = 4, QB = 16 }; };
template <> struct PL<DT_Q8_0> { enum { SB = 2, QB = 32 }; };
template <> struct PL<DT_Q4_K> { enum { SB = 16, QB = 128 }; };
// q6_k: the quants (ql, qh: 192 bytes) come first in its GGUF block, the
// scale bytes (16 int8 scales, then d) after them.
template <> struct PL<DT_Q6_K> { enum { SB = 18, QB = 192 }; };

__device__ __forceinline__ u32 ldw32(const u8* p) {  // 4-byte aligned
  u32 v;
  asm("ld.global.nc.L1::evict_first.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ uint2 ldw64(const u8* p) {  // 8-byte aligned
  uint2 v;
  asm("ld.global.nc.L1::evict_first.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}
template <bool AL> __device__ __forceinline__ u32 ldq32(const u8* p) { return AL ? ldw32(p) : ld32u(p); }

// Chunk c of one block whose quant bytes start at q and scale bytes at s
// (GGUF: q = blk + SB, s = blk; planes: aligned). AL: the planes layout (q is
// 4-byte aligned, 8 for q8_0; q4_k's scale bytes permuted). One arithmetic
// for both layouts, so results are identical.
template <int DT, bool AL>
__device__ __forceinline__ void deq8x(const u8* q, const u8* s, int c, float v[8], int& a, int& b) {
  if (DT == DT_Q4_0 || DT == DT_Q4_1) {
    a = 4 * c; b = 16 + 4 * c;
    const float d = ldh(s);
    const u32 w = ldq32<AL>(q + 4 * c);
    if (DT == DT_Q4_0) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[i] = __fmul_rn(d, qf(nib(w, i, 0), 8));
        v[4 + i] = __fmul_rn(d, qf(nib(w, i, 1), 8));
      }
    } else {
      const float m = ldh(s + 2);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[i] = __fadd_rn(__fmul_rn(d, qf(nib(w, i, 0))), m);
        v[4 + i] = __fadd_rn(__fmul_rn(d, qf(nib(w, i, 1))), m);
      }
    }
  } else if (DT == DT_Q8_0) {
    a = 8 * c; b = 8 * c + 4;
    const float d = ldh(s);
    u32 q0, q1;
    if (AL) {
      const uint2 p = ldw64(q + 8 * c);
      q0 = p.x; q1 = p.y;
    } else {
      q0 = ld32u(q + 8 * c); q1 = ld32u(q + 8 * c + 4);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[i] = __fmul_rn(d, qf(((q0 >> (8 * i)) & 0xFF) ^ 0x80, 128));
      v[4 + i] = __fmul_rn(d, qf(((q1 >> (8 * i)) & 0xFF) ^ 0x80, 128));
    }
  } else if (DT == DT_Q4_K) {
    const int c4 = c >> 3, l0 = (c & 7) * 4;
    const int ga = 2 * c4, gb = 2 * c4 + 1;
    a = ga * 32 + l0;
    b = gb * 32 + l0;
    const float d = ldh(s), dmin = ldh(s + 2);
    int sca, ma, scb, mb;
    if (AL) {  // planes (the only caller with AL): the permuted scale bytes
      k4p_scale_min(s + 4, ga, sca, ma);
      k4p_scale_min(s + 4, gb, scb, mb);
    } else {
      k4_scale_min(s + 4, ga, sca, ma);
      k4_scale_min(s + 4, gb, scb, mb);
    }
    const float dla = __fmul_rn(d, qf(sca)), mla = __fmul_rn(dmin, qf(ma));
    const float dlb = __fmul_rn(d, qf(scb)), mlb = __fmul_rn(dmin, qf(mb));
    const u32 w = ldq32<AL>(q + c4 * 32 + l0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[i] = __fsub_rn(__fmul_rn(dla, qf(nib(w, i, 0))), mla);
      v[4 + i] = __fsub_rn(__fmul_rn(dlb, qf(nib(w, i, 1))), mlb);
    }
  } else if (DT == DT_Q6_K) {  // q: ql[128], qh[64]; s: scales[16], d
    const int h = c >> 4, j0 = (c & 15) * 4;
    a = h * 128 + j0;
    b = h * 128 + 64 + j0;
    const float d = ldh(s + 16);
    const u32 ql = ldq32<AL>(q + h * 64 + j0);
    const u32 qh = ldq32<AL>(q + 128 + h * 32 + (j0 & 31));
    const int sh = 2 * (j0 >> 5);  // j0..j0+3 share j/32
    const float dla = __fmul_rn(d, qf(s[a / 16] ^ 0x80, 128));
    const float dlb = __fmul_rn(d, qf(s[b / 16] ^ 0x80, 128));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const u32 hb = (qh >> (8 * i)) & 0xFF;
      const u32 qa = nib(ql, i, 0) | (((hb >> sh) & 3) << 4);  // value qa - 32
      const u32 qb = nib(ql, i, 1) | (((hb >> (sh + 4)) & 3) << 4);
      v[i] = __fmul_rn(dla, qf(qa, 32));
      v[4 + i] = __fmul_rn(dlb, qf(qb, 32));
    }
  }
}

// The 8 values of 16 bytes of an f16 or bf16 row, in order.
template <int DT>
__device__ __forceinline__ void half8(const uint4 p, float v[8]) {
  const u32 w[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = DT == DT_F16 ? h2f((u16)(w[i] & 0xFFFF)) : bf2f((u16)(w[i] & 0xFFFF));
    v[2 * i + 1] = DT == DT_F16 ? h2f((u16)(w[i] >> 16)) : bf2f((u16)(w[i] >> 16));
  }
}

template <int DT>
__device__ __forceinline__ void deq8(const u8* blk, int c, float v[8], int& a, int& b) {
  if (DT == DT_F32) {
    a = 0; b = 4;
    const uint4 p = ldw128(blk), q = ldw128(blk + 16);
    v[0] = __uint_as_float(p.x); v[1] = __uint_as_float(p.y); v[2] = __uint_as_float(p.z); v[3] = __uint_as_float(p.w);
    v[4] = __uint_as_float(q.x); v[5] = __uint_as_float(q.y); v[6] = __uint_as_float(q.z); v[7] = __uint_as_float(q.w);
  } else if (DT == DT_F16 || DT == DT_BF16) {
    a = 0; b = 4;
    half8<DT>(ldw128(blk), v);
  } else if (DT == DT_Q4_0 || DT == DT_Q4_1) {
    deq8x<DT, false>(blk + PL<DT>::SB, blk, c, v, a, b);
  } else if (DT == DT_Q5_0) {
    a = 4 * c; b = 16 + 4 * c;
    const float d = ldh(blk);
    const u32 qh = ld32u(blk + 2);
    const u32 q = ld32u(blk + 6 + 4 * c);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int l = 4 * c + i;
      const int q0 = nib(q, i, 0) | (((qh >> l) & 1u) << 4);
      const int q1 = nib(q, i, 1) | (((qh >> (l + 16)) & 1u) << 4);
      v[i] = __fmul_rn(d, qf(q0, 16));
      v[4 + i] = __fmul_rn(d, qf(q1, 16));
    }
  } else if (DT == DT_Q5_1) {
    a = 4 * c; b = 16 + 4 * c;
    const float d = ldh(blk), m = ldh(blk + 2);
    const u32 qh = ld32u(blk + 4);
    const u32 q = ld32u(blk + 8 + 4 * c);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int l = 4 * c + i;
      const int q0 = nib(q, i, 0) | (((qh >> l) & 1u) << 4);
      const int q1 = nib(q, i, 1) | (((qh >> (l + 16)) & 1u) << 4);
      v[i] = __fadd_rn(__fmul_rn(d, qf(q0)), m);
      v[4 + i] = __fadd_rn(__fmul_rn(d, qf(q1)), m);
    }
  } else if (DT == DT_Q8_0) {
    deq8x<DT, false>(blk + PL<DT>::SB, blk, c, v, a, b);
  } else if (DT == DT_Q2_K || DT == DT_Q3_K) {
    const int h = c >> 4, sp = (c >> 3) & 1, l0 = (c & 7) * 4;
    const int s0 = 2 * sp, s1 = 2 * sp + 1;
    a = h * 128 + s0 * 32 + l0;
    b = h * 128 + s1 * 32 + l0;
    if (DT == DT_Q2_K) {
      const float d = ldh(blk + 80), dmin = ldh(blk + 82);
      const u32 q = ld32u(blk + 16 + h * 32 + l0);
      const int sa = blk[a / 16], sb = blk[b / 16];
      const float dla = __fmul_rn(d, qf(sa & 0xF)), mla = __fmul_rn(dmin, qf(sa >> 4));
      const float dlb = __fmul_rn(d, qf(sb & 0xF)), mlb = __fmul_rn(dmin, qf(sb >> 4));
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const u32 byte = (q >> (8 * i)) & 0xFF;
        v[i] = __fsub_rn(__fmul_rn(dla, qf((byte >> (2 * s0)) & 3)), mla);
        v[4 + i] = __fsub_rn(__fmul_rn(dlb, qf((byte >> (2 * s1)) & 3)), mlb);
      }
    } else {
      const float d = ldh(blk + 108);
      const u32 q = ld32u(blk + 32 + h * 32 + l0);
      const u32 hm = ld32u(blk + l0);
      const float dla = __fmul_rn(d, qf(q3k_scale(blk + 96, a / 16) + 32, 32));
      const float dlb = __fmul_rn(d, qf(q3k_scale(blk + 96, b / 16) + 32, 32));
      const int ba = h * 4 + s0, bb = h * 4 + s1;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const u32 byte = (q >> (8 * i)) & 0xFF, hbyte = (hm >> (8 * i)) & 0xFF;
        // q = low2 - (hmask bit ? 0 : 4) = (low2 + 4*bit) - 4
        const u32 qa = ((byte >> (2 * s0)) & 3) + (((hbyte >> ba) & 1) << 2);
        const u32 qb = ((byte >> (2 * s1)) & 3) + (((hbyte >> bb) & 1) << 2);
        v[i] = __fmul_rn(dla, qf(qa, 4));
        v[4 + i] = __fmul_rn(dlb, qf(qb, 4));
      }
    }
  } else if (DT == DT_Q4_K) {
    deq8x<DT, false>(blk + PL<DT>::SB, blk, c, v, a, b);
  } else if (DT == DT_Q5_K) {
    const int c4 = c >> 3, l0 = (c & 7) * 4;
    const int ga = 2 * c4, gb = 2 * c4 + 1;
    a = ga * 32 + l0;
    b = gb * 32 + l0;
    const float d = ldh(blk), dmin = ldh(blk + 2);
    int sca, ma, scb, mb;
    k4_scale_min(blk + 4, ga, sca, ma);
    k4_scale_min(blk + 4, gb, scb, mb);
    const float dla = __fmul_rn(d, qf(sca)), mla = __fmul_rn(dmin, qf(ma));
    const float dlb = __fmul_rn(d, qf(scb)), mlb = __fmul_rn(dmin, qf(mb));
    const u32 q = ld32u(blk + 48 + c4 * 32 + l0);
    const u32 qh = ld32u(blk + 16 + l0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      int qa = nib(q, i, 0), qb = nib(q, i, 1);
      const u32 hb = (qh >> (8 * i)) & 0xFF;
      qa |= ((hb >> ga) & 1) << 4;
      qb |= ((hb >> gb) & 1) << 4;
      v[i] = __fsub_rn(__fmul_rn(dla, qf(qa)), mla);
      v[4 + i] = __fsub_rn(__fmul_rn(dlb, qf(qb)), mlb);
    }
  } else if (DT == DT_Q6_K) {
    deq8x<DT, false>(blk, blk + 192, c, v, a, b);
  }
}

// Bytes of one weight row of nb blocks in layout L (a row's bytes are
// contiguous in both layouts, and rows follow one another).
template <int DT, int L>
__device__ __forceinline__ i64 wrow_bytes(int nb) {
  return L == 0 ? (i64)nb * QT<DT>::BB : (i64)nb * (PL<DT>::QB + PL<DT>::SB);
}
// One weight row of a matrix in layout L (0 = GGUF blocks, 1 = planes, see
// PL). nblk (the matrix's blocks) is not needed by either layout. deq(blk, c, ...) = deq8 of chunk c of block blk.
template <int DT, int L> struct WRow {
  const u8* q;
  const u8* s;
  __device__ __forceinline__ WRow(const u8* w, i64 row, int nb, i64 nblk) {
    q = w + row * wrow_bytes<DT, L>(nb);
    s = L == 0 ? q : q + (i64)nb * PL<DT>::QB;
  }
  __device__ __forceinline__ WRow() : q(nullptr), s(nullptr) {}
  __device__ __forceinline__ void deq(int blk, int c, float v[8], int& a, int& b) const {
    if (L == 0) deq8<DT>(q + (i64)blk * QT<DT>::BB, c, v, a, b);
    else deq8x<DT, true>(q + (i64)blk * PL<DT>::QB, s + (i64)blk * PL<DT>::SB, c, v, a, b);
  }
};
