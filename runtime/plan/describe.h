// kiln::rt::describe: the human-readable summary `kiln inspect model.plan`
// prints: format and compiler version, target, model config, tokenizer,
// kernels, programs, arena layout and memory budget.
#pragma once
#include <string>

#include "runtime/plan/plan.h"

namespace kiln::rt {

std::string describe(const Plan& plan);

// Every launch of every program (`kiln inspect --all-tensors model.plan`).
std::string describe_launches(const Plan& plan);

// "1.5 MiB"-style size.
std::string human_bytes(uint64_t bytes);

}  // namespace kiln::rt
