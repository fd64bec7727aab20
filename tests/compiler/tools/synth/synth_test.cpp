// kiln synth: the GGUF writer and the synthetic models, read back through
// kiln::gguf::File (the project's validating reader) and ir::dequantize.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "compiler/gguf/gguf.h"
#include "compiler/gguf/writer.h"
#include "compiler/tools/synth/model.h"
#include "compiler/tools/synth/vocab.h"
#include "compiler/tools/synth/weights.h"
#include "ir/dequant.h"
#include "ir/error.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using gguf::ValueType;
using ir::DType;

const std::vector<std::string> kTinyTypes = {"f32",  "f16",  "bf16", "q4_0", "q4_1",
                                             "q5_0", "q5_1", "q8_0", "q2_k", "q3_k",
                                             "q4_k", "q5_k", "q6_k"};

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("kiln_synth_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

uint64_t fnv(const std::vector<uint8_t>& b) { return synth::hash_name(reinterpret_cast<const char*>(b.data()), b.size()); }

// ---------------------------------------------------------------- writer

TEST(GgufWriter, EveryValueTypeRoundTrips) {
  gguf::Writer w;
  w.add_u8("u8", 200);
  w.add_i8("i8", -100);
  w.add_u16("u16", 60000);
  w.add_i16("i16", -30000);
  w.add_u32("u32", 4000000000u);
  w.add_i32("i32", -2000000000);
  w.add_u64("u64", 1ull << 60);
  w.add_i64("i64", -(1ll << 60));
  w.add_f32("f32", 0.25f);
  w.add_f64("f64", -1e300);
  w.add_bool("bool", true);
  w.add_string("str", "héllo");
  w.add_string_array("strs", {"a", "", "ccc"});
  w.add_i32_array("i32s", {1, -2, 3});
  w.add_u32_array("u32s", {7, 8});
  w.add_f32_array("f32s", {1.5f, -2.5f});
  // Nested array of u8 arrays through the generic entry point.
  gguf::Array inner{ValueType::UINT8, {{ValueType::UINT8, uint64_t{1}}, {ValueType::UINT8, uint64_t{2}}}};
  gguf::Array outer{ValueType::ARRAY, {{ValueType::ARRAY, inner}, {ValueType::ARRAY, inner}}};
  w.add_value("nested", {ValueType::ARRAY, outer});
  w.add_tensor("t", DType::F32, {4}, std::vector<uint8_t>(16, 0));

  auto f = gguf::File::from_bytes(w.to_bytes());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 17u);
  EXPECT_EQ(f.find("u8")->type, ValueType::UINT8);
  EXPECT_EQ(f.get_u64("u8"), 200u);
  EXPECT_EQ(f.find("i8")->type, ValueType::INT8);
  EXPECT_EQ(f.get_i64("i8"), -100);
  EXPECT_EQ(f.get_u64("u16"), 60000u);
  EXPECT_EQ(f.get_i64("i16"), -30000);
  EXPECT_EQ(f.get_u32("u32"), 4000000000u);
  EXPECT_EQ(f.find("i32")->type, ValueType::INT32);
  EXPECT_EQ(f.get_i64("i32"), -2000000000);
  EXPECT_EQ(f.get_u64("u64"), 1ull << 60);
  EXPECT_EQ(f.get_i64("i64"), -(1ll << 60));
  EXPECT_EQ(f.find("f32")->type, ValueType::FLOAT32);
  EXPECT_EQ(f.get_f32("f32"), 0.25f);
  EXPECT_EQ(f.get_f64("f64"), -1e300);
  EXPECT_EQ(f.get_bool("bool"), true);
  EXPECT_EQ(f.get_string("str"), "héllo");
  EXPECT_EQ(f.get_string_array("strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get_i64_array("i32s"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_i64_array("u32s"), (std::vector<int64_t>{7, 8}));
  EXPECT_EQ(f.get_f32_array("f32s"), (std::vector<float>{1.5f, -2.5f}));
  const auto* nested = f.find("nested");
  ASSERT_NE(nested, nullptr);
  const auto& a = std::get<gguf::Array>(nested->v);
  ASSERT_EQ(a.items.size(), 2u);
  const auto& a0 = std::get<gguf::Array>(a.items[1].v);
  ASSERT_EQ(a0.items.size(), 2u);
  EXPECT_EQ(std::get<uint64_t>(a0.items[1].v), 2u);
}

TEST(GgufWriter, TensorsAreAlignedAndBytesPreserved) {
  for (uint64_t align : {32u, 64u, 4096u}) {
    gguf::Writer w(align);
    std::vector<uint8_t> a(6 * 4), b(34 * 2);
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i + 1);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(200 - i);
    w.add_string("general.architecture", "test");
    w.add_tensor("a", DType::F32, {3, 2}, a);
    w.add_tensor("b", DType::Q8_0, {64}, b);
    const auto bytes = w.to_bytes();
    EXPECT_EQ(bytes.size(), w.file_size());
    EXPECT_EQ(bytes.size() % align, 0u);
    auto f = gguf::File::from_bytes(bytes);
    EXPECT_EQ(f.alignment(), align);
    EXPECT_EQ(f.get_u32("general.alignment").has_value(), align != 32);
    EXPECT_EQ(f.data_offset() % align, 0u);
    ASSERT_EQ(f.tensors().size(), 2u);
    const auto* ta = f.find_tensor("a");
    const auto* tb = f.find_tensor("b");
    ASSERT_TRUE(ta && tb);
    EXPECT_EQ(ta->ne, (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(tb->type, DType::Q8_0);
    EXPECT_EQ(tb->offset % align, 0u);
    EXPECT_EQ(std::memcmp(ta->data, a.data(), a.size()), 0);
    EXPECT_EQ(std::memcmp(tb->data, b.data(), b.size()), 0);
  }
}

TEST(GgufWriter, RejectsBadInput) {
  gguf::Writer w;
  w.add_u32("k", 1);
  EXPECT_THROW(w.add_u32("k", 2), Error);
  EXPECT_THROW(w.add_string("", "x"), Error);
  EXPECT_THROW(w.set_alignment(48), Error);
  EXPECT_THROW(w.set_alignment(0), Error);
  EXPECT_THROW(w.add_value("bad", {ValueType::UINT8, uint64_t{300}}), Error);
  EXPECT_THROW(w.add_value("bad2", {ValueType::INT32, uint64_t{1}}), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, std::vector<uint8_t>(15)), Error);  // size
  EXPECT_THROW(w.add_tensor("t", DType::Q4_K, {128}, std::vector<uint8_t>(72)), Error);  // block
  EXPECT_THROW(w.add_tensor("t", DType::F32, {}, std::vector<uint8_t>()), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {0}, std::vector<uint8_t>()), Error);
  EXPECT_THROW(w.add_tensor(std::string(64, 'x'), DType::F32, {1}, std::vector<uint8_t>(4)), Error);
  w.add_tensor("t", DType::F32, {1}, std::vector<uint8_t>(4));
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1}, std::vector<uint8_t>(4)), Error);
  EXPECT_EQ(w.tensors().size(), 1u);
  try {
    w.add_tensor("u", DType::F32, {4}, std::vector<uint8_t>(3));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(e.field(), "u");
  }
}

