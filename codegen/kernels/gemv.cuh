// gemv.cuh: the decode matmul (codegen/families/gemv.cpp).
#pragma once
#include "att_defer.cuh"
#include "matmul.cuh"
#include "rope.cuh"
#include "xq_units.h"

// Launch: block (32*kGemvWarps), grid ceil(N / ((kGemvWarps / SPLIT) * R)).
// A block holds kGemvWarps / SPLIT column groups; a group is SPLIT warps that
// take interleaved K chunks (more warps in flight for long rows) and computes
// R consecutive output columns (R weight rows; with MM_SWIGLU each column also
// has its "up" row): every x chunk is loaded once per lane and used against
// R rows from registers, so x traffic (K floats per column group, from L1/L2)
// drops R-fold; at R = 1 and SPLIT = 4 it was 2x the f16 weight bytes.
// MT: max tokens (compile-time, the bucket); tokens 0 .. min(nt,MT)-1 are
// computed.
// MM_RMS: no prologue. rms_norm(x) @ w^T = inv * ((x * g) @ w^T) with inv a
// per-token scalar, so the sum of squares of x is accumulated in the same pass
// over K as the dot products (the group reads every x element of the row
// exactly once) and inv is applied to the finished sums. (Before: every block
// re-read and reduced all of x before its first weight load.)
// Weights are read with an L1 evict-first hint (ldw*) so x stays in L1.
// ys (optional, shared memory; f32 activations only): column n's value of
// token 0 is also stored in ys[group * R + r] (lm_head_sample reduces its
// block's logits from there; with int8 activations it passes mm_gemv_xq a key).
// ---- int8 activations (XQ = the node's x_q8; ir/quantize.h) ---------------
// A unit is 32 weights of one row (u = 0 .. K/32-1, whatever the type's block
// size): two 16-value parts A and B, each inside one scale group of the
// weight and one 16-value activation block. A part's weight quants are 4
// words of 4 bytes in int8 range (nibbles, 6-bit values or q8_0's signed
// bytes) and it contributes
//   dw * (dx * dp4a-dot(qw, qx)) + mw * (dx * sum(qx))
// with dx the activation block's scale, dw the weight's scale of the part and
// mw its min / offset term (q4_0: -8 d, q4_1: m, q4_K: -dmin m, q6_K: -32 d sc);
// dx * sum(qx) is computed once per block of x, in the prologue.
// The 4-bit types' part B (the high nibbles) is kept in place, 16 times its
// value (one mask instead of a shift and a mask per word), as unsigned bytes
// (dp4a u8 x s8, dp4b below), and its integer dot is divided by 16 as it
// becomes a float (i2f22x16, exact): the same float as with the shifted
// nibbles.
struct QU {
  u32 a[4], b[4];
  float da, ma, db, mb;
};
template <int DT> struct HiNibbleX16 { enum { V = DT == DT_Q4_0 || DT == DT_Q4_1 || DT == DT_Q4_K }; };
// dp4a of unsigned weight bytes and signed activation bytes
__device__ __forceinline__ int dp4a_us(u32 a, u32 b, int c) {
  int d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
// Weight words from global memory (SH = 0: the non-coherent evict-first
// loads of common.cuh) or from a shared-memory copy of the rows (SH = 1, the
// bulk variant).
template <bool SH>
__device__ __forceinline__ u16 wld16(const u8* p) {
  if constexpr (SH) return *(const u16*)p;
  else return ld16(p);
}
template <bool SH>
__device__ __forceinline__ u32 wld32u(const u8* p) {
  return (u32)wld16<SH>(p) | ((u32)wld16<SH>(p + 2) << 16);
}
// 4-byte aligned (q4_1's 20-byte GGUF blocks keep their quants and scales so)
template <bool SH>
__device__ __forceinline__ u32 wld32(const u8* p) {
  if constexpr (SH) return *(const u32*)p;
  else return ldw32(p);
}
// AL: 16 (16-byte aligned), 4 or 2
template <bool SH, int AL>
__device__ __forceinline__ uint4 ldq128(const u8* p) {
  if constexpr (AL == 16) {
    if constexpr (SH) return *(const uint4*)p;
    else return ldw128(p);
  } else if constexpr (AL == 4) {
    return make_uint4(wld32<SH>(p), wld32<SH>(p + 4), wld32<SH>(p + 8), wld32<SH>(p + 12));
  }
  return make_uint4(wld32u<SH>(p), wld32u<SH>(p + 4), wld32u<SH>(p + 8), wld32u<SH>(p + 12));
}
template <int DT> struct HasMin { enum { V = DT != DT_Q8_0 }; };
// The raw words of one unit of one row, loaded a unit ahead of their use
// (qload) and decoded when used (qdecode), so a lane keeps two units of
// weight loads in flight.
struct QRaw {
  uint4 q, r;  // quant bytes (q8_0: 32 in q and r; q6_K: ql in q, qh in r; q4_K: scale block in r)
  u32 s0, s1;  // scale bytes (q4_0, q5_0: d; q4_1, q5_1: d, m; q8_0: d; q6_K: the two int8 scales, d);
               // q5_0, q5_1: s1 = qh, the 32 fifth bits
};
// Unit u of one weight row (WRow: L = 0 GGUF blocks, q = s = the row; L = 1
// planes, q = the row's quants, s = its scale bytes), from global memory or
// (SH) from a shared-memory copy of the row. u7 = u & 7, the unit's place in
// a 256-weight super-block: every caller steps u by multiples of 32 from its
// lane, so u7 is the lane's constant and the offsets made from it are
// computed once, not per unit.
template <int DT, int L, bool SH = false>
__device__ __forceinline__ void qload(const WRow<DT, L>& wr, int u, int u7, QRaw& o) {
  if constexpr (DT == DT_Q4_0 || DT == DT_Q4_1 || DT == DT_Q8_0) {
    const u8* q = L ? wr.q + (i64)u * PL<DT>::QB : wr.q + (i64)u * QT<DT>::BB + PL<DT>::SB;
    const u8* s = L ? wr.s + (i64)u * PL<DT>::SB : wr.q + (i64)u * QT<DT>::BB;
    // GGUF blocks: q4_1's 20 bytes keep 4-byte alignment, q4_0's 18 and q8_0's 34 only 2
    constexpr int AL = L == 1 ? 16 : DT == DT_Q4_1 ? 4 : 2;
    o.q = ldq128<SH, AL>(q);
    if (DT == DT_Q8_0) o.r = ldq128<SH, AL>(q + 16);
    o.s0 = DT == DT_Q4_1 ? wld32<SH>(s) : (u32)wld16<SH>(s);  // q4_1: d, m (4-byte aligned in both layouts)
  } else if constexpr (DT == DT_Q5_0 || DT == DT_Q5_1) {
    // GGUF blocks only (no planes layout): q5_0's 22 bytes are d, qh, qs
    // (2-byte aligned), q5_1's 24 bytes d, m, qh, qs (4-byte aligned)
    static_assert(L == 0, "q5_0 / q5_1 have no planes layout");
    const u8* b = wr.q + (i64)u * QT<DT>::BB;
    constexpr int QO = DT == DT_Q5_0 ? 6 : 8;
    o.q = ldq128<SH, DT == DT_Q5_0 ? 2 : 4>(b + QO);
    o.s0 = DT == DT_Q5_1 ? wld32<SH>(b) : (u32)wld16<SH>(b);
    o.s1 = DT == DT_Q5_1 ? wld32<SH>(b + 4) : wld32u<SH>(b + 2);
  } else if constexpr (DT == DT_Q4_K) {  // byte offsets in a super-block: xq_units.h
    const int sb = u >> 3;
    const u8* q = (L ? wr.q + (i64)sb * 128 : wr.q + (i64)sb * 144 + 16) + kiln::xq::xq_q4k_quants(u7);
    const u8* s = L ? wr.s + (i64)sb * 16 : wr.q + (i64)sb * 144;
    o.q = ldq128<SH, 16>(q);  // 16-byte aligned in both layouts (144-byte blocks, quants at +16)
    o.r = ldq128<SH, 16>(s);  // d, dmin, then the 12 scale bytes
  } else if constexpr (DT == DT_Q6_K) {
    const int sb = u >> 3;
    const u8* q = L ? wr.q + (i64)sb * 192 : wr.q + (i64)sb * 210;
    const u8* s = L ? wr.s + (i64)sb * 18 : wr.q + (i64)sb * 210 + 192;
    o.q = ldq128<SH, L == 1 ? 16 : 2>(q + kiln::xq::xq_q6k_ql(u7));
    o.r = ldq128<SH, L == 1 ? 16 : 2>(q + kiln::xq::xq_q6k_qh(u7));
    const int k = kiln::xq::xq_q6k_scale_a(u7);
    o.s0 = (u32)s[k] | ((u32)s[k + 4] << 8);
    o.s1 = (u32)wld16<SH>(s + 16);
  }
}
// Exact int -> float for |v| < 2^22 with a full-rate add instead of the
// quarter-rate I2F conversion (0x4B400000 + v is the float 1.5 * 2^23 + v).
__device__ __forceinline__ float i2f22(int v) { return __int_as_float(0x4B400000 + v) - 12582912.f; }

// s * v for a 6-bit v in one FFMA: 0x4B000000 | v is the float 2^23 + v, so
// with ns = -s * 2^23 (exact) the fused s * (2^23 + v) + ns is s * v before
// its one rounding: the same float as s * (float)v.
// v: any word whose low 6 bits are the value (one LOP3 masks it and sets the
// exponent; the constant sits in a register, as LOP3 takes one immediate).
__device__ __forceinline__ float mul6(float s, u32 v, float ns) {
  u32 f;
  asm("lop3.b32 %0, %1, 63, %2, 0xEA;" : "=r"(f) : "r"(v), "r"(0x4B000000u));  // (v & 63) | 0x4B000000
  return __fmaf_rn(s, __int_as_float(f), ns);
}
// v / 16 exactly (|v| < 2^22), the part-B sums of the 4-bit types
// (HiNibbleX16), in i2f22's two full-rate instructions.
__device__ __forceinline__ float i2f22x16(int v) {
  return __fmaf_rn(__int_as_float(0x4B400000 + v), 0.0625f, -786432.f);
}

// The fifth bits of 4 consecutive weights (t's low 4 bits, weight i at bit
// i) moved to bit 4 of byte i: one multiply places bit i at 4 + 8i (the
// four shifted copies 4 + 7k + i of the bits never overlap or carry).
__device__ __forceinline__ u32 q5_hi4(u32 t) { return ((t & 0xFu) * 0x02040810u) & 0x10101010u; }

template <int DT, int L>
__device__ __forceinline__ void qdecode(const QRaw& w, int u7, QU& o) {
  if constexpr (DT == DT_Q5_0 || DT == DT_Q5_1) {
    // part A: weights 0-15 (low nibbles, qh bits 0-15), B: 16-31 (high nibbles,
    // qh bits 16-31); unsigned 5-bit values, the offset in the min term
    const u32 q[4] = {w.q.x, w.q.y, w.q.z, w.q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      o.a[i] = (q[i] & 0x0F0F0F0Fu) | q5_hi4(w.s1 >> (4 * i));
      o.b[i] = ((q[i] >> 4) & 0x0F0F0F0Fu) | q5_hi4(w.s1 >> (16 + 4 * i));
    }
    if (DT == DT_Q5_0) {
      o.da = o.db = h2f((u16)w.s0);
      o.ma = o.mb = -16.f * o.da;
    } else {
      o.da = o.db = h2f((u16)(w.s0 & 0xFFFF));
      o.ma = o.mb = h2f((u16)(w.s0 >> 16));
    }
  } else if constexpr (DT == DT_Q8_0) {
    o.a[0] = w.q.x; o.a[1] = w.q.y; o.a[2] = w.q.z; o.a[3] = w.q.w;
    o.b[0] = w.r.x; o.b[1] = w.r.y; o.b[2] = w.r.z; o.b[3] = w.r.w;
    o.da = o.db = h2f((u16)w.s0);
    o.ma = o.mb = 0.f;
  } else if constexpr (DT == DT_Q4_0 || DT == DT_Q4_1 || DT == DT_Q4_K) {
    const u32 q[4] = {w.q.x, w.q.y, w.q.z, w.q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      o.a[i] = q[i] & 0x0F0F0F0Fu;
      o.b[i] = q[i] & 0xF0F0F0F0u;  // 16 x the high nibbles (HiNibbleX16)
    }
    if (DT == DT_Q4_0) {
      o.da = o.db = h2f((u16)w.s0);
      o.ma = o.mb = -8.f * o.da;
    } else if (DT == DT_Q4_1) {
      o.da = o.db = h2f((u16)(w.s0 & 0xFFFF));
      o.ma = o.mb = h2f((u16)(w.s0 >> 16));
    } else {
      // 6-bit scale/min of sub-blocks 2j and 2j+1 (bytes b[0..11] = r.y, r.z, r.w)
      const int j = (u7 >> 1) & 3;
      const float d = h2f((u16)(w.r.x & 0xFFFF)), dmin = h2f((u16)(w.r.x >> 16));
      u32 sc[2], mn[2];
      if (L) {  // planes: group j = 24 bits at bit 24j of (y, z, w) (k4p_scale_min)
        const u32 lo = j < 2 ? w.r.y : j == 2 ? w.r.z : w.r.w, hi = j < 2 ? w.r.z : w.r.w;
        const u32 g = __funnelshift_r(lo, hi, 24 * j);
        sc[0] = g; sc[1] = g >> 6; mn[0] = g >> 12; mn[1] = g >> 18;  // mul6 keeps the low 6 bits
      } else {  // GGUF packing, by shifts (k4_scale_min)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int sh = 8 * ((2 * j + e) & 3);
          const u32 Y = w.r.y >> sh, Z = w.r.z >> sh, W = w.r.w >> sh;
          if (j < 2) {
            sc[e] = Y & 63;
            mn[e] = Z & 63;
          } else {
            sc[e] = (W & 0xF) | ((Y >> 2) & 0x30);
            mn[e] = ((W >> 4) & 0xF) | ((Z >> 2) & 0x30);
          }
        }
      }
      // d * sc and -dmin * mn, each one FFMA (mul6)
      const float nd = d * -8388608.f, cm = dmin * 8388608.f;
      o.da = mul6(d, sc[0], nd);
      o.db = mul6(d, sc[1], nd);
      o.ma = mul6(-dmin, mn[0], cm);
      o.mb = mul6(-dmin, mn[1], cm);
    }
  } else if constexpr (DT == DT_Q6_K) {
    const int cp = u7 & 1;
    const u32 ql[4] = {w.q.x, w.q.y, w.q.z, w.q.w}, qh[4] = {w.r.x, w.r.y, w.r.z, w.r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      // t's bytes hold part A's 2 high bits at bits 0-1 and part B's at 4-5
      // (a shift by 2 cp < 4 stays inside each byte)
      const u32 t = qh[i] >> (2 * cp);
      o.a[i] = (ql[i] & 0x0F0F0F0Fu) | ((t << 4) & 0x30303030u);
      o.b[i] = ((ql[i] >> 4) & 0x0F0F0F0Fu) | (t & 0x30303030u);
    }
    const float d = h2f((u16)w.s1);
    o.da = d * i2f22((int)(signed char)(w.s0 & 0xFF));
    o.db = d * i2f22((int)(signed char)(w.s0 >> 8));
    o.ma = -32.f * o.da;
    o.mb = -32.f * o.db;
  }
}
// 16 gain values from element i (a multiple of 16) of a float-typed vector.
template <int GDT>
__device__ __forceinline__ void ldg16(const void* g, int i, float v[16]) {
  if (GDT == DT_F32) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float4 f = ((const float4*)g)[i / 4 + k];
      v[4 * k] = f.x; v[4 * k + 1] = f.y; v[4 * k + 2] = f.z; v[4 * k + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const uint4 h = ((const uint4*)g)[i / 8 + k];
      const u32 w[4] = {h.x, h.y, h.z, h.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const u16 lo = (u16)(w[e] & 0xFFFF), hi = (u16)(w[e] >> 16);
        v[8 * k + 2 * e] = GDT == DT_F16 ? h2f(lo) : bf2f(lo);
        v[8 * k + 2 * e + 1] = GDT == DT_F16 ? h2f(hi) : bf2f(hi);
      }
    }
  }
}
// ---- f32 activations on 16-bit float weights (the bulk GEMV's FX case) ----
// x (times the gain with MM_RMS) stays f32 in shared memory, [MT][K] in unit
// order: a unit u is the row's 8 weights 8u .. 8u + 7 (16 bytes), and its x
// values 0-3 sit at 4u, values 4-7 at K/2 + 4u, so that the 32 lanes' 16-byte
// reads of one half are contiguous (no bank conflicts; with the 8 values
// together, two lanes 32 bytes apart share banks). Arithmetic as mm_gemv's:
// acc += (x * g) * w in f32, inv applied to the finished sums.
__device__ __forceinline__ int fx_slot(int k, int K) { return ((k & 4) ? K / 2 : 0) + (k >> 3) * 4 + (k & 3); }

