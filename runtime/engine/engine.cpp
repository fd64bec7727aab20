#include "runtime/engine/engine.h"

#include "runtime/cuda/cublaslt.h"
#include "runtime/fault.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

namespace kiln::rt {

using cuda::check;

struct Engine::Program {
  const ProgramDesc* desc = nullptr;
  // Kernel parameters: one 8-byte slot per argument, and per launch an array
  // of pointers into those slots, as cuLaunchKernel wants them.
  std::vector<std::vector<uint64_t>> slots;
  std::vector<std::vector<void*>> params;
  // Per launch: the prepared cuBLASLt GEMM (GEMM launches) or null (kernels).
  std::vector<std::unique_ptr<cuda::LtGemm>> gemms;
  cudaGraphExec_t exec = nullptr;
};

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
std::string gib(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1024.0 * 1024 * 1024));
  return buf;
}
}  // namespace

std::unique_ptr<Engine> Engine::create(EngineInputs in, const EngineOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> e(new Engine());
  e->in_ = std::move(in);
  const EngineInputs& p = e->in_;

  std::string why;
  auto dev = cuda::probe_device(opt.device, &why);
  if (!dev)
    throw Error(ErrorCode::kDevice, "cannot run the plan: " + why +
                                        ". `kiln run` and `kiln bench` need an NVIDIA GPU; compiling does not.");
  e->dev_ = *dev;

  // Target check: a CUBIN runs on the SM it was built for and on later minor
  // revisions of the same major; anything else needs the PTX JIT (opt-in).
  const int dmaj = dev->sm / 10, dmin = dev->sm % 10, pmaj = p.target_sm / 10, pmin = p.target_sm % 10;
  const bool cubin_ok = dmaj == pmaj && dmin >= pmin;
  const bool use_ptx = !cubin_ok;
  const std::string recompile = "run `kiln compile " + (p.model_hint.empty() ? std::string("<model.gguf>") : p.model_hint) +
                                " --target sm_" + std::to_string(dev->sm) + "` (or --target native)";
  if (!cubin_ok) {
    if (!opt.allow_ptx_jit || dev->sm < p.target_sm)
      throw Error(ErrorCode::kDevice,
                  "plan built for sm_" + std::to_string(p.target_sm) + ", but device " + std::to_string(opt.device) +
                      " (" + dev->name + ") is sm_" + std::to_string(dev->sm) + ": " + recompile +
                      (dev->sm > p.target_sm ? ", or pass --allow-ptx-jit to JIT-compile the plan's PTX" : ""),
                  "target_sm");
    for (const auto& k : p.kernels)
      if (!k.ptx || k.ptx_size == 0)
        throw Error(ErrorCode::kDevice, "plan has no PTX for kernel " + k.name + " to JIT on sm_" +
                                            std::to_string(dev->sm) + ": " + recompile, "kernels");
  }

  // Memory budget, checked before anything is allocated.
  const uint64_t need = p.weights_size + p.arena.size;
  if (need + (256ull << 20) > dev->free_mem)
    throw Error(ErrorCode::kDevice,
                "plan needs " + gib(need) + " of GPU memory (weights " + gib(p.weights_size) + ", arena + KV cache " +
                    gib(p.arena.size) + ") but " + dev->name + " has " + gib(dev->free_mem) +
                    " free: compile with a smaller --ctx or --max-tokens, or a smaller quantisation",
                "memory_budget");

  const auto& drv = cuda::driver();
  // Every GPU-side allocation is a fault-injection site (runtime/fault.h): a
  // failure anywhere here ends in kDevice "out of memory" and ~Engine frees
  // what was made, so the process can load a plan again.
  auto alloc = [](auto&& call, const char* what) {
    check(fault::hit(fault::Site::kCudaAlloc) ? cudaErrorMemoryAllocation : call(), what);
  };
  alloc([&] { return cudaStreamCreateWithFlags(&e->stream_, cudaStreamNonBlocking); }, "cudaStreamCreate");
  if (p.weights_size) {
    alloc([&] { return cudaMalloc(&e->d_weights_, p.weights_size); }, "cudaMalloc(weights)");
    check(cudaMemcpy(e->d_weights_, p.weights, p.weights_size, cudaMemcpyHostToDevice), "upload weights");
  }
  alloc([&] { return cudaMalloc(&e->d_arena_, p.arena.size); }, "cudaMalloc(arena)");
  check(cudaMemset(e->d_arena_, 0, p.arena.size), "cudaMemset(arena)");
  alloc([&] { return cudaMallocHost(reinterpret_cast<void**>(&e->h_step_), sizeof(KilnStep) * 2 * kMaxInFlight); },
        "cudaMallocHost(step)");
  e->device_step_ = opt.device_step;
  alloc([&] { return cudaHostAlloc(reinterpret_cast<void**>(&e->h_ring_), sizeof(int32_t) * kRing, cudaHostAllocMapped); },
        "cudaHostAlloc(token ring)");
  {
    void* d = nullptr;
    check(cudaHostGetDevicePointer(&d, e->h_ring_, 0), "cudaHostGetDevicePointer(token ring)");
    e->d_ring_ = reinterpret_cast<uintptr_t>(d);
  }
  for (int i = 0; i < kMaxInFlight; ++i) {
    alloc([&] { return cudaEventCreate(&e->ev_start_[i]); }, "cudaEventCreate");
    alloc([&] { return cudaEventCreate(&e->ev_stop_[i]); }, "cudaEventCreate");
    alloc([&] { return cudaEventCreateWithFlags(&e->ev_done_[i], cudaEventDisableTiming); }, "cudaEventCreate");
  }

  std::map<std::pair<uint64_t, size_t>, CUmodule> loaded;  // (source hash, image size) -> module
  for (const auto& k : p.kernels) {
    const void* image = use_ptx ? static_cast<const void*>(k.ptx) : static_cast<const void*>(k.cubin);
    const size_t image_size = use_ptx ? k.ptx_size : k.cubin_size;
    CUmodule& m = loaded[{k.source_hash, image_size}];
    if (!m) {
      const CUresult r = fault::hit(fault::Site::kCudaAlloc) ? CUDA_ERROR_OUT_OF_MEMORY
                                                              : drv.cuModuleLoadDataEx(&m, image, 0, nullptr, nullptr);
      check(r, ("load kernel module " + k.name).c_str());
      e->modules_.push_back(m);
    }
    CUfunction f = nullptr;
    check(drv.cuModuleGetFunction(&f, m, k.entry.c_str()), ("find kernel " + k.entry).c_str());
    if (k.smem > 48 * 1024)
      check(drv.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, static_cast<int>(k.smem)),
            "cuFuncSetAttribute(max dynamic shared memory)");
    e->functions_.push_back(f);
  }

  // Bind every argument to its device address once.
  std::vector<uint32_t> dyn_smem(e->functions_.size(), 0);  // the limit set per function
  auto* wbase = static_cast<uint8_t*>(e->d_weights_);
  auto* abase = static_cast<uint8_t*>(e->d_arena_);
  for (const auto& pd : p.programs) {
    auto prog = std::make_unique<Program>();
    prog->desc = &pd;
    for (const auto& l : pd.launches) {
      if (l.gemm) {
        const auto& g = *l.gemm;
        if (p.arena.gemm_workspace_size == 0)
          throw Error(ErrorCode::kFormat, "GEMM launch " + l.label + " but the plan has no GEMM workspace", "arena");
        prog->gemms.push_back(std::make_unique<cuda::LtGemm>(g.m, g.n, g.k, g.bf16, g.residual,
                                                             p.arena.gemm_workspace_size));
      } else {
        prog->gemms.push_back(nullptr);
      }
      if (!l.gemm && l.kernel >= e->functions_.size())
        throw Error(ErrorCode::kFormat, "launch " + l.label + " names kernel " + std::to_string(l.kernel) +
                                            " of " + std::to_string(e->functions_.size()), "programs");
      if (!l.gemm && uint64_t{l.smem} + p.kernels[l.kernel].smem > 48 * 1024 && l.smem > dyn_smem[l.kernel]) {
        // dynamic shared memory above the default 48 KiB needs the function's
        // limit raised (the plan verifier bounds it by the device's)
        dyn_smem[l.kernel] = l.smem;
        check(drv.cuFuncSetAttribute(e->functions_[l.kernel], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                     static_cast<int>(l.smem)),
              "cuFuncSetAttribute(max dynamic shared memory)");
      }
      std::vector<uint64_t> slot(l.args.size());
      for (size_t a = 0; a < l.args.size(); ++a) {
        const ArgDesc& ad = l.args[a];
        switch (ad.kind) {
          case ArgDesc::Kind::Ptr: {
            const uint64_t limit = ad.region == Region::Weights ? p.weights_size : p.arena.size;
            if (ad.offset >= limit)
              throw Error(ErrorCode::kFormat, "argument " + std::to_string(a) + " of " + l.label +
                                                  " points outside its region", "programs");
            uint8_t* ptr = (ad.region == Region::Weights ? wbase : abase) + ad.offset;
            std::memcpy(&slot[a], &ptr, sizeof ptr);
            break;
          }
          case ArgDesc::Kind::I32: std::memcpy(&slot[a], &ad.i, sizeof ad.i); break;
          case ArgDesc::Kind::F32: std::memcpy(&slot[a], &ad.f, sizeof ad.f); break;
        }
      }
      prog->slots.push_back(std::move(slot));
    }
    for (auto& s : prog->slots) {
      std::vector<void*> ptrs(s.size());
      for (size_t a = 0; a < s.size(); ++a) ptrs[a] = &s[a];
      prog->params.push_back(std::move(ptrs));
    }
    e->programs_.push_back(std::move(prog));
  }

  // Instantiate one CUDA graph per compiled program, up front.
  auto tg = std::chrono::steady_clock::now();
  e->check_finite_ = opt.check_finite;
  if (opt.instantiate_graphs && !opt.check_finite) {  // --check-finite runs launch by launch
    for (auto& prog : e->programs_) {
      if (prog->desc->mode != ProgramMode::Compiled) continue;
      check(cudaStreamBeginCapture(e->stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
      try {
        e->enqueue(*prog);
      } catch (...) {
        cudaGraph_t g = nullptr;
        cudaStreamEndCapture(e->stream_, &g);
        if (g) cudaGraphDestroy(g);
        throw;
      }
      cudaGraph_t graph = nullptr;
      check(cudaStreamEndCapture(e->stream_, &graph), "cudaStreamEndCapture");
      check(cudaGraphInstantiate(&prog->exec, graph, 0), ("instantiate graph " + prog->desc->name).c_str());
      cudaGraphDestroy(graph);
    }
  }
  e->graph_seconds_ = seconds_since(tg);
  e->load_seconds_ = seconds_since(t0);
  return e;
}

void Engine::enqueue(const Program& p) const {
  const auto& drv = cuda::driver();
  const auto& ls = p.desc->launches;
  auto* arena = static_cast<uint8_t*>(d_arena_);
  for (size_t i = 0; i < ls.size(); ++i) {
    const auto& l = ls[i];
    if (const cuda::LtGemm* g = p.gemms[i].get()) {
      // args x, w, [r,] y: their bound device addresses are the slots
      auto ptr = [&](size_t a) { return reinterpret_cast<void*>(static_cast<uintptr_t>(p.slots[i][a])); };
      const bool res = l.gemm->residual;
      g->run(ptr(0), ptr(1), res ? ptr(2) : nullptr, ptr(res ? 3 : 2), arena + in_.arena.gemm_workspace_offset,
             stream_);
      if (check_finite_) check_launch(p, i);
      continue;
    }
    if (p.desc->pdl && i > 0 && dev_.sm >= 90) {
      // programmatic dependent launch: this kernel may be scheduled while the
      // previous one finishes; it waits for it (griddepcontrol.wait, the first
      // statement of every kiln kernel) before touching memory
      CUlaunchAttribute attr{};
      attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
      attr.value.programmaticStreamSerializationAllowed = 1;
      CUlaunchConfig cfg{};
      cfg.gridDimX = l.grid[0];
      cfg.gridDimY = l.grid[1];
      cfg.gridDimZ = l.grid[2];
      cfg.blockDimX = l.block[0];
      cfg.blockDimY = l.block[1];
      cfg.blockDimZ = l.block[2];
      cfg.sharedMemBytes = l.smem;
      cfg.hStream = stream_;
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      check(drv.cuLaunchKernelEx(&cfg, functions_[l.kernel], const_cast<void**>(p.params[i].data()), nullptr),
            ("launch " + l.label).c_str());
      if (check_finite_) check_launch(p, i);
      continue;
    }
    check(drv.cuLaunchKernel(functions_[l.kernel], l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1],
                             l.block[2], l.smem, stream_, const_cast<void**>(p.params[i].data()), nullptr),
          ("launch " + l.label).c_str());
    if (check_finite_) check_launch(p, i);
  }
}

