// Gemma 3 frontend: "gemma3" GGUF models -> ir::Graph.
//
// What a gemma3 GGUF holds and what it leaves to the loader (checked on the
// real Gemma 3 270M conversion and against llama.cpp's gemma3 loader/graph):
// - Norms. Gemma's RMSNorm is x / rms(x) * (1 + w). llama.cpp's
//   convert_hf_to_gguf.py adds the 1 when it converts (Gemma3Model: every
//   "*norm.weight" gets + 1), so the GGUF stores 1 + w and the graph applies
//   a plain rms_norm. Evidence in the file: several norms have entries of
//   exactly 0.0 (a trained w of -1.0), e.g. blk.0.ffn_norm.weight, and the
//   interpreter with the weights as stored matches llama.cpp's logits
//   (tests/compiler/tools/reference/gemma3_golden_test.cpp); adding 1 again
//   puts the logits 1.9 (relative RMS) away from llama.cpp's. Q and K norms (attn_q_norm / attn_k_norm, head_dim wide) are
//   applied per head, after the projections and before rope.
// - Every layer: attn_norm -> q/k/v -> q/k norm -> rope (neox layout: the
//   converter does not permute Gemma's q/k rows) -> attention ->
//   post_attention_norm -> residual; ffn_norm -> GeGLU (gelu_tanh(gate) * up)
//   -> down -> post_ffw_norm -> residual. Embeddings are multiplied by
//   sqrt(embedding_length) (in fp32, as llama.cpp does; Hugging Face rounds
//   the factor to the embedding dtype first). The LM head is token_embd
//   unless output.weight is present.
// - Sliding window. The file has gemma3.attention.sliding_window but no
//   layer pattern and no local rope base: llama.cpp's loader hard-codes
//   Gemma 3's pattern (layer i is local unless i % 6 == 5: five local layers,
//   then one global) and a local rope base of 10000, with
//   gemma3.rope.freq_base (1e6) for the global layers. kiln reads
//   gemma3.attention.sliding_window_pattern and gemma3.rope.freq_base_swa when
//   a file has them and uses those defaults otherwise. Linear rope scaling
//   (rope.scaling.type "linear", the 4B+ models' factor 8) applies to the
//   global layers only.
// - Attention scale. Hugging Face scales q by query_pre_attn_scalar^-0.5;
//   the GGUF does not store query_pre_attn_scalar. It equals head_dim for
//   every Gemma 3 size but the 27B (62 layers), where it is
//   embedding_length / head_count; llama.cpp's loader makes the same choice.
//   gemma3.attention.scale, when present, is used as is.
// - Keys. Any gemma3.* key this file does not list is an error naming the key:
//   a key kiln does not know may change the model's arithmetic (e.g. Gemma 2's
//   logit soft-capping), and silently ignoring it would give wrong text.
#include "compiler/frontend/gemma3.h"

#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "compiler/frontend/keys.h"

