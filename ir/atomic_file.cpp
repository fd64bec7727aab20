#include "ir/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "ir/error.h"
#include "ir/fault.h"

namespace kiln {
namespace {

std::string folder_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string next_temp_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

// "<anything>.tmp.<pid>.<digits and dots>" with a pid that no longer runs.
bool stale_temporary(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos) return false;
  const char* p = name.c_str() + at + 5;
  char* end = nullptr;
  const long pid = std::strtol(p, &end, 10);
  if (end == p || *end != '.' || pid <= 0) return false;
  for (const char* q = end + 1; *q; ++q)
    if ((*q < '0' || *q > '9') && *q != '.') return false;
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

size_t remove_matching(const std::string& dir, const std::string& prefix) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  struct Close {  // also when building a name throws (std::bad_alloc)
    DIR* d;
    ~Close() { ::closedir(d); }
  } close_dir{d};
  size_t removed = 0;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0 || !stale_temporary(name)) continue;
    if (::unlink((dir + "/" + name).c_str()) == 0) ++removed;
  }
  return removed;
}

}  // namespace

AtomicFile::AtomicFile(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)) {
  const std::string dir = folder_of(path_);
  errno = 0;
  if (fault::hit(fault::Site::kWrite)) {
    errno = EIO;
  } else {
    // O_TMPFILE needs /proc to be given a name at commit (linkat of /proc/self/fd/N).
    if (::access("/proc/self/fd", X_OK) == 0) {
      fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
      unnamed_ = fd_ >= 0;
    }
    if (fd_ < 0) {
      tmp_ = next_temp_name(path_);
      fd_ = ::open(tmp_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
  }
  if (fd_ < 0) {
    const int err = errno;
    tmp_.clear();
    throw Error(ErrorCode::kIo, "cannot create " + what_ + " '" + path_ + "': " + std::strerror(err) +
                                    " (check that the folder '" + dir + "' exists and is writable)");
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::fail(const std::string& doing, int err) const {
  const bool full = err == ENOSPC || err == EFBIG || err == EDQUOT;
  throw Error(ErrorCode::kIo, "cannot " + doing + " " + what_ + " '" + path_ + "': " + std::strerror(err) +
                                  (full ? " (free some disk space, or write it elsewhere)"
                                        : " (check free disk space and permissions)"));
}

void AtomicFile::write(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    if (fault::hit(fault::Site::kWrite)) fail("write", EIO);
    const ssize_t k = ::write(fd_, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      fail("write", errno);
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
}

void AtomicFile::pwrite(const void* data, size_t n, uint64_t offset) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    if (fault::hit(fault::Site::kWrite)) fail("write", EIO);
    const ssize_t k = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (k < 0) {
      if (errno == EINTR) continue;
      fail("write", errno);
    }
    p += k;
    n -= static_cast<size_t>(k);
    offset += static_cast<uint64_t>(k);
  }
}

void AtomicFile::commit() {
  if (fault::hit(fault::Site::kWrite)) fail("flush", EIO);
  if (::fsync(fd_) != 0) fail("flush", errno);
  if (unnamed_) {
    if (fault::hit(fault::Site::kWrite)) fail("name", EIO);
    tmp_ = next_temp_name(path_);
    const std::string proc = "/proc/self/fd/" + std::to_string(fd_);
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, tmp_.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      const int err = errno;
      tmp_.clear();
      fail("name", err);
    }
    unnamed_ = false;
  }
  if (fault::hit(fault::Site::kWrite)) fail("rename the finished", EIO);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename the finished", errno);
  tmp_.clear();
  ::close(fd_);
  fd_ = -1;
  // The rename is durable once the folder is flushed (best effort: some file systems refuse it).
  const int dfd = ::open(folder_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

size_t remove_stale_temporaries(const std::string& path) {
  return remove_matching(folder_of(path), base_of(path) + ".tmp.");
}

size_t remove_stale_temporaries_in(const std::string& dir) { return remove_matching(dir, ""); }

}  // namespace kiln
