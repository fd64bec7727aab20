// Stage "write" of the compile driver: the PlanSpec (compiler/plan/plan_spec.h)
// from what the other stages made — model config, tokenizer, kernels, weights,
// arena, programs and the record of the compile options — then
// plan::write_plan turns it into the file.
#pragma once
#include <cstdint>
#include <vector>

#include "codegen/codegen.h"
#include "compiler/compile/buffer_assignment.h"
#include "compiler/compile/compile.h"
#include "compiler/compile/kernel_build.h"
#include "compiler/compile/lowering.h"
#include "compiler/compile/weight_layout.h"
#include "compiler/frontend/frontend.h"
#include "compiler/plan/plan_spec.h"
#include "runtime/tokenizer/vocab.h"

namespace kiln::compile {

plan::ModelConfigSpec model_config(const frontend::ModelConfig& cfg, const ProgramShapes& shapes);

// The vocabulary and special ids as imported, plus every token that ends
// generation (rt::Tokenizer::is_eog).
plan::TokenizerSpec tokenizer_spec(const rt::VocabData& vd);

// One KernelSpec per source (in order), with its module's CUBIN and PTX.
std::vector<plan::KernelSpec> kernel_specs(const std::vector<codegen::KernelSource>& sources,
                                           const KernelBuild& build, int sm);

// The arena: fixed slots, then the largest program's temporaries (size
// rounded up to 256); logits_offset: the first program's logits.
plan::ArenaSpec arena_spec(const FixedSlots& slots, uint64_t temps_bytes, uint64_t logits_offset);

// Every output-changing compile option, resolved, plus opt.command_line.
plan::CompileOptionsSpec options_record(const CompileOptions& opt, const ProgramShapes& shapes);

struct PlanParts {
  frontend::ModelConfig config;
  ProgramShapes shapes;
  rt::VocabData vocab;
  std::vector<plan::KernelSpec> kernels;
  WeightLayout weights;
  FixedSlots slots;
  std::vector<plan::ProgramSpec> programs;
  uint64_t temps_bytes = 0;  // max over programs
  plan::CompileOptionsSpec options;
  uint64_t created_utc = 0;
};
// Moves the parts into one PlanSpec (compiler version, target = options.target_sm).
plan::PlanSpec assemble_plan(PlanParts parts);

}  // namespace kiln::compile
