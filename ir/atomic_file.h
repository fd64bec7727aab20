// kiln::AtomicFile: a file written in full and then published at its path in
// one step, so a reader (or a later compile) sees the old file or the new one,
// never a part of one — whatever stops the writer (an error, a full disk, a
// kill). Plans and kernel-cache entries are written through it.
//
// The data goes to an unnamed file in the target's folder (Linux O_TMPFILE),
// which the kernel discards if the process dies; commit() flushes it (fsync),
// links it under a temporary name "<path>.tmp.<pid>.<n>" and renames that
// over `path` (atomic on POSIX), then flushes the folder. Where the file
// system has no O_TMPFILE the named temporary is written directly. A named
// temporary can outlive its process only if the process is killed between
// those steps; remove_stale_temporaries() deletes such leftovers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln {

class AtomicFile {
 public:
  // `what` names the file in errors ("plan", "kernel-cache entry"). Throws
  // kiln::Error(kIo) naming the path and the fix when the folder is not writable.
  AtomicFile(std::string path, std::string what);
  ~AtomicFile();  // an uncommitted file is discarded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // All of `n` bytes at the end / at `offset`, or kiln::Error(kIo) (a full disk
  // or a file-size limit names "free disk space").
  void write(const void* data, size_t n);
  void pwrite(const void* data, size_t n, uint64_t offset);
  // Flushes the data and replaces `path` with it. Throws kiln::Error(kIo); the
  // old file at `path` is then untouched.
  void commit();

 private:
  [[noreturn]] void fail(const std::string& doing, int err) const;
  std::string path_, what_;
  std::string tmp_;   // the named temporary ("" while the file is unnamed)
  int fd_ = -1;
  bool unnamed_ = false;
};

// Deletes "<path>.tmp.<pid>.*" files in path's folder whose process no longer
// runs (left by a writer killed in commit()). Returns how many; never throws.
size_t remove_stale_temporaries(const std::string& path);
// The same for every "*.tmp.<pid>.*" file in `dir` (a kernel cache).
size_t remove_stale_temporaries_in(const std::string& dir);

}  // namespace kiln