namespace {
// Index of the first NaN / Inf among n values of kind `out` (1 f32, 2 f16,
// 3 bf16) at p, or -1.
int64_t first_non_finite(const uint8_t* p, uint64_t bytes, uint8_t out) {
  if (out == 1) {
    for (uint64_t i = 0; i + 4 <= bytes; i += 4) {
      uint32_t u;
      std::memcpy(&u, p + i, 4);
      if ((u & 0x7F800000u) == 0x7F800000u) return static_cast<int64_t>(i / 4);
    }
  } else {
    const uint16_t mask = out == 2 ? 0x7C00 : 0x7F80;  // exponent all ones: Inf or NaN
    for (uint64_t i = 0; i + 2 <= bytes; i += 2) {
      uint16_t h;
      std::memcpy(&h, p + i, 2);
      if ((h & mask) == mask) return static_cast<int64_t>(i / 2);
    }
  }
  return -1;
}
}  // namespace

void Engine::check_launch(const Program& p, size_t i) const {
  check(cudaStreamSynchronize(stream_), "check-finite: wait for the launch");
  const LaunchDesc& l = p.desc->launches[i];
  for (size_t a = 0; a < l.args.size(); ++a) {
    const ArgDesc& ad = l.args[a];
    if (ad.kind != ArgDesc::Kind::Ptr || (ad.out & 15) == 0 || ad.size == 0) continue;
    // rows past the step's tokens hold whatever the buffer held before
    uint64_t bytes = ad.size;
    if ((ad.out & 16) && p.desc->bucket > 0 && check_tokens_ > 0 && check_tokens_ < p.desc->bucket)
      bytes = ad.size / static_cast<uint64_t>(p.desc->bucket) * static_cast<uint64_t>(check_tokens_);
    std::vector<uint8_t> host(bytes);
    check(cudaMemcpy(host.data(), reinterpret_cast<const void*>(static_cast<uintptr_t>(p.slots[i][a])), bytes,
                     cudaMemcpyDeviceToHost),
          "check-finite: read a kernel output");
    const int64_t bad = first_non_finite(host.data(), bytes, ad.out & 15);
    if (bad < 0) continue;
    const std::string value = l.label.find(" -> ") == std::string::npos ? l.label : l.label.substr(l.label.find(" -> ") + 4);
    std::string layer;
    if (value.rfind("blk.", 0) == 0) layer = ", layer " + value.substr(4, value.find('.', 4) - 4);
    std::string inputs;
    for (const auto& n : l.inputs) inputs += (inputs.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::kCheckFailed,
                "--check-finite: launch " + std::to_string(i + 1) + " of " + std::to_string(p.desc->launches.size()) +
                    " in program " + p.desc->name + " (" + l.label + layer + ") wrote a NaN or Inf at element " +
                    std::to_string(bad) + " of its output" + (inputs.empty() ? "" : "; it read " + inputs) +
                    ". Every earlier launch of this step wrote finite values: the fault is in this op or in "
                    "values it read that no kernel of this step wrote (weights, KV cache)");
  }
}

