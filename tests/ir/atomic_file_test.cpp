// kiln::AtomicFile (ir/atomic_file.h) and the fault-injection hook
// (ir/fault.h): a file written in place is either the old one or the whole new
// one, whatever stops the writer — an error, a full disk (a file-size limit),
// SIGKILL at any write — and nothing partial is left in the folder.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "ir/atomic_file.h"
#include "ir/error.h"
#include "ir/fault.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/kiln_atomic_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

std::set<std::string> names(const fs::path& dir) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

// 64 KiB in 16 writes, then a header written at offset 0.
void write_new(const std::string& path) {
  AtomicFile f(path, "test file");
  const std::string chunk(4096, 'n');
  for (int i = 0; i < 16; ++i) f.write(chunk.data(), chunk.size());
  f.pwrite("NEW!", 4, 0);
  f.commit();
}

const std::string kOld = "the old file, which must survive\n";

TEST(AtomicFile, CommitReplacesAndLeavesNothingElse) {
  TempDir d;
  const fs::path p = d.path / "out.plan";
  std::ofstream(p) << kOld;
  write_new(p.string());
  const std::string now = slurp(p);
  ASSERT_EQ(now.size(), 65536u);
  EXPECT_EQ(now.substr(0, 8), "NEW!nnnn");
  EXPECT_EQ(names(d.path), std::set<std::string>{"out.plan"});
  // Into a folder with no file yet.
  write_new((d.path / "fresh").string());
  EXPECT_EQ(names(d.path), (std::set<std::string>{"fresh", "out.plan"}));
}

TEST(AtomicFile, NotCommittedLeavesTheOldFile) {
  TempDir d;
  const fs::path p = d.path / "out.plan";
  std::ofstream(p) << kOld;
  {
    AtomicFile f(p.string(), "test file");
    f.write("partial", 7);
  }  // an error unwinds here
  EXPECT_EQ(slurp(p), kOld);
  EXPECT_EQ(names(d.path), std::set<std::string>{"out.plan"});
}

TEST(AtomicFile, UnwritableFolderIsAnIoErrorNamingIt) {
  try {
    AtomicFile f("/nonexistent-kiln-dir/x.plan", "plan");
    FAIL() << "created a file in a missing folder";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find("cannot create plan '/nonexistent-kiln-dir/x.plan'"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("'/nonexistent-kiln-dir' exists and is writable"), std::string::npos)
        << e.what();
  }
}

// A full disk, as a file-size limit (RLIMIT_FSIZE) in a child process with
// SIGXFSZ ignored, so write() fails with EFBIG: a kIo error naming free disk
// space, the old file as it was, no partial file.
TEST(AtomicFile, FullDiskKeepsTheOldFile) {
  for (rlim_t limit : {rlim_t{0}, rlim_t{1000}, rlim_t{4096 * 8}, rlim_t{65535}}) {
    TempDir d;
    const fs::path p = d.path / "out.plan";
    std::ofstream(p) << kOld;
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      ::signal(SIGXFSZ, SIG_IGN);
      const rlimit rl{limit, limit};
      ::setrlimit(RLIMIT_FSIZE, &rl);
      std::string msg = "no error";
      try {
        write_new(p.string());
      } catch (const Error& e) {
        msg = (e.code() == ErrorCode::kIo ? "kIo: " : "other: ") + std::string(e.what());
      }
      (void)!::write(fds[1], msg.data(), msg.size());
      ::_exit(0);
    }
    ::close(fds[1]);
    std::string msg;
    char buf[512];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child died, status " << status;
    EXPECT_EQ(msg.rfind("kIo: cannot write test file '" + p.string() + "': File too large", 0), 0u)
        << "limit " << limit << ": " << msg;
    EXPECT_NE(msg.find("free some disk space"), std::string::npos) << msg;
    EXPECT_EQ(slurp(p), kOld) << "limit " << limit;
    EXPECT_EQ(names(d.path), std::set<std::string>{"out.plan"}) << "limit " << limit;
  }
}

