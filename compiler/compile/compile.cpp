// The compile driver: sequences the stages and times them (one progress line
// and one CompileReport entry per stage). Each stage lives in its own file:
//
//   read     compile.cpp            open the GGUF, check support, read the config,
//                                   resolve ctx / max_tokens / buckets (lowering.h resolve_shapes)
//   passes   compile.cpp            frontend graph + sampling (the eager graph), pass
//                                   pipeline (the compiled graph)
//   weights  weight_layout.{h,cpp}  one blob per (source, layout), views for the
//                                   parts of a fused "a+b" source
//   lower    buffer_assignment.{h,cpp}  fixed arena slots (step, tokens, positions,
//                                   KV states); per program: temporaries' live
//                                   ranges, in-place aliasing (op table),
//                                   MemoryPlanner, argument addresses
//            lowering.{h,cpp}       which programs exist; node -> launch via codegen::lower
//   nvrtc    kernel_build.{h,cpp}   each distinct module compiled once, in parallel (compile_all)
//   write    plan_assembly.{h,cpp}  PlanSpec: model config, tokenizer, kernels, weights,
//                                   arena, programs, compile-options record; then plan::write_plan
#include "compiler/compile/compile.h"
#include "ir/dequant.h"

#include <algorithm>
#include <chrono>
#include <new>
#include <ctime>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "codegen/codegen.h"
#include "compiler/compile/buffer_assignment.h"
#include "compiler/compile/kernel_build.h"
#include "compiler/compile/lowering.h"
#include "compiler/compile/peak_memory.h"
#include "compiler/compile/plan_assembly.h"
#include "compiler/compile/weight_layout.h"
#include "compiler/frontend/frontend.h"
#include "compiler/gguf/gguf.h"
#include "compiler/plan/writer.h"
#include "compiler/tokenizer/import.h"
#include "runtime/cuda/cuda_api.h"

namespace kiln::compile {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// cuBLASLt workspace (its documentation recommends 32 MiB on Hopper).
constexpr uint64_t kGemmWorkspaceBytes = 32ull << 20;

}  // namespace

const std::vector<std::string>& kv_types() {
  static const std::vector<std::string> v = {"f16", "bf16", "f32"};
  return v;
}

ir::DType parse_kv_type(const std::string& name) {
  if (name == "f16") return ir::DType::F16;
  if (name == "bf16") return ir::DType::BF16;
  if (name == "f32") return ir::DType::F32;
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("--kv-type '{}' is not a KV-cache type: use one of {}", name, fmt::join(kv_types(), ", ")),
              "kv_type");
}

namespace {

void check_options(const CompileOptions& opt) {
  (void)parse_kv_type(opt.kv_type);
  const auto& layouts = codegen::weight_layouts();
  if (std::find(layouts.begin(), layouts.end(), opt.weight_layout) == layouts.end())
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--weight-layout '{}' is not a weight layout: use one of {}", opt.weight_layout,
                            fmt::join(layouts, ", ")),
                "weight_layout");
}

}  // namespace

int resolve_target(const std::string& target) {
  if (target == "native") {
    std::string why;
    auto dev = rt::cuda::probe_device(0, &why);
    if (!dev)
      throw Error(ErrorCode::kInvalidArgument,
                  "--target native needs a local GPU (" + why + "): name the target instead, e.g. --target sm_90");
    return dev->sm;
  }
  return codegen::parse_target(target);
}

namespace {
CompileReport compile_model_impl(const CompileOptions& opt);
}  // namespace

// A host allocation that fails anywhere in the compile (std::bad_alloc, also
// from a worker thread) ends it with one error naming the cause; the output
// path is untouched (plans are published whole, AtomicFile).
CompileReport compile_model(const CompileOptions& opt) {
  try {
    return compile_model_impl(opt);
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::kOutOfMemory,
                "out of host memory while compiling " + opt.model_path +
                    ": free memory or use a machine with more (kiln compile reports its peak; weights stream from "
                    "the mapped model, so the peak is about the largest tensor plus a few hundred MiB)");
  }
}