Engine::~Engine() {
  if (stream_) cudaStreamSynchronize(stream_);  // pipelined steps may still be queued
  for (auto& p : programs_)
    if (p->exec) cudaGraphExecDestroy(p->exec);
  if (!modules_.empty()) {
    const auto& drv = cuda::driver();
    for (auto m : modules_) drv.cuModuleUnload(m);
  }
  for (int i = 0; i < kMaxInFlight; ++i) {
    if (ev_start_[i]) cudaEventDestroy(ev_start_[i]);
    if (ev_stop_[i]) cudaEventDestroy(ev_stop_[i]);
    if (ev_done_[i]) cudaEventDestroy(ev_done_[i]);
  }
  if (h_step_) cudaFreeHost(h_step_);
  if (h_ring_) cudaFreeHost(h_ring_);
  if (d_arena_) cudaFree(d_arena_);
  if (d_weights_) cudaFree(d_weights_);
  if (stream_) cudaStreamDestroy(stream_);
}

bool Engine::has_mode(ProgramMode m) const {
  for (const auto& p : programs_)
    if (p->desc->mode == m) return true;
  return false;
}

std::vector<int32_t> Engine::prefill_buckets(ProgramMode m) const {
  std::vector<int32_t> b;
  for (const auto& p : programs_)
    if (p->desc->mode == m && p->desc->phase == Phase::Prefill) b.push_back(p->desc->bucket);
  std::sort(b.begin(), b.end());
  return b;
}

