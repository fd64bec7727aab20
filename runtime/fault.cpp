#include "runtime/fault.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kiln::rt::fault {
namespace {

constexpr int kSites = 3;

struct State {
  std::atomic<uint64_t> counts[kSites] = {};
  std::atomic<int> armed_site{-1};
  std::atomic<uint64_t> armed_n{0};
};

State& state() {
  static State* s = [] {
    auto* st = new State;  // never destroyed: sites may be hit from static destructors
    const char* env = std::getenv("KILN_FAULT");
    if (!env || !*env) return st;
    const std::string v = env;
    if (v == "report") {
      std::atexit([] {
        std::fprintf(stderr, "kiln: runtime fault sites: cuda_alloc %llu, trap %llu, plan_read %llu\n",
                     static_cast<unsigned long long>(count(Site::kCudaAlloc)),
                     static_cast<unsigned long long>(count(Site::kTrap)),
                     static_cast<unsigned long long>(count(Site::kPlanRead)));
      });
      return st;
    }
    for (int i = 0; i < kSites; ++i) {
      const std::string name = std::string(site_name(static_cast<Site>(i))) + ":";
      if (v.compare(0, name.size(), name) != 0) continue;
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v.c_str() + name.size(), &end, 10);
      if (n == 0 || !end || *end) {
        std::fprintf(stderr, "kiln: KILN_FAULT='%s' ignored: use %s<n> (n >= 1)\n", env, name.c_str());
        return st;
      }
      st->armed_n = n;
      st->armed_site = i;
    }
    return st;  // another site: ir/fault.cpp's
  }();
  return *s;
}

// Reads KILN_FAULT when the process starts, so "report" counts from the start.
[[maybe_unused]] const bool kEnvRead = (state(), true);

}  // namespace

const char* site_name(Site site) {
  switch (site) {
    case Site::kCudaAlloc: return "cuda_alloc";
    case Site::kTrap: return "trap";
    case Site::kPlanRead: return "plan_read";
  }
  return "?";
}

void arm(Site site, uint64_t n) {
  State& s = state();
  for (auto& c : s.counts) c = 0;
  s.armed_n = n;
  s.armed_site = n ? static_cast<int>(site) : -1;
}

void disarm() { arm(Site::kCudaAlloc, 0); }

uint64_t count(Site site) { return state().counts[static_cast<int>(site)].load(); }

bool hit(Site site) {
  State& s = state();
  const uint64_t c = ++s.counts[static_cast<int>(site)];
  return s.armed_site.load() == static_cast<int>(site) && c == s.armed_n.load();
}

}  // namespace kiln::rt::fault
