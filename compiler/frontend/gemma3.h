// Gemma 3 frontend ("gemma3" GGUF models -> ir::Graph); the public entry
// points in frontend.h dispatch here. Internal to compiler/frontend.
#pragma once
#include <string>
#include <vector>

#include "compiler/frontend/frontend.h"

namespace kiln::frontend {

inline constexpr const char* kGemma3Arch = "gemma3";

ModelConfig read_gemma3_config(const gguf::File& f);
std::vector<std::string> gemma3_weight_problems(const gguf::File& f, const ModelConfig& c);
ir::Graph build_gemma3_graph(const gguf::File& f, const ModelConfig& c, const GraphOptions& opt);

}  // namespace kiln::frontend