int32_t Engine::prefill(ProgramMode mode, std::span<const int32_t> prompt, const SamplingParams& sp,
                        float* gpu_ms) {
  const int32_t n = static_cast<int32_t>(prompt.size()), chunk = std::max<int32_t>(1, max_prefill_bucket(mode));
  int32_t pos = 0, next = -1;
  float gpu = 0;
  while (pos < n) {
    const int32_t len = std::min(chunk, n - pos);
    next = step(mode, prompt.subspan(static_cast<size_t>(pos), static_cast<size_t>(len)), pos, sp);
    gpu += last_step_gpu_ms();
    pos += len;
  }
  if (gpu_ms) *gpu_ms = gpu;
  return next;
}

int32_t Engine::max_prefill_bucket(ProgramMode m) const {
  auto b = prefill_buckets(m);
  return b.empty() ? 0 : b.back();
}

const Engine::Program& Engine::pick(ProgramMode mode, Phase phase, int32_t n) const {
  const Program* best = nullptr;
  for (const auto& p : programs_) {
    const auto& d = *p->desc;
    if (d.mode != mode || d.bucket < n) continue;
    if (phase == Phase::Decode && d.phase == Phase::Decode && d.bucket == 1) return *p;
    if (d.phase == Phase::Prefill && (!best || d.bucket < best->desc->bucket)) best = p.get();
  }
  if (!best)
    throw Error(ErrorCode::kInvalidArgument,
                "no " + std::string(mode == ProgramMode::Compiled ? "compiled" : "eager") + " program takes " +
                    std::to_string(n) + " tokens in one step (largest prefill bucket " +
                    std::to_string(max_prefill_bucket(mode)) + "); split the prompt into chunks" +
                    (has_mode(mode) ? "" : " — this plan has no such programs: recompile with --eager"));
  return *best;
}

