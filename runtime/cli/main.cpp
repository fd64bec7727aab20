// kiln-run: the runtime-only command line a deployment ships with its plans.
// Runs, benchmarks and inspects compiled plans; links the runtime only (no
// compiler, NVRTC or cuBLAS). Verbs, flags and output are those of `kiln run`,
// `kiln bench` and `kiln inspect x.plan` (one implementation, runtime/cli/).
#include <cstdio>
#include <new>
#include <exception>

#include <CLI/CLI.hpp>

#include "runtime/cli/cli.h"
#include "runtime/cli/interrupt.h"
#include "runtime/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "kiln-run: run a compiled kiln plan on an NVIDIA GPU (plans come from `kiln compile`).\n\n"
      "Typical use:\n"
      "  kiln-run run m.plan -p \"Once upon a time\"     generate on the GPU (--chat for a conversation)\n"
      "  kiln-run bench m.plan                          compiled vs eager latency\n"
      "  kiln-run inspect m.plan                        target, kernels, programs, arena, memory budget\n",
      "kiln-run"};
  app.set_version_flag("--version", std::string("kiln-run ") + KILN_VERSION);
  app.require_subcommand(1);
  kiln::rt::cli::register_run(app);
  kiln::rt::cli::register_bench(app);
  kiln::rt::cli::register_inspect_plan(app);
  // Exit status as kiln's (README.md, "Exit status"): 0 success, 1 bad input,
  // 2 internal error, 3 no GPU or a device / CUDA error, 130 stopped by
  // Ctrl-C (interrupt.h).
  try {
    app.parse(argc, argv);
  } catch (const kiln::rt::cli::Interrupted& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kiln-run: interrupted: %s\n", e.what.c_str());
    return kiln::rt::cli::kExitInterrupted;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "kiln-run: error: %s\n", kiln::rt::cli::parse_error_message(app, e, argc, argv).c_str());
    return 1;
  } catch (const kiln::rt::Error& e) {
    std::fprintf(stderr, "kiln-run: %s: %s\n",
                 e.code() == kiln::rt::ErrorCode::kInternal ? "internal error" : "error", e.what());
    return kiln::rt::cli::exit_status(e);
  } catch (const std::bad_alloc&) {  // the runtime's host side (the compiler maps its own to kOutOfMemory)
    std::fprintf(stderr, "kiln-run: error: out of host memory: free memory or use a machine with more\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln-run: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
