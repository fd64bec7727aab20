// kiln::rt::Error: the one exception type the runtime throws. The runtime links
// nothing of the compiler (not even ir/), so it has its own error type, shaped
// like kiln::Error: a code, a message that names the cause and the fix, and the
// field or object at fault (`field`, "" when not applicable) so tests and users
// can see exactly which check fired.
#pragma once
#include <stdexcept>
#include <string>

namespace kiln::rt {

enum class ErrorCode {
  kIo,              // file cannot be opened / mapped / read
  kFormat,          // input (plan file, request) is malformed or fails verification
  kVersion,         // plan format version this runtime cannot read
  kUnsupported,     // valid input this runtime/device does not support
  kDevice,          // device mismatch or device limit (wrong SM, out of memory)
  kCuda,            // a CUDA driver/runtime call failed
  kInvalidArgument, // bad user input (prompt too long, bad sampling parameter, ...)
  kInternal,        // a kiln bug: an invariant broke
  kCheckFailed,     // a requested check found a problem (kiln run --check-finite: a NaN or Inf)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message, std::string field = {})
      : std::runtime_error(std::move(message)), code_(code), field_(std::move(field)) {}
  ErrorCode code() const { return code_; }
  const std::string& field() const { return field_; }

 private:
  ErrorCode code_;
  std::string field_;
};

}  // namespace kiln::rt
