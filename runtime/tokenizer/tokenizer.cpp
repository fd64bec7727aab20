// Run-time tokenizer. Algorithms follow llama.cpp's llama-vocab.cpp (the
// reference for GGUF vocabularies; golden-tested against it): special-token
// partitioning, byte-level BPE with rank-ordered merges (Sennrich et al. 2016,
// GPT-2 byte mapping from openai/gpt-2 encoder.py), and SentencePiece-style
// bigram merging by score with <0xXX> byte fallback.
#include "runtime/tokenizer/tokenizer.h"

#include <algorithm>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "runtime/tokenizer/pretokenizer.h"

namespace kiln::rt {
namespace {

size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;  // stray continuation / invalid lead byte: one byte on its own
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Decodes one code point at s[i] (valid UTF-8 assumed, else returns the byte).
uint32_t decode_cp(std::string_view s, size_t i, size_t& n) {
  unsigned char c = s[i];
  n = std::min(utf8_len(c), s.size() - i);
  if (n == 1) return c;
  uint32_t cp = c & (0xFF >> (n + 1));
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

const std::string kSpmSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// Token texts that end generation in the chat formats kiln knows (in addition
// to the EOS/EOT/EOM ids the vocab names). Same list llama.cpp uses.
const char* const kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "</s>",
    // Fill-in-the-middle pad / repo / file-separator tokens also end generation
    // in llama.cpp (a FIM completion must not run on into the next file).
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<reponame>",
    "<|file_sep|>",
};

struct Fragment {
  bool is_token;
  int32_t id;   // when is_token
  size_t off, len;  // raw text span otherwise
};

}  // namespace

struct Tokenizer::Impl {
  VocabData v;
  std::vector<TokenType> types;
  std::unordered_map<std::string, int32_t> token_to_id;
  std::vector<int32_t> specials;  // CONTROL / USER_DEFINED / UNKNOWN, longest text first
  std::unordered_set<int32_t> eog;

  // BPE
  std::unique_ptr<Pretokenizer> pre;
  std::unordered_map<std::string, int32_t> merge_rank;  // "left right" -> rank
  std::string byte_to_unicode[256];
  std::unordered_map<uint32_t, uint8_t> unicode_to_byte;

  // SPM
  int32_t byte_tokens[256];

  TokenType type(int32_t id) const { return types[id]; }
  int32_t lookup(const std::string& s) const {
    auto it = token_to_id.find(s);
    return it == token_to_id.end() ? -1 : it->second;
  }

  void partition(std::string_view text, bool parse_special, std::vector<Fragment>& frags) const;
  void bpe_encode(std::string_view text, std::vector<int32_t>& out) const;
  void spm_encode(const std::string& text, std::vector<int32_t>& out) const;
  std::string piece(int32_t id, bool special) const;
};

// ---- construction --------------------------------------------------------------

Tokenizer::Tokenizer(VocabData vocab) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.v = std::move(vocab);
  const VocabData& v = m.v;
  const size_t n = v.tokens.size();
  if (n == 0) throw Error(ErrorCode::kFormat, "vocabulary is empty", "tokenizer.ggml.tokens");
  if (n > size_t(INT32_MAX)) throw Error(ErrorCode::kFormat, "vocabulary too large", "tokenizer.ggml.tokens");
  if (!v.scores.empty() && v.scores.size() != n)
    throw Error(ErrorCode::kFormat,
                "tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries but there are " +
                    std::to_string(n) + " tokens",
                "tokenizer.ggml.scores");
  if (!v.token_types.empty() && v.token_types.size() != n)
    throw Error(ErrorCode::kFormat,
                "tokenizer.ggml.token_type has " + std::to_string(v.token_types.size()) +
                    " entries but there are " + std::to_string(n) + " tokens",
                "tokenizer.ggml.token_type");
  auto check_id = [&](int32_t id, const char* key) {
    if (id < -1 || id >= int32_t(n))
      throw Error(ErrorCode::kFormat,
                  std::string(key) + " = " + std::to_string(id) + " is outside the vocabulary (" +
                      std::to_string(n) + " tokens)",
                  key);
  };
  check_id(v.bos_id, "tokenizer.ggml.bos_token_id");
  check_id(v.eos_id, "tokenizer.ggml.eos_token_id");
  check_id(v.eot_id, "tokenizer.ggml.eot_token_id");
  check_id(v.eom_id, "tokenizer.ggml.eom_token_id");
  check_id(v.pad_id, "tokenizer.ggml.padding_token_id");
  check_id(v.unk_id, "tokenizer.ggml.unknown_token_id");
  check_id(v.sep_id, "tokenizer.ggml.seperator_token_id");
  if (v.add_bos && v.bos_id < 0)
    throw Error(ErrorCode::kFormat, "vocab asks to add BOS but has no BOS token", "tokenizer.ggml.bos_token_id");
  if (v.add_eos && v.eos_id < 0)
    throw Error(ErrorCode::kFormat, "vocab asks to add EOS but has no EOS token", "tokenizer.ggml.eos_token_id");

  m.types.resize(n, TokenType::kNormal);
  for (size_t i = 0; i < v.token_types.size(); ++i) {
    int32_t t = v.token_types[i];
    if (t < 0 || t > 6)
      throw Error(ErrorCode::kFormat, "token " + std::to_string(i) + " has unknown type " + std::to_string(t),
                  "tokenizer.ggml.token_type");
    m.types[i] = TokenType(t == 0 ? 1 : t);
  }

  m.token_to_id.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) m.token_to_id[v.tokens[i]] = int32_t(i);  // last one wins, as llama.cpp

  for (size_t i = 0; i < n; ++i) {
    TokenType t = m.types[i];
    if ((t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) &&
        !v.tokens[i].empty())
      m.specials.push_back(int32_t(i));
  }
  std::stable_sort(m.specials.begin(), m.specials.end(), [&](int32_t a, int32_t b) {
    return v.tokens[a].size() > v.tokens[b].size();
  });

  for (int32_t id : {v.eos_id, v.eot_id, v.eom_id})
    if (id >= 0) m.eog.insert(id);
  for (const char* t : kEogTexts) {
    int32_t id = m.lookup(t);
    if (id >= 0) m.eog.insert(id);
  }

  if (v.model == TokenizerModel::kBpe) {
    m.pre = std::make_unique<Pretokenizer>(v.pre);
    // GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to 256+k.
    int k = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + k++);
      append_utf8(m.byte_to_unicode[b], cp);
      m.unicode_to_byte[cp] = uint8_t(b);
    }
    m.merge_rank.reserve(v.merges.size() * 2);
    for (size_t r = 0; r < v.merges.size(); ++r) {
      const std::string& mg = v.merges[r];
      size_t sp = mg.find(' ', 1);
      if (sp == std::string::npos)
        throw Error(ErrorCode::kFormat, "merge " + std::to_string(r) + " ('" + mg + "') has no space separator",
                    "tokenizer.ggml.merges");
      m.merge_rank.emplace(mg, int32_t(r));  // first occurrence keeps the lowest rank
    }
  } else {
    for (int b = 0; b < 256; ++b) {
      static const char* hex = "0123456789ABCDEF";
      std::string name = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
      int32_t id = m.lookup(name);
      if (id < 0) id = m.lookup(std::string(1, char(b)));
      if (id < 0) id = v.unk_id;
      m.byte_tokens[b] = id;
    }
  }
}

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

int32_t Tokenizer::n_vocab() const { return int32_t(impl_->v.tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->v.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->v.eos_id; }
const VocabData& Tokenizer::vocab() const { return impl_->v; }
int32_t Tokenizer::find_token(std::string_view text) const { return impl_->lookup(std::string(text)); }
bool Tokenizer::is_eog(int32_t id) const { return impl_->eog.count(id) != 0; }
bool Tokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return false;
  TokenType t = impl_->type(id);
  return t == TokenType::kControl || t == TokenType::kUnknown;
}

// ---- special-token partitioning -------------------------------------------------

// Splits raw text around special-token texts, longest special first; each
// special is searched in the raw fragments the longer ones left.
void Tokenizer::Impl::partition(std::string_view text, bool parse_special, std::vector<Fragment>& frags) const {
  frags.clear();
  if (text.empty()) return;
  frags.push_back({false, -1, 0, text.size()});
  for (int32_t id : specials) {
    TokenType t = types[id];
    if (!parse_special && (t == TokenType::kControl || t == TokenType::kUnknown)) continue;
    const std::string& st = v.tokens[id];
    if (text.find(st) == std::string_view::npos) continue;  // cheap reject for big vocabs
    std::vector<Fragment> next;
    next.reserve(frags.size() + 4);
    for (const Fragment& f : frags) {
      if (f.is_token) {
        next.push_back(f);
        continue;
      }
      std::string_view raw = text.substr(f.off, f.len);
      size_t pos = 0;
      while (true) {
        size_t hit = raw.find(st, pos);
        if (hit == std::string_view::npos) break;
        if (hit > pos) next.push_back({false, -1, f.off + pos, hit - pos});
        next.push_back({true, id, 0, 0});
        pos = hit + st.size();
      }
      if (pos < raw.size()) next.push_back({false, -1, f.off + pos, raw.size() - pos});
    }
    frags = std::move(next);
  }
}

// ---- byte-level BPE -------------------------------------------------------------

namespace {
struct Symbol {
  int32_t prev, next;
  size_t off, n;  // span in the mapped word
};
struct BpeBigram {
  int32_t left, right, rank;
  size_t size;
};
struct BpeOrder {  // lowest rank first, then leftmost
  bool operator()(const BpeBigram& a, const BpeBigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};
}  // namespace

void Tokenizer::Impl::bpe_encode(std::string_view text, std::vector<int32_t>& out) const {
  std::string word, key;
  std::vector<Symbol> syms;
  for (std::string_view piece : pre->split(text)) {
    word.clear();
    for (unsigned char c : piece) word += byte_to_unicode[c];
    if (pre->ignore_merges()) {
      int32_t id = lookup(word);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    syms.clear();
    for (size_t i = 0; i < word.size();) {
      size_t n = std::min(utf8_len(word[i]), word.size() - i);
      syms.push_back({int32_t(syms.size()) - 1, int32_t(syms.size()) + 1, i, n});
      i += n;
    }
    if (syms.empty()) continue;
    syms.back().next = -1;
    std::priority_queue<BpeBigram, std::vector<BpeBigram>, BpeOrder> q;
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0) return;
      key.assign(word, syms[l].off, syms[l].n);
      key += ' ';
      key.append(word, syms[r].off, syms[r].n);
      auto it = merge_rank.find(key);
      if (it == merge_rank.end()) return;
      q.push({l, r, it->second, syms[l].n + syms[r].n});
    };
    for (int32_t i = 1; i < int32_t(syms.size()); ++i) try_add(i - 1, i);
    while (!q.empty()) {
      BpeBigram b = q.top();
      q.pop();
      Symbol& L = syms[b.left];
      Symbol& R = syms[b.right];
      // Stale entry: one side was merged away or changed since it was queued.
      if (L.n == 0 || R.n == 0 || L.next != b.right || L.n + R.n != b.size) continue;
      L.n += R.n;
      R.n = 0;
      L.next = R.next;
      if (R.next >= 0) syms[R.next].prev = b.left;
      try_add(L.prev, b.left);
      try_add(b.left, L.next);
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) {
      std::string s = word.substr(syms[i].off, syms[i].n);
      int32_t id = lookup(s);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // Not in the vocab (incomplete vocab): fall back to single mapped characters.
      for (size_t k = 0; k < s.size();) {
        size_t n = std::min(utf8_len(s[k]), s.size() - k);
        int32_t cid = lookup(s.substr(k, n));
        if (cid >= 0) out.push_back(cid);
        else if (v.unk_id >= 0) out.push_back(v.unk_id);
        k += n;
      }
    }
  }
}

// ---- SentencePiece-style (SPM) --------------------------------------------------

namespace {
struct SpmBigram {
  int32_t left, right;
  float score;
  size_t size;
};
struct SpmOrder {  // highest score first, then leftmost
  bool operator()(const SpmBigram& a, const SpmBigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};
}  // namespace

void Tokenizer::Impl::spm_encode(const std::string& text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<Symbol> syms;
  for (size_t i = 0; i < text.size();) {
    size_t n = std::min(utf8_len(text[i]), text.size() - i);
    syms.push_back({int32_t(syms.size()) - 1, int32_t(syms.size()) + 1, i, n});
    i += n;
  }
  syms.back().next = -1;
  std::priority_queue<SpmBigram, std::vector<SpmBigram>, SpmOrder> q;
  // Which pair of symbols a merged piece came from, to re-split pieces that
  // are not tokens themselves (resegment).
  std::unordered_map<std::string, std::pair<int32_t, int32_t>> rev_merge;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    std::string s = text.substr(syms[l].off, syms[l].n + syms[r].n);
    int32_t id = lookup(s);
    if (id < 0) return;
    float score = v.scores.empty() ? 0.0f : v.scores[id];
    q.push({l, r, score, s.size()});
    rev_merge[s] = {l, r};
  };
  for (int32_t i = 1; i < int32_t(syms.size()); ++i) try_add(i - 1, i);
  while (!q.empty()) {
    SpmBigram b = q.top();
    q.pop();
    Symbol& L = syms[b.left];
    Symbol& R = syms[b.right];
    if (L.n == 0 || R.n == 0 || L.n + R.n != b.size) continue;
    L.n += R.n;
    R.n = 0;
    L.next = R.next;
    if (R.next >= 0) syms[R.next].prev = b.left;
    try_add(L.prev, b.left);
    try_add(b.left, L.next);
  }
  auto resegment = [&](auto&& self, const Symbol& s) -> void {
    std::string piece = text.substr(s.off, s.n);
    int32_t id = lookup(piece);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
    auto it = rev_merge.find(piece);
    if (it == rev_merge.end()) {
      for (unsigned char c : piece) {
        int32_t bid = byte_tokens[c];
        if (bid < 0)
          throw Error(ErrorCode::kFormat,
                      "text needs byte fallback but the vocab has neither a <0xXX> byte token nor an unknown token",
                      "tokenizer.ggml.tokens");
        out.push_back(bid);
      }
      return;
    }
    self(self, syms[it->second.first]);
    self(self, syms[it->second.second]);
  };
  for (int32_t i = 0; i >= 0; i = syms[i].next) resegment(resegment, syms[i]);
}

