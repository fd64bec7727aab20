// The runtime's fault-injection sites, a test hook compiled into every build
// and off unless armed (the runtime links nothing of ir/, whose fault.h holds
// the compiler's sites: read, write, nvrtc, alloc). Armed by a test through
// arm(), or for a whole process by the environment:
//   KILN_FAULT=cuda_alloc:<n>   the n-th GPU-side allocation of an engine
//                               (stream, weights, arena, pinned step block,
//                               events, kernel modules) fails as out of memory
//   KILN_FAULT=trap:<n>         before the n-th step, the engine launches a
//                               kernel that executes `trap`: a sticky error
//                               that leaves the process's CUDA context unusable
//   KILN_FAULT=plan_read:<n>    the n-th open, stat or map of a plan file fails
//                               (EIO), as on a bad disk
// KILN_FAULT=report prints at exit how many calls each site saw. Values naming
// the compiler's sites are left to ir/fault.cpp (and the other way round).
#pragma once
#include <cstdint>

namespace kiln::rt::fault {

enum class Site : int { kCudaAlloc = 0, kTrap = 1, kPlanRead = 2 };

// Fails the n-th call at `site` from now on (n = 0 disarms); resets the counts.
void arm(Site site, uint64_t n);
void disarm();
uint64_t count(Site site);
// Called at each site: true when this call must fail. Thread-safe.
bool hit(Site site);
const char* site_name(Site site);

}  // namespace kiln::rt::fault
