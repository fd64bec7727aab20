// Session: one conversation over an Engine — tokenize, prefill in chunks,
// decode by graph replay, stream text, stop on any end-of-generation token.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kiln::rt {

struct GenerateOptions {
  int32_t max_new_tokens = 128;
  SamplingParams sampling;
  ProgramMode mode = ProgramMode::Compiled;
  bool stop_at_eog = true;
  // Queue the next decode step before the current one finishes
  // (Engine::decode_submit), so that the host's per-token work overlaps the
  // GPU's. A step queued past an end-of-generation token is dropped.
  // Compiled programs only (eager ones are host-bound: session.cpp).
  bool pipeline = true;
};

struct GenerateStats {
  int32_t prompt_tokens = 0, generated = 0;
  double prefill_s = 0;          // wall time of the prefill (incl. the first sample) = time to first token
  std::vector<double> decode_ms; // wall time between consecutive tokens (the first: since the prefill's)
  std::vector<float> decode_gpu_ms;  // CUDA-event time of each decode step
  float prefill_gpu_ms = 0;
  bool hit_context_limit = false;
  std::string stop_reason;       // "eog", "max_tokens", "context"
};

class Session {
 public:
  Session(Engine& engine, const Tokenizer& tok, int32_t context_length);

  // Prompt text -> ids (BOS rules of the vocab; special-token text parsed).
  std::vector<int32_t> encode(std::string_view text) const;

  // Generates after `prompt` (a fresh conversation: the KV cache starts empty).
  // `on_token(id, text)` gets each generated token and its streaming-safe text;
  // returning false stops generation. Throws rt::Error(kInvalidArgument) when
  // the prompt does not fit the compiled context.
  GenerateStats generate(std::span<const int32_t> prompt, const GenerateOptions& opt,
                         const std::function<bool(int32_t, std::string_view)>& on_token);

 private:
  Engine& engine_;
  const Tokenizer& tok_;
  int32_t ctx_;
};

}  // namespace kiln::rt
