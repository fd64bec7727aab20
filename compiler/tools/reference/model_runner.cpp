#include "compiler/tools/reference/model_runner.h"

#include <algorithm>

#include <fmt/format.h>

namespace kiln::gen {

ir::WeightSource gguf_weights(const gguf::File& f) {
  return [&f](const std::string& name) {
    const auto* t = f.find_tensor(name);
    if (!t) throw Error(ErrorCode::kFormat, fmt::format("tensor '{}' is missing from {}", name, f.path()), name);
    ir::WeightData w;
    w.dtype = t->type;
    w.shape.assign(t->ne.rbegin(), t->ne.rend());
    w.data = t->data;
    w.nbytes = t->n_bytes;
    return w;
  };
}

namespace {
frontend::GraphOptions graph_options(int64_t ctx, int64_t chunk) {
  frontend::GraphOptions o;
  o.max_context = ctx;
  o.max_tokens = std::min(chunk, ctx);
  return o;
}
}  // namespace

ModelRunner::ModelRunner(const gguf::File& f, int64_t ctx, int64_t chunk)
    : cfg_(frontend::read_config(f)), ctx_(ctx), chunk_(std::min(chunk, ctx)) {
  if (ctx <= 0 || chunk <= 0)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("context ({}) and prefill chunk ({}) must be positive", ctx, chunk), "ctx");
  if (ctx > cfg_.context_length)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--ctx {} exceeds the model's context length {}: pass --ctx {} or less", ctx,
                            cfg_.context_length, cfg_.context_length),
                "ctx");
  graph_ = frontend::build_graph(f, cfg_, graph_options(ctx_, chunk_));
  ir::verify(graph_);
  interp_ = std::make_unique<ir::Interpreter>(graph_, gguf_weights(f));
}

void ModelRunner::reset() {
  interp_->reset_state();
  pos_ = 0;
}

std::vector<float> ModelRunner::feed(std::span<const int32_t> ids) {
  if (ids.empty()) throw Error(ErrorCode::kInvalidArgument, "no tokens to run");
  if (pos_ + static_cast<int64_t>(ids.size()) > ctx_)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{} tokens do not fit in the context: {} already used of {} (prompt + "
                            "generated tokens must fit in --ctx); pass a larger --ctx (the model allows "
                            "up to {}) or a shorter prompt / fewer tokens",
                            ids.size(), pos_, ctx_, cfg_.context_length),
                "ctx");
  for (int32_t id : ids)
    if (id < 0 || id >= cfg_.vocab)
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("token id {} is outside the vocabulary [0, {})", id, cfg_.vocab), "tokens");
  std::vector<float> logits;
  for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(chunk_)) {
    const size_t n = std::min(ids.size() - start, static_cast<size_t>(chunk_));
    std::vector<int32_t> tok(ids.begin() + static_cast<std::ptrdiff_t>(start),
                             ids.begin() + static_cast<std::ptrdiff_t>(start + n));
    std::vector<int32_t> pos(n);
    for (size_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(pos_ + static_cast<int64_t>(i));
    auto out = interp_->run({{"tokens", ir::Tensor::from_i32(std::move(tok))},
                             {"positions", ir::Tensor::from_i32(std::move(pos))}});
    auto it = out.find("logits");
    if (it == out.end() || it->second.f32.size() != static_cast<size_t>(cfg_.vocab))
      throw Error(ErrorCode::kInternal, "interpreter did not return logits of the vocabulary size");
    logits = std::move(it->second.f32);
    pos_ += static_cast<int64_t>(n);
  }
  return logits;
}

}  // namespace kiln::gen
