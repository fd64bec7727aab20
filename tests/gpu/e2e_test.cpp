// End-to-end on a GPU: compile a model to a plan, run it through the runtime
// (compiled = fused + CUDA graphs, eager = one kernel per op), and compare with
// the reference interpreter — logits by relative error, greedy tokens exactly.
// Skips with a visible message where there is no CUDA GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "compiler/compile/compile.h"
#include "compiler/tools/reference/logits_check.h"
#include "compiler/tools/reference/model_runner.h"
#include "compiler/gguf/gguf.h"
#include "compiler/tools/synth/model.h"
#include "ir/dtype.h"
#include "ir/fault.h"
#include "ir/quantize.h"
#include "runtime/cuda/cuda_api.h"
#include "runtime/fault.h"
#include "runtime/kiln_runtime.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

std::optional<rt::cuda::DeviceInfo> gpu() {
  std::string why;
  static auto dev = rt::cuda::probe_device(0, &why);
  return dev;
}

#define REQUIRE_GPU()                                                                  \
  do {                                                                                 \
    std::string why_;                                                                  \
    if (!rt::cuda::probe_device(0, &why_)) GTEST_SKIP() << "no CUDA GPU: " << why_;  \
  } while (0)

fs::path model_dir() {
  const char* d = std::getenv("KILN_MODEL_DIR");
  return d ? fs::path(d) : fs::path(KILN_SOURCE_DIR) / ".cache" / "models";
}

fs::path scratch() {
  auto p = fs::temp_directory_path() / "kiln_gpu_e2e";
  fs::create_directories(p);
  return p;
}

using gen::rel_err;

int argmax(const std::vector<float>& v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); }

std::string compile_plan(const fs::path& gguf, int sm, int64_t ctx, const std::string& tag,
                         const std::string& kv_type = "f16") {
  compile::CompileOptions o;
  o.kv_type = kv_type;
  o.model_path = gguf.string();
  o.out_path = (scratch() / (gguf.stem().string() + "." + tag + ".plan")).string();
  o.sm = sm;
  o.ctx = ctx;
  o.max_tokens = 64;
  o.prefill_buckets = {16, 64};
  compile::compile_model(o);
  return o.out_path;
}

// A random-weight model of the tiny geometry written to the scratch folder.
fs::path tiny_model(const std::string& type, uint64_t seed, const std::string& name,
                    const std::string& geometry = "tiny") {
  synth::SynthOptions so;
  so.geometry = geometry;
  so.type = type;
  so.seed = seed;
  const fs::path gguf = scratch() / (name + ".gguf");
  synth::build_model(so).write(gguf.string());
  return gguf;
}

// Greedy tokens from the interpreter, logits of the first step.
// tensor_core: the interpreter models the compiled plan exactly (prefill
// chunks on the tensor-core graph: f16 GEMM operands), else the fp32 graph the
// eager programs run.
std::vector<int32_t> reference_greedy(const gguf::File& f, const std::vector<int32_t>& prompt, int n, int64_t ctx,
                                      std::vector<float>* first_logits, bool tensor_core = false) {
  gen::ModelRunner r(f, ctx, 64, tensor_core, ir::DType::F16);  // the plans' KV cache: f16 (the default)
  std::vector<float> logits = r.feed(prompt);
  if (first_logits) *first_logits = logits;
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    int32_t t = argmax(logits);
    out.push_back(t);
    if (i + 1 < n) logits = r.feed(std::span<const int32_t>(&t, 1));
  }
  return out;
}

struct RunResult {
  std::vector<int32_t> tokens;
  std::vector<float> first_logits;
};

RunResult run_plan(rt::Model& m, const std::vector<int32_t>& prompt, int n, rt::ProgramMode mode) {
  RunResult res;
  auto& e = m.engine();
  e.reset();
  rt::SamplingParams sp;  // greedy
  int32_t next = e.prefill(mode, prompt, sp), pos = int32_t(prompt.size());
  res.first_logits = e.last_logits();
  res.tokens.push_back(next);
  for (int i = 1; i < n; ++i) {
    next = e.decode_next(mode, pos++, sp);
    res.tokens.push_back(next);
  }
  return res;
}