// Quantises the 16 activation values at xp (times the gain values gv with
// MM_RMS, whose squares of x go to ss) exactly as ir::act_q8_block: q packed
// 4 per word, the scale d and the sum of the quants.
template <int FL>
__device__ __forceinline__ void xq16(const float* xp, const float* gv, u32 q[4], float& d, int& sum, float& ss) {
  float v[16];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float4 f = *(const float4*)(xp + 4 * k);
    v[4 * k] = f.x; v[4 * k + 1] = f.y; v[4 * k + 2] = f.z; v[4 * k + 3] = f.w;
  }
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    if (FL & MM_RMS) {
      ss += v[i] * v[i];
      v[i] = __fmul_rn(v[i], gv[i]);
    }
    amax = fmaxf(amax, fabsf(v[i]));
  }
  const bool nz = amax > 0.f;
  const float id = nz ? __fdiv_rn(127.f, amax) : 0.f;
  d = nz ? __fdiv_rn(amax, 127.f) : 0.f;
  sum = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    // rint(v * id) as the low byte of 1.5 * 2^23 + v * id: the add rounds to
    // an integer, ties to even (= __float2int_rn, |v * id| <= 127), and the
    // byte is its two's complement; full-rate adds instead of the
    // quarter-rate F2I conversions
    u32 b[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) b[i] = __float_as_uint(__fadd_rn(__fmul_rn(v[4 * k + i], id), 12582912.f));
    const u32 w = __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
    q[k] = w;
    sum = __dp4a((int)w, 0x01010101, sum);
  }
}

