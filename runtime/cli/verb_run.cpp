// `run`: load a plan on the GPU and generate text (streaming).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>

#include "runtime/cli/args.h"
#include "runtime/cli/cli.h"
#include "runtime/cli/interrupt.h"
#include "runtime/kiln_runtime.h"

namespace kiln::rt::cli {

namespace {
struct RunArgs {
  std::string plan, prompt, system;
  int32_t n = 128;
  float temp = 0.f, top_p = 1.f;
  int32_t top_k = 0;
  std::string seed = "0";
  bool chat = false, eager = false, allow_ptx = false, stats = false, check_finite = false;
  int device = 0;
};

void print_stats(const rt::GenerateStats& st) {
  std::vector<double> d = st.decode_ms;
  std::sort(d.begin(), d.end());
  double p50 = d.empty() ? 0 : d[d.size() / 2];
  std::fprintf(stderr, "\n[%d prompt tokens, %d generated; prefill %.1f ms (%.0f tok/s), decode p50 %.2f ms/token (%.0f tok/s); stop: %s]\n",
               st.prompt_tokens, st.generated, st.prefill_s * 1e3, st.prompt_tokens / std::max(1e-9, st.prefill_s), p50,
               p50 > 0 ? 1e3 / p50 : 0.0, st.stop_reason.c_str());
}
}  // namespace

void register_run(CLI::App& app) {
  const std::string prog = app.get_name();
  auto* cmd = app.add_subcommand("run",
                                 "Load a compiled plan on the GPU and generate text.\n"
                                 "Example: " + prog + " run model.plan -p \"The capital of France is\"\n"
                                 "         " + prog + " run model.plan --chat        (interactive, uses the model's chat template)");
  auto a = std::make_shared<RunArgs>();
  // No CLI::ExistingFile: a missing plan is the runtime's kIo error (exit 1, names the fix).
  cmd->add_option("plan", a->plan, "plan file from `kiln compile`")->required();
  cmd->add_option("-p,--prompt", a->prompt, "prompt text (with --chat: the first user message)");
  cmd->add_flag("--chat", a->chat, "chat: wrap messages in the model's chat template; interactive without -p");
  cmd->add_option("--system", a->system, "system message for --chat (default: the template's own, if any)");
  cmd->add_option("-n,--max-tokens", a->n, "most tokens to generate")->capture_default_str();
  cmd->add_option("--temp", a->temp, "sampling temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", a->top_k, "keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", a->top_p, "nucleus sampling mass (1 = off)")->capture_default_str();
  cmd->add_option("--seed", a->seed, "sampling seed")->capture_default_str();
  cmd->add_flag("--eager", a->eager, "run the eager programs (one kernel per op, no graphs) instead of the compiled ones");
  cmd->add_option("--device", a->device, "CUDA device index")->capture_default_str();
  cmd->add_flag("--allow-ptx-jit", a->allow_ptx, "run a plan built for an older SM by JIT-compiling its PTX");
  cmd->add_flag("--check-finite", a->check_finite,
                "debug: run kernel by kernel (no graphs) and stop at the first that writes a NaN or Inf, naming its "
                "IR op, layer and inputs (exit status 4); slow");
  cmd->add_flag("--stats", a->stats, "print timing after each answer");
  cmd->callback([a] {
    check_input_file(a->plan, "plan");
    check_int("--max-tokens", a->n, 1, kMaxTokensArg, "most tokens to generate");
    check_real("--temp", a->temp, 0, 100, false, "0 = greedy");
    check_int("--top-k", a->top_k, 0, kMaxTokensArg, "0 = off");
    check_real("--top-p", a->top_p, 0, 1, true, "1 = off");
    check_device("--device", a->device);
    const uint64_t seed = parse_u64("--seed", a->seed);
    rt::EngineOptions eo;
    eo.device = a->device;
    eo.allow_ptx_jit = a->allow_ptx;
    eo.check_finite = a->check_finite;
    auto model = rt::Model::load(a->plan, eo);
    rt::Session session = model->session();
    rt::GenerateOptions go;
    go.max_new_tokens = a->n;
    go.sampling = {a->temp, a->top_k, a->top_p, seed};
    go.mode = a->eager ? rt::ProgramMode::Eager : rt::ProgramMode::Compiled;
    // Ctrl-C stops generating after the current token (interrupt.h): what was
    // generated is printed, then the verb ends with status 130.
    InterruptGuard interrupt;
    int32_t generated = 0;
    auto stream = [&generated](int32_t id, std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      if (id >= 0) ++generated;
      return !InterruptGuard::requested();
    };
    auto stop_if_interrupted = [&] {
      if (InterruptGuard::requested())
        throw Interrupted{"stopped after " + std::to_string(generated) + " generated tokens"};
    };
    if (!a->chat) {
      if (a->prompt.empty()) throw rt::Error(rt::ErrorCode::kInvalidArgument, "give a prompt with -p, or use --chat");
      auto ids = session.encode(a->prompt);
      // Echo the prompt once generation has started (a prompt that does not fit is an error, not output).
      bool echoed = false;
      auto st = session.generate(ids, go, [&](int32_t id, std::string_view text) {
        if (!echoed) {
          std::fwrite(a->prompt.data(), 1, a->prompt.size(), stdout);
          echoed = true;
        }
        return stream(id, text);
      });
      std::printf("\n");
      if (a->stats) print_stats(st);
      stop_if_interrupted();
      return;
    }
    const auto& tmpl = model->chat_template();
    if (tmpl.family == rt::ChatFamily::kUnknown)
      throw rt::Error(rt::ErrorCode::kUnsupported,
                      "this model has no chat template kiln recognises (ChatML, Llama 3, Gemma): use -p with your own formatting");
    std::vector<rt::ChatMessage> msgs;
    if (!a->system.empty()) msgs.push_back({"system", a->system});
    auto turn = [&](const std::string& user) {
      msgs.push_back({"user", user});
      std::string text = rt::apply_chat_template(tmpl, msgs, true);
      auto ids = model->tokenizer().encode(text, false, true);
      std::string reply;
      auto st = session.generate(ids, go, [&](int32_t id, std::string_view t) {
        reply += t;
        return stream(id, t);
      });
      std::printf("\n");
      msgs.push_back({"assistant", reply});
      if (a->stats) print_stats(st);
      stop_if_interrupted();
    };
    if (!a->prompt.empty()) {
      turn(a->prompt);
      return;
    }
    std::fprintf(stderr, "chat with %s (%s template); an empty line or Ctrl-D ends\n",
                 model->plan().model().name() ? model->plan().model().name()->c_str() : "model",
                 rt::chat_family_name(tmpl.family));
    std::string line;
    while (true) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line) || line.empty()) break;
      turn(line);
    }
    stop_if_interrupted();  // Ctrl-C at the prompt
  });
}

}  // namespace kiln::rt::cli
