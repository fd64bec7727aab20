// Tokenizer tests: golden ids from llama.cpp (tests/golden/make_tokenizer_golden.py)
// for SmolLM2 (byte-level BPE, pre "smollm") and Gemma 3 (SPM, 262k vocab);
// chat templates against jinja2 renders of the real template text; GGUF import
// errors; streaming UTF-8 decoding.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "compiler/gguf/gguf.h"
#include "compiler/tokenizer/import.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using kiln::rt::Tokenizer;

namespace {

fs::path source_dir() {
  const char* s = std::getenv("KILN_SOURCE_DIR");
  return s ? fs::path(s) : fs::path(KILN_SOURCE_DIR);
}
fs::path model_dir() {
  const char* m = std::getenv("KILN_MODEL_DIR");
  return m ? fs::path(m) : source_dir() / ".cache" / "models";
}
json load_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  return json::parse(in);
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// One tokenizer per model, built once (the Gemma vocab is 262k tokens).
struct Loaded {
  std::unique_ptr<Tokenizer> tok;
  json golden;
  std::string skip;
};
Loaded& load(const std::string& name) {
  static std::map<std::string, Loaded> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Loaded& l = cache[name];
  l.golden = load_json(source_dir() / "tests" / "golden" / "tokenizer" / (name + ".json"));
  fs::path model = model_dir() / l.golden["model_file"].get<std::string>();
  if (!fs::exists(model)) {
    l.skip = model.string() + " not found: run fetch_models.sh (or set KILN_MODEL_DIR)";
    return l;
  }
  auto f = kiln::gguf::File::open(model.string());
  auto vocab = kiln::tokenizer::import_vocab(f);
  // Other BPE pre-tokenizers are checked on SmolLM2's vocab with tokenizer.ggml.pre replaced.
  if (l.golden.contains("pre_override")) vocab.pre = l.golden["pre_override"];
  l.tok = std::make_unique<Tokenizer>(std::move(vocab));
  return l;
}

class GoldenTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTokenizer, EncodeMatchesLlamaCpp) {
  Loaded& l = load(GetParam());
  if (!l.tok) GTEST_SKIP() << l.skip;
  ASSERT_GE(l.golden["cases"].size(), 60u);
  int failures = 0;
  for (const auto& c : l.golden["cases"]) {
    std::string text = c["text"];
    auto ids = l.tok->encode(text, c["add_special"], c["parse_special"]);
    auto want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids, want) << "text: '" << text << "' add_special=" << c["add_special"]
                         << " parse_special=" << c["parse_special"];
    if (ids != want && ++failures > 10) break;
  }
}

TEST_P(GoldenTokenizer, DecodeRoundTrips) {
  Loaded& l = load(GetParam());
  if (!l.tok) GTEST_SKIP() << l.skip;
  int n = 0;
  for (const auto& c : l.golden["cases"]) {
    if (!c["roundtrip"].get<bool>()) continue;
    std::string text = c["text"];
    auto ids = l.tok->encode(text, false, c["parse_special"]);
    EXPECT_EQ(l.tok->decode(ids), text);
    ++n;
  }
  EXPECT_GT(n, 50);
}

TEST_P(GoldenTokenizer, EndOfGenerationTokensMatchLlamaCpp) {
  Loaded& l = load(GetParam());
  if (!l.tok) GTEST_SKIP() << l.skip;
  std::vector<int32_t> eog;
  for (int32_t id = 0; id < l.tok->n_vocab(); ++id)
    if (l.tok->is_eog(id)) eog.push_back(id);
  EXPECT_EQ(eog, l.golden["eog_ids"].get<std::vector<int32_t>>());
  EXPECT_TRUE(l.tok->is_eog(l.tok->eos_id()));
}

