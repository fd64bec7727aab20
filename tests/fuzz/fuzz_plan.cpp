// Fuzz target: the plan loader and verifier on raw bytes (runtime/plan:
// Plan::from_bytes runs verify_plan: header, section hashes, the flatbuffers
// Verifier, the semantic PlanVerifier), then what the runtime does on the CPU
// with a plan that passed: describe() (`kiln inspect`), the tokenizer built
// from the plan, the engine's plain-data inputs, program / weight look-ups.
//
// Each input is tried twice: as given (so the header and hash checks are
// fuzzed), and with the two section hashes recomputed when the header's
// sections lie inside the input (so mutations of the flatbuffer reach the
// structural and semantic verifiers instead of stopping at the hash).
#include <cstring>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/plan/plan.h"
#include "schemas/plan_hash.h"
#include "schemas/plan_header.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_plan_common.h"

namespace {

using namespace kiln;

void try_load(std::vector<uint8_t> bytes) {
  try {
    rt::Plan p = rt::Plan::from_bytes(std::move(bytes), "<fuzz>");
    fuzz::exercise_plan(p);
  } catch (const rt::Error&) {
  }
}

}  // namespace

KILN_FUZZ_TARGET(plan) {
  std::vector<uint8_t> bytes(data, data + size);
  try_load(bytes);
  if (size < plan_format::kHeaderSize) return 0;
  plan_format::PlanHeader h;
  std::memcpy(&h, data, sizeof h);
  uint64_t fb_end, w_end;
  if (__builtin_add_overflow(h.fb_offset, h.fb_size, &fb_end) || fb_end > size ||
      __builtin_add_overflow(h.weights_offset, h.weights_size, &w_end) || w_end > size)
    return 0;
  const uint64_t fb_hash = plan_format::hash64(data + h.fb_offset, h.fb_size);
  const uint64_t weights_hash = plan_format::hash64(data + h.weights_offset, h.weights_size);
  if (fb_hash == h.fb_hash && weights_hash == h.weights_hash) return 0;  // tried as is already
  h.fb_hash = fb_hash;
  h.weights_hash = weights_hash;
  std::memcpy(bytes.data(), &h, sizeof h);
  try_load(std::move(bytes));
  return 0;
}
