// `inspect` of a compiled plan: target, kernels, programs, arena, memory
// budget (rt::describe), and with --all-tensors every launch of every program.
// `kiln inspect` calls inspect_plan for plan files (and reads GGUF itself);
// `kiln-run inspect` reads plans only.
#include <cstdio>
#include <cstring>
#include <memory>

#include "runtime/cli/args.h"
#include "runtime/cli/cli.h"
#include "runtime/error.h"
#include "runtime/plan/describe.h"
#include "runtime/plan/plan.h"

namespace kiln::rt::cli {

namespace {
bool starts_with_magic(const std::string& path, const char (&magic)[5]) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) return false;
  char head[4] = {};
  size_t n = std::fread(head, 1, sizeof head, fp);
  std::fclose(fp);
  return n == sizeof head && std::memcmp(head, magic, 4) == 0;
}
}  // namespace

// A plan file starts with the plan header's magic; everything else is treated as GGUF.
bool is_plan_file(const std::string& path) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) return false;
  char magic[8] = {};
  size_t n = std::fread(magic, 1, sizeof magic, fp);
  std::fclose(fp);
  return n == sizeof magic && std::memcmp(magic, "KILNPLAN", 8) == 0;
}

void inspect_plan(const std::string& path, bool all_launches) {
  rt::Plan plan = rt::Plan::load(path);  // verified: header, hashes, flatbuffer, semantics
  std::fputs(rt::describe(plan).c_str(), stdout);
  if (all_launches) std::fputs(rt::describe_launches(plan).c_str(), stdout);
}

void register_inspect_plan(CLI::App& app) {
  struct Args {
    std::string path;
    bool all = false;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("inspect",
                                 "Show what is in a compiled plan (target, kernels, programs, arena, memory budget).\n"
                                 "Example: " + app.get_name() + " inspect model.plan");
  // No CLI::ExistingFile: a missing plan is the runtime's kIo error (exit 1, names the fix).
  sub->add_option("plan", a->path, "the .plan file")->required();
  sub->add_flag("--all-tensors", a->all, "also list every launch of every program");
  sub->callback([a, prog = app.get_name()] {
    check_input_file(a->path, "plan");
    if (!is_plan_file(a->path) && starts_with_magic(a->path, "GGUF"))
      throw rt::Error(rt::ErrorCode::kInvalidArgument,
                      a->path + " is a GGUF model, not a plan: compile it first with `kiln compile` (" + prog +
                          " reads plans only)");
    inspect_plan(a->path, a->all);
  });
}

}  // namespace kiln::rt::cli
