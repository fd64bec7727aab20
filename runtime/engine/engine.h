// Engine: owns the GPU side of one loaded plan — one weights allocation, one
// arena (activations + KV cache + step block), the kernel modules, and one
// instantiated CUDA graph per compiled program. Nothing is allocated after
// create(): a step only copies the 64-byte step block (and prompt ids) in,
// replays a graph (or, in eager mode, launches kernels one by one), and copies
// the sampled token out; a compiled decode step the sampler of the step
// before set up on the device (Program.device_step) copies neither.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/cuda/cuda_api.h"
#include "runtime/engine/program.h"

namespace kiln::rt {

struct SamplingParams {
  float temperature = 0.f;  // <= 0: greedy
  int32_t top_k = 0;        // <= 0: off
  float top_p = 1.f;        // >= 1: off
  uint64_t seed = 0;
};

struct EngineOptions {
  int device = 0;
  bool allow_ptx_jit = false;  // run a plan for an older SM by JIT-compiling its PTX
  bool instantiate_graphs = true;
  // Debug: launch every kernel on its own (no graphs), synchronise, and scan
  // each activation it wrote; the first NaN or Inf stops the step with
  // ErrorCode::kCheckFailed naming the launch (IR op, value, layer, inputs).
  bool check_finite = false;
  // Programs with Program.device_step (compiled, plan format 2.3): the
  // sampling kernel sets the step block up for the next decode step and
  // stores the token in pinned host memory, so consecutive decode steps
  // replay the graph with no copy in or out. false: copy both every step
  // (what earlier plans do; `kiln bench --no-device-step`).
  bool device_step = true;
};

// What the engine needs from a verified plan (filled by runtime/plan).
struct EngineInputs {
  int32_t target_sm = 0;
  std::vector<KernelDesc> kernels;
  std::vector<ProgramDesc> programs;
  ArenaDesc arena;
  const uint8_t* weights = nullptr;
  uint64_t weights_size = 0;
  int32_t vocab = 0;
  std::string model_hint;  // e.g. "model.gguf" for the recompile hint in errors
};

class Engine {
 public:
  static std::unique_ptr<Engine> create(EngineInputs in, const EngineOptions& opt);
  ~Engine();

  const cuda::DeviceInfo& device() const { return dev_; }
  bool has_mode(ProgramMode m) const;
  int32_t max_prefill_bucket(ProgramMode m) const;
  std::vector<int32_t> prefill_buckets(ProgramMode m) const;

  // Runs one step over `tokens` (1..max bucket) placed at positions pos0..;
  // returns the token sampled after the last one. Throws rt::Error on misuse.
  int32_t step(ProgramMode mode, std::span<const int32_t> tokens, int32_t pos0, const SamplingParams& sp);
  // The whole prompt from position 0, in steps of the largest prefill bucket;
  // returns the token sampled after its last token. gpu_ms (optional): the
  // summed GPU time of those steps.
  int32_t prefill(ProgramMode mode, std::span<const int32_t> prompt, const SamplingParams& sp,
                  float* gpu_ms = nullptr);
  // Decode step that feeds the token the previous step sampled (already on the device).
  int32_t decode_next(ProgramMode mode, int32_t pos0, const SamplingParams& sp);
  // Pipelined decode: decode_submit enqueues the decode step at pos0 (fed, on
  // the device, by the token the step before it sampled) and returns without
  // waiting; decode_collect waits for the oldest submitted step and returns
  // its token (its GPU time in last_step_gpu_ms()). With one step queued
  // behind the running one, the host's copies, graph launch and wait overlap
  // the GPU's work instead of sitting between tokens. At most
  // kMaxInFlight steps may be pending; step(), decode_next(), reset() and
  // last_logits() need none pending (drain with decode_collect or
  // decode_discard). Same tokens as decode_next in the same order.
  static constexpr int kMaxInFlight = 2;
  void decode_submit(ProgramMode mode, int32_t pos0, const SamplingParams& sp);
  int32_t decode_collect();
  int32_t decode_pending() const { return pending_; }
  // Waits for every pending step and drops its token (a generation that
  // stopped while a step was already queued).
  void decode_discard();
  // Logits of the last step's last token (copies vocab floats to the host).
  std::vector<float> last_logits() const;
  // Zeroes the KV cache and restarts the step count that sampling draws
  // from with the seed (a new conversation: the same prompt, sampling
  // parameters and seed give the same tokens).
  void reset();

