// The fixed 64-byte header at offset 0 of a plan file (docs/plan-abi.md) and
// the format version this build writes and reads. Little-endian on disk; kiln
// targets little-endian hosts only (x86-64, aarch64), checked below.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kiln::plan_format {

// Bump per the rules at the top of schemas/plan.fbs. History (docs/plan-abi.md):
// 1.0 first format; 1.1 Plan.compile_options (the options the plan was compiled with);
// 1.2 CompileOptionsRecord.kv_type (--kv-type: the KV cache's dtype);
// 2.0 Launch.gemm (prefill matmuls as cuBLASLt GEMMs on tensor cores) and
//     Arena.gemm_workspace_*: a 1.x plan is refused ("recompile"), since its
//     prefill programs predate the tensor-core path a 2.0 runtime expects.
// 2.1 Program.pdl (kernels after the first launched with programmatic
//     dependent launch; a 2.0 plan reads as pdl = false).
// 2.2 Arg.out and Launch.inputs (for kiln run --check-finite).
// 2.3 Program.device_step (the sampling kernel advances KilnStep on the
//     device and stores the token to mapped host memory when KilnStep.ring
//     is set; a 2.2 plan reads as device_step = false).
inline constexpr uint32_t kFormatMajor = 2;
inline constexpr uint32_t kFormatMinor = 3;

inline constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'P', 'L', 'A', 'N'};
inline constexpr uint64_t kHeaderSize = 64;
inline constexpr uint64_t kWeightsAlign = 4096;  // weights section offset
inline constexpr uint64_t kBlobAlign = 256;      // each blob inside it
inline constexpr uint64_t kFlatbufferAlign = 8;  // flatbuffer section offset
inline constexpr uint64_t kStepBytes = 64;       // sizeof(KilnStep)

struct PlanHeader {
  char magic[8];
  uint32_t format_major;
  uint32_t format_minor;
  uint64_t fb_offset;
  uint64_t fb_size;
  uint64_t weights_offset;
  uint64_t weights_size;
  uint64_t fb_hash;       // XXH64 seed 0 of the flatbuffer section
  uint64_t weights_hash;  // XXH64 seed 0 of the weights section
};
static_assert(sizeof(PlanHeader) == kHeaderSize, "PlanHeader must be 64 bytes");
static_assert(offsetof(PlanHeader, fb_offset) == 16);
static_assert(offsetof(PlanHeader, weights_hash) == 56);

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln plan files are little-endian; big-endian hosts are not supported"
#endif

}  // namespace kiln::plan_format