// Prologue of every int8-activation GEMV block: quantises each token's x into
// shared memory (int8 [MT][K] at xqs, then (d, d * sum) per 16-value part
// [MT][K/16] at xds), both in unit order for the weight type DT (xq_units.h,
// which says why); for the f16 and bf16 weights of the bulk GEMV (FX) it
// stores x * g in f32 at xqs instead, in fx_slot order (xds unused); with
// MM_RMS the gain is applied first and inv[t] = 1/rms of token t's x (sums of
// squares reduced over the block). Ends with the block synchronised.
// G0: the caller has loaded part threadIdx.x of the gain already (g0, 16
// values; the gain is a weight, so it may be read before the PDL wait).
template <int DT, int GDT, int FL, int MT, bool G0 = false>
__device__ __forceinline__ void xq_prologue(const float* __restrict__ x, const void* __restrict__ g, int nt, int K,
                                            float eps, u8* xqs, float2* xds, float* red, float inv[MT],
                                            const float* g0 = nullptr) {
  const int parts = K / 16;
  float ss[MT];
#pragma unroll
  for (int t = 0; t < MT; ++t) ss[t] = 0.f;
  for (int t = 0; t < nt; ++t)
    for (int p = threadIdx.x; p < parts; p += blockDim.x) {
      float gv[16];
      if (G0 && p == (int)threadIdx.x) {
#pragma unroll
        for (int i = 0; i < 16; ++i) gv[i] = g0[i];
      } else if (FL & MM_RMS) {
        ldg16<GDT>(g, 16 * p, gv);
      }
      const float* xp = x + (i64)t * K + 16 * p;
      if constexpr (DT == DT_F16 || DT == DT_BF16) {
        float* xs = (float*)xqs + (i64)t * K;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          float4 f = *(const float4*)(xp + 4 * k);
          if (FL & MM_RMS) {
            ss[t] += f.x * f.x + f.y * f.y + f.z * f.z + f.w * f.w;
            f = make_float4(f.x * gv[4 * k], f.y * gv[4 * k + 1], f.z * gv[4 * k + 2], f.w * gv[4 * k + 3]);
          }
          *(float4*)(xs + fx_slot(16 * p + 4 * k, K)) = f;
        }
      } else {
        u32 q[4];
        float d;
        int sum;
        xq16<FL>(xp, gv, q, d, sum, ss[t]);
        const int slot = kiln::xq::xq_slot(DT, p, K);
        *(uint4*)(xqs + (i64)t * K + 16 * slot) = make_uint4(q[0], q[1], q[2], q[3]);
        xds[t * parts + slot] = make_float2(d, d * (float)sum);
      }
    }
#pragma unroll
  for (int t = 0; t < MT; ++t) inv[t] = 1.f;
  if (FL & MM_RMS) {
#pragma unroll
    for (int t = 0; t < MT; ++t) inv[t] = 1.0f / sqrtf(block_sum(ss[t], red) / (float)K + eps);
  } else {
    __syncthreads();
  }
}

// One unit u of RR 16-bit float rows staged in shared memory (rows[j])
// against the f32 x of xq_prologue's FX case: acc[j][t] += the 8 products.
template <int DT, int MT, int RR>
__device__ __forceinline__ void fx_unit(const u8* const (&rows)[RR], int u, const float* xs, int K, int nt,
                                        float (&acc)[RR][MT]) {
  float xv[MT][8];
#pragma unroll
  for (int t = 0; t < MT; ++t) {
    if (MT == 1 || t < nt) {
      const float4 a = *(const float4*)(xs + (i64)t * K + 4 * u);
      const float4 b = *(const float4*)(xs + (i64)t * K + K / 2 + 4 * u);
      xv[t][0] = a.x; xv[t][1] = a.y; xv[t][2] = a.z; xv[t][3] = a.w;
      xv[t][4] = b.x; xv[t][5] = b.y; xv[t][6] = b.z; xv[t][7] = b.w;
    }
  }
#pragma unroll
  for (int j = 0; j < RR; ++j) {
    float wv[8];
    half8<DT>(*(const uint4*)(rows[j] + 16 * u), wv);
#pragma unroll
    for (int t = 0; t < MT; ++t)
      if (MT == 1 || t < nt)
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[j][t] += xv[t][i] * wv[i];
  }
}

// One unit u (32 weights) of RR rows, already loaded (w[j]), against the
// quantised x: acc[j][t] += the unit's contribution (see QU).
template <int DT, int L, int MT, int RR>
__device__ __forceinline__ void xq_unit(const QRaw* w, int u, int u7, const u8* xqs, const float2* xds, int K, int nt,
                                        float (&acc)[RR][MT]) {
  const int parts = K / 16;
  u32 xa[MT][4], xb[MT][4];
  float2 ea[MT], eb[MT];
#pragma unroll
  for (int t = 0; t < MT; ++t) {
    if (MT == 1 || t < nt) {  // x in unit order (xq_prologue, xq_units.h)
      const int sa = kiln::xq::xq_read_a(u), sb = kiln::xq::xq_read_b(u, K);
      const uint4 a4 = *(const uint4*)(xqs + (i64)t * K + 16 * sa);
      const uint4 b4 = *(const uint4*)(xqs + (i64)t * K + 16 * sb);
      xa[t][0] = a4.x; xa[t][1] = a4.y; xa[t][2] = a4.z; xa[t][3] = a4.w;
      xb[t][0] = b4.x; xb[t][1] = b4.y; xb[t][2] = b4.z; xb[t][3] = b4.w;
      ea[t] = xds[t * parts + sa];
      eb[t] = xds[t * parts + sb];
    }
  }
#pragma unroll
  for (int j = 0; j < RR; ++j) {
    QU wq;
    qdecode<DT, L>(w[j], u7, wq);
#pragma unroll
    for (int t = 0; t < MT; ++t) {
      // MT = 1 skips the test: with nt = 0 the sums are made but never stored
      // (gemv_store_col and the rope epilogue test t < nt)
      if (MT == 1 || t < nt) {
        int ia = 0, ib = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          ia = __dp4a((int)wq.a[i], (int)xa[t][i], ia);
          ib = HiNibbleX16<DT>::V ? dp4a_us(wq.b[i], xb[t][i], ib)
                                  : __dp4a((int)wq.b[i], (int)xb[t][i], ib);
        }
        // |ia|, |ib| <= 16 * 127 * 127 (HiNibbleX16: 16 * 240 * 127 < 2^22)
        const float fa = i2f22(ia), fb = HiNibbleX16<DT>::V ? i2f22x16(ib) : i2f22(ib);
        float a = __fmaf_rn(wq.da, ea[t].x * fa, acc[j][t]);
        a = __fmaf_rn(wq.db, eb[t].x * fb, a);
        if (HasMin<DT>::V) {
          a = __fmaf_rn(wq.ma, ea[t].y, a);
          a = __fmaf_rn(wq.mb, eb[t].y, a);
        }
        acc[j][t] = a;
      }
    }
  }
}

