// Fault injection, a test hook compiled into every build and off unless armed:
// make the N-th host file read, file write or NVRTC compile of this process
// fail (or kill the process there), so tests can check that every failure
// ends in a clean error and leaves nothing half-written (docs/robustness.md).
//
// Armed by a test through arm(), or for a whole process by the environment:
//   KILN_FAULT=<site>:<n>[:kill]    site = read | write | nvrtc | alloc, n >= 1
// e.g. KILN_FAULT=write:3 fails the third file write; KILN_FAULT=write:3:kill
// ends the process with SIGKILL there instead (a crash or `kill -9` mid-way).
// KILN_FAULT=report arms nothing and prints at exit how many calls each site
// saw ("kiln: fault sites: read 18, write 23, nvrtc 0"), the range of n to
// test. A malformed KILN_FAULT is ignored with one line on stderr.
//
// The sites (each a call to hit() just before the real operation):
//   read   opening a GGUF model; reading a kernel-cache entry
//   write  creating, writing, flushing and renaming a file written in place
//          (kiln::AtomicFile: plans, kernel-cache entries)
//   nvrtc  compiling one kernel module with NVRTC
//   alloc  one host allocation of at least kAllocSiteMinBytes through
//          operator new (the buffers that grow with the model: weights,
//          kernels, plan sections; the failing one throws std::bad_alloc).
//          Smaller allocations are not failed: failing those (a std::string
//          of a name) crashed inside libstdc++ 12's std::variant copy
//          constructor, a failure mode no caller can handle. Not in sanitizer
//          builds, which own operator new.
#pragma once
#include <cstdint>

namespace kiln::fault {

enum class Site : int { kRead = 0, kWrite = 1, kNvrtc = 2, kAlloc = 3 };
constexpr unsigned long kAllocSiteMinBytes = 4096;
enum class Action : int { kFail, kKill };

// Fails the n-th call at `site` from now on (n = 0 disarms the site); resets
// every site's count. One site is armed at a time.
void arm(Site site, uint64_t n, Action action = Action::kFail);
void disarm();
// Calls at `site` since the last arm()/disarm() (or the start of the process).
uint64_t count(Site site);

// Called at each site. True when this call must fail (the caller then fails as
// the real operation would, with errno = EIO); with Action::kKill it does not
// return. Thread-safe.
bool hit(Site site);

const char* site_name(Site site);
// Whether this build counts and fails host allocations (false under ASan).
bool alloc_site_available();

}  // namespace kiln::fault
