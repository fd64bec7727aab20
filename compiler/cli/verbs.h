// Each `kiln` verb lives in its own file and registers itself on the app.
// The plan-side verbs (run, bench, inspect of a plan) live with the runtime,
// shared with `kiln-run`: runtime/cli/cli.h.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

namespace kiln::cli {
// What `kiln supported` prints (verb_supported.cpp).
std::string supported_text();
void register_inspect(CLI::App& app);   // verb_inspect.cpp
void register_generate(CLI::App& app);  // verb_generate.cpp
void register_synth(CLI::App& app);     // verb_synth.cpp
void register_tokenize(CLI::App& app);  // verb_tokenize.cpp
void register_compile(CLI::App& app);   // verb_compile.cpp
void register_verify(CLI::App& app);    // verb_verify.cpp
void register_supported(CLI::App& app); // verb_supported.cpp

// `kiln verify` found a step outside tolerance: main() exits with this status.
inline constexpr int kExitVerifyFailed = 4;
struct VerifyFailed {
  int status;
};
}  // namespace kiln::cli
