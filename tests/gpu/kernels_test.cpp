// GPU kernel tests: every (op, dtype, mode) kernel variant against the IR
// reference interpreter, by relative error ||gpu - ref|| / ||ref|| under the
// per-op tolerances below, plus the sampling semantics of lm_head_sample.
// The CUDA driver API is reached through cudaGetDriverEntryPointByVersion
// (cudart_static only, no libcuda link), so this binary starts and skips
// visibly on machines without a GPU or driver.
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <atomic>
#include <functional>
#include <algorithm>

#include "codegen/codegen.h"
#include "runtime/cuda/cublaslt.h"
#include "ir/dequant.h"
#include "ir/interpreter.h"
#include "ir/quantize.h"
#include "tests/codegen/op_cases.h"

namespace kiln::codegen {
namespace {
using ir::DType;
using testcases::OpCase;

// ---- CUDA plumbing -----------------------------------------------------------

struct Driver {
  decltype(&::cuModuleLoadData) moduleLoadData = nullptr;
  decltype(&::cuModuleGetFunction) moduleGetFunction = nullptr;
  decltype(&::cuLaunchKernel) launchKernel = nullptr;
  decltype(&::cuFuncSetAttribute) funcSetAttribute = nullptr;
  std::string why_not;  // non-empty: no usable GPU
  int sm = 0;           // device SM (major*10+minor)
};

template <class F>
bool entry(const char* name, F& fn, std::string& err) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &q) != cudaSuccess || !p ||
      q != cudaDriverEntryPointSuccess) {
    err = std::string("driver entry point ") + name + " not found";
    return false;
  }
  fn = reinterpret_cast<F>(p);
  return true;
}

const Driver& driver() {
  static const Driver d = [] {
    Driver d;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      d.why_not = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
      return d;
    }
    if (n == 0) {
      d.why_not = "no CUDA device";
      return d;
    }
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    d.sm = prop.major * 10 + prop.minor;
    cudaFree(nullptr);  // make the primary context current
    if (!entry("cuModuleLoadData", d.moduleLoadData, d.why_not) ||
        !entry("cuModuleGetFunction", d.moduleGetFunction, d.why_not) ||
        !entry("cuLaunchKernel", d.launchKernel, d.why_not) ||
        !entry("cuFuncSetAttribute", d.funcSetAttribute, d.why_not))
      return d;
    return d;
  }();
  return d;
}

#define SKIP_WITHOUT_GPU()                                                        \
  do {                                                                            \
    if (!driver().why_not.empty()) GTEST_SKIP() << "no CUDA GPU: " << driver().why_not; \
  } while (0)

// The SM kiln compiles for on this device: the device's own if supported,
// else the newest supported one below it (its PTX is then JIT-compiled).
int compile_sm() {
  int best = 0;
  for (int s : supported_sms())
    if (s <= driver().sm) best = s;
  return best;
}

std::string cache_dir() {
  static const std::string d = [] {
    auto p = std::filesystem::temp_directory_path() / ("kiln_gpu_test_cache_" + std::to_string(::getuid()));
    return p.string();
  }();
  return d;
}

// A launch of more than 48 KiB of dynamic shared memory needs the function's
// limit raised first (as the runtime engine does).
CUfunction with_smem(CUfunction f, const Lowered& l) {
  if (l.smem > 48 * 1024 &&
      driver().funcSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, static_cast<int>(l.smem)) !=
          CUDA_SUCCESS)
    throw std::runtime_error("cuFuncSetAttribute(" + std::to_string(l.smem) + " bytes) failed for " + l.kernel.entry);
  return f;
}

CUfunction load(const Lowered& l) {
  static std::map<std::pair<uint64_t, std::string>, CUfunction> fns;
  static std::map<uint64_t, CUmodule> mods;
  auto key = std::make_pair(l.kernel.hash, l.kernel.entry);
  if (auto it = fns.find(key); it != fns.end()) return with_smem(it->second, l);
  CUmodule mod;
  if (auto it = mods.find(l.kernel.hash); it != mods.end()) {
    mod = it->second;
  } else {
    const int sm = compile_sm();
    const CompiledKernel ck = compile(l.kernel, sm, cache_dir());
    CUresult r = sm == driver().sm ? driver().moduleLoadData(&mod, ck.cubin.data())
                                   : driver().moduleLoadData(&mod, ck.ptx.c_str());
    if (r != CUDA_SUCCESS) throw std::runtime_error("cuModuleLoadData failed: " + std::to_string(r));
    mods[l.kernel.hash] = mod;
  }
  CUfunction f;
  if (driver().moduleGetFunction(&f, mod, l.kernel.entry.c_str()) != CUDA_SUCCESS)
    throw std::runtime_error("kernel " + l.kernel.entry + " not in module");
  fns[key] = f;
  return with_smem(f, l);
}

struct DevBuf {
  void* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t bytes) : n(std::max<size_t>(bytes, 4)) {
    if (cudaMalloc(&p, n) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  }
  ~DevBuf() { cudaFree(p); }
  void upload(const void* src, size_t bytes) { ASSERT_EQ(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice), cudaSuccess); }
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n, cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

using Step = KilnStep;  // the one declaration (schemas/kiln_step.h)

// ---- host data -----------------------------------------------------------------