TEST(GgufWriter, SourceWritingTheWrongSizeFails) {
  gguf::Writer w;
  w.add_tensor("short", DType::F32, {4}, [](gguf::ByteSink& s) { uint8_t b[8] = {}; s.write(b, 8); });
  EXPECT_THROW(w.to_bytes(), Error);
  gguf::Writer w2;
  w2.add_tensor("long", DType::F32, {1}, [](gguf::ByteSink& s) { uint8_t b[8] = {}; s.write(b, 8); });
  EXPECT_THROW(w2.to_bytes(), Error);
}

TEST(GgufWriter, FailedWriteLeavesTargetUntouched) {
  const fs::path dir = temp_dir();
  const fs::path target = dir / "keep.gguf";
  { std::ofstream(target) << "previous contents"; }
  gguf::Writer w;
  w.add_tensor("ok", DType::F32, {1024}, std::vector<uint8_t>(4096, 1));
  w.add_tensor("boom", DType::F32, {1024}, [](gguf::ByteSink& s) {
    std::vector<uint8_t> half(2048, 2);
    s.write(half.data(), half.size());
    throw Error(ErrorCode::kInternal, "source failed");
  });
  EXPECT_THROW(w.write(target.string()), Error);
  const auto after = read_all(target);
  EXPECT_EQ(std::string(after.begin(), after.end()), "previous contents");
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  // Unwritable destination: a clear kIo error.
  try {
    w.write((dir / "no" / "such" / "dir.gguf").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
  }
  fs::remove_all(dir);
}

TEST(GgufWriter, WriteMatchesToBytesAndReportsProgress) {
  const fs::path dir = temp_dir();
  gguf::Writer w;
  w.add_string("general.architecture", "test");
  w.add_tensor("a", DType::F16, {3000}, std::vector<uint8_t>(6000, 7));
  w.add_tensor("b", DType::F32, {10}, std::vector<uint8_t>(40, 9));
  uint64_t last = 0, calls = 0, total_seen = 0;
  w.write((dir / "p.gguf").string(), [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last);
    last = done;
    total_seen = total;
    ++calls;
  });
  EXPECT_GT(calls, 0u);
  EXPECT_EQ(last, 6040u);
  EXPECT_EQ(total_seen, 6040u);
  EXPECT_EQ(read_all(dir / "p.gguf"), w.to_bytes());
  fs::remove_all(dir);
}