TEST_P(GoldenTokenizer, StreamDecoderEmitsOnlyCompleteUtf8) {
  Loaded& l = load(GetParam());
  if (!l.tok) GTEST_SKIP() << l.skip;
  for (const auto& c : l.golden["cases"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    kiln::rt::StreamDecoder sd(*l.tok);
    std::string all;
    for (int32_t id : ids) {
      std::string chunk = sd.push(id);
      EXPECT_TRUE(valid_utf8(chunk)) << "chunk of '" << c["text"].get<std::string>() << "'";
      all += chunk;
    }
    all += sd.flush();
    EXPECT_EQ(all, l.tok->decode(ids, /*skip_special=*/true));
  }
}

TEST_P(GoldenTokenizer, OutOfRangeIdIsAnError) {
  Loaded& l = load(GetParam());
  if (!l.tok) GTEST_SKIP() << l.skip;
  EXPECT_THROW(l.tok->token_to_piece(l.tok->n_vocab()), kiln::rt::Error);
  EXPECT_THROW(l.tok->token_to_piece(-1), kiln::rt::Error);
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenTokenizer, ::testing::Values("smollm2", "gemma3", "smollm2-pre-llama-bpe",
                                                                   "smollm2-pre-qwen2", "smollm2-pre-gpt-2",
                                                                   "smollm2-pre-default"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(Tokenizer, SmolLM2SpecialTokensAndPieces) {
  Loaded& l = load("smollm2");
  if (!l.tok) GTEST_SKIP() << l.skip;
  int32_t im_start = l.tok->find_token("<|im_start|>");
  ASSERT_GE(im_start, 0);
  auto with = l.tok->encode("<|im_start|>", false, true);
  EXPECT_EQ(with, std::vector<int32_t>{im_start});
  auto without = l.tok->encode("<|im_start|>", false, false);
  EXPECT_GT(without.size(), 1u);  // split into ordinary pieces
  EXPECT_EQ(l.tok->decode(without), "<|im_start|>");
  EXPECT_EQ(l.tok->token_to_piece(im_start, /*special=*/false), "");
  EXPECT_EQ(l.tok->decode(with, /*skip_special=*/true), "");
}

TEST(Tokenizer, StreamHoldsBackSplitCharacter) {
  Loaded& l = load("gemma3");
  if (!l.tok) GTEST_SKIP() << l.skip;
  // A rare character that the SPM vocab spells with <0xXX> byte tokens.
  std::string text = "\xF0\x9F\xAA\xBF";  // U+1FABF
  auto ids = l.tok->encode(text, false, false);
  ASSERT_EQ(ids.size(), 4u) << "expected byte fallback";
  kiln::rt::StreamDecoder sd(*l.tok);
  EXPECT_EQ(sd.push(ids[0]), "");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.push(ids[2]), "");
  EXPECT_EQ(sd.push(ids[3]), text);
  EXPECT_EQ(sd.flush(), "");
}

TEST(Tokenizer, Utf8CompletePrefix) {
  using kiln::rt::utf8_complete_prefix;
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("a\xE2\x96"), 1u);        // 3-byte char missing one byte
  EXPECT_EQ(utf8_complete_prefix("a\xE2\x96\x81"), 4u);    // complete
  EXPECT_EQ(utf8_complete_prefix("\xF0\x9F\x98"), 0u);     // 4-byte char missing one
  EXPECT_EQ(utf8_complete_prefix("a\x80"), 2u);            // stray continuation passes through
}

// ---- synthetic vocabularies --------------------------------------------------------

kiln::rt::VocabData tiny_spm() {
  kiln::rt::VocabData v;
  v.model = kiln::rt::TokenizerModel::kSpm;
  v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "ab", "<0x41>"};
  v.scores = {0, 0, 0, -1, -2, -2, -0.5f, -0.1f, 0};
  v.token_types = {2, 3, 3, 1, 1, 1, 1, 1, 6};
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = true;
  return v;
}

TEST(Tokenizer, SpmMergesByScoreWithSpacePrefixAndByteFallback) {
  Tokenizer t(tiny_spm());
  // " ab" -> "▁ab" is one token (highest-scoring merge chain).
  EXPECT_EQ(t.encode("ab"), (std::vector<int32_t>{1, 7}));
  // "ba": no merge; space prefix alone; 'A' -> <0x41>; 'C' has no byte token -> <unk>.
  EXPECT_EQ(t.encode("baAC", false), (std::vector<int32_t>{3, 5, 4, 8, 0}));
  EXPECT_EQ(t.decode(t.encode("ab", false)), "ab");  // prefix space removed again
}

TEST(Tokenizer, RejectsBadVocab) {
  auto v = tiny_spm();
  v.bos_id = 99;
  try {
    Tokenizer t(v);
    FAIL() << "expected an error";
  } catch (const kiln::rt::Error& e) {
    EXPECT_EQ(e.code(), kiln::rt::ErrorCode::kFormat);
    EXPECT_EQ(e.field(), "tokenizer.ggml.bos_token_id");
  }
  v = tiny_spm();
  v.scores.pop_back();
  EXPECT_THROW(Tokenizer{v}, kiln::rt::Error);
  v = tiny_spm();
  v.model = kiln::rt::TokenizerModel::kBpe;
  v.pre = "no-such-pre";
  try {
    Tokenizer t(v);
    FAIL() << "expected an error";
  } catch (const kiln::rt::Error& e) {
    EXPECT_EQ(e.code(), kiln::rt::ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos);
  }
}

// Minimal GGUF v3 image with only string metadata, to test import errors.
std::vector<uint8_t> gguf_with_strings(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::vector<uint8_t> b;
  auto u32 = [&](uint32_t x) { for (int i = 0; i < 4; ++i) b.push_back(uint8_t(x >> (8 * i))); };
  auto u64 = [&](uint64_t x) { for (int i = 0; i < 8; ++i) b.push_back(uint8_t(x >> (8 * i))); };
  auto str = [&](const std::string& s) {
    u64(s.size());
    for (char c : s) b.push_back(uint8_t(c));
  };
  for (char c : std::string("GGUF")) b.push_back(uint8_t(c));
  u32(3);
  u64(0);
  u64(kv.size());
  for (auto& [k, v] : kv) {
    str(k);
    u32(8);  // STRING
    str(v);
  }
  while (b.size() % 32) b.push_back(0);
  return b;
}