namespace kiln::frontend {

namespace {

using namespace detail;
using ir::Dim;
using ir::DType;
using ir::OpKind;
using ir::Shape;
using ir::ValueId;

constexpr int64_t kDefaultSwaPattern = 6;       // llama.cpp: hparams.set_swa_pattern(6) for gemma3
constexpr double kDefaultLocalRopeBase = 1e4;   // llama.cpp: rope_freq_base_train_swa = 10000 for gemma3
constexpr int64_t kGemma3_27BLayers = 62;       // the size whose query_pre_attn_scalar is hidden / heads

// The gemma3.* keys this frontend reads (or knows to be harmless).
constexpr const char* kKnownKeys[] = {
    "context_length",          "embedding_length",
    "block_count",             "feed_forward_length",
    "attention.head_count",    "attention.head_count_kv",
    "attention.key_length",    "attention.value_length",
    "attention.layer_norm_rms_epsilon",
    "attention.sliding_window", "attention.sliding_window_pattern",
    "attention.scale",         "rope.freq_base",
    "rope.freq_base_swa",      "rope.dimension_count",
    "rope.scaling.type",       "rope.scaling.factor",
    "rope.scaling.original_context_length", "vocab_size",
};

}  // namespace

ModelConfig read_gemma3_config(const gguf::File& f) {
  ModelConfig c;
  c.arch = kGemma3Arch;
  c.name = f.get_string("general.name").value_or("");
  const std::string p = c.arch + ".";
  for (const auto& kv : f.metadata()) {
    if (kv.key.rfind(p, 0) != 0) continue;
    bool known = false;
    for (const char* k : kKnownKeys) known = known || kv.key == p + k;
    if (!known)
      throw Error(ErrorCode::kUnsupported,
                  fmt::format("GGUF key '{}' is not known to kiln's gemma3 frontend: it may change the "
                              "model's arithmetic, so kiln refuses rather than ignore it (remove the key "
                              "if it is harmless, or teach compiler/frontend/gemma3.cpp about it)",
                              kv.key),
                  kv.key);
  }
  c.n_layers = require_layer_count(f, p + "block_count");
  c.hidden = require_int(f, p + "embedding_length");
  c.ffn = require_int(f, p + "feed_forward_length");
  c.n_heads = require_int(f, p + "attention.head_count");
  c.n_kv_heads = optional_int(f, p + "attention.head_count_kv").value_or(c.n_heads);
  c.context_length = require_int(f, p + "context_length");
  c.head_dim = require_int(f, p + "attention.key_length");  // 256 in Gemma 3, not hidden / heads
  read_attention_geometry(f, p, c);
  c.rope_mode = "neox";

  c.rope_theta = require_f64(f, p + "rope.freq_base");
  positive(p + "rope.freq_base", c.rope_theta);
  c.rope_theta_local = f.get_f64(p + "rope.freq_base_swa").value_or(kDefaultLocalRopeBase);
  positive(p + "rope.freq_base_swa", c.rope_theta_local);
  c.rms_eps = require_f64(f, p + "attention.layer_norm_rms_epsilon");
  if (!(c.rms_eps > 0) || c.rms_eps > 1)
    inconsistent(p + "attention.layer_norm_rms_epsilon", fmt::format("implausible value {}", c.rms_eps));

  if (auto st = f.get_string(p + "rope.scaling.type")) {
    if (*st == "linear") {
      const double factor = require_f64(f, p + "rope.scaling.factor");
      positive(p + "rope.scaling.factor", factor);
      c.rope_freq_scale = 1.0 / factor;
    } else if (*st != "none") {
      throw Error(ErrorCode::kUnsupported,
                  fmt::format("rope scaling '{}' is not supported for gemma3 (kiln supports none and linear)", *st),
                  p + "rope.scaling.type");
    }
  } else if (f.find(p + "rope.scaling.factor")) {
    inconsistent(p + "rope.scaling.factor", "is set but rope.scaling.type is missing");
  }

  c.sliding_window = require_int(f, p + "attention.sliding_window");
  const std::string pattern_key = p + "attention.sliding_window_pattern";
  if (f.find(pattern_key) && !f.get_u64(pattern_key))
    inconsistent(pattern_key, "expected an unsigned integer n (every n-th layer global); kiln reads no other form");
  const int64_t pattern = optional_int(f, pattern_key).value_or(kDefaultSwaPattern);
  c.layer_is_local.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) c.layer_is_local[static_cast<size_t>(i)] = i % pattern < pattern - 1;

  if (auto s = f.get_f64(p + "attention.scale")) {
    positive(p + "attention.scale", *s);
    c.attn_scale = *s;
  } else {
    const double qpas = c.n_layers == kGemma3_27BLayers ? static_cast<double>(c.hidden / c.n_heads)
                                                        : static_cast<double>(c.head_dim);
    c.attn_scale = 1.0 / std::sqrt(qpas);
  }
  c.embed_scale = std::sqrt(static_cast<double>(c.hidden));

