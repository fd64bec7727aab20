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
  // Gemma 3 (compiler/frontend/gemma3.cpp); defaults mean "not used".
  int64_t sliding_window = 0;        // local layers' attention window in tokens; 0 = none
  std::vector<bool> layer_is_local;  // per layer: sliding-window (true) or global attention
  double rope_theta_local = 0;       // rope base of the sliding-window layers
  double rope_freq_scale = 1.0;      // global layers' linear rope scaling: 1 / rope.scaling.factor
  double attn_scale = 0;             // q.k scale; 0 = 1/sqrt(head_dim)
  double embed_scale = 1.0;          // token embeddings are multiplied by this (sqrt(hidden) in Gemma)
};

// Reads and validates hyper-parameters. Throws kiln::Error(kUnsupported)
// naming the architecture and listing supported ones, or kFormat naming a
// missing/inconsistent key or tensor.
ModelConfig read_config(const gguf::File& f);

// Rows of a sliding-window layer's KV cache: a ring of window + max_tokens - 1
// rows (position p in row p mod rows) keeps every key a prefill chunk of up to
// max_tokens tokens needs while the chunk's own rows overwrite the oldest ones;
// 0 when the full cache (max_context rows) is no larger, so no ring is used.
int64_t ring_rows(int64_t window, int64_t max_tokens, int64_t max_context);

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