// The compiled plan decoding the interpreter's own greedy tokens (teacher
// forcing: a flipped token does not change every later step), n steps from
// the prompt's prefill. The prefill step against the interpreter of the
// compiled graphs within 5e-3 (kiln verify's tolerance); every decode step
// (int8 activations) by gen::check_q8_step, as kiln verify judges it: its
// logits against the fp32 interpreter within 3x the int8 interpreter's own
// distance from them + 2e-2, and its token the int8 interpreter's argmax or a
// near-tie within 3x the step's RMS logit difference. (Rounding to 8 bits
// makes the plan and the int8 interpreter two equally valid computations a
// few percent apart on a real model; a wrong kernel is off by far more.)
struct ForcedResult {
  int exact = 0, ties = 0;
  double worst_share = 0;  // the largest share of a step's bound taken
};
ForcedResult teacher_forced(rt::Model& m, const gguf::File& f, const std::vector<int32_t>& prompt, int n, int64_t ctx,
                            const std::string& label) {
  gen::ModelRunner ref(f, ctx, 64, true, ir::DType::F16), fp32(f, ctx, 64, false, ir::DType::F16);
  auto& e = m.engine();
  e.reset();
  rt::SamplingParams sp;  // greedy
  std::vector<float> rl = ref.feed(prompt), fl = fp32.feed(prompt);
  int32_t got = e.prefill(rt::ProgramMode::Compiled, prompt, sp), pos = int32_t(prompt.size());
  ForcedResult res;
  for (int i = 0; i < n; ++i) {
    const std::vector<float>& gl = e.last_logits();
    const int32_t want = argmax(rl);
    double window = 0;
    if (i == 0) {
      EXPECT_LT(rel_err(gl, rl), 5e-3) << label << " prefill";
    } else {
      const gen::YardstickStep q = gen::check_q8_step(gl, rl, fl);
      res.worst_share = std::max(res.worst_share, q.rel_fp32 / q.bound);
      EXPECT_TRUE(q.logits_ok) << label << " step " << i << ": rel err against fp32 " << q.rel_fp32 << " > bound "
                               << q.bound << " (the int8 interpreter is " << q.ref_vs_fp32 << " from fp32)";
      window = gen::kQ8TieNoise * q.noise;
    }
    if (got == want) {
      ++res.exact;
    } else {
      std::printf("[forced] %s step %d: token %d where the interpreter has %d: its margin %.4f, the window %.4f\n",
                  label.c_str(), i, got, want, double(rl[size_t(want)]) - rl[size_t(got)], window);
      EXPECT_TRUE(gen::token_agrees(rl, got, window)) << label << " step " << i << ": token " << got
                                                     << " vs the interpreter's " << want;
      ++res.ties;
    }
    if (i + 1 < n) {
      got = e.step(rt::ProgramMode::Compiled, std::span<const int32_t>(&want, 1), pos++, {});
      rl = ref.feed(std::span<const int32_t>(&want, 1));
      fl = fp32.feed(std::span<const int32_t>(&want, 1));
    }
  }
  return res;
}

}  // namespace

// The real SmolLM2-135M (Q4_1): eager and interpreter agree on 32 greedy
// tokens, and the compiled plan on 32 teacher-forced steps (teacher_forced:
// the interpreter's token at every step, or a near-tie its int8 activations
// explain); first-step logits within 1e-3 relative (fp32 arithmetic and an f16
// KV cache on both sides, the interpreter rounding stored rows as the GPU does;
// only summation order differs between the GPU kernels and the interpreter).
// The compiled plan's free-running greedy tokens are reported: they equal the
// interpreter's unless a near-tie flipped.
TEST(GpuE2E, SmolLM2CompiledEagerInterpreterAgree) {
  REQUIRE_GPU();
  fs::path gguf = model_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf";
  ASSERT_TRUE(fs::exists(gguf)) << gguf << " missing: run ./fetch_models.sh";
  const int sm = gpu()->sm;
  std::string plan = compile_plan(gguf, sm, 512, "e2e");
  auto model = rt::Model::load(plan, {});
  auto f = gguf::File::open(gguf.string());
  // the last prompt, cut to 440 tokens, puts decode past the tensor-core
  // split attention's one-split rows (384), so its steps split the KV rows
  // and the o projection's GEMV merges the splits (defer-attention-merge)
  std::string counting = "Counting in words:";
  const char* ones[] = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
  for (int i = 0; i < 160; ++i) counting += std::string(i ? ", " : " ") + ones[i % 9] + " " + std::to_string(i);
  for (const std::string& prompt_text :
       {std::string("The capital of France is"), std::string("def fibonacci(n):\n    \"\"\"Return the n-th"),
        std::string("<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n"), counting}) {
    auto prompt = model->tokenizer().encode(prompt_text, true, true);
    if (prompt_text == counting) {
      ASSERT_GT(prompt.size(), 440u);
      prompt.resize(440);
    }
    std::vector<float> ref_logits, tc_logits;
    auto ref = reference_greedy(f, prompt, 32, 512, &ref_logits);
    auto ref_tc = reference_greedy(f, prompt, 32, 512, &tc_logits, true);
    auto comp = run_plan(*model, prompt, 32, rt::ProgramMode::Compiled);
    auto eager = run_plan(*model, prompt, 32, rt::ProgramMode::Eager);
    // compiled: prefill GEMMs on f16 operands, modelled exactly by the tensor-core
    // interpreter (only the fp32 summation order differs); eager: the fp32 graph.
    double ec = rel_err(comp.first_logits, tc_logits), ee = rel_err(eager.first_logits, ref_logits);
    double e16 = rel_err(tc_logits, ref_logits);
    std::printf("[smollm2] %-40.40s rel err compiled %.2e eager %.2e (f16 GEMM operands vs fp32: %.2e)\n",
                prompt_text.c_str(), ec, ee, e16);
    // reported, not asserted: a near-tie may legitimately flip under f16 operands
    std::printf("[smollm2] greedy tokens with f16 GEMM operands %s the fp32 interpreter's\n",
                ref_tc == ref ? "equal" : "DIFFER FROM");
    // compiled: 5e-3, because flash attention (prefill on tensor cores) also
    // rounds q and the softmax probabilities to f16, which the interpreter
    // does not model (kernels_test: 2e-3 per attention op); eager: fp32 only.
    EXPECT_LT(ec, 5e-3);
    EXPECT_LT(ee, 1e-3);
    size_t same = 0;
    while (same < comp.tokens.size() && same < ref_tc.size() && comp.tokens[same] == ref_tc[same]) ++same;
    std::printf("[smollm2] compiled greedy tokens: %zu of 32 equal the interpreter's before the first difference\n",
                same);
    const ForcedResult fr = teacher_forced(*model, f, prompt, 32, 512, prompt_text.substr(0, 20));
    std::printf("[smollm2] compiled, teacher-forced: %d of 32 tokens equal, %d near-ties; decode steps took at most "
                "%.0f%% of their bound\n",
                fr.exact, fr.ties, 100 * fr.worst_share);
    EXPECT_EQ(eager.tokens, ref) << "eager greedy tokens differ from the interpreter";
  }
}