TEST(TokenizerImport, UnsupportedModelIsRejected) {
  auto f = kiln::gguf::File::from_bytes(
      gguf_with_strings({{"general.architecture", "llama"}, {"tokenizer.ggml.model", "bert"}}));
  try {
    kiln::tokenizer::import_vocab(f);
    FAIL() << "expected an error";
  } catch (const kiln::Error& e) {
    EXPECT_EQ(e.code(), kiln::ErrorCode::kUnsupported);
    EXPECT_EQ(e.field(), "tokenizer.ggml.model");
  }
}

TEST(TokenizerImport, MissingTokenizerIsFormatError) {
  auto f = kiln::gguf::File::from_bytes(gguf_with_strings({{"general.architecture", "llama"}}));
  try {
    kiln::tokenizer::import_vocab(f);
    FAIL() << "expected an error";
  } catch (const kiln::Error& e) {
    EXPECT_EQ(e.code(), kiln::ErrorCode::kFormat);
  }
  auto g = kiln::gguf::File::from_bytes(
      gguf_with_strings({{"general.architecture", "llama"}, {"tokenizer.ggml.model", "gpt2"}}));
  EXPECT_THROW(kiln::tokenizer::import_vocab(g), kiln::Error);  // no tokens
}

TEST(TokenizerImport, ReadsSmolLM2Metadata) {
  fs::path p = model_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(p)) GTEST_SKIP() << p << " not found: run fetch_models.sh";
  auto v = kiln::tokenizer::import_vocab(kiln::gguf::File::open(p.string()));
  EXPECT_EQ(v.model, kiln::rt::TokenizerModel::kBpe);
  EXPECT_EQ(v.pre, "smollm");
  EXPECT_EQ(v.tokens.size(), 49152u);
  EXPECT_EQ(v.merges.size(), 48900u);
  EXPECT_EQ(v.tokens[v.eos_id], "<|im_end|>");
  EXPECT_FALSE(v.add_bos);
  EXPECT_NE(v.chat_template.find("<|im_start|>"), std::string::npos);
}

// ---- chat templates -------------------------------------------------------------

TEST(ChatTemplate, MatchesJinjaRenders) {
  json g = load_json(source_dir() / "tests" / "golden" / "tokenizer" / "chat_templates.json");
  ASSERT_EQ(g.size(), 3u);
  for (const auto& t : g) {
    auto tmpl = kiln::rt::parse_chat_template(t["template"].get<std::string>(), t["bos_token"]);
    for (const auto& r : t["renders"]) {
      std::vector<kiln::rt::ChatMessage> msgs;
      for (const auto& m : r["messages"]) msgs.push_back({m["role"], m["content"]});
      if (r["expected"].is_null()) {
        EXPECT_THROW(kiln::rt::apply_chat_template(tmpl, msgs, r["add_generation_prompt"]), kiln::rt::Error)
            << t["name"];
      } else {
        EXPECT_EQ(kiln::rt::apply_chat_template(tmpl, msgs, r["add_generation_prompt"]),
                  r["expected"].get<std::string>())
            << t["name"];
      }
    }
  }
}

TEST(ChatTemplate, DetectsFamilies) {
  using kiln::rt::ChatFamily;
  EXPECT_EQ(kiln::rt::detect_chat_family("{{'<|im_start|>' + m}}"), ChatFamily::kChatML);
  EXPECT_EQ(kiln::rt::detect_chat_family("<|start_header_id|>"), ChatFamily::kLlama3);
  EXPECT_EQ(kiln::rt::detect_chat_family("<start_of_turn>"), ChatFamily::kGemma);
  EXPECT_EQ(kiln::rt::detect_chat_family("[INST]"), ChatFamily::kUnknown);
  EXPECT_THROW(kiln::rt::parse_chat_template(""), kiln::rt::Error);
}

TEST(ChatTemplate, SmolLM2DefaultSystemPromptFromGguf) {
  Loaded& l = load("smollm2");
  if (!l.tok) GTEST_SKIP() << l.skip;
  auto t = kiln::rt::chat_template_from_vocab(l.tok->vocab());
  EXPECT_EQ(t.family, kiln::rt::ChatFamily::kChatML);
  EXPECT_EQ(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  // The rendered prompt tokenizes into the chat control tokens.
  std::vector<kiln::rt::ChatMessage> msgs{{"user", "Hi"}};
  auto ids = l.tok->encode(kiln::rt::apply_chat_template(t, msgs, true), false, true);
  EXPECT_EQ(ids.front(), l.tok->find_token("<|im_start|>"));
}

}  // namespace
