#include "runtime/tokenizer/chat_template.h"

#include "runtime/error.h"

namespace kiln::rt {
namespace {

// Jinja's `trim` filter (Python str.strip(): ASCII whitespace is what matters here).
std::string trim(std::string_view s) {
  const char* ws = " \t\n\r\v\f";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

// A Jinja string literal may carry "\n" as an escape or as a real newline.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

ChatFamily detect_chat_family(std::string_view j) {
  if (j.find("<|im_start|>") != std::string_view::npos) return ChatFamily::kChatML;
  if (j.find("<|start_header_id|>") != std::string_view::npos) return ChatFamily::kLlama3;
  if (j.find("<start_of_turn>") != std::string_view::npos) return ChatFamily::kGemma;
  return ChatFamily::kUnknown;
}

const char* chat_family_name(ChatFamily f) {
  switch (f) {
    case ChatFamily::kChatML: return "chatml";
    case ChatFamily::kLlama3: return "llama3";
    case ChatFamily::kGemma: return "gemma";
    default: return "unknown";
  }
}

ChatTemplate parse_chat_template(std::string_view j, std::string bos_token) {
  ChatTemplate t;
  t.family = detect_chat_family(j);
  if (t.family == ChatFamily::kUnknown)
    throw Error(ErrorCode::kUnsupported,
                j.empty() ? "the model has no chat template (tokenizer.chat_template); use a raw prompt"
                          : "chat template family not recognised (kiln knows ChatML, Llama 3 and Gemma "
                            "templates); use a raw prompt",
                "tokenizer.chat_template");
  t.bos_token = std::move(bos_token);
  if (t.family == ChatFamily::kChatML) {
    // A literal system turn in the template ('<|im_start|>system\n...<|im_end|>'
    // with no expression inside) is the default system prompt it adds when the
    // conversation has none (SmolLM2, Qwen2.5).
    const std::string_view open = "<|im_start|>system";
    size_t p = j.find(open);
    while (p != std::string_view::npos) {
      size_t body = p + open.size();
      size_t end = j.find("<|im_end|>", body);
      if (end == std::string_view::npos) break;
      std::string_view inner = j.substr(body, end - body);
      if (inner.find('\'') == std::string_view::npos && inner.find('"') == std::string_view::npos &&
          inner.find("{{") == std::string_view::npos && inner.find("{%") == std::string_view::npos) {
        std::string s = unescape(inner);
        if (!s.empty() && s[0] == '\n') s.erase(0, 1);
        t.default_system = s;
        break;
      }
      p = j.find(open, end);
    }
  }
  return t;
}

ChatTemplate chat_template_from_vocab(const VocabData& v) {
  std::string bos;
  if (v.bos_id >= 0 && v.bos_id < int32_t(v.tokens.size())) bos = v.tokens[v.bos_id];
  return parse_chat_template(v.chat_template, bos);
}

std::string apply_chat_template(const ChatTemplate& t, std::span<const ChatMessage> msgs, bool add_gen) {
  std::string out;
  switch (t.family) {
    case ChatFamily::kChatML: {
      // SmolLM2: a default system turn before the first message unless it is a system one.
      for (size_t i = 0; i < msgs.size(); ++i) {
        if (i == 0 && msgs[0].role != "system" && !t.default_system.empty())
          out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
        out += "<|im_start|>" + msgs[i].role + "\n" + msgs[i].content + "<|im_end|>\n";
      }
      if (add_gen) out += "<|im_start|>assistant\n";
      return out;
    }
    case ChatFamily::kLlama3: {
      for (size_t i = 0; i < msgs.size(); ++i) {
        if (i == 0) out += t.bos_token;
        out += "<|start_header_id|>" + msgs[i].role + "<|end_header_id|>\n\n" + trim(msgs[i].content) +
               "<|eot_id|>";
      }
      if (add_gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    }
    case ChatFamily::kGemma: {
      // Gemma 3: no system role; the system text opens the first user turn.
      out += t.bos_token;
      std::string prefix;
      size_t start = 0;
      if (!msgs.empty() && msgs[0].role == "system") {
        prefix = msgs[0].content + "\n\n";
        start = 1;
      }
      for (size_t i = start; i < msgs.size(); ++i) {
        bool expect_user = (i - start) % 2 == 0;
        if ((msgs[i].role == "user") != expect_user)
          throw Error(ErrorCode::kInvalidArgument,
                      "Gemma chat: conversation roles must alternate user/assistant/user/assistant/... (message " +
                          std::to_string(i) + " has role '" + msgs[i].role + "')");
        std::string role = msgs[i].role == "assistant" ? "model" : msgs[i].role;
        out += "<start_of_turn>" + role + "\n" + (i == start ? prefix : std::string()) + trim(msgs[i].content) +
               "<end_of_turn>\n";
      }
      if (add_gen) out += "<start_of_turn>model\n";
      return out;
    }
    default:
      throw Error(ErrorCode::kUnsupported, "unknown chat template family");
  }
}

std::string apply_chat_template(ChatFamily family, std::span<const ChatMessage> msgs, bool add_gen) {
  ChatTemplate t;
  t.family = family;
  if (family == ChatFamily::kLlama3) t.bos_token = "<|begin_of_text|>";
  if (family == ChatFamily::kGemma) t.bos_token = "<bos>";
  return apply_chat_template(t, msgs, add_gen);
}

}  // namespace kiln::rt
