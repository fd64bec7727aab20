// Fuzz target: the GGUF reader on raw bytes (compiler/gguf/gguf.h,
// File::from_bytes: the same parser File::open runs on the mapping), then what
// the compiler does with a file that parsed: every metadata value formatted
// and read through the typed getters, the llama frontend's config / support
// check / graph, the tokenizer import and a Tokenizer built from it.
#include <algorithm>
#include <string>
#include <vector>

#include "compiler/frontend/frontend.h"
#include "compiler/gguf/gguf.h"
#include "compiler/tokenizer/import.h"
#include "ir/error.h"
#include "runtime/error.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

using namespace kiln;

template <typename F>
void guarded(F&& f) {
  try {
    f();
  } catch (const kiln::Error&) {
  } catch (const kiln::rt::Error&) {
  }
}

void exercise_metadata(const gguf::File& f) {
  for (const gguf::KeyValue& kv : f.metadata()) {
    (void)gguf::format_value(kv.value);
    const std::string& k = kv.key;
    guarded([&] { (void)f.get_string(k); });
    guarded([&] { (void)f.get_u64(k); });
    guarded([&] { (void)f.get_u32(k); });
    guarded([&] { (void)f.get_i64(k); });
    guarded([&] { (void)f.get_f32(k); });
    guarded([&] { (void)f.get_bool(k); });
    guarded([&] { (void)f.get_string_array(k); });
    guarded([&] { (void)f.get_f32_array(k); });
    guarded([&] { (void)f.get_i64_array(k); });
  }
  guarded([&] { (void)f.architecture(); });
  for (const gguf::TensorInfo& t : f.tensors()) {
    KILN_FUZZ_CHECK(t.data != nullptr && f.data_offset() + t.offset + t.n_bytes <= f.file_size(),
                    "tensor '%s' outside the file", t.name.c_str());
    KILN_FUZZ_CHECK(f.find_tensor(t.name) == &t, "tensor index");
  }
}

void exercise_frontend(const gguf::File& f) {
  (void)frontend::support_problems(f);
  guarded([&] {
    frontend::ModelConfig c = frontend::read_config(f);
    frontend::GraphOptions o;
    o.max_tokens = 4;
    o.max_context = std::min<int64_t>(8, c.context_length);
    (void)frontend::build_graph(f, c, o);
  });
}

void exercise_tokenizer(const gguf::File& f) {
  guarded([&] {
    rt::VocabData vd = tokenizer::import_vocab(f);
    rt::Tokenizer tok(std::move(vd));
    std::vector<int32_t> ids = tok.encode("Hello world! <|im_start|>user\n 1234 \xe4\xbd\xa0\xe5\xa5\xbd \xff");
    (void)tok.decode(ids);
    std::vector<int32_t> first;
    for (int32_t i = 0; i < std::min<int32_t>(tok.n_vocab(), 64); ++i) first.push_back(i);
    (void)tok.decode(first, /*skip_special=*/true);
    guarded([&] {
      rt::ChatTemplate t = rt::chat_template_from_vocab(tok.vocab());
      std::vector<rt::ChatMessage> msgs = {{"user", "hi"}};
      (void)rt::apply_chat_template(t, msgs, true);
    });
  });
}

}  // namespace

KILN_FUZZ_TARGET(gguf) {
  try {
    gguf::File f = gguf::File::from_bytes(std::vector<uint8_t>(data, data + size));
    exercise_metadata(f);
    exercise_frontend(f);
    exercise_tokenizer(f);
  } catch (const kiln::Error&) {
  } catch (const kiln::rt::Error&) {
  }
  return 0;
}
