// Regex pre-tokenizer for byte-level BPE vocabularies: splits raw UTF-8 text into
// words before merges, the expression list chosen by tokenizer.ggml.pre.
// Each expression in the list is applied to every piece the previous one made;
// text between matches is kept as pieces too (llama.cpp's unicode_regex_split).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::rt {

class Pretokenizer {
 public:
  // Throws rt::Error(kUnsupported) for a pre-tokenizer name kiln does not know.
  explicit Pretokenizer(const std::string& pre_name);
  Pretokenizer(Pretokenizer&&) noexcept;
  Pretokenizer& operator=(Pretokenizer&&) noexcept;
  ~Pretokenizer();

  std::vector<std::string_view> split(std::string_view text) const;
  // Llama 3 style: a word already in the vocab is taken whole, without merges.
  bool ignore_merges() const { return ignore_merges_; }
  static std::vector<std::string> supported_names();

 private:
  struct Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
};

}  // namespace kiln::rt