// The blocks of a launch that compute one GEMV, and its output row stride:
// blocks b0 .. b0 + nb - 1 (nb = 0: the whole grid), y rows of ldy floats
// (0: N). A launch of several GEMVs on one x (an rms_matmul with several
// weights, codegen/families/gemv.cpp) gives each its own blocks and columns.
struct GemvSlice {
  int b0, nb, ldy;
};
__device__ __forceinline__ int slice_block(const GemvSlice& s) { return (int)blockIdx.x - s.b0; }
__device__ __forceinline__ int slice_blocks(const GemvSlice& s) { return s.nb ? s.nb : (int)gridDim.x; }

// The row sums of a warp's lanes for R output columns of P values each
// (v[c][p]). Every sum is made of warp_sum's additions (the butterfly over
// lane masks 16, 8, ..., 1, each lane adding its partner's value to its own,
// so the bits equal warp_sum's), but for the first log2 R masks a lane sends
// its partner only the half of the columns the partner keeps: lane l ends
// with column l >> (5 - log2 R)'s P sums in v[0] (the other entries are
// stale). R 4, P 2: 12 shuffles instead of warp_sum's 40.
template <int R, int P>
__device__ __forceinline__ void warp_sum_cols(float (&v)[R][P], int lane) {
  static_assert(R == 1 || R == 2 || R == 4 || R == 8, "R: a power of two <= 8");
  int o = 16;
#pragma unroll
  for (int n = R; n > 1; n >>= 1, o >>= 1) {
    const bool hi = (lane & o) != 0;
#pragma unroll
    for (int c = 0; c < n / 2; ++c)
#pragma unroll
      for (int p = 0; p < P; ++p) {
        const float keep = hi ? v[n / 2 + c][p] : v[c][p], send = hi ? v[c][p] : v[n / 2 + c][p];
        v[c][p] = keep + __shfl_xor_sync(0xFFFFFFFFu, send, o);
      }
  }
#pragma unroll
  for (; o > 0; o >>= 1)
#pragma unroll
    for (int p = 0; p < P; ++p) v[0][p] += __shfl_xor_sync(0xFFFFFFFFu, v[0][p], o);
}
// The lane of a warp that holds column c's sums after warp_sum_cols<R>.
template <int R>
__device__ __forceinline__ int col_lane(int c) { return c * (32 / R); }

// A warp's row sums acc (with MM_SWIGLU acc[R + c] is column c's up row)
// as columns, v[c][t] and with MM_SWIGLU v[c][MT + t], reduced by
// warp_sum_cols: lane l's v[0] holds column l / (32 / R)'s sums.
template <int FL, int R, int MT, int RR, int P>
__device__ __forceinline__ void gemv_col_sums(const float (&acc)[RR][MT], float (&v)[R][P], int lane) {
#pragma unroll
  for (int c = 0; c < R; ++c)
#pragma unroll
    for (int t = 0; t < MT; ++t) {
      v[c][t] = acc[c][t];
      if (FL & MM_SWIGLU) v[c][MT + t] = acc[R + c][t];
    }
  warp_sum_cols<R, P>(v, lane);
}

// Output column n from its finished sums v (warp_sum_cols' order: v[t] is
// token t's row sum, with MM_SWIGLU v[MT + t] its "up" row's): the RMS
// scale, gating, residual add; with key, the argmax key of token 0's value
// (argmax_key) is folded into *key (the LM head's sampling).
// rv: the residual of column n, loaded early by gemv_load_res (MM_ADD), or
// nullptr to load it here.
template <int FL, int MT>
__device__ __forceinline__ void gemv_store_col(const float* v, const float inv[MT], const float* __restrict__ r,
                                               float* __restrict__ y, int n, int nt, int N, int ldy, u64* key,
                                               const float* rv = nullptr) {
#pragma unroll
  for (int t = 0; t < MT; ++t) {
    if (t < nt) {
      float o;
      if (FL & MM_SWIGLU) o = mm_gate<FL>(v[t] * inv[t]) * (v[MT + t] * inv[t]);
      else o = (FL & MM_RMS) ? v[t] * inv[t] : v[t];
      if (FL & MM_ADD) o += rv ? rv[t] : r[(i64)t * N + n];
      y[(i64)t * ldy + n] = o;
      if (key && t == 0) {
        const u64 k = argmax_key(o, n);
        *key = k > *key ? k : *key;
      }
    }
  }
}

// MM_ADD: the residual of column n for the nt tokens, loaded into rv by the
// lane that will store the column before the column's sums are made (the
// bulk GEMV: as an item starts, after the PDL wait, since the residual is an
// earlier kernel's output), so that its L2 round trip overlaps the item's
// units instead of following the sums. H200, GPU ms per token at 512 rows
// (docs/perf.md, session 24): 1B F16 0.7910 -> 0.7826, 1B Q4_K_M 0.4178 ->
// 0.4130. The register int8 GEMV loading its first columns' residuals right
// after its wait was slower (SmolLM2 geometry 0.3444 -> 0.3530), so it
// loads them at the store.
template <int FL, int MT>
__device__ __forceinline__ void gemv_load_res(const float* __restrict__ r, int n, int nt, int N, float (&rv)[MT]) {
  if constexpr ((FL & MM_ADD) != 0) {
#pragma unroll
    for (int t = 0; t < MT; ++t)
      if (t < nt) rv[t] = r[(i64)t * N + n];
  }
}