// SIGKILL at every write site (fault::Action::kKill in a child process): the
// old file is intact, and the only thing a kill can leave is a named
// temporary of the dead process (killed between naming the finished file and
// the rename), which remove_stale_temporaries deletes.
TEST(AtomicFile, KilledAtEveryWriteKeepsTheOldFile) {
  TempDir d;
  const fs::path p = d.path / "out.plan";
  std::ofstream(p) << kOld;
  fault::arm(fault::Site::kWrite, 0);
  write_new((d.path / "probe").string());
  const uint64_t n_sites = fault::count(fault::Site::kWrite);
  fs::remove(d.path / "probe");
  EXPECT_GE(n_sites, 20u);  // create, 16 writes, pwrite, flush, name, rename
  size_t stale_seen = 0;
  for (uint64_t n = 1; n <= n_sites + 1; ++n) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      fault::arm(fault::Site::kWrite, n, fault::Action::kKill);
      try {
        write_new(p.string());
      } catch (...) {
        ::_exit(3);
      }
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (n <= n_sites) {
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "n=" << n << " status " << status;
      EXPECT_EQ(slurp(p), kOld) << "n=" << n;
      std::set<std::string> left = names(d.path);
      left.erase("out.plan");
      for (const auto& name : left) {
        EXPECT_EQ(name.rfind("out.plan.tmp." + std::to_string(pid) + ".", 0), 0u) << "n=" << n << ": " << name;
        ++stale_seen;
      }
      EXPECT_EQ(remove_stale_temporaries(p.string()), left.size());
      EXPECT_EQ(names(d.path), std::set<std::string>{"out.plan"}) << "n=" << n;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
      EXPECT_EQ(slurp(p).substr(0, 4), "NEW!");
    }
  }
  fault::disarm();
  EXPECT_EQ(stale_seen, 1u);  // only the kill between naming and renaming leaves a name
}

// Failing each write site (fault::Action::kFail) in turn: a kIo error, the old
// file intact, nothing left.
TEST(AtomicFile, FailedAtEveryWriteKeepsTheOldFile) {
  TempDir d;
  const fs::path p = d.path / "out.plan";
  for (uint64_t n = 1;; ++n) {
    std::ofstream(p, std::ios::trunc) << kOld;
    fault::arm(fault::Site::kWrite, n);
    bool failed = false;
    try {
      write_new(p.string());
    } catch (const Error& e) {
      failed = true;
      EXPECT_EQ(e.code(), ErrorCode::kIo) << e.what();
      EXPECT_NE(std::string(e.what()).find("Input/output error"), std::string::npos) << e.what();
    }
    fault::disarm();
    EXPECT_EQ(names(d.path), std::set<std::string>{"out.plan"}) << "n=" << n;
    if (!failed) {
      EXPECT_GE(n, 20u);
      break;
    }
    EXPECT_EQ(slurp(p), kOld) << "n=" << n;
  }
}

TEST(AtomicFile, StaleTemporariesOfLiveProcessesAreKept) {
  TempDir d;
  const fs::path p = d.path / "m.plan";
  const std::string live = "m.plan.tmp." + std::to_string(::getpid()) + ".0";
  // A pid that no longer runs: a child that has exited and been reaped.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string stale = "m.plan.tmp." + std::to_string(dead) + ".3";
  const std::string stale_cache = "0123456789abcdef.kc.tmp." + std::to_string(dead) + ".7.12345";
  for (const auto& n : {live, stale, stale_cache, std::string("m.plan"), std::string("m.plan.tmp.notapid.1")})
    std::ofstream(d.path / n) << "x";
  EXPECT_EQ(remove_stale_temporaries(p.string()), 1u);
  EXPECT_EQ(names(d.path), (std::set<std::string>{live, stale_cache, "m.plan", "m.plan.tmp.notapid.1"}));
  EXPECT_EQ(remove_stale_temporaries_in(d.path.string()), 1u);
  EXPECT_EQ(names(d.path), (std::set<std::string>{live, "m.plan", "m.plan.tmp.notapid.1"}));
}

TEST(Fault, ArmCountsAndFiresOnce) {
  fault::arm(fault::Site::kNvrtc, 3);
  std::vector<bool> hits;
  for (int i = 0; i < 5; ++i) hits.push_back(fault::hit(fault::Site::kNvrtc));
  EXPECT_EQ(hits, (std::vector<bool>{false, false, true, false, false}));
  EXPECT_FALSE(fault::hit(fault::Site::kRead));  // another site is not armed
  EXPECT_EQ(fault::count(fault::Site::kNvrtc), 5u);
  EXPECT_EQ(fault::count(fault::Site::kRead), 1u);
  fault::disarm();
  EXPECT_EQ(fault::count(fault::Site::kNvrtc), 0u);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(fault::hit(fault::Site::kNvrtc));
}

}  // namespace
}  // namespace kiln
