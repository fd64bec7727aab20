// Llama-family frontend: "llama" and "qwen2" GGUF models -> ir::Graph.
//
// Rope layout. llama.cpp maps LLM_ARCH_LLAMA to LLAMA_ROPE_TYPE_NORM (rotate
// adjacent pairs x[2i], x[2i+1]) and LLM_ARCH_QWEN2 to LLAMA_ROPE_TYPE_NEOX
// (rotate x[i], x[i + n_rot/2]). The HF->GGUF converter permutes the rows of
// llama's Q and K projections (convert_hf_to_gguf.py LlamaModel.permute) so
// that HF's "rotate halves" becomes "adjacent pairs" on the GGUF weights;
// Qwen2 weights are stored unpermuted and therefore keep the neox layout.
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "compiler/frontend/frontend.h"
#include "compiler/frontend/gemma3.h"
#include "compiler/frontend/keys.h"

namespace kiln::frontend {

namespace {

using namespace detail;
using ir::Dim;
using ir::DType;
using ir::OpKind;
using ir::Shape;
using ir::ValueId;

struct ArchTraits {
  const char* name;
  const char* rope_mode;
  bool attn_bias;
};

constexpr ArchTraits kArchs[] = {
    {"llama", "normal", false},
    {"qwen2", "neox", true},
};

const ArchTraits* find_arch(const std::string& arch) {
  for (const auto& a : kArchs)
    if (arch == a.name) return &a;
  return nullptr;
}

std::string supported_list() {
  std::string s;
  for (const auto& a : supported_architectures()) s += (s.empty() ? "" : ", ") + a;
  return s;
}

std::vector<WeightSpec> expected_weights(const ModelConfig& c, const gguf::File& f) {
  std::vector<WeightSpec> w;
  const int64_t q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
  w.push_back({"token_embd.weight", {c.vocab, c.hidden}, false, true});
  w.push_back({"output_norm.weight", {c.hidden}});
  if (!c.tied_embeddings) w.push_back({"output.weight", {c.vocab, c.hidden}, false, true});
  if (c.has_rope_freqs) w.push_back({"rope_freqs.weight", {c.n_rot / 2}});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    auto b = fmt::format("blk.{}.", i);
    w.push_back({b + "attn_norm.weight", {c.hidden}});
    w.push_back({b + "attn_q.weight", {q_out, c.hidden}, false, true});
    w.push_back({b + "attn_k.weight", {kv_out, c.hidden}, false, true});
    w.push_back({b + "attn_v.weight", {kv_out, c.hidden}, false, true});
    if (c.attn_bias) {
      w.push_back({b + "attn_q.bias", {q_out}});
      w.push_back({b + "attn_k.bias", {kv_out}});
      w.push_back({b + "attn_v.bias", {kv_out}});
    }
    w.push_back({b + "attn_output.weight", {c.hidden, q_out}, false, true});
    w.push_back({b + "ffn_norm.weight", {c.hidden}});
    w.push_back({b + "ffn_gate.weight", {c.ffn, c.hidden}, false, true});
    w.push_back({b + "ffn_up.weight", {c.ffn, c.hidden}, false, true});
    w.push_back({b + "ffn_down.weight", {c.hidden, c.ffn}, false, true});
  }
  (void)f;
  return w;
}

// Problems with the tensors the graph reads (missing, wrong shape, dtype).
std::vector<std::string> weight_problems(const gguf::File& f, const ModelConfig& c) {
  return check_weights(f, expected_weights(c, f));
}

}  // namespace

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& a : kArchs) v.emplace_back(a.name);
    v.emplace_back(kGemma3Arch);
    return v;
  }();
  return names;
}

int64_t ring_rows(int64_t window, int64_t max_tokens, int64_t max_context) {
  if (window <= 0) return 0;
  const int64_t rows = window + max_tokens - 1;
  return rows < max_context ? rows : 0;
}

