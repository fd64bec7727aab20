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

namespace kiln::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  bool reference = false;
  bool chat = false;
  bool quiet = false;
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
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt (CPU reference interpreter with --reference)");
  sub->add_option("model", a->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  sub->add_option("-p,--prompt", a->prompt, "Prompt text")->required();
  sub->add_flag("--reference", a->reference, "Run on the CPU with the IR reference interpreter");
  sub->add_option("-n,--max-tokens", a->opt.max_new_tokens, "Maximum tokens to generate")
      ->default_val(64)
      ->check(CLI::PositiveNumber);
  sub->add_option("--temp", a->opt.sampling.temperature, "Sampling temperature (0 = greedy)")
      ->default_val(0.0)
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--top-k", a->opt.sampling.top_k, "Keep only the K most likely tokens (0 = all)")
      ->default_val(0)
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--top-p", a->opt.sampling.top_p, "Nucleus sampling mass in (0, 1] (1 = off)")
      ->default_val(1.0)
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--seed", a->opt.sampling.seed, "Seed of the sampler's SplitMix64 generator")->default_val(0);
  sub->add_flag("--chat", a->chat, "Wrap the prompt as a user turn of the model's chat template");
  sub->add_option("--ctx", a->opt.ctx, "Context length (KV cache rows); default min(model context, 2048)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--chunk", a->opt.chunk, "Prefill chunk size in tokens")->default_val(256)->check(CLI::PositiveNumber);
  sub->add_flag("-q,--quiet", a->quiet, "Do not print timing to stderr");
  sub->callback([a] { run_generate(*a); });
}

}  // namespace kiln::cli
