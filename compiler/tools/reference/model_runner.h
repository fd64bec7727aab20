// Runs a GGUF model step by step on the CPU reference interpreter:
// frontend -> ir::Graph -> ir::Interpreter, keeping track of the KV position.
// This is the model half of `kiln generate --reference` (no tokenizer), so
// end-to-end tests can feed token ids directly.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "compiler/frontend/frontend.h"
#include "compiler/gguf/gguf.h"
#include "ir/graph.h"
#include "ir/interpreter.h"

namespace kiln::gen {

// WeightSource over the tensors of a GGUF file (which must outlive it).
ir::WeightSource gguf_weights(const gguf::File& f);

class ModelRunner {
 public:
  // Builds the graph with max_tokens = chunk (prefill chunk) and max_context = ctx.
  // Throws kiln::Error if ctx exceeds the model's context length.
  // tensor_core_prefill: model the compiled plan exactly: steps of more than
  // one token run the graph of the compiled prefill programs (the default
  // passes, then tensor-core-gemm: f16/bf16 GEMM operands rounded where the
  // GPU rounds them), one-token steps the graph of the compiled decode program
  // (the default passes, then q8-activations: int8 activations where the GPU
  // quantises them), on one shared KV cache.
  // kv_type: the KV cache's dtype (kiln compile --kv-type; the compile default is
  // f16): stored rows are rounded to it, as the GPU rounds them.
  // disabled_passes: the passes the plan was compiled without (kiln compile
  // --disable-pass), left out of the compiled graphs here too.
  ModelRunner(const gguf::File& f, int64_t ctx, int64_t chunk = 128, bool tensor_core_prefill = false,
              ir::DType kv_type = ir::DType::F32, const std::vector<std::string>& disabled_passes = {});

  // Appends ids at the current position (in chunks of at most `chunk`
  // tokens) and returns the logits of the last one ([vocab]). Throws
  // kiln::Error(kInvalidArgument) naming both lengths if the context would overflow.
  std::vector<float> feed(std::span<const int32_t> ids);
  // Forgets the sequence (position back to 0, KV cache cleared).
  void reset();

  int64_t position() const { return pos_; }
  int64_t context() const { return ctx_; }
  int64_t vocab() const { return cfg_.vocab; }
  const frontend::ModelConfig& config() const { return cfg_; }
  const ir::Graph& graph() const { return graph_; }

 private:
  frontend::ModelConfig cfg_;
  ir::Graph graph_;
  std::unique_ptr<ir::Interpreter> interp_;
  ir::Graph prefill_graph_;
  std::unique_ptr<ir::Interpreter> prefill_;  // null unless tensor_core_prefill
  ir::Graph decode_graph_;
  std::unique_ptr<ir::Interpreter> decode_;  // null unless tensor_core_prefill
  int64_t ctx_, chunk_, pos_ = 0;
};

}  // namespace kiln::gen