  c.vocab = vocab_size(f, p, c.hidden);
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  if (f.find_tensor("rope_freqs.weight"))
    throw Error(ErrorCode::kUnsupported, "tensor 'rope_freqs.weight' is not expected in a gemma3 model",
                "rope_freqs.weight");
  return c;
}

std::vector<std::string> gemma3_weight_problems(const gguf::File& f, const ModelConfig& c) {
  std::vector<WeightSpec> w;
  const int64_t q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
  w.push_back({"token_embd.weight", {c.vocab, c.hidden}, false, true});
  w.push_back({"output_norm.weight", {c.hidden}});
  if (!c.tied_embeddings) w.push_back({"output.weight", {c.vocab, c.hidden}, false, true});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    auto b = fmt::format("blk.{}.", i);
    w.push_back({b + "attn_norm.weight", {c.hidden}});
    w.push_back({b + "attn_q.weight", {q_out, c.hidden}, false, true});
    w.push_back({b + "attn_k.weight", {kv_out, c.hidden}, false, true});
    w.push_back({b + "attn_v.weight", {kv_out, c.hidden}, false, true});
    w.push_back({b + "attn_q_norm.weight", {c.head_dim}});
    w.push_back({b + "attn_k_norm.weight", {c.head_dim}});
    w.push_back({b + "attn_output.weight", {c.hidden, q_out}, false, true});
    w.push_back({b + "post_attention_norm.weight", {c.hidden}});
    w.push_back({b + "ffn_norm.weight", {c.hidden}});
    w.push_back({b + "ffn_gate.weight", {c.ffn, c.hidden}, false, true});
    w.push_back({b + "ffn_up.weight", {c.ffn, c.hidden}, false, true});
    w.push_back({b + "ffn_down.weight", {c.hidden, c.ffn}, false, true});
    w.push_back({b + "post_ffw_norm.weight", {c.hidden}});
  }
  return check_weights(f, w);
}

