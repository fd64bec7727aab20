// codegen: CUDA kernel templates (codegen/kernels/*.cuh, embedded at build
// time), specialisation of one IR node into kernel source + launch config,
// and the NVRTC driver with its on-disk kernel cache. Needs no GPU.
//
// Kernel ABI (docs/plan-abi.md): every kernel is extern "C" __global__, takes
// its arguments in the order of Lowered::params and reads per-step values
// (n_tokens, pos0, sampling parameters) from the KilnStep* it is given.
// Positions are step->pos0 + t: kernels never read the IR `pos` inputs.
#pragma once
#include <array>
#include <optional>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "schemas/abi.h"

namespace kiln::codegen {

// SM versions kiln compiles for (all accepted by CUDA 13 NVRTC).
const std::vector<int>& supported_sms();
// Weight dtypes every kernel family reads (one eager module each).
const std::vector<ir::DType>& weight_dtypes();
// "sm_90" -> 90. Throws kiln::Error(kInvalidArgument) naming the supported ones.
int parse_target(std::string_view target);

// Kernel argument kinds. Input/Output: pointer to node.inputs[index] /
// node.outputs[index]; Step: KilnStep*; Tokens: the int32 token-id buffer;
// I32 / F32: scalar by value (in `i` / `f`).
enum class ParamKind { Input, Output, Step, Tokens, I32, F32 };
struct Param {
  ParamKind kind;
  int index = 0;
  int64_t i = 0;
  float f = 0.f;
};
struct KernelSource {
  std::string entry;                 // extern "C" kernel name inside source
  std::string source;                // complete CUDA C++ translation unit
  std::vector<std::string> options;  // NVRTC options (the arch is added by compile())
  uint64_t hash;                     // of source + options
};
// A GEMM the runtime runs through cuBLASLt instead of an NVRTC kernel (the gemm
// family): y[T,N] (f32, row-major) = x[T,K] @ w[N,K]^T, plus r[T,N] when
// `residual` (beta = 1, C = r), with x and w of one half dtype and fp32
// accumulation. Lowered::params are then x, w, [r,] y.
struct GemmCall {
  int64_t m = 0, n = 0, k = 0;        // rows of x (the bucket), N, K
  ir::DType ab_type = ir::DType::F16; // f16 | bf16
  bool residual = false;
};
struct Lowered {
  KernelSource kernel;                // empty entry when `gemm` is set
  std::optional<GemmCall> gemm;
  std::array<uint32_t, 3> grid, block;
  uint32_t smem = 0;  // dynamic shared memory bytes
  std::vector<Param> params;
};
// What codegen specialises for, besides the node: every choice here changes the
// compiled output, so each is a CompileOptions field with a CLI flag and is
// recorded in the plan.
struct Target {
  int sm = 90;                        // sm_XX
  std::string weight_layout = "ggml"; // layout of compiled matmul-family / embed weights: "ggml" | "planes"
};

// Lowers one IR node for a program whose symbolic dims are bound by `dims`
// (ir::resolve_dim; dims.tokens is the program's bucket and must be > 0).
// Eager: one generic kernel per op, specialised only on dtype (all eager
// kernels of one dtype share one source, so one module per dtype). Fused ops
// have no eager kernel (eager programs run the unfused graph).
// Compiled: specialised on static shapes / attributes; GEMV path for buckets
// <= 4 (bucket 1 = decode), tiled path above; fused ops supported.
// Fused op conventions (plan-abi.md "Fused ops"):
//   rms_matmul(x, g, w) attr eps; matmul_add(x, w, r);
//   rms_matmul_swiglu(x, g, w[2F,K]) attr eps;
//   rope_store(qkv, pos, kc, vc [, freq_factors]) attrs as rope + n_kv_heads,
//     outputs q [, kc', vc'] (aliases: the caches are written in place);
//   lm_head_sample(x, g, w) attr eps, outputs token i32[1] and logits [1,V]
//     (the logits output is required: it is the kernel's scratch).
// Throws kiln::Error(kUnsupported) for an op/dtype/shape it cannot lower.
Lowered lower(const ir::Graph& g, const ir::Node& n, const ir::DimBindings& dims, const Target& target,
              ProgramMode mode);

// ---- weight layouts -----------------------------------------------------------
// How a kernel reads a weight blob. "ggml": the GGUF blocks as stored.
// "planes" (q4_0, q4_1, q8_0, q4_K, q6_K; the compile default): every row of
// nb = K/QK blocks is its nb * QB quant bytes (one contiguous 16-byte-aligned
// run: 16-byte loads of whole quants) followed by its nb * SB scale bytes
// (q4_0 2: d; q4_1 4: d, m; q8_0 2: d; q4_K 16: d, dmin, then the 8 6-bit
// scales and mins regrouped as four 24-bit words, one per pair of
// sub-blocks; q6_K 18: 16 int8 scales, d). Rows keep their GGUF size, so a row range of a
// concatenated weight (qkv) is a view in both layouts; the values are
// untouched, so kernels compute identical numbers.
inline constexpr const char* kLayoutGgml = "ggml";
inline constexpr const char* kLayoutPlanes = "planes";
// Layout in which the kernel lower(g, n, ., target, mode) reads input `input`
// of n: target.weight_layout for the weight operand of matmul-family,
// lm_head_sample, embed and dequant nodes (compiled and eager: the eager
// module has both variants) whose dtype and row length fit it
// (layout_fits), else "ggml".
std::string input_layout(const ir::Graph& g, const ir::Node& n, size_t input, ProgramMode mode,
                         const Target& target);
// The layouts --weight-layout accepts.
const std::vector<std::string>& weight_layouts();
// Whether dtype dt can be stored in `layout`.
bool layout_supported(ir::DType dt, std::string_view layout);
// Whether rows of K elements of dt are stored in `layout` by kiln: planes
// needs each row's scale bytes to be a multiple of 16 (so every row's quants
// start 16-byte aligned: K a multiple of 256, of 2048 for q6_K).
bool layout_fits(ir::DType dt, std::string_view layout, int64_t K);
// GGUF bytes of `rows` rows of K elements -> `layout` (out has the same size,
// ir::row_bytes(dt, K) * rows). unpack is its exact inverse. "ggml" copies.
// Throws kiln::Error(kInvalidArgument) for an unsupported (dt, layout) or a K
// that is not a whole number of blocks.
void repack(ir::DType dt, std::string_view layout, int64_t rows, int64_t K, const uint8_t* ggml, uint8_t* out);
void unpack(ir::DType dt, std::string_view layout, int64_t rows, int64_t K, const uint8_t* in, uint8_t* ggml);

struct CompiledKernel {
  std::vector<uint8_t> cubin;  // for sm_XX
  std::string ptx;             // same compile; JIT fallback for newer SMs
  std::string log;             // NVRTC log (warnings)
};
// NVRTC: source -> CUBIN + PTX for sm. cache_dir "" = no cache. Cache entries
// are keyed by (source, options, sm, NVRTC version), written atomically, and a
// corrupt entry is ignored and rebuilt. Throws kiln::Error(kInternal) with
// the NVRTC log when the source does not compile.
CompiledKernel compile(const KernelSource& k, int sm, const std::string& cache_dir);

// $XDG_CACHE_HOME/kiln/kernels, else ~/.cache/kiln/kernels ("" if neither is set).
std::string default_cache_dir();
// Cache key of (k, sm) as compile() uses it (16 hex digits).
std::string cache_key(const KernelSource& k, int sm);
// Number of NVRTC compilations this process has run (cache misses; for tests).
uint64_t nvrtc_compile_count();
// NVRTC version as major*1000 + minor*10 (e.g. 13000).
int nvrtc_version();
// An embedded kernel file by name ("gemv.cuh"); throws kInternal if absent.
// Every embedded file (codegen/kernels/*.cuh, launch.h, schemas/kiln_step.h)
// is handed to NVRTC as a header of that name, so kernels #include each other.
std::string_view kernel_file(std::string_view name);
std::vector<std::string_view> kernel_file_names();
// Digest of every embedded header: part of each kernel's hash and cache key.
uint64_t kernel_headers_digest();
// Names of the kernel families whose selection predicate takes node n (for
// tests: exactly one for every node kiln lowers; codegen/family.h).
std::vector<std::string> selecting_families(const ir::Graph& g, const ir::Node& n, const ir::DimBindings& dims,
                                            const Target& target, ProgramMode mode);
// Every eager module source (one per dtype that has eager kernels), for tests
// and for tools that precompile them.
std::vector<KernelSource> eager_modules();

// ---- split-K decode attention (attention family) --------------------------------
// Compiled attention steps of <= launch::kAttSplitMaxRows rows split the KV
// sequence over blocks (flash-decoding) when the node has input 4: an f32 [n]
// State the blocks keep partial softmax states and completion counters in
// (the split-decode-attention pass adds one, shared by every attention node).
// Splits the kernel uses for a step of `rows` rows over a kv_len-row cache.
int attention_splits(int64_t n_kv_heads, int64_t rows, int64_t kv_len);
// f32 elements that scratch needs for an attention node of this geometry (every
// row count up to kAttSplitMaxRows); 0 when the split kernel does not take the
// geometry (head_dim not in {8, 16, ..., 256}, or too many heads per KV head).
int64_t attention_split_scratch_floats(int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t kv_len);
// The most splits an attention node with defer_merge leaves to its consumer
// (the defer-attention-merge pass; kernels/att_defer.cuh): min(
// kAttDeferMaxSplits, kAttDeferMaxFloats / (n_heads * head_dim)), or 0 (the
// pass leaves the node alone) where that is under kAttDeferMinLimit.
int attention_defer_splits(int64_t n_heads, int64_t head_dim);

}  // namespace kiln::codegen
