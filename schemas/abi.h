// The types every half of kiln shares (compiler, codegen, runtime, tests):
// the per-step block and the enums of the plan schema. The enums are the ones
// flatc generates from schemas/plan.fbs, so there is exactly one of each.
#pragma once
#include "schemas/kiln_step.h"
#include "schemas/plan_generated.h"

namespace kiln {
// Compiled (fused, shape-specialised kernels, CUDA graphs) or eager (one
// generic kernel per IR op, launched from the host).
using ProgramMode = fb::ProgramMode;
inline const char* program_mode_name(ProgramMode m) { return m == ProgramMode::Eager ? "eager" : "compiled"; }
}  // namespace kiln
