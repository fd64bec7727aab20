// `bench`: compiled vs eager latency on the same plan, prefill and decode
// reported separately, with the device's measured roofline next to each figure.
// cuBLAS (for the tensor-core rate only) is loaded with dlopen when measuring,
// so the runtime links neither libcublas nor anything that needs it; the
// header is used for its types and signatures only.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/cli/args.h"
#include "runtime/cli/cli.h"
#include "runtime/cli/interrupt.h"
#include "runtime/kiln_runtime.h"

namespace kiln::rt::cli {

namespace {
using rt::cuda::check;

// Kernel launches (incl. library GEMMs) of the plan's decode program of one
// sequence in this mode (0 if it has none).
uint32_t decode_launches(const Plan& plan, ProgramMode mode) {
  const fb::ProgramMode m = mode == ProgramMode::Compiled ? fb::ProgramMode::Compiled : fb::ProgramMode::Eager;
  const fb::Program* p = plan.find_program(m, fb::Phase::Decode, 1);
  return p && p->launches() ? p->launches()->size() : 0;
}

double pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Median CUDA-event time of `fn` over `runs` runs after `warmup` untimed ones.
template <typename Fn>
double median_event_ms(Fn fn, int warmup, int runs) {
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "cudaEventCreate");
  check(cudaEventCreate(&e1), "cudaEventCreate");
  std::vector<double> ms;
  for (int i = 0; i < warmup + runs; ++i) {
    cudaEventRecord(e0);
    fn();
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    if (i >= warmup) ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return pct(ms, 0.5);
}

// Device-to-device copy bandwidth, counting bytes read plus bytes written.
double measure_copy_gbps() {
  const size_t bytes = 1ull << 30;
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc(bench)");
  check(cudaMalloc(&b, bytes), "cudaMalloc(bench)");
  check(cudaMemset(a, 1, bytes), "cudaMemset");
  const double ms = median_event_ms([&] { cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice); }, 2, 10);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

// The three cuBLAS entry points the roofline needs, from a dlopen'ed libcublas
// (the major version of the headers first, then any). Null when absent.
struct Cublas {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  cublasStatus_t (*gemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*, const void*,
                         cudaDataType, int, const void*, cudaDataType, int, const void*, void*, cudaDataType, int,
                         cublasComputeType_t, cublasGemmAlgo_t) = nullptr;  // cublasGemmEx (C++ overloads it)
};

const Cublas* load_cublas() {
  static const Cublas* const api = []() -> const Cublas* {
    const std::string so = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    std::vector<std::string> candidates = {so, "libcublas.so"};
    if (const char* home = std::getenv("CUDA_HOME")) candidates.push_back(std::string(home) + "/lib64/" + so);
    candidates.push_back("/usr/local/cuda/lib64/" + so);
    for (const auto& name : candidates) {
      void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) continue;
      static Cublas c;
      c.create = reinterpret_cast<decltype(c.create)>(dlsym(h, "cublasCreate_v2"));
      c.destroy = reinterpret_cast<decltype(c.destroy)>(dlsym(h, "cublasDestroy_v2"));
      c.gemm = reinterpret_cast<decltype(c.gemm)>(dlsym(h, "cublasGemmEx"));
      if (c.create && c.destroy && c.gemm) return &c;  // the library stays loaded for the process
      dlclose(h);
    }
    return nullptr;
  }();
  return api;
}

// Dense bf16 tensor-core rate through cuBLAS (8192^3), the FLOP ceiling; 0
// (with a note on stderr) when libcublas cannot be loaded.
double measure_tensor_tflops() {
  const Cublas* cb = load_cublas();
  if (!cb) {
    std::fprintf(stderr, "tensor-core rate not measured: libcublas not found\n");
    return 0;
  }
  cublasHandle_t h;
  if (cb->create(&h) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "tensor-core rate not measured: cublasCreate failed\n");
    return 0;
  }
  const int n = 8192;
  void *A, *B, *C;
  size_t bytes = size_t(n) * n * 2;
  check(cudaMalloc(&A, bytes), "cudaMalloc");
  check(cudaMalloc(&B, bytes), "cudaMalloc");
  check(cudaMalloc(&C, bytes), "cudaMalloc");
  check(cudaMemset(A, 0x3c, bytes), "cudaMemset");  // 0x3c3c: a finite, non-zero bf16
  check(cudaMemset(B, 0x3c, bytes), "cudaMemset");
  float alpha = 1, beta = 0;
  const double ms = median_event_ms(
      [&] {
        cb->gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n, &beta, C,
                 CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      },
      2, 6);
  cb->destroy(h);
  cudaFree(A);
  cudaFree(B);
  cudaFree(C);
  return 2.0 * n * n * double(n) / (ms * 1e-3) / 1e12;
}

