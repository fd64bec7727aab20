// The Ctrl-C handler `run` and `bench` install (runtime/cli/interrupt.h), in a
// child process each: the first SIGINT only sets the flag (the loop stops
// itself and the verb exits 130), a second one ends the process at once, a
// blocking read returns instead of restarting, and the previous SIGINT action
// comes back when the guard goes. The end-to-end path (exit 130, the text
// printed) is tests/python/interrupt_test.py.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/cli/interrupt.h"

namespace kiln::rt::cli {
namespace {

// Runs `body` in a child process; returns its wait status.
template <class F>
int in_child(F body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(Interrupt, FirstSigintAsksToStopSecondEndsTheProcess) {
  const int status = in_child([] {
    InterruptGuard guard;
    if (InterruptGuard::requested()) ::_exit(10);
    ::raise(SIGINT);
    if (!InterruptGuard::requested()) ::_exit(11);  // the handler ran and the process lives
    ::raise(SIGINT);
    ::_exit(12);  // not reached: the default action
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  EXPECT_EQ(WTERMSIG(status), SIGINT);
}

TEST(Interrupt, BlockingReadReturnsOnSigint) {
  const int status = in_child([] {
    int fds[2];
    if (::pipe(fds) != 0) ::_exit(20);
    InterruptGuard guard;
    ::alarm(5);  // a read that restarted would hang: SIGALRM ends the child
    if (::fork() == 0) {  // grandchild: Ctrl-C in 100 ms
      ::usleep(100000);
      ::kill(::getppid(), SIGINT);
      ::_exit(0);
    }
    char c;
    const ssize_t n = ::read(fds[0], &c, 1);
    ::_exit(n < 0 && errno == EINTR && InterruptGuard::requested() ? 0 : 21);
  });
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Interrupt, GuardRestoresThePreviousAction) {
  const int status = in_child([] {
    ::signal(SIGINT, SIG_IGN);
    { InterruptGuard guard; }
    ::raise(SIGINT);  // ignored again
    if (InterruptGuard::requested()) ::_exit(30);
    { InterruptGuard guard; }  // a fresh guard starts unset
    ::signal(SIGINT, SIG_DFL);
    {
      InterruptGuard guard;
      ::raise(SIGINT);
      if (!InterruptGuard::requested()) ::_exit(31);
    }
    ::raise(SIGINT);  // the default action again
    ::_exit(32);
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  EXPECT_EQ(WTERMSIG(status), SIGINT);
}

}  // namespace
}  // namespace kiln::rt::cli