// ---- encode / decode --------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  std::vector<Fragment> frags;
  m.partition(text, parse_special, frags);
  if (add_special && m.v.add_bos) out.push_back(m.v.bos_id);
  if (m.v.model == TokenizerModel::kBpe) {
    for (const Fragment& f : frags) {
      if (f.is_token) out.push_back(f.id);
      else m.bpe_encode(text.substr(f.off, f.len), out);
    }
  } else {
    bool prev_special = true;  // a space prefix goes before the first raw text
    for (const Fragment& f : frags) {
      if (f.is_token) {
        out.push_back(f.id);
        prev_special = true;
        continue;
      }
      std::string s;
      if (m.v.add_space_prefix && prev_special) s = " ";
      s.append(text.substr(f.off, f.len));
      std::string esc;
      esc.reserve(s.size() + s.size() / 2);
      for (char c : s) {
        if (c == ' ') esc += kSpmSpace;
        else esc += c;
      }
      m.spm_encode(esc, out);
      prev_special = false;
    }
  }
  if (add_special && m.v.add_eos) out.push_back(m.v.eos_id);
  return out;
}

std::string Tokenizer::Impl::piece(int32_t id, bool special) const {
  TokenType t = types[id];
  const std::string& text = v.tokens[id];
  if (t == TokenType::kControl || t == TokenType::kUnknown) return special ? text : std::string();
  if (t == TokenType::kUserDefined) return text;
  if (v.model == TokenizerModel::kBpe) {
    if (t != TokenType::kNormal) return std::string();
    std::string out;
    for (size_t i = 0; i < text.size();) {
      size_t n;
      uint32_t cp = decode_cp(text, i, n);
      auto it = unicode_to_byte.find(cp);
      if (it != unicode_to_byte.end()) out += char(it->second);
      else out.append(text, i, n);  // not a mapped byte: keep as is
      i += n;
    }
    return out;
  }
  if (t == TokenType::kByte) {
    // "<0xXX>"
    if (text.size() == 6 && text.compare(0, 3, "<0x") == 0)
      return std::string(1, char(std::stoi(text.substr(3, 2), nullptr, 16)));
    return text;
  }
  if (t != TokenType::kNormal) return std::string();
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 3, kSpmSpace) == 0) {
      out += ' ';
      i += 3;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  if (id < 0 || id >= n_vocab())
    throw Error(ErrorCode::kInvalidArgument,
                "token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                    std::to_string(n_vocab() - 1) + ")");
  return impl_->piece(id, special);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  bool first_text = true;
  for (int32_t id : ids) {
    std::string p = token_to_piece(id, !skip_special);
    // SPM with add_space_prefix: encode put a " " before the text; take it off.
    if (first_text && impl_->v.model == TokenizerModel::kSpm && impl_->v.add_space_prefix &&
        impl_->type(id) == TokenType::kNormal) {
      if (!p.empty() && p[0] == ' ') p.erase(0, 1);
    }
    if (impl_->type(id) != TokenType::kControl) first_text = false;
    out += p;
  }
  return out;
}

// ---- streaming ------------------------------------------------------------------

size_t utf8_complete_prefix(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence is not complete yet.
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    unsigned char c = s[n - back];
    if ((c & 0xC0) == 0x80) continue;  // continuation: keep looking for the lead
    size_t need = utf8_len(c);
    if (need > back && c >= 0xC0) return n - back;  // incomplete: hold it back
    return n;
  }
  return n;  // only continuation bytes (invalid): pass through
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_->token_to_piece(id, !skip_special_);
  size_t k = utf8_complete_prefix(pending_);
  std::string out = pending_.substr(0, k);
  pending_.erase(0, k);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace kiln::rt
