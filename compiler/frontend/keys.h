// Helpers the architecture frontends share: GGUF hyper-parameter reads that
// fail naming the key, GGUF -> IR shapes, and the parts of a model graph every
// architecture builds the same way (bounds and metadata, weight values, the
// final norm and LM head). Internal to compiler/frontend.
#pragma once
#include <cmath>
#include <cstdint>
#include <optional>
#include <variant>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "compiler/frontend/frontend.h"
#include "compiler/gguf/gguf.h"
#include "ir/error.h"
#include "ir/graph.h"

namespace kiln::frontend::detail {

[[noreturn]] inline void missing_key(const std::string& key) {
  throw Error(ErrorCode::kFormat,
              fmt::format("GGUF key '{}' is missing: the model's hyper-parameters are incomplete "
                          "(re-convert it with a current llama.cpp convert_hf_to_gguf.py)",
                          key),
              key);
}

inline int64_t require_int(const gguf::File& f, const std::string& key) {
  auto v = f.get_u64(key);
  if (!v) missing_key(key);
  if (*v == 0 || *v > (1ull << 40))
    throw Error(ErrorCode::kFormat, fmt::format("GGUF key '{}' has an implausible value {}", key, *v), key);
  return static_cast<int64_t>(*v);
}

inline std::optional<int64_t> optional_int(const gguf::File& f, const std::string& key) {
  auto v = f.get_u64(key);
  if (!v) return std::nullopt;
  if (*v == 0 || *v > (1ull << 40))
    throw Error(ErrorCode::kFormat, fmt::format("GGUF key '{}' has an implausible value {}", key, *v), key);
  return static_cast<int64_t>(*v);
}

[[noreturn]] inline void inconsistent(const std::string& key, const std::string& why) {
  throw Error(ErrorCode::kFormat, fmt::format("GGUF key '{}': {}", key, why), key);
}

inline double require_f64(const gguf::File& f, const std::string& key) {
  auto v = f.get_f64(key);
  if (!v) missing_key(key);
  return *v;
}

inline void positive(const std::string& key, double v) {
  if (!(v > 0) || !std::isfinite(v)) inconsistent(key, fmt::format("must be positive, got {}", v));
}

// The attention geometry every architecture checks once head_count,
// head_count_kv and head_dim are read: value_length (if given) equals the key
// length, the query heads are whole groups of KV heads, and the rotary
// dimension count (default: the whole head) is even and fits the head.
inline void read_attention_geometry(const gguf::File& f, const std::string& p, ModelConfig& c) {
  if (auto vl = optional_int(f, p + "attention.value_length"); vl && *vl != c.head_dim)
    inconsistent(p + "attention.value_length",
                 fmt::format("value_length {} differs from key_length {}; kiln needs them equal", *vl,
                             c.head_dim));
  if (c.n_heads % c.n_kv_heads != 0)
    inconsistent(p + "attention.head_count_kv",
                 fmt::format("head_count {} is not a multiple of head_count_kv {}", c.n_heads, c.n_kv_heads));
  c.n_rot = optional_int(f, p + "rope.dimension_count").value_or(c.head_dim);
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0)
    inconsistent(p + "rope.dimension_count",
                 fmt::format("rotary dims {} must be even and <= head dim {}", c.n_rot, c.head_dim));
}

// The layer count (block_count): every layer has tensors of its own, so a
// count above the file's tensor count is corrupt — refused before anything
// per-layer is built (a hostile count would otherwise make the frontend list
// millions of expected weights).
inline int64_t require_layer_count(const gguf::File& f, const std::string& key) {
  const int64_t n = require_int(f, key);
  if (static_cast<uint64_t>(n) > f.tensors().size())
    inconsistent(key, fmt::format("{} layers, but the file holds only {} tensors (each layer has its own): the "
                                  "file is corrupt or truncated",
                                  n, f.tensors().size()));
  return n;
}

// IR shape of a GGUF tensor: ggml ne is innermost-first, IR is outermost-first.
inline std::vector<int64_t> ir_shape(const gguf::TensorInfo& t) {
  return std::vector<int64_t>(t.ne.rbegin(), t.ne.rend());
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// One weight the graph needs: GGUF name and expected IR shape.
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool optional = false;
  bool matmul = false;  // may be quantised; otherwise must be f32
};

// Problems with the tensors the graph reads (missing, wrong shape, dtype).
inline std::vector<std::string> check_weights(const gguf::File& f, const std::vector<WeightSpec>& specs) {
  std::vector<std::string> out;
  for (const auto& spec : specs) {
    const auto* t = f.find_tensor(spec.name);
    if (!t) {
      if (!spec.optional) out.push_back(fmt::format("tensor '{}' is missing", spec.name));
      continue;
    }
    auto got = ir_shape(*t);
    if (got != spec.shape)
      out.push_back(fmt::format("tensor '{}' has shape {}, expected {} for this configuration", spec.name,
                                shape_str(got), shape_str(spec.shape)));
    if (spec.matmul) {
      if (t->type == ir::DType::I32)
        out.push_back(fmt::format("tensor '{}' has type i32, which is not a weight type", spec.name));
    } else if (t->type != ir::DType::F32) {
      out.push_back(fmt::format("tensor '{}' has type {}, expected f32 (norm / bias / rope factors)",
                                spec.name, ir::dtype_name(t->type)));
    }
  }
  return out;
}

