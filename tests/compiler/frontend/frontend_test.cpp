// Frontend tests: tiny synthetic GGUFs (written with gguf::Writer) and the
// real SmolLM2 model's configuration and graph.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "codegen/codegen.h"
#include "compiler/frontend/frontend.h"
#include "compiler/passes/pipeline.h"
#include "compiler/gguf/writer.h"

namespace {

using kiln::Error;
using kiln::ErrorCode;
using kiln::ir::DType;
using kiln::ir::OpKind;

struct Tiny {
  std::string arch = "llama";
  int64_t layers = 2, hidden = 16, ffn = 32, heads = 4, kv_heads = 2, vocab = 40, ctx = 64;
  bool tied = true, rope_freqs = false, biases = false;
  int64_t block_count = 0;            // > 0: written as block_count instead of `layers`
  std::string rope_scaling;           // rope.scaling.type when set
  double rope_scaling_factor = 0;     // rope.scaling.factor when > 0
  std::vector<std::string> drop_keys;
  std::vector<std::string> drop_tensors;
  std::map<std::string, std::vector<int64_t>> override_ne;
  std::map<std::string, DType> override_type;
};

std::vector<uint8_t> zeros_f32(int64_t n) { return std::vector<uint8_t>(static_cast<size_t>(n) * 4, 0); }

kiln::gguf::File make(const Tiny& t) {
  kiln::gguf::Writer w;
  auto has = [&](const std::string& k) {
    for (const auto& d : t.drop_keys)
      if (d == k) return false;
    return true;
  };
  const std::string p = t.arch + ".";
  w.add_string("general.architecture", t.arch);
  w.add_string("general.name", "tiny");
  if (has(p + "block_count"))
    w.add_u32(p + "block_count", static_cast<uint32_t>(t.block_count > 0 ? t.block_count : t.layers));
  if (has(p + "embedding_length")) w.add_u32(p + "embedding_length", static_cast<uint32_t>(t.hidden));
  if (has(p + "feed_forward_length")) w.add_u32(p + "feed_forward_length", static_cast<uint32_t>(t.ffn));
  if (has(p + "attention.head_count")) w.add_u32(p + "attention.head_count", static_cast<uint32_t>(t.heads));
  if (has(p + "attention.head_count_kv"))
    w.add_u32(p + "attention.head_count_kv", static_cast<uint32_t>(t.kv_heads));
  if (has(p + "context_length")) w.add_u32(p + "context_length", static_cast<uint32_t>(t.ctx));
  if (has(p + "rope.freq_base")) w.add_f32(p + "rope.freq_base", 10000.0f);
  if (has(p + "attention.layer_norm_rms_epsilon")) w.add_f32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
  if (has(p + "vocab_size")) w.add_u32(p + "vocab_size", static_cast<uint32_t>(t.vocab));
  if (!t.rope_scaling.empty()) w.add_string(p + "rope.scaling.type", t.rope_scaling);
  if (t.rope_scaling_factor > 0) w.add_f32(p + "rope.scaling.factor", static_cast<float>(t.rope_scaling_factor));

  const int64_t hd = t.hidden / t.heads;
  auto tensor = [&](const std::string& name, std::vector<int64_t> ne) {
    for (const auto& d : t.drop_tensors)
      if (d == name) return;
    if (auto it = t.override_ne.find(name); it != t.override_ne.end()) ne = it->second;
    DType type = DType::F32;
    if (auto it = t.override_type.find(name); it != t.override_type.end()) type = it->second;
    int64_t n = 1;
    for (auto d : ne) n *= d;
    std::vector<uint8_t> bytes = type == DType::F32 ? zeros_f32(n) : std::vector<uint8_t>(static_cast<size_t>(n) / 32 * 34, 0);
    w.add_tensor(name, type, ne, std::move(bytes));
  };
  tensor("token_embd.weight", {t.hidden, t.vocab});
  tensor("output_norm.weight", {t.hidden});
  if (!t.tied) tensor("output.weight", {t.hidden, t.vocab});
  if (t.rope_freqs) tensor("rope_freqs.weight", {hd / 2});
  for (int64_t i = 0; i < t.layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    tensor(b + "attn_norm.weight", {t.hidden});
    tensor(b + "attn_q.weight", {t.hidden, t.heads * hd});
    tensor(b + "attn_k.weight", {t.hidden, t.kv_heads * hd});
    tensor(b + "attn_v.weight", {t.hidden, t.kv_heads * hd});
    if (t.biases) {
      tensor(b + "attn_q.bias", {t.heads * hd});
      tensor(b + "attn_k.bias", {t.kv_heads * hd});
      tensor(b + "attn_v.bias", {t.kv_heads * hd});
    }
    tensor(b + "attn_output.weight", {t.heads * hd, t.hidden});
    tensor(b + "ffn_norm.weight", {t.hidden});
    tensor(b + "ffn_gate.weight", {t.hidden, t.ffn});
    tensor(b + "ffn_up.weight", {t.hidden, t.ffn});
    tensor(b + "ffn_down.weight", {t.ffn, t.hidden});
  }
  return kiln::gguf::File::from_bytes(w.to_bytes());
}

std::map<OpKind, int> op_counts(const kiln::ir::Graph& g) {
  std::map<OpKind, int> m;
  for (const auto& n : g.nodes()) m[n.op]++;
  return m;
}

TEST(Frontend, ReadsLlamaConfig) {
  auto f = make(Tiny{});
  auto c = kiln::frontend::read_config(f);
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.name, "tiny");
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.hidden, 16);
  EXPECT_EQ(c.ffn, 32);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.n_rot, 4);
  EXPECT_EQ(c.vocab, 40);
  EXPECT_EQ(c.context_length, 64);
  EXPECT_EQ(c.rope_mode, "normal");
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FALSE(c.attn_bias);
  EXPECT_FALSE(c.has_rope_freqs);
  EXPECT_NEAR(c.rms_eps, 1e-5, 1e-9);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_TRUE(kiln::frontend::support_problems(f).empty());
}