ModelConfig read_config(const gguf::File& f) {
  if (f.architecture() == kGemma3Arch) return read_gemma3_config(f);
  ModelConfig c;
  c.arch = f.architecture();
  const ArchTraits* traits = find_arch(c.arch);
  if (!traits)
    throw Error(ErrorCode::kUnsupported,
                fmt::format("architecture '{}' is not supported; kiln supports: {}", c.arch, supported_list()),
                "general.architecture");
  c.name = f.get_string("general.name").value_or("");
  const std::string p = c.arch + ".";
  c.n_layers = require_layer_count(f, p + "block_count");
  c.hidden = require_int(f, p + "embedding_length");
  c.ffn = require_int(f, p + "feed_forward_length");
  c.n_heads = require_int(f, p + "attention.head_count");
  c.n_kv_heads = optional_int(f, p + "attention.head_count_kv").value_or(c.n_heads);
  c.context_length = require_int(f, p + "context_length");

  if (auto kl = optional_int(f, p + "attention.key_length")) {
    c.head_dim = *kl;
  } else {
    if (c.hidden % c.n_heads != 0)
      inconsistent(p + "attention.head_count",
                   fmt::format("embedding_length {} is not divisible by head_count {} (and no "
                               "attention.key_length is given)",
                               c.hidden, c.n_heads));
    c.head_dim = c.hidden / c.n_heads;
  }
  read_attention_geometry(f, p, c);
  c.rope_theta = f.get_f64(p + "rope.freq_base").value_or(10000.0);
  positive(p + "rope.freq_base", c.rope_theta);
  auto eps = f.get_f64(p + "attention.layer_norm_rms_epsilon");
  if (!eps)
    throw Error(ErrorCode::kFormat,
                fmt::format("GGUF key '{}attention.layer_norm_rms_epsilon' is missing", p),
                p + "attention.layer_norm_rms_epsilon");
  c.rms_eps = *eps;
  if (!(c.rms_eps > 0) || c.rms_eps > 1)
    inconsistent(p + "attention.layer_norm_rms_epsilon", fmt::format("implausible value {}", c.rms_eps));
  if (auto st = f.get_string(p + "rope.scaling.type"); st && *st != "none" && *st != "linear")
    throw Error(ErrorCode::kUnsupported,
                fmt::format("rope scaling '{}' is not supported (kiln supports none and linear)", *st),
                p + "rope.scaling.type");
  if (auto st = f.get_string(p + "rope.scaling.type"); st && *st == "linear") {
    // positions are divided by the factor before the rotation (the rope op's
    // freq_scale = 1 / factor, as llama.cpp's freq_scale); a linear type
    // without a factor is an error, not a silent 1
    const auto factor = f.get_f64(p + "rope.scaling.factor");
    if (!factor)
      throw Error(ErrorCode::kFormat,
                  fmt::format("GGUF key '{}rope.scaling.factor' is missing (rope.scaling.type is linear)", p),
                  p + "rope.scaling.factor");
    positive(p + "rope.scaling.factor", *factor);
    c.rope_freq_scale = 1.0 / *factor;
  }

  c.vocab = vocab_size(f, p, c.hidden);

  c.rope_mode = traits->rope_mode;
  c.attn_bias = traits->attn_bias;
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.has_rope_freqs = f.find_tensor("rope_freqs.weight") != nullptr;
  return c;
}

std::vector<std::string> support_problems(const gguf::File& f) {
  ModelConfig c;
  try {
    c = read_config(f);
  } catch (const Error& e) {
    return {e.what()};
  }
  if (c.arch == kGemma3Arch) return gemma3_weight_problems(f, c);
  return weight_problems(f, c);
}