// The trap fault (runtime/fault.h): a one-thread kernel that executes `trap`,
// JIT-compiled from PTX by the driver (the runtime has no NVRTC), so the step
// ends in a sticky launch failure as a faulting kernel would.
void Engine::launch_trap() {
  static const char kPtx[] =
      ".version 7.0\n.target sm_52\n.address_size 64\n.visible .entry kiln_fault_trap()\n{\n  trap;\n  ret;\n}\n";
  const auto& drv = cuda::driver();
  CUmodule m = nullptr;
  CUfunction f = nullptr;
  check(drv.cuModuleLoadDataEx(&m, kPtx, 0, nullptr, nullptr), "load the trap fault kernel");
  modules_.push_back(m);
  check(drv.cuModuleGetFunction(&f, m, "kiln_fault_trap"), "find the trap fault kernel");
  check(drv.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, stream_, nullptr, nullptr), "launch the trap fault kernel");
}

void Engine::require_idle(const char* what) const {
  if (pending_)
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + " with " + std::to_string(pending_) +
                                                 " pipelined decode step(s) pending: collect or discard them first");
}

bool Engine::uses_ring(const Program& p) const { return device_step_ && p.desc->device_step; }

namespace {
bool same_sampling(const SamplingParams& a, const SamplingParams& b) {
  return a.temperature == b.temperature && a.top_k == b.top_k && a.top_p == b.top_p && a.seed == b.seed;
}
}  // namespace

