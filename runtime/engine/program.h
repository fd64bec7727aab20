// Plain descriptions of what the engine executes, decoded once from the plan's
// flatbuffer (runtime/plan) so the hot paths never touch flatbuffer accessors.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "schemas/abi.h"

namespace kiln::rt {

enum class Region : uint8_t { Weights, Arena };
// The schema's enum (schemas/abi.h): one program-mode type in all of kiln.
using ::kiln::ProgramMode;
enum class Phase : uint8_t { Prefill, Decode };

struct ArgDesc {
  enum class Kind : uint8_t { Ptr, I32, F32 } kind = Kind::Ptr;
  Region region = Region::Arena;
  uint64_t offset = 0;
  int32_t i = 0;
  float f = 0.f;
  uint64_t size = 0;  // Ptr: bytes the kernel may touch (0 = unknown)
  uint8_t out = 0;    // Ptr: an activation output (1 f32, 2 f16, 3 bf16; +16: rows = the step's tokens)
};

// A cuBLASLt GEMM launch (schema table Gemm): args are x, w, [r,] y.
struct GemmDesc {
  uint32_t m = 0, n = 0, k = 0;
  bool bf16 = false;  // operand type: bf16, else f16
  bool residual = false;
};

struct LaunchDesc {
  uint32_t kernel = 0;          // unused when gemm is set
  std::optional<GemmDesc> gemm;
  std::array<uint32_t, 3> grid{1, 1, 1}, block{1, 1, 1};
  uint32_t smem = 0;
  std::vector<ArgDesc> args;
  std::string label;  // the IR node it came from, for errors and profiles
  std::vector<std::string> inputs;  // the IR values it reads (format 2.2; empty before)
};

struct ProgramDesc {
  std::string name;
  ProgramMode mode = ProgramMode::Compiled;
  Phase phase = Phase::Prefill;
  int32_t bucket = 1;             // tokens per step this program is built for
  uint64_t logits_offset = 0;     // arena offset of this program's logits [vocab] f32
  bool pdl = false;               // kernels after the first: programmatic dependent launch (Program.pdl)
  bool device_step = false;       // its sampling kernel advances KilnStep when ring is set (Program.device_step)
  std::vector<LaunchDesc> launches;
};

struct KernelDesc {
  std::string name, entry;
  int32_t sm = 0;
  const uint8_t* cubin = nullptr;
  size_t cubin_size = 0;
  const char* ptx = nullptr;      // NUL-terminated, may be null
  size_t ptx_size = 0;
  uint32_t smem = 0;
  uint64_t source_hash = 0;       // kernels of one module share it: loaded once
};

struct ArenaDesc {
  uint64_t size = 0;
  uint64_t step_offset = 0;       // KilnStep (docs/plan-abi.md)
  uint64_t tokens_offset = 0;     // int32[tokens_capacity]
  uint32_t tokens_capacity = 0;
  uint64_t kv_offset = 0, kv_size = 0;  // all KV-cache state buffers (zeroed on reset)
  uint64_t gemm_workspace_offset = 0, gemm_workspace_size = 0;  // cuBLASLt workspace
};

// The per-step control block (schemas/kiln_step.h, the one declaration).
using ::kiln::KilnStep;

}  // namespace kiln::rt
