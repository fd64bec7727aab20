// kiln compile: GGUF model -> plan for one GPU architecture. Needs no GPU.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "codegen/codegen.h"
#include "compiler/cli/verbs.h"
#include "compiler/compile/compile.h"
#include "compiler/compile/lowering.h"
#include "ir/error.h"
#include "runtime/cli/args.h"

namespace kiln::cli {
namespace {

// This process's command line (recorded in the plan): argv[0] as its base
// name, arguments shell-quoted where needed. Empty when /proc is not there.
std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), {});
  std::string out;
  size_t start = 0;
  for (bool first = true; start < raw.size(); first = false) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    std::string arg = raw.substr(start, end - start);
    start = end + 1;
    if (first) arg = std::filesystem::path(arg).filename().string();
    const bool plain = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("-_./,=:+@%").find(c) != std::string_view::npos;
    });
    if (!plain) {
      std::string q = "'";
      for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      arg = q + "'";
    }
    out += (out.empty() ? "" : " ") + arg;
  }
  return out;
}

struct Args {
  std::string model, out, target = "sm_90", cache_dir, weight_layout = codegen::kLayoutPlanes, kv_type = "f16";
  int64_t ctx = 0, max_tokens = compile::kDefaultMaxTokens;
  std::vector<int64_t> buckets;
  bool no_eager = false, no_cache = false, quiet = false, list_passes = false, no_pdl = false;
  std::vector<std::string> dump_after, disable;
  int jobs = 0;
};

