// `kiln supported`: what this kiln can compile, read from the code itself
// (the frontends' architectures, the kernel families' weight types, the SMs
// NVRTC compiles for, the KV-cache types, tokenizers and chat templates), so
// the list cannot drift from what the code does. README.md carries a copy of
// the output between markers; tests/python/supported_readme_test.py checks it.
#include <cstdio>
#include <string>
#include <vector>

#include "codegen/codegen.h"
#include "compiler/cli/verbs.h"
#include "compiler/compile/compile.h"
#include "compiler/frontend/frontend.h"
#include "ir/dtype.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/pretokenizer.h"

namespace kiln::cli {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

std::string supported_text() {
  std::vector<std::string> types, sms, chats;
  for (ir::DType t : codegen::weight_dtypes()) types.emplace_back(ir::dtype_name(t));
  for (int sm : codegen::supported_sms()) sms.push_back("sm_" + std::to_string(sm));
  for (rt::ChatFamily f : {rt::ChatFamily::kChatML, rt::ChatFamily::kLlama3, rt::ChatFamily::kGemma})
    chats.emplace_back(rt::chat_family_name(f));
  std::string o;
  o += "architectures   " + join(frontend::supported_architectures()) + "\n";
  o += "weight types    " + join(types) + "\n";
  o += "targets         " + join(sms) + "\n";
  o += "kv cache types  " + join(compile::kv_types()) + "\n";
  o += "tokenizers      gpt2 (byte-level BPE; pre-tokenizers " + join(rt::Pretokenizer::supported_names()) +
       "), llama (SentencePiece)\n";
  o += "chat templates  " + join(chats) + "\n";
  return o;
}

void register_supported(CLI::App& app) {
  auto* cmd = app.add_subcommand("supported",
                                 "List the architectures, weight types, targets, KV-cache types, tokenizers and "
                                 "chat templates this kiln supports");
  cmd->callback([] { std::fputs(supported_text().c_str(), stdout); });
}

}  // namespace kiln::cli
