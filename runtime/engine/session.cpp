#include "runtime/engine/session.h"

#include <algorithm>
#include <chrono>

namespace kiln::rt {

Session::Session(Engine& engine, const Tokenizer& tok, int32_t context_length)
    : engine_(engine), tok_(tok), ctx_(context_length) {}

std::vector<int32_t> Session::encode(std::string_view text) const { return tok_.encode(text, true, true); }

GenerateStats Session::generate(std::span<const int32_t> prompt, const GenerateOptions& opt,
                                const std::function<bool(int32_t, std::string_view)>& on_token) {
  using Clock = std::chrono::steady_clock;
  GenerateStats st;
  const int32_t n = static_cast<int32_t>(prompt.size());
  st.prompt_tokens = n;
  if (n == 0) throw Error(ErrorCode::kInvalidArgument, "the prompt is empty: give at least one token");
  if (n >= ctx_)
    throw Error(ErrorCode::kInvalidArgument,
                "the prompt has " + std::to_string(n) + " tokens but the plan was compiled for a context of " +
                    std::to_string(ctx_) + " (room is needed for at least one generated token): shorten the prompt or "
                    "recompile with a larger --ctx",
                "prompt");
  if (!engine_.has_mode(opt.mode))
    throw Error(ErrorCode::kInvalidArgument,
                std::string("this plan has no ") + (opt.mode == ProgramMode::Eager ? "eager" : "compiled") +
                    " programs: recompile without --no-eager");
  for (int32_t id : prompt)
    if (id < 0 || id >= tok_.n_vocab())
      throw Error(ErrorCode::kInvalidArgument, "prompt token id " + std::to_string(id) + " is outside the vocabulary");

  engine_.reset();
  StreamDecoder dec(tok_);

  // Prefill in chunks; the token sampled after the last chunk is the first output.
  auto t0 = Clock::now();
  float gpu = 0;
  int32_t next = engine_.prefill(opt.mode, prompt, opt.sampling, &gpu);
  int32_t pos = n;
  st.prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
  st.prefill_gpu_ms = gpu;

  // Decode: each step feeds the token the previous step sampled (already on
  // the GPU). Pipelined, up to Engine::kMaxInFlight steps are queued ahead;
  // one is queued only where the loop below would run it unless the token
  // before it ends the generation (end-of-generation or the caller), and the
  // steps queued past such a token are waited for and dropped.
  // Eager programs are not queued ahead: the host takes about as long to
  // launch their kernels one by one as the GPU takes to run them, so a step
  // queued ahead gains nothing and doubles the first token's interval.
  const bool pipeline = opt.pipeline && opt.mode == ProgramMode::Compiled;
  int32_t queued = pos;  // the position the next queued step feeds
  auto may_queue = [&](int32_t q) { return q < ctx_ && q - n + 2 <= opt.max_new_tokens; };
  auto top_up = [&](int32_t depth) {
    while (pipeline && engine_.decode_pending() < depth && may_queue(queued))
      engine_.decode_submit(opt.mode, queued++, opt.sampling);
  };
  struct Drain {  // whatever ends the loop, nothing stays queued on the engine
    Engine& e;
    ~Drain() {
      try {
        if (e.decode_pending()) e.decode_discard();
      } catch (...) {  // a failing device surfaces again at the next step
      }
    }
  } drain{engine_};
  auto last = Clock::now();
  // One step is queued at a time, just before waiting for the one ahead of
  // it: the host enqueues step k + 1 while the GPU runs step k.
  top_up(1);
  st.stop_reason = "max_tokens";
  while (true) {
    ++st.generated;
    const bool eog = tok_.is_eog(next);
    std::string text = eog ? std::string() : dec.push(next);
    if (eog && opt.stop_at_eog) {
      st.stop_reason = "eog";
      on_token(next, dec.flush());
      break;
    }
    if (!on_token(next, text)) {
      st.stop_reason = "caller";
      break;
    }
    if (st.generated >= opt.max_new_tokens) break;
    if (pos >= ctx_) {
      st.hit_context_limit = true;
      st.stop_reason = "context";
      break;
    }
    if (pipeline) {
      top_up(Engine::kMaxInFlight);
      next = engine_.decode_collect();
    } else {
      next = engine_.decode_next(opt.mode, pos, opt.sampling);
    }
    const auto now = Clock::now();
    st.decode_ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
    last = now;
    st.decode_gpu_ms.push_back(engine_.last_step_gpu_ms());
    ++pos;
  }
  if (engine_.decode_pending()) engine_.decode_discard();
  if (st.stop_reason != "eog") {
    std::string rest = dec.flush();
    if (!rest.empty()) on_token(-1, rest);
  }
  return st;
}

}  // namespace kiln::rt
