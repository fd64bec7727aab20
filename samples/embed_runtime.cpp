// Embedding the kiln runtime in an application: load a plan, generate a reply,
// stream it. Links only libkiln_runtime (no compiler, no NVRTC).
//
//   kiln compile model.gguf --target native -o model.plan
//   ./kiln_sample_embed model.plan "Write a haiku about compilers"
#include <cstdio>
#include <string>

#include "runtime/kiln_runtime.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s model.plan \"prompt\"\n", argv[0]);
    return 2;
  }
  try {
    auto model = kiln::rt::Model::load(argv[1], {});  // verify plan, check GPU, upload, build graphs
    kiln::rt::Session session = model->session();

    // Use the model's chat template when it has one kiln knows.
    std::vector<int32_t> ids;
    if (model->chat_template().family != kiln::rt::ChatFamily::kUnknown) {
      std::vector<kiln::rt::ChatMessage> msgs = {{"user", argv[2]}};
      ids = model->tokenizer().encode(kiln::rt::apply_chat_template(model->chat_template(), msgs, true), false, true);
    } else {
      ids = session.encode(argv[2]);
    }

    kiln::rt::GenerateOptions opt;
    opt.max_new_tokens = 96;
    opt.sampling.temperature = 0.7f;
    opt.sampling.top_p = 0.9f;
    opt.sampling.seed = 42;
    auto stats = session.generate(ids, opt, [](int32_t, std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return true;  // return false to stop early
    });
    std::fprintf(stderr, "\n[%d tokens, time to first token %.1f ms]\n", stats.generated, stats.prefill_s * 1e3);
  } catch (const kiln::rt::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
