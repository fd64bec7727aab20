#include "ir/fault.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

namespace kiln::fault {
namespace {

constexpr int kSites = 4;

// The alloc site is hit from operator new, which also runs while state() is
// being built: its armed count lives in constant-initialised atomics that
// need no construction (State's copies are not used for it).
std::atomic<uint64_t> g_alloc_count{0};
std::atomic<uint64_t> g_alloc_armed{0};
std::atomic<int> g_alloc_kill{0};

struct State {
  std::atomic<uint64_t> counts[kSites] = {};
  std::atomic<int> armed_site{-1};
  std::atomic<uint64_t> armed_n{0};
  std::atomic<int> action{static_cast<int>(Action::kFail)};
};

State& state() {
  static State* s = [] {
    auto* st = new State;  // never destroyed: sites may be hit from static destructors
    const char* env = std::getenv("KILN_FAULT");
    if (!env || !*env) return st;
    const std::string v = env;
    if (v == "report") {  // how many calls each site saw, at exit: the range of n worth testing
      std::atexit([] {
        std::fprintf(stderr, "kiln: fault sites: read %llu, write %llu, nvrtc %llu, alloc %llu\n",
                     static_cast<unsigned long long>(count(Site::kRead)),
                     static_cast<unsigned long long>(count(Site::kWrite)),
                     static_cast<unsigned long long>(count(Site::kNvrtc)),
                     static_cast<unsigned long long>(count(Site::kAlloc)));
      });
      return st;
    }
    for (const char* rt_site : {"cuda_alloc:", "trap:", "plan_read:"})  // the runtime's (runtime/fault.h)
      if (v.rfind(rt_site, 0) == 0) return st;
    int site = -1;
    size_t pos = 0;
    for (int i = 0; i < kSites; ++i) {
      const std::string name = site_name(static_cast<Site>(i));
      if (v.compare(0, name.size() + 1, name + ":") == 0) {
        site = i;
        pos = name.size() + 1;
      }
    }
    char* end = nullptr;
    const unsigned long long n = site < 0 ? 0 : std::strtoull(v.c_str() + pos, &end, 10);
    const bool kill = end && std::strcmp(end, ":kill") == 0;
    if (site < 0 || n == 0 || !end || end == v.c_str() + pos || (*end && !kill)) {
      std::fprintf(stderr,
                   "kiln: KILN_FAULT='%s' ignored: use <read|write|nvrtc|alloc>:<n>[:kill], <cuda_alloc|trap|plan_read>:<n> "
                   "(n >= 1) or report\n", env);
      return st;
    }
    if (site == static_cast<int>(Site::kAlloc)) {
      g_alloc_kill = kill ? 1 : 0;
      g_alloc_count = 0;
      g_alloc_armed = n;
      return st;
    }
    st->action = static_cast<int>(kill ? Action::kKill : Action::kFail);
    st->armed_n = n;
    st->armed_site = site;
    return st;
  }();
  return *s;
}

// Reads KILN_FAULT when the process starts, so "report" counts from the start.
[[maybe_unused]] const bool kEnvRead = (state(), true);

}  // namespace

const char* site_name(Site site) {
  switch (site) {
    case Site::kRead: return "read";
    case Site::kWrite: return "write";
    case Site::kNvrtc: return "nvrtc";
    case Site::kAlloc: return "alloc";
  }
  return "?";
}

void arm(Site site, uint64_t n, Action action) {
  State& s = state();
  s.armed_site = -1;
  g_alloc_armed = 0;
  for (auto& c : s.counts) c = 0;
  g_alloc_count = 0;
  s.action = static_cast<int>(action);
  g_alloc_kill = action == Action::kKill ? 1 : 0;
  s.armed_n = n;
  if (n && site == Site::kAlloc) g_alloc_armed = n;
  else if (n) s.armed_site = static_cast<int>(site);
}

void disarm() { arm(Site::kRead, 0); }

uint64_t count(Site site) {
  if (site == Site::kAlloc) return g_alloc_count.load();
  return state().counts[static_cast<int>(site)].load();
}

bool hit(Site site) {
  State& s = state();
  const int i = static_cast<int>(site);
  const uint64_t k = ++s.counts[i];
  if (s.armed_site.load() != i || k != s.armed_n.load()) return false;
  if (s.action.load() == static_cast<int>(Action::kKill)) {
    ::kill(::getpid(), SIGKILL);
    ::_exit(137);  // not reached
  }
  return true;
}

}  // namespace kiln::fault

// ---- the alloc site: operator new replaced for the whole program ----------
// Sanitizer builds keep their own operator new (the fuzzers).
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define KILN_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KILN_SANITIZED 1
#endif

namespace kiln::fault {
#ifdef KILN_SANITIZED
bool alloc_site_available() { return false; }
#else
bool alloc_site_available() { return true; }
#endif
}  // namespace kiln::fault

#ifndef KILN_SANITIZED
namespace {
void* counted_alloc(std::size_t n) {
  using namespace kiln::fault;
  if (n < kAllocSiteMinBytes) {  // small allocations are not a site (see fault.h)
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
  }
  const uint64_t k = ++g_alloc_count;
  const uint64_t armed = g_alloc_armed.load(std::memory_order_relaxed);
  if (armed && k == armed) {
    if (g_alloc_kill.load()) {
      ::kill(::getpid(), SIGKILL);
      ::_exit(137);
    }
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif
