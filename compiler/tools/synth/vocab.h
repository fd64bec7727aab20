// Tiny GPT-2-style byte-level BPE vocabularies for synthetic models: the 256
// byte tokens (GPT-2 bytes_to_unicode spelling), merges learnt by plain BPE
// on a small built-in English text, special tokens and a chat template, so a
// synthetic model tokenizes and chats like a real one.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kiln::synth {

enum class ChatStyle {
  kChatML,  // SmolLM2 / Qwen style: <|im_start|>role\n...<|im_end|>; specials first (ids 0..2)
  kLlama3,  // Llama 3: <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>; specials at the end
};

// llama.cpp token types (tokenizer.ggml.token_type).
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct SynthVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;  // "left right", rank order
  int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;
  bool add_bos = false;
  std::string pre;            // tokenizer.ggml.pre
  std::string chat_template;  // jinja
};

// GPT-2's reversible byte -> unicode code point map (a printable character
// for every byte), as UTF-8 strings indexed by byte value.
const std::vector<std::string>& byte_symbols();

// Byte-level BPE merges learnt on the built-in text, at most max_merges.
// Deterministic. Merges whose result is already a token are skipped.
std::vector<std::string> learn_merges(size_t max_merges);

// A vocabulary of exactly vocab_size tokens: specials, 256 byte tokens, as
// many merges as fit (up to max_merges), then unused filler tokens
// ("<|unused_N|>", type UNUSED) if the learnt merges run out. Throws
// kiln::Error(kInvalidArgument) if vocab_size is too small for the bytes and specials.
SynthVocab make_vocab(ChatStyle style, int64_t vocab_size, size_t max_merges);

}  // namespace kiln::synth
