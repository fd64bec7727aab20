// Chat templates: kiln does not run Jinja. It recognises the template family
// from tokenizer.chat_template and renders system/user/assistant turns exactly
// as that family's Jinja template does (golden-tested against jinja2 renders of
// the real template text, tests/golden/tokenizer/chat_templates.json).
//
// The rendered text contains special-token text (e.g. "<|im_start|>", and the
// BOS text where the template writes bos_token): encode it with
// Tokenizer::encode(text, /*add_special=*/false, /*parse_special=*/true).
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/vocab.h"

namespace kiln::rt {

enum class ChatFamily {
  kUnknown,
  kChatML,  // <|im_start|>role\n...<|im_end|>\n  (SmolLM2, Qwen)
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  kGemma,   // <start_of_turn>user|model\n...<end_of_turn>\n
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// What a template does beyond its family's format.
struct ChatTemplate {
  ChatFamily family = ChatFamily::kUnknown;
  std::string bos_token;       // text of bos_token for templates that print it
  std::string default_system;  // ChatML: system turn added when none is given ("" = none)
};

ChatFamily detect_chat_family(std::string_view jinja);
const char* chat_family_name(ChatFamily f);

// Reads family and default system prompt from the template text; bos_token is
// the BOS token's text from the vocab. Throws rt::Error(kUnsupported) when the
// family is not recognised.
ChatTemplate parse_chat_template(std::string_view jinja, std::string bos_token = {});
ChatTemplate chat_template_from_vocab(const VocabData& v);

// Renders the conversation. Throws rt::Error(kInvalidArgument) where the real
// template would raise (Gemma: roles must alternate user/assistant).
std::string apply_chat_template(const ChatTemplate& tmpl, std::span<const ChatMessage> messages,
                                bool add_generation_prompt);
// Family defaults (no default system prompt, the family's usual BOS text).
std::string apply_chat_template(ChatFamily family, std::span<const ChatMessage> messages,
                                bool add_generation_prompt);

}  // namespace kiln::rt
