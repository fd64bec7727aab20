// `kiln tokenize model.gguf "text"`: prints the ids and pieces the model's
// tokenizer gives; `--decode 1 2 3` turns ids back into text;
// `--chat` renders the text as one user turn through the chat template first.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "compiler/cli/verbs.h"
#include "compiler/gguf/gguf.h"
#include "compiler/tokenizer/import.h"
#include "ir/error.h"
#include "runtime/cli/args.h"
#include "runtime/error.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kiln::cli {
namespace {

struct TokenizeOpts {
  std::string model;
  std::string text;
  std::vector<int32_t> decode;
  bool no_special = false;
  bool no_parse_special = false;
  bool chat = false;
  bool ids_only = false;
};

// Printable form of a piece: control characters escaped, and bytes >= 0x80 too
// when the piece is not complete UTF-8 on its own (byte tokens, split chars).
std::string show(const std::string& s) {
  const bool partial = rt::utf8_complete_prefix(s) != s.size() || [&] {
    for (size_t i = 0; i < s.size(); ++i) {
      unsigned char c = s[i];
      if (c < 0x80) continue;
      size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
      if (n == 0 || i + n > s.size()) return true;
      for (size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return true;
      i += n - 1;
    }
    return false;
  }();
  std::string o;
  for (unsigned char c : s) {
    if (partial && c >= 0x80) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02X", c);
      o += b;
      continue;
    }
    if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '\r') o += "\\r";
    else if (c < 0x20 || c == 0x7F) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02X", c);
      o += b;
    } else o += char(c);
  }
  return o;
}

void run(const TokenizeOpts& o) {
  gguf::File f = gguf::File::open(o.model);
  rt::VocabData vocab = tokenizer::import_vocab(f);
  std::unique_ptr<rt::Tokenizer> tok;
  try {
    tok = std::make_unique<rt::Tokenizer>(vocab);
  } catch (const rt::Error& e) {
    throw Error(ErrorCode::kFormat, e.what(), e.field());
  }
  if (!o.decode.empty()) {
    try {
      std::string s = tok->decode(o.decode, o.no_special);
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fputc('\n', stdout);
    } catch (const rt::Error& e) {
      throw Error(ErrorCode::kInvalidArgument, e.what());
    }
    return;
  }
  std::string text = o.text;
  bool add_special = !o.no_special;
  if (o.chat) {
    rt::ChatTemplate t;
    try {
      t = rt::chat_template_from_vocab(vocab);
    } catch (const rt::Error& e) {
      throw Error(ErrorCode::kUnsupported, e.what(), e.field());
    }
    std::vector<rt::ChatMessage> msgs{{"user", text}};
    text = rt::apply_chat_template(t, msgs, true);
    add_special = false;  // the template writes BOS itself where the model wants it
    std::printf("# chat template: %s\n# %s\n", rt::chat_family_name(t.family), show(text).c_str());
  }
  std::vector<int32_t> ids = tok->encode(text, add_special, !o.no_parse_special);
  if (o.ids_only) {
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
    return;
  }
  std::printf("%zu tokens\n", ids.size());
  for (int32_t id : ids)
    std::printf("%8d  '%s'%s\n", id, show(tok->token_to_piece(id)).c_str(), tok->is_eog(id) ? "  [eog]" : "");
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto opts = std::make_shared<TokenizeOpts>();
  CLI::App* sub = app.add_subcommand("tokenize", "Tokenize text (or decode ids) with a GGUF model's tokenizer");
  sub->add_option("model", opts->model, "GGUF model file")->required();
  sub->add_option("text", opts->text, "Text to tokenize");
  sub->add_option("--decode", opts->decode, "Token ids to decode back to text instead");
  sub->add_flag("--no-special", opts->no_special, "Do not add BOS/EOS (encode); skip control tokens (decode)");
  sub->add_flag("--no-parse-special", opts->no_parse_special,
                "Treat special-token text like <|im_start|> as plain text");
  sub->add_flag("--chat", opts->chat, "Wrap the text as a user turn with the model's chat template");
  sub->add_flag("--ids", opts->ids_only, "Print only the ids, space separated");
  sub->callback([opts] {
    rt::cli::check_input_file(opts->model, "model");
    run(*opts);
  });
}

}  // namespace kiln::cli
