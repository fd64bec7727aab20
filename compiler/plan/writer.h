// plan::write_plan: PlanSpec -> plan file (docs/plan-abi.md):
//   64-byte header | flatbuffer (schemas/plan.fbs) | weights section at a
//   4096-aligned offset, each blob at its 256-aligned offset
// with XXH64 hashes of both sections in the header. The file is written to an
// unnamed temporary next to `path` (kiln::AtomicFile), verified, and renamed
// over it only when complete, so a failure, a full disk or a kill never
// clobbers an existing plan nor leaves a partial one.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/plan/plan_spec.h"

namespace kiln::plan {

// Lays the blobs out back to back in the given order, each at a 256-byte
// aligned offset, writing WeightSpec::offset. Returns the section size (end of
// the last blob). Call before building launches that point into the weights.
uint64_t assign_weight_offsets(std::vector<WeightSpec>& weights);

struct WriteOptions {
  // Load the written file back through the runtime's verifier
  // (kiln::rt::verify_plan) before renaming it into place. Tests that craft
  // deliberately invalid plans turn this off.
  bool verify = true;
};

struct WriteResult {
  uint64_t file_size = 0;
  uint64_t fb_offset = 0, fb_size = 0;
  uint64_t weights_offset = 0, weights_size = 0;
};

// Throws kiln::Error: kInvalidArgument when the spec is inconsistent (weight
// offsets unaligned/overlapping, bytes of the wrong size, no data for a blob)
// or, with verify, fails the runtime verifier (message = the verifier's);
// kIo when the file cannot be written.
WriteResult write_plan(const PlanSpec& spec, const std::string& path,
                       const WriteOptions& options = {});

// The flatbuffer section alone (the Plan table, file identifier "KILN"), with
// the budget computed for a weights section of `weights_size` bytes.
std::vector<uint8_t> build_plan_flatbuffer(const PlanSpec& spec, uint64_t weights_size);

}  // namespace kiln::plan