TEST(Frontend, MissingKeyIsFormatErrorNamingKey) {
  for (std::string key : {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                          "llama.attention.head_count", "llama.context_length",
                          "llama.attention.layer_norm_rms_epsilon"}) {
    Tiny t;
    t.drop_keys = {key};
    auto f = make(t);
    try {
      kiln::frontend::read_config(f);
      ADD_FAILURE() << "no error for missing " << key;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat) << key;
      EXPECT_EQ(e.field(), key);
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
    auto problems = kiln::frontend::support_problems(f);
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_NE(problems[0].find(key), std::string::npos);
  }
}

TEST(Frontend, UnknownArchListsSupported) {
  Tiny t;
  t.arch = "mamba";
  auto f = make(t);
  try {
    kiln::frontend::read_config(f);
    FAIL() << "no error for arch mamba";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    std::string msg = e.what();
    EXPECT_NE(msg.find("mamba"), std::string::npos) << msg;
    EXPECT_NE(msg.find("llama"), std::string::npos) << msg;
    EXPECT_NE(msg.find("qwen2"), std::string::npos) << msg;
  }
  EXPECT_EQ(kiln::frontend::support_problems(f).size(), 1u);
}

TEST(Frontend, InconsistentHeadsRejected) {
  Tiny t;
  t.kv_heads = 3;  // 4 heads not a multiple of 3
  auto f = make(t);
  try {
    kiln::frontend::read_config(f);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_EQ(e.field(), "llama.attention.head_count_kv");
  }
}

TEST(Frontend, SupportProblemsNameTensors) {
  Tiny t;
  t.drop_tensors = {"blk.1.ffn_up.weight"};
  t.override_ne = {{"blk.0.attn_k.weight", {16, 12}}};
  t.override_type = {{"blk.0.ffn_norm.weight", DType::Q8_0}};
  t.override_ne["blk.0.ffn_norm.weight"] = {32};
  auto f = make(t);
  auto problems = kiln::frontend::support_problems(f);
  std::string all;
  for (auto& p : problems) all += p + "\n";
  EXPECT_EQ(problems.size(), 4u) << all;  // missing, shape, norm dtype + norm shape
  EXPECT_NE(all.find("'blk.1.ffn_up.weight' is missing"), std::string::npos) << all;
  EXPECT_NE(all.find("'blk.0.attn_k.weight' has shape [12, 16], expected [8, 16]"), std::string::npos) << all;
  EXPECT_NE(all.find("'blk.0.ffn_norm.weight' has type q8_0"), std::string::npos) << all;
  EXPECT_THROW(kiln::frontend::build_graph(f, kiln::frontend::read_config(f), {}), Error);
}