namespace {
CompileReport compile_model_impl(const CompileOptions& opt) {
  CompileReport rep;
  const auto t_all = Clock::now();
  PeakMemorySampler memory;
  auto stage_done = [&](const std::string& name, Clock::time_point t, const std::string& detail) {
    double s = since(t);
    rep.stages.emplace_back(name, s);
    if (opt.progress) opt.progress(fmt::format("{:<10} {:>7.2f} s  {}", name, s, detail));
  };
  check_options(opt);

  // 1. Read and check the model; resolve the program shapes.
  auto t = Clock::now();
  gguf::File f = gguf::File::open(opt.model_path);
  auto problems = frontend::support_problems(f);
  if (!problems.empty()) {
    std::string msg = "kiln cannot compile " + opt.model_path + ":";
    for (const auto& p : problems) msg += "\n  - " + p;
    throw Error(ErrorCode::kUnsupported, msg);
  }
  const frontend::ModelConfig cfg = frontend::read_config(f);
  const ProgramShapes shapes = resolve_shapes(opt.ctx, opt.max_tokens, opt.prefill_buckets, cfg.context_length);
  stage_done("read", t, fmt::format("{} ({}, {} layers, hidden {}, vocab {})", cfg.name, cfg.arch, cfg.n_layers,
                                    cfg.hidden, cfg.vocab));

  // 2. IR: the eager graph is the frontend's, plus sampling; the compiled graph is it after the passes.
  t = Clock::now();
  ir::Graph base = frontend::build_graph(f, cfg, {shapes.max_tokens, shapes.ctx, parse_kv_type(opt.kv_type)});
  {
    auto logits = base.find_value("logits");
    if (!logits) throw Error(ErrorCode::kInternal, "frontend graph has no 'logits' output");
    ir::ValueId next = base.add_node(ir::OpKind::ArgMax, {*logits}, {}, "next_token", ir::DType::I32,
                                     {ir::Dim::fixed(1)});
    base.mark_output(next);
    ir::verify(base);
  }
  // A KV cache whose rows are not the context (the symbolic kv_len) is a
  // sliding-window ring: what it saves against a full cache of ctx rows.
  for (const ir::Value& v : base.values())
    if (v.kind == ir::ValueKind::State && v.shape.size() == 2 && v.shape[0].is_static() &&
        v.shape[0].value < shapes.ctx && v.shape[1].is_static())
      rep.kv_ring_saved_bytes += ir::row_bytes(v.dtype, v.shape[1].value) *
                                 static_cast<uint64_t>(shapes.ctx - v.shape[0].value);
  const auto main_passes = passes::default_pipeline(), prefill_passes = passes::prefill_pipeline(),
             decode_passes = passes::decode_pipeline();
  std::vector<passes::Pass> all_passes = main_passes;
  all_passes.insert(all_passes.end(), prefill_passes.begin(), prefill_passes.end());
  all_passes.insert(all_passes.end(), decode_passes.begin(), decode_passes.end());
  passes::check_pass_names(opt.pipeline, all_passes);
  const ir::Graph fused = passes::run_pipeline(base, main_passes, passes::options_for(opt.pipeline, main_passes));
  // Compiled prefill programs: GEMMs on tensor cores (tensor-core-gemm).
  ir::Graph prefill = passes::run_pipeline(fused, prefill_passes, passes::options_for(opt.pipeline, prefill_passes));
  // The compiled decode program: GEMVs on int8 activations (q8-activations).
  ir::Graph decode = passes::run_pipeline(fused, decode_passes, passes::options_for(opt.pipeline, decode_passes));
  size_t n_gemms = 0;
  for (const auto& n : prefill.nodes())
    if ((n.op == ir::OpKind::MatMul || n.op == ir::OpKind::MatMulAdd) &&
        prefill.value(n.inputs[0]).dtype != ir::DType::F32)
      ++n_gemms;
  stage_done("passes", t, fmt::format("{} ops -> {} ops (prefill: {} ops, {} tensor-core GEMMs)", base.nodes().size(),
                                      fused.nodes().size(), prefill.nodes().size(), n_gemms));

  // 3. Weights: one blob per (possibly fused) source and layout, views for the parts.
  t = Clock::now();
  const codegen::Target target{opt.sm, opt.weight_layout};
  std::vector<GraphUse> uses = {{&decode, ProgramMode::Compiled}, {&prefill, ProgramMode::Compiled}};
  if (opt.eager) uses.push_back({&base, ProgramMode::Eager});
  WeightLayout W = layout_weights(f, uses, target);
  stage_done("weights", t,
             fmt::format("{} blobs, {:.1f} MiB", W.blobs.size(), W.section_bytes() / 1048576.0));

  // 4. Buffers and launches: fixed arena slots, then per program its
  // temporaries (memory plan) and one launch per node.
  t = Clock::now();
  std::vector<const ir::Graph*> graphs = {&decode, &prefill};
  if (opt.eager) graphs.push_back(&base);
  const FixedSlots slots =
      assign_fixed_slots(graphs, shapes.max_tokens, shapes.ctx, n_gemms ? kGemmWorkspaceBytes : 0);
  KernelTable kernels;
  std::vector<plan::ProgramSpec> programs;
  uint64_t temps_bytes = 0;
  for (const ProgramJob& job : program_jobs(decode, opt.eager ? &base : nullptr, shapes, &prefill)) {
    const BufferAssignment buffers(*job.g, job.dims, slots, W);
    temps_bytes = std::max(temps_bytes, buffers.temps_bytes());
    plan::ProgramSpec ps = lower_program(job, target, buffers, kernels);
    // Compiled programs overlap each kernel's launch with the end of the one
    // before (programmatic dependent launch, sm_90+): every kernel waits for
    // its predecessor to finish before its first memory access (kernel_text
    // in codegen.cpp), so this changes timing only. Eager programs stay plain
    // host launches (the baseline).
    ps.pdl = opt.pdl && job.mode == ProgramMode::Compiled && opt.sm >= 90;
    if (job.phase == plan::Phase::kDecode) {
      if (job.mode == ProgramMode::Compiled) rep.n_launches_compiled_decode = ps.launches.size();
      else rep.n_launches_eager_decode = ps.launches.size();
    }
    programs.push_back(std::move(ps));
  }
  stage_done("lower", t, fmt::format("{} programs, {} distinct kernels; decode launches: compiled {}, eager {}",
                                     programs.size(), kernels.sources().size(), rep.n_launches_compiled_decode,
                                     rep.n_launches_eager_decode));

  // 5. NVRTC: compile each distinct module source once, in parallel (cached on disk).
  t = Clock::now();
  // "" = the default folder (~/.cache/kiln/kernels), "-" = no cache
  const std::string cache =
      opt.cache_dir == "-" ? std::string() : opt.cache_dir.empty() ? codegen::default_cache_dir() : opt.cache_dir;
  std::function<void(size_t, size_t)> on_module;
  if (opt.progress)
    on_module = [&](size_t done, size_t total) {
      if (done % 16 == 0 || done == total) opt.progress(fmt::format("           modules {}/{}", done, total));
    };
  const KernelBuild built = compile_all(kernels.sources(), opt.sm, cache, opt.jobs, on_module);
  rep.n_modules = built.modules.size();
  rep.n_kernels = kernels.sources().size();
  std::vector<plan::KernelSpec> kernel_list = kernel_specs(kernels.sources(), built, opt.sm);
  stage_done("nvrtc", t, fmt::format("{} modules, {} kernels for sm_{}", rep.n_modules, rep.n_kernels, opt.sm));

  // 6. Assemble and write the plan.
  t = Clock::now();
  PlanParts parts;
  parts.config = cfg;
  parts.shapes = shapes;
  parts.vocab = tokenizer::import_vocab(f);
  parts.kernels = std::move(kernel_list);
  parts.weights = std::move(W);
  parts.slots = slots;
  parts.programs = std::move(programs);
  parts.temps_bytes = temps_bytes;
  parts.options = options_record(opt, shapes);
  parts.created_utc = static_cast<uint64_t>(std::time(nullptr));
  const plan::PlanSpec spec = assemble_plan(std::move(parts));
  auto wr = plan::write_plan(spec, opt.out_path);
  rep.plan_bytes = wr.file_size;
  rep.weights_bytes = wr.weights_size;
  rep.arena_bytes = spec.arena.size;
  rep.kv_bytes = slots.kv_size;
  for (const auto& w : spec.weights) rep.largest_blob_bytes = std::max<uint64_t>(rep.largest_blob_bytes, w.size);
  stage_done("write", t,
             fmt::format("{} ({:.1f} MiB; arena {:.1f} MiB of which KV cache {:.1f} MiB{})", opt.out_path,
                         wr.file_size / 1048576.0, spec.arena.size / 1048576.0, slots.kv_size / 1048576.0,
                         rep.kv_ring_saved_bytes
                             ? fmt::format(", {:.1f} MiB less than full caches: sliding-window layers keep "
                                           "only their window in a ring",
                                           rep.kv_ring_saved_bytes / 1048576.0)
                             : std::string()));
  rep.total_seconds = since(t_all);
  const PeakMemory peak = memory.peak();
  rep.peak_rss_bytes = peak.peak_rss;
  rep.peak_anon_bytes = peak.peak_anon;
  return rep;
}
}  // namespace

}  // namespace kiln::compile
