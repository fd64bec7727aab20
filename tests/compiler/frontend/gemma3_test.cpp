// Gemma 3 frontend on tiny synthetic gemma3 GGUFs (written with gguf::Writer):
// the configuration read from the keys (and the defaults llama.cpp's loader
// supplies), the graph's Gemma-specific structure, and errors that name the key.
// The real model's numbers are checked in tests/compiler/tools/reference.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "compiler/frontend/frontend.h"
#include "compiler/gguf/writer.h"

namespace {

using kiln::Error;
using kiln::ir::DType;
using kiln::ir::OpKind;

struct TinyGemma {
  int64_t layers = 7, hidden = 16, ffn = 32, heads = 2, kv_heads = 1, head_dim = 8, vocab = 40, ctx = 64,
          window = 4;
  std::vector<std::string> drop_keys, drop_tensors;
  std::map<std::string, std::string> strings;  // extra string keys
  std::map<std::string, float> floats;         // extra f32 keys
  std::map<std::string, uint32_t> ints;        // extra u32 keys
};

kiln::gguf::File make(const TinyGemma& t) {
  kiln::gguf::Writer w;
  auto has = [&](const std::string& k) {
    for (const auto& d : t.drop_keys)
      if (d == k) return false;
    return true;
  };
  auto u32 = [&](const std::string& k, int64_t v) {
    if (has(k)) w.add_u32(k, static_cast<uint32_t>(v));
  };
  w.add_string("general.architecture", "gemma3");
  w.add_string("general.name", "tiny gemma");
  u32("gemma3.block_count", t.layers);
  u32("gemma3.embedding_length", t.hidden);
  u32("gemma3.feed_forward_length", t.ffn);
  u32("gemma3.attention.head_count", t.heads);
  u32("gemma3.attention.head_count_kv", t.kv_heads);
  u32("gemma3.attention.key_length", t.head_dim);
  u32("gemma3.attention.value_length", t.head_dim);
  u32("gemma3.context_length", t.ctx);
  u32("gemma3.attention.sliding_window", t.window);
  u32("gemma3.vocab_size", t.vocab);
  if (has("gemma3.rope.freq_base")) w.add_f32("gemma3.rope.freq_base", 1e6f);
  if (has("gemma3.attention.layer_norm_rms_epsilon")) w.add_f32("gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
  for (const auto& [k, v] : t.strings) w.add_string(k, v);
  for (const auto& [k, v] : t.floats) w.add_f32(k, v);
  for (const auto& [k, v] : t.ints) w.add_u32(k, v);
  auto tensor = [&](const std::string& name, std::vector<int64_t> ne) {
    for (const auto& d : t.drop_tensors)
      if (d == name) return;
    int64_t n = 1;
    for (auto d : ne) n *= d;
    w.add_tensor(name, DType::F32, ne, std::vector<uint8_t>(static_cast<size_t>(n) * 4, 0));
  };
  const int64_t q = t.heads * t.head_dim, kv = t.kv_heads * t.head_dim;
  tensor("token_embd.weight", {t.hidden, t.vocab});
  tensor("output_norm.weight", {t.hidden});
  for (int64_t i = 0; i < t.layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    tensor(b + "attn_norm.weight", {t.hidden});
    tensor(b + "attn_q.weight", {t.hidden, q});
    tensor(b + "attn_k.weight", {t.hidden, kv});
    tensor(b + "attn_v.weight", {t.hidden, kv});
    tensor(b + "attn_q_norm.weight", {t.head_dim});
    tensor(b + "attn_k_norm.weight", {t.head_dim});
    tensor(b + "attn_output.weight", {q, t.hidden});
    tensor(b + "post_attention_norm.weight", {t.hidden});
    tensor(b + "ffn_norm.weight", {t.hidden});
    tensor(b + "ffn_gate.weight", {t.hidden, t.ffn});
    tensor(b + "ffn_up.weight", {t.hidden, t.ffn});
    tensor(b + "ffn_down.weight", {t.ffn, t.hidden});
    tensor(b + "post_ffw_norm.weight", {t.hidden});
  }
  return kiln::gguf::File::from_bytes(w.to_bytes());
}

// The key an error names (its field), or "" when there is no error.
std::string error_key(const TinyGemma& t) {
  try {
    auto f = make(t);
    kiln::frontend::read_config(f);
  } catch (const Error& e) {
    return e.field();
  }
  return "";
}

TEST(Gemma3Frontend, ReadsConfigWithLlamaCppDefaults) {
  auto f = make(TinyGemma{});
  const auto c = kiln::frontend::read_config(f);
  EXPECT_EQ(c.arch, "gemma3");
  EXPECT_EQ(c.head_dim, 8);  // key_length, not hidden / heads
  EXPECT_EQ(c.rope_mode, "neox");
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_theta_local, 1e4);  // not in the file: llama.cpp's gemma3 value
  EXPECT_EQ(c.rope_freq_scale, 1.0);
  EXPECT_EQ(c.sliding_window, 4);
  // Every 6th layer is global (i % 6 == 5).
  EXPECT_EQ(c.layer_is_local, (std::vector<bool>{true, true, true, true, true, false, true}));
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / std::sqrt(8.0));  // query_pre_attn_scalar = head_dim
  EXPECT_DOUBLE_EQ(c.embed_scale, 4.0);                  // sqrt(hidden)
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_TRUE(kiln::frontend::support_problems(f).empty());
}