// Every value checked before any work (runtime/cli/args.h).
void check_args(const CLI::App& cmd, const Args& a) {
  using namespace rt::cli;
  check_input_file(a.model, "model");
  if (!a.out.empty()) check_output_file("--output", a.out);
  const bool ctx_given = cmd.count("--ctx") > 0;
  if (ctx_given) check_int("--ctx", a.ctx, 1, kMaxTokensArg, "KV-cache rows");
  if (ctx_given && cmd.count("--max-tokens"))
    check_int("--max-tokens", a.max_tokens, 1, a.ctx, "largest prefill chunk, at most --ctx");
  else
    check_int("--max-tokens", a.max_tokens, 1, kMaxTokensArg, "largest prefill chunk in tokens");
  // Chunks above --max-tokens (clipped to --ctx) would never run.
  const int64_t max_chunk = ctx_given ? std::min(a.max_tokens, a.ctx) : a.max_tokens;
  for (int64_t b : a.buckets)
    check_int("--buckets", b, 2, max_chunk,
              "each prefill chunk size at least 2 (one token runs the decode program) and at most --max-tokens");
  check_int("--jobs", a.jobs, 0, 4096, "parallel NVRTC compiles, 0 = all cores");
  if (!a.cache_dir.empty()) {
    struct stat st {};
    if (::stat(a.cache_dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      throw rt::Error(rt::ErrorCode::kInvalidArgument, "--kernel-cache '" + a.cache_dir + "' is not a directory",
                      "--kernel-cache");
  }
}

}  // namespace

void register_compile(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compile",
      "Compile a GGUF model into a plan for one GPU architecture (no GPU needed).\n"
      "Example: kiln compile model.gguf --target sm_90 -o model.plan");
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "GGUF model file");
  cmd->add_option("-o,--output", a->out, "plan file to write (default: <model>.<target>.plan)");
  cmd->add_option("--target", a->target,
                  "GPU architecture: sm_75, sm_80, sm_86, sm_89, sm_90, or 'native' (the local GPU)")
      ->capture_default_str();
  cmd->add_option("--weight-layout", a->weight_layout,
                  "how matmul-family weights are stored: " + fmt::format("{}", fmt::join(codegen::weight_layouts(), ", ")) +
                      " (planes: each row's quants as one aligned run, then its scales, where the type and "
                      "row length allow; else ggml, the GGUF blocks)")
      ->capture_default_str();
  cmd->add_option("--kv-type", a->kv_type,
                  "KV-cache dtype: " + fmt::format("{}", fmt::join(compile::kv_types(), ", ")) +
                      " (f16 halves the f32 cache's memory and the bytes decode attention reads)")
      ->capture_default_str();
  cmd->add_option("--ctx", a->ctx, "context length to compile for (KV-cache rows; default min(2048, model's))");
  cmd->add_option("--max-tokens", a->max_tokens, "largest prefill chunk in tokens")->capture_default_str();
  cmd->add_option("--buckets", a->buckets, "prefill chunk sizes (default 16 64 <max-tokens>)")->delimiter(',');
  cmd->add_flag("--no-eager", a->no_eager, "leave out the eager (unfused, per-op) programs that `kiln bench` compares with");
  cmd->add_flag("--no-pdl", a->no_pdl,
                "launch compiled kernels without programmatic dependent launch (sm_90+: each kernel's launch "
                "otherwise overlaps the end of the one before)");
  cmd->add_option("--dump-after", a->dump_after, "print the IR after this pass ('all' for every pass)")->delimiter(',');
  cmd->add_option("--disable-pass", a->disable, "skip this pass")->delimiter(',');
  cmd->add_flag("--list-passes", a->list_passes, "list the passes of the pipeline and exit");
  cmd->add_option("--kernel-cache", a->cache_dir, "NVRTC kernel cache folder (default ~/.cache/kiln/kernels)");
  cmd->add_flag("--no-kernel-cache", a->no_cache, "always run NVRTC");
  cmd->add_option("-j,--jobs", a->jobs, "parallel NVRTC compiles (default: all cores)");
  cmd->add_flag("-q,--quiet", a->quiet, "print only errors");
  cmd->callback([a, cmd] {
    if (a->list_passes) {
      auto list = [](const char* what, const std::vector<passes::Pass>& ps) {
        std::printf("%s\n", what);
        for (const auto& p : ps) std::printf("  %-22s %s\n", p.name.c_str(), p.summary.c_str());
      };
      list("every compiled program:", passes::default_pipeline());
      list("then the prefill programs:", passes::prefill_pipeline());
      list("then the decode program:", passes::decode_pipeline());
      return;
    }
    if (a->model.empty()) throw CLI::RequiredError("model");
    check_args(*cmd, *a);
    const auto& layouts = codegen::weight_layouts();
    if (std::find(layouts.begin(), layouts.end(), a->weight_layout) == layouts.end())
      throw Error(ErrorCode::kInvalidArgument, fmt::format("--weight-layout '{}' is not a weight layout: use one of {}",
                                                           a->weight_layout, fmt::join(layouts, ", ")));
    compile::CompileOptions o;
    o.model_path = a->model;
    o.sm = compile::resolve_target(a->target);
    o.weight_layout = a->weight_layout;
    o.kv_type = a->kv_type;
    o.command_line = command_line();
    o.out_path = a->out;
    if (o.out_path.empty())
      o.out_path = std::filesystem::path(a->model).replace_extension("").string() + ".sm_" + std::to_string(o.sm) + ".plan";
    o.ctx = a->ctx;
    o.max_tokens = cmd->count("--max-tokens") ? a->max_tokens : 0;  // 0: the default, clipped to ctx
    o.prefill_buckets = a->buckets;
    o.eager = !a->no_eager;
    o.pdl = !a->no_pdl;
    o.cache_dir = a->no_cache ? "-" : a->cache_dir;
    o.jobs = a->jobs;
    o.pipeline.dump_after = a->dump_after;
    o.pipeline.disable = a->disable;
    if (!a->quiet) {
      // The heading comes with the first stage done, so a model or option the
      // first stage refuses ends in the error line alone.
      const std::string heading = "kiln compile " + a->model + " -> " + o.out_path + " (sm_" + std::to_string(o.sm) + ")";
      o.progress = [heading, first = true](const std::string& line) mutable {
        if (first) std::fprintf(stderr, "%s\n", heading.c_str());
        first = false;
        std::fprintf(stderr, "  %s\n", line.c_str());
      };
    }
    auto rep = compile::compile_model(o);
    if (!a->quiet && rep.kv_ring_saved_bytes)
      std::fprintf(stderr, "KV cache: %.1f MiB; full caches would be %.1f MiB (sliding-window rings save %.1f MiB)\n",
                   rep.kv_bytes / 1048576.0, (rep.kv_bytes + rep.kv_ring_saved_bytes) / 1048576.0,
                   rep.kv_ring_saved_bytes / 1048576.0);
    if (!a->quiet)
      std::fprintf(stderr,
                   "done in %.2f s: %zu kernels, plan %.1f MiB (weights %.1f MiB, arena %.1f MiB incl. KV %.1f MiB)\n"
                   "decode step: %zu kernel launches compiled vs %zu eager\n"
                   "peak memory: anonymous %.1f MiB (RssAnon sampled every 10 ms; largest weight blob %.1f MiB), "
                   "resident %.1f MiB (VmHWM, incl. the pages of the mapped model and plan)\n"
                   "next: kiln run %s -p \"Hello\"\n",
                   rep.total_seconds, rep.n_kernels, rep.plan_bytes / 1048576.0, rep.weights_bytes / 1048576.0,
                   rep.arena_bytes / 1048576.0, rep.kv_bytes / 1048576.0, rep.n_launches_compiled_decode,
                   rep.n_launches_eager_decode, rep.peak_anon_bytes / 1048576.0, rep.largest_blob_bytes / 1048576.0,
                   rep.peak_rss_bytes / 1048576.0, o.out_path.c_str());
  });
}

}  // namespace kiln::cli
