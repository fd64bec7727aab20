#include "compiler/compile/peak_memory.h"

#include <chrono>
#include <cstdio>
#include <cstring>

namespace kiln::compile {

uint64_t proc_status_bytes(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  const size_t n = std::strlen(key);
  uint64_t kb = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
      unsigned long long v = 0;
      if (std::sscanf(line + n + 1, "%llu", &v) == 1) kb = v;
      break;
    }
  }
  std::fclose(f);
  return kb * 1024;
}

PeakMemorySampler::PeakMemorySampler(int period_ms) : period_ms_(period_ms) {
  sample();
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(period_ms_));
      sample();
    }
  });
}

PeakMemorySampler::~PeakMemorySampler() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void PeakMemorySampler::sample() {
  const uint64_t anon = proc_status_bytes("RssAnon");
  uint64_t prev = peak_anon_.load();
  while (anon > prev && !peak_anon_.compare_exchange_weak(prev, anon)) {
  }
}

PeakMemory PeakMemorySampler::peak() {
  sample();
  return {proc_status_bytes("VmHWM"), peak_anon_.load()};
}

}  // namespace kiln::compile