ir::Graph build_graph(const gguf::File& f, const ModelConfig& c, const GraphOptions& opt) {
  if (opt.max_tokens <= 0 || opt.max_context <= 0)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("max_tokens ({}) and max_context ({}) must be positive", opt.max_tokens,
                            opt.max_context));
  if (opt.max_context > c.context_length)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("requested context {} exceeds the model's context_length {}: use a "
                            "context of at most {}",
                            opt.max_context, c.context_length, c.context_length),
                "max_context");
  const DType kv_t = opt.kv_type;
  if (kv_t != DType::F32 && kv_t != DType::F16 && kv_t != DType::BF16)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("KV-cache type {} is not f32, f16 or bf16", ir::dtype_name(kv_t)), "kv_type");
  if (c.arch == kGemma3Arch) return build_gemma3_graph(f, c, opt);
  throw_weight_problems(weight_problems(f, c));

  ir::Graph g = graph_skeleton(c, opt);
  const int64_t T = opt.max_tokens, C = opt.max_context;

  const Dim tok = Dim::symbolic("tokens", T);
  auto rows = [&](int64_t n) { return Shape{tok, Dim::fixed(n)}; };
  auto weight = [&](const std::string& name) { return weight_value(g, f, name); };

  const int64_t H = c.hidden, q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
  const ValueId tokens = g.add_input("tokens", DType::I32, {tok});
  const ValueId positions = g.add_input("positions", DType::I32, {tok});
  const ValueId rope_freqs = c.has_rope_freqs ? weight("rope_freqs.weight") : ir::kNoValue;

  ir::Attrs norm_attrs{{"eps", c.rms_eps}};
  auto rope_attrs = [&](int64_t heads) {
    ir::Attrs a{{"n_heads", heads},        {"head_dim", c.head_dim}, {"n_rot", c.n_rot},
                {"theta", c.rope_theta},   {"mode", c.rope_mode}};
    if (c.rope_freq_scale != 1.0) a["freq_scale"] = c.rope_freq_scale;  // linear rope scaling
    return a;
  };
  const ir::Attrs attn_attrs{{"n_heads", c.n_heads},
                             {"n_kv_heads", c.n_kv_heads},
                             {"head_dim", c.head_dim},
                             {"scale", 1.0 / std::sqrt(static_cast<double>(c.head_dim))}};

  ValueId x = g.add_node(OpKind::Embed, {weight("token_embd.weight"), tokens}, {}, "embd", DType::F32, rows(H));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string b = fmt::format("blk.{}.", i);
    auto proj = [&](ValueId in, const std::string& w, int64_t n, const std::string& out) {
      ValueId y = g.add_node(OpKind::MatMul, {in, weight(b + w + ".weight")}, {}, b + out, DType::F32, rows(n));
      if (c.attn_bias && (w == "attn_q" || w == "attn_k" || w == "attn_v"))
        y = g.add_node(OpKind::Add, {y, weight(b + w + ".bias")}, {}, b + out + "_bias", DType::F32, rows(n));
      return y;
    };
    ValueId h = g.add_node(OpKind::RmsNorm, {x, weight(b + "attn_norm.weight")}, norm_attrs, b + "attn_norm_out",
                           DType::F32, rows(H));
    ValueId q = proj(h, "attn_q", q_out, "q");
    ValueId k = proj(h, "attn_k", kv_out, "k");
    ValueId v = proj(h, "attn_v", kv_out, "v");
    std::vector<ValueId> rq{q, positions}, rk{k, positions};
    if (rope_freqs != ir::kNoValue) {
      rq.push_back(rope_freqs);
      rk.push_back(rope_freqs);
    }
    q = g.add_node(OpKind::Rope, rq, rope_attrs(c.n_heads), b + "q_rope", DType::F32, rows(q_out));
    k = g.add_node(OpKind::Rope, rk, rope_attrs(c.n_kv_heads), b + "k_rope", DType::F32, rows(kv_out));
    const Shape cache_shape{Dim::symbolic("kv_len", C), Dim::fixed(kv_out)};
    ValueId kc = g.add_state(b + "k_cache", kv_t, cache_shape);
    ValueId vc = g.add_state(b + "v_cache", kv_t, cache_shape);
    kc = g.add_node(OpKind::KvStore, {kc, k, positions}, {}, b + "k_cache_out", kv_t, cache_shape);
    vc = g.add_node(OpKind::KvStore, {vc, v, positions}, {}, b + "v_cache_out", kv_t, cache_shape);
    ValueId a = g.add_node(OpKind::Attention, {q, kc, vc, positions}, attn_attrs, b + "attn", DType::F32,
                           rows(q_out));
    ValueId o = g.add_node(OpKind::MatMul, {a, weight(b + "attn_output.weight")}, {}, b + "attn_out", DType::F32,
                           rows(H));
    x = g.add_node(OpKind::Add, {x, o}, {}, b + "attn_resid", DType::F32, rows(H));
    h = g.add_node(OpKind::RmsNorm, {x, weight(b + "ffn_norm.weight")}, norm_attrs, b + "ffn_norm_out",
                   DType::F32, rows(H));
    ValueId gate = g.add_node(OpKind::MatMul, {h, weight(b + "ffn_gate.weight")}, {}, b + "ffn_gate_out",
                              DType::F32, rows(c.ffn));
    ValueId up = g.add_node(OpKind::MatMul, {h, weight(b + "ffn_up.weight")}, {}, b + "ffn_up_out", DType::F32,
                            rows(c.ffn));
    ValueId act = g.add_node(OpKind::SwiGlu, {gate, up}, {}, b + "ffn_act", DType::F32, rows(c.ffn));
    ValueId down = g.add_node(OpKind::MatMul, {act, weight(b + "ffn_down.weight")}, {}, b + "ffn_down_out",
                              DType::F32, rows(H));
    x = g.add_node(OpKind::Add, {x, down}, {}, b + "ffn_resid", DType::F32, rows(H));
  }
  add_lm_head(g, f, c, x, norm_attrs);
  return g;
}

}  // namespace kiln::frontend
