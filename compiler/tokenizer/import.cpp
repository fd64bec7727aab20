#include "compiler/tokenizer/import.h"

#include "runtime/error.h"
#include "runtime/tokenizer/pretokenizer.h"

namespace kiln::tokenizer {
namespace {

int32_t get_id(const gguf::File& f, const char* key, size_t n_vocab) {
  auto v = f.get_i64(key);
  if (!v) return -1;
  if (*v < 0 || uint64_t(*v) >= n_vocab)
    throw Error(ErrorCode::kFormat,
                std::string(key) + " = " + std::to_string(*v) + " is outside the vocabulary (" +
                    std::to_string(n_vocab) + " tokens)",
                key);
  return int32_t(*v);
}

}  // namespace

// Gemma's turn format (<start_of_turn>user|model ... <end_of_turn>), written
// for kiln; the runtime renders it as its Gemma family (runtime/tokenizer/chat_template.cpp).
const char* const kGemmaChatTemplate =
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

rt::VocabData import_vocab(const gguf::File& f) {
  rt::VocabData d;
  auto model = f.get_string("tokenizer.ggml.model");
  if (!model)
    throw Error(ErrorCode::kFormat, "GGUF has no tokenizer (tokenizer.ggml.model is missing)",
                "tokenizer.ggml.model");
  if (*model == "gpt2") {
    d.model = rt::TokenizerModel::kBpe;
  } else if (*model == "llama") {
    d.model = rt::TokenizerModel::kSpm;
  } else {
    throw Error(ErrorCode::kUnsupported,
                "tokenizer model '" + *model + "' is not supported; kiln supports 'gpt2' (byte-level BPE) and "
                "'llama' (SentencePiece)",
                "tokenizer.ggml.model");
  }
  d.pre = f.get_string("tokenizer.ggml.pre").value_or("default");

  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty())
    throw Error(ErrorCode::kFormat, "tokenizer.ggml.tokens is missing or empty", "tokenizer.ggml.tokens");
  d.tokens = std::move(*tokens);
  const size_t n = d.tokens.size();
  if (n > size_t(INT32_MAX))
    throw Error(ErrorCode::kFormat, "vocabulary too large", "tokenizer.ggml.tokens");

  if (auto s = f.get_f32_array("tokenizer.ggml.scores")) {
    if (s->size() != n)
      throw Error(ErrorCode::kFormat,
                  "tokenizer.ggml.scores has " + std::to_string(s->size()) + " entries, tokens has " +
                      std::to_string(n),
                  "tokenizer.ggml.scores");
    d.scores = std::move(*s);
  }
  if (auto t = f.get_i64_array("tokenizer.ggml.token_type")) {
    if (t->size() != n)
      throw Error(ErrorCode::kFormat,
                  "tokenizer.ggml.token_type has " + std::to_string(t->size()) + " entries, tokens has " +
                      std::to_string(n),
                  "tokenizer.ggml.token_type");
    d.token_types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      int64_t v = (*t)[i];
      if (v < 0 || v > 6)
        throw Error(ErrorCode::kFormat,
                    "token " + std::to_string(i) + " has unknown token type " + std::to_string(v),
                    "tokenizer.ggml.token_type");
      d.token_types.push_back(int32_t(v));
    }
  }
  if (d.model == rt::TokenizerModel::kBpe) {
    auto m = f.get_string_array("tokenizer.ggml.merges");
    if (!m)
      throw Error(ErrorCode::kFormat, "BPE tokenizer without tokenizer.ggml.merges", "tokenizer.ggml.merges");
    d.merges = std::move(*m);
  }

  d.bos_id = get_id(f, "tokenizer.ggml.bos_token_id", n);
  d.eos_id = get_id(f, "tokenizer.ggml.eos_token_id", n);
  d.eot_id = get_id(f, "tokenizer.ggml.eot_token_id", n);
  d.eom_id = get_id(f, "tokenizer.ggml.eom_token_id", n);
  d.pad_id = get_id(f, "tokenizer.ggml.padding_token_id", n);
  d.unk_id = get_id(f, "tokenizer.ggml.unknown_token_id", n);
  d.sep_id = get_id(f, "tokenizer.ggml.seperator_token_id", n);  // sic: the GGUF key's spelling

  // Defaults as llama.cpp: SPM adds BOS and a space prefix unless told otherwise.
  const bool spm = d.model == rt::TokenizerModel::kSpm;
  d.add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(spm);
  d.add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  d.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(spm);
  if (d.add_bos && d.bos_id < 0) d.add_bos = false;  // nothing to add
  if (d.add_eos && d.eos_id < 0) d.add_eos = false;
  d.chat_template = f.get_string("tokenizer.chat_template").value_or("");
  // Gemma 3 conversions often carry no chat template (the real 270M Q4_K_M
  // file has none), yet the model is trained on one turn format: give it that
  // format, so `--chat` works and the plan records what is rendered.
  if (d.chat_template.empty() && f.architecture() == "gemma3") d.chat_template = kGemmaChatTemplate;

  // Reject an unknown BPE pre-tokenizer now, at compile time, with the GGUF key named.
  if (d.model == rt::TokenizerModel::kBpe) {
    try {
      rt::Pretokenizer check(d.pre);
    } catch (const rt::Error& e) {
      throw Error(ErrorCode::kUnsupported, e.what(), "tokenizer.ggml.pre");
    }
  }
  return d;
}

}  // namespace kiln::tokenizer
