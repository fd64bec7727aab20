// Fuzz target: the run-time tokenizer (runtime/tokenizer) on raw input, over a
// few vocabularies built once at start-up:
//   0  synthetic byte-level BPE, ChatML specials (compiler/tools/synth, as
//      `kiln synth` writes it)
//   1  synthetic byte-level BPE, Llama 3 specials
//   2  a small hand-made SentencePiece vocabulary with <0xXX> byte fallback
//   3+ the real SmolLM2 (BPE, pre "smollm") and Gemma 3 (SPM, 262k tokens)
//      vocabularies when the models are present ($KILN_MODEL_DIR, default
//      .cache/models)
// The first input byte picks the vocabulary and the mode; the rest is either
// text to encode (with / without specials), little-endian int32 token ids to
// decode (any value: out-of-range ids must be refused with rt::Error), ids fed
// to the streaming decoder, or a conversation for the chat templates.
// Checked property: byte-level BPE decodes what it encoded (valid UTF-8 text,
// no special-token parsing), as llama.cpp does.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "compiler/gguf/gguf.h"
#include "compiler/tokenizer/import.h"
#include "compiler/tools/synth/vocab.h"
#include "ir/error.h"
#include "runtime/error.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

using namespace kiln;

struct Vocab {
  std::string name;
  std::unique_ptr<rt::Tokenizer> tok;
  bool byte_level_bpe = false;
  // Byte-level BPE: which bytes have a token (SmolLM2 lacks 21 of the 256,
  // e.g. 0x04 and 0xF5..0xFF; such a byte encodes as the unknown token, as
  // no vocabulary can do better, so the round trip is checked without them).
  bool has_byte[256] = {};
};
std::vector<Vocab>* g_vocabs = nullptr;

rt::VocabData from_synth(const synth::SynthVocab& s) {
  rt::VocabData v;
  v.model = rt::TokenizerModel::kBpe;
  v.pre = s.pre;
  v.tokens = s.tokens;
  v.token_types = s.types;
  v.merges = s.merges;
  v.bos_id = s.bos;
  v.eos_id = s.eos;
  v.eot_id = s.eot;
  v.unk_id = s.unk;
  v.pad_id = s.pad;
  v.add_bos = s.add_bos;
  v.chat_template = s.chat_template;
  return v;
}

// SentencePiece-style: <unk> <s> </s>, 256 byte tokens, pieces scored by length.
rt::VocabData small_spm() {
  rt::VocabData v;
  v.model = rt::TokenizerModel::kSpm;
  v.pre = "default";
  auto add = [&](std::string t, float score, rt::TokenType type) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.token_types.push_back(static_cast<int32_t>(type));
  };
  add("<unk>", 0, rt::TokenType::kUnknown);
  add("<s>", 0, rt::TokenType::kControl);
  add("</s>", 0, rt::TokenType::kControl);
  add("<start_of_turn>", 0, rt::TokenType::kControl);
  add("<end_of_turn>", 0, rt::TokenType::kControl);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add(buf, 0, rt::TokenType::kByte);
  }
  // "▁" is U+2581, SentencePiece's space.
  static const char* const pieces[] = {"▁", "▁t", "▁th", "▁the", "t", "h", "e", "a", "n", "d", "▁a", "▁an",
                                       "▁and", "he", "th", "in", "▁in", "o", "▁o", "▁of", "f", "i", "s",
                                       "你", "好", "你好", "▁▁"};
  float score = -1;
  for (const char* p : pieces) add(p, score -= 0.5f, rt::TokenType::kNormal);
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = true;
  v.chat_template = "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ role }}\n"
                    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}";
  return v;
}