struct BenchArgs {
  std::string plan;
  int prompt_tokens = 128, gen = 64, repeats = 5, warmup = 1, device = 0, context = 0;
  bool json = false, compiled_only = false, eager_only = false, no_pipeline = false, no_device_step = false;
};
}  // namespace

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench",
                                 "Compiled vs eager latency on one plan: load, time to first token, time per output\n"
                                 "token (p50/p99), decode and prefill tokens/s, against the GPU's measured roofline.\n"
                                 "Example: " + app.get_name() + " bench model.plan --json");
  auto a = std::make_shared<BenchArgs>();
  // No CLI::ExistingFile: a missing plan is the runtime's kIo error (exit 1, names the fix).
  cmd->add_option("plan", a->plan, "plan file")->required();
  cmd->add_option("--prompt-tokens", a->prompt_tokens, "prompt length (random token ids)")->capture_default_str();
  cmd->add_option("--gen", a->gen, "tokens generated per run")->capture_default_str();
  cmd->add_option("--context", a->context,
                  "decode with this many tokens already in the KV cache (a prompt of that length, prefilled in "
                  "chunks, before the timed decode steps; replaces --prompt-tokens)");
  cmd->add_option("--repeats", a->repeats, "timed runs (median reported)")->capture_default_str();
  cmd->add_option("--warmup", a->warmup, "untimed runs first")->capture_default_str();
  cmd->add_option("--device", a->device, "CUDA device index");
  cmd->add_flag("--json", a->json, "print JSON only");
  cmd->add_flag("--compiled-only", a->compiled_only, "skip eager");
  cmd->add_flag("--eager-only", a->eager_only, "skip compiled");
  cmd->add_flag("--no-pipeline", a->no_pipeline,
                "wait for each decode step before queueing the next (default: one step queued ahead)");
  cmd->add_flag("--no-device-step", a->no_device_step,
                "copy the step block in and the sampled token out around every compiled step (default: the "
                "sampling kernel sets up the next decode step on the GPU and hands the token over in pinned "
                "memory; plans before format 2.3 always copy)");
  cmd->callback([a] {
    check_input_file(a->plan, "plan");
    check_int("--prompt-tokens", a->prompt_tokens, 1, kMaxTokensArg);
    check_int("--gen", a->gen, 1, kMaxTokensArg);
    check_int("--repeats", a->repeats, 1, 100000);
    check_int("--warmup", a->warmup, 0, 100000);
    check_device("--device", a->device);
    if (a->context) check_int("--context", a->context, 1, kMaxTokensArg);
    auto t0 = std::chrono::steady_clock::now();
    rt::EngineOptions eo;
    eo.device = a->device;
    eo.device_step = !a->no_device_step;
    auto model = rt::Model::load(a->plan, eo);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto& eng = model->engine();
    const auto& mc = model->plan().model();
    const int ctx = model->context_length();
    if (a->context && a->context + a->gen > ctx)
      throw rt::Error(rt::ErrorCode::kInvalidArgument,
                      "--context " + std::to_string(a->context) + " + --gen " + std::to_string(a->gen) +
                          " exceed the plan's context of " + std::to_string(ctx) +
                          " tokens: compile with a larger --ctx or pass a smaller --context / --gen",
                      "--context");
    const int P = a->context ? a->context : std::min(a->prompt_tokens, ctx - a->gen - 1);
    if (P < 1) throw rt::Error(rt::ErrorCode::kInvalidArgument, "--prompt-tokens + --gen exceed the plan's context");
    // KV cache element size: the plan's --kv-type (format 1.2; older plans have f32 caches)
    const auto* copts = model->plan().root().compile_options();
    const std::string kv_type = copts && copts->kv_type() ? copts->kv_type()->str() : "f32";
    const double kv_elem_bytes = kv_type == "f32" ? 4.0 : 2.0;
    std::mt19937 rng(1234);
    std::vector<int32_t> prompt(static_cast<size_t>(P));
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % mc.vocab());

    // Roofline inputs: weights read per decode step, parameters for FLOPs.
    double n_params = 0;
    for (const auto* w : model->plan().weights()) {
      double e = 1;
      if (w->shape())  // optional in the schema: a hostile plan may leave it out
        for (auto d : *w->shape()) e *= static_cast<double>(d);
      n_params += e;
    }
    // A decode step reads every weight once except the token embedding table
    // (one row; unless the LM head is tied to it and reads it whole). A
    // weight stored in two layouts is read in one of them.
    double weight_bytes = 0, embd_bytes = 0;
    bool untied = false;
    std::map<std::string, double> by_name;
    for (const auto* w : model->plan().weights()) {
      const std::string name = w->name() ? w->name()->str() : "";
      by_name[name] = std::max(by_name[name], static_cast<double>(w->size()));
      untied = untied || name == "output.weight";
    }
    for (const auto& [name, size] : by_name) {
      weight_bytes += size;
      if (name == "token_embd.weight") embd_bytes = size;
    }
    if (untied) weight_bytes -= embd_bytes;
    const double copy_gbps = measure_copy_gbps();
    const double tc_tflops = measure_tensor_tflops();

    nlohmann::json out;
    out["plan"] = a->plan;
    out["device"] = eng.device().name;
    out["sm"] = eng.device().sm;
    out["model"] = mc.name() ? mc.name()->str() : "";
    out["prompt_tokens"] = P;
    out["context"] = P;  // tokens in the KV cache when decoding starts (--context, else the prompt)
    out["kv_type"] = kv_type;
    out["gen_tokens"] = a->gen;
    out["repeats"] = a->repeats;
    out["decode_pipelined"] = !a->no_pipeline;
    out["decode_device_step"] = !a->no_device_step;
    out["load_s"] = load_s;
    out["graph_instantiate_s"] = eng.graph_seconds();
    out["roofline"] = {{"device_copy_GBps", copy_gbps},
                       {"bf16_tensor_TFLOPs", tc_tflops},
                       {"weights_bytes", static_cast<double>(model->plan().weights_size())},
                       {"params", n_params}};
    rt::Session s = model->session();
    InterruptGuard interrupt;  // Ctrl-C: stop after the current token, report nothing, exit 130
    for (int m = 0; m < 2; ++m) {
      auto mode = m == 0 ? rt::ProgramMode::Compiled : rt::ProgramMode::Eager;
      if ((m == 0 && a->eager_only) || (m == 1 && a->compiled_only) || !eng.has_mode(mode)) continue;
      rt::GenerateOptions go;
      go.max_new_tokens = a->gen;
      go.mode = mode;
      go.stop_at_eog = false;
      go.pipeline = !a->no_pipeline;
      auto sink = [](int32_t, std::string_view) { return !InterruptGuard::requested(); };
      auto stop_if_interrupted = [] {
        if (InterruptGuard::requested()) throw Interrupted{"bench stopped before its results (nothing reported)"};
      };
      for (int i = 0; i < a->warmup; ++i) {
        s.generate(prompt, go, sink);
        stop_if_interrupted();
      }
      std::vector<double> ttft, prefill_gpu, tpot, tpot_gpu;
      const uint64_t uploads0 = eng.step_uploads();
      for (int i = 0; i < a->repeats; ++i) {
        auto st = s.generate(prompt, go, sink);
        stop_if_interrupted();
        ttft.push_back(st.prefill_s * 1e3);
        prefill_gpu.push_back(st.prefill_gpu_ms);
        tpot.insert(tpot.end(), st.decode_ms.begin(), st.decode_ms.end());
        tpot_gpu.insert(tpot_gpu.end(), st.decode_gpu_ms.begin(), st.decode_gpu_ms.end());
      }
      const double tp50 = pct(tpot, 0.5), tgpu = pct(tpot_gpu, 0.5), ttft50 = pct(ttft, 0.5);
      // bytes a decode step reads: every weight, and the K and V rows of every
      // layer up to its position (the timed steps' mean context: P + gen / 2)
      const double mean_ctx = P + a->gen / 2.0;
      const double kv_bytes = 2.0 * mc.n_layers() * mc.n_kv_heads() * mc.head_dim() * kv_elem_bytes * mean_ctx;
      const double step_bytes = weight_bytes + kv_bytes;
      const double prefill_flops = 2.0 * n_params * P;
      nlohmann::json r;
      r["ttft_ms_p50"] = ttft50;
      r["prefill_gpu_ms_p50"] = pct(prefill_gpu, 0.5);
      r["prefill_tok_s"] = P / (ttft50 * 1e-3);
      r["tpot_ms_p50"] = tp50;
      r["tpot_ms_p99"] = pct(tpot, 0.99);
      r["tpot_gpu_ms_p50"] = tgpu;
      // step blocks the host copied in per run (prompt chunks + decode steps
      // without device_step; with it, only the prompt's chunks)
      r["step_uploads_per_run"] = static_cast<double>(eng.step_uploads() - uploads0) / a->repeats;
      r["decode_tok_s"] = tp50 > 0 ? 1e3 / tp50 : 0;
      r["decode_bytes_per_token"] = step_bytes;  // weights + KV cache
      r["decode_weight_bytes_per_token"] = weight_bytes;
      r["decode_kv_bytes_per_token"] = kv_bytes;
      r["decode_mean_context"] = mean_ctx;
      r["decode_achieved_GBps"] = tgpu > 0 ? step_bytes / (tgpu * 1e-3) / 1e9 : 0;
      r["decode_fraction_of_copy_bw"] = tgpu > 0 ? step_bytes / (tgpu * 1e-3) / 1e9 / copy_gbps : 0;
      r["decode_floor_ms"] = step_bytes / (copy_gbps * 1e9) * 1e3;
      // launches of the one-sequence decode program, and the GPU time per launch
      const uint32_t kernels = decode_launches(model->plan(), mode);
      r["decode_kernels_per_token"] = kernels;
      r["decode_us_per_kernel"] = kernels ? tgpu * 1e3 / kernels : 0;
      r["prefill_TFLOPs"] = prefill_flops / (pct(prefill_gpu, 0.5) * 1e-3) / 1e12;
      r["prefill_fraction_of_tensor_rate"] = tc_tflops > 0 ? r["prefill_TFLOPs"].get<double>() / tc_tflops : 0;
      out[m == 0 ? "compiled" : "eager"] = r;
    }
    if (out.contains("compiled") && out.contains("eager")) {
      out["speedup_decode"] = out["eager"]["tpot_ms_p50"].get<double>() / out["compiled"]["tpot_ms_p50"].get<double>();
      out["speedup_ttft"] = out["eager"]["ttft_ms_p50"].get<double>() / out["compiled"]["ttft_ms_p50"].get<double>();
    }
    if (a->json) {
      std::printf("%s\n", out.dump(2).c_str());
      return;
    }
    std::printf("%s on %s (sm_%d): prompt %d tokens, %d generated, median of %d runs\n", out["model"].get<std::string>().c_str(),
                eng.device().name.c_str(), eng.device().sm, P, a->gen, a->repeats);
    char tc[32] = "not measured";
    if (tc_tflops > 0) std::snprintf(tc, sizeof tc, "%.0f TFLOP/s", tc_tflops);
    std::printf("roofline: copy %.0f GB/s, bf16 tensor %s; decode floor %.3f ms/token (%.1f MB/token)\n",
                copy_gbps, tc, (weight_bytes) / (copy_gbps * 1e9) * 1e3, weight_bytes / 1e6);
    for (const char* m : {"compiled", "eager"})
      if (out.contains(m)) {
        const auto& r = out[m];
        std::printf("decode bytes/token: weights %.1f MB + KV cache %.1f MB (%s, mean context %.0f tokens)\n",
                    r["decode_weight_bytes_per_token"].get<double>() / 1e6,
                    r["decode_kv_bytes_per_token"].get<double>() / 1e6, kv_type.c_str(),
                    r["decode_mean_context"].get<double>());
        break;
      }
    std::printf("%-9s %10s %12s %12s %12s %12s %12s %16s\n", "mode", "TTFT ms", "prefill t/s", "TPOT p50",
                "TPOT p99", "decode t/s", "% copy BW", "kernels/token");
    for (const char* m : {"compiled", "eager"}) {
      if (!out.contains(m)) continue;
      const auto& r = out[m];
      std::printf("%-9s %10.2f %12.0f %12.3f %12.3f %12.0f %11.1f%% %5u (%4.1f us)\n", m,
                  r["ttft_ms_p50"].get<double>(), r["prefill_tok_s"].get<double>(), r["tpot_ms_p50"].get<double>(),
                  r["tpot_ms_p99"].get<double>(), r["decode_tok_s"].get<double>(),
                  100 * r["decode_fraction_of_copy_bw"].get<double>(), r["decode_kernels_per_token"].get<uint32_t>(),
                  r["decode_us_per_kernel"].get<double>());
    }
    if (out.contains("speedup_decode"))
      std::printf("compiled vs eager: decode %.2fx, TTFT %.2fx; load %.2f s (graphs %.2f s)\n",
                  out["speedup_decode"].get<double>(), out["speedup_ttft"].get<double>(), load_s, eng.graph_seconds());
  });
}

}  // namespace kiln::rt::cli
