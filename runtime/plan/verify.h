// kiln::rt::verify_plan: the runtime's check of an untrusted plan file image
// before any of it is used (docs/plan-abi.md, "The plan is untrusted input"):
//  1. header: magic, format version (equal major, minor <= ours), sections
//     inside the file, aligned and non-overlapping, XXH64 of both sections;
//  2. structure: the flatbuffers Verifier (every offset/vector/string in bounds);
//  3. semantics (PlanVerifier): every index in range, every pointer argument
//     inside its region, weight blobs inside the weights section and disjoint,
//     launch dims and shared memory within CUDA limits, every kernel built for
//     the plan's target SM, tokenizer ids in range, sizes overflow-checked.
// Throws kiln::rt::Error naming the cause and the fix; Error::field() names
// the check/object ("header.magic", "programs[0].launches[3].kernel", ...).
// The device-dependent checks (SM of the device) are the engine's job.
#pragma once
#include <cstdint>
#include <span>

#include "schemas/plan_header.h"

namespace kiln::rt {

// CUDA limits every supported device (sm_80 and newer) shares.
inline constexpr uint32_t kMaxThreadsPerBlock = 1024;
inline constexpr uint32_t kMaxBlockDimZ = 64;
inline constexpr uint64_t kMaxGridDimX = 2147483647ull;
inline constexpr uint32_t kMaxGridDimYZ = 65535;
inline constexpr uint32_t kMaxSharedMemPerBlock = 228 * 1024;

// Verifies the whole file image; returns its (verified) header.
plan_format::PlanHeader verify_plan(std::span<const uint8_t> file);

}  // namespace kiln::rt