// MM_ROPE (rms_matmul_rope_store): the GEMV's output columns are rope_store's
// qkv row [q (nh*hd) | k (nkv*hd) | v (nkv*hd)] (rope.cuh k_rope_store), and
// instead of storing them the block ropes each pair (2i, 2i+1) of its columns
// ("normal" rope: a block's columns start at an even index and come in an
// even count, gemv.cpp, so both columns of a pair are in one block) and
// writes q' to q (the GEMV's y: [T, nh*hd]) and the k' and v values into
// the caches' row at the step's position. c0: the first qkv column of this
// GEMV (a part's offset in a multi-weight launch, whose parts all get the
// same q). The rotation is k_rope_store's: rope_cs angles, the same products.
struct NoRope {};
template <int FDT, int CDT>
struct RopeEpi {
  void* kc;
  void* vc;
  const void* ff;
  const KilnStep* step;
  int C, nh, nkv, hd, n_rot, c0;
  float theta;
  // The rotation (cos, sin) of pair (n, n + 1) of token t; (1, 0) for a pair
  // that pair() leaves as it is. It reads only the step block, which the host
  // writes before the graph runs, so a GEMV computes its first pairs' angles
  // before its PDL wait: rope_cs is a double-precision pow and a sincosf,
  // ~400 instructions that otherwise sit at the end of every layer's QKV
  // kernel, between its sums and the attention that waits for it. H200
  // (docs/perf.md, session 26): real SmolLM2 at 512 rows 0.3453 -> 0.3332 ms
  // per token, the 1B Q4_K_M 0.4125 -> 0.4091.
  __device__ __forceinline__ float2 angle(int n, int t) const {
    const int gc = c0 + n, Wq = nh * hd, Wk = nkv * hd;
    float cs = 1.f, sn = 0.f;
    if (gc < Wq + Wk) {
      const int d = (gc < Wq ? gc : gc - Wq) % hd;
      if (d < n_rot) rope_cs<FDT>(step->pos0 + t, d >> 1, n_rot, theta, ff, cs, sn);
    }
    return make_float2(cs, sn);
  }
  // qkv columns c0 + n, c0 + n + 1 (n even) of token t, values a and b;
  // has: pre is their angle(), computed ahead (else pair() computes it)
  __device__ __forceinline__ void pair(float* q, int n, int t, float a, float b, bool has = false,
                                       float2 pre = float2{1.f, 0.f}) const {
    const int gc = c0 + n, Wq = nh * hd, Wk = nkv * hd, pos = step->pos0 + t;
    if (gc < Wq + Wk) {
      const int d = (gc < Wq ? gc : gc - Wq) % hd;
      if (d < n_rot) {
        float cs = pre.x, sn = pre.y;
        if (!has) rope_cs<FDT>(pos, d >> 1, n_rot, theta, ff, cs, sn);
        const float x0 = a, x1 = b;
        a = x0 * cs - x1 * sn;
        b = x0 * sn + x1 * cs;
      }
    }
    if (gc < Wq) {
      *(float2*)(q + (i64)t * Wq + gc) = make_float2(a, b);
      return;
    }
    if (pos < 0 || pos >= C) return;
    const bool k = gc < Wq + Wk;
    const i64 o = (i64)pos * Wk + (k ? gc - Wq : gc - Wq - Wk);
    stf<CDT>(k ? kc : vc, o, a);
    stf<CDT>(k ? kc : vc, o + 1, b);
  }
};
// The block's finished columns nbase .. nbase + cols - 1 (cols even), token t
// of column c at ybuf[c * MT + t], written by the group leaders: one thread
// per (pair, token) hands them to the epilogue. Every thread of the block
// calls it; it synchronises before and after (ybuf is reused). has: pre is
// the angle of the thread's first (pair, token), computed ahead.
template <int MT, class EPI>
__device__ __forceinline__ void rope_block_store(const float* ybuf, int nbase, int cols, int nt, int N,
                                                 const EPI& epi, float* q, bool has = false,
                                                 float2 pre = float2{1.f, 0.f}) {
  __syncthreads();
  const int np = cols / 2;
  for (int i = threadIdx.x; i < np * nt; i += blockDim.x) {
    const int t = i / np, c = 2 * (i - t * np), n = nbase + c;
    if (n < N) epi.pair(q, n, t, ybuf[c * MT + t], ybuf[(c + 1) * MT + t], has && i == (int)threadIdx.x, pre);
  }
  __syncthreads();
}

// The int8-activation GEMV (x_q8). Launch: block 32*kGemvWarps; any grid: a
// block takes the column-group sets blockIdx.x, blockIdx.x + gridDim.x, ...
// (kGemvWarps / SPLIT groups of R columns each), so a grid of a few blocks per
// SM quantises x once per block and then streams many rows. It waits for the
// previous kernel itself (own_pdl_wait), after issuing its first unit's
// weight loads.
// Main loop: a lane takes 32-weight units u = sub*32 + lane, +32*SPLIT, ...
// of its group's R (2R with MM_SWIGLU) rows, loading unit u + 32*SPLIT while
// it multiplies unit u (dp4a per 16-value part, see QU).
// XM: AttXMerge where x is a deferring split attention's output (att_defer.cuh:
// the partial states are merged into f32 shared memory after the wait, past
// the quantised x), else NoXMerge.
// NW: warps a block (kGemvWarps; kGemvMergeWarps where the GEMV merges).
template <int DT, int GDT, int FL, int MT, int SPLIT, int R, int L, class EPI = NoRope, class XM = NoXMerge,
          int NW = kGemvWarps>
__device__ __forceinline__ void mm_gemv_xq(const float* __restrict__ x, const void* __restrict__ g,
                                           const u8* __restrict__ w, const float* __restrict__ r,
                                           float* __restrict__ y, int nt, int K, int N, float eps, u64* key,
                                           GemvSlice sl, EPI epi = EPI{}, XM xm = XM{}) {
  constexpr int RR = (FL & MM_SWIGLU) ? 2 * R : R;  // weight rows per group
  constexpr int P = (FL & MM_SWIGLU) ? 2 * MT : MT; // sums per output column
  constexpr int GPB = NW / SPLIT;           // groups per block
  __shared__ float part[NW][R][P];
  __shared__ float ybuf[(FL & MM_ROPE) ? GPB * R * MT : 1];  // MM_ROPE: the block's columns
  __shared__ float red[33];
  extern __shared__ __align__(16) u8 kiln_xq_smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int grp = warp / SPLIT, sub = warp % SPLIT;
  const int nb = K / QT<DT>::QK, qunits = K / 32, step = 32 * SPLIT;
  if (nt > MT) nt = MT;
  u8* xqs = kiln_xq_smem;
  float2* xds = (float2*)(kiln_xq_smem + MT * K);
  auto rows_of = [&](int set, WRow<DT, L>* wr, int& n0, int& nr) {
    n0 = (set * GPB + grp) * R;
    nr = min(R, N - n0);
#pragma unroll
    for (int j = 0; j < R; ++j) {
      const int n = n0 + min(j, max(nr - 1, 0));  // clamp: rows past N are never used
      wr[j] = WRow<DT, L>(w, n, nb, 0);
      if (FL & MM_SWIGLU) wr[R + j] = WRow<DT, L>(w, n + N, nb, 0);
    }
  };
  const int nsets = (N + GPB * R - 1) / (GPB * R);
  const int bid = slice_block(sl), nbk = slice_blocks(sl), ldy = sl.ldy ? sl.ldy : N;
  WRow<DT, L> wr[2 * R];
  int n0, nr;
  rows_of(bid, wr, n0, nr);
  QRaw cur[RR], nxt[RR];
  const int u7 = lane & 7;  // = u & 7 for every unit u of this lane (qload)
  // a small weight (kGemvPrefetchMaxBytes, launch.h): every row this block
  // will read, on its way to L2 before the wait (its sets' rows are
  // contiguous ranges: one bulk prefetch each, thread 0)
  const i64 RB = wrow_bytes<DT, L>(nb);
  if (threadIdx.x == 0 && (i64)((FL & MM_SWIGLU) ? 2 * N : N) * RB < kGemvPrefetchMaxBytes) {
    for (int set = bid; set < nsets; set += nbk) {
      const int c0 = set * GPB * R, cn = min(GPB * R, N - c0);
      kiln_prefetch_l2(w + c0 * RB, cn * RB);
      if (FL & MM_SWIGLU) kiln_prefetch_l2(w + (c0 + (i64)N) * RB, cn * RB);
    }
  }
  // the first unit's weight loads fly during the prologue
  if (bid < nsets && nr > 0 && sub * 32 + lane < qunits) {
#pragma unroll
    for (int j = 0; j < RR; ++j) qload<DT, L>(wr[j], sub * 32 + lane, u7, cur[j]);
  }
  // MM_GW (the gain is a weight): each thread's first 16 gain values are
  // read before the wait too (a weight may have left L2 since the last
  // step). H200, SmolLM2 geometry at 512 rows (docs/perf.md, sessions 24
  // and 25): 0.3530 -> 0.3422 ms per token on a build that also loaded the
  // residual right after the wait; on this code (the residual at the store)
  // 0.3457 -> 0.3337 against the build before both, real SmolLM2 0.3526 ->
  // 0.3407.
  constexpr bool G0 = (FL & MM_GW) != 0 && (FL & MM_RMS) != 0;
  float g0[16];
  if (G0 && (int)threadIdx.x < K / 16) ldg16<GDT>(g, 16 * threadIdx.x, g0);
  // MM_ROPE: the angle of the pair this thread stores first (token 0 of its
  // first set, rope_block_store's first iteration), ahead of the wait
  float2 rpre = make_float2(1.f, 0.f);
  bool rhas = false;
  if constexpr ((FL & MM_ROPE) != 0) {
    if ((int)threadIdx.x < GPB * R / 2 && bid < nsets && nt == 1) {
      rpre = epi.angle(bid * GPB * R + 2 * (int)threadIdx.x, 0);
      rhas = true;
    }
  }
  xm.init();
  kiln_pdl_wait_own();  // weights are constants: only their loads precede the wait
  float inv[MT];
  x = xm.x(x, (float*)(kiln_xq_smem + (i64)MT * K + (i64)MT * (K / 16) * 8), nt);
  xq_prologue<DT, GDT, FL, MT, G0>(x, g, nt, K, eps, xqs, xds, red, inv, g0);
  for (int set = bid; set < nsets; set += nbk) {
    if (set != bid) {
      rows_of(set, wr, n0, nr);
      if (nr > 0 && sub * 32 + lane < qunits) {
#pragma unroll
        for (int j = 0; j < RR; ++j) qload<DT, L>(wr[j], sub * 32 + lane, u7, cur[j]);
      }
    }
    float acc[RR][MT];
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
      for (int j = 0; j < RR; ++j) acc[j][t] = 0.f;
    if (nr > 0) {
      // two units per trip, cur and nxt taking turns (no register copies)
#pragma unroll 1
      for (int u = sub * 32 + lane; u < qunits; u += 2 * step) {
        if (u + step < qunits) {
#pragma unroll
          for (int j = 0; j < RR; ++j) qload<DT, L>(wr[j], u + step, u7, nxt[j]);
        }
        xq_unit<DT, L, MT, RR>(cur, u, u7, xqs, xds, K, nt, acc);
        if (u + step >= qunits) break;
        if (u + 2 * step < qunits) {
#pragma unroll
          for (int j = 0; j < RR; ++j) qload<DT, L>(wr[j], u + 2 * step, u7, cur[j]);
        }
        xq_unit<DT, L, MT, RR>(nxt, u + step, u7, xqs, xds, K, nt, acc);
      }
    }
    float v[R][P];
    gemv_col_sums<FL, R, MT>(acc, v, lane);
    const int col = lane / (32 / R);             // the column whose sums v[0] holds
    const bool lead = lane == col_lane<R>(col);  // one lane per column finishes it
    if (SPLIT > 1) {
      if (lead) {
#pragma unroll
        for (int p = 0; p < P; ++p) part[warp][col][p] = v[0][p];
      }
      __syncthreads();
      if (sub == 0 && lead) {
        for (int s2 = 1; s2 < SPLIT; ++s2)
#pragma unroll
          for (int p = 0; p < P; ++p) v[0][p] += part[warp + s2][col][p];
      }
      __syncthreads();  // part is reused by the next set
    }
    if constexpr ((FL & MM_ROPE) != 0) {
      if (sub == 0 && lead && col < nr)
#pragma unroll
        for (int t = 0; t < MT; ++t)
          if (t < nt) ybuf[(grp * R + col) * MT + t] = v[0][t] * inv[t];
      rope_block_store<MT>(ybuf, set * GPB * R, GPB * R, nt, N, epi, y, rhas && set == bid, rpre);
    } else if (sub == 0 && lead && col < nr) {
      gemv_store_col<FL, MT>(v[0], inv, r, y, n0 + col, nt, N, ldy, key);
    }
  }
}

