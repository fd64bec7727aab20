#include "compiler/tools/reference/model_runner.h"

#include <algorithm>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "compiler/gguf/weight_source.h"
#include "compiler/passes/pipeline.h"

namespace kiln::gen {

ir::WeightSource gguf_weights(const gguf::File& f) {
  // Fused sources ("a+b+c", made by the passes) are their parts' rows joined,
  // matrices row-wise and vectors end to end, kept alive with the source.
  auto joined = std::make_shared<std::map<std::string, std::vector<uint8_t>>>();
  return [&f, joined](const std::string& name) {
    auto tensor = [&](const std::string& n) -> const gguf::TensorInfo& {
      const auto* t = f.find_tensor(n);
      if (!t) throw Error(ErrorCode::kFormat, fmt::format("tensor '{}' is missing from {}", n, f.path()), n);
      return *t;
    };
    const auto parts = gguf::split_weight_source(name);
    const gguf::TensorInfo& t0 = tensor(parts[0]);
    ir::WeightData w;
    w.dtype = t0.type;
    w.shape.assign(t0.ne.rbegin(), t0.ne.rend());
    w.data = t0.data;
    w.nbytes = t0.n_bytes;
    if (parts.size() == 1) return w;
    auto& bytes = (*joined)[name];
    int64_t lead = 0;
    if (bytes.empty())
      for (const auto& p : parts) {
        const auto& t = tensor(p);
        if (t.type != t0.type || t.ne.size() != t0.ne.size() || (t.ne.size() > 1 && t.ne[0] != t0.ne[0]))
          throw Error(ErrorCode::kFormat, "fused weight " + name + " mixes types or row lengths", name);
        bytes.insert(bytes.end(), t.data, t.data + t.n_bytes);
      }
    for (const auto& p : parts) lead += static_cast<int64_t>(tensor(p).ne.back());
    w.shape[0] = lead;  // outermost dim: rows (or elements of a vector) of every part
    w.data = bytes.data();
    w.nbytes = bytes.size();
    return w;
  };
}

namespace {
frontend::GraphOptions graph_options(int64_t ctx, int64_t chunk, ir::DType kv_type) {
  frontend::GraphOptions o;
  o.kv_type = kv_type;
  o.max_context = ctx;
  o.max_tokens = std::min(chunk, ctx);
  return o;
}
}  // namespace

ModelRunner::ModelRunner(const gguf::File& f, int64_t ctx, int64_t chunk, bool tensor_core_prefill, ir::DType kv_type,
                         const std::vector<std::string>& disabled_passes)
    : cfg_(frontend::read_config(f)), ctx_(ctx), chunk_(std::min(chunk, ctx)) {
  if (ctx <= 0 || chunk <= 0)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("context ({}) and prefill chunk ({}) must be positive", ctx, chunk), "ctx");
  if (ctx > cfg_.context_length)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--ctx {} exceeds the model's context length {}: pass --ctx {} or less", ctx,
                            cfg_.context_length, cfg_.context_length),
                "ctx");
  graph_ = frontend::build_graph(f, cfg_, graph_options(ctx_, chunk_, kv_type));
  ir::verify(graph_);
  interp_ = std::make_unique<ir::Interpreter>(graph_, gguf_weights(f));
  if (tensor_core_prefill) {
    passes::PipelineOptions opt;
    opt.disable = disabled_passes;
    const auto main = passes::default_pipeline(), prefill = passes::prefill_pipeline(),
               decode = passes::decode_pipeline();
    const ir::Graph fused = passes::run_pipeline(graph_, main, passes::options_for(opt, main));
    prefill_graph_ = passes::run_pipeline(fused, prefill, passes::options_for(opt, prefill));
    prefill_ = std::make_unique<ir::Interpreter>(prefill_graph_, gguf_weights(f));
    prefill_->share_states(*interp_);
    decode_graph_ = passes::run_pipeline(fused, decode, passes::options_for(opt, decode));
    decode_ = std::make_unique<ir::Interpreter>(decode_graph_, gguf_weights(f));
    decode_->share_states(*interp_);
    // the graphs read many of the same weights (norms, o, down, embeddings,
    // fused blobs): dequantise each once for all three
    prefill_->share_weights(*interp_);
    decode_->share_weights(*interp_);
  }
}

void ModelRunner::reset() {
  interp_->reset_state();
  if (prefill_) prefill_->share_states(*interp_);
  if (decode_) decode_->share_states(*interp_);
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
    ir::Interpreter& it_run = n > 1 ? (prefill_ ? *prefill_ : *interp_)  // as the engine picks programs
                                    : (decode_ ? *decode_ : *interp_);
    auto out = it_run.run({{"tokens", ir::Tensor::from_i32(std::move(tok))},
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
