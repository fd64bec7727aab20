#include "compiler/tools/synth/vocab.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <utility>

#include "ir/error.h"

namespace kiln::synth {
namespace {

// Training text for the merges (written for kiln; any English prose works).
constexpr const char* kCorpus =
    "The kiln is where clay becomes something that lasts. A potter shapes the work by hand, "
    "lets it dry, and then fires it at a high temperature until the material changes for good. "
    "Compiling a language model ahead of time is a similar idea: everything that can be decided "
    "before the first token is decided once, and the result is a plan that the runtime only has "
    "to load and run. The plan holds the weights in the layout that each kernel reads best, the "
    "kernels themselves compiled for one graphics processor, and the memory offsets of every "
    "buffer, so nothing is allocated while the model is serving requests.\n"
    "Hello, how are you today? I am fine, thank you. What is the capital of France? The capital "
    "of France is Paris. What is two plus two? Two plus two is four. Tell me a short story about "
    "a cat and a dog who became friends in a small town near the river. Once upon a time there "
    "was a little cat who lived in a house by the water, and every morning she would walk along "
    "the bank to watch the boats go by. One day she met a dog who was looking for his home.\n"
    "In the beginning the model reads a prompt, turns the text into tokens, and computes the "
    "attention keys and values for all of them at once. Then it generates one token at a time: "
    "each step reads the whole cache of keys and values, mixes the information of the past, and "
    "predicts the next token from a probability distribution over the vocabulary. Sampling with "
    "a temperature, a top k and a top p filter chooses the token that is written to the output. "
    "The numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 and 3.14 appear in text too, as do symbols "
    "like (parentheses), [brackets], {braces}, quotes \"like this\", and the signs + - * / = < >.\n"
    "def main():\n    print(\"hello world\")\n    return 0\n"
    "for (int i = 0; i < n; ++i) { sum += x[i] * y[i]; }\n"
    "Good morning! Thanks for the help. Please write the answer in one sentence. Sure, here is "
    "the answer you asked for. The weather is nice and the sun is shining over the hills.";

int utf8_encode(uint32_t cp, char* out) {
  if (cp < 0x80) { out[0] = static_cast<char>(cp); return 1; }
  out[0] = static_cast<char>(0xC0 | (cp >> 6));
  out[1] = static_cast<char>(0x80 | (cp & 0x3F));
  return 2;  // all GPT-2 byte symbols are below U+0800
}

// Pre-tokenisation for training: words keep their leading space (GPT-2 style);
// letters, digits, other symbols and newlines form separate pieces.
std::vector<std::string> split_words(const std::string& text) {
  auto cls = [](unsigned char c) {
    if (std::isalpha(c)) return 0;
    if (std::isdigit(c)) return 1;
    if (c == '\n') return 3;
    if (c == ' ') return 4;
    return 2;
  };
  std::vector<std::string> words;
  std::string cur;
  int cur_cls = -1;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = text[i];
    const int k = cls(c);
    if (k == 4) {
      if (!cur.empty()) words.push_back(cur);
      cur = " ";
      cur_cls = 4;
      continue;
    }
    if (cur_cls == 4 || (k == cur_cls && k != 3)) {
      cur += static_cast<char>(c);
      cur_cls = k;
      continue;
    }
    if (!cur.empty()) words.push_back(cur);
    cur = std::string(1, static_cast<char>(c));
    cur_cls = k;
  }
  if (!cur.empty()) words.push_back(cur);
  return words;
}

}  // namespace

const std::vector<std::string>& byte_symbols() {
  static const std::vector<std::string> table = [] {
    // GPT-2 bytes_to_unicode: printable latin-1 bytes map to themselves, the
    // other 68 bytes to U+0100 upwards in byte order.
    std::vector<std::string> t(256);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : next++;
      char buf[4];
      t[b] = std::string(buf, utf8_encode(cp, buf));
    }
    return t;
  }();
  return table;
}

