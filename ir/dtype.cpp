#include "ir/dtype.h"

#include <array>

namespace kiln::ir {
namespace {
// Block geometry from ggml's type traits (ggml/src/ggml.c, type_traits table).
constexpr std::array<DTypeInfo, 14> kTypes = {{
    {DType::F32, "f32", 1, 4, false},
    {DType::F16, "f16", 1, 2, false},
    {DType::Q4_0, "q4_0", 32, 18, true},
    {DType::Q4_1, "q4_1", 32, 20, true},
    {DType::Q5_0, "q5_0", 32, 22, true},
    {DType::Q5_1, "q5_1", 32, 24, true},
    {DType::Q8_0, "q8_0", 32, 34, true},
    {DType::Q2_K, "q2_k", 256, 84, true},
    {DType::Q3_K, "q3_k", 256, 110, true},
    {DType::Q4_K, "q4_k", 256, 144, true},
    {DType::Q5_K, "q5_k", 256, 176, true},
    {DType::Q6_K, "q6_k", 256, 210, true},
    {DType::I32, "i32", 1, 4, false},
    {DType::BF16, "bf16", 1, 2, false},
}};
}  // namespace

const DTypeInfo* all_dtypes(size_t* count) {
  *count = kTypes.size();
  return kTypes.data();
}

const DTypeInfo* dtype_info(uint32_t ggml_id) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == ggml_id) return &t;
  return nullptr;
}

const DTypeInfo& dtype_info(DType t) { return *dtype_info(static_cast<uint32_t>(t)); }

std::string_view dtype_name(DType t) { return dtype_info(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& t : kTypes)
    if (t.name == name) return t.type;
  return std::nullopt;
}

std::string_view ggml_type_name(uint32_t id) {
  // Names of ggml types kiln does not implement, so errors can say what was found.
  static constexpr std::array<std::string_view, 40> kNames = {
      "f32",   "f16",     "q4_0",   "q4_1",  "q4_2(removed)", "q4_3(removed)", "q5_0",
      "q5_1",  "q8_0",    "q8_1",   "q2_k",  "q3_k",          "q4_k",          "q5_k",
      "q6_k",  "q8_k",    "iq2_xxs", "iq2_xs", "iq3_xxs",     "iq1_s",         "iq4_nl",
      "iq3_s", "iq2_s",   "iq4_xs", "i8",    "i16",           "i32",           "i64",
      "f64",   "iq1_m",   "bf16",   "q4_0_4_4(removed)", "q4_0_4_8(removed)", "q4_0_8_8(removed)",
      "tq1_0", "tq2_0",   "iq4_nl_4_4(removed)", "iq4_nl_4_8(removed)", "iq4_nl_8_8(removed)",
      "mxfp4"};
  return id < kNames.size() ? kNames[id] : std::string_view("unknown");
}

}  // namespace kiln::ir
