// MemoryPlanner: places the temporaries of a schedule in one arena.
//
// Input: buffers with a size and a live range [first_use, last_use] of
// schedule indices (inclusive), computed by the compile driver (the planner is
// IR-agnostic). Output: an offset per buffer such that two buffers whose live
// ranges overlap never overlap in memory, every offset aligned (256 bytes).
//
// Algorithm: "greedy by size" offset calculation from Pisarchyk & Lee 2020,
// "Efficient Memory Management for Deep Neural Net Inference" (arXiv:2001.03288),
// sec. 5: visit buffers in decreasing size; for each, look at the already placed
// buffers whose live ranges overlap it, ordered by offset, and take the
// smallest gap between them that fits (best fit); if none fits, place it after
// the highest of them. Ties in size are broken by input order, so the result
// is deterministic.
#pragma once
#include <cstdint>
#include <vector>

namespace kiln::plan {

struct BufferLife {
  int64_t id = 0;       // caller's id, carried through
  uint64_t size = 0;    // bytes (0: placed at offset 0, occupies nothing)
  int32_t first_use = 0;  // schedule index of the producer
  int32_t last_use = 0;   // schedule index of the last consumer (inclusive)
};

struct MemoryPlan {
  std::vector<uint64_t> offsets;  // offsets[i] for buffers[i]
  uint64_t total = 0;             // arena bytes needed: max(offset + size)
};

class MemoryPlanner {
 public:
  explicit MemoryPlanner(uint64_t alignment = 256);

  // Throws kiln::Error(kInvalidArgument) for last_use < first_use, a negative
  // first_use or an alignment that is not a power of two.
  MemoryPlan plan(const std::vector<BufferLife>& buffers) const;

  // max over schedule steps of the sum of the sizes live at that step: no
  // placement can use less (alignment ignored).
  static uint64_t lower_bound(const std::vector<BufferLife>& buffers);

 private:
  uint64_t alignment_;
};

}  // namespace kiln::plan
