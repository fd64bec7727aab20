// Weights for the reference interpreter straight from a GGUF file, including
// the concatenated weights the fusion passes make: a Value::source of the form
// "a+b+c" names tensors a, b, c whose rows are stacked in that order
// (fused QKV, gate+up, and their biases).
#pragma once
#include <string>
#include <vector>

#include "compiler/gguf/gguf.h"
#include "ir/interpreter.h"

namespace kiln::gguf {

// "a" -> tensor a as mapped (no copy); "a+b+c" -> one owned buffer of the
// parts' bytes in order, built on first use and cached (thread-safe). The
// parts must share their type and every dimension but the outermost (for 2-D
// tensors: the row length); 1-D parts are joined end to end. Throws
// kiln::Error(kFormat) naming a missing tensor, kInvalidArgument naming a
// part that does not fit. `f` must outlive the returned function.
ir::WeightSource weight_source(const File& f);

// The tensor names of a weight source: "a+b+c" -> {a, b, c}; "a" -> {a}.
std::vector<std::string> split_weight_source(const std::string& source);

}  // namespace kiln::gguf