uint16_t f2bf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float round_to(DType t, float v) {
  if (t == DType::F16) return ir::fp16_to_fp32(ir::fp32_to_fp16(v));
  if (t == DType::BF16) return ir::bf16_to_fp32(f2bf(v));
  return v;
}
std::vector<uint8_t> encode(DType t, const std::vector<float>& v) {
  std::vector<uint8_t> out;
  if (t == DType::F32) {
    out.resize(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
  } else {
    out.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t h = t == DType::F16 ? ir::fp32_to_fp16(v[i]) : f2bf(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}
std::vector<float> decode(DType t, const uint8_t* p, size_t n) {
  std::vector<float> v(n);
  ir::dequantize(t, p, v.data(), static_cast<int64_t>(n));
  return v;
}

// Dims and sizes: ir::resolve_dim / resolve_elements with tokens bound to the
// rows in question (other symbols at their sym_bounds).
size_t elem_bytes(const ir::Value& v, int64_t n) {
  if (v.dtype == DType::I32) return static_cast<size_t>(n) * 4;
  return static_cast<size_t>(ir::row_bytes(v.dtype, n));
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b, double* ref_norm) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  *ref_norm = std::sqrt(den);
  return std::isfinite(num) ? std::sqrt(num) / std::max(std::sqrt(den), 1e-30) : INFINITY;
}

// Per-op tolerance on ||gpu - ref|| / ||ref||. Elementwise ops and rope
// (angles in double on both sides) differ only by fp32 rounding; matmul and
// attention sum in another order than the interpreter. f16/bf16 caches: the
// interpreter rounds stored rows exactly as the kernels do (nearest even), so
// kv_store matches bit for bit; rope_store's k rows come from sincosf on the GPU
// and double cos/sin in the interpreter, so a value next to a rounding boundary
// may round to the neighbouring f16 (2^-11 relative) or bf16 (2^-8) value:
// 1e-4 / 1e-3 allow a few such flips. Attention (both kernels, every context up
// to 8192 rows, any cache dtype: both sides read the same rounded cache values)
// is fp32 arithmetic in another order — the split kernel's online softmax over
// splits merged at the end, the interpreter's one pass of max, exp and sum —
// measured ~1e-6 relative; 1e-4 leaves room for long sums of 8192 terms.
double tolerance(const std::string& name, DType cache_t) {
  auto starts = [&](const char* p) { return name.rfind(p, 0) == 0; };
  if (starts("kv_store") || starts("rope_store")) {
    if (cache_t == DType::F16) return 1e-4;
    if (cache_t == DType::BF16) return 1e-3;
  }
  if (starts("attention_o")) return 5e-4;  // attention written as f16/bf16: see half_out below
  if (starts("matmul") || starts("rms_matmul") || starts("lm_head") || starts("attention")) return 1e-4;
  // cuBLASLt GEMM on f16/bf16 operands the interpreter rounds identically: the
  // products are exact in fp32 on both sides, only the fp32 summation order
  // (tensor-core k-tiles, maybe split-K) differs; measured ~1e-6 relative.
  if (starts("gemm")) return 1e-4;
  // flash attention (prefill, tensor cores): q * scale * log2 e and the
  // softmax probabilities are rounded to f16 for mma.sync (2^-11 relative
  // each, the interpreter keeps fp32), 2^x is ex2.approx (~2 ulp), fp32
  // accumulation; expected ~3e-4 relative, 2e-3 allows for rows dominated by
  // a few large probabilities.
  if (starts("flash_attention")) return 2e-3;
  // cast and dequant round to nearest even on both sides: bit for bit.
  if (starts("cast") || starts("dequant")) return 1e-6;
  // a half-precision output (fold-cast) is the fp32 result rounded on both
  // sides: equal except where ~1e-6 of fp32 difference crosses a rounding
  // boundary (one f16 ulp = 4.9e-4, bf16 3.9e-3 relative, on a small fraction
  // of the elements).
  if (starts("half_out")) return 5e-4;
  if (starts("rms_norm")) return 1e-5;
  return 1e-5;
}

struct GpuRun {
  std::map<std::string, std::vector<float>> f32;    // by value name, rows [0, nt) (or full for caches)
  std::map<std::string, std::vector<int32_t>> i32;
  Step step_after{};
  bool untouched_tail = true;  // token rows >= nt of outputs kept their NaN sentinel
  std::string tail_what;
};

constexpr int kPos0 = 5;

// Fills inputs/weights for case c with nt real tokens.
struct Data {
  std::map<std::string, ir::Tensor> inputs;            // interpreter inputs (g names)
  std::map<std::string, std::vector<uint8_t>> weights;  // by source name
  std::map<std::string, std::vector<float>> raw;        // f32 values of every input, full bucket rows
};

int pos0_of(const OpCase& c) { return c.pos0 >= 0 ? c.pos0 : kPos0; }

Data make_data(const OpCase& c, int nt, uint64_t seed) {
  Data d;
  ir::SplitMix64 rng(seed);
  for (const ir::Value& v : c.g.values()) {
    if (v.kind == ir::ValueKind::Weight) {
      const int64_t n = ir::resolve_elements(c.g, v, {c.bucket});
      std::vector<uint8_t> bytes;
      if (v.name == "ff") {  // frequency factors: in [1, 4]
        std::vector<float> f(static_cast<size_t>(n));
        for (auto& x : f) x = round_to(v.dtype, 1.0f + 3.0f * rng.uniform());
        bytes = encode(v.dtype, f);
      } else {
        ir::random_blocks(v.dtype, n, rng.next(), bytes);
      }
      d.weights[v.source] = bytes;
    } else if (v.kind == ir::ValueKind::Input) {
      const int64_t full = ir::resolve_elements(c.g, v, {c.bucket}), real = ir::resolve_elements(c.g, v, {nt});
      std::vector<int64_t> shape;
      for (size_t i = 0; i < v.shape.size(); ++i)
        shape.push_back(ir::resolve_dim(c.g, v.shape[i], {i == 0 ? nt : c.bucket}));
      ir::Tensor t;
      t.shape = shape;
      if (v.dtype == DType::I32) {
        t.dtype = DType::I32;
        for (int64_t i = 0; i < real; ++i)
          t.i32.push_back(v.name == "pos" ? pos0_of(c) + static_cast<int32_t>(i)
                                          : static_cast<int32_t>(rng.next() % 50));
      } else {
        t.dtype = DType::F32;
        std::vector<float> all(static_cast<size_t>(full));
        for (auto& x : all) x = round_to(v.dtype, 2.0f * rng.uniform() - 1.0f);
        t.f32.assign(all.begin(), all.begin() + real);
        for (int64_t i = real; i < full; ++i) all[static_cast<size_t>(i)] = NAN;  // rows >= nt: never read
        d.raw[v.name] = all;
      }
      d.inputs[v.name] = t;
    }
  }
  if (c.derive_weights) c.derive_weights(d.weights);
  return d;
}

// launches > 1: the kernel runs that many times on the same buffers (as a
// replayed graph does), output 0 reset to the NaN sentinel before each repeat,
// so a kernel that leaves state behind (the split attention's counters) fails.
GpuRun run_gpu(const OpCase& c, ProgramMode mode, const Data& d, int nt, const Step& step_in, int launches = 1) {
  const ir::Node& n = c.g.nodes()[0];
  const Target target{compile_sm(), c.weight_layout};
  const Lowered l = lower(c.g, n, {c.bucket}, target, mode);
  CUfunction fn = l.gemm ? nullptr : load(l);  // a GEMM runs through cuBLASLt, no kernel
  std::map<ir::ValueId, std::unique_ptr<DevBuf>> bufs;
  auto buf_of = [&](ir::ValueId id) -> DevBuf& {
    auto& b = bufs[id];
    if (b) return *b;
    const ir::Value& v = c.g.value(id);
    const int64_t n_el = ir::resolve_elements(c.g, v, {c.bucket});
    b = std::make_unique<DevBuf>(elem_bytes(v, n_el));
    if (v.kind == ir::ValueKind::Weight) {
      const auto& w = d.weights.at(v.source);
      // in the layout the lowered kernel reads (as the compile driver writes it)
      std::string layout = kLayoutGgml;
      for (size_t i = 0; i < n.inputs.size(); ++i)
        if (n.inputs[i] == id) layout = input_layout(c.g, n, i, mode, target);
      if (layout != kLayoutGgml) {
        const int64_t K = ir::resolve_dim(c.g, v.shape.back(), {c.bucket});
        std::vector<uint8_t> packed(w.size());
        repack(v.dtype, layout, n_el / K, K, w.data(), packed.data());
        b->upload(packed.data(), packed.size());
      } else {
        b->upload(w.data(), w.size());
      }
    } else if (v.kind == ir::ValueKind::Input && v.dtype == DType::I32) {
      std::vector<int32_t> ids(static_cast<size_t>(n_el), -7);
      const auto& t = d.inputs.at(v.name).i32;
      std::copy(t.begin(), t.end(), ids.begin());
      b->upload(ids.data(), ids.size() * 4);
    } else if (v.kind == ir::ValueKind::Input) {
      auto bytes = encode(v.dtype, d.raw.at(v.name));
      b->upload(bytes.data(), bytes.size());
    } else if (v.kind == ir::ValueKind::State) {
      cudaMemset(b->p, 0, b->n);  // the interpreter's states start at zero
    } else {
      cudaMemset(b->p, 0xFF, b->n);  // outputs: NaN / -1 sentinel
    }
    return *b;
  };
  DevBuf step(sizeof(Step)), tokens(4 * static_cast<size_t>(c.bucket));
  step.upload(&step_in, sizeof(Step));
  cudaMemset(tokens.p, 0, tokens.n);
  std::vector<void*> ptrs;
  std::vector<int32_t> ints(l.params.size());
  std::vector<float> floats(l.params.size());
  std::vector<void*> args;
  ptrs.reserve(l.params.size());
  for (size_t i = 0; i < l.params.size(); ++i) {
    const Param& p = l.params[i];
    switch (p.kind) {
      case ParamKind::Input: ptrs.push_back(buf_of(n.inputs[static_cast<size_t>(p.index)]).p); break;
      case ParamKind::Output: ptrs.push_back(buf_of(n.outputs[static_cast<size_t>(p.index)]).p); break;
      case ParamKind::Step: ptrs.push_back(step.p); break;
      case ParamKind::Tokens: ptrs.push_back(tokens.p); break;
      case ParamKind::I32: ptrs.push_back(nullptr); ints[i] = static_cast<int32_t>(p.i); break;
      case ParamKind::F32: ptrs.push_back(nullptr); floats[i] = p.f; break;
    }
  }
  for (size_t i = 0; i < l.params.size(); ++i) {
    const Param& p = l.params[i];
    args.push_back(p.kind == ParamKind::I32 ? static_cast<void*>(&ints[i])
                   : p.kind == ParamKind::F32 ? static_cast<void*>(&floats[i])
                                              : static_cast<void*>(&ptrs[i]));
  }
  for (ir::ValueId o : n.outputs) buf_of(o);
  for (int li = 0; li < launches; ++li) {
    if (li > 0) {
      DevBuf& o0 = buf_of(n.outputs[0]);
      cudaMemset(o0.p, 0xFF, o0.n);
    }
    if (l.gemm) {  // as the runtime runs a plan's GEMM launch: params x, w, [r,] y
      const auto& gc = *l.gemm;
      static DevBuf workspace(32u << 20);
      const rt::cuda::LtGemm gemm(static_cast<uint32_t>(gc.m), static_cast<uint32_t>(gc.n),
                                  static_cast<uint32_t>(gc.k), gc.ab_type == DType::BF16, gc.residual, workspace.n);
      gemm.run(ptrs[0], ptrs[1], gc.residual ? ptrs[2] : nullptr, ptrs[gc.residual ? 3 : 2], workspace.p, nullptr);
    } else {
      const CUresult r = driver().launchKernel(fn, l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1],
                                               l.block[2], l.smem, nullptr, args.data(), nullptr);
      EXPECT_EQ(r, CUDA_SUCCESS) << l.kernel.entry;
    }
    const cudaError_t se = cudaDeviceSynchronize();
    EXPECT_EQ(se, cudaSuccess) << l.kernel.entry << ": " << cudaGetErrorString(se);
  }

  GpuRun run;
  std::memcpy(&run.step_after, step.download().data(), sizeof(Step));
  auto tok0 = tokens.download();
  run.i32["__tokens0"] = {*reinterpret_cast<const int32_t*>(tok0.data())};
  // Read back every output, plus every state (caches written in place).
  std::set<ir::ValueId> read(n.outputs.begin(), n.outputs.end());
  for (ir::ValueId in : n.inputs)
    if (c.g.value(in).kind == ir::ValueKind::State) read.insert(in);
  for (ir::ValueId id : read) {
    const ir::Value& v = c.g.value(id);
    const bool tok_rows = !v.shape.empty() && v.shape[0].sym == "tokens";
    const int64_t full = ir::resolve_elements(c.g, v, {c.bucket}), real = tok_rows ? ir::resolve_elements(c.g, v, {nt}) : full;
    const auto bytes = buf_of(id).download();
    if (v.dtype == DType::I32) {
      const auto* p = reinterpret_cast<const int32_t*>(bytes.data());
      run.i32[v.name].assign(p, p + real);
      for (int64_t i = real; i < full; ++i)
        if (p[i] != -1) run.untouched_tail = false, run.tail_what = v.name;
    } else {
      auto all = decode(v.dtype, bytes.data(), static_cast<size_t>(full));
      for (int64_t i = real; i < full; ++i)
        if (!std::isnan(all[static_cast<size_t>(i)])) run.untouched_tail = false, run.tail_what = v.name;
      all.resize(static_cast<size_t>(real));
      run.f32[v.name] = std::move(all);
    }
  }
  return run;
}

std::map<std::string, ir::Tensor> run_ref(const OpCase& c, const Data& d) {
  ir::Interpreter interp(c.ref, [&](const std::string& src) {
    for (const ir::Value& v : c.ref.values())
      if (v.kind == ir::ValueKind::Weight && v.source == src) {
        const auto& b = d.weights.at(src);
        std::vector<int64_t> shape;
        for (const auto& dim : v.shape) shape.push_back(dim.value);
        return ir::WeightData{v.dtype, shape, b.data(), b.size()};
      }
    throw Error(ErrorCode::kInvalidArgument, "no weight " + src);
  });
  auto inputs = d.inputs;
  if (c.derive_inputs) c.derive_inputs(inputs);
  return interp.run(inputs);
}

// GPU value name for a reference output (caches are written in place).
std::string gpu_name(const std::string& ref_name) {
  if (ref_name == "cache_out") return "cache";
  if (ref_name == "kc_out") return "kc";
  if (ref_name == "vc_out") return "vc";
  return ref_name;
}

struct CaseParam {
  size_t index;
  ProgramMode mode;
};

const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> v = [] {
    auto a = testcases::all_cases({1, 3, 20}, 20);
    // the tensor-core prefill path: GEMMs at 16, 512 and 4096 tokens
    for (auto& c : testcases::tensor_core_cases({16, 512, 4096}, 20)) a.push_back(std::move(c));
    auto b = testcases::all_cases({}, 1);  // non-matmul ops at decode bucket
    for (auto& c : b) {
      c.name += "/b1";
      a.push_back(std::move(c));
    }
    for (auto& c : testcases::window_split_cases()) a.push_back(std::move(c));
    for (auto& c : testcases::lm_head_item_cases()) a.push_back(std::move(c));
    return a;
  }();
  return v;
}

