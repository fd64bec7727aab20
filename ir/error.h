// kiln::Error: the one exception type the compiler side throws for bad input.
// Every error names its cause (`what()`) and, where known, the field or
// object at fault (`field`) so tests and users can see exactly what was wrong.
#pragma once
#include <stdexcept>
#include <string>

namespace kiln {

enum class ErrorCode {
  kIo,              // file cannot be opened / mapped / written
  kFormat,          // input file is malformed (GGUF, plan, IR text)
  kUnsupported,     // valid input that kiln does not support (arch, quant type)
  kInvalidArgument, // bad user input (CLI flag, prompt too long, ...)
  kInternal,        // a kiln bug: an invariant broke
  kOutOfMemory,     // the host ran out of memory
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message, std::string field = {})
      : std::runtime_error(std::move(message)), code_(code), field_(std::move(field)) {}
  ErrorCode code() const { return code_; }
  // The field / key / tensor the error is about ("" when not applicable).
  const std::string& field() const { return field_; }

 private:
  ErrorCode code_;
  std::string field_;
};

}  // namespace kiln