// ---------------------------------------------------------------- weights

// synth writes fp16 scales and weights with the IR's converter.
TEST(SynthWeights, Fp16ConversionRoundsToNearestEven) {
  EXPECT_EQ(ir::fp32_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(ir::fp32_to_fp16(-2.0f), 0xC000);
  EXPECT_EQ(ir::fp32_to_fp16(65504.0f), 0x7BFF);
  EXPECT_EQ(ir::fp32_to_fp16(1e6f), 0x7C00);
  EXPECT_EQ(ir::fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(ir::fp32_to_fp16(std::ldexp(1.0f, -26)), 0x0000);  // below half of it
  EXPECT_EQ(ir::fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(ir::fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(synth::f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(synth::f32_to_bf16(-0.5f), 0xBF00);
}

TEST(SynthWeights, EveryTypeDequantisesToFiniteValuesOfTheRequestedScale) {
  for (const auto& name : kTinyTypes) {
    const DType t = *ir::dtype_from_name(name);
    const int64_t n = 256 * 64;
    std::vector<uint8_t> bytes;
    synth::append_blocks(t, 123, {0.0f, 0.02f}, 0, n / ir::dtype_info(t).block_elems, bytes);
    ASSERT_EQ(bytes.size(), ir::row_bytes(t, n)) << name;
    std::vector<float> x(n);
    ir::dequantize(t, bytes.data(), x.data(), n);
    double sum = 0, sq = 0;
    for (float v : x) {
      ASSERT_TRUE(std::isfinite(v)) << name;
      sum += v;
      sq += double(v) * v;
    }
    const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    EXPECT_NEAR(sd, 0.02, 0.006) << name;
    EXPECT_LT(std::fabs(mean), 0.002) << name;
  }
}

TEST(SynthWeights, ChunkingDoesNotChangeTheBytes) {
  for (const auto& name : kTinyTypes) {
    const DType t = *ir::dtype_from_name(name);
    const uint64_t nb = 100;
    std::vector<uint8_t> whole, parts;
    synth::append_blocks(t, 9, {}, 0, nb, whole);
    synth::append_blocks(t, 9, {}, 0, 37, parts);
    synth::append_blocks(t, 9, {}, 37, 1, parts);
    synth::append_blocks(t, 9, {}, 38, nb - 38, parts);
    EXPECT_EQ(whole, parts) << name;
    std::vector<uint8_t> other;
    synth::append_blocks(t, 10, {}, 0, nb, other);
    EXPECT_NE(whole, other) << name;
  }
}

// ---------------------------------------------------------------- vocab

TEST(SynthVocab, TinyVocabIsConsistent) {
  const auto v = synth::make_vocab(synth::ChatStyle::kChatML, 512, 10000);
  ASSERT_EQ(v.tokens.size(), 512u);
  ASSERT_EQ(v.types.size(), 512u);
  std::set<std::string> uniq(v.tokens.begin(), v.tokens.end());
  EXPECT_EQ(uniq.size(), 512u);
  for (const auto& s : synth::byte_symbols()) EXPECT_TRUE(uniq.count(s)) << s;
  EXPECT_EQ(synth::byte_symbols()[' '], "\xC4\xA0");  // GPT-2 spells the space byte U+0120
  EXPECT_EQ(synth::byte_symbols()['a'], "a");
  EXPECT_EQ(v.merges.size(), 512u - 256 - 3);
  for (const auto& m : v.merges) {
    const auto sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos);
    EXPECT_TRUE(uniq.count(m.substr(0, sp))) << m;
    EXPECT_TRUE(uniq.count(m.substr(sp + 1))) << m;
    EXPECT_TRUE(uniq.count(m.substr(0, sp) + m.substr(sp + 1))) << m;
  }
  EXPECT_EQ(v.tokens[v.bos], "<|im_start|>");
  EXPECT_EQ(v.tokens[v.eos], "<|im_end|>");
  EXPECT_EQ(v.types[v.bos], synth::kControl);
  EXPECT_NE(v.chat_template.find("<|im_start|>"), std::string::npos);
}

TEST(SynthVocab, LargeVocabHasExactSizeAndLlama3Specials) {
  const auto v = synth::make_vocab(synth::ChatStyle::kLlama3, 128256, 4096);
  ASSERT_EQ(v.tokens.size(), 128256u);
  EXPECT_EQ(v.bos, 128000);  // Llama 3's <|begin_of_text|> id
  EXPECT_EQ(v.tokens[v.bos], "<|begin_of_text|>");
  EXPECT_EQ(v.tokens[v.eos], "<|eot_id|>");
  EXPECT_TRUE(v.add_bos);
  EXPECT_EQ(std::set<std::string>(v.tokens.begin(), v.tokens.end()).size(), v.tokens.size());
  EXPECT_THROW(synth::make_vocab(synth::ChatStyle::kChatML, 200, 10), Error);
}

// ---------------------------------------------------------------- models

TEST(SynthModel, TinyModelOfEveryTypeReadsBack) {
  const fs::path dir = temp_dir();
  auto types = kTinyTypes;
  types.push_back("q4_k_m");
  for (const auto& type : types) {
    SCOPED_TRACE(type);
    const fs::path p = dir / ("tiny_" + type + ".gguf");
    const auto w = synth::build_model({"tiny", type, 5});
    w.write(p.string());
    auto f = gguf::File::open(p.string());
    EXPECT_EQ(f.file_size(), w.file_size());
    EXPECT_EQ(f.architecture(), "llama");
    EXPECT_EQ(f.get_u32("llama.embedding_length"), 256u);
    EXPECT_EQ(f.get_u32("llama.block_count"), 2u);
    EXPECT_EQ(f.get_u32("llama.attention.head_count"), 4u);
    EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), 2u);
    EXPECT_EQ(f.get_u32("llama.feed_forward_length"), 512u);
    EXPECT_EQ(f.get_u32("llama.rope.dimension_count"), 64u);
    EXPECT_EQ(f.get_u32("llama.vocab_size"), 512u);
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
    const auto toks = f.get_string_array("tokenizer.ggml.tokens");
    ASSERT_TRUE(toks.has_value());
    EXPECT_EQ(toks->size(), 512u);
    EXPECT_EQ((*toks)[*f.get_u32("tokenizer.ggml.bos_token_id")], "<|im_start|>");
    EXPECT_EQ((*toks)[*f.get_u32("tokenizer.ggml.eos_token_id")], "<|im_end|>");
    EXPECT_TRUE(f.get_string("tokenizer.chat_template").has_value());
    EXPECT_EQ(f.get_u32("general.file_type"), synth::file_type(type));

    // 1 embedding + 2 layers x 9 + output_norm + output (untied).
    ASSERT_EQ(f.tensors().size(), 21u);
    const DType mm = type == "q4_k_m" ? DType::Q4_K : *ir::dtype_from_name(type);
    for (const auto& t : f.tensors()) {
      SCOPED_TRACE(t.name);
      const bool norm = t.name.find("_norm") != std::string::npos;
      if (norm) {
        EXPECT_EQ(t.type, DType::F32);
        EXPECT_EQ(t.ne, (std::vector<int64_t>{256}));
      } else if (type != "q4_k_m") {
        EXPECT_EQ(t.type, mm);
      }
      std::vector<float> x(t.n_elements);
      ir::dequantize(t.type, t.data, x.data(), static_cast<int64_t>(t.n_elements));
      for (float v : x) ASSERT_TRUE(std::isfinite(v));
    }
    EXPECT_EQ(f.find_tensor("token_embd.weight")->ne, (std::vector<int64_t>{256, 512}));
    EXPECT_EQ(f.find_tensor("output.weight")->ne, (std::vector<int64_t>{256, 512}));
    EXPECT_EQ(f.find_tensor("blk.1.attn_q.weight")->ne, (std::vector<int64_t>{256, 256}));
    EXPECT_EQ(f.find_tensor("blk.1.attn_k.weight")->ne, (std::vector<int64_t>{256, 128}));
    EXPECT_EQ(f.find_tensor("blk.1.attn_v.weight")->ne, (std::vector<int64_t>{256, 128}));
    EXPECT_EQ(f.find_tensor("blk.1.attn_output.weight")->ne, (std::vector<int64_t>{256, 256}));
    EXPECT_EQ(f.find_tensor("blk.0.ffn_gate.weight")->ne, (std::vector<int64_t>{256, 512}));
    EXPECT_EQ(f.find_tensor("blk.0.ffn_up.weight")->ne, (std::vector<int64_t>{256, 512}));
    EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->ne, (std::vector<int64_t>{512, 256}));
    if (type == "q4_k_m") {
      // With 2 layers, use_more_bits(i, 2) picks layer 1 only (i >= 7n/8 = 1).
      EXPECT_EQ(f.find_tensor("output.weight")->type, DType::Q6_K);
      EXPECT_EQ(f.find_tensor("token_embd.weight")->type, DType::Q4_K);  // untied
      EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->type, DType::Q4_K);
      EXPECT_EQ(f.find_tensor("blk.1.ffn_down.weight")->type, DType::Q6_K);
      EXPECT_EQ(f.find_tensor("blk.1.attn_v.weight")->type, DType::Q6_K);
      EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->type, DType::Q4_K);
      EXPECT_EQ(f.find_tensor("blk.0.attn_v.weight")->type, DType::Q4_K);
    }
  }
  fs::remove_all(dir);
}