TEST(Frontend, LlamaGraphStructure) {
  auto f = make(Tiny{});
  auto c = kiln::frontend::read_config(f);
  kiln::frontend::GraphOptions o;
  o.max_tokens = 8;
  o.max_context = 32;
  auto g = kiln::frontend::build_graph(f, c, o);
  kiln::ir::verify(g);
  auto n = op_counts(g);
  EXPECT_EQ(n[OpKind::Embed], 1);
  EXPECT_EQ(n[OpKind::RmsNorm], 2 * 2 + 1);
  EXPECT_EQ(n[OpKind::MatMul], 7 * 2 + 1);
  EXPECT_EQ(n[OpKind::Rope], 2 * 2);
  EXPECT_EQ(n[OpKind::KvStore], 2 * 2);
  EXPECT_EQ(n[OpKind::Attention], 2);
  EXPECT_EQ(n[OpKind::SwiGlu], 2);
  EXPECT_EQ(n[OpKind::Add], 2 * 2);  // residuals only, no biases
  EXPECT_EQ(n[OpKind::LastRow], 1);
  EXPECT_EQ(g.sym_bounds.at("tokens"), 8);
  EXPECT_EQ(g.sym_bounds.at("kv_len"), 32);

  ASSERT_EQ(g.outputs().size(), 1u);
  const auto& logits = g.value(g.outputs()[0]);
  EXPECT_EQ(logits.name, "logits");
  ASSERT_EQ(logits.shape.size(), 2u);
  EXPECT_EQ(logits.shape[0].value, 1);
  EXPECT_EQ(logits.shape[1].value, 40);
  // Tied: the LM head reads token_embd.
  const auto& head = g.nodes().back();
  EXPECT_EQ(head.op, OpKind::MatMul);
  EXPECT_EQ(g.value(head.inputs[1]).source, "token_embd.weight");

  for (const auto& node : g.nodes()) {
    if (node.op == OpKind::Rope) {
      EXPECT_EQ(node.attr_str("mode"), "normal");
      EXPECT_EQ(node.attr_int("head_dim"), 4);
      EXPECT_EQ(node.inputs.size(), 2u);
    }
    if (node.op == OpKind::Attention) {
      EXPECT_NEAR(node.attr_float("scale"), 0.5, 1e-12);
      EXPECT_EQ(node.attr_int("n_kv_heads"), 2);
      // K and V come from the kv_store outputs (the updated caches).
      for (int i : {1, 2}) EXPECT_EQ(g.value(node.inputs[static_cast<size_t>(i)]).shape[0].sym, "kv_len");
    }
  }
  int states = 0;
  for (const auto& v : g.values()) states += v.kind == kiln::ir::ValueKind::State;
  EXPECT_EQ(states, 4);
}

TEST(Frontend, UntiedHeadAndRopeFreqs) {
  Tiny t;
  t.tied = false;
  t.rope_freqs = true;
  auto f = make(t);
  auto c = kiln::frontend::read_config(f);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_TRUE(c.has_rope_freqs);
  auto g = kiln::frontend::build_graph(f, c, {8, 32});
  kiln::ir::verify(g);
  EXPECT_EQ(g.value(g.nodes().back().inputs[1]).source, "output.weight");
  for (const auto& node : g.nodes())
    if (node.op == OpKind::Rope) {
      ASSERT_EQ(node.inputs.size(), 3u);
      EXPECT_EQ(g.value(node.inputs[2]).source, "rope_freqs.weight");
    }
}

