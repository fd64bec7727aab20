// Stage "buffers" of the compile driver: where every value of a program lives.
//
// The arena (one device allocation) holds, in this order, fixed slots shared
// by every program — the KilnStep block, the token ids, the positions, one
// slot per KV-cache state — and then the temporaries of the program that is
// running (programs never run concurrently, so their temporaries share the
// space above temps_base). A program's temporaries are its nodes' outputs,
// except outputs that update a state in place (OpInfo::output_alias: kv_store,
// rope_store's cache outputs), which get that state's slot. Each temporary is
// live from its producer to its last reader (graph outputs: to the end of the
// schedule) and plan::MemoryPlanner places them.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "codegen/codegen.h"
#include "compiler/compile/weight_layout.h"
#include "compiler/plan/memory_planner.h"
#include "compiler/plan/plan_spec.h"
#include "ir/graph.h"

namespace kiln::compile {

inline constexpr uint64_t kArenaAlign = 256;  // every arena slot and temporary

struct ArenaSlot {
  uint64_t offset = 0, bytes = 0;
};

// Slots every program shares. Offsets in the arena, each 256-aligned.
struct FixedSlots {
  uint64_t step = 0;          // KilnStep
  uint64_t tokens = 0;        // int32[tokens_capacity]
  uint64_t positions = 0;     // int32[tokens_capacity] (the IR's positions input; kernels use pos0 + t)
  uint32_t tokens_capacity = 0;
  uint64_t kv_offset = 0, kv_size = 0;  // the states' span
  std::map<std::string, ArenaSlot> states;  // by state name
  ArenaSlot gemm_workspace;   // cuBLASLt workspace (0 bytes when no program has a GEMM)
  uint64_t temps_base = 0;    // first byte above the fixed slots
};

// Step block, tokens, positions (max_tokens rows), then every State value of
// the graphs (first graph first, in value order; a name seen before is not
// placed again) sized with tokens = max_tokens, kv_len = ctx, seqs = 1.
// Then the cuBLASLt workspace of `gemm_workspace_bytes` (0: none).
FixedSlots assign_fixed_slots(const std::vector<const ir::Graph*>& graphs, int64_t max_tokens, int64_t ctx,
                              uint64_t gemm_workspace_bytes = 0);

// One program's temporaries and their placement.
struct ProgramBuffers {
  // One per node output that is not an in-place update, in schedule order
  // (id = index); first_use = producer's index, last_use = last reader's
  // (graph outputs: nodes.size()).
  std::vector<plan::BufferLife> temps;
  std::map<ir::ValueId, size_t> temp_of;     // value -> index in temps
  std::map<ir::ValueId, ir::ValueId> alias;  // in-place output -> the state it updates (chains followed)
  plan::MemoryPlan placement;                // offsets relative to FixedSlots::temps_base
};
ProgramBuffers plan_temporaries(const ir::Graph& g, const ir::DimBindings& dims);

// Addresses of one program's values: the kernel arguments.
class BufferAssignment {
 public:
  BufferAssignment(const ir::Graph& g, const ir::DimBindings& dims, const FixedSlots& slots,
                   const WeightLayout& weights);

  // Pointer argument for value `id`: a weight in `layout` (how the reading
  // kernel wants it, codegen::input_layout), a state's slot (also for an
  // in-place output of it), the tokens/positions slot, or a temporary.
  // Throws kiln::Error(kInternal) for a value with no place.
  plan::ArgSpec value(ir::ValueId id, const std::string& layout = codegen::kLayoutGgml) const;
  plan::ArgSpec step() const;    // the KilnStep block
  plan::ArgSpec tokens() const;  // int32 token ids

  const FixedSlots& slots() const { return slots_; }
  const ProgramBuffers& buffers() const { return buffers_; }
  uint64_t temps_bytes() const { return buffers_.placement.total; }

 private:
  const ir::Graph& g_;
  const FixedSlots& slots_;
  const WeightLayout& weights_;
  ProgramBuffers buffers_;
};

}  // namespace kiln::compile