TEST(Gemma3Frontend, GraphHasGemmaStructure) {
  auto f = make(TinyGemma{});
  const auto c = kiln::frontend::read_config(f);
  // max_tokens 4, context 64: local layers get rings of 4 + 4 - 1 = 7 rows.
  const auto g = kiln::frontend::build_graph(f, c, {4, 64, DType::F16});
  kiln::ir::verify(g);
  std::map<OpKind, int> ops;
  int head_norms = 0, windowed = 0, rings = 0, local_ropes = 0, global_ropes = 0;
  for (const auto& n : g.nodes()) {
    ops[n.op]++;
    if (n.op == OpKind::RmsNorm && n.attrs.count("head_dim")) ++head_norms;
    if (n.op == OpKind::Attention && n.attrs.count("window")) {
      ++windowed;
      EXPECT_EQ(n.attr_int("window"), 4);
      EXPECT_EQ(g.value(n.inputs[1]).shape[0].value, 7);
      EXPECT_TRUE(g.value(n.inputs[1]).shape[0].is_static());
    } else if (n.op == OpKind::Attention) {
      EXPECT_EQ(g.value(n.inputs[1]).shape[0].sym, "kv_len");
    }
    if (n.op == OpKind::KvStore && n.attrs.count("ring")) ++rings;
    if (n.op == OpKind::Rope) (n.attr_float("theta") == 1e4 ? local_ropes : global_ropes)++;
    if (n.op == OpKind::Embed) EXPECT_DOUBLE_EQ(n.attr_float("scale"), 4.0);
    if (n.op == OpKind::Attention) EXPECT_DOUBLE_EQ(n.attr_float("scale"), 1.0 / std::sqrt(8.0));
  }
  EXPECT_EQ(head_norms, 2 * 7);
  EXPECT_EQ(windowed, 6);
  EXPECT_EQ(rings, 2 * 6);
  EXPECT_EQ(local_ropes, 2 * 6);
  EXPECT_EQ(global_ropes, 2);
  EXPECT_EQ(ops[OpKind::GeGlu], 7);
  EXPECT_EQ(ops[OpKind::SwiGlu], 0);
  EXPECT_EQ(ops[OpKind::RmsNorm], 7 * 6 + 1);  // attn, q, k, post-attn, ffn, post-ffn; output
  // A context no longer than the ring: full caches, the window as a mask only.
  const auto small = kiln::frontend::build_graph(f, c, {4, 7, DType::F16});
  for (const auto& n : small.nodes()) EXPECT_FALSE(n.op == OpKind::KvStore && n.attrs.count("ring"));
  EXPECT_EQ(kiln::frontend::ring_rows(512, 256, 2048), 767);
  EXPECT_EQ(kiln::frontend::ring_rows(512, 256, 767), 0);
  EXPECT_EQ(kiln::frontend::ring_rows(0, 256, 2048), 0);
}

