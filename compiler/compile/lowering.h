// Stage "lower" of the compile driver: which programs a plan has, and each
// program's launches — one per IR node, made by codegen::lower, with its
// arguments bound to the addresses of the buffer assignment.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "codegen/codegen.h"
#include "compiler/compile/buffer_assignment.h"
#include "compiler/plan/plan_spec.h"
#include "ir/graph.h"

namespace kiln::compile {

// The program shapes a compile asks for, resolved against the model.
struct ProgramShapes {
  int64_t ctx = 0;                 // KV-cache rows
  int64_t max_tokens = 0;          // largest prefill chunk (<= ctx)
  std::vector<int64_t> buckets;    // prefill chunk sizes, ascending, in [2, max_tokens], max_tokens included
};
// The largest prefill chunk when none is asked for (clipped to ctx).
inline constexpr int64_t kDefaultMaxTokens = 512;
// ctx: requested (0 = min(2048, model's)); max_tokens: requested (0 =
// kDefaultMaxTokens clipped to ctx); buckets: requested (empty = {16, 64,
// max_tokens}, those above max_tokens left out), sorted, duplicates merged,
// max_tokens added. Nothing asked for is dropped silently: throws
// kiln::Error(kInvalidArgument) naming the flag when ctx exceeds the model's
// context length, a requested max_tokens exceeds ctx (also when ctx is the
// default), or a requested bucket lies outside [2, max_tokens].
ProgramShapes resolve_shapes(int64_t ctx, int64_t max_tokens, const std::vector<int64_t>& buckets,
                             int64_t model_context);

// One program to lower: a graph in a mode, a phase and its dim bindings
// (tokens = the bucket, kv_len = ctx, seqs = 1).
struct ProgramJob {
  const ir::Graph* g = nullptr;
  ProgramMode mode = ProgramMode::Compiled;
  plan::Phase phase = plan::Phase::kDecode;
  ir::DimBindings dims;
  int64_t bucket() const { return dims.tokens; }
  std::string name() const;  // "compiled_decode_1", "eager_prefill_64"
};
// Compiled decode (bucket 1) then compiled prefill per bucket; the same for
// `eager` when given (nullptr: no eager programs).
// Compiled prefill programs run `compiled_prefill` when given (the graph after
// the prefill pipeline: tensor-core GEMMs), else `compiled`.
std::vector<ProgramJob> program_jobs(const ir::Graph& compiled, const ir::Graph* eager, const ProgramShapes& shapes,
                                     const ir::Graph* compiled_prefill = nullptr);

// The distinct kernels of a plan: one per (source hash, entry). Eager modules
// hold every generic kernel of one dtype, so several kernels share a source.
class KernelTable {
 public:
  // Index of k in the table (added when new).
  uint32_t add(const codegen::KernelSource& k);
  const std::vector<codegen::KernelSource>& sources() const { return sources_; }

 private:
  std::vector<codegen::KernelSource> sources_;
  std::map<std::pair<uint64_t, std::string>, uint32_t> index_;
};

// Lowers every node of job's graph (schedule order) into one launch each:
// kernel (added to `kernels`), grid/block/smem, arguments from `buffers`
// (weights in the layout codegen::input_layout names), label
// "<op> -> <first output>". Also sets the program's name, mode, phase,
// bucket, logits and token offsets.
plan::ProgramSpec lower_program(const ProgramJob& job, const codegen::Target& target,
                                const BufferAssignment& buffers, KernelTable& kernels);

}  // namespace kiln::compile