void add_vocab(const std::string& name, rt::VocabData v, bool byte_level_bpe) {
  try {
    Vocab voc{name, std::make_unique<rt::Tokenizer>(std::move(v)), byte_level_bpe};
    for (int b = 0; b < 256; ++b) voc.has_byte[b] = voc.tok->find_token(synth::byte_symbols()[b]) >= 0;
    g_vocabs->push_back(std::move(voc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_tokenizer: cannot build vocabulary %s: %s\n", name.c_str(), e.what());
    std::abort();
  }
}

void add_model_vocab(const std::filesystem::path& p, const std::string& name, bool byte_level_bpe) {
  if (!std::filesystem::exists(p)) return;
  try {
    gguf::File f = gguf::File::open(p.string());
    add_vocab(name, tokenizer::import_vocab(f), byte_level_bpe);
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", e.what());
    std::abort();
  }
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

std::vector<int32_t> ids_of(const uint8_t* data, size_t size) {
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  return ids;
}

}  // namespace

KILN_FUZZ_INIT(tokenizer) {
  g_vocabs = new std::vector<Vocab>();
  add_vocab("synth-chatml", from_synth(synth::make_vocab(synth::ChatStyle::kChatML, 600, 400)), true);
  add_vocab("synth-llama3", from_synth(synth::make_vocab(synth::ChatStyle::kLlama3, 700, 500)), true);
  add_vocab("small-spm", small_spm(), false);
  namespace fs = std::filesystem;
  const char* md = std::getenv("KILN_MODEL_DIR");
  fs::path dir = md ? fs::path(md) : fs::path(KILN_SOURCE_DIR) / ".cache" / "models";
  add_model_vocab(dir / "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2", true);
  add_model_vocab(dir / "gemma-3-270m-q4_k_m.gguf", "gemma3", false);
  return 0;
}

KILN_FUZZ_TARGET(tokenizer) {
  if (size < 1) return 0;
  const uint8_t sel = data[0];
  const Vocab& v = (*g_vocabs)[(sel & 7) % g_vocabs->size()];
  const rt::Tokenizer& tok = *v.tok;
  const int mode = (sel >> 3) & 3;
  const bool flag_a = sel & 0x20, flag_b = sel & 0x40;
  ++data;
  --size;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    switch (mode) {
      case 0: {  // encode, then decode what came out
        std::vector<int32_t> ids = tok.encode(text, flag_a, flag_b);
        for (int32_t id : ids)
          KILN_FUZZ_CHECK(id >= 0 && id < tok.n_vocab(), "encode produced id %d of %d", id, tok.n_vocab());
        std::string back = tok.decode(ids);
        if (v.byte_level_bpe && !flag_a && !flag_b && valid_utf8(text) &&
            std::all_of(text.begin(), text.end(), [&](char c) { return v.has_byte[static_cast<uint8_t>(c)]; }))
          KILN_FUZZ_CHECK(back == text, "%s: decode(encode(text)) != text (%zu vs %zu bytes)", v.name.c_str(),
                          back.size(), text.size());
        break;
      }
      case 1: {  // decode raw ids (any int32)
        std::vector<int32_t> ids = ids_of(data, size);
        for (int32_t id : ids) {
          (void)tok.is_eog(id);
          (void)tok.is_special(id);
        }
        (void)tok.decode(ids, flag_a);
        break;
      }
      case 2: {  // streaming decoder, piece by piece
        rt::StreamDecoder dec(tok, flag_a);
        std::string all;
        for (int32_t id : ids_of(data, size)) {
          if (flag_b) id = static_cast<int32_t>(static_cast<uint32_t>(id) % static_cast<uint32_t>(tok.n_vocab()));
          (void)tok.token_to_piece(id, flag_a);
          all += dec.push(id);
        }
        all += dec.flush();
        (void)rt::utf8_complete_prefix(all);
        (void)tok.find_token(text);
        break;
      }
      case 3: {  // a conversation through the chat template, then encode it
        static const char* roles[] = {"system", "user", "assistant", "tool"};
        std::vector<rt::ChatMessage> msgs;
        size_t start = 0;
        for (size_t i = 0; i <= text.size(); ++i)
          if (i == text.size() || text[i] == '\x1e') {
            msgs.push_back({roles[msgs.size() % 4 == 3 && !flag_b ? 1 : msgs.size() % 4],
                            std::string(text.substr(start, i - start))});
            start = i + 1;
          }
        rt::ChatTemplate t;
        try {
          t = rt::chat_template_from_vocab(tok.vocab());
        } catch (const rt::Error&) {
          t.family = static_cast<rt::ChatFamily>(1 + sel % 3);
        }
        std::string rendered = rt::apply_chat_template(t, msgs, flag_a);
        (void)tok.encode(rendered, false, true);
        break;
      }
    }
  } catch (const kiln::rt::Error&) {
  } catch (const kiln::Error&) {
  }
  return 0;
}