// The decode GEMV streamed through shared memory by bulk copies (sm_90;
// gemv_bulk_geometry in codegen/families/matmul.cpp picks it and its
// parameters), on int8 activations (xq_prologue, xq_unit) or, for F16 and
// BF16 weights, on f32 activations (FX: xq_prologue's f32 case, fx_unit). Launch: block
// 32*NW (NW a multiple of KS), grid any, dynamic shared memory
// (gemv_bulk_geometry's smem): x (quantised, or f32), then per group of KS warps S
// stage buffers of RR rows of RB = row bytes (the weight's row size, a
// multiple of 16), then per group S mbarriers.
// Work: an item is R consecutive output columns (their R rows, and with
// MM_SWIGLU their R "up" rows); group v of the grid (numbered group-major)
// takes items v, v + G, ... (G = groups in the grid), a whole row per item,
// so groups never wait on each other after the prologue. Lane 0 of a group's first warp keeps S
// items' rows in flight: it issues the first fill before the kernel waits for
// its predecessor (weights are constants, so under PDL they stream while the
// previous kernel finishes and while x is quantised), the other S - 1 once x
// is quantised, and refills a buffer as soon as the group has used it. The KS
// warps of a group take interleaved units of the staged rows (KS > 1 where
// the rows are long: the buffers of whole rows leave room for few of them,
// so each feeds several warps); the others' sums reach the first warp
// through shared memory and a named barrier of the group, which also frees
// the buffer for its refill.
// The int8 arithmetic is xq_unit's, so results equal mm_gemv_xq's bit for bit at
// KS = 1 (at KS > 1 the row's sum is the KS partial sums added in order).
// A warp's row sums are reduced by warp_sum_cols, so the lane that holds
// column c's sums (col_lane) combines the group's KS partial sums of it and
// stores it: the R columns of an item are stored by R lanes at once.
// key: each storing lane keeps the argmax key of the values it stored (the
// caller takes the block's maximum).
// Phase marks and ablations of the bulk GEMV, for the benchmark that times
// its phases (GemvBench.BulkPhases, tests/gpu/kernels_test.cpp); that test
// defines them before including this file, codegen never does.
// KILN_BULK_MARK(i): phase i reached (0 start, 1 x quantised, 2 first item
// landed, 3 done). KILN_BULK_ABLATE: 1 skips the prologue (x is left as it
// is), 2 skips the units' arithmetic; the results are then wrong.
#ifndef KILN_BULK_MARK
#define KILN_BULK_MARK(i)
#endif
#ifndef KILN_BULK_ABLATE
#define KILN_BULK_ABLATE 0
#endif
// sl: the blocks of a multi-weight launch that run this GEMV and y's row
// stride (GemvSlice; {0, 0, 0}: the whole grid, rows of N).
// MM_ROPE (EPI = RopeEpi): an item's R columns (R even, items start at an
// even column) are rope_store's (2i, 2i+1) pairs: the lane holding column
// 2i's sums takes column 2i + 1's from its partner and hands the pair to the
// epilogue, which writes q' to y and the k', v values into the caches.
// XM: as mm_gemv_xq's (the merged x sits between x and the stage buffers).
template <int DT, int GDT, int FL, int MT, int R, int S, int L, int KS = 1, bool GW = false, class EPI = NoRope,
          class XM = NoXMerge>