  // GPU time of the last step's program, measured with CUDA events around it
  // (excludes the host-side copies of the step block and sampled token).
  float last_step_gpu_ms() const { return last_gpu_ms_; }
  // Step blocks copied to the device so far (steps the device did not set up itself).
  uint64_t step_uploads() const { return step_uploads_; }
  double load_seconds() const { return load_seconds_; }
  double graph_seconds() const { return graph_seconds_; }
  size_t device_bytes() const;

 private:
  Engine() = default;
  struct Program;
  const Program& pick(ProgramMode mode, Phase phase, int32_t n) const;
  int32_t run(const Program& p, int32_t n_tokens, int32_t pos0, const SamplingParams& sp, const int32_t* ids);
  // run() in two halves: enqueue a step into slot `next_slot_` of the ring,
  // and wait for the step in the oldest slot and check its token.
  void enqueue_step(const Program& p, int32_t n_tokens, int32_t pos0, const SamplingParams& sp, const int32_t* ids);
  int32_t finish_step();
  // The step's token comes back through h_ring_ (device_step), not a read-back copy.
  bool uses_ring(const Program& p) const;
  void require_idle(const char* what) const;
  void launch_trap();  // the trap fault site (runtime/fault.h)
  // Enqueues every launch of p on stream_ (kernels and cuBLASLt GEMMs); used
  // for graph capture and for programs run without a graph.
  void enqueue(const Program& p) const;
  // check_finite: waits for launch i of p and scans the activations it wrote;
  // throws Error(kCheckFailed) at the first NaN or Inf.
  void check_launch(const Program& p, size_t i) const;

  EngineInputs in_;
  cuda::DeviceInfo dev_;
  void* d_weights_ = nullptr;
  void* d_arena_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::vector<CUmodule> modules_;
  std::vector<CUfunction> functions_;
  std::vector<std::unique_ptr<Program>> programs_;
  // A ring of kMaxInFlight step slots: each has its pinned host step block
  // pair (h_step_[2 * slot]: sent, [2 * slot + 1]: read back), its events and
  // the program it ran. Synchronous steps use one slot at a time.
  KilnStep* h_step_ = nullptr;
  // Tokens stored by device_step sampling kernels: mapped pinned int[kRing],
  // slot = step & (kRing - 1) (KilnStep.ring / host_tokens).
  static constexpr uint32_t kRing = 8;
  static_assert((kRing & (kRing - 1)) == 0 && kRing >= 2 * kMaxInFlight, "ring: a power of two above the steps in flight");
  int32_t* h_ring_ = nullptr;
  uint64_t d_ring_ = 0;
  bool device_step_ = true;
  // What the step block on the device will hold once the queued steps finish,
  // when the last one was a device_step program (then a decode step that
  // matches it needs no upload).
  struct DeviceNext {
    bool valid = false;
    int32_t pos0 = 0;
    uint32_t step = 0;
    SamplingParams sp;
  } dev_next_;
  uint64_t step_uploads_ = 0;
  uint32_t slot_step_[kMaxInFlight] = {};  // the step count of each slot's step (its h_ring_ slot)
  const Program* slot_program_[kMaxInFlight] = {};
  cudaEvent_t ev_start_[kMaxInFlight] = {}, ev_stop_[kMaxInFlight] = {}, ev_done_[kMaxInFlight] = {};
  int32_t next_slot_ = 0, pending_ = 0;
  const Program* last_program_ = nullptr;
  uint32_t step_counter_ = 0;
  float last_gpu_ms_ = 0.f;
  double load_seconds_ = 0, graph_seconds_ = 0;
  bool check_finite_ = false;
  int32_t check_tokens_ = 0;  // the running step's tokens (check_finite)
};

}  // namespace kiln::rt
