// kiln::rt::Tokenizer: text <-> token ids at run time, built from VocabData.
//
// Behaviour follows llama.cpp's tokenizer (the de-facto reference for GGUF
// vocabularies) and is golden-tested against it (tests/runtime/tokenizer/):
//  - special tokens (CONTROL / USER_DEFINED / UNKNOWN types) are split out of the
//    text first, longest token text first, when parse_special (USER_DEFINED ones
//    always, as HF tokenizers does);
//  - BPE ("gpt2"): regex pre-tokenizer chosen by tokenizer.ggml.pre (PCRE2, UTF +
//    UCP), GPT-2 byte->unicode mapping, merges applied lowest rank first;
//  - SPM ("llama"): spaces -> U+2581, optional " " prefix, bigram merges by
//    highest score (SentencePiece BPE), <0xXX> byte fallback for unknown pieces.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/error.h"
#include "runtime/tokenizer/vocab.h"

namespace kiln::rt {

class Tokenizer {
 public:
  // Validates the vocabulary; throws rt::Error (kFormat / kUnsupported).
  explicit Tokenizer(VocabData vocab);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special: BOS/EOS as the vocab asks (add_bos / add_eos).
  // parse_special: text like "<|im_start|>" becomes that control token.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = true) const;

  // Concatenated pieces. skip_special drops CONTROL/UNKNOWN tokens (BOS, EOS,
  // <|im_end|>, ...); otherwise they are rendered as their text.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The bytes one token stands for (may be a partial UTF-8 sequence for byte
  // tokens). special=false renders CONTROL/UNKNOWN tokens as "".
  std::string token_to_piece(int32_t id, bool special = true) const;

  // End of generation: EOS, EOT, EOM and tokens such as <|im_end|>, <|eot_id|>,
  // <end_of_turn>, <|endoftext|> that the vocab holds.
  bool is_eog(int32_t id) const;
  bool is_special(int32_t id) const;  // CONTROL or UNKNOWN type

  int32_t n_vocab() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  // Id of a token by exact text, -1 if none.
  int32_t find_token(std::string_view text) const;
  const VocabData& vocab() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streaming detokenizer: feed tokens one by one, get back only complete UTF-8
// (a multi-byte character split across byte tokens is held until complete).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true)
      : tok_(&tok), skip_special_(skip_special) {}
  // Text that became complete with this token (possibly "").
  std::string push(int32_t id);
  // Whatever is still held back (an incomplete sequence at end of stream), raw.
  std::string flush();
  void reset() { pending_.clear(); }

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;
};

// Length of the longest prefix of `s` that does not end inside an incomplete
// (but so far valid) UTF-8 sequence. Invalid bytes count as complete.
size_t utf8_complete_prefix(std::string_view s);

}  // namespace kiln::rt
