// Qwen2 (llama + q/k/v biases, NeoX RoPE) through the whole compile driver: the
// fused QKV carries a fused bias "bq+bk+bv", which the driver stores as one
// vector blob; the plan verifies.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "compiler/compile/compile.h"
#include "compiler/gguf/writer.h"
#include "compiler/tools/synth/vocab.h"
#include "runtime/kiln_runtime.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

void write_qwen2(const std::string& path) {
  const int64_t layers = 2, hidden = 64, heads = 4, kv = 2, hd = 16, ffn = 128;
  auto v = synth::make_vocab(synth::ChatStyle::kChatML, 300, 20);
  gguf::Writer w;
  w.add_string("general.architecture", "qwen2");
  w.add_string("general.name", "tiny-qwen2");
  w.add_u32("qwen2.block_count", layers);
  w.add_u32("qwen2.embedding_length", hidden);
  w.add_u32("qwen2.feed_forward_length", ffn);
  w.add_u32("qwen2.attention.head_count", heads);
  w.add_u32("qwen2.attention.head_count_kv", kv);
  w.add_u32("qwen2.context_length", 256);
  w.add_f32("qwen2.rope.freq_base", 1000000.0f);
  w.add_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "qwen2");
  w.add_string_array("tokenizer.ggml.tokens", v.tokens);
  w.add_i32_array("tokenizer.ggml.token_type", v.types);
  w.add_string_array("tokenizer.ggml.merges", v.merges);
  w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos));
  w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos));
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 0.05f);
  auto tensor = [&](const std::string& name, std::vector<int64_t> ne, float fill = 0.f) {
    int64_t n = 1;
    for (auto d : ne) n *= d;
    std::vector<float> f(static_cast<size_t>(n));
    for (auto& x : f) x = fill != 0.f ? fill : nd(rng);
    std::vector<uint8_t> bytes(f.size() * 4);
    std::memcpy(bytes.data(), f.data(), bytes.size());
    w.add_tensor(name, ir::DType::F32, ne, std::move(bytes));
  };
  const int64_t V = static_cast<int64_t>(v.tokens.size());
  tensor("token_embd.weight", {hidden, V});
  tensor("output_norm.weight", {hidden}, 1.f);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    tensor(b + "attn_norm.weight", {hidden}, 1.f);
    tensor(b + "attn_q.weight", {hidden, heads * hd});
    tensor(b + "attn_k.weight", {hidden, kv * hd});
    tensor(b + "attn_v.weight", {hidden, kv * hd});
    tensor(b + "attn_q.bias", {heads * hd});
    tensor(b + "attn_k.bias", {kv * hd});
    tensor(b + "attn_v.bias", {kv * hd});
    tensor(b + "attn_output.weight", {heads * hd, hidden});
    tensor(b + "ffn_norm.weight", {hidden}, 1.f);
    tensor(b + "ffn_gate.weight", {hidden, ffn});
    tensor(b + "ffn_up.weight", {hidden, ffn});
    tensor(b + "ffn_down.weight", {ffn, hidden});
  }
  w.write(path);
}

}  // namespace

TEST(Compile, Qwen2FusedBiasesBecomeOneVectorBlob) {
  auto dir = fs::temp_directory_path() / ("kiln_qwen2_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string gguf = (dir / "qwen2.gguf").string(), out = (dir / "qwen2.plan").string();
  write_qwen2(gguf);
  compile::CompileOptions o;
  o.model_path = gguf;
  o.out_path = out;
  o.sm = 90;
  o.ctx = 128;
  o.max_tokens = 16;
  o.cache_dir = (dir / "kcache").string();
  ASSERT_NO_THROW(compile::compile_model(o));
  rt::Plan plan = rt::Plan::load(out);
  EXPECT_EQ(plan.model().rope_style(), fb::RopeStyle::NeoX);
  int fused_bias = 0;
  for (const auto* wb : plan.weights()) {
    const std::string name = wb->name()->str();
    if (name.find("attn_q.bias+") == std::string::npos) continue;
    ++fused_bias;
    ASSERT_EQ(wb->shape()->size(), 1u) << name;
    EXPECT_EQ(wb->shape()->Get(0), (4 + 2 * 2) * 16) << name;
    EXPECT_EQ(wb->size(), uint64_t((4 + 2 * 2) * 16 * 4)) << name;
  }
  EXPECT_EQ(fused_bias, 2);  // one per layer
  fs::remove_all(dir);
}
