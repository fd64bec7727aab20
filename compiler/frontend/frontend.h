// Architecture frontends: GGUF hyper-parameters + tensors -> ir::Graph.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/gguf/gguf.h"
#include "ir/graph.h"

namespace kiln::frontend {

// Architectures (general.architecture) kiln can build a graph for.
const std::vector<std::string>& supported_architectures();

struct ModelConfig {
  std::string arch;            // "llama", "qwen2", ...
  std::string name;            // general.name
  int64_t n_layers = 0, hidden = 0, ffn = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t vocab = 0, context_length = 0;
  int64_t n_rot = 0;           // rotary dims (== head_dim for llama)
  double rope_theta = 10000.0, rms_eps = 1e-5;
  std::string rope_mode = "normal";  // "normal" (llama: adjacent pairs) or "neox" (halves)
  bool has_rope_freqs = false;       // Llama 3 rope_freqs.weight factors
  bool tied_embeddings = false;      // no output.weight: LM head reuses token_embd
  bool attn_bias = false;            // Qwen2-style q/k/v biases
};

// Reads and validates hyper-parameters. Throws kiln::Error(kUnsupported)
// naming the architecture and listing supported ones, or kFormat naming a
// missing/inconsistent key or tensor.
ModelConfig read_config(const gguf::File& f);

struct GraphOptions {
  int64_t max_tokens = 512;     // bound of symbolic dim "tokens" (prefill chunk)
  int64_t max_context = 2048;   // bound of "kv_len" (KV cache rows); <= context_length
  ir::DType kv_type = ir::DType::F32;  // KV-cache states' dtype (F32 | F16 | BF16; kiln compile --kv-type)
};

// One forward step: inputs "tokens" (i32[tokens]) and "positions" (i32[tokens]);
// output "logits" ([1, vocab], last token). KV caches are State values.
ir::Graph build_graph(const gguf::File& f, const ModelConfig& cfg, const GraphOptions& opt);

// Problems that would stop kiln compiling this model (unsupported arch,
// tensor types, missing tensors), one line each; empty = supported.
std::vector<std::string> support_problems(const gguf::File& f);

}  // namespace kiln::frontend
