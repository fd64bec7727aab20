// The plan's section hash: XXH64 with seed 0 (docs/plan-abi.md), compiled
// inline from xxhash.h so neither the compiler nor the runtime needs
// libxxhash.so at run time.
#pragma once
#include <cstddef>
#include <cstdint>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace kiln::plan_format {

inline uint64_t hash64(const void* data, size_t size) { return XXH64(data, size, 0); }

// Streaming form for sections written piece by piece.
class Hasher {
 public:
  Hasher() { XXH64_reset(&state_, 0); }
  void update(const void* data, size_t size) { XXH64_update(&state_, data, size); }
  uint64_t digest() const { return XXH64_digest(&state_); }

 private:
  XXH64_state_t state_;
};

}  // namespace kiln::plan_format
