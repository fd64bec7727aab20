#include "compiler/tools/reference/generator.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "compiler/tokenizer/import.h"
#include "runtime/error.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kiln::gen {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The runtime throws its own error type; the compiler-side CLI reports kiln::Error.
[[noreturn]] void rethrow_rt(const rt::Error& e, ErrorCode code) { throw Error(code, e.what(), e.field()); }

}  // namespace

double GenerateResult::decode_tokens_per_s() const {
  const double n = ids.empty() ? 0.0 : static_cast<double>(ids.size() - 1);
  return decode_s > 0 ? n / decode_s : 0.0;
}

double GenerateResult::prefill_tokens_per_s() const {
  return prefill_s > 0 ? static_cast<double>(prompt_ids.size()) / prefill_s : 0.0;
}

Generator::Generator(const gguf::File& f, GenerateOptions opt) : opt_(opt) {
  if (opt_.max_new_tokens <= 0)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--max-tokens must be at least 1, got {}", opt_.max_new_tokens), "max_tokens");
  if (opt_.ctx < 0)
    throw Error(ErrorCode::kInvalidArgument, fmt::format("--ctx must be positive, got {}", opt_.ctx), "ctx");
  Sampler check(opt_.sampling);  // validates sampling options before the heavy work
  (void)check;
  try {
    tok_ = std::make_unique<rt::Tokenizer>(tokenizer::import_vocab(f));
  } catch (const rt::Error& e) {
    rethrow_rt(e, ErrorCode::kFormat);
  }
  const auto cfg = frontend::read_config(f);
  if (tok_->n_vocab() > cfg.vocab)
    throw Error(ErrorCode::kFormat,
                fmt::format("the tokenizer has {} tokens but the model's vocabulary is {}", tok_->n_vocab(),
                            cfg.vocab),
                "tokenizer.ggml.tokens");
  if (opt_.ctx == 0) opt_.ctx = std::min(cfg.context_length, GenerateOptions::kDefaultCtx);
  runner_ = std::make_unique<ModelRunner>(f, opt_.ctx, opt_.chunk);
}

Generator::~Generator() = default;

std::vector<int32_t> Generator::tokenize_prompt(std::string_view prompt) const {
  try {
    if (opt_.chat) {
      const rt::ChatTemplate t = rt::chat_template_from_vocab(tok_->vocab());
      const std::vector<rt::ChatMessage> msgs{{"user", std::string(prompt)}};
      // The template writes BOS itself where the model wants it.
      return tok_->encode(rt::apply_chat_template(t, msgs, /*add_generation_prompt=*/true),
                          /*add_special=*/false, /*parse_special=*/true);
    }
    return tok_->encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  } catch (const rt::Error& e) {
    rethrow_rt(e, e.code() == rt::ErrorCode::kUnsupported ? ErrorCode::kUnsupported : ErrorCode::kInvalidArgument);
  }
}

GenerateResult Generator::generate(std::string_view prompt, const std::function<void(std::string_view)>& on_text) {
  return generate_ids(tokenize_prompt(prompt), on_text);
}

GenerateResult Generator::generate_ids(std::vector<int32_t> prompt_ids,
                                       const std::function<void(std::string_view)>& on_text) {
  GenerateResult r;
  if (prompt_ids.empty())
    throw Error(ErrorCode::kInvalidArgument, "the prompt is empty (no tokens): pass some text with -p", "prompt");
  const int64_t n_prompt = static_cast<int64_t>(prompt_ids.size());
  if (n_prompt > runner_->context())
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("the prompt is {} tokens but the context is {} tokens: pass --ctx {} or more "
                            "(the model allows up to {}), or shorten the prompt",
                            n_prompt, runner_->context(), std::min(n_prompt + opt_.max_new_tokens,
                                                                   runner_->config().context_length),
                            runner_->config().context_length),
                "ctx");
  r.prompt_ids = std::move(prompt_ids);
  Sampler sampler(opt_.sampling);
  rt::StreamDecoder stream(*tok_, /*skip_special=*/true);
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    r.text += s;
    if (on_text) on_text(s);
  };

  runner_->reset();
  auto t0 = Clock::now();
  std::vector<float> logits = runner_->feed(r.prompt_ids);
  r.prefill_s = seconds_since(t0);

  t0 = Clock::now();
  for (;;) {
    const int32_t id = sampler.sample(logits.data(), static_cast<int64_t>(logits.size()));
    r.ids.push_back(id);
    if (id < tok_->n_vocab() && tok_->is_eog(id)) {
      r.stop_reason = "eog";
      break;
    }
    if (id < tok_->n_vocab()) {
      try {
        emit(stream.push(id));
      } catch (const rt::Error& e) {
        rethrow_rt(e, ErrorCode::kInternal);
      }
    }
    if (static_cast<int64_t>(r.ids.size()) >= opt_.max_new_tokens) {
      r.stop_reason = "max_tokens";
      break;
    }
    if (runner_->position() >= runner_->context()) {
      r.stop_reason = "context";
      break;
    }
    if (opt_.stop && opt_.stop()) {
      r.stop_reason = "interrupted";
      break;
    }
    logits = runner_->feed(std::vector<int32_t>{id});
  }
  r.decode_s = seconds_since(t0);
  emit(stream.flush());
  return r;
}

}  // namespace kiln::gen