bool fused_op(const OpCase& c) { return c.fused || c.compiled_only; }  // no eager kernel

class KernelVsInterpreter : public ::testing::TestWithParam<CaseParam> {};

TEST_P(KernelVsInterpreter, Matches) {
  SKIP_WITHOUT_GPU();
  const OpCase& c = cases()[GetParam().index];
  const ProgramMode mode = GetParam().mode;
  const int nt = c.bucket > 4 ? static_cast<int>(c.bucket) - 3 : static_cast<int>(c.bucket);
  const Data d = make_data(c, nt, 0x5eed + GetParam().index);
  Step st{};
  st.n_tokens = nt;
  st.pos0 = pos0_of(c);
  st.temperature = 0.f;
  st.top_p = 1.f;
  // attention with the split scratch runs twice: the second launch is right
  // only if the first left its completion counters at zero (graph replay)
  const ir::Node& node = c.g.nodes()[0];
  const bool split_scratch = node.op == ir::OpKind::Attention && node.inputs.size() == 5;
  const GpuRun gpu = run_gpu(c, mode, d, nt, st, split_scratch ? 2 : 1);
  const auto ref = run_ref(c, d);
  EXPECT_TRUE(gpu.untouched_tail) << "rows >= n_tokens of " << gpu.tail_what << " were written";
  if (split_scratch) {
    const auto& sc = gpu.f32.at("scratch");
    const int64_t counters = launch::kAttSplitMaxRows * node.attr_int("n_kv_heads");
    for (int64_t i = 0; i < counters; ++i)
      EXPECT_EQ(sc[static_cast<size_t>(i)], 0.f) << "split counter " << i << " not reset";
  }
  // a case the flash-attention family takes (compiled, f16 cache, > 4 rows)
  // gets that kernel's tolerance whatever the case is called
  const Lowered low = lower(c.g, node, {c.bucket}, Target{compile_sm(), c.weight_layout}, mode);
  const bool flash = low.kernel.entry.rfind("kiln_flash_attention", 0) == 0 && c.name.rfind("flash_attention", 0) != 0;
  const double tol = tolerance(flash ? "flash_attention/" + c.name : c.name, c.dtype);
  int compared = 0;
  for (const auto& [name, t] : ref) {
    const std::string gname = gpu_name(name);
    if (t.dtype == DType::I32) {
      ASSERT_TRUE(gpu.i32.count(gname)) << gname;
      const auto& g = gpu.i32.at(gname);
      ASSERT_EQ(g.size(), t.i32.size()) << name;
      for (size_t i = 0; i < g.size(); ++i) {
        if (g[i] == t.i32[i]) continue;
        // a near-tie may flip an argmax: accept when the logits say it is one
        if (ref.count("logits")) {
          const auto& lg = ref.at("logits").f32;
          const float best = lg[static_cast<size_t>(t.i32[i])];
          ASSERT_TRUE(g[i] >= 0 && g[i] < static_cast<int32_t>(lg.size()));
          EXPECT_GE(lg[static_cast<size_t>(g[i])], best - 1e-4f * std::fabs(best)) << name << "[" << i << "]";
        } else {
          ADD_FAILURE() << name << "[" << i << "]: gpu " << g[i] << " ref " << t.i32[i];
        }
      }
      if (c.g.nodes()[0].op == ir::OpKind::LmHeadSample) {
        EXPECT_EQ(gpu.step_after.out_token, g[0]);
        EXPECT_EQ(gpu.i32.at("__tokens0")[0], g[0]) << "token written to tokens[0]";
        EXPECT_EQ(gpu.step_after.sample_done, 0u) << "completion counter reset";
        EXPECT_EQ(gpu.step_after.greedy_key, 0ull) << "greedy key reset";
      }
      ++compared;
      continue;
    }
    ASSERT_TRUE(gpu.f32.count(gname)) << "no GPU output for " << name;
    const auto& g = gpu.f32.at(gname);
    ASSERT_EQ(g.size(), t.f32.size()) << name;
    double norm = 0;
    const double err = rel_err(g, t.f32, &norm);
    ASSERT_GT(norm, 0.0) << name << ": reference is all zeros, comparison meaningless";
    // The cache rows a fused QKV GEMV writes (rms_matmul_rope_store) in bf16:
    // its f32 sums differ from the interpreter's by ~1e-7 (summation order),
    // which moves a value across a bf16 rounding boundary now and then (one
    // bf16 ulp, 3.9e-3 relative, in one of a step's 128 values is 3.5e-4 of
    // the row), so they take rope_store's bf16 tolerance. Seen: 1.7e-4 on the
    // q8_0 planes case once the case list (the data's seed) changed.
    double tol_out = tol;
    if ((name == "kc_out" || name == "vc_out") && c.name.rfind("rms_matmul_rope_store", 0) == 0 &&
        c.name.find("/cbf16") != std::string::npos)
      tol_out = std::max(tol, tolerance("rope_store", DType::BF16));
    EXPECT_LE(err, tol_out) << name << " (" << c.name << ", " << (mode == ProgramMode::Eager ? "eager" : "compiled") << ")";
    std::printf("  %s %s: rel err %.3g (tol %.0e, |ref| %.3g)\n", c.name.c_str(), name.c_str(), err, tol_out, norm);
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

std::vector<CaseParam> params() {
  std::vector<CaseParam> v;
  for (size_t i = 0; i < cases().size(); ++i) {
    v.push_back({i, ProgramMode::Compiled});
    if (!fused_op(cases()[i])) v.push_back({i, ProgramMode::Eager});
  }
  return v;
}

std::string param_name(const ::testing::TestParamInfo<CaseParam>& info) {
  std::string s = cases()[info.param.index].name + (info.param.mode == ProgramMode::Eager ? "_eager" : "_compiled");
  for (auto& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s + "_" + std::to_string(info.param.index);
}

INSTANTIATE_TEST_SUITE_P(AllVariants, KernelVsInterpreter, ::testing::ValuesIn(params()), param_name);

// NVRTC for many kernels at once, into the cache (cache_dir()).
void compile_parallel(const std::vector<KernelSource>& all, int sm) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> th;
  const unsigned n = std::max(2u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i)
    th.emplace_back([&] {
      for (size_t j; (j = next++) < all.size();) compile(all[j], sm, cache_dir());
    });
  for (auto& t : th) t.join();
}

// KILN_PRECOMPILE_ONLY=<sm> (no GPU needed): fills the NVRTC cache (cache_dir(),
// under $TMPDIR) with the kernels of the cases whose names contain one of the
// comma-separated KILN_PRECOMPILE_MATCH words (all when unset), so a GPU
// machine given that folder as $TMPDIR spends no time in NVRTC. The
// AttentionBench test does the same for its kernels.
TEST(KernelCache, Precompile) {
  const char* env = std::getenv("KILN_PRECOMPILE_ONLY");
  if (!env) GTEST_SKIP() << "KILN_PRECOMPILE_ONLY=<sm> fills the kernel cache";
  const int sm = std::atoi(env);
  std::vector<std::string> words;
  if (const char* m = std::getenv("KILN_PRECOMPILE_MATCH"))
    for (std::string s = m; !s.empty();) {
      const size_t c = s.find(',');
      words.push_back(s.substr(0, c));
      s = c == std::string::npos ? "" : s.substr(c + 1);
    }
  std::map<std::pair<uint64_t, std::string>, KernelSource> all;
  for (const CaseParam& p : params()) {
    const OpCase& c = cases()[p.index];
    bool match = words.empty();
    for (const auto& w : words) match |= c.name.find(w) != std::string::npos;
    if (!match) continue;
    const Lowered l = lower(c.g, c.g.nodes()[0], {c.bucket}, Target{sm, c.weight_layout}, p.mode);
    all[{l.kernel.hash, l.kernel.entry}] = l.kernel;
  }
  std::vector<KernelSource> v;
  std::set<uint64_t> seen;
  for (auto& [k, s] : all)
    if (seen.insert(s.hash).second) v.push_back(s);
  compile_parallel(v, sm);
  std::printf("precompiled %zu kernel sources for sm_%d into %s\n", v.size(), sm, cache_dir().c_str());
}

// Sampling semantics of lm_head_sample (plan-abi.md): top_k = 1 and a tiny
// top_p are greedy; top-k draws stay in the top k; the draw depends only on
// (seed, step); the completion counter is reset after every launch.
TEST(LmHeadSample, SamplingSemantics) {
  SKIP_WITHOUT_GPU();
  const OpCase c = testcases::lm_head_case(DType::Q8_0, 1);
  const Data d = make_data(c, 1, 42);
  const auto ref = run_ref(c, d);
  const auto& logits = ref.at("logits").f32;
  const int greedy = ref.at("token").i32[0];
  std::vector<int> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[size_t(a)] > logits[size_t(b)]; });
  auto sample = [&](float temp, int top_k, float top_p, uint32_t step) {
    Step st{};
    st.n_tokens = 1;
    st.temperature = temp;
    st.top_k = top_k;
    st.top_p = top_p;
    st.seed_lo = 1234;
    st.seed_hi = 5;
    st.step = step;
    const GpuRun r = run_gpu(c, ProgramMode::Compiled, d, 1, st);
    EXPECT_EQ(r.step_after.sample_done, 0u);
    EXPECT_EQ(r.step_after.greedy_key, 0ull);
    EXPECT_EQ(r.step_after.out_token, r.i32.at("token")[0]);
    EXPECT_EQ(r.i32.at("__tokens0")[0], r.i32.at("token")[0]);
    return r.i32.at("token")[0];
  };
  EXPECT_EQ(sample(0.f, 0, 1.f, 0), greedy);
  EXPECT_EQ(sample(1.f, 1, 1.f, 3), greedy);
  EXPECT_EQ(sample(1.f, 0, 1e-7f, 4), greedy);
  const std::set<int> top5(order.begin(), order.begin() + 5);
  std::set<int> seen;
  for (uint32_t s = 0; s < 40; ++s) {
    const int t = sample(1e4f, 5, 1.f, s);  // near-uniform over the top 5
    EXPECT_TRUE(top5.count(t)) << "token " << t << " outside the top 5";
    seen.insert(t);
    EXPECT_EQ(sample(1e4f, 5, 1.f, s), t) << "same seed and step, same token";
  }
  EXPECT_GE(seen.size(), 3u) << "40 near-uniform draws over 5 tokens";
  std::set<int> wide;
  for (uint32_t s = 0; s < 40; ++s) wide.insert(sample(1e6f, 0, 1.f, s));
  EXPECT_GE(wide.size(), 20u) << "no top-k: draws spread over the vocabulary";
}

