// Peak memory of this process while a compile runs, for `kiln compile`'s
// summary and the CI bound on compile memory (docs/robustness.md).
//
// Two numbers, both from /proc/self/status:
//   peak_rss   VmHWM, the kernel's own high-water mark of resident memory. It
//              includes the pages of the memory-mapped GGUF model the compile
//              has read and of the plan it maps to verify, so it grows with
//              the model file and says little about what the compiler
//              allocates.
//   peak_anon  the largest RssAnon (resident anonymous memory: heap, stacks,
//              the compiler's own buffers) seen by a thread that samples it
//              every `period_ms` (plus once at start and at stop). A spike
//              shorter than the period can be missed; allocations the
//              compile makes are held for far longer than 10 ms.
// Both are 0 where /proc is not there.
#pragma once
#include <atomic>
#include <cstdint>
#include <thread>

namespace kiln::compile {

struct PeakMemory {
  uint64_t peak_rss = 0;   // bytes (VmHWM)
  uint64_t peak_anon = 0;  // bytes (largest sampled RssAnon)
};

// Reads one "<key>:  <n> kB" line of /proc/self/status, in bytes (0 if absent).
uint64_t proc_status_bytes(const char* key);

class PeakMemorySampler {
 public:
  explicit PeakMemorySampler(int period_ms = 10);
  ~PeakMemorySampler();  // stops the thread
  PeakMemorySampler(const PeakMemorySampler&) = delete;
  PeakMemorySampler& operator=(const PeakMemorySampler&) = delete;
  // The peaks so far (the sampler keeps running).
  PeakMemory peak();

 private:
  void sample();
  std::atomic<uint64_t> peak_anon_{0};
  std::atomic<bool> stop_{false};
  int period_ms_;
  std::thread thread_;
};

}  // namespace kiln::compile
