// Synthetic llama-architecture GGUF models: exact geometries of real models
// (or a tiny one), random but valid weights, complete llama + tokenizer
// metadata. Deterministic for a seed: the same options give the same bytes.
//
//   auto w = kiln::synth::build_model({.geometry = "tiny", .type = "q4_k", .seed = 1});
//   w.write("tiny.gguf");   // streams tensor by tensor
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/gguf/writer.h"
#include "compiler/tools/synth/vocab.h"
#include "ir/dtype.h"

namespace kiln::synth {

struct Geometry {
  std::string name;         // "tiny", "tiny-8k", "tiny-hd128", "tiny-hd256", "smollm2-135m", "llama-1b", "llama-8b"
  std::string model_name;   // general.name
  int64_t hidden, layers, heads, kv_heads, head_dim, ffn, vocab, context;
  bool tied;                // no output.weight: the LM head reuses token_embd
  float rope_theta;
  bool llama3_rope;         // rope_freqs.weight with Llama 3.1 frequency scaling
  float rms_eps;
  ChatStyle chat;
};

// Known geometries, in the order above.
const std::vector<Geometry>& geometries();
// Throws kiln::Error(kInvalidArgument) naming the valid choices.
const Geometry& find_geometry(const std::string& name);

// A weight type scheme: one type for every matmul weight and token_embd, or
// "q4_k_m", llama.cpp's mix. Names: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0
// q2_k q3_k q4_k q5_k q6_k q4_k_m.
std::vector<std::string> type_names();

struct SynthOptions {
  std::string geometry = "tiny";
  std::string type = "f16";
  uint64_t seed = 0;
  uint64_t alignment = gguf::Writer::kDefaultAlignment;
  // > 0: this many layers instead of the geometry's (same widths), e.g. to
  // separate a decode step's per-layer cost from its per-token cost.
  int64_t layers = 0;
};

// The geometry opt names, with opt.layers applied. Throws
// kiln::Error(kInvalidArgument) for an unknown name or layers < 0.
Geometry resolve_geometry(const SynthOptions& opt);

struct PlannedTensor {
  std::string name;
  ir::DType type;
  std::vector<int64_t> ne;  // ggml order
};

// The tensor table the model will have (names, types, shapes), in file order.
// Q4_K_M follows llama.cpp (llama_tensor_get_type): Q4_K everywhere, Q6_K for
// output.weight (token_embd when tied) and for attn_v / ffn_down in the layers
// llama.cpp's use_more_bits() picks (first and last eighth, every third one
// between), Q4_K for the rest. Where a row length is not a multiple of 256 a
// K-quant falls back as llama.cpp does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K ->
// Q8_0, Q2_K/Q3_K -> Q4_0 (llama.cpp uses IQ4_NL, which kiln does not support)).
// Throws kiln::Error(kInvalidArgument) for an unknown geometry or type.
std::vector<PlannedTensor> plan_tensors(const SynthOptions& opt);

// llama_ftype value for general.file_type.
uint32_t file_type(const std::string& type);

// The complete model: metadata and streaming tensor sources. The writer holds
// no tensor data; each tensor is generated in ~4 MiB chunks while writing.
gguf::Writer build_model(const SynthOptions& opt);

// Llama 3.1 rope frequency factors (rope_freqs.weight), head_dim / 2 values:
// factor 8, low_freq_factor 1, high_freq_factor 4, original context 8192.
std::vector<float> llama3_rope_factors(int64_t head_dim, float theta);

}  // namespace kiln::synth
