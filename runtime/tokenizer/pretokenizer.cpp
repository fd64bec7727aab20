#include "runtime/tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "runtime/error.h"

namespace kiln::rt {
namespace {

// Unicode White_Space, the set llama.cpp's unicode tables call whitespace.
// (PCRE2's \s under UCP omits U+0085, so the class is spelled out.)
#define WS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

// GPT-2's expression (HF tokenizers ByteLevel), as llama.cpp applies it.
constexpr const char* kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";
// Llama 3 (tiktoken cl100k-style), case-insensitive contractions spelled out.
constexpr const char* kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";
// Qwen2: as Llama 3 but digits one at a time.
constexpr const char* kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

struct Spec {
  std::vector<std::string> exprs;
  bool ignore_merges = false;
};

bool spec_for(const std::string& pre, Spec& s) {
  if (pre == "gpt2" || pre == "gpt-2" || pre == "mpt" || pre == "olmo" || pre == "jais") {
    s.exprs = {kGpt2};
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" ||
             pre == "codeshell" || pre == "exaone" || pre == "minerva-7b") {
    // Digits are split one by one first, then the GPT-2 expression.
    s.exprs = {"\\p{N}", kGpt2};
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "smaug-bpe") {
    s.exprs = {kLlama3};
    s.ignore_merges = true;
  } else if (pre == "qwen2" || pre == "stablelm2" || pre == "deepseek-r1-qwen") {
    s.exprs = {kQwen2};
  } else if (pre == "default") {
    // llama.cpp's fallback list for BPE vocabularies without a known pre name.
    s.exprs = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
  } else {
    return false;
  }
  return true;
}

}  // namespace

struct Pretokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { if (code) pcre2_code_free(code); }
};

std::vector<std::string> Pretokenizer::supported_names() {
  return {"default", "gpt2", "gpt-2", "smollm", "starcoder", "llama-bpe", "llama3", "qwen2"};
}

Pretokenizer::Pretokenizer(const std::string& pre_name) {
  Spec spec;
  if (!spec_for(pre_name, spec)) {
    std::string names;
    for (auto& n : supported_names()) names += (names.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::kUnsupported,
                "BPE pre-tokenizer '" + pre_name + "' (tokenizer.ggml.pre) is not supported; kiln knows: " +
                    names,
                "tokenizer.ggml.pre");
  }
  ignore_merges_ = spec.ignore_merges;
  for (const auto& e : spec.exprs) {
    int err = 0;
    PCRE2_SIZE erroff = 0;
    auto r = std::make_unique<Regex>();
    r->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(e.data()), e.size(),
                            PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &erroff, nullptr);
    if (!r->code) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      throw Error(ErrorCode::kInternal, "pre-tokenizer regex failed to compile at " + std::to_string(erroff) +
                                            ": " + reinterpret_cast<char*>(buf));
    }
    pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE);  // best effort; interpreter otherwise
    regexes_.push_back(std::move(r));
  }
}

Pretokenizer::Pretokenizer(Pretokenizer&&) noexcept = default;
Pretokenizer& Pretokenizer::operator=(Pretokenizer&&) noexcept = default;
Pretokenizer::~Pretokenizer() = default;

std::vector<std::string_view> Pretokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  pcre2_match_data* md = nullptr;
  for (const auto& re : regexes_) {
    if (!md) md = pcre2_match_data_create(1, nullptr);
    std::vector<std::string_view> next;
    next.reserve(pieces.size() * 2);
    for (std::string_view piece : pieces) {
      // Each piece is its own subject: lookaheads do not see past it.
      auto subj = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t pos = 0, last = 0;
      while (pos < piece.size()) {
        int rc = pcre2_match(re->code, subj, piece.size(), pos, 0, md, nullptr);
        if (rc < 0) break;  // no more matches (or error: keep the rest as one piece)
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // empty match: cannot happen with our expressions; step on
          pos = me + 1;
          continue;
        }
        if (ms > last) next.push_back(piece.substr(last, ms - last));
        next.push_back(piece.substr(ms, me - ms));
        last = pos = me;
      }
      if (last < piece.size()) next.push_back(piece.substr(last));
    }
    pieces = std::move(next);
  }
  if (md) pcre2_match_data_free(md);
  return pieces;
}

}  // namespace kiln::rt
