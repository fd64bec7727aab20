// kiln: ahead-of-time compiler and lean runtime for LLMs on NVIDIA GPUs.
#include <cstdio>
#include <new>
#include <exception>

#include <CLI/CLI.hpp>

#include "compiler/cli/verbs.h"
#include "ir/error.h"
#include "runtime/cli/cli.h"
#include "runtime/cli/interrupt.h"
#include "runtime/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "kiln: compile a GGUF model into a plan for one NVIDIA GPU, then run it.\n\n"
      "Typical use:\n"
      "  kiln inspect model.gguf                        what is in the model; can kiln compile it\n"
      "  kiln compile model.gguf --target sm_90 -o m.plan   compile (no GPU needed)\n"
      "  kiln run m.plan -p \"Once upon a time\"         generate on the GPU (--chat for a conversation)\n"
      "  kiln bench m.plan                              compiled vs eager latency\n"
      "  kiln verify m.plan model.gguf                  check the plan on this GPU against the interpreter\n"
      "  kiln generate --reference model.gguf -p Hi    generate on the CPU (reference interpreter)\n"
      "  kiln synth --geometry llama-1b --type q8_0 -o m.gguf   make a random-weight test model\n"
      "  kiln supported                                 architectures, weight types, targets kiln supports\n",
      "kiln"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  kiln::cli::register_inspect(app);
  kiln::cli::register_compile(app);
  kiln::rt::cli::register_run(app);
  kiln::rt::cli::register_bench(app);
  kiln::cli::register_generate(app);
  kiln::cli::register_synth(app);
  kiln::cli::register_tokenize(app);
  kiln::cli::register_verify(app);
  kiln::cli::register_supported(app);
  // Exit status (README.md, "Exit status"): 0 success, 1 bad input (command
  // line, model, plan), 2 internal error, 3 no GPU or a device / CUDA error,
  // 4 `kiln verify` found results outside tolerance, 130 stopped by Ctrl-C
  // (runtime/cli/interrupt.h).
  try {
    app.parse(argc, argv);
  } catch (const kiln::cli::VerifyFailed& v) {
    return v.status;
  } catch (const kiln::rt::cli::Interrupted& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kiln: interrupted: %s\n", e.what.c_str());
    return kiln::rt::cli::kExitInterrupted;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "kiln: error: %s\n", kiln::rt::cli::parse_error_message(app, e, argc, argv).c_str());
    return 1;
  } catch (const kiln::Error& e) {
    if (e.code() == kiln::ErrorCode::kInternal) {
      std::fprintf(stderr, "kiln: internal error: %s\n", e.what());
      return 2;
    }
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
    return 1;
  } catch (const kiln::rt::Error& e) {
    std::fprintf(stderr, "kiln: %s: %s\n", e.code() == kiln::rt::ErrorCode::kInternal ? "internal error" : "error",
                 e.what());
    return kiln::rt::cli::exit_status(e);
  } catch (const std::bad_alloc&) {  // the runtime's host side (the compiler maps its own to kOutOfMemory)
    std::fprintf(stderr, "kiln: error: out of host memory: free memory or use a machine with more\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