// Median of `reps` single launches in microseconds (CUDA events around each),
// after 3 warm-up launches; `before` (optional) runs before every launch,
// warm-ups included, outside the events (a cache flush, a counter reset).
double median_launch_us(const std::function<void()>& launch, int reps, const std::function<void()>& before = {}) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 3; ++i) {  // warm-up, from the same state as the timed launches
    if (before) before();
    launch();
  }
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    if (before) before();
    cudaEventRecord(e0);
    launch();
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms * 1000.f);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(t.begin(), t.end());
  return double(t[t.size() / 2]);
}

// Decode GEMV throughput (bucket 1, compiled), printed as JSON lines; no
// assertion on speed. Runs only with KILN_BENCH=1. Each variant streams its
// weights from a ring of copies of >= 256 MiB in all (more than the L2), so
// back-to-back launches read HBM as a decode step does. Variants: "f32" (the
// f32-activation GEMV), "xq" (int8 activations, x_q8) in GGUF blocks and
// "xq_planes" (int8 activations, planes layout).
TEST(GemvBench, Throughput) {
  SKIP_WITHOUT_GPU();
  if (!std::getenv("KILN_BENCH")) GTEST_SKIP() << "set KILN_BENCH=1 to run the GEMV benchmark";
  using ir::OpKind;
  struct Shape {
    int64_t K, N;
    OpKind op = OpKind::MatMul;
  };
  const char* only = std::getenv("KILN_BENCH_GEMV_DTYPE");  // e.g. "f16": that weight dtype alone
  for (DType wt : {DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::F16})
    for (Shape sh : {Shape{4096, 4096}, Shape{4096, 14336}, Shape{14336, 4096}, Shape{576, 1536},
                     Shape{2048, 8192}, Shape{4096, 128256, OpKind::RmsMatMul},
                     Shape{4096, 6144, OpKind::RmsMatMul}, Shape{4096, 14336, OpKind::RmsMatMulSwiGlu},
                     Shape{14336, 4096, OpKind::MatMulAdd}, Shape{2048, 2048}, Shape{2048, 3072, OpKind::RmsMatMul},
                     Shape{2048, 8192, OpKind::RmsMatMulSwiGlu}, Shape{8192, 2048, OpKind::MatMulAdd},
                     Shape{2048, 128256, OpKind::RmsMatMul}}) {
      if (only && testcases::dn(wt) != only) continue;
      if (sh.K % ir::dtype_info(wt).block_elems) continue;  // rows must hold whole blocks
      const OpKind op = sh.op;
      if (op != OpKind::MatMul && wt != DType::Q4_K && wt != DType::Q8_0 && wt != DType::F16 && wt != DType::Q6_K &&
          wt != DType::Q4_0)
        continue;
      // variants: f32 activations; int8 activations in GGUF blocks, in planes;
      // lowered as for sm_89 (the register GEMVs instead of sm_90's bulk-copy
      // one; the kernel still runs on this GPU): int8 activations in planes,
      // or f32 activations on f16 weights
      const bool q8 = ir::act_q8_weight(wt);
      for (int variant = 0; variant < 4; ++variant) {
        if (variant > 0 && !q8 && (variant != 3 || wt != DType::F16)) continue;
        testcases::OpCase c = testcases::matmul_case(op, wt, 1, DType::F32, sh.K, sh.N);
        if (variant > 0 && q8) c.g.nodes()[0].attrs["x_q8"] = int64_t{1};
        const ir::Graph& g = c.g;
        const Target target{variant == 3 ? std::min(compile_sm(), 89) : compile_sm(),
                            variant >= 2 ? std::string("planes") : std::string("ggml")};
        const Lowered l = lower(g, g.nodes()[0], {1}, target, ProgramMode::Compiled);
        CUfunction fn = load(l);
        const int64_t wrows = op == OpKind::RmsMatMulSwiGlu ? 2 * sh.N : sh.N;
        const size_t wbytes = static_cast<size_t>(ir::row_bytes(wt, sh.K)) * static_cast<size_t>(wrows);
        const size_t copies = std::max<size_t>(1, (size_t{256} << 20) / wbytes + 1);
        DevBuf dw(wbytes * copies), dx(static_cast<size_t>(sh.K) * 4), dy(static_cast<size_t>(sh.N) * 4), ds(64),
            dg(static_cast<size_t>(sh.K) * 4), dr(static_cast<size_t>(sh.N) * 4);
        {
          std::vector<uint8_t> wb;
          ir::random_blocks(wt, sh.K * wrows, 5, wb);
          for (size_t i = 0; i < copies; ++i)
            cudaMemcpy(static_cast<uint8_t*>(dw.p) + i * wbytes, wb.data(), wbytes, cudaMemcpyHostToDevice);
          std::vector<float> xv(static_cast<size_t>(sh.K));
          ir::SplitMix64 rng(1);
          for (float& v : xv) v = rng.uniform() - 0.5f;
          dx.upload(xv.data(), dx.n);
          dg.upload(xv.data(), dg.n);
        }
        cudaMemset(dr.p, 0, dr.n);
        Step st{};
        st.n_tokens = 1;
        ds.upload(&st, sizeof st);
        std::vector<std::vector<void*>> ptrs(copies);
        for (size_t ci = 0; ci < copies; ++ci)
          for (const Param& p : l.params) {
            const ir::ValueId id = p.kind == ParamKind::Input ? g.nodes()[0].inputs[static_cast<size_t>(p.index)] : -1;
            const std::string vn = id >= 0 ? g.value(id).name : "";
            if (p.kind == ParamKind::Step) ptrs[ci].push_back(ds.p);
            else if (p.kind == ParamKind::Output) ptrs[ci].push_back(dy.p);
            else if (vn == "x") ptrs[ci].push_back(dx.p);
            else if (vn == "gain") ptrs[ci].push_back(dg.p);
            else if (vn == "r") ptrs[ci].push_back(dr.p);
            else ptrs[ci].push_back(static_cast<uint8_t*>(dw.p) + ci * wbytes);
          }
        std::vector<std::vector<void*>> args(copies);
        for (size_t ci = 0; ci < copies; ++ci)
          for (auto& p : ptrs[ci]) args[ci].push_back(&p);
        size_t next = 0;
        auto launch = [&] {
          driver().launchKernel(fn, l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1], l.block[2], l.smem,
                                nullptr, args[next].data(), nullptr);
          next = (next + 1) % copies;
        };
        for (int i = 0; i < 5; ++i) launch();
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0);
        cudaEventCreate(&e1);
        const int iters = 100;
        cudaEventRecord(e0);
        for (int i = 0; i < iters; ++i) launch();
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
        const double us = 1000.0 * ms / iters;
        static const char* kVariant[] = {"f32", "xq", "xq_planes", "xq_planes_regs"};
        const char* vname = q8 ? kVariant[variant] : variant == 3 ? "f32_regs" : "f32";
        std::printf("{\"bench\": \"gemv\", \"op\": \"%s\", \"variant\": \"%s\", \"kernel\": \"%s\", \"dtype\": \"%s\", "
                    "\"K\": %lld, \"N\": %lld, \"us\": %.2f, \"GBps\": %.0f}\n",
                    c.name.substr(0, c.name.find('/')).c_str(), vname, l.kernel.entry.c_str(),
                    testcases::dn(wt).c_str(), static_cast<long long>(sh.K), static_cast<long long>(sh.N), us,
                    wbytes / us / 1e3);
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
      }
    }
}

