// The pass pipeline: IR rewrites run in order with the IR verifier around
// every pass (XLA style). Each pass lives in its own file with its own golden
// before/after test (tests/compiler/passes/).
#pragma once
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::passes {

struct Pass {
  std::string name;                        // "fuse-qkv"
  std::string summary;                     // one line for --help / --list-passes
  std::function<bool(ir::Graph&)> run;     // returns true if it changed the graph
};

struct PipelineOptions {
  std::vector<std::string> dump_after;     // pass names (or "all") whose output IR is printed
  std::ostream* dump = nullptr;            // where dumps go (stderr when null)
  std::vector<std::string> disable;        // pass names to skip
  std::function<void(const std::string& pass, bool changed, double seconds)> on_pass;  // progress
};

// The default pipeline for the compiled (fused) programs, in order.
std::vector<Pass> default_pipeline();
// Run after it on a copy for the compiled prefill programs: GEMMs on tensor
// cores (tensor-core-gemm, fold-cast, then dce).
std::vector<Pass> prefill_pipeline();
// Run after the default pipeline on a copy for the compiled decode program
// (one token per step, GEMVs): fuse-qkv-parts, q8-activations,
// fuse-qkv-rope-epilogue.
std::vector<Pass> decode_pipeline();

// For options that serve several pipelines run one after another (the
// compiled graph, then the prefill graph): checks every --dump-after /
// --disable-pass name against all of `passes` (kiln::Error(kInvalidArgument)
// listing them, as run_pipeline does), then `options_for` keeps the names one
// pipeline runs, which run_pipeline then accepts.
void check_pass_names(const PipelineOptions& opt, const std::vector<Pass>& passes);
PipelineOptions options_for(const PipelineOptions& opt, const std::vector<Pass>& pipeline);

// Runs `passes` over g: verify(g) before the first pass and after each one;
// a pass that leaves an invalid graph is a kiln::Error(kInternal) naming it.
// Unknown names in dump_after/disable are a kiln::Error(kInvalidArgument)
// listing the valid ones.
ir::Graph run_pipeline(ir::Graph g, const std::vector<Pass>& passes, const PipelineOptions& opt);

}  // namespace kiln::passes
