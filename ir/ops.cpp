// The op table: textual names, arity and in-place aliasing (which output is
// which input updated in place) of every IR op.
// Shape/dtype rules live in verify.cpp; semantics in interpreter.cpp (and the
// comment table in graph.h, which is the spec for both).
#include <algorithm>
#include <array>

#include "ir/graph.h"

namespace kiln::ir {
namespace {
constexpr std::array<int8_t, 4> kNone = {-1, -1, -1, -1};
constexpr std::array<OpInfo, 21> kOps = {{
    {OpKind::Embed, "embed", 2, 2, kNone},
    {OpKind::RmsNorm, "rms_norm", 2, 3, kNone},  // x, w [, r (attr residual: y = r + rms_norm(x, w))]
    {OpKind::MatMul, "matmul", 2, 3, kNone},  // [scratch: x_merge]
    {OpKind::Add, "add", 2, 2, kNone},
    {OpKind::Mul, "mul", 2, 2, kNone},
    {OpKind::Silu, "silu", 1, 1, kNone},
    {OpKind::SwiGlu, "swiglu", 2, 2, kNone},
    {OpKind::Rope, "rope", 2, 3, kNone},
    {OpKind::KvStore, "kv_store", 3, 3, {0, -1, -1, -1}},  // cache' is the cache (input 0)
    {OpKind::Attention, "attention", 4, 5, {-1, 4, -1, -1}},  // [scratch' is the split scratch (input 4)]
    {OpKind::LastRow, "last_row", 1, 1, kNone},
    {OpKind::ArgMax, "argmax", 1, 1, kNone},
    // Fused ops (compiler/passes; docs/plan-abi.md "Fused ops").
    {OpKind::RmsMatMul, "rms_matmul", 3, 5, kNone},  // 1-3 weights (their outputs side by side)
    {OpKind::MatMulAdd, "matmul_add", 3, 4, kNone},  // [scratch: x_merge]
    {OpKind::RmsMatMulSwiGlu, "rms_matmul_swiglu", 3, 3, kNone},
    // qkv, pos, kc, vc [, gq, gk (attr qk_norm_eps)] [, ff]; q is new, kc', vc' are the caches (inputs 2, 3)
    {OpKind::RopeStore, "rope_store", 4, 7, {-1, 2, 3, -1}},
    {OpKind::LmHeadSample, "lm_head_sample", 3, 3, kNone},
    // x, pos, kc, vc, gain, 1 or 3 weights [, freq_factors]: rope_store(rms_matmul(...)); kc', vc' as rope_store's
    {OpKind::RmsMatMulRopeStore, "rms_matmul_rope_store", 6, 9, {-1, 2, 3, -1}},
    // Half-precision GEMM operands (compiler/passes/tensor_core_gemm.cpp).
    {OpKind::Cast, "cast", 1, 1, kNone},
    {OpKind::Dequant, "dequant", 1, 1, kNone},
    {OpKind::GeGlu, "geglu", 2, 2, kNone},
}};
}  // namespace

ValueId aliased_input(const Node& n, size_t j) {
  const int k = op_info(n.op).aliased_input(j);
  if (k < 0 || static_cast<size_t>(k) >= n.inputs.size()) return kNoValue;
  return n.inputs[static_cast<size_t>(k)];
}

InputRange matmul_weight_inputs(const Graph& g, const Node& n) {
  const size_t in = n.inputs.size();
  switch (n.op) {
    case OpKind::MatMul:
    case OpKind::MatMulAdd: return {1, std::min<size_t>(2, in)};
    case OpKind::RmsMatMul: return {2, in};
    case OpKind::RmsMatMulSwiGlu:
    case OpKind::LmHeadSample: return {2, std::min<size_t>(3, in)};
    case OpKind::RmsMatMulRopeStore: {
      const bool ff = in > 5 && g.value(n.inputs.back()).shape.size() == 1;
      return {5, std::max<size_t>(5, in - (ff ? 1 : 0))};
    }
    default: return {};
  }
}

size_t rope_store_ff_input(const Node& n) { return n.attrs.count("qk_norm_eps") ? 6 : 4; }

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
