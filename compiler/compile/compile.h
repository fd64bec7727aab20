// The compile driver: GGUF -> IR -> passes -> kernels -> memory plan -> plan file.
// compile.cpp sequences the stages (each in its own file in compiler/compile/).
//
// Every option that changes the plan's contents (sm, weight_layout, kv_type, ctx,
// max_tokens, prefill_buckets, eager, pipeline.disable) has a `kiln compile`
// flag and is recorded in the plan (Plan.compile_options, shown by
// `kiln inspect model.plan`); cache_dir, jobs, dump_after and progress do not
// change the plan.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "compiler/passes/pipeline.h"
#include "ir/dtype.h"

namespace kiln::compile {

struct CompileOptions {
  std::string model_path;
  std::string out_path;
  int sm = 90;                            // target SM (90 = sm_90)
  std::string weight_layout = "planes";   // --weight-layout: how compiled matmul weights are stored (codegen::Target;
                                          // one of codegen::weight_layouts())
  std::string kv_type = "f16";            // --kv-type: KV-cache dtype, one of kv_types() ("f16" halves the
                                          // f32 cache; the interpreter rounds stored rows the same way)
  int64_t ctx = 0;                        // compiled context (KV rows); 0 = min(2048, model's)
  int64_t max_tokens = 0;                 // largest prefill chunk, at most ctx; 0 = kDefaultMaxTokens (512:
                                          // tensor-core GEMMs reach ~60% of peak at 512 rows) clipped to ctx
  std::vector<int64_t> prefill_buckets;   // each in [2, max_tokens]; empty = {16, 64, max_tokens} clipped
                                          // (lowering.h resolve_shapes: nothing asked for is dropped)
  bool eager = true;                      // also emit the eager (unfused, host-launched) programs
  bool pdl = true;                        // --no-pdl clears: compiled programs on sm_90+ launch each kernel
                                          // with programmatic dependent launch (Program.pdl)
  std::string cache_dir;                  // NVRTC kernel cache ("" = default, "-" = off)
  int jobs = 0;                           // parallel NVRTC compiles (0 = hardware threads)
  passes::PipelineOptions pipeline;       // --disable-pass (recorded), --dump-after
  std::string command_line;               // recorded in the plan as given (informational)
  // Progress lines ("[3/7] kernels: 41 compiled, 12 cached (2.1 s)"); null = silent.
  std::function<void(const std::string&)> progress;
};

struct CompileReport {
  std::vector<std::pair<std::string, double>> stages;  // stage name, seconds
  size_t n_kernels = 0, n_modules = 0, n_launches_compiled_decode = 0, n_launches_eager_decode = 0;
  uint64_t plan_bytes = 0, weights_bytes = 0, arena_bytes = 0, kv_bytes = 0;
  uint64_t largest_blob_bytes = 0;  // the largest weight blob written (the plan writer holds one at a time)
  // Peak memory during the compile (peak_memory.h): VmHWM, which counts the
  // mapped model's pages, and the largest RssAnon sampled every 10 ms.
  uint64_t peak_rss_bytes = 0, peak_anon_bytes = 0;
  // KV bytes the sliding-window layers' ring caches save against full caches
  // of the compiled context (0 for a model without sliding-window layers).
  uint64_t kv_ring_saved_bytes = 0;
  double total_seconds = 0;
};

// Throws kiln::Error (bad model, unsupported, I/O). Never leaves a partial plan at out_path.
CompileReport compile_model(const CompileOptions& opt);

// The dtypes --kv-type accepts ("f16", "bf16", "f32"), and the one a name means
// (throws kiln::Error(kInvalidArgument) naming --kv-type and the choices).
const std::vector<std::string>& kv_types();
ir::DType parse_kv_type(const std::string& name);

// Resolves "--target": "sm_90", "90", or "native" (asks the local GPU; a clear error when none).
int resolve_target(const std::string& target);

}  // namespace kiln::compile