// ---- split-K decode attention: block shapes, correctness and speed ------------

// A block shape of the split kernel (kernels/attention.cuh k_attention_split):
// warps, K/V loads per lane per tile, prefetch of the next tile.
struct SplitCfg {
  int warps, loads, prefetch;
  std::string name() const {
    return "w" + std::to_string(warps) + "_u" + std::to_string(loads) + "_pf" + std::to_string(prefetch);
  }
};
const std::vector<SplitCfg>& split_cfgs() {
  static const std::vector<SplitCfg> v = {{4, 2, 0}, {4, 4, 0}, {8, 2, 0}, {8, 4, 0},
                                          {4, 2, 1}, {4, 4, 1}, {8, 2, 1}, {8, 4, 1}};
  return v;
}
// The split kernel with runtime shapes for one (cache dtype, head_dim, group, block shape).
// A kernel source written by a test (entry and text), compiled as codegen's are.
KernelSource test_source(std::string entry, std::string source) {
  KernelSource k;
  k.entry = std::move(entry);
  k.source = std::move(source);
  k.options = {"-std=c++17"};
  k.hash = std::hash<std::string>{}(k.source);
  return k;
}
KernelSource split_source(DType dt, int64_t hd, int64_t G, const SplitCfg& cfg) {
  return test_source("test_att_split", "#include \"attention.cuh\"\nextern \"C\" __global__ void __launch_bounds__(" +
             std::to_string(32 * cfg.warps) +
             ") test_att_split(const float* q, const void* kc, const void* vc, float* y, float* sc, "
             "const KilnStep* st, int C, int nh, int nkv, int S, float scale) {\n  k_attention_split<" +
             std::string(dt == DType::F32 ? "DT_F32" : dt == DType::F16 ? "DT_F16" : "DT_BF16") + ", " +
             std::to_string(hd) + ", " + std::to_string(G) + ", " + std::to_string(cfg.warps) + ", " +
             std::to_string(cfg.loads) + ", " + std::to_string(cfg.prefetch) +
             ">(q, kc, vc, y, sc, st, C, nh, nkv, S, scale);\n}\n");
}
// The tensor-core split kernel (f16 cache) with runtime shapes, warps a block.
KernelSource split_tc_source(int64_t hd, int64_t G, int warps) {
  return test_source("test_att_split_tc", "#include \"attention.cuh\"\nextern \"C\" __global__ void __launch_bounds__(" +
             std::to_string(32 * warps) +
             ") test_att_split_tc(const float* q, const u16* kc, const u16* vc, float* y, float* sc, "
             "const KilnStep* st, int C, int nh, int nkv, int S, float scale) {\n  k_attention_split_tc<" +
             std::to_string(hd) + ", " + std::to_string(G) + ", " + std::to_string(warps) +
             ">(q, kc, vc, y, sc, st, C, nh, nkv, S, scale);\n}\n");
}
const int kTcWarps[] = {4, 8};
// Every split-kernel block shape the benchmark times and the block-shape test
// checks, for one cache dtype and geometry: the CUDA-core kernel's
// (split_cfgs) and, for f16 caches of its head sizes, the tensor-core one's.
struct SplitKernel {
  std::string name;  // "w<warps>_u.._pf.." or "tc_w<warps>"
  KernelSource src;
  int warps;
  bool tc;
};
std::vector<SplitKernel> split_kernels(DType dt, int64_t hd, int64_t G) {
  std::vector<SplitKernel> v;
  for (const SplitCfg& cfg : split_cfgs()) v.push_back({cfg.name(), split_source(dt, hd, G, cfg), cfg.warps, false});
  if (dt == DType::F16 && (hd == 64 || hd == 128))
    for (int w : kTcWarps) v.push_back({"tc_w" + std::to_string(w), split_tc_source(hd, G, w), w, true});
  return v;
}
// A kernel that reads n 16-byte words (grid-stride, no other work): the
// plain read the benchmarks measure against, and the L2 flush before a timed launch.
KernelSource plain_read_source() {
  return test_source(
      "flush_read",
      "extern \"C\" __global__ void flush_read(const uint4* p, unsigned long long n, unsigned* sink) {\n"
      "  unsigned a = 0;\n"
      "  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;\n"
      "       i += (unsigned long long)gridDim.x * blockDim.x) { const uint4 v = p[i]; a ^= v.x ^ v.y ^ v.z ^ v.w; }\n"
      "  if (a == 0x9e3779b9u) sink[0] = a;\n}\n");
}
CUfunction load_source(const KernelSource& k) {
  Lowered l;
  l.kernel = k;
  return load(l);
}
// Splits for a target block count (the rule of codegen attention_splits, with the target as a parameter).
int splits_for(int64_t target, int64_t nkv, int64_t rows, int64_t C) {
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>({(target + nkv * rows - 1) / (nkv * rows), launch::kAttSplitMaxSplits,
                            (C + launch::kAttSplitMinKeys - 1) / launch::kAttSplitMinKeys})));
}
// The cases the block shapes are checked on.
std::vector<OpCase> split_cfg_cases() {
  return {testcases::attention_case(DType::F16, 1, 8192, 32, 8, 128, true),
          testcases::attention_case(DType::BF16, 3, 512, 9, 3, 64, true),
          testcases::attention_case(DType::F32, 1, 4096, 4, 2, 256, true)};
}

// Every block shape the benchmark times computes the same attention as the
// interpreter (tolerance 1e-4 as for the plan's variant, see tolerance()), at
// two split counts each, launched twice on one scratch (the counters must be
// back at zero for the second launch to merge).
TEST(AttentionSplitCfgs, MatchInterpreter) {
  SKIP_WITHOUT_GPU();
  for (const OpCase& c : split_cfg_cases()) {
    const ir::Node& n = c.g.nodes()[0];
    const int64_t nh = n.attr_int("n_heads"), nkv = n.attr_int("n_kv_heads"), hd = n.attr_int("head_dim");
    const int64_t C = ir::resolve_dim(c.g, c.g.value(n.inputs[1]).shape[0], {c.bucket});
    const int nt = static_cast<int>(c.bucket);
    const Data d = make_data(c, nt, 0xc0ffee);
    const auto ref = run_ref(c, d).at("y").f32;
    const DType dt = c.dtype;
    auto kb = encode(dt, d.raw.at("k")), vb = encode(dt, d.raw.at("v"));
    DevBuf q(d.raw.at("q").size() * 4), kc(kb.size()), vc(vb.size()), y(ref.size() * 4), ds(sizeof(Step));
    DevBuf sc(size_t(codegen::attention_split_scratch_floats(nh, nkv, hd, C)) * 4);
    q.upload(d.raw.at("q").data(), q.n);
    kc.upload(kb.data(), kb.size());
    vc.upload(vb.data(), vb.size());
    cudaMemset(sc.p, 0, sc.n);
    Step st{};
    st.n_tokens = nt;
    st.pos0 = pos0_of(c);
    ds.upload(&st, sizeof st);
    for (const SplitKernel& sk : split_kernels(dt, hd, nh / nkv)) {
      CUfunction fn = load_source(sk.src);
      const std::string& cfg_name = sk.name;
      const int warps = sk.warps;
      for (int64_t target : {132, 528}) {
        SCOPED_TRACE(c.name + " " + cfg_name + " target " + std::to_string(target));
        const int S = splits_for(target, nkv, nt, C);
        void *pq = q.p, *pk = kc.p, *pv = vc.p, *py = y.p, *psc = sc.p, *pst = ds.p;
        int iC = int(C), inh = int(nh), inkv = int(nkv), iS = S;
        float scale = float(n.attr_float("scale"));
        void* args[] = {&pq, &pk, &pv, &py, &psc, &pst, &iC, &inh, &inkv, &iS, &scale};
        for (int rep = 0; rep < 2; ++rep) {
          cudaMemset(y.p, 0xFF, y.n);
          ASSERT_EQ(driver().launchKernel(fn, uint32_t(nkv), uint32_t(S), uint32_t(nt), uint32_t(32 * warps), 1, 1,
                                          0, nullptr, args, nullptr),
                    CUDA_SUCCESS);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          std::vector<float> got(ref.size());
          cudaMemcpy(got.data(), y.p, y.n, cudaMemcpyDeviceToHost);
          double norm = 0;
          const double err = rel_err(got, ref, &norm);
          EXPECT_LE(err, 1e-4) << "launch " << rep;
          if (rep == 1) std::printf("  %s %s S=%d: rel err %.3g\n", c.name.c_str(), cfg_name.c_str(), S, err);
        }
      }
    }
  }
}

