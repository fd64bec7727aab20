// Text generation on the CPU reference interpreter (`kiln generate --reference`):
// tokenize (optionally through the model's chat template), prefill the prompt
// in chunks, then decode token by token with a Sampler, streaming complete
// UTF-8 text as it is produced.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compiler/tools/reference/model_runner.h"
#include "compiler/tools/reference/sampler.h"
#include "compiler/gguf/gguf.h"

namespace kiln::rt {
class Tokenizer;
}

namespace kiln::gen {

struct GenerateOptions {
  int64_t max_new_tokens = 64;  // stop after this many generated tokens
  int64_t ctx = 0;              // KV length; 0 = min(model context, kDefaultCtx)
  int64_t chunk = 256;          // prefill chunk (graph bound of "tokens")
  bool chat = false;            // wrap the prompt as one user turn of the chat template
  SamplerOptions sampling;
  // Polled before each decode step; true stops generation (stop_reason
  // "interrupted"). `kiln generate` stops on Ctrl-C with it.
  std::function<bool()> stop;
  static constexpr int64_t kDefaultCtx = 2048;
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> ids;     // generated ids (including a final end-of-generation id)
  std::string text;             // generated text (end-of-generation tokens not rendered)
  std::string stop_reason;      // "eog", "max_tokens", "context" or "interrupted"
  double prefill_s = 0, decode_s = 0;
  // Decode speed: tokens sampled after the first, over the time spent making them.
  double decode_tokens_per_s() const;
  double prefill_tokens_per_s() const;
};

class Generator {
 public:
  // The file must outlive the generator. Throws kiln::Error (unsupported
  // model, bad options, tokenizer problems).
  Generator(const gguf::File& f, GenerateOptions opt);
  ~Generator();

  // The ids the prompt is run as: chat-templated if opt.chat, special-token
  // text parsed, BOS as the vocabulary asks.
  std::vector<int32_t> tokenize_prompt(std::string_view prompt) const;

  // Generates from a prompt. on_text receives each newly complete piece of
  // UTF-8 text as soon as it is available. Throws kiln::Error(kInvalidArgument)
  // naming both lengths if the prompt does not fit in the context.
  GenerateResult generate(std::string_view prompt, const std::function<void(std::string_view)>& on_text = {});
  GenerateResult generate_ids(std::vector<int32_t> prompt_ids,
                              const std::function<void(std::string_view)>& on_text = {});

  const rt::Tokenizer& tokenizer() const { return *tok_; }
  ModelRunner& runner() { return *runner_; }
  const GenerateOptions& options() const { return opt_; }

 private:
  GenerateOptions opt_;
  std::unique_ptr<rt::Tokenizer> tok_;
  std::unique_ptr<ModelRunner> runner_;
};

}  // namespace kiln::gen