void Engine::enqueue_step(const Program& p, int32_t n, int32_t pos0, const SamplingParams& sp, const int32_t* ids) {
  const auto& A = in_.arena;
  const int32_t slot = next_slot_;
  const uint32_t step_no = step_counter_++;
  // device_step: the sampling kernel hands the token over through h_ring_
  // and leaves the block set up for the decode step after this one; when this
  // step is that one, the block is already on the device.
  const bool ring = uses_ring(p);
  const bool fed = ring && !ids && n == 1 && dev_next_.valid && dev_next_.pos0 == pos0 && dev_next_.step == step_no &&
                   same_sampling(dev_next_.sp, sp);
  dev_next_.valid = false;  // until this step is queued
  auto* arena = static_cast<uint8_t*>(d_arena_);
  if (ids)
    check(cudaMemcpyAsync(arena + A.tokens_offset, ids, sizeof(int32_t) * n, cudaMemcpyHostToDevice, stream_),
          "upload token ids");
  if (!fed) {
    KilnStep& s = h_step_[2 * slot];
    s = KilnStep{};
    s.out_token = -1;  // the sampling kernel must overwrite it (checked in finish_step)
    s.n_tokens = n;
    s.pos0 = pos0;
    s.temperature = sp.temperature;
    s.top_k = sp.top_k;
    s.top_p = sp.top_p;
    s.seed_lo = static_cast<uint32_t>(sp.seed);
    s.seed_hi = static_cast<uint32_t>(sp.seed >> 32);
    s.step = step_no;
    s.ring = ring ? kRing : 0u;
    s.host_tokens = ring ? d_ring_ : 0ull;
    check(cudaMemcpyAsync(arena + A.step_offset, &s, sizeof s, cudaMemcpyHostToDevice, stream_), "upload step");
    ++step_uploads_;
  }
  if (ring) h_ring_[step_no & (kRing - 1)] = -1;  // the sampling kernel must overwrite it (finish_step)
  check(cudaEventRecord(ev_start_[slot], stream_), "cudaEventRecord");
  if (fault::hit(fault::Site::kTrap)) launch_trap();
  check_tokens_ = n;
  if (p.exec) {
    check(cudaGraphLaunch(p.exec, stream_), "cudaGraphLaunch");
  } else {
    enqueue(p);
  }
  check(cudaEventRecord(ev_stop_[slot], stream_), "cudaEventRecord");
  if (!ring) {
    KilnStep* back = h_step_ + 2 * slot + 1;
    back->out_token = -1;
    check(cudaMemcpyAsync(back, arena + A.step_offset, sizeof(KilnStep), cudaMemcpyDeviceToHost, stream_),
          "read sampled token");
  }
  check(cudaEventRecord(ev_done_[slot], stream_), "cudaEventRecord");
  if (ring) dev_next_ = DeviceNext{true, pos0 + n, step_no + 1, sp};
  slot_step_[slot] = step_no;
  slot_program_[slot] = &p;
  next_slot_ = (slot + 1) % kMaxInFlight;
  ++pending_;
}