ir::Graph build_gemma3_graph(const gguf::File& f, const ModelConfig& c, const GraphOptions& opt) {
  throw_weight_problems(gemma3_weight_problems(f, c));
  if (c.layer_is_local.size() != static_cast<size_t>(c.n_layers))
    throw Error(ErrorCode::kInternal, "gemma3: layer pattern does not cover every layer");

  ir::Graph g = graph_skeleton(c, opt);
  const int64_t T = opt.max_tokens, C = opt.max_context, ring_n = ring_rows(c.sliding_window, T, C);
  const DType kv_t = opt.kv_type;
  g.meta["sliding_window"] = c.sliding_window;

  const Dim tok = Dim::symbolic("tokens", T);
  auto rows = [&](int64_t n) { return Shape{tok, Dim::fixed(n)}; };
  auto weight = [&](const std::string& name) { return weight_value(g, f, name); };

  const int64_t H = c.hidden, q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
  const ValueId tokens = g.add_input("tokens", DType::I32, {tok});
  const ValueId positions = g.add_input("positions", DType::I32, {tok});
  const ir::Attrs norm_attrs{{"eps", c.rms_eps}};
  const ir::Attrs head_norm_attrs{{"eps", c.rms_eps}, {"head_dim", c.head_dim}};

  ValueId x = g.add_node(OpKind::Embed, {weight("token_embd.weight"), tokens}, {{"scale", c.embed_scale}}, "embd",
                         DType::F32, rows(H));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string b = fmt::format("blk.{}.", i);
    const bool local = c.layer_is_local[static_cast<size_t>(i)];
    auto norm = [&](ValueId in, const std::string& w, const std::string& out, const ir::Attrs& a, int64_t n) {
      return g.add_node(OpKind::RmsNorm, {in, weight(b + w + ".weight")}, a, b + out, DType::F32, rows(n));
    };
    auto mm = [&](ValueId in, const std::string& w, int64_t n, const std::string& out) {
      return g.add_node(OpKind::MatMul, {in, weight(b + w + ".weight")}, {}, b + out, DType::F32, rows(n));
    };
    auto rope_attrs = [&](int64_t heads) {
      ir::Attrs a{{"n_heads", heads},
                  {"head_dim", c.head_dim},
                  {"n_rot", c.n_rot},
                  {"theta", local ? c.rope_theta_local : c.rope_theta},
                  {"mode", c.rope_mode}};
      if (!local && c.rope_freq_scale != 1.0) a["freq_scale"] = c.rope_freq_scale;
      return a;
    };

    ValueId h = norm(x, "attn_norm", "attn_norm_out", norm_attrs, H);
    ValueId q = mm(h, "attn_q", q_out, "q");
    ValueId k = mm(h, "attn_k", kv_out, "k");
    ValueId v = mm(h, "attn_v", kv_out, "v");
    q = norm(q, "attn_q_norm", "q_norm_out", head_norm_attrs, q_out);
    k = norm(k, "attn_k_norm", "k_norm_out", head_norm_attrs, kv_out);
    q = g.add_node(OpKind::Rope, {q, positions}, rope_attrs(c.n_heads), b + "q_rope", DType::F32, rows(q_out));
    k = g.add_node(OpKind::Rope, {k, positions}, rope_attrs(c.n_kv_heads), b + "k_rope", DType::F32, rows(kv_out));

    // A sliding-window layer keeps only its window (plus one chunk) in a ring.
    const bool ring = local && ring_n > 0;
    const Shape cache_shape = ring ? Shape{Dim::fixed(ring_n), Dim::fixed(kv_out)}
                                   : Shape{Dim::symbolic("kv_len", C), Dim::fixed(kv_out)};
    const ir::Attrs store_attrs = ring ? ir::Attrs{{"ring", int64_t{1}}} : ir::Attrs{};
    ValueId kc = g.add_state(b + "k_cache", kv_t, cache_shape);
    ValueId vc = g.add_state(b + "v_cache", kv_t, cache_shape);
    kc = g.add_node(OpKind::KvStore, {kc, k, positions}, store_attrs, b + "k_cache_out", kv_t, cache_shape);
    vc = g.add_node(OpKind::KvStore, {vc, v, positions}, store_attrs, b + "v_cache_out", kv_t, cache_shape);
    ir::Attrs attn_attrs{{"n_heads", c.n_heads},
                         {"n_kv_heads", c.n_kv_heads},
                         {"head_dim", c.head_dim},
                         {"scale", c.attn_scale}};
    if (local) attn_attrs["window"] = c.sliding_window;
    ValueId a = g.add_node(OpKind::Attention, {q, kc, vc, positions}, attn_attrs, b + "attn", DType::F32,
                           rows(q_out));
    ValueId o = mm(a, "attn_output", H, "attn_out");
    o = norm(o, "post_attention_norm", "attn_post_norm_out", norm_attrs, H);
    x = g.add_node(OpKind::Add, {x, o}, {}, b + "attn_resid", DType::F32, rows(H));

    h = norm(x, "ffn_norm", "ffn_norm_out", norm_attrs, H);
    ValueId gate = mm(h, "ffn_gate", c.ffn, "ffn_gate_out");
    ValueId up = mm(h, "ffn_up", c.ffn, "ffn_up_out");
    ValueId act = g.add_node(OpKind::GeGlu, {gate, up}, {}, b + "ffn_act", DType::F32, rows(c.ffn));
    ValueId down = mm(act, "ffn_down", H, "ffn_down_out");
    down = norm(down, "post_ffw_norm", "ffn_post_norm_out", norm_attrs, H);
    x = g.add_node(OpKind::Add, {x, down}, {}, b + "ffn_resid", DType::F32, rows(H));
  }
  add_lm_head(g, f, c, x, norm_attrs);
  return g;
}

}  // namespace kiln::frontend
