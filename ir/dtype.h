// Element types of the IR, including the GGML block-quantised types.
// Numeric ids of the quantised types equal the GGML / GGUF `ggml_type` ids so
// the GGUF reader can map them one to one.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace kiln::ir {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  I32 = 26,  // ggml GGML_TYPE_I32; used for token ids / positions
  BF16 = 30,
};

struct DTypeInfo {
  DType type;
  std::string_view name;   // "q4_k", as llama.cpp spells it (lower case)
  uint32_t block_elems;    // elements per block (1 for scalar types)
  uint32_t block_bytes;    // bytes per block
  bool quantized;
};

// All dtypes kiln knows, in id order.
const DTypeInfo* all_dtypes(size_t* count);
// Info for a ggml type id, or nullptr if kiln does not support it.
const DTypeInfo* dtype_info(uint32_t ggml_id);
const DTypeInfo& dtype_info(DType t);
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);
// Name of a ggml type id kiln does not support (for error messages), e.g. "iq2_xxs";
// "unknown" if the id is not a ggml type at all.
std::string_view ggml_type_name(uint32_t ggml_id);

}  // namespace kiln::ir