TEST(SynthModel, DeterministicForASeed) {
  const auto a = synth::build_model({"tiny", "q5_k", 11}).to_bytes();
  const auto b = synth::build_model({"tiny", "q5_k", 11}).to_bytes();
  const auto c = synth::build_model({"tiny", "q5_k", 12}).to_bytes();
  EXPECT_EQ(fnv(a), fnv(b));
  EXPECT_EQ(a, b);
  EXPECT_NE(fnv(a), fnv(c));
  EXPECT_EQ(a.size(), c.size());
}

TEST(SynthModel, Q4KMMixFollowsLlamaCpp) {
  // Llama 3.1 8B: 32 layers, rows of 4096 / 14336 (all multiples of 256).
  const auto plan = synth::plan_tensors({"llama-8b", "q4_k_m", 0});
  std::map<std::string, DType> type;
  for (const auto& t : plan) type[t.name] = t.type;
  EXPECT_EQ(type["output.weight"], DType::Q6_K);
  EXPECT_EQ(type["token_embd.weight"], DType::Q4_K);
  EXPECT_EQ(type["rope_freqs.weight"], DType::F32);
  int q6_v = 0, q6_down = 0;
  for (int l = 0; l < 32; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    q6_v += type[p + "attn_v.weight"] == DType::Q6_K;
    q6_down += type[p + "ffn_down.weight"] == DType::Q6_K;
    EXPECT_EQ(type[p + "attn_q.weight"], DType::Q4_K);
    EXPECT_EQ(type[p + "ffn_up.weight"], DType::Q4_K);
  }
  // First 4 and last 4 layers, plus every third of the 24 between: 8 + 8 = 16.
  EXPECT_EQ(q6_v, 16);
  EXPECT_EQ(q6_down, 16);
  EXPECT_EQ(type["blk.0.attn_v.weight"], DType::Q6_K);
  EXPECT_EQ(type["blk.4.attn_v.weight"], DType::Q4_K);
  EXPECT_EQ(type["blk.6.attn_v.weight"], DType::Q6_K);
  EXPECT_EQ(type["blk.31.ffn_down.weight"], DType::Q6_K);

  // SmolLM2: hidden 576 is not a multiple of 256, so those rows fall back.
  const auto smol = synth::plan_tensors({"smollm2-135m", "q4_k_m", 0});
  std::map<std::string, DType> st;
  for (const auto& t : smol) st[t.name] = t.type;
  EXPECT_EQ(smol.size(), 272u);
  EXPECT_EQ(st["token_embd.weight"], DType::Q8_0);      // Q6_K (tied output) -> Q8_0
  EXPECT_EQ(st["blk.5.attn_q.weight"], DType::Q5_0);    // Q4_K -> Q5_0
  EXPECT_EQ(st["blk.0.ffn_down.weight"], DType::Q6_K);  // rows of 1536 keep the K-quant
}