// The real Gemma 3 270M (Q4_K_M): compiled, eager and interpreter agree on 32
// greedy tokens for three prompts, one longer than the 512-token sliding
// window. The plan's context (1024) exceeds the window, so the 15 local layers
// keep a ring of 512 + 64 - 1 rows (max tokens 64) while the 3 global ones keep
// 1024: the long prompt's prefill chunks wrap the rings, and the windowed
// attention kernel reads them. Tolerances as for SmolLM2 above.
TEST(GpuE2E, Gemma3CompiledEagerInterpreterAgree) {
  REQUIRE_GPU();
  fs::path gguf = model_dir() / "gemma-3-270m-q4_k_m.gguf";
  ASSERT_TRUE(fs::exists(gguf)) << gguf << " missing: run ./fetch_models.sh";
  const int sm = gpu()->sm;
  const int64_t ctx = 1024;
  std::string plan = compile_plan(gguf, sm, ctx, "e2e");
  auto model = rt::Model::load(plan, {});
  auto f = gguf::File::open(gguf.string());
  std::string counting = "Counting in words:";
  const char* ones[] = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
  for (int i = 0; i < 160; ++i) counting += std::string(i ? ", " : " ") + ones[i % 9] + " " + std::to_string(i);
  counting += ",";
  int longest = 0;
  for (const std::string& prompt_text :
       {std::string("Water boils at 100 degrees Celsius. Water freezes at"),
        std::string("<start_of_turn>user\nHello! How are you today?<end_of_turn>\n<start_of_turn>model\n"),
        counting}) {
    auto prompt = model->tokenizer().encode(prompt_text, true, true);
    longest = std::max(longest, int(prompt.size()));
    std::vector<float> ref_logits, tc_logits;
    auto ref = reference_greedy(f, prompt, 32, ctx, &ref_logits);
    auto ref_tc = reference_greedy(f, prompt, 32, ctx, &tc_logits, true);
    auto comp = run_plan(*model, prompt, 32, rt::ProgramMode::Compiled);
    auto eager = run_plan(*model, prompt, 32, rt::ProgramMode::Eager);
    double ec = rel_err(comp.first_logits, tc_logits), ee = rel_err(eager.first_logits, ref_logits);
    double e16 = rel_err(tc_logits, ref_logits);
    std::printf("[gemma3] %4zu prompt tokens %-30.30s rel err compiled %.2e eager %.2e (f16 GEMM operands vs fp32: "
                "%.2e)\n",
                prompt.size(), prompt_text.c_str(), ec, ee, e16);
    std::printf("[gemma3] greedy tokens with f16 GEMM operands %s the fp32 interpreter's\n",
                ref_tc == ref ? "equal" : "DIFFER FROM");
    EXPECT_LT(ec, 5e-3);
    EXPECT_LT(ee, 1e-3);
    EXPECT_EQ(comp.tokens, ref_tc) << "compiled greedy tokens differ from the interpreter";
    EXPECT_EQ(eager.tokens, ref) << "eager greedy tokens differ from the interpreter";
  }
  EXPECT_GT(longest, 512) << "no prompt is longer than the sliding window";
}