std::vector<std::string> learn_merges(size_t max_merges) {
  const auto& sym = byte_symbols();
  std::map<std::string, int64_t> counts;
  for (const auto& w : split_words(kCorpus)) ++counts[w];
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  std::set<std::string> vocab(sym.begin(), sym.end());
  for (const auto& [w, c] : counts) {
    std::vector<std::string> s;
    for (unsigned char ch : w) s.push_back(sym[ch]);
    words.emplace_back(std::move(s), c);
  }
  std::vector<std::string> merges;
  std::set<std::pair<std::string, std::string>> banned;
  while (merges.size() < max_merges) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [s, c] : words)
      for (size_t i = 0; i + 1 < s.size(); ++i) pairs[{s[i], s[i + 1]}] += c;
    // Most frequent pair; ties go to the smallest pair (std::map order) for determinism.
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_count = 0;
    for (const auto& [p, c] : pairs)
      if (c > best_count && !banned.count(p)) {
        best = &p;
        best_count = c;
      }
    if (!best) break;
    const auto pair = *best;
    const std::string joined = pair.first + pair.second;
    if (vocab.count(joined)) {  // a different split already made this token
      banned.insert(pair);
      continue;
    }
    vocab.insert(joined);
    merges.push_back(pair.first + " " + pair.second);
    for (auto& [s, c] : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == pair.first && s[i + 1] == pair.second) {
          out.push_back(joined);
          ++i;
        } else {
          out.push_back(s[i]);
        }
      }
      s = std::move(out);
    }
  }
  return merges;
}

SynthVocab make_vocab(ChatStyle style, int64_t vocab_size, size_t max_merges) {
  SynthVocab v;
  std::vector<std::string> specials;
  if (style == ChatStyle::kChatML) {
    specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  } else {
    specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
  }
  // Llama 3 reserves the last 256 ids for special tokens (128000..128255):
  // the named ones, then <|reserved_special_token_N|>. Mirror that when the
  // vocabulary is big enough, so bos is 128000 as in the real model.
  if (style == ChatStyle::kLlama3 && vocab_size >= 1024)
    for (int i = 3; specials.size() < 256; ++i)
      specials.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
  const int64_t fixed = 256 + static_cast<int64_t>(specials.size());
  if (vocab_size < fixed)
    throw Error(ErrorCode::kInvalidArgument,
                "synthetic vocabulary of " + std::to_string(vocab_size) + " tokens is too small: the " +
                    "256 byte tokens and " + std::to_string(specials.size()) + " specials need " +
                    std::to_string(fixed),
                "vocab_size");
  const size_t room = static_cast<size_t>(vocab_size - fixed);
  v.merges = learn_merges(std::min(room, max_merges));

  auto add = [&](const std::string& t, int32_t type) {
    v.tokens.push_back(t);
    v.types.push_back(type);
  };
  auto add_normal = [&] {
    // GPT-2 order for the byte tokens: printable ones first, as the byte-level
    // BPE vocabularies of real models list them.
    const auto& sym = byte_symbols();
    std::vector<std::pair<std::string, int>> order;
    for (int b = 0; b < 256; ++b) order.emplace_back(sym[b], b);
    std::stable_sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
      const bool pa = a.first.size() == 1 || static_cast<unsigned char>(a.first[0]) < 0xC4;
      const bool pb = b.first.size() == 1 || static_cast<unsigned char>(b.first[0]) < 0xC4;
      return pa && !pb;
    });
    for (const auto& [s, b] : order) add(s, kNormal);
    for (const auto& m : v.merges) {
      const auto sp = m.find(' ');
      add(m.substr(0, sp) + m.substr(sp + 1), kNormal);
    }
  };
  const int64_t n_fill = vocab_size - fixed - static_cast<int64_t>(v.merges.size());
  auto add_fill = [&] {
    for (int64_t i = 0; i < n_fill; ++i) add("<|unused_" + std::to_string(i) + "|>", kUnused);
  };
  auto id_of = [&](const std::string& t) {
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i] == t) return static_cast<int32_t>(i);
    return int32_t{-1};
  };

  if (style == ChatStyle::kChatML) {
    for (const auto& s : specials) add(s, kControl);
    add_normal();
    add_fill();
    v.bos = id_of("<|im_start|>");
    v.eos = id_of("<|im_end|>");
    v.eot = v.eos;
    v.unk = id_of("<|endoftext|>");
    v.pad = v.eos;
    v.add_bos = false;
    v.pre = "smollm";
    v.chat_template =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}";
  } else {
    add_normal();
    add_fill();
    for (const auto& s : specials) add(s, kControl);
    v.bos = id_of("<|begin_of_text|>");
    v.eos = id_of("<|eot_id|>");
    v.eot = v.eos;
    v.pad = id_of("<|finetune_right_pad_id|>");
    v.add_bos = true;
    v.pre = "llama-bpe";
    v.chat_template =
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        "{% endif %}";
  }
  if (static_cast<int64_t>(v.tokens.size()) != vocab_size)
    throw Error(ErrorCode::kInternal, "synthetic vocabulary has the wrong size", "vocab_size");
  return v;
}

}  // namespace kiln::synth