int32_t Engine::finish_step() {
  const int32_t slot = ((next_slot_ - pending_) % kMaxInFlight + kMaxInFlight) % kMaxInFlight;
  --pending_;  // whatever happens below, this step is no longer pending
  try {
    check(cudaEventSynchronize(ev_done_[slot]), "step execution");  // recorded after the read-back copy
    const Program& p = *slot_program_[slot];
    last_program_ = &p;
    check(cudaEventElapsedTime(&last_gpu_ms_, ev_start_[slot], ev_stop_[slot]), "cudaEventElapsedTime");
    const int32_t tok = uses_ring(p) ? *reinterpret_cast<volatile const int32_t*>(&h_ring_[slot_step_[slot] & (kRing - 1)])
                                         : h_step_[2 * slot + 1].out_token;
    if (tok < 0 || tok >= in_.vocab)
      throw Error(ErrorCode::kInternal, "step sampled token " + std::to_string(tok) +
                                            " outside the vocabulary (program " + p.desc->name + ")");
    return tok;
  } catch (...) {
    dev_next_.valid = false;  // the device's step block is unknown now: the next step uploads one
    throw;
  }
}

int32_t Engine::run(const Program& p, int32_t n, int32_t pos0, const SamplingParams& sp, const int32_t* ids) {
  require_idle("a synchronous step");
  enqueue_step(p, n, pos0, sp, ids);
  check(cudaStreamSynchronize(stream_), "step execution");
  return finish_step();
}

int32_t Engine::step(ProgramMode mode, std::span<const int32_t> tokens, int32_t pos0, const SamplingParams& sp) {
  if (tokens.empty()) throw Error(ErrorCode::kInvalidArgument, "a step needs at least one token");
  if (tokens.size() > in_.arena.tokens_capacity)
    throw Error(ErrorCode::kInvalidArgument, "step of " + std::to_string(tokens.size()) +
                                                 " tokens exceeds the plan's token buffer (" +
                                                 std::to_string(in_.arena.tokens_capacity) + ")");
  const int32_t n = static_cast<int32_t>(tokens.size());
  const Program& p = pick(mode, n == 1 ? Phase::Decode : Phase::Prefill, n);
  return run(p, n, pos0, sp, tokens.data());
}

int32_t Engine::decode_next(ProgramMode mode, int32_t pos0, const SamplingParams& sp) {
  const Program& p = pick(mode, Phase::Decode, 1);
  return run(p, 1, pos0, sp, nullptr);
}

void Engine::decode_submit(ProgramMode mode, int32_t pos0, const SamplingParams& sp) {
  if (pending_ >= kMaxInFlight)
    throw Error(ErrorCode::kInvalidArgument, "a pipelined decode step was submitted with " +
                                                 std::to_string(pending_) + " pending (at most " +
                                                 std::to_string(kMaxInFlight) + "): collect one first");
  const Program& p = pick(mode, Phase::Decode, 1);
  enqueue_step(p, 1, pos0, sp, nullptr);
}

int32_t Engine::decode_collect() {
  if (!pending_) throw Error(ErrorCode::kInvalidArgument, "no pipelined decode step to collect");
  return finish_step();
}

void Engine::decode_discard() {
  pending_ = 0;  // dropped even if the wait below reports a failed step
  const cudaError_t err = cudaStreamSynchronize(stream_);
  if (err != cudaSuccess) dev_next_.valid = false;  // the discarded steps' block is unknown
  check(err, "step execution");
}

std::vector<float> Engine::last_logits() const {
  require_idle("reading logits");
  if (!last_program_) throw Error(ErrorCode::kInvalidArgument, "no step has run yet");
  std::vector<float> out(static_cast<size_t>(in_.vocab));
  check(cudaMemcpy(out.data(), static_cast<uint8_t*>(d_arena_) + last_program_->desc->logits_offset,
                   out.size() * sizeof(float), cudaMemcpyDeviceToHost),
        "read logits");
  return out;
}

void Engine::reset() {
  require_idle("clearing the KV cache");
  step_counter_ = 0;  // a conversation's random draws depend on its seed and steps only
  dev_next_.valid = false;
  if (in_.arena.kv_size)
    check(cudaMemsetAsync(static_cast<uint8_t*>(d_arena_) + in_.arena.kv_offset, 0, in_.arena.kv_size, stream_),
          "clear KV cache");
  check(cudaStreamSynchronize(stream_), "clear KV cache");
}

size_t Engine::device_bytes() const { return in_.weights_size + in_.arena.size; }

}  // namespace kiln::rt
