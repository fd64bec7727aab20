// Tokenizer import: reads a GGUF's tokenizer.ggml.* / tokenizer.chat_template
// keys into the runtime's plain VocabData (which the plan then carries).
#pragma once
#include "compiler/gguf/gguf.h"
#include "runtime/tokenizer/vocab.h"

namespace kiln::tokenizer {

// Throws kiln::Error: kFormat for missing/malformed keys (field = key),
// kUnsupported for a tokenizer model other than "gpt2" (BPE) or "llama" (SPM).
// A gemma3 GGUF without tokenizer.chat_template gets kGemmaChatTemplate.
rt::VocabData import_vocab(const gguf::File& f);

// The chat template kiln gives Gemma models whose GGUF has none.
extern const char* const kGemmaChatTemplate;

}  // namespace kiln::tokenizer
