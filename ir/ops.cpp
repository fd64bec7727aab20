// The op table: textual names, arity and in-place aliasing of every IR op.
// Shape/dtype rules live in verify.cpp; semantics in interpreter.cpp (and the
// comment table in graph.h, which is the spec for both).
#include <array>

#include "ir/graph.h"

namespace kiln::ir {
namespace {
constexpr std::array<OpInfo, 17> kOps = {{
    {OpKind::Embed, "embed", 2, 2, -1},
    {OpKind::RmsNorm, "rms_norm", 2, 2, -1},
    {OpKind::MatMul, "matmul", 2, 2, -1},
    {OpKind::Add, "add", 2, 2, -1},
    {OpKind::Mul, "mul", 2, 2, -1},
    {OpKind::Silu, "silu", 1, 1, -1},
    {OpKind::SwiGlu, "swiglu", 2, 2, -1},
    {OpKind::Rope, "rope", 2, 3, -1},
    {OpKind::KvStore, "kv_store", 3, 3, 0},
    {OpKind::Attention, "attention", 4, 4, -1},
    {OpKind::LastRow, "last_row", 1, 1, -1},
    {OpKind::ArgMax, "argmax", 1, 1, -1},
    // Fused ops (compiler/passes; docs/plan-abi.md "Fused ops"). rope_store's
    // outputs 1 and 2 alias its inputs 2 and 3 (the caches); a single
    // inplace_input cannot say that, so it is -1 and the users special-case it.
    {OpKind::RmsMatMul, "rms_matmul", 3, 3, -1},
    {OpKind::MatMulAdd, "matmul_add", 3, 3, -1},
    {OpKind::RmsMatMulSwiGlu, "rms_matmul_swiglu", 3, 3, -1},
    {OpKind::RopeStore, "rope_store", 4, 5, -1},
    {OpKind::LmHeadSample, "lm_head_sample", 3, 3, -1},
}};
}  // namespace

const OpInfo& op_info(OpKind k) {
  for (const auto& info : kOps)
    if (info.kind == k) return info;
  throw Error(ErrorCode::kInternal, "op_info: unknown op kind " + std::to_string(static_cast<int>(k)));
}

std::optional<OpKind> op_from_name(std::string_view name) {
  for (const auto& info : kOps)
    if (info.name == name) return info.kind;
  return std::nullopt;
}

}  // namespace kiln::ir