TEST(Gemma3Frontend, LayerPatternAndLocalRopeBaseKeysOverrideTheDefaults) {
  TinyGemma t;
  t.ints["gemma3.attention.sliding_window_pattern"] = 3;  // layers 2 and 5 global
  t.floats["gemma3.rope.freq_base_swa"] = 5000.0f;
  auto f = make(t);
  const auto c = kiln::frontend::read_config(f);
  EXPECT_EQ(c.layer_is_local, (std::vector<bool>{true, true, false, true, true, false, true}));
  EXPECT_EQ(c.rope_theta_local, 5000.0);
}

TEST(Gemma3Frontend, LinearRopeScalingAppliesToGlobalLayersOnly) {
  TinyGemma t;
  t.strings["gemma3.rope.scaling.type"] = "linear";
  t.floats["gemma3.rope.scaling.factor"] = 8.0f;
  auto f = make(t);
  const auto c = kiln::frontend::read_config(f);
  EXPECT_DOUBLE_EQ(c.rope_freq_scale, 0.125);
  const auto g = kiln::frontend::build_graph(f, c, {4, 64, DType::F16});
  int scaled = 0;
  for (const auto& n : g.nodes())
    if (n.op == OpKind::Rope && n.attrs.count("freq_scale")) {
      ++scaled;
      EXPECT_EQ(n.attr_float("theta"), 1e6);  // global layers only
      EXPECT_DOUBLE_EQ(n.attr_float("freq_scale"), 0.125);
    }
  EXPECT_EQ(scaled, 2);
}

TEST(Gemma3Frontend, ErrorsNameTheKey) {
  for (const char* k : {"gemma3.attention.sliding_window", "gemma3.rope.freq_base",
                        "gemma3.attention.layer_norm_rms_epsilon", "gemma3.attention.key_length",
                        "gemma3.block_count"}) {
    TinyGemma t;
    t.drop_keys = {k};
    EXPECT_EQ(error_key(t), k) << "missing " << k;
  }
  {  // a key kiln does not know may change the arithmetic (Gemma 2's soft-capping): refused, named
    TinyGemma t;
    t.floats["gemma3.final_logit_softcapping"] = 30.0f;
    EXPECT_EQ(error_key(t), "gemma3.final_logit_softcapping");
  }
  {  // a layer pattern in a form kiln does not read is refused, not silently replaced by the default
    TinyGemma t;
    t.strings["gemma3.attention.sliding_window_pattern"] = "LLLLLG";
    EXPECT_EQ(error_key(t), "gemma3.attention.sliding_window_pattern");
  }
  {
    TinyGemma t;
    t.strings["gemma3.rope.scaling.type"] = "yarn";
    EXPECT_EQ(error_key(t), "gemma3.rope.scaling.type");
  }
  {
    TinyGemma t;
    t.strings["gemma3.rope.scaling.type"] = "linear";  // without a factor
    EXPECT_EQ(error_key(t), "gemma3.rope.scaling.factor");
  }
  {  // a missing tensor is a support problem naming the tensor
    TinyGemma t;
    t.drop_tensors = {"blk.3.attn_k_norm.weight"};
    auto f = make(t);
    auto problems = kiln::frontend::support_problems(f);
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_NE(problems[0].find("blk.3.attn_k_norm.weight"), std::string::npos) << problems[0];
  }
}

}  // namespace