// Linear rope scaling (rope.scaling.type "linear"): every rope node carries
// freq_scale = 1 / factor, so the QKV/rope_store fusion leaves those ropes
// unfused (rope_store has no freq_scale); other scaling types and a linear type
// without a factor are errors naming the key.
TEST(Frontend, LinearRopeScaling) {
  Tiny t;
  t.rope_scaling = "linear";
  t.rope_scaling_factor = 4.0;
  auto f = make(t);
  auto c = kiln::frontend::read_config(f);
  EXPECT_DOUBLE_EQ(c.rope_freq_scale, 0.25);
  auto g = kiln::frontend::build_graph(f, c, {8, 32});
  kiln::ir::verify(g);
  int ropes = 0;
  for (const auto& node : g.nodes())
    if (node.op == OpKind::Rope) {
      ++ropes;
      EXPECT_DOUBLE_EQ(node.attr_float("freq_scale"), 0.25);
    }
  EXPECT_EQ(ropes, 2 * t.layers);
  // through the default pipeline (the rope/KV-store fusion leaves scaled ropes
  // alone) and the prefill pipeline, every node has a compiled kernel
  const kiln::ir::Graph fused = kiln::passes::run_pipeline(g, kiln::passes::default_pipeline(), {});
  const kiln::ir::Graph prefill = kiln::passes::run_pipeline(fused, kiln::passes::prefill_pipeline(), {});
  for (const kiln::ir::Graph* pg : {&fused, &prefill})
    for (const auto& node : pg->nodes()) {
      EXPECT_NE(node.op, OpKind::RopeStore) << "a scaled rope was fused into rope_store";
      EXPECT_NO_THROW(kiln::codegen::lower(*pg, node, {8, 32}, kiln::codegen::Target{90},
                                           kiln::ProgramMode::Compiled))
          << kiln::ir::op_info(node.op).name;
    }
  auto error_key = [](const Tiny& bad) {
    try {
      kiln::frontend::read_config(make(bad));
    } catch (const Error& e) {
      return e.field();
    }
    return std::string("no error");
  };
  Tiny yarn;
  yarn.rope_scaling = "yarn";
  EXPECT_EQ(error_key(yarn), "llama.rope.scaling.type");
  Tiny no_factor;
  no_factor.rope_scaling = "linear";
  EXPECT_EQ(error_key(no_factor), "llama.rope.scaling.factor");
  Tiny one;  // factor 1 is no scaling: no attribute
  one.rope_scaling = "linear";
  one.rope_scaling_factor = 1.0;
  auto f1 = make(one);
  auto c1 = kiln::frontend::read_config(f1);
  const kiln::ir::Graph g1 = kiln::frontend::build_graph(f1, c1, {8, 32});
  for (const auto& node : g1.nodes())
    if (node.op == OpKind::Rope) {
      EXPECT_FALSE(node.attrs.count("freq_scale"));
    }
}

// A block_count beyond the file's tensors is refused naming the key, before
// anything per layer is built (found by fuzz_gguf: a count of millions made
// the weight check allocate gigabytes of expected names).
TEST(Frontend, LayerCountBeyondTheTensorsIsRefused) {
  Tiny t;  // 2 layers of tensors, block_count 2^30
  t.block_count = int64_t{1} << 30;
  try {
    kiln::frontend::read_config(make(t));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_EQ(e.field(), "llama.block_count");
    EXPECT_NE(std::string(e.what()).find("tensors"), std::string::npos) << e.what();
  }
}

TEST(Frontend, Qwen2UsesNeoxAndBiases) {
  Tiny t;
  t.arch = "qwen2";
  t.biases = true;
  auto f = make(t);
  auto c = kiln::frontend::read_config(f);
  EXPECT_EQ(c.rope_mode, "neox");
  EXPECT_TRUE(c.attn_bias);
  auto g = kiln::frontend::build_graph(f, c, {8, 32});
  kiln::ir::verify(g);
  auto n = op_counts(g);
  EXPECT_EQ(n[OpKind::Add], 2 * 2 + 3 * 2);
  for (const auto& node : g.nodes())
    if (node.op == OpKind::Rope) {
      EXPECT_EQ(node.attr_str("mode"), "neox");
    }

  // Without the biases a qwen2 model is incomplete.
  t.biases = false;
  auto f2 = make(t);
  EXPECT_EQ(kiln::frontend::support_problems(f2).size(), 3u * 2);
}

TEST(Frontend, ContextBeyondModelRejected) {
  auto f = make(Tiny{});
  auto c = kiln::frontend::read_config(f);
  try {
    kiln::frontend::build_graph(f, c, {8, 65});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("64"), std::string::npos);
  }
}

std::filesystem::path model_dir() {
  if (const char* d = std::getenv("KILN_MODEL_DIR")) return d;
  return std::filesystem::path(KILN_SOURCE_DIR) / ".cache" / "models";
}

TEST(Frontend, RealSmolLM2) {
  auto path = model_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf";
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: run ./fetch_models.sh";
  auto f = kiln::gguf::File::open(path.string());
  auto c = kiln::frontend::read_config(f);
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.ffn, 1536);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_rot, 64);
  EXPECT_EQ(c.vocab, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_TRUE(kiln::frontend::support_problems(f).empty());
  auto g = kiln::frontend::build_graph(f, c, {512, 2048});
  EXPECT_NO_THROW(kiln::ir::verify(g));
  EXPECT_EQ(op_counts(g)[OpKind::MatMul], 30 * 7 + 1);
  // Weight dtypes come straight from the file (Q4_1 projections, Q8_0 embedding).
  EXPECT_EQ(g.value(*g.find_value("token_embd.weight")).dtype, DType::Q8_0);
  EXPECT_EQ(g.value(*g.find_value("blk.0.attn_q.weight")).dtype, DType::Q4_1);
}

}  // namespace