// The phases of sm_90's bulk-copy GEMV (gemv.cuh mm_gemv_bulk) at the
// 8B's three bulk shapes (Q4_K, planes, one token), in the plan's geometry:
// microseconds per launch (back to back from a 512 MiB ring of weight copies,
// so every launch reads HBM; median of 5 x 40 launches), with each ablation
// (KILN_BULK_ABLATE: 1 no prologue, 2 no unit arithmetic, 3 neither), and a
// timeline of one launch: %globaltimer in thread 0 of every block at each
// KILN_BULK_MARK (1 x quantised, 2 first item landed, 3 done), microseconds
// after the earliest block's start, as [first, median, last] block. Also a
// plain read of the same bytes (the ceiling). JSON lines; KILN_BENCH=1
// (KILN_PRECOMPILE_ONLY=<sm> fills the kernel cache). The ablated kernels'
// results are wrong; the plan kernel's results must equal the marked one's.
TEST(GemvBench, BulkPhases) {
  const char* pre = std::getenv("KILN_PRECOMPILE_ONLY");
  if (!pre) SKIP_WITHOUT_GPU();
  if (!std::getenv("KILN_BENCH") && !pre) GTEST_SKIP() << "set KILN_BENCH=1 to run the bulk GEMV phase benchmark";
  const int sm = pre ? std::atoi(pre) : compile_sm();
  if (sm != 90) GTEST_SKIP() << "the bulk-copy GEMV is sm_90's (this device compiles for sm_" << sm << ")";
  using ir::OpKind;
  struct Shape {
    const char* name;
    OpKind op;
    int64_t K, N;
  };
  const Shape shapes[] = {{"gate_up", OpKind::RmsMatMulSwiGlu, 4096, 14336},
                          {"down", OpKind::MatMulAdd, 14336, 4096},
                          {"o", OpKind::MatMulAdd, 4096, 4096}};
  // variant v: ablation v & 3, marks when v == 4
  auto variant = [](const Lowered& base, int v) {
    Lowered l = base;
    std::string head;
    if (v < 4) {
      head = "#define KILN_BULK_ABLATE " + std::to_string(v) + "\n";
    } else {
      head = "__device__ unsigned long long kiln_bulk_marks[4 * 1024];\n"
             "#define KILN_BULK_MARK(i) if (threadIdx.x == 0 && blockIdx.x < 1024) { unsigned long long t_; "
             "asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(t_)); kiln_bulk_marks[blockIdx.x * 4 + (i)] = t_; }\n";
    }
    l.kernel.source = head + base.kernel.source +
                      (v == 4 ? "extern \"C\" __global__ void kiln_bulk_marks_read(unsigned long long* o) {\n"
                                "  for (int i = threadIdx.x; i < 4 * 1024; i += blockDim.x) o[i] = kiln_bulk_marks[i];\n}\n"
                              : "");
    l.kernel.hash = std::hash<std::string>{}(l.kernel.source);
    return l;
  };
  const KernelSource rd = plain_read_source();
  std::vector<Lowered> bases;
  for (const Shape& sh : shapes) {
    testcases::OpCase c = testcases::matmul_case(sh.op, DType::Q4_K, 1, DType::F32, sh.K, sh.N);
    c.g.nodes()[0].attrs["x_q8"] = int64_t{1};
    bases.push_back(lower(c.g, c.g.nodes()[0], {1}, Target{sm, "planes"}, ProgramMode::Compiled));
    ASSERT_NE(bases.back().kernel.source.find("mm_gemv_bulk<"), std::string::npos) << sh.name << ": not bulk";
  }
  if (pre) {
    std::vector<KernelSource> all = {rd};
    for (const Lowered& b : bases)
      for (int v = 0; v < 5; ++v) all.push_back(variant(b, v).kernel);
    compile_parallel(all, sm);
    std::printf("precompiled %zu kernel sources for sm_%d into %s\n", all.size(), sm, cache_dir().c_str());
    return;
  }
  const size_t ring = size_t{512} << 20;
  DevBuf dw(ring), dx(14336 * 4), dg(14336 * 4), dr(14336 * 4), dy(14336 * 4), ds(64), sink(16),
      dmarks(4 * 1024 * 8);
  {
    std::vector<uint8_t> wb;
    ir::random_blocks(DType::Q4_K, static_cast<int64_t>(ring / 144 * 256), 7, wb);
    dw.upload(wb.data(), wb.size());
    std::vector<float> xv(14336);
    ir::SplitMix64 rng(1);
    for (float& v : xv) v = static_cast<float>(rng.uniform()) - 0.5f;
    dx.upload(xv.data(), dx.n);
    dg.upload(xv.data(), dg.n);
    dr.upload(xv.data(), dr.n);
    Step st{};
    st.n_tokens = 1;
    ds.upload(&st, sizeof st);
  }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  auto per_launch_us = [&](const std::function<void(size_t)>& launch, size_t copies) {
    for (size_t i = 0; i < 5; ++i) launch(i % copies);
    std::vector<float> t;
    for (int rep = 0; rep < 5; ++rep) {
      cudaEventRecord(e0);
      for (size_t i = 0; i < 40; ++i) launch(i % copies);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      t.push_back(1000.f * ms / 40);
    }
    std::sort(t.begin(), t.end());
    return double(t[t.size() / 2]);
  };
  for (size_t si = 0; si < bases.size(); ++si) {
    const Shape& sh = shapes[si];
    const Lowered& base = bases[si];
    const int64_t wrows = sh.op == OpKind::RmsMatMulSwiGlu ? 2 * sh.N : sh.N;
    const size_t wbytes = static_cast<size_t>(ir::row_bytes(DType::Q4_K, sh.K) * wrows);
    const size_t copies = ring / wbytes;
    {  // the plain read of as many bytes
      Lowered l;
      l.kernel = rd;
      CUfunction f = load(l);
      const double us = per_launch_us(
          [&](size_t ci) {
            const void* p = static_cast<uint8_t*>(dw.p) + ci * wbytes;
            unsigned long long n = wbytes / 16;
            void* ps = sink.p;
            void* a[] = {&p, &n, &ps};
            driver().launchKernel(f, 132 * 4, 1, 1, 512, 1, 1, 0, nullptr, a, nullptr);
          },
          copies);
      std::printf("{\"bench\": \"bulk_phases\", \"shape\": \"%s\", \"variant\": \"plain_read\", \"us\": %.2f, "
                  "\"GBps\": %.0f}\n", sh.name, us, wbytes / us / 1e3);
    }
    std::vector<float> y_plain;
    for (int v = 0; v < 5; ++v) {
      const Lowered l = variant(base, v);
      CUfunction f = load(l);
      std::vector<std::vector<void*>> ptrs(copies);
      for (size_t ci = 0; ci < copies; ++ci)
        for (const Param& p : l.params) {
          if (p.kind == ParamKind::Step) { ptrs[ci].push_back(ds.p); continue; }
          if (p.kind == ParamKind::Output) { ptrs[ci].push_back(dy.p); continue; }
          ASSERT_EQ(p.kind, ParamKind::Input) << "unexpected scalar parameter";
          // matmul_case inputs: x, [gain,] w, [r]
          const int nin = static_cast<int>(p.index);
          const bool rms = sh.op == OpKind::RmsMatMulSwiGlu;
          if (nin == 0) ptrs[ci].push_back(dx.p);
          else if (rms && nin == 1) ptrs[ci].push_back(dg.p);
          else if (nin == (rms ? 2 : 1)) ptrs[ci].push_back(static_cast<uint8_t*>(dw.p) + ci * wbytes);
          else ptrs[ci].push_back(dr.p);
        }
      std::vector<std::vector<void*>> args(copies);
      for (size_t ci = 0; ci < copies; ++ci)
        for (auto& p : ptrs[ci]) args[ci].push_back(&p);
      auto launch = [&](size_t ci) {
        driver().launchKernel(f, l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1], l.block[2], l.smem,
                              nullptr, args[ci].data(), nullptr);
      };
      const double us = per_launch_us(launch, copies);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << sh.name << " variant " << v;
      static const char* kName[] = {"plan", "no_prologue", "no_arithmetic", "neither", "marked"};
      std::printf("{\"bench\": \"bulk_phases\", \"shape\": \"%s\", \"kernel\": \"%s\", \"grid\": %u, \"block\": %u, "
                  "\"smem\": %u, \"variant\": \"%s\", \"us\": %.2f, \"GBps\": %.0f}\n",
                  sh.name, l.kernel.entry.c_str(), l.grid[0], l.block[0], l.smem, kName[v], us, wbytes / us / 1e3);
      if (v != 0 && v != 4) continue;
      launch(copies / 2);  // one more launch, from HBM (the ring's middle copy was read 40 launches ago)
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<float> yv(static_cast<size_t>(sh.N));
      cudaMemcpy(yv.data(), dy.p, yv.size() * 4, cudaMemcpyDeviceToHost);
      if (v == 0) {
        y_plain = yv;
        continue;
      }
      EXPECT_EQ(std::memcmp(y_plain.data(), yv.data(), yv.size() * 4), 0) << sh.name << ": the marks changed results";
      Lowered lr = l;
      lr.kernel.entry = "kiln_bulk_marks_read";
      CUfunction fr = load(lr);
      void* pm = dmarks.p;
      void* a[] = {&pm};
      ASSERT_EQ(driver().launchKernel(fr, 1, 1, 1, 256, 1, 1, 0, nullptr, a, nullptr), CUDA_SUCCESS);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const unsigned nb = std::min<unsigned>(l.grid[0], 1024);
      std::vector<uint64_t> m(4 * 1024);
      cudaMemcpy(m.data(), dmarks.p, m.size() * 8, cudaMemcpyDeviceToHost);
      uint64_t t0 = ~0ull;
      for (unsigned b = 0; b < nb; ++b) t0 = std::min(t0, m[b * 4]);
      std::string line = std::string("{\"bench\": \"bulk_phases\", \"shape\": \"") + sh.name + "\", \"timeline_us\": {";
      static const char* kMark[] = {"start", "x_quantised", "first_item", "done"};
      for (int k = 0; k < 4; ++k) {
        std::vector<double> t;
        for (unsigned b = 0; b < nb; ++b) t.push_back((double)(m[b * 4 + k] - t0) / 1000.0);
        std::sort(t.begin(), t.end());
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s\"%s\": [%.2f, %.2f, %.2f]", k ? ", " : "", kMark[k], t.front(),
                      t[t.size() / 2], t.back());
        line += buf;
      }
      std::printf("%s}}\n", line.c_str());
    }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}

