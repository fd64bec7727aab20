// The pass pipeline (pipeline.h): verify, then each pass followed by verify,
// with optional IR dumps and a progress callback.
#include "compiler/passes/pipeline.h"

#include <chrono>
#include <iostream>
#include <set>

#include <fmt/format.h>

#include "compiler/passes/passes.h"

namespace kiln::passes {

std::vector<Pass> default_pipeline() {
  return {fuse_qkv_rope_store_pass(), fuse_gate_up_swiglu_pass(), fuse_residual_pass(),
          fold_rms_norm_pass(),       fuse_lm_head_sample_pass(), fuse_norm_residual_pass(),
          dce_pass(),                 split_decode_attention_pass()};
}

namespace {

std::string names_of(const std::vector<Pass>& passes) {
  std::string s;
  for (const auto& p : passes) s += (s.empty() ? "" : ", ") + p.name;
  return s;
}

void check_names(const std::vector<std::string>& names, const std::vector<Pass>& passes, const char* option,
                 bool allow_all) {
  std::set<std::string> valid;
  for (const auto& p : passes) valid.insert(p.name);
  for (const auto& n : names) {
    if (valid.count(n) || (allow_all && n == "all")) continue;
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: unknown pass '{}'; valid passes are: {}{}", option, n, names_of(passes),
                            allow_all ? " (or \"all\")" : ""),
                n);
  }
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  for (const auto& x : v)
    if (x == s) return true;
  return false;
}

}  // namespace

void check_pass_names(const PipelineOptions& opt, const std::vector<Pass>& passes) {
  std::vector<Pass> distinct;
  for (const auto& p : passes) {
    bool seen = false;
    for (const auto& d : distinct) seen |= d.name == p.name;
    if (!seen) distinct.push_back(p);
  }
  check_names(opt.dump_after, distinct, "--dump-after", true);
  check_names(opt.disable, distinct, "--disable-pass", false);
}

PipelineOptions options_for(const PipelineOptions& opt, const std::vector<Pass>& pipeline) {
  auto runs = [&](const std::string& n) {
    for (const auto& p : pipeline)
      if (p.name == n) return true;
    return false;
  };
  PipelineOptions r = opt;
  r.disable.clear();
  r.dump_after.clear();
  for (const auto& n : opt.disable)
    if (runs(n)) r.disable.push_back(n);
  for (const auto& n : opt.dump_after)
    if (n == "all" || runs(n)) r.dump_after.push_back(n);
  return r;
}

ir::Graph run_pipeline(ir::Graph g, const std::vector<Pass>& passes, const PipelineOptions& opt) {
  check_names(opt.dump_after, passes, "--dump-after", true);
  check_names(opt.disable, passes, "--disable-pass", false);
  try {
    ir::verify(g);
  } catch (const Error& e) {
    throw Error(ErrorCode::kInternal, std::string("the graph given to the pass pipeline is invalid: ") + e.what(),
                e.field());
  }
  std::ostream& dump = opt.dump ? *opt.dump : std::cerr;
  for (const Pass& p : passes) {
    if (contains(opt.disable, p.name)) continue;
    auto t0 = std::chrono::steady_clock::now();
    bool changed = false;
    try {
      changed = p.run(g);
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("pass '{}' failed: {}", p.name, e.what()), e.field());
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    try {
      ir::verify(g);
    } catch (const Error& e) {
      throw Error(ErrorCode::kInternal,
                  fmt::format("pass '{}' left an invalid graph (a bug in the pass): {}", p.name, e.what()), e.field());
    }
    if (opt.on_pass) opt.on_pass(p.name, changed, secs);
    if (contains(opt.dump_after, p.name) || contains(opt.dump_after, "all")) {
      dump << fmt::format("// ---- IR after pass '{}' ({}, {} nodes)\n", p.name, changed ? "changed" : "unchanged",
                          g.nodes().size());
      dump << ir::print(g);
    }
  }
  return g;
}

}  // namespace kiln::passes
