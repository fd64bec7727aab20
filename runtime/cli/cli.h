// The plan-side verbs of the command line (`run`, `bench`, `inspect` of a
// plan), shared by `kiln` (the full CLI, compiler/cli/) and `kiln-run` (the
// runtime-only binary a deployment ships, runtime/cli/main.cpp). Like the rest
// of the runtime this includes nothing of compiler/, codegen/ or ir/, and links
// neither NVRTC nor cuBLAS (`bench` loads libcublas at run time, if present,
// only to measure the tensor-core roofline).
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "runtime/error.h"

namespace kiln::rt::cli {

// Each adds its subcommand to `app`; help examples name the program as
// app.get_name() ("kiln" or "kiln-run").
void register_run(CLI::App& app);           // verb_run.cpp
void register_bench(CLI::App& app);         // verb_bench.cpp
void register_inspect_plan(CLI::App& app);  // verb_inspect_plan.cpp: `inspect` of plans only (kiln-run)

// True when `path` starts with the plan header's magic ("KILNPLAN").
bool is_plan_file(const std::string& path);
// Loads and verifies the plan and prints rt::describe(); with `all_launches`
// also every launch of every program. `kiln inspect x.plan` and
// `kiln-run inspect x.plan` both print this.
void inspect_plan(const std::string& path, bool all_launches);

// The process exit status for a runtime error: 3 for no GPU or a device /
// CUDA error, 2 for an internal error, 4 for a failed check (--check-finite),
// 1 for everything else (bad input).
inline int exit_status(const rt::Error& e) {
  switch (e.code()) {
    case ErrorCode::kDevice: case ErrorCode::kCuda: return 3;
    case ErrorCode::kInternal: return 2;
    case ErrorCode::kCheckFailed: return 4;
    default: return 1;
  }
}

// "kiln run --help" for the verb the command line named (or "kiln --help").
inline std::string usage_hint(CLI::App& app) {
  for (const CLI::App* s : app.get_subcommands()) return app.get_name() + " " + s->get_name() + " --help";
  return app.get_name() + " --help";
}

// The one-line message for a command line the parser refused; an unknown verb
// is named, with the verbs there are.
inline std::string parse_error_message(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  std::string msg = e.what();
  if (app.get_subcommands().empty() && argc > 1 && argv[1][0] != '-') {
    msg = "'" + std::string(argv[1]) + "' is not a verb of " + app.get_name() + ": use one of";
    for (const CLI::App* s : app.get_subcommands({})) msg += " " + s->get_name();
  }
  return msg + " (see `" + usage_hint(app) + "`)";
}

}  // namespace kiln::rt::cli
