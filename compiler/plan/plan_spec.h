// kiln::plan::PlanSpec: a plain C++ mirror of schemas/plan.fbs, filled by the
// compile driver and turned into a plan file by plan::write_plan
// (compiler/plan/writer.h). Only the writer builds flatbuffers; the enums
// shared with the runtime (ProgramMode) are the schema's own (schemas/abi.h). Field meanings are documented in schemas/plan.fbs and
// docs/plan-abi.md; only what differs from the schema is commented here.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "schemas/abi.h"

namespace kiln::plan {

enum class Phase : uint8_t { kPrefill = 0, kDecode = 1 };
enum class Region : uint8_t { kWeights = 0, kArena = 1 };
enum class ArgKind : uint8_t { kPtr = 0, kI32 = 1, kF32 = 2 };
enum class RopeStyle : uint8_t { kNormal = 0, kNeoX = 1 };

struct ModelConfigSpec {
  std::string arch, name;
  uint32_t n_layers = 0, hidden = 0, ffn = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  uint32_t vocab = 0, context_length = 0, max_tokens = 0;
  float rope_theta = 10000.0f;
  uint32_t rope_dim = 0;
  RopeStyle rope_style = RopeStyle::kNormal;
  float rope_freq_scale = 1.0f;
  float rms_eps = 1e-5f;
};

struct TokenizerSpec {
  std::string model, pre;
  std::vector<std::string> tokens;
  std::vector<float> scores;       // empty or tokens.size()
  std::vector<int32_t> token_types;  // empty or tokens.size()
  std::vector<std::string> merges;
  int32_t bos_id = -1, eos_id = -1, eot_id = -1, pad_id = -1, unk_id = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::vector<int32_t> eog_ids;
  std::string chat_template;
};

struct KernelSpec {
  std::string name, entry;
  uint32_t sm = 0;
  std::vector<uint8_t> cubin;  // must not be empty
  std::string ptx;
  uint64_t source_hash = 0;
  uint32_t smem = 0;
};

// A weight blob. `offset` is its place in the weights section: 256-aligned,
// blobs non-overlapping. Fill offsets with assign_weight_offsets() (writer.h)
// before building launches that point at them. The bytes come either from
// `bytes` (size must equal `size`) or, for large models, from `fill`, called
// once during write_plan with a zeroed buffer of exactly `size` bytes.
struct WeightSpec {
  std::string name, dtype;
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t size = 0;
  std::string layout;
  std::vector<uint8_t> bytes;
  std::function<void(std::span<uint8_t> dst)> fill;
};

struct ArgSpec {
  ArgKind kind = ArgKind::kI32;
  Region region = Region::kArena;  // kPtr only
  uint64_t offset = 0;             // kPtr only
  int64_t i = 0;                   // kI32 only
  float f = 0.0f;                  // kF32 only
  uint64_t size = 0;               // kPtr only: bytes the kernel may touch (0 = unknown)
  uint8_t out = 0;                 // kPtr only: an activation the kernel writes (1 f32, 2 f16, 3 bf16; +16: rows = tokens)

  static ArgSpec ptr(Region r, uint64_t off, uint64_t bytes = 0) {
    ArgSpec a; a.kind = ArgKind::kPtr; a.region = r; a.offset = off; a.size = bytes; return a;
  }
  static ArgSpec i32(int32_t v) { ArgSpec a; a.kind = ArgKind::kI32; a.i = v; return a; }
  static ArgSpec f32(float v) { ArgSpec a; a.kind = ArgKind::kF32; a.f = v; return a; }
};

// A cuBLASLt GEMM (schema table Gemm): args are x, w, [r,] y.
struct GemmSpec {
  uint32_t m = 0, n = 0, k = 0;
  uint8_t ab_type = 1;  // ggml type id: 1 = f16, 30 = bf16
  bool residual = false;
};

struct LaunchSpec {
  uint32_t kernel = 0;  // index into PlanSpec::kernels (unused when gemm is set)
  std::optional<GemmSpec> gemm;
  std::array<uint32_t, 3> grid{1, 1, 1};
  std::array<uint32_t, 3> block{1, 1, 1};
  uint32_t smem = 0;  // dynamic shared memory bytes
  std::vector<ArgSpec> args;
  std::string label;
  std::vector<std::string> inputs;  // names of the IR values the node reads
};

struct ProgramSpec {
  std::string name;
  ProgramMode mode = ProgramMode::Compiled;  // kiln::ProgramMode, the schema's enum
  Phase phase = Phase::kDecode;
  uint32_t bucket = 1;
  std::vector<LaunchSpec> launches;
  uint64_t logits_offset = 0;
  uint64_t token_offset = 0;
  bool pdl = false;  // programmatic dependent launch for kernels after the first (sm_90+)
  bool device_step = false;  // the last launch samples and advances KilnStep when its ring is set (2.3)
};

struct StateBufferSpec {
  std::string name;
  uint64_t offset = 0, size = 0;
};

struct ArenaSpec {
  uint64_t size = 0;
  std::vector<StateBufferSpec> kv;
  uint64_t step_offset = 0;
  uint64_t tokens_offset = 0;
  uint32_t tokens_capacity = 0;
  uint64_t logits_offset = 0;
  uint64_t gemm_workspace_offset = 0, gemm_workspace_size = 0;
};

// What the compile was asked for, resolved (schema CompileOptionsRecord).
struct CompileOptionsSpec {
  uint32_t target_sm = 0, context_length = 0, max_tokens = 0;
  std::vector<uint32_t> buckets;
  bool eager = true;
  std::string weight_layout;
  std::vector<std::string> disabled_passes;
  std::string command_line;
  std::string kv_type = "f32";  // format 1.2
};

// The memory budget is not part of the spec: write_plan computes it from the
// weights section and the arena (weights + arena = total, kv = sum of kv sizes).
struct PlanSpec {
  std::string compiler_version;
  uint32_t target_sm = 0;     // 90 = sm_90
  uint64_t created_utc = 0;   // Unix seconds; 0 = not recorded (reproducible builds)
  ModelConfigSpec model;
  TokenizerSpec tokenizer;
  std::vector<KernelSpec> kernels;
  std::vector<WeightSpec> weights;
  std::vector<ProgramSpec> programs;
  ArenaSpec arena;
  std::optional<CompileOptionsSpec> compile_options;  // absent: the plan records none
};

}  // namespace kiln::plan