// The cost of a grid-wide barrier on this GPU: the step boundary a persistent
// decode kernel would pay where the compiled program now ends one kernel and
// starts the next (PDL in a graph: ~0.75 us per empty kernel on the H200,
// docs/perf.md). One resident grid of 132 * k blocks passes `steps` barriers
// (a counter every block's thread 0 increments after a release fence, then
// polls with acquire loads until it reaches step * blocks); each block checks
// that its neighbour published the step before the barrier let it through, so
// a broken barrier fails the test. JSON lines; KILN_BENCH=1.
TEST(LaunchBench, GridBarrier) {
  SKIP_WITHOUT_GPU();
  if (!std::getenv("KILN_BENCH")) GTEST_SKIP() << "set KILN_BENCH=1 to run the grid barrier benchmark";
  const KernelSource src = test_source(
      "grid_barrier_loop",
      "extern \"C\" __global__ void grid_barrier_loop(unsigned* ctr, int steps, unsigned* seen, unsigned* bad) {\n"
      "  const unsigned nb = gridDim.x;\n"
      "  for (unsigned s = 1; s <= (unsigned)steps; ++s) {\n"
      "    if (threadIdx.x == 0) {\n"
      "      *(volatile unsigned*)&seen[blockIdx.x] = s;\n"
      "      __threadfence();\n"
      "      atomicAdd(ctr, 1u);\n"
      "      unsigned v;\n"
      "      do { asm volatile(\"ld.acquire.gpu.global.u32 %0, [%1];\" : \"=r\"(v) : \"l\"(ctr) : \"memory\"); }\n"
      "      while (v < s * nb);\n"
      "      if (*(volatile unsigned*)&seen[(blockIdx.x + 1) % nb] < s) atomicAdd(bad, 1u);\n"
      "    }\n"
      "    __syncthreads();\n"
      "  }\n}\n");
  CUfunction fn = load_source(src);
  constexpr int kSteps = 2000;
  for (unsigned per_sm : {1u, 2u, 4u}) {
    const unsigned blocks = 132 * per_sm;
    DevBuf ctr(4), seen(blocks * 4), bad(4);
    cudaMemset(bad.p, 0, 4);
    void *pc = ctr.p, *ps = seen.p, *pb = bad.p;
    int steps = kSteps;
    void* args[] = {&pc, &steps, &ps, &pb};
    const double us = median_launch_us(  // every launch (warm-ups too) from a zero counter
        [&] { ASSERT_EQ(driver().launchKernel(fn, blocks, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr), CUDA_SUCCESS); },
        5, [&] {
          cudaMemset(ctr.p, 0, 4);
          cudaMemset(seen.p, 0, blocks * 4);
        });
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    unsigned nbad = 0;
    cudaMemcpy(&nbad, bad.p, 4, cudaMemcpyDeviceToHost);
    EXPECT_EQ(nbad, 0u) << "a block passed a barrier before its neighbour reached it";
    std::printf("{\"bench\": \"grid_barrier\", \"blocks\": %u, \"us_per_barrier\": %.3f}\n", blocks, us / kSteps);
  }
}

// Decode attention (bucket 1, pos0 = C - 1: the whole cache is attended), old
// kernel (one block per (head, token)) against the split-K kernel, at the
// geometries of Llama-3 8B (32 heads, 8 KV heads, head_dim 128) and SmolLM2
// (9, 3, 64), contexts 512, 4096, 8192. Before every timed launch a kernel
// reads 256 MiB (L2 holds clean lines of other data, as after a decode step's
// weight reads, so the KV cache comes from HBM); each launch is timed alone
// with CUDA events (launch overhead included) and the median of kReps is
// reported, after warm-up; "hot" rows skip the flush. GBps = the KV cache
// bytes read (2 * C * n_kv_heads * head_dim * sizeof) / time. Besides the
// plan's variant (codegen's choice, config "plan"), a sweep of block shapes
// and split counts (targets of blocks). JSON lines; KILN_BENCH=1.
TEST(AttentionBench, DecodeSplitVsOld) {
  if (!std::getenv("KILN_PRECOMPILE_ONLY")) SKIP_WITHOUT_GPU();
  if (!std::getenv("KILN_BENCH") && !std::getenv("KILN_PRECOMPILE_ONLY"))
    GTEST_SKIP() << "set KILN_BENCH=1 to run the attention benchmark";
  struct Geo {
    const char* name;
    int64_t nh, nkv, hd;
  };
  const int sm = std::getenv("KILN_PRECOMPILE_ONLY") ? std::atoi(std::getenv("KILN_PRECOMPILE_ONLY")) : compile_sm();
  const Geo geos[] = {{"llama3-8b", 32, 8, 128}, {"smollm2", 9, 3, 64}};
  const KernelSource flush_src = plain_read_source();
  {  // NVRTC for every kernel first, in parallel (cached), so the timing loop only loads modules
    std::vector<KernelSource> all = {flush_src};
    for (const Geo& geo : geos)
      for (DType dt : {DType::F16, DType::F32})
        for (int64_t C : {512, 4096, 8192})
          for (bool split : {false, true}) {
            const OpCase c = testcases::attention_case(dt, 1, C, geo.nh, geo.nkv, geo.hd, split);
            all.push_back(lower(c.g, c.g.nodes()[0], {1}, Target{sm}, ProgramMode::Compiled).kernel);
          }
    for (const Geo& geo : geos)
      for (const SplitKernel& sk : split_kernels(DType::F16, geo.hd, geo.nh / geo.nkv)) all.push_back(sk.src);
    for (const OpCase& c : split_cfg_cases()) {
      const ir::Node& n = c.g.nodes()[0];
      for (const SplitKernel& sk :
           split_kernels(c.dtype, n.attr_int("head_dim"), n.attr_int("n_heads") / n.attr_int("n_kv_heads")))
        all.push_back(sk.src);
    }
    compile_parallel(all, sm);
    if (std::getenv("KILN_PRECOMPILE_ONLY")) return;
  }
  constexpr int kReps = 25;
  const size_t flush_bytes = size_t(256) << 20;
  DevBuf flush(flush_bytes), sink(4);
  cudaMemset(flush.p, 0x5a, flush_bytes);
  CUfunction flush_fn = load_source(flush_src);
  void* fp = flush.p;
  unsigned long long fn16 = flush_bytes / 16;
  void* sp = sink.p;
  void* flush_args[] = {&fp, &fn16, &sp};
  auto flush_l2 = [&] { driver().launchKernel(flush_fn, 132 * 8, 1, 1, 256, 1, 1, 0, nullptr, flush_args, nullptr); };
  auto time_us = [&](const std::function<void()>& launch, bool cold) {
    return median_launch_us(launch, kReps, cold ? std::function<void()>(flush_l2) : std::function<void()>());
  };
  {  // the floor of this timing: an empty launch (the flush kernel over 0 bytes)
    unsigned long long zero = 0;
    void* empty_args[] = {&fp, &zero, &sp};
    const double us = time_us(
        [&] { driver().launchKernel(flush_fn, 1, 1, 1, 32, 1, 1, 0, nullptr, empty_args, nullptr); }, false);
    std::printf("{\"bench\": \"attention_decode\", \"kernel\": \"empty\", \"us\": %.2f}\n", us);
  }
  for (const Geo& geo : geos)
    for (DType dt : {DType::F16, DType::F32})
      for (int64_t C : {512, 4096, 8192}) {
        const int64_t W = geo.nkv * geo.hd, esz = dt == DType::F32 ? 4 : 2;
        const double kv_bytes = 2.0 * double(C) * double(W) * double(esz);
        DevBuf q(size_t(geo.nh * geo.hd) * 4), kc(size_t(C * W * esz)), vc(size_t(C * W * esz)),
            y(size_t(geo.nh * geo.hd) * 4), ds(sizeof(Step));
        DevBuf sc(size_t(codegen::attention_split_scratch_floats(geo.nh, geo.nkv, geo.hd, 8192)) * 4);
        cudaMemset(q.p, 0x3c, q.n);   // f32 ~0.0115
        cudaMemset(kc.p, 0x2e, kc.n);  // f16 0x2e2e ~0.1, f32 ~4e-11
        cudaMemset(vc.p, 0x30, vc.n);
        cudaMemset(sc.p, 0, sc.n);
        Step st{};
        st.n_tokens = 1;
        st.pos0 = static_cast<int>(C - 1);
        ds.upload(&st, sizeof st);
        auto report = [&](const std::string& kernel, const std::string& cfg, int splits, uint32_t blocks, double us) {
          std::printf("{\"bench\": \"attention_decode\", \"geometry\": \"%s\", \"kv_type\": \"%s\", \"context\": %lld, "
                      "\"kernel\": \"%s\", \"config\": \"%s\", \"splits\": %d, \"blocks\": %u, \"us\": %.2f, "
                      "\"GBps\": %.0f}\n",
                      geo.name, testcases::dn(dt).c_str(), static_cast<long long>(C), kernel.c_str(), cfg.c_str(),
                      splits, blocks, us, kv_bytes / us / 1e3);
        };
        for (bool split : {false, true}) {  // the plan's kernels: old (no scratch) and codegen's split choice
          const OpCase c = testcases::attention_case(dt, 1, C, geo.nh, geo.nkv, geo.hd, split);
          const ir::Node& n = c.g.nodes()[0];
          const Lowered l = lower(c.g, n, {1}, Target{sm}, ProgramMode::Compiled);
          CUfunction fn = load(l);
          std::vector<void*> ptr;
          for (const Param& p : l.params) {
            if (p.kind == ParamKind::Step) ptr.push_back(ds.p);
            else if (p.kind == ParamKind::Output) ptr.push_back(y.p);
            else if (p.index == 0) ptr.push_back(q.p);
            else if (p.index == 1) ptr.push_back(kc.p);
            else if (p.index == 2) ptr.push_back(vc.p);
            else ptr.push_back(sc.p);
          }
          std::vector<void*> args;
          for (auto& p : ptr) args.push_back(&p);
          auto launch = [&] {
            driver().launchKernel(fn, l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1], l.block[2], l.smem,
                                  nullptr, args.data(), nullptr);
          };
          for (bool cold : {true, false}) {
            const double us = time_us(launch, cold);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << l.kernel.entry;
            report(split ? "split" : "old", cold ? "plan" : "plan_hot", split ? int(l.grid[1]) : 0,
                   l.grid[0] * l.grid[1] * l.grid[2], us);
          }
        }
        if (dt != DType::F16) continue;
        for (const SplitKernel& sk : split_kernels(dt, geo.hd, geo.nh / geo.nkv)) {  // block shapes, split counts
          CUfunction fn = load_source(sk.src);
          for (int target : {132, 264, 528}) {
            const int S = splits_for(target, geo.nkv, 1, C);
            void *pq = q.p, *pk = kc.p, *pv = vc.p, *py = y.p, *psc = sc.p, *pst = ds.p;
            int iC = static_cast<int>(C), inh = static_cast<int>(geo.nh), inkv = static_cast<int>(geo.nkv), iS = S;
            float scale = 1.f / std::sqrt(float(geo.hd));
            void* args[] = {&pq, &pk, &pv, &py, &psc, &pst, &iC, &inh, &inkv, &iS, &scale};
            const double us = time_us(
                [&] {
                  driver().launchKernel(fn, uint32_t(geo.nkv), uint32_t(S), 1, uint32_t(32 * sk.warps), 1, 1, 0,
                                        nullptr, args, nullptr);
                },
                true);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            report(sk.tc ? "split_tc" : "split", (sk.tc ? sk.name.substr(3) : sk.name) + "_t" + std::to_string(target), S,
                   uint32_t(S * geo.nkv), us);
          }
        }
      }
}

