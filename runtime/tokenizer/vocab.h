// kiln::rt::VocabData: everything the run-time tokenizer needs, as plain data.
// The compiler fills it from a GGUF's tokenizer.ggml.* keys
// (compiler/tokenizer/import.h) and serialises it into the plan; the runtime
// builds a Tokenizer from it. No dependency on the compiler or ir/.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kiln::rt {

// tokenizer.ggml.model
enum class TokenizerModel {
  kBpe,  // "gpt2": byte-level BPE, merges by rank, regex pre-tokenizer
  kSpm,  // "llama": SentencePiece-style, bigram merges by score, byte fallback
};

// tokenizer.ggml.token_type values (same numbering as llama.cpp / gguf-py).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct VocabData {
  TokenizerModel model = TokenizerModel::kBpe;
  std::string pre = "default";        // tokenizer.ggml.pre (BPE pre-tokenizer name)
  std::vector<std::string> tokens;    // token text as stored in the vocab
  std::vector<float> scores;          // SPM merge scores (empty: all 0)
  std::vector<int32_t> token_types;   // TokenType values (empty: all normal)
  std::vector<std::string> merges;    // BPE merges "left right", rank = index

  int32_t bos_id = -1, eos_id = -1, eot_id = -1, eom_id = -1;
  int32_t pad_id = -1, unk_id = -1, sep_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = true;       // SPM only: prepend " " to raw text
  std::string chat_template;          // tokenizer.chat_template (Jinja), may be empty
};

}  // namespace kiln::rt
