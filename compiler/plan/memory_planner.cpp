#include "compiler/plan/memory_planner.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <string>

#include "ir/error.h"

namespace kiln::plan {
namespace {

bool overlaps(const BufferLife& a, const BufferLife& b) {
  return a.first_use <= b.last_use && b.first_use <= a.last_use;
}

void check(const std::vector<BufferLife>& buffers) {
  for (const BufferLife& b : buffers)
    if (b.first_use < 0 || b.last_use < b.first_use)
      throw Error(ErrorCode::kInvalidArgument,
                  "memory planner: buffer " + std::to_string(b.id) + " has live range [" +
                      std::to_string(b.first_use) + ", " + std::to_string(b.last_use) +
                      "]: need 0 <= first_use <= last_use",
                  std::to_string(b.id));
}

}  // namespace

MemoryPlanner::MemoryPlanner(uint64_t alignment) : alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    throw Error(ErrorCode::kInvalidArgument,
                "memory planner: alignment " + std::to_string(alignment) + " is not a power of two");
}

MemoryPlan MemoryPlanner::plan(const std::vector<BufferLife>& buffers) const {
  check(buffers);
  const uint64_t mask = alignment_ - 1;
  auto align_up = [mask](uint64_t v) { return (v + mask) & ~mask; };

  std::vector<size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return buffers[a].size > buffers[b].size; });

  MemoryPlan out;
  out.offsets.assign(buffers.size(), 0);
  std::vector<size_t> placed;  // indices, kept sorted by offset
  std::vector<size_t> live;    // scratch: placed buffers overlapping in time, by offset
  for (size_t i : order) {
    const BufferLife& b = buffers[i];
    if (b.size == 0) continue;
    live.clear();
    for (size_t j : placed)
      if (overlaps(buffers[j], b)) live.push_back(j);

    // Walk the gaps between the time-overlapping buffers in offset order.
    uint64_t prev_end = 0;  // aligned end of everything seen so far
    uint64_t best = UINT64_MAX, best_gap = UINT64_MAX;
    for (size_t j : live) {
      const uint64_t off = out.offsets[j];
      if (off >= prev_end) {
        const uint64_t gap = off - prev_end;
        if (gap >= b.size && gap < best_gap) {
          best = prev_end;
          best_gap = gap;
        }
      }
      prev_end = std::max(prev_end, align_up(off + buffers[j].size));
    }
    const uint64_t offset = best != UINT64_MAX ? best : prev_end;
    out.offsets[i] = offset;
    out.total = std::max(out.total, offset + b.size);
    auto pos = std::upper_bound(placed.begin(), placed.end(), offset,
                                [&](uint64_t o, size_t j) { return o < out.offsets[j]; });
    placed.insert(pos, i);
  }
  return out;
}

uint64_t MemoryPlanner::lower_bound(const std::vector<BufferLife>& buffers) {
  check(buffers);
  // Sweep: +size at first_use, -size after last_use.
  std::map<int64_t, int64_t> delta;
  for (const BufferLife& b : buffers) {
    if (b.size == 0) continue;
    delta[b.first_use] += static_cast<int64_t>(b.size);
    delta[int64_t{b.last_use} + 1] -= static_cast<int64_t>(b.size);
  }
  int64_t cur = 0, best = 0;
  for (const auto& [t, d] : delta) {
    cur += d;
    best = std::max(best, cur);
  }
  return static_cast<uint64_t>(best);
}

}  // namespace kiln::plan
