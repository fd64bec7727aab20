// kiln: ahead-of-time compiler and lean runtime for LLMs on NVIDIA GPUs.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "compiler/cli/verbs.h"
#include "ir/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "kiln: compile a GGUF model into a plan for one NVIDIA GPU, then run it.\n\n"
      "Typical use:\n"
      "  kiln inspect model.gguf                       what is in the model, is it supported\n"
      "  kiln generate --reference model.gguf -p Hi   generate on the CPU (reference interpreter)\n"
      "  kiln synth --geometry llama-1b --type q8_0 -o m.gguf   make a random-weight test model\n",
      "kiln"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  kiln::cli::register_inspect(app);
  kiln::cli::register_generate(app);
  kiln::cli::register_synth(app);
  kiln::cli::register_tokenize(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
