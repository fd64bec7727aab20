#include "compiler/compile/buffer_assignment.h"

#include <algorithm>

#include "schemas/kiln_step.h"

namespace kiln::compile {
namespace {
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

FixedSlots assign_fixed_slots(const std::vector<const ir::Graph*>& graphs, int64_t max_tokens, int64_t ctx,
                              uint64_t gemm_workspace_bytes) {
  FixedSlots S;
  uint64_t cur = 0;
  S.step = cur;
  cur = align_up(cur + sizeof(KilnStep), kArenaAlign);
  S.tokens_capacity = static_cast<uint32_t>(max_tokens);
  S.tokens = cur;
  cur = align_up(cur + 4ull * max_tokens, kArenaAlign);
  S.positions = cur;
  cur = align_up(cur + 4ull * max_tokens, kArenaAlign);
  S.kv_offset = cur;
  const ir::DimBindings dims{max_tokens, ctx, 1};
  for (const auto* g : graphs)
    for (const auto& v : g->values())
      if (v.kind == ir::ValueKind::State && !S.states.count(v.name)) {
        const uint64_t bytes = ir::resolve_bytes(*g, v, dims);
        S.states[v.name] = {cur, bytes};
        cur = align_up(cur + bytes, kArenaAlign);
      }
  S.kv_size = cur - S.kv_offset;
  if (gemm_workspace_bytes) {
    S.gemm_workspace = {cur, gemm_workspace_bytes};
    cur = align_up(cur + gemm_workspace_bytes, kArenaAlign);
  }
  S.temps_base = cur;
  return S;
}

ProgramBuffers plan_temporaries(const ir::Graph& g, const ir::DimBindings& dims) {
  ProgramBuffers B;
  const auto& nodes = g.nodes();
  for (size_t i = 0; i < nodes.size(); ++i)
    for (size_t j = 0; j < nodes[i].outputs.size(); ++j) {
      const ir::ValueId out = nodes[i].outputs[j];
      ir::ValueId a = ir::aliased_input(nodes[i], j);
      if (a != ir::kNoValue) {
        while (B.alias.count(a)) a = B.alias[a];
        B.alias[out] = a;
        continue;
      }
      B.temp_of[out] = B.temps.size();
      B.temps.push_back({static_cast<int64_t>(B.temps.size()), ir::resolve_bytes(g, g.value(out), dims),
                         static_cast<int32_t>(i), static_cast<int32_t>(i)});
    }
  for (size_t i = 0; i < nodes.size(); ++i)
    for (auto in : nodes[i].inputs)
      if (auto it = B.temp_of.find(in); it != B.temp_of.end())
        B.temps[it->second].last_use = std::max(B.temps[it->second].last_use, static_cast<int32_t>(i));
  for (auto o : g.outputs())
    if (auto it = B.temp_of.find(o); it != B.temp_of.end())
      B.temps[it->second].last_use = static_cast<int32_t>(nodes.size());
  B.placement = plan::MemoryPlanner(kArenaAlign).plan(B.temps);
  return B;
}

BufferAssignment::BufferAssignment(const ir::Graph& g, const ir::DimBindings& dims, const FixedSlots& slots,
                                   const WeightLayout& weights)
    : g_(g), slots_(slots), weights_(weights), buffers_(plan_temporaries(g, dims)) {}

plan::ArgSpec BufferAssignment::value(ir::ValueId id, const std::string& layout) const {
  if (auto a = buffers_.alias.find(id); a != buffers_.alias.end()) id = a->second;
  const ir::Value& v = g_.value(id);
  switch (v.kind) {
    case ir::ValueKind::Weight: {
      const WeightPlace w = weights_.find(v.source, layout);
      return plan::ArgSpec::ptr(plan::Region::kWeights, w.offset, w.bytes);
    }
    case ir::ValueKind::State: {
      auto it = slots_.states.find(v.name);
      if (it == slots_.states.end())
        throw Error(ErrorCode::kInternal, "state " + v.name + " has no slot in the arena", v.name);
      return plan::ArgSpec::ptr(plan::Region::kArena, it->second.offset, it->second.bytes);
    }
    case ir::ValueKind::Input:
      if (v.name == "tokens") return tokens();
      if (v.name == "positions")
        return plan::ArgSpec::ptr(plan::Region::kArena, slots_.positions, 4ull * slots_.tokens_capacity);
      throw Error(ErrorCode::kInternal, "graph input " + v.name + " has no place in the arena");
    case ir::ValueKind::Temp: {
      auto it = buffers_.temp_of.find(id);
      if (it == buffers_.temp_of.end())
        throw Error(ErrorCode::kInternal, "value " + v.name + " is not produced by this program", v.name);
      const size_t ti = it->second;
      return plan::ArgSpec::ptr(plan::Region::kArena, slots_.temps_base + buffers_.placement.offsets[ti],
                                buffers_.temps[ti].size);
    }
  }
  throw Error(ErrorCode::kInternal, "unreachable");
}

plan::ArgSpec BufferAssignment::step() const {
  return plan::ArgSpec::ptr(plan::Region::kArena, slots_.step, sizeof(KilnStep));
}

plan::ArgSpec BufferAssignment::tokens() const {
  return plan::ArgSpec::ptr(plan::Region::kArena, slots_.tokens, 4ull * slots_.tokens_capacity);
}

}  // namespace kiln::compile