__device__ __forceinline__ void mm_gemv_bulk(const float* __restrict__ x, const void* __restrict__ g,
                                             const u8* __restrict__ w, const float* __restrict__ r,
                                             float* __restrict__ y, int nt, int K, int N, float eps,
                                             u64* key = nullptr, GemvSlice sl = GemvSlice{0, 0, 0},
                                             EPI epi = EPI{}, XM xm = XM{}) {
  static_assert((FL & MM_ROPE) == 0 || (R % 2 == 0 && (FL & MM_SWIGLU) == 0), "MM_ROPE: column pairs per item");
  constexpr bool FX = DT == DT_F16 || DT == DT_BF16;  // f32 activations (xq_prologue, fx_unit)
  constexpr int RR = (FL & MM_SWIGLU) ? 2 * R : R;
  constexpr int P = (FL & MM_SWIGLU) ? 2 * MT : MT;  // sums per output column
  __shared__ float red[33];
  // partial sums of warps 1..KS-1 of each group, two slots (item parity)
  __shared__ float kpart[KS > 1 ? 16 / KS : 1][2][KS > 1 ? KS - 1 : 1][R][P];
  extern __shared__ __align__(16) u8 kiln_xq_smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int grp = warp / KS, sub = warp % KS, ngr = nw / KS;
  const int nb = K / QT<DT>::QK, qunits = K / 32;
  const u32 RB = (u32)wrow_bytes<DT, L>(nb);
  if (nt > MT) nt = MT;
  u8* xqs = kiln_xq_smem;
  float2* xds = (float2*)(kiln_xq_smem + MT * K);
  const i64 XB0 = FX ? (i64)MT * K * 4 : (i64)MT * K + MT * (K / 16) * 8;  // x's bytes
  const i64 XB = XB0 + (XM::kOn ? (i64)MT * K * 4 : 0);                   // and the merged x's
  u8* stages = kiln_xq_smem + XB + (i64)grp * S * RR * RB;
  u64* bars = (u64*)(kiln_xq_smem + XB + (i64)ngr * S * RR * RB) + grp * S;
  // Where items do not divide evenly among the groups, the groups are
  // numbered group-major (group grp of block b is grp * blocks + b), so that
  // the groups with one item more are spread over every block (SM) rather
  // than filling the first blocks: the 8B's q slice of its QKV GEMV has 1.56
  // items a group, and in block-major order its first 56% of blocks streamed
  // twice the rows of the others. Where they divide evenly, block-major
  // order keeps a block's rows together (group-major there measured 2%
  // slower on the 8B Q8_0). H200, docs/perf.md (session 27).
  const int items = (N + R - 1) / R, nbk = slice_blocks(sl), G = nbk * ngr;
  const int first = items % G ? grp * nbk + slice_block(sl) : slice_block(sl) * ngr + grp;
  const int ldy = sl.ldy ? sl.ldy : N;
  const int mine = first < items ? (items - first + G - 1) / G : 0;  // items of this group
  // fill i (this group's i-th item) into buffer i % S; the rows are read
  // once per step, so their L2 lines go first (kiln_l2_evict_first)
  const u64 pol = kiln_l2_evict_first();
  auto fill = [&](int i) {
    const int n0 = (first + i * G) * R, nr = min(R, N - n0);
    u64* bar = bars + i % S;
    u8* dst = stages + (i64)(i % S) * RR * RB;
    kiln_mbar_expect(bar, ((FL & MM_SWIGLU) ? 2u : 1u) * nr * RB);
    kiln_bulk_load(dst, w + (i64)n0 * RB, nr * RB, bar, pol);
    if (FL & MM_SWIGLU) kiln_bulk_load(dst + (i64)R * RB, w + (i64)(n0 + N) * RB, nr * RB, bar, pol);
  };
  // GW (the gain is a weight): each thread's first 16 gain values are read
  // before the wait too
  constexpr bool G0 = GW && (FL & MM_RMS) != 0;
  float g0[16];
  if (G0 && (int)threadIdx.x < K / 16) ldg16<GDT>(g, 16 * threadIdx.x, g0);
  // Only the first item's rows fly before the wait and the prologue; the
  // other buffers are filled once x is quantised. With every buffer filled
  // first, the x loads queued behind all of them and every group's first
  // rows landed late (per-block timestamps, session 13, docs/perf.md).
  KILN_BULK_MARK(0);
  if (sub == 0 && lane == 0) {
#pragma unroll
    for (int b = 0; b < S; ++b) kiln_mbar_init(bars + b);
    kiln_fence_async_smem();
    if (mine > 0) fill(0);
  }
  __syncwarp();
  // MM_ROPE: the angles (token 0) of the pair this lane stores in the group's
  // first two items, ahead of the wait (RopeEpi::angle)
  // (scalars, not an array: the loop below picks one by a run-time index)
  float2 rpre0 = make_float2(1.f, 0.f), rpre1 = rpre0;
  bool rhas0 = false, rhas1 = false;
  if constexpr ((FL & MM_ROPE) != 0) {
    const int rcol = lane / (32 / R);
    if (sub == 0 && lane == col_lane<R>(rcol) && rcol % 2 == 0) {
      if (mine > 0 && rcol < min(R, N - first * R)) {
        rpre0 = epi.angle(first * R + rcol, 0);
        rhas0 = true;
      }
      if (mine > 1 && rcol < min(R, N - (first + G) * R)) {
        rpre1 = epi.angle((first + G) * R + rcol, 0);
        rhas1 = true;
      }
    }
  }
  xm.init();
  kiln_pdl_wait_own();
  x = xm.x(x, (float*)(kiln_xq_smem + XB0), nt);
  float inv[MT];
  // (ends with the block synchronised: the group's barriers are initialised)
  if (KILN_BULK_ABLATE & 1) {
    __syncthreads();
#pragma unroll
    for (int t = 0; t < MT; ++t) inv[t] = 1.f;
  } else {
    xq_prologue<DT, GDT, FL, MT, G0>(x, g, nt, K, eps, xqs, xds, red, inv, g0);
  }
  KILN_BULK_MARK(1);
  if (sub == 0 && lane == 0)
    for (int i = 1; i < min(S, mine); ++i) fill(i);
#pragma unroll 1
  for (int i = 0; i < mine; ++i) {
    const int n0 = (first + i * G) * R, nr = min(R, N - n0);
    const u8* st = stages + (i64)(i % S) * RR * RB;
    kiln_mbar_wait(bars + i % S, (u32)((i / S) & 1));
    if (i == 0) KILN_BULK_MARK(2);
    WRow<DT, L> wr[RR];
    const u8* rows[RR];
#pragma unroll
    for (int j = 0; j < RR; ++j) {
      const int row = (j < R ? 0 : R) + min(j % R, nr - 1);  // rows past N: a copy of the last one, unused
      wr[j] = WRow<DT, L>(st, row, nb, 0);
      rows[j] = st + (i64)row * RB;
    }
    // the residual of the item's column, in flight with its units
    float rv[MT];
    const int col = lane / (32 / R);                  // the column whose sums v[0] will hold
    const bool lead = lane == col_lane<R>(col);       // one lane per column stores it
    if (sub == 0 && lead && col < nr) gemv_load_res<FL, MT>(r, n0 + col, nt, N, rv);
    float acc[RR][MT];
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
      for (int j = 0; j < RR; ++j) acc[j][t] = 0.f;
    if constexpr (FX) {
      const int funits = K / 8;
#pragma unroll 4
      for (int u = sub * 32 + lane + ((KILN_BULK_ABLATE & 2) ? funits : 0); u < funits; u += 32 * KS)
        fx_unit<DT, MT, RR>(rows, u, (const float*)kiln_xq_smem, K, nt, acc);
    } else {
      const int u7 = lane & 7;  // = u & 7 for every unit u of this lane (qload)
#pragma unroll 2
      for (int u = sub * 32 + lane + ((KILN_BULK_ABLATE & 2) ? qunits : 0); u < qunits; u += 32 * KS) {
        QRaw q[RR];
#pragma unroll
        for (int j = 0; j < RR; ++j) qload<DT, L, true>(wr[j], u, u7, q[j]);
        xq_unit<DT, L, MT, RR>(q, u, u7, xqs, xds, K, nt, acc);
      }
    }
    float v[R][P];
    gemv_col_sums<FL, R, MT>(acc, v, lane);
    if (KS > 1) {
      if (sub > 0 && lead) {
#pragma unroll
        for (int p = 0; p < P; ++p) kpart[grp][i & 1][sub - 1][col][p] = v[0][p];
      }
      // the group's KS warps: sums written, buffer i % S read
      asm volatile("bar.sync %0, %1;" ::"r"(1 + grp), "r"(32 * KS) : "memory");
      if (sub > 0) continue;
      if (lead) {
#pragma unroll
        for (int s2 = 0; s2 < KS - 1; ++s2)
#pragma unroll
          for (int p = 0; p < P; ++p) v[0][p] += kpart[grp][i & 1][s2][col][p];
      }
    } else {
      __syncwarp();
    }
    if (lane == 0 && i + S < mine) {  // the group is done with this buffer: refill it
      kiln_fence_async_smem();
      fill(i + S);
    }
    if constexpr ((FL & MM_ROPE) != 0) {
      // column col + 1's sums come from its lane (the whole warp shuffles)
      float a[MT], b[MT];
#pragma unroll
      for (int t = 0; t < MT; ++t) {
        a[t] = v[0][t] * inv[t];
        b[t] = __shfl_down_sync(0xFFFFFFFFu, a[t], 32 / R);
      }
      if (lead && col % 2 == 0 && col < nr)
#pragma unroll
        for (int t = 0; t < MT; ++t)
          if (t < nt)
            epi.pair(y, n0 + col, t, a[t], b[t], t == 0 && (i == 0 ? rhas0 : i == 1 && rhas1), i == 0 ? rpre0 : rpre1);
    } else if (lead && col < nr) {
      gemv_store_col<FL, MT>(v[0], inv, r, y, n0 + col, nt, N, ldy, key, (FL & MM_ADD) ? rv : nullptr);
    }
  }
  // KS > 1 under the sampling step (key set: block barriers follow): a group
  // with fewer items than the block's first group passes its named barrier
  // as often as that group does. Nothing waits on these extra arrivals (each
  // group's barrier is its own), but where the counts differ,
  // compute-sanitizer's racecheck reports a RAW hazard on the block barriers
  // that follow (block_max_u64); tests/gpu/proto/racecheck_groups.cu has the
  // pattern alone (H200, docs/perf.md, session 30). The layer GEMVs (key
  // null, folded away) end without a block barrier and are reported clean;
  // the pad there measured 1% slower a token.
  if (KS > 1 && key != nullptr) {
    const int first0 = items % G ? slice_block(sl) : slice_block(sl) * ngr;
    const int most = first0 < items ? (items - first0 + G - 1) / G : 0;
    for (int i = mine; i < most; ++i) asm volatile("bar.sync %0, %1;" ::"r"(1 + grp), "r"(32 * KS) : "memory");
  }
  KILN_BULK_MARK(3);
}