// Prefill kernels, printed as JSON lines (median of 15 launches after 3 warm
// ones, CUDA events): flash attention over a 512-row chunk at several depths
// into the cache (TFLOP/s = 4 * head_dim * (attended keys summed over rows and
// heads) / time), and dequantisation of an 8B down-projection-sized weight to
// f16 (GB/s = bytes read + written / time). No assertion on speed; runs only
// with KILN_BENCH=1. Results are checked against the interpreter by the op
// cases above, not here.
TEST(PrefillBench, FlashAttentionAndDequant) {
  SKIP_WITHOUT_GPU();
  if (!std::getenv("KILN_BENCH")) GTEST_SKIP() << "set KILN_BENCH=1 to run the prefill kernel benchmark";
  const int sm = compile_sm();
  auto time_us = [](const std::function<void()>& launch) { return median_launch_us(launch, 15); };
  auto bind = [](const Lowered& l, const std::vector<void*>& inputs, void* out, void* step) {
    std::vector<void*> ptr;
    for (const Param& p : l.params) {
      if (p.kind == ParamKind::Step) ptr.push_back(step);
      else if (p.kind == ParamKind::Output) ptr.push_back(out);
      else ptr.push_back(inputs.at(p.index));
    }
    return ptr;
  };
  struct Geo {
    const char* name;
    int64_t nh, nkv, hd;
  };
  const int64_t T = 512, C = 4096;
  for (const Geo& geo : {Geo{"llama3-8b", 32, 8, 128}, Geo{"smollm2", 9, 3, 64}}) {
    const OpCase c = testcases::attention_case(DType::F16, T, C, geo.nh, geo.nkv, geo.hd, false);
    const Lowered l = lower(c.g, c.g.nodes()[0], {T, C}, Target{sm}, ProgramMode::Compiled);
    CUfunction fn = load(l);
    const int64_t W = geo.nkv * geo.hd;
    DevBuf q(size_t(T * geo.nh * geo.hd) * 4), kc(size_t(C * W) * 2), vc(size_t(C * W) * 2),
        y(size_t(T * geo.nh * geo.hd) * 4), pos(size_t(T) * 4), ds(sizeof(Step));
    cudaMemset(q.p, 0x3c, q.n);
    cudaMemset(kc.p, 0x2e, kc.n);
    cudaMemset(vc.p, 0x30, vc.n);
    cudaMemset(pos.p, 0, pos.n);
    std::vector<void*> ptr = bind(l, {q.p, kc.p, vc.p, pos.p}, y.p, ds.p);
    std::vector<void*> args;
    for (auto& p : ptr) args.push_back(&p);
    for (int pos0 : {0, 1536, 3584}) {
      Step st{};
      st.n_tokens = static_cast<int>(T);
      st.pos0 = pos0;
      ds.upload(&st, sizeof st);
      const double us = time_us([&] {
        driver().launchKernel(fn, l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1], l.block[2], l.smem,
                              nullptr, args.data(), nullptr);
      });
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << l.kernel.entry;
      double keys = 0;  // attended keys summed over the chunk's rows
      for (int64_t t = 0; t < T; ++t) keys += double(pos0 + t + 1);
      const double flops = 4.0 * double(geo.hd) * keys * double(geo.nh);
      std::printf("{\"bench\": \"flash_attention\", \"geometry\": \"%s\", \"rows\": %lld, \"pos0\": %d, \"us\": %.2f, "
                  "\"TFLOPs\": %.1f}\n",
                  geo.name, static_cast<long long>(T), pos0, us, flops / us / 1e6);
    }
  }
  const int64_t N = 4096, K = 14336;
  for (DType wt : {DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::BF16}) {
    ir::Graph g = testcases::base_graph(1);
    const DType h = wt == DType::BF16 ? DType::BF16 : DType::F16;
    auto w = g.add_weight("w", wt, {testcases::fx(N), testcases::fx(K)}, "w");
    auto yv = g.add_node(ir::OpKind::Dequant, {w}, {}, "y", h, {testcases::fx(N), testcases::fx(K)});
    g.mark_output(yv);
    const Lowered l = lower(g, g.nodes()[0], {1}, Target{sm}, ProgramMode::Compiled);
    CUfunction fn = load(l);
    const size_t wbytes = size_t(N * K) / ir::dtype_info(wt).block_elems * ir::dtype_info(wt).block_bytes;
    DevBuf wb(wbytes), y(size_t(N * K) * 2), ds(sizeof(Step));
    cudaMemset(wb.p, 0x11, wb.n);
    std::vector<void*> ptr = bind(l, {wb.p}, y.p, ds.p);
    std::vector<void*> args;
    for (auto& p : ptr) args.push_back(&p);
    const double us = time_us([&] {
      driver().launchKernel(fn, l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1], l.block[2], l.smem, nullptr,
                            args.data(), nullptr);
    });
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << l.kernel.entry;
    std::printf("{\"bench\": \"dequant\", \"type\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"us\": %.2f, \"GBps\": %.0f}\n",
                testcases::dn(wt).c_str(), static_cast<long long>(N), static_cast<long long>(K), us,
                double(wbytes + y.n) / us / 1e3);
  }
}

}  // namespace
}  // namespace kiln::codegen
