// The plan-side verbs of the command line (`run`, `bench`, `inspect` of a
// plan), shared by `kiln` (the full CLI, compiler/cli/) and `kiln-run` (the
// runtime-only binary a deployment ships, runtime/cli/main.cpp). Like the rest
// of the runtime this includes nothing of compiler/, codegen/ or ir/, and links
// neither NVRTC nor cuBLAS (`bench` loads libcublas at run time, if present,
// only to measure the tensor-core roofline).
#pragma once
#include <string>

#include <CLI/CLI.hpp>

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

}  // namespace kiln::rt::cli