// XQ = 1 (the node's x_q8): the int8-activation GEMV, mm_gemv_xq above (its
// own launch geometry: a grid of at most one wave of blocks (gemv_xq_max_blocks), dynamic
// shared memory for the quantised x).
// EPI: RopeEpi with MM_ROPE (the rope_store epilogue), else NoRope.
template <int DT, int GDT, int FL, int MT, int SPLIT = 1, int R = 1, int L = 0, int XQ = 0, class EPI = NoRope,
          class XM = NoXMerge, int NW = kGemvWarps>
__device__ __forceinline__ void mm_gemv(const float* __restrict__ x, const void* __restrict__ g,
                                        const u8* __restrict__ w, const float* __restrict__ r,
                                        float* __restrict__ y, int nt, int K, int N, float eps,
                                        float* ys = nullptr, GemvSlice sl = GemvSlice{0, 0, 0}, EPI epi = EPI{},
                                        XM xm = XM{}) {
  if constexpr (XQ != 0) {
    mm_gemv_xq<DT, GDT, FL, MT, SPLIT, R, L, EPI, XM, NW>(x, g, w, r, y, nt, K, N, eps, nullptr, sl, epi, xm);
    return;
  }
  typedef QT<DT> Q;
  if (nt > MT) nt = MT;
  if constexpr (XM::kOn) {  // (after the wrapper's PDL wait) the merged x in dynamic shared memory, [MT][K] f32
    extern __shared__ __align__(16) u8 kiln_xq_smem[];
    xm.init();
    x = xm.x(x, (float*)kiln_xq_smem, nt);
  }
  const int RR = (FL & MM_SWIGLU) ? 2 * R : R;  // weight rows per group
  __shared__ float part[NW][MT][2 * R + 1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int grp = warp / SPLIT, sub = warp % SPLIT;
  const int n0 = (slice_block(sl) * (NW / SPLIT) + grp) * R;
  const int ldy = sl.ldy ? sl.ldy : N;
  const int nr = min(R, N - n0);  // columns of this group (<= 0: none)
  const int nb = K / Q::QK;
  const i64 nblk = (i64)((FL & MM_SWIGLU) ? 2 * N : N) * nb;
  WRow<DT, L> wr[2 * R];
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int n = n0 + min(j, max(nr - 1, 0));  // clamp: rows past N are never used
    wr[j] = WRow<DT, L>(w, n, nb, nblk);
    if (FL & MM_SWIGLU) wr[R + j] = WRow<DT, L>(w, n + N, nb, nblk);
  }
  const int units = (K / Q::QK) * Q::CH;
  float acc[2 * R][MT], ss[MT];
#pragma unroll
  for (int t = 0; t < MT; ++t) {
    ss[t] = 0.f;
#pragma unroll
    for (int j = 0; j < 2 * R; ++j) acc[j][t] = 0.f;
  }
  if (nr > 0) {
#pragma unroll 2
    for (int u = sub * 32 + lane; u < units; u += 32 * SPLIT) {
      const int blk = u / Q::CH, c = u % Q::CH;
      float v[2 * R][8];
      int a, b;
#pragma unroll
      for (int j = 0; j < RR; ++j) wr[j].deq(blk, c, v[j], a, b);
      const int ka = blk * Q::QK + a, kb = blk * Q::QK + b;
      float ga[4], gb[4];
      if (FL & MM_RMS) {
#pragma unroll
        for (int i = 0; i < 4; ++i) { ga[i] = ldf<GDT>(g, ka + i); gb[i] = ldf<GDT>(g, kb + i); }
      }
#pragma unroll
      for (int t = 0; t < MT; ++t) {
        if (t < nt) {
          const float4 xa = *(const float4*)(x + (i64)t * K + ka);
          const float4 xb = *(const float4*)(x + (i64)t * K + kb);
          float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
          if (FL & MM_RMS) {
#pragma unroll
            for (int i = 0; i < 8; ++i) ss[t] += xs[i] * xs[i];
#pragma unroll
            for (int i = 0; i < 4; ++i) { xs[i] *= ga[i]; xs[4 + i] *= gb[i]; }
          }
#pragma unroll
          for (int j = 0; j < RR; ++j)
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[j][t] += xs[i] * v[j][i];
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < MT; ++t) {
#pragma unroll
    for (int j = 0; j < RR; ++j) acc[j][t] = warp_sum(acc[j][t]);
    if (FL & MM_RMS) ss[t] = warp_sum(ss[t]);
  }
  if (SPLIT > 1) {
    if (lane == 0) {
#pragma unroll
      for (int t = 0; t < MT; ++t) {
#pragma unroll
        for (int j = 0; j < RR; ++j) part[warp][t][j] = acc[j][t];
        if (FL & MM_RMS) part[warp][t][RR] = ss[t];
      }
    }
    __syncthreads();
    if (sub == 0 && lane == 0) {
#pragma unroll
      for (int t = 0; t < MT; ++t)
        for (int s = 1; s < SPLIT; ++s) {
#pragma unroll
          for (int j = 0; j < RR; ++j) acc[j][t] += part[warp + s][t][j];
          if (FL & MM_RMS) ss[t] += part[warp + s][t][RR];
        }
    }
  }
  if constexpr ((FL & MM_ROPE) != 0) {
    constexpr int GPB = NW / SPLIT;
    __shared__ float ybuf[GPB * R * MT];
    if (sub == 0 && lane == 0)
#pragma unroll
      for (int t = 0; t < MT; ++t)
#pragma unroll
        for (int j = 0; j < R; ++j)
          if (t < nt && j < nr) ybuf[(grp * R + j) * MT + t] = acc[j][t] * (1.0f / sqrtf(ss[t] / (float)K + eps));
    rope_block_store<MT>(ybuf, slice_block(sl) * GPB * R, GPB * R, nt, N, epi, y);
    return;
  }
  if (nr <= 0 || sub != 0 || lane != 0) return;
#pragma unroll
  for (int t = 0; t < MT; ++t) {
    if (t < nt) {
      const float inv = (FL & MM_RMS) ? 1.0f / sqrtf(ss[t] / (float)K + eps) : 1.0f;
#pragma unroll
      for (int j = 0; j < R; ++j) {
        if (j < nr) {
          const int n = n0 + j;
          float o;
          if (FL & MM_SWIGLU) o = mm_gate<FL>(acc[j][t] * inv) * (acc[R + j][t] * inv);
          else o = (FL & MM_RMS) ? acc[j][t] * inv : acc[j][t];
          if (FL & MM_ADD) o += r[(i64)t * N + n];
          y[(i64)t * ldy + n] = o;
          if (ys && t == 0) ys[grp * R + j] = o;
        }
      }
    }
  }
}
