// Command-line value checks shared by `kiln` and `kiln-run`: every verb checks
// its values and its input files here before doing any work, so a bad value
// ends in one clear line ("kiln: error: --ctx 0: must be 1..16777216 ...",
// exit status 1) instead of a silent clamp or a failure half-way. Throws
// rt::Error(kInvalidArgument / kIo) with field() = the flag.
#pragma once
#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "runtime/error.h"

namespace kiln::rt::cli {

// Above any context length a model has: the bound for token counts on the
// command line (--ctx, --max-tokens, -n, ...).
inline constexpr int64_t kMaxTokensArg = int64_t{1} << 24;
inline constexpr int kMaxDeviceIndex = 255;

[[noreturn]] inline void bad_value(const std::string& flag, const std::string& value, const std::string& rule) {
  throw Error(ErrorCode::kInvalidArgument, flag + " " + value + ": " + rule, flag);
}

// `v` in [lo, hi]; `what` says what the flag means ("KV-cache rows").
inline void check_int(const std::string& flag, int64_t v, int64_t lo, int64_t hi, const std::string& what = "") {
  if (v < lo || v > hi)
    bad_value(flag, std::to_string(v),
              "must be " + std::to_string(lo) + ".." + std::to_string(hi) + (what.empty() ? "" : " (" + what + ")"));
}

// Finite and in [lo, hi] (lo excluded with lo_open).
inline void check_real(const std::string& flag, double v, double lo, double hi, bool lo_open = false,
                       const std::string& what = "") {
  char lo_s[32], hi_s[32], v_s[32];
  std::snprintf(lo_s, sizeof lo_s, "%g", lo);
  std::snprintf(hi_s, sizeof hi_s, "%g", hi);
  std::snprintf(v_s, sizeof v_s, "%g", v);
  if (!std::isfinite(v) || v > hi || (lo_open ? v <= lo : v < lo))
    bad_value(flag, v_s,
              std::string("must be a number in ") + (lo_open ? "(" : "[") + lo_s + ", " + hi_s + "]" +
                  (what.empty() ? "" : " (" + what + ")"));
}

// A uint64 given as decimal digits only (CLI11 would take "-1" as 2^64-1 and
// clamp overflow silently).
inline uint64_t parse_u64(const std::string& flag, const std::string& text) {
  uint64_t v = 0;
  bool ok = !text.empty() && text.size() <= 20;
  for (char c : text) {
    if (!ok) break;
    ok = c >= '0' && c <= '9' && !__builtin_mul_overflow(v, uint64_t{10}, &v) &&
         !__builtin_add_overflow(v, static_cast<uint64_t>(c - '0'), &v);
  }
  if (!ok) bad_value(flag, text, "must be a whole number 0..18446744073709551615");
  return v;
}

inline void check_device(const std::string& flag, int64_t device) {
  check_int(flag, device, 0, kMaxDeviceIndex, "a CUDA device index, 0 = the first GPU");
}

// A file the verb is about to read (`what`: "model", "plan"): a regular file —
// not a directory, device, FIFO or socket (a FIFO would block the reader, a
// device never ends): kInvalidArgument. A path that does not exist is left to
// the reader, the verb's first step, whose error names the fix.
inline void check_input_file(const std::string& path, const std::string& what) {
  if (path.empty()) throw Error(ErrorCode::kInvalidArgument, "no " + what + " file given", what);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;
  const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISFIFO(st.st_mode) ? "a FIFO"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                     : S_ISREG(st.st_mode)  ? nullptr
                                            : "not a regular file";
  if (kind)
    throw Error(ErrorCode::kInvalidArgument, what + " '" + path + "' is " + kind + ", not a " + what + " file", what);
}

// A file the verb will write: not an existing directory, and its folder exists.
inline void check_output_file(const std::string& flag, const std::string& path) {
  if (path.empty()) throw Error(ErrorCode::kInvalidArgument, flag + ": empty path", flag);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw Error(ErrorCode::kInvalidArgument, flag + " '" + path + "' is a directory: name the file to write", flag);
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return;
  const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(ErrorCode::kIo, flag + " '" + path + "': folder '" + dir + "' does not exist", flag);
}

}  // namespace kiln::rt::cli
