// Ctrl-C (SIGINT) while a verb generates or measures: the first one asks the
// loop to stop — generation ends after the current token, what was generated
// is printed, and the verb exits with status 130 (kExitInterrupted, the
// shell's 128 + SIGINT) after "<prog>: interrupted: ..." on stderr. A second
// Ctrl-C ends the process at once (the handler is installed with
// SA_RESETHAND). Outside an InterruptGuard, SIGINT keeps its default action.
#pragma once
#include <signal.h>

#include <cstring>
#include <string>

namespace kiln::rt::cli {

inline constexpr int kExitInterrupted = 130;

// Thrown by a verb that stopped on Ctrl-C; main() prints what() and exits 130.
// Not a std::exception, so no handler takes it for an internal error.
struct Interrupted {
  std::string what;  // "stopped after 12 generated tokens"
};

class InterruptGuard {
 public:
  InterruptGuard() {
    flag() = 0;
    struct sigaction sa {};
    sa.sa_handler = [](int) { flag() = 1; };
    sigemptyset(&sa.sa_mask);
    // No SA_RESTART: a blocking read (the --chat prompt) returns at once.
    sa.sa_flags = SA_RESETHAND;
    installed_ = ::sigaction(SIGINT, &sa, &previous_) == 0;
  }
  ~InterruptGuard() {
    if (installed_) ::sigaction(SIGINT, &previous_, nullptr);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // True once SIGINT arrived while a guard was installed.
  static bool requested() { return flag() != 0; }

 private:
  static volatile sig_atomic_t& flag() {
    static volatile sig_atomic_t f = 0;
    return f;
  }
  struct sigaction previous_ {};
  bool installed_ = false;
};

}  // namespace kiln::rt::cli
