#include "ir/fault.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kiln::fault {
namespace {

constexpr int kSites = 3;

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
        std::fprintf(stderr, "kiln: fault sites: read %llu, write %llu, nvrtc %llu\n",
                     static_cast<unsigned long long>(count(Site::kRead)),
                     static_cast<unsigned long long>(count(Site::kWrite)),
                     static_cast<unsigned long long>(count(Site::kNvrtc)));
      });
      return st;
    }
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
      std::fprintf(stderr, "kiln: KILN_FAULT='%s' ignored: use <read|write|nvrtc>:<n>[:kill] (n >= 1) or report\n",
                   env);
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
  }
  return "?";
}

void arm(Site site, uint64_t n, Action action) {
  State& s = state();
  s.armed_site = -1;
  for (auto& c : s.counts) c = 0;
  s.action = static_cast<int>(action);
  s.armed_n = n;
  if (n) s.armed_site = static_cast<int>(site);
}

void disarm() { arm(Site::kRead, 0); }

uint64_t count(Site site) { return state().counts[static_cast<int>(site)].load(); }

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
