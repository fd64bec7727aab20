// `kiln synth`: writes a random-weight llama GGUF of a known geometry, for
// tests and benchmarks that must not depend on downloading real models.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "compiler/cli/verbs.h"
#include "compiler/tools/synth/model.h"
#include "ir/error.h"
#include "runtime/cli/args.h"

namespace kiln::cli {
namespace {

struct SynthArgs {
  std::string geometry = "tiny";
  std::string type = "f16";
  uint64_t seed = 0;
  std::string seed_text = "0";
  uint64_t alignment = 32;
  int64_t layers = 0;
  std::string out;
  bool quiet = false;
};

void run_synth(SynthArgs& a) {
  a.seed = rt::cli::parse_u64("--seed", a.seed_text);
  rt::cli::check_output_file("--output", a.out);
  if (a.alignment == 0 || a.alignment > (1u << 20) || (a.alignment & (a.alignment - 1)) != 0)
    rt::cli::bad_value("--alignment", std::to_string(a.alignment), "must be a power of two, 1..1048576");
  synth::SynthOptions opt;
  opt.geometry = a.geometry;
  opt.type = a.type;
  opt.seed = a.seed;
  opt.alignment = a.alignment;
  if (a.layers < 0 || a.layers > 1024)
    rt::cli::bad_value("--layers", std::to_string(a.layers), "must be 1..1024 (0: the geometry's own)");
  opt.layers = a.layers;
  const gguf::Writer w = synth::build_model(opt);
  const uint64_t total = w.data_bytes();
  // A progress line only where writing takes noticeable time.
  const bool show = !a.quiet && total >= (64ull << 20);
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto last = start;
  gguf::Progress progress;
  if (show) {
    progress = [&](uint64_t done, uint64_t all) {
      const auto now = clock::now();
      if (done != all && now - last < std::chrono::milliseconds(250)) return;
      last = now;
      std::fprintf(stderr, "\rwriting %s: %.2f / %.2f GB (%3.0f%%)", a.out.c_str(), done / 1e9,
                   all / 1e9, all ? 100.0 * done / all : 100.0);
      std::fflush(stderr);
    };
  }
  w.write(a.out, progress);
  if (show) std::fprintf(stderr, "\n");
  const double secs = std::chrono::duration<double>(clock::now() - start).count();
  if (!a.quiet)
    std::printf("wrote %s: %s%s %s seed %llu, %zu tensors, %llu bytes in %.1f s\n", a.out.c_str(),
                a.geometry.c_str(), a.layers > 0 ? (" x " + std::to_string(a.layers) + " layers").c_str() : "",
                a.type.c_str(), static_cast<unsigned long long>(a.seed),
                w.tensors().size(), static_cast<unsigned long long>(w.file_size()), secs);
}

}  // namespace

void register_synth(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  auto* sub = app.add_subcommand(
      "synth",
      "Write a random-weight llama GGUF with the exact geometry of a known model "
      "(deterministic for a seed)");
  std::vector<std::string> geoms;
  for (const auto& g : synth::geometries()) geoms.push_back(g.name);
  sub->add_option("--geometry", args->geometry, "Model geometry")
      ->check(CLI::IsMember(geoms))
      ->capture_default_str();
  sub->add_option("--type", args->type,
                  "Weight type: one type for every matmul weight and token_embd, or q4_k_m "
                  "(llama.cpp's mix)")
      ->check(CLI::IsMember(synth::type_names()))
      ->capture_default_str();
  sub->add_option("--seed", args->seed_text, "Random seed")->capture_default_str();
  sub->add_option("--alignment", args->alignment, "GGUF data alignment (power of two)")
      ->capture_default_str();
  sub->add_option("--layers", args->layers,
                  "Layers instead of the geometry's (same widths; 0: the geometry's own), e.g. to time "
                  "a decode step's per-layer and per-token costs apart")
      ->capture_default_str();
  sub->add_option("-o,--output", args->out, "Output .gguf path")->required();
  sub->add_flag("-q,--quiet", args->quiet, "No progress or summary output");
  sub->callback([args] { run_synth(*args); });
}

}  // namespace kiln::cli