// Vocabulary: <arch>.vocab_size, else the tokenizer's token count, else the
// embedding rows; token_embd.weight must be [vocab, hidden].
inline int64_t vocab_size(const gguf::File& f, const std::string& p, int64_t hidden) {
  int64_t vocab = 0;
  const auto* embd = f.find_tensor("token_embd.weight");
  if (auto v = optional_int(f, p + "vocab_size")) {
    vocab = *v;
  } else if (auto toks = f.find("tokenizer.ggml.tokens");
             toks && toks->type == gguf::ValueType::ARRAY) {
    vocab = static_cast<int64_t>(std::get<gguf::Array>(toks->v).items.size());
  } else if (embd && embd->ne.size() == 2) {
    vocab = embd->ne[1];
  } else {
    throw Error(ErrorCode::kFormat,
                fmt::format("cannot tell the vocabulary size: neither '{}vocab_size', "
                            "'tokenizer.ggml.tokens' nor 'token_embd.weight' is present",
                            p),
                p + "vocab_size");
  }
  if (!embd)
    throw Error(ErrorCode::kFormat, "tensor 'token_embd.weight' is missing", "token_embd.weight");
  if (embd->ne.size() != 2 || embd->ne[0] != hidden || embd->ne[1] != vocab)
    throw Error(ErrorCode::kFormat,
                fmt::format("tensor 'token_embd.weight' has shape {}, expected [{}, {}] (vocab, "
                            "embedding_length)",
                            shape_str(ir_shape(*embd)), vocab, hidden),
                "token_embd.weight");
  return vocab;
}

// Throws kiln::Error(kFormat) listing the weight problems, if any.
inline void throw_weight_problems(const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::string msg = "model cannot be built:";
  for (const auto& p : problems) msg += "\n  " + p;
  throw Error(ErrorCode::kFormat, msg);
}

// An empty model graph: symbolic dims "tokens" <= max_tokens and "kv_len" <=
// max_context, and the metadata every architecture records.
inline ir::Graph graph_skeleton(const ModelConfig& c, const GraphOptions& opt) {
  ir::Graph g;
  g.sym_bounds["tokens"] = opt.max_tokens;
  g.sym_bounds["kv_len"] = opt.max_context;
  g.meta["architecture"] = c.arch;
  g.meta["name"] = c.name;
  g.meta["vocab"] = c.vocab;
  g.meta["n_layers"] = c.n_layers;
  g.meta["hidden"] = c.hidden;
  g.meta["n_heads"] = c.n_heads;
  g.meta["n_kv_heads"] = c.n_kv_heads;
  g.meta["head_dim"] = c.head_dim;
  g.meta["context_length"] = c.context_length;
  return g;
}

// The weight value of GGUF tensor `name` (added on first use, its IR shape
// from the file; the caller has checked the tensor exists).
inline ir::ValueId weight_value(ir::Graph& g, const gguf::File& f, const std::string& name) {
  if (auto id = g.find_value(name)) return *id;
  const auto* t = f.find_tensor(name);
  ir::Shape s;
  for (int64_t d : ir_shape(*t)) s.push_back(ir::Dim::fixed(d));
  return g.add_weight(name, t->type, s, name);
}

// The graph's end: final RMS norm of x [tokens, hidden], its last row, and the
// LM head (the token embedding when tied) into the output "logits" [1, vocab].
inline void add_lm_head(ir::Graph& g, const gguf::File& f, const ModelConfig& c, ir::ValueId x,
                        const ir::Attrs& norm_attrs) {
  const int64_t H = c.hidden;
  const ir::Dim tok = ir::Dim::symbolic("tokens", g.sym_bounds.at("tokens"));
  x = g.add_node(ir::OpKind::RmsNorm, {x, weight_value(g, f, "output_norm.weight")}, norm_attrs, "output_norm_out",
                 ir::DType::F32, {tok, ir::Dim::fixed(H)});
  const ir::ValueId last = g.add_node(ir::OpKind::LastRow, {x}, {}, "last_hidden", ir::DType::F32,
                                      {ir::Dim::fixed(1), ir::Dim::fixed(H)});
  const std::string head = c.tied_embeddings ? "token_embd.weight" : "output.weight";
  const ir::ValueId logits = g.add_node(ir::OpKind::MatMul, {last, weight_value(g, f, head)}, {}, "logits",
                                        ir::DType::F32, {ir::Dim::fixed(1), ir::Dim::fixed(c.vocab)});
  g.mark_output(logits);
}

}  // namespace kiln::frontend::detail