// Every supported weight type, on tiny synthetic llama models: whole-model
// logits of the compiled and eager plans vs the interpreter (prefill + decode).
class GpuSynthTypes : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuSynthTypes, LogitsMatchInterpreter) {
  REQUIRE_GPU();
  const std::string type = GetParam();
  const fs::path gguf = tiny_model(type, 7, "tiny_" + type);
  std::string plan = compile_plan(gguf, gpu()->sm, 128, "t");
  auto model = rt::Model::load(plan, {});
  auto f = gguf::File::open(gguf.string());
  std::vector<int32_t> prompt;
  for (int i = 0; i < 21; ++i) prompt.push_back((i * 37 + 11) % int32_t(model->plan().model().vocab()));
  gen::ModelRunner ref(f, 128, 64, false, ir::DType::F16), ref_tc(f, 128, 64, true, ir::DType::F16);
  auto ref_logits = ref.feed(prompt);
  const auto tc_logits = ref_tc.feed(prompt);  // the compiled plan's prefill: f16 GEMM operands
  for (auto mode : {rt::ProgramMode::Compiled, rt::ProgramMode::Eager}) {
    auto r = run_plan(*model, prompt, 1, mode);
    double e = rel_err(r.first_logits, mode == rt::ProgramMode::Compiled ? tc_logits : ref_logits);
    std::printf("[tiny %-6s] %s rel err %.2e\n", type.c_str(), mode == rt::ProgramMode::Compiled ? "compiled" : "eager   ", e);
    // compiled: flash attention's f16 q and probabilities are not modelled by
    // the interpreter (measured 2e-4 .. 2.3e-3 on an H200, bf16 the largest); eager: fp32
    EXPECT_LT(e, mode == rt::ProgramMode::Compiled ? 5e-3 : 1e-3) << type;
  }
  // Three decode steps on the compiled plan against the interpreter (the
  // tensor-core one: its KV cache holds what the compiled prefill wrote).
  auto& eng = model->engine();
  int32_t tok = argmax(tc_logits);
  auto got = run_plan(*model, prompt, 1, rt::ProgramMode::Compiled);
  int32_t pos = int32_t(prompt.size());
  // Int8 activations (q8-activations: q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q6_K): the
  // interpreter rounds them as the GPU does, but ~1e-4 float differences from
  // upstream kernels push some values across a rounding boundary, each a whole
  // quantisation step (measured up to 8.5e-3 on these random tiny models; a
  // real model's activations take the yardstick of gen::check_q8_step).
  // The token must be the argmax or a near-tie (1e-2 x RMS of the logits).
  const bool xq = ir::act_q8_weight(*ir::dtype_from_name(type == "q4_k_m" ? "q4_k" : type));
  for (int i = 0; i < 3; ++i) {
    int32_t next = eng.step(rt::ProgramMode::Compiled, std::span<const int32_t>(&tok, 1), pos++, {});
    auto rl = ref_tc.feed(std::span<const int32_t>(&tok, 1));
    double e = rel_err(eng.last_logits(), rl);
    std::printf("[tiny %-6s] decode step %d rel err %.2e\n", type.c_str(), i, e);
    EXPECT_LT(e, xq ? 2e-2 : 1e-3) << type << " decode step " << i;
    double rms = 0;
    for (float v : rl) rms += double(v) * v;
    rms = std::sqrt(rms / double(rl.size()));
    EXPECT_LE(double(rl[size_t(argmax(rl))]) - rl[size_t(next)], (xq ? 1e-2 : 0.0) * rms)
        << type << " decode step " << i << ": token " << next << " vs the interpreter's " << argmax(rl);
    tok = argmax(rl);
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GpuSynthTypes,
                         ::testing::Values("f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k",
                                           "q3_k", "q4_k", "q5_k", "q6_k", "q4_k_m"));

// The deferred split merge (defer-attention-merge): tiny models (4 heads of
// 64: a node's limit D is 16 splits) with a long prompt, six decode steps
// against the tensor-core interpreter as the tiny-model test above judges
// them. At 400 rows the splits are 4 of 128 (kAttDeferMinKeys) and the o
// projection's GEMV merges them: q4_0 (the int8 GEMV) and f16 (the f32
// register GEMV) on the f16 cache (the tensor-core split kernel), q4_0 on a
// bf16 cache (the CUDA-core one). At 2,500 rows (the tiny-8k geometry) 20
// splits of 128 would be past D: the splits are capped at 16 of 157 rows
// (kAttDeferCapMaxRows) and still deferred. At 4,000 rows, past the cap, the
// attention merges its 32 splits itself and the GEMV reads its output. At
// head_dim 128 and 256 (tiny-hd128, tiny-hd256: Gemma 3's 4 heads of 256 over
// one KV head) the CUDA-core split kernel defers on either cache. The plan
// must hold a deferring attention kernel of the expected kind and a merging
// GEMV.
struct DeferCase {
  std::string type, kv;
  int prompt = 400;
  int64_t ctx = 512;
  std::string geometry = "";  // "": tiny, or tiny-8k past 2,048 rows
};
class GpuDeferredMerge : public ::testing::TestWithParam<DeferCase> {};

TEST_P(GpuDeferredMerge, MatchesInterpreter) {
  REQUIRE_GPU();
  const DeferCase& dc = GetParam();
  const std::string &type = dc.type, &kv = dc.kv;
  const bool xq = type == "q4_0";
  const std::string geometry = !dc.geometry.empty() ? dc.geometry : dc.ctx > 2048 ? "tiny-8k" : "tiny";
  const fs::path gguf = tiny_model(type, 11, "tiny_defer_" + geometry + "_" + type, geometry);
  std::string plan = compile_plan(gguf, gpu()->sm, dc.ctx, "defer_" + kv, kv);
  auto model = rt::Model::load(plan, {});
  int deferring = 0, merging = 0, tc = 0;
  for (const auto* k : model->plan().kernels()) {
    const std::string name = k->name()->str();
    const bool d = name.find("attention_split") != std::string::npos && name.find("_dm") != std::string::npos;
    deferring += d;
    tc += d && name.find("_tc") != std::string::npos;
    merging += name.find("_xm") != std::string::npos;
  }
  EXPECT_GT(deferring, 0) << "no attention kernel defers its merge";
  const bool hd64 = model->plan().model().head_dim() == 64;
  EXPECT_EQ(tc > 0, kv == "f16" && hd64)
      << "the f16 cache at head_dim 64 takes the tensor-core split kernel, bf16 or another head_dim the CUDA-core one";
  EXPECT_GT(merging, 0) << "no GEMV merges the splits";
  auto f = gguf::File::open(gguf.string());
  std::vector<int32_t> prompt;
  for (int i = 0; i < dc.prompt; ++i) prompt.push_back((i * 37 + 11) % int32_t(model->plan().model().vocab()));
  gen::ModelRunner ref_tc(f, dc.ctx, 64, true, kv == "bf16" ? ir::DType::BF16 : ir::DType::F16);
  const auto tc_logits = ref_tc.feed(prompt);
  auto& eng = model->engine();
  run_plan(*model, prompt, 1, rt::ProgramMode::Compiled);
  int32_t tok = argmax(tc_logits), pos = int32_t(prompt.size());
  for (int i = 0; i < 6; ++i) {
    int32_t next = eng.step(rt::ProgramMode::Compiled, std::span<const int32_t>(&tok, 1), pos++, {});
    auto rl = ref_tc.feed(std::span<const int32_t>(&tok, 1));
    double e = rel_err(eng.last_logits(), rl);
    std::printf("[defer %s %s, %s cache] decode step %d (%d KV rows) rel err %.2e\n", geometry.c_str(), type.c_str(),
                kv.c_str(), i, pos, e);
    EXPECT_LT(e, xq ? 2e-2 : 1e-3) << "decode step " << i;
    double rms = 0;
    for (float v : rl) rms += double(v) * v;
    rms = std::sqrt(rms / double(rl.size()));
    EXPECT_LE(double(rl[size_t(argmax(rl))]) - rl[size_t(next)], (xq ? 1e-2 : 0.0) * rms)
        << "decode step " << i << ": token " << next << " vs the interpreter's " << argmax(rl);
    tok = argmax(rl);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, GpuDeferredMerge,
                         ::testing::Values(DeferCase{"q4_0", "f16"}, DeferCase{"f16", "f16"},
                                           DeferCase{"q4_0", "bf16"}, DeferCase{"q4_0", "f16", 2500, 2560},
                                           DeferCase{"f16", "bf16", 2500, 2560}, DeferCase{"q4_0", "f16", 4000, 4096},
                                           DeferCase{"q4_0", "f16", 400, 512, "tiny-hd128"},
                                           DeferCase{"q4_0", "f16", 400, 512, "tiny-hd256"},
                                           DeferCase{"f16", "bf16", 2500, 2560, "tiny-hd256"}),
                         [](const ::testing::TestParamInfo<DeferCase>& i) {
                           std::string g = i.param.geometry.empty() ? "" : i.param.geometry.substr(5) + "_";
                           return g + i.param.type + "_" + i.param.kv + "_" + std::to_string(i.param.prompt);
                         });

// A plan for another architecture is refused with the fix in the message.
TEST(GpuE2E, WrongTargetIsRefusedWithFix) {
  REQUIRE_GPU();
  const int sm = gpu()->sm;
  const int other = sm == 80 ? 90 : 80;
  synth::SynthOptions so;
  so.type = "q8_0";
  fs::path gguf = scratch() / "tiny_target.gguf";
  synth::build_model(so).write(gguf.string());
  std::string plan = compile_plan(gguf, other, 64, "sm" + std::to_string(other));
  try {
    auto m = rt::Model::load(plan, {});
    FAIL() << "a plan for sm_" << other << " loaded on sm_" << sm;
  } catch (const rt::Error& e) {
    EXPECT_EQ(e.code(), rt::ErrorCode::kDevice);
    EXPECT_NE(std::string(e.what()).find("--target sm_" + std::to_string(sm)), std::string::npos) << e.what();
  }
}

// kiln run --check-finite (EngineOptions::check_finite): a tiny model whose
// layer-1 FFN norm gain holds infinities goes non-finite in that layer's first
// FFN kernel;
// both modes stop there with kCheckFailed naming the op, the layer and the
// inputs. The same plan without the check still runs (non-finite logits).
TEST(GpuE2E, CheckFiniteNamesTheFirstKernelThatWritesInf) {
  REQUIRE_GPU();
  const fs::path gguf = tiny_model("f16", 5, "tiny_inf");
  {
    auto f = gguf::File::open(gguf.string());
    const auto* t = f.find_tensor("blk.1.ffn_norm.weight");
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->type, ir::DType::F32);
    const uint64_t at = f.data_offset() + t->offset;
    std::fstream io(gguf, std::ios::in | std::ios::out | std::ios::binary);
    const float big = std::numeric_limits<float>::infinity();
    for (int i = 0; i < 8; ++i) {
      io.seekp(static_cast<std::streamoff>(at + 4 * i));
      io.write(reinterpret_cast<const char*>(&big), 4);
    }
  }
  std::string plan = compile_plan(gguf, gpu()->sm, 128, "inf");
  rt::EngineOptions eo;
  eo.check_finite = true;
  auto model = rt::Model::load(plan, eo);
  std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  for (auto mode : {rt::ProgramMode::Compiled, rt::ProgramMode::Eager}) {
    model->engine().reset();
    try {
      model->engine().prefill(mode, prompt, {});
      ADD_FAILURE() << "no kernel reported a NaN or Inf";
    } catch (const rt::Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(e.code(), rt::ErrorCode::kCheckFailed) << m;
      EXPECT_NE(m.find("layer 1"), std::string::npos) << m;
      EXPECT_NE(m.find("blk.1.ffn_norm.weight"), std::string::npos) << m;  // among the inputs it names
      std::printf("[check-finite %s] %s\n", mode == rt::ProgramMode::Compiled ? "compiled" : "eager", m.c_str());
    }
  }
}

// Fault injection on the GPU (issue 9): failing each GPU-side allocation of an
// engine in turn (stream, weights, arena, pinned step block, events, kernel
// modules) ends every load in kDevice "... failed: out of memory" with the
// device memory given back, and the process then loads the plan and generates
// the same tokens as before.
TEST(GpuE2E, EveryCudaAllocationFailureEndsCleanAndTheNextLoadGenerates) {
  REQUIRE_GPU();
  const fs::path gguf = tiny_model("q4_k_m", 9, "tiny_fault");
  const std::string plan = compile_plan(gguf, gpu()->sm, 128, "fault");
  const std::vector<int32_t> prompt = {1, 5, 9, 13, 17};
  std::vector<int32_t> ref;
  rt::fault::disarm();
  {
    auto m = rt::Model::load(plan, {});
    ref = run_plan(*m, prompt, 6, rt::ProgramMode::Compiled).tokens;
  }
  const uint64_t sites = rt::fault::count(rt::fault::Site::kCudaAlloc);
  ASSERT_GE(sites, 6u) << "stream, weights, arena, step block, two events and the modules are sites";
  size_t free0 = 0, free1 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  for (uint64_t n = 1; n <= sites; ++n) {
    SCOPED_TRACE("failing GPU allocation " + std::to_string(n) + " of " + std::to_string(sites));
    rt::fault::arm(rt::fault::Site::kCudaAlloc, n);
    try {
      auto m = rt::Model::load(plan, {});
      ADD_FAILURE() << "the load succeeded";
    } catch (const rt::Error& e) {
      EXPECT_EQ(e.code(), rt::ErrorCode::kDevice) << e.what();
      EXPECT_NE(std::string(e.what()).find("failed"), std::string::npos) << e.what();
    }
    rt::fault::disarm();
  }
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_GE(free1 + (16u << 20), free0) << "device memory not given back after the failed loads";
  auto m = rt::Model::load(plan, {});
  EXPECT_EQ(run_plan(*m, prompt, 6, rt::ProgramMode::Compiled).tokens, ref);
  std::printf("[cuda_alloc] %llu sites failed in turn: each load ended in out of memory, then generated again\n",
              static_cast<unsigned long long>(sites));
}

// Host allocations over one generation (ir/fault.h site alloc: each operator
// new of >= 4 KiB, failed in turn): loading the plan (plan, tokenizer, engine
// tables, graph capture) and generating 6 tokens ends in std::bad_alloc, never
// a crash or a hang; afterwards the device memory is back and the plan loads
// and generates the same tokens.
TEST(GpuE2E, EveryLargeHostAllocationOfAGenerationFailsCleanly) {
  REQUIRE_GPU();
  if (!fault::alloc_site_available()) GTEST_SKIP() << "sanitizer build: operator new is the sanitizer's";
  const fs::path gguf = tiny_model("q4_0", 11, "tiny_host_alloc");
  const std::string plan = compile_plan(gguf, gpu()->sm, 128, "host_alloc");
  const std::vector<int32_t> prompt = {2, 4, 6, 8};
  auto generate = [&] {
    auto m = rt::Model::load(plan, {});
    return run_plan(*m, prompt, 6, rt::ProgramMode::Compiled).tokens;
  };
  fault::disarm();
  const std::vector<int32_t> ref = generate();
  const uint64_t sites = fault::count(fault::Site::kAlloc);
  ASSERT_GT(sites, 0u);
  size_t free0 = 0, free1 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  uint64_t failed = 0;
  for (uint64_t n = 1; n <= sites; ++n) {
    SCOPED_TRACE("failing host allocation " + std::to_string(n) + " of " + std::to_string(sites));
    fault::arm(fault::Site::kAlloc, n);
    try {
      generate();
    } catch (const std::bad_alloc&) {
      ++failed;
    }
    fault::disarm();
  }
  EXPECT_EQ(failed, sites) << "every large allocation of a load and generation failed it";
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_GE(free1 + (16u << 20), free0) << "device memory not given back after the failed generations";
  EXPECT_EQ(generate(), ref);
  std::printf("[host alloc] %llu allocations failed in turn: each generation ended in std::bad_alloc\n",
              static_cast<unsigned long long>(sites));
}

// Pipelined decode (Engine::decode_submit / decode_collect, the Session's
// default for compiled programs: one step queued behind the running one;
// eager ones stay step by step) generates exactly the
// tokens of one step at a time, greedy and sampled, and leaves nothing queued
// however the generation ends (token budget, the caller, the context). The
// engine refuses what would mix queued steps with synchronous ones.
TEST(GpuE2E, PipelinedDecodeGeneratesTheSameTokens) {
  REQUIRE_GPU();
  const fs::path gguf = tiny_model("q4_0", 5, "tiny_pipeline");
  const std::string plan = compile_plan(gguf, gpu()->sm, 64, "pipeline");
  auto m = rt::Model::load(plan, {});
  auto& e = m->engine();
  rt::Session s = m->session();
  const std::vector<int32_t> prompt = {2, 4, 6, 8, 10};
  struct Out {
    std::vector<int32_t> tokens;
    rt::GenerateStats st;
  };
  auto generate = [&](bool pipeline, float temperature, int n, int stop_after, rt::ProgramMode mode) {
    rt::GenerateOptions o;
    o.max_new_tokens = n;
    o.pipeline = pipeline;
    o.stop_at_eog = false;
    o.mode = mode;
    o.sampling.temperature = temperature;
    o.sampling.top_k = 40;
    o.sampling.seed = 1234;
    Out out;
    out.st = s.generate(prompt, o, [&](int32_t id, std::string_view) {
      if (id >= 0) out.tokens.push_back(id);
      return stop_after <= 0 || int(out.tokens.size()) < stop_after;
    });
    EXPECT_EQ(e.decode_pending(), 0) << "a step stayed queued after the generation";
    EXPECT_EQ(out.st.decode_ms.size() + 1, size_t(out.st.generated));
    EXPECT_EQ(out.st.decode_gpu_ms.size() + 1, size_t(out.st.generated));
    return out;
  };
  for (rt::ProgramMode mode : {rt::ProgramMode::Compiled, rt::ProgramMode::Eager}) {
    SCOPED_TRACE(mode == rt::ProgramMode::Compiled ? "compiled" : "eager");
    const std::vector<int32_t> stepwise = run_plan(*m, prompt, 20, mode).tokens;
    const Out greedy = generate(true, 0.f, 20, 0, mode);
    EXPECT_EQ(greedy.tokens, stepwise);
    EXPECT_EQ(greedy.st.stop_reason, "max_tokens");
    EXPECT_EQ(generate(false, 0.f, 20, 0, mode).tokens, stepwise);
    const Out sampled = generate(true, 0.9f, 20, 0, mode);
    EXPECT_EQ(sampled.tokens, generate(false, 0.9f, 20, 0, mode).tokens);
    // the caller stops after 7 tokens: a step was already queued past the 7th
    const Out stopped = generate(true, 0.f, 20, 7, mode);
    EXPECT_EQ(stopped.st.stop_reason, "caller");
    EXPECT_EQ(stopped.tokens, std::vector<int32_t>(stepwise.begin(), stepwise.begin() + 7));
    // the context (64) ends it: no step is queued at or past the last position
    const Out full = generate(true, 0.f, 1000, 0, mode), full_sync = generate(false, 0.f, 1000, 0, mode);
    EXPECT_EQ(full.st.stop_reason, "context");
    EXPECT_EQ(full.tokens, full_sync.tokens);
    EXPECT_EQ(full.st.generated, 64 - int32_t(prompt.size()) + 1);
    // after all that, still the same tokens
    EXPECT_EQ(generate(true, 0.f, 20, 0, mode).tokens, stepwise);
  }
  // the engine's own rules
  const std::vector<int32_t> stepwise = run_plan(*m, prompt, 4, rt::ProgramMode::Compiled).tokens;
  rt::SamplingParams greedy;
  e.reset();
  ASSERT_EQ(e.prefill(rt::ProgramMode::Compiled, prompt, greedy), stepwise[0]);
  const int32_t p = int32_t(prompt.size());
  e.decode_submit(rt::ProgramMode::Compiled, p, greedy);
  e.decode_submit(rt::ProgramMode::Compiled, p + 1, greedy);
  EXPECT_THROW(e.decode_submit(rt::ProgramMode::Compiled, p + 2, greedy), rt::Error);
  EXPECT_THROW(e.last_logits(), rt::Error);
  EXPECT_THROW(e.reset(), rt::Error);
  EXPECT_THROW(e.decode_next(rt::ProgramMode::Compiled, p + 2, greedy), rt::Error);
  EXPECT_EQ(e.decode_collect(), stepwise[1]);
  e.decode_submit(rt::ProgramMode::Compiled, p + 2, greedy);
  EXPECT_EQ(e.decode_collect(), stepwise[2]);
  EXPECT_EQ(e.decode_collect(), stepwise[3]);
  EXPECT_THROW(e.decode_collect(), rt::Error);
  e.decode_submit(rt::ProgramMode::Compiled, p + 3, greedy);
  e.decode_discard();
  EXPECT_EQ(e.decode_pending(), 0);
  EXPECT_EQ(run_plan(*m, prompt, 4, rt::ProgramMode::Compiled).tokens, stepwise);
}

// Device-side step set-up (Program.device_step, plan format 2.3): a compiled
// program's sampling kernel advances the step block and hands its token over
// in pinned host memory, so consecutive decode steps copy nothing in or out.
// The tokens equal those of an engine that copies the block in and the token
// out around every step, greedy and sampled, pipelined or not; a step that is
// not the one the device set up (a skipped position, other sampling
// parameters, token ids from the host, a reset) copies its own block.
TEST(GpuE2E, DeviceStepGeneratesTheSameTokens) {
  REQUIRE_GPU();
  const fs::path gguf = tiny_model("q4_0", 5, "tiny_devstep");
  const std::string plan = compile_plan(gguf, gpu()->sm, 64, "devstep");
  rt::EngineOptions copy_opt;
  copy_opt.device_step = false;
  auto on = rt::Model::load(plan, {});
  auto off = rt::Model::load(plan, copy_opt);
  const std::vector<int32_t> prompt = {2, 4, 6, 8, 10};
  const int32_t p = int32_t(prompt.size());
  auto generate = [&](rt::Model& m, bool pipeline, float temperature, uint64_t* uploads) {
    rt::Session s = m.session();
    rt::GenerateOptions o;
    o.max_new_tokens = 20;
    o.pipeline = pipeline;
    o.stop_at_eog = false;
    o.sampling.temperature = temperature;
    o.sampling.top_k = 40;
    o.sampling.seed = 99;
    std::vector<int32_t> t;
    const uint64_t u0 = m.engine().step_uploads();
    const auto st = s.generate(prompt, o, [&](int32_t id, std::string_view) {
      if (id >= 0) t.push_back(id);
      return true;
    });
    EXPECT_EQ(st.generated, 20);
    *uploads = m.engine().step_uploads() - u0;
    return t;
  };
  for (bool pipeline : {true, false}) {
    for (float temperature : {0.f, 0.9f}) {
      SCOPED_TRACE(std::string(pipeline ? "pipelined" : "step by step") + ", temperature " +
                   std::to_string(temperature));
      uint64_t u_on = 0, u_off = 0;
      const std::vector<int32_t> a = generate(*on, pipeline, temperature, &u_on);
      EXPECT_EQ(a, generate(*off, pipeline, temperature, &u_off));
      EXPECT_EQ(u_on, 1u) << "only the prompt's chunk copies a step block in";
      EXPECT_EQ(u_off, 20u) << "one step block per step";
    }
  }
  // Steps out of the device's order, through the engine directly.
  auto sequence = [&](rt::Model& m) {
    auto& e = m.engine();
    rt::SamplingParams greedy, hot;
    hot.temperature = 0.9f;
    hot.top_k = 40;
    hot.seed = 7;
    const auto C = rt::ProgramMode::Compiled;
    std::vector<int32_t> t;
    e.reset();
    t.push_back(e.prefill(C, prompt, greedy));        // copies a block
    t.push_back(e.decode_next(C, p, greedy));         // set up on the device
    t.push_back(e.decode_next(C, p + 3, greedy));     // positions skipped: copies
    t.push_back(e.decode_next(C, p + 4, hot));        // other sampling parameters: copies
    t.push_back(e.decode_next(C, p + 5, hot));        // on the device
    const int32_t fed = t.back();
    t.push_back(e.step(C, {&fed, 1}, p + 6, hot));    // token ids from the host: copies
    e.decode_submit(C, p + 7, hot);                   // on the device, queued
    e.decode_submit(C, p + 8, hot);
    t.push_back(e.decode_collect());
    t.push_back(e.decode_collect());
    e.reset();                                        // a new conversation
    t.push_back(e.prefill(C, prompt, greedy));        // copies
    t.push_back(e.decode_next(C, p, greedy));         // on the device
    return t;
  };
  const uint64_t u0 = on->engine().step_uploads();
  const std::vector<int32_t> want = sequence(*off);
  EXPECT_EQ(sequence(*on), want);
  EXPECT_EQ(on->engine().step_uploads() - u0, 5u);
  EXPECT_EQ(want.size(), 10u);
}

// A sticky CUDA error (KILN_FAULT=trap:2 makes the engine launch a kernel that
// traps before the second step) is reported as such by `kiln run`, which exits
// with status 3 and does not hang: the context is lost, the process must go.
TEST(GpuE2E, StickyErrorIsReportedAndKilnRunExitsCleanly) {
  REQUIRE_GPU();
  // the kiln binary of this build (beside tests/), or KILN_BIN when the test
  // binary runs outside its build folder
  const char* bin = std::getenv("KILN_BIN");
  const fs::path kiln =
      bin && *bin ? fs::path(bin) : fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "kiln";
  ASSERT_TRUE(fs::exists(kiln)) << kiln << " (built beside this test binary; or set KILN_BIN)";
  const fs::path gguf = tiny_model("f16", 0, "tiny_trap");
  const std::string plan = compile_plan(gguf, gpu()->sm, 128, "trap");
  const std::string cmd = "KILN_FAULT=trap:2 timeout 120 '" + kiln.string() + "' run '" + plan +
                          "' -p 'Once upon a time' -n 8 2>&1; echo \"exit=$?\"";
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), f)) out += buf.data();
  ::pclose(f);
  EXPECT_NE(out.find("exit=3"), std::string::npos) << out;
  EXPECT_NE(out.find("sticky CUDA error"), std::string::npos) << out;
  EXPECT_NE(out.find("restart the process"), std::string::npos) << out;
  const size_t at = out.find("error");
  std::printf("[trap] %s", out.substr(at == std::string::npos ? 0 : at).c_str());
}

