// `kiln generate --reference model.gguf -p "prompt"`: generates text on the CPU
// with the IR reference interpreter (the oracle the GPU path is checked
// against). GPU generation runs a compiled plan: `kiln run model.plan`.
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "compiler/cli/verbs.h"
#include "compiler/tools/reference/generator.h"
#include "compiler/gguf/gguf.h"
#include "ir/error.h"
#include "runtime/cli/args.h"
#include "runtime/cli/interrupt.h"

namespace kiln::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  bool reference = false;
  bool chat = false;
  bool quiet = false;
  std::string seed = "0";
  gen::GenerateOptions opt;
};

void run_generate(const GenerateArgs& a) {
  if (!a.reference)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("GPU generation runs a compiled plan: `kiln compile {} -o model.plan` then "
                            "`kiln run model.plan -p ...`. To generate on the CPU with the reference "
                            "interpreter (slow, exact), pass --reference.",
                            a.model),
                "reference");
  gguf::File f = gguf::File::open(a.model);
  gen::GenerateOptions opt = a.opt;
  opt.chat = a.chat;
  // Ctrl-C stops after the current token (runtime/cli/interrupt.h): what was
  // generated is printed, then the verb ends with status 130.
  rt::cli::InterruptGuard interrupt;
  opt.stop = [] { return rt::cli::InterruptGuard::requested(); };
  gen::Generator g(f, opt);
  auto res = g.generate(a.prompt, [](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!a.quiet) {
    std::fprintf(stderr,
                 "kiln: reference interpreter: prompt %zu tokens in %.2f s (%.1f tok/s), generated %zu tokens "
                 "in %.2f s (%.2f tok/s), stopped: %s\n",
                 res.prompt_ids.size(), res.prefill_s, res.prefill_tokens_per_s(), res.ids.size(), res.decode_s,
                 res.decode_tokens_per_s(), res.stop_reason.c_str());
    if (res.stop_reason == "context")
      std::fprintf(stderr, "kiln: the context (%lld tokens) is full: pass a larger --ctx to generate more\n",
                   static_cast<long long>(g.runner().context()));
  }
  if (res.stop_reason == "interrupted")
    throw rt::cli::Interrupted{"stopped after " + std::to_string(res.ids.size()) + " generated tokens"};
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt (CPU reference interpreter with --reference)");
  sub->add_option("model", a->model, "GGUF model file")->required();
  sub->add_option("-p,--prompt", a->prompt, "Prompt text")->required();
  sub->add_flag("--reference", a->reference, "Run on the CPU with the IR reference interpreter");
  sub->add_option("-n,--max-tokens", a->opt.max_new_tokens, "Maximum tokens to generate")
      ->default_val(64);
  sub->add_option("--temp", a->opt.sampling.temperature, "Sampling temperature (0 = greedy)")
      ->default_val(0.0);
  sub->add_option("--top-k", a->opt.sampling.top_k, "Keep only the K most likely tokens (0 = all)")
      ->default_val(0);
  sub->add_option("--top-p", a->opt.sampling.top_p, "Nucleus sampling mass in (0, 1] (1 = off)")
      ->default_val(1.0);
  sub->add_option("--seed", a->seed, "Seed of the sampler's SplitMix64 generator")->capture_default_str();
  sub->add_flag("--chat", a->chat, "Wrap the prompt as a user turn of the model's chat template");
  sub->add_option("--ctx", a->opt.ctx, "Context length (KV cache rows); default min(model context, 2048)");
  sub->add_option("--chunk", a->opt.chunk, "Prefill chunk size in tokens")->default_val(256);
  sub->add_flag("-q,--quiet", a->quiet, "Do not print timing to stderr");
  sub->callback([a, sub] {
    // Every value checked before any work (runtime/cli/args.h).
    using namespace rt::cli;
    check_input_file(a->model, "model");
    check_int("--max-tokens", a->opt.max_new_tokens, 1, kMaxTokensArg, "most tokens to generate");
    check_real("--temp", a->opt.sampling.temperature, 0, 100, false, "0 = greedy");
    check_int("--top-k", a->opt.sampling.top_k, 0, kMaxTokensArg, "0 = off");
    check_real("--top-p", a->opt.sampling.top_p, 0, 1, true, "1 = off");
    if (sub->count("--ctx")) check_int("--ctx", a->opt.ctx, 1, kMaxTokensArg, "KV-cache rows");
    check_int("--chunk", a->opt.chunk, 1, kMaxTokensArg, "prefill chunk in tokens");
    a->opt.sampling.seed = parse_u64("--seed", a->seed);
    run_generate(*a);
  });
}

}  // namespace kiln::cli