TEST(SynthModel, SizesOfTheLargeGeometries) {
  // Parameter counts published for the real models (incl. tied embeddings once).
  auto params = [](const std::string& g) {
    uint64_t n = 0;
    for (const auto& t : synth::plan_tensors({g, "f16", 0})) {
      if (t.name == "rope_freqs.weight") continue;
      uint64_t e = 1;
      for (auto d : t.ne) e *= static_cast<uint64_t>(d);
      n += e;
    }
    return n;
  };
  EXPECT_NEAR(params("smollm2-135m") / 1e6, 134.5, 1.0);
  EXPECT_NEAR(params("llama-1b") / 1e9, 1.236, 0.01);
  EXPECT_NEAR(params("llama-8b") / 1e9, 8.03, 0.01);
  // Metadata-only check of a big model: building it generates no tensor data.
  const auto w = synth::build_model({"llama-8b", "q4_k_m", 1});
  EXPECT_GT(w.file_size(), 4'500'000'000ull);
  EXPECT_LT(w.file_size(), 5'200'000'000ull);
}

TEST(SynthModel, LayersOverrideKeepsTheWidths) {
  // --layers: the geometry's widths with another layer count (per-layer vs
  // per-token costs on the GPU); Q4_K_M's mix follows the new count.
  synth::SynthOptions o{"llama-8b", "q4_k_m", 0};
  o.layers = 8;
  std::map<std::string, synth::PlannedTensor> by;
  for (const auto& t : synth::plan_tensors(o)) by.emplace(t.name, t);
  std::map<std::string, synth::PlannedTensor> full;
  for (const auto& t : synth::plan_tensors({"llama-8b", "q4_k_m", 0})) full.emplace(t.name, t);
  EXPECT_EQ(by.size(), full.size() - 24 * 9);  // 9 tensors a layer
  EXPECT_TRUE(by.count("blk.7.ffn_down.weight"));
  EXPECT_FALSE(by.count("blk.8.attn_q.weight"));
  for (const char* n : {"blk.3.attn_q.weight", "blk.5.ffn_gate.weight", "output.weight", "token_embd.weight"})
    EXPECT_EQ(by.at(n).ne, full.at(n).ne) << n;
  // use_more_bits(i, 8): layers 0 and 7 (first and last eighth), 3 and 6.
  std::vector<int> q6;
  for (int l = 0; l < 8; ++l)
    if (by.at("blk." + std::to_string(l) + ".attn_v.weight").type == DType::Q6_K) q6.push_back(l);
  EXPECT_EQ(q6, (std::vector<int>{0, 3, 6, 7}));

  synth::SynthOptions t{"tiny", "q8_0", 3};
  t.layers = 5;
  const fs::path dir = temp_dir();
  const fs::path p = dir / "tiny5.gguf";
  synth::build_model(t).write(p.string());
  auto f = gguf::File::open(p.string());
  EXPECT_EQ(f.get_u32("llama.block_count"), 5u);
  EXPECT_EQ(f.tensors().size(), 1u + 5u * 9u + 2u);
  EXPECT_NE(f.get_string("general.name")->find("5 layers"), std::string::npos);
  fs::remove_all(dir);

  t.layers = -1;
  try {
    synth::plan_tensors(t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("layers"), std::string::npos);
  }
}

TEST(SynthModel, RopeFactorsFollowLlama31Scaling) {
  const auto f = synth::llama3_rope_factors(128, 500000.0f);
  ASSERT_EQ(f.size(), 64u);
  EXPECT_FLOAT_EQ(f.front(), 1.0f);  // highest frequency: unscaled
  EXPECT_FLOAT_EQ(f.back(), 8.0f);   // lowest frequency: the full factor
  for (size_t i = 1; i < f.size(); ++i) EXPECT_GE(f[i], f[i - 1]);
  EXPECT_TRUE(std::any_of(f.begin(), f.end(), [](float x) { return x > 1.0f && x < 8.0f; }));
}

TEST(SynthModel, RejectsUnknownGeometryAndType) {
  try {
    synth::build_model({"llama-70b", "f16", 0});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("smollm2-135m"), std::string::npos);
  }
  EXPECT_THROW(synth::build_model({"tiny", "iq2_xxs", 0}), Error);
  EXPECT_THROW(synth::build_model({"tiny", "i32", 0}), Error);
}

}  // namespace
}  // namespace kiln
