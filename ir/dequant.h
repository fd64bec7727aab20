// CPU dequantisation of GGML block formats to fp32: the reference for every
// GPU kernel. Bit-exact with the `gguf` Python package's dequantiser.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ir/dtype.h"

namespace kiln::ir {

// Dequantises n elements (n a multiple of the type's block size) from src
// into dst. F32/F16/BF16 convert. Throws kiln::Error on a bad n or type.
void dequantize(DType t, const uint8_t* src, float* dst, int64_t n);

// Bytes taken by n elements of type t (n a multiple of the block size).
uint64_t row_bytes(DType t, int64_t n);

// 6-bit scale and min j (j < 8) of a Q4_K / Q5_K block, packed into its 12
// scale bytes s.
void k4_scale_min(const uint8_t* s, int j, int* sc, int* m);

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);   // round to nearest even
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);   // round to nearest even, NaN kept quiet (as the kernels' f2bf)
// v rounded to dtype t (F16 / BF16: to nearest even; F32: v). What a GPU store
// of v into a t buffer keeps.
float round_to_dtype(DType t, float v);

}  // namespace kiln::ir
