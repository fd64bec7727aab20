// The compile driver on a machine with no GPU (CI): GGUF -> plan for every
// supported SM, the plan verifies and describes a fused + eager program set,
// and bad requests fail with errors that name the cause without touching an
// existing plan.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "codegen/codegen.h"
#include "compiler/compile/compile.h"
#include "compiler/gguf/gguf.h"
#include "compiler/gguf/writer.h"
#include "ir/dequant.h"
#include "ir/dtype.h"
#include "compiler/tools/synth/model.h"
#include "runtime/cuda/cuda_api.h"
#include "runtime/kiln_runtime.h"
#include "runtime/plan/describe.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path scratch() {
  auto p = fs::temp_directory_path() / ("kiln_compile_test_" + std::to_string(::getpid()));
  fs::create_directories(p);
  return p;
}

fs::path tiny(const std::string& type) {
  fs::path p = scratch() / ("tiny_" + type + ".gguf");
  if (!fs::exists(p)) {
    synth::SynthOptions so;
    so.type = type;
    so.seed = 3;
    synth::build_model(so).write(p.string());
  }
  return p;
}

compile::CompileOptions opts(const fs::path& gguf, const std::string& out, int sm = 90) {
  compile::CompileOptions o;
  o.model_path = gguf.string();
  o.out_path = (scratch() / out).string();
  o.sm = sm;
  o.ctx = 256;
  o.max_tokens = 64;
  o.cache_dir = (scratch() / "kcache").string();
  return o;
}

}  // namespace

TEST(Compile, TinyPlanHasFusedAndEagerProgramsThatVerify) {
  auto o = opts(tiny("q4_1"), "tiny.plan");
  auto rep = compile::compile_model(o);
  rt::Plan plan = rt::Plan::load(o.out_path);  // header, hashes, flatbuffer and semantic checks
  EXPECT_EQ(plan.target_sm(), 90u);
  EXPECT_EQ(plan.model().context_length(), 256u);
  // decode 1 + prefill buckets {16, 64} for each of compiled and eager
  std::set<std::string> names;
  for (const auto* p : plan.programs()) names.insert(p->name()->str());
  EXPECT_EQ(names, (std::set<std::string>{"compiled_decode_1", "compiled_prefill_16", "compiled_prefill_64",
                                          "eager_decode_1", "eager_prefill_16", "eager_prefill_64"}));
  const auto* cd = plan.find_program(fb::ProgramMode::Compiled, fb::Phase::Decode, 1);
  const auto* ed = plan.find_program(fb::ProgramMode::Eager, fb::Phase::Decode, 1);
  ASSERT_TRUE(cd && ed);
  // Fusion: 5 kernels per layer (qkv projection with the rope and KV stores in
  // its epilogue, attention, o + residual, gate/up + swiglu, down + residual)
  // + embed + lm_head_sample, vs one per IR op.
  const uint32_t layers = plan.model().n_layers();
  EXPECT_EQ(cd->launches()->size(), 5 * layers + 2);
  EXPECT_GT(ed->launches()->size(), 2 * cd->launches()->size());
  EXPECT_EQ(rep.n_launches_compiled_decode, cd->launches()->size());
  // Every kernel carries a CUBIN for the target and PTX for JIT.
  for (const auto* k : plan.kernels()) {
    EXPECT_GT(k->cubin()->size(), 0u) << k->name()->str();
    EXPECT_GT(k->ptx()->size(), 0u) << k->name()->str();
    EXPECT_EQ(k->sm(), 90u);
  }
  // KV cache: 2 states per layer, f16 (the default --kv-type) [ctx, n_kv * head_dim],
  // and the split-K attention's scratch (one state for every layer).
  const auto& m = plan.model();
  ASSERT_EQ(plan.arena().kv()->size(), 2 * layers + 1);
  for (const auto* s : *plan.arena().kv()) {
    const std::string name = s->name()->str();
    if (name == "attn_split_scratch") {
      EXPECT_EQ(s->size(), 4ull * codegen::attention_split_scratch_floats(m.n_heads(), m.n_kv_heads(), m.head_dim(), 256));
      continue;
    }
    EXPECT_EQ(s->size(), 2ull * 256 * m.n_kv_heads() * m.head_dim()) << name;
  }
  EXPECT_EQ(plan.budget().total_bytes(), plan.budget().weights_bytes() + plan.budget().arena_bytes());
  // The runtime's plain view of the same plan.
  rt::EngineInputs in = rt::engine_inputs(plan);
  EXPECT_EQ(in.programs.size(), 6u);
  EXPECT_EQ(in.vocab, int32_t(m.vocab()));
  EXPECT_GT(in.arena.kv_size, 0u);
}

// The deferred split merge (defer-attention-merge) in a real compile: the
// decode program's attention is a split kernel that leaves its merge to the o
// projection's GEMV ("_dm" and "_xm" kernels) at head_dim 64 (tensor cores on
// the f16 cache), 128 and 256 (the CUDA-core kernel; 256 as Gemma 3's 4 heads
// over one KV head), on sm_90 and, without tensor-core split kernels, sm_75.
TEST(Compile, DecodeAttentionDefersItsMergeAtEveryHeadDim) {
  for (const std::string geometry : {"tiny", "tiny-hd128", "tiny-hd256"})
    for (int sm : {90, 75}) {
      SCOPED_TRACE(geometry + " sm_" + std::to_string(sm));
      const fs::path gguf = scratch() / ("defer_" + geometry + ".gguf");
      if (!fs::exists(gguf)) {
        synth::SynthOptions so;
        so.geometry = geometry;
        so.type = "q4_0";
        so.seed = 5;
        synth::build_model(so).write(gguf.string());
      }
      auto o = opts(gguf, "defer_" + geometry + "_" + std::to_string(sm) + ".plan", sm);
      o.ctx = 1024;
      compile::compile_model(o);
      rt::Plan plan = rt::Plan::load(o.out_path);
      const auto* cd = plan.find_program(fb::ProgramMode::Compiled, fb::Phase::Decode, 1);
      ASSERT_NE(cd, nullptr);
      int deferring = 0, tc = 0, merging = 0;
      for (const auto* l : *cd->launches()) {
        if (l->gemm()) continue;
        const std::string k = plan.kernels()[l->kernel()]->name()->str();
        const bool d = k.find("attention_split") != std::string::npos && k.find("_dm") != std::string::npos;
        deferring += d;
        tc += d && k.find("_tc") != std::string::npos;
        merging += k.find("_xm") != std::string::npos;
      }
      const uint32_t layers = plan.model().n_layers();
      EXPECT_EQ(deferring, int(layers)) << "every layer's attention defers its merge";
      EXPECT_EQ(merging, int(layers)) << "every layer's o projection merges";
      EXPECT_EQ(tc, geometry == "tiny" && sm == 90 ? int(layers) : 0) << "tensor cores at head_dim 64 on sm_90 only";
    }
}

TEST(Compile, EveryWeightTypeCompiles) {
  for (const std::string t : {"f32", "f16", "bf16", "q4_0", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k",
                              "q6_k", "q4_k_m"}) {
    auto o = opts(tiny(t), "tiny_" + t + ".plan");
    ASSERT_NO_THROW(compile::compile_model(o)) << t;
    EXPECT_NO_THROW(rt::Plan::load(o.out_path)) << t;
  }
}

TEST(Compile, EverySupportedTargetCompiles) {
  for (int sm : codegen::supported_sms()) {
    auto o = opts(tiny("q8_0"), "tiny_sm" + std::to_string(sm) + ".plan", sm);
    o.eager = false;
    ASSERT_NO_THROW(compile::compile_model(o)) << "sm_" << sm;
    rt::Plan plan = rt::Plan::load(o.out_path);
    EXPECT_EQ(plan.target_sm(), uint32_t(sm));
    for (const auto* p : plan.programs()) {
      EXPECT_EQ(p->mode(), fb::ProgramMode::Compiled);
      // programmatic dependent launch exists from sm_90 (griddepcontrol)
      EXPECT_EQ(p->pdl(), sm >= 90) << p->name()->str() << " on sm_" << sm;
    }
  }
}

// Compiled programs on sm_90 launch with programmatic dependent launch, eager
// ones never (they are the host-launched baseline); --no-pdl turns it off, and
// every kernel source starts by waiting for its predecessor.
TEST(Compile, ProgrammaticDependentLaunchIsRecordedPerProgram) {
  auto o = opts(tiny("q8_0"), "tiny_pdl.plan");
  compile::compile_model(o);
  {
    rt::Plan plan = rt::Plan::load(o.out_path);
    EXPECT_GE(plan.header().format_minor, 1u);
    for (const auto* p : plan.programs())
      EXPECT_EQ(p->pdl(), p->mode() == fb::ProgramMode::Compiled) << p->name()->str();
    EXPECT_NE(rt::describe(plan).find("programmatic dependent launch"), std::string::npos);
  }
  o.pdl = false;
  o.out_path = (scratch() / "tiny_nopdl.plan").string();
  compile::compile_model(o);
  rt::Plan plan = rt::Plan::load(o.out_path);
  for (const auto* p : plan.programs()) EXPECT_FALSE(p->pdl()) << p->name()->str();
}

// Format 2.3: compiled programs end in the sampling kernel and are marked
// device_step (it may advance the step block on the device); eager programs,
// the host-driven baseline, are not. The sampling kernel's source honours the
// ring field whatever the plan, so a runtime that leaves it 0 sees no change.
TEST(Compile, DeviceStepMarksCompiledProgramsThatEndInSampling) {
  auto o = opts(tiny("q4_0"), "tiny_devstep.plan");
  compile::compile_model(o);
  rt::Plan plan = rt::Plan::load(o.out_path);
  EXPECT_GE(plan.header().format_minor, 3u);
  int compiled = 0, eager = 0;
  for (const auto* p : plan.programs()) {
    const bool is_compiled = p->mode() == fb::ProgramMode::Compiled;
    (is_compiled ? compiled : eager)++;
    EXPECT_EQ(p->device_step(), is_compiled) << p->name()->str();
    const std::string last = p->launches()->Get(p->launches()->size() - 1)->label()->str();
    EXPECT_TRUE(last.rfind("lm_head_sample", 0) == 0 || last.rfind("argmax", 0) == 0) << p->name()->str() << ": " << last;
  }
  EXPECT_GT(compiled, 0);
  EXPECT_GT(eager, 0);
  EXPECT_NE(rt::describe(plan).find("next step set up on the device"), std::string::npos);
}

// Format 2.2: every launch names the IR values it reads, and marks the
// activations it writes (dtype, and whether its rows are the step's tokens)
// for kiln run --check-finite; states (KV caches, split-K scratch) and
// integer outputs are not marked.
TEST(Compile, LaunchesMarkActivationOutputsAndNameTheirInputs) {
  auto o = opts(tiny("q4_k_m"), "tiny_marks.plan");
  compile::compile_model(o);
  rt::Plan plan = rt::Plan::load(o.out_path);
  EXPECT_GE(plan.header().format_minor, 2u);
  int marked = 0, dyn = 0, half = 0;
  for (const auto* p : plan.programs()) {
    for (const auto* l : *p->launches()) {
      const std::string label = l->label()->str();
      ASSERT_NE(l->inputs(), nullptr) << label;
      EXPECT_GE(l->inputs()->size(), 1u) << label;
      for (const auto* s : *l->inputs()) EXPECT_FALSE(s->str().empty()) << label;
      int outs = 0;
      for (const auto* a : *l->args()) {
        if (a->out() == 0) continue;
        EXPECT_EQ(a->kind(), fb::ArgKind::Ptr) << label;
        EXPECT_EQ(a->region(), fb::Region::Arena) << label;
        EXPECT_GT(a->size(), 0u) << label;
        const int dt = a->out() & 15;
        EXPECT_TRUE(dt >= 1 && dt <= 3) << label;
        ++outs;
        dyn += (a->out() & 16) != 0;
        half += dt == 2;
      }
      marked += outs;
      // kv_store / rope_store write caches (states): their marked outputs are activations only
      if (label.rfind("kv_store", 0) == 0) {
        EXPECT_EQ(outs, 0) << label;
      }
      if (label.rfind("matmul", 0) == 0 || label.rfind("rms_matmul", 0) == 0) {
        EXPECT_EQ(outs, 1) << label;
      }
    }
  }
  EXPECT_GT(marked, 20);
  EXPECT_GT(dyn, 0) << "token-row outputs are marked as such";
  EXPECT_GT(half, 0) << "the prefill programs' f16 GEMM operands are marked f16";
}

TEST(Compile, ContextLargerThanTheModelIsRefused) {
  auto o = opts(tiny("q8_0"), "too_long.plan");
  o.ctx = 1 << 30;
  try {
    compile::compile_model(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("--ctx"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out_path));
}

TEST(Compile, UnknownTargetNamesTheSupportedOnes) {
  try {
    compile::resolve_target("sm_61");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sm_90"), std::string::npos) << e.what();
  }
  EXPECT_EQ(compile::resolve_target("sm_86"), 86);
}

// Gemma 3 is a real model kiln does not support yet: the error names the
// architecture and what is supported, and an existing plan is left untouched.
TEST(Compile, UnsupportedArchitectureKeepsExistingPlan) {
  // A GGUF of an architecture kiln has no frontend for (Gemma 3 was the
  // real-model example here until kiln learnt it).
  const fs::path mamba = scratch() / "mamba.gguf";
  {
    gguf::Writer w;
    w.add_string("general.architecture", "mamba");
    w.write(mamba.string());
  }
  auto o = opts(mamba, "existing.plan");
  { std::ofstream(o.out_path) << "precious"; }
  try {
    compile::compile_model(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    std::string msg = e.what();
    EXPECT_NE(msg.find("'mamba' is not supported"), std::string::npos) << msg;
    EXPECT_NE(msg.find("llama"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gemma3"), std::string::npos) << msg;
  }
  std::ifstream in(o.out_path);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "precious");
}

// Without a GPU, loading a plan verifies it and then says plainly that running needs a GPU.
TEST(Compile, LoadingWithoutGpuSaysSo) {
  std::string why;
  if (rt::cuda::probe_device(0, &why)) GTEST_SKIP() << "a GPU is present: tests/gpu covers loading";
  auto o = opts(tiny("q8_0"), "nogpu.plan");
  compile::compile_model(o);
  try {
    rt::Model::load(o.out_path, {});
    FAIL() << "expected an error";
  } catch (const rt::Error& e) {
    EXPECT_EQ(e.code(), rt::ErrorCode::kDevice);
    EXPECT_NE(std::string(e.what()).find("need an NVIDIA GPU"), std::string::npos) << e.what();
  }
}

// Programs read q4_0/q4_1/q8_0/q4_K/q6_K weights whose rows fit repacked into
// "planes" (codegen.h; the default layout), compiled and eager alike, from one
// blob per source. Every planes blob unpacks to exactly the GGUF bytes of its
// source tensors; --weight-layout ggml keeps every blob in GGUF blocks.
TEST(Compile, CompiledWeightsAreRepackedIntoPlanes) {
  {
    auto o = opts(tiny("q8_0"), "tiny_ggml_layout.plan");
    o.weight_layout = "ggml";
    ASSERT_NO_THROW(compile::compile_model(o));
    rt::Plan plan = rt::Plan::load(o.out_path);
    for (const auto* w : plan.weights()) EXPECT_EQ(w->layout()->str(), codegen::kLayoutGgml) << w->name()->str();
  }
  for (const std::string t : {"q8_0", "q4_1", "q4_k_m", "q4_0"}) {
    auto o = opts(tiny(t), "tiny_planes_" + t + ".plan");
    ASSERT_EQ(o.weight_layout, "planes") << "the default";
    ASSERT_NO_THROW(compile::compile_model(o)) << t;
    rt::Plan plan = rt::Plan::load(o.out_path);
    gguf::File gf = gguf::File::open(tiny(t).string());
    int planes = 0;
    std::set<std::string> names;
    for (const auto* w : plan.weights()) {
      const std::string layout = w->layout()->str(), name = w->name()->str();
      EXPECT_EQ(name.find('@'), std::string::npos) << name << ": a source stored twice";
      EXPECT_TRUE(names.insert(name).second) << name;
      const std::string source = name;
      const auto dt = ir::dtype_from_name(w->dtype()->str());
      ASSERT_TRUE(dt.has_value()) << name;
      EXPECT_TRUE(codegen::layout_supported(*dt, layout)) << name << " " << layout;
      if (layout == codegen::kLayoutGgml) continue;
      ++planes;
      ASSERT_EQ(w->shape()->size(), 2u) << name;
      const int64_t rows = w->shape()->Get(0), K = w->shape()->Get(1);
      EXPECT_TRUE(codegen::layout_fits(*dt, layout, K)) << name;
      EXPECT_EQ(w->size(), ir::row_bytes(*dt, K) * static_cast<uint64_t>(rows)) << name;
      std::vector<uint8_t> gg;  // the source tensors' GGUF bytes, concatenated
      size_t start = 0;
      while (true) {
        const size_t p = source.find('+', start);
        const auto* ti = gf.find_tensor(source.substr(start, p == std::string::npos ? p : p - start));
        ASSERT_NE(ti, nullptr) << source;
        gg.insert(gg.end(), ti->data, ti->data + ti->n_bytes);
        if (p == std::string::npos) break;
        start = p + 1;
      }
      const auto bytes = plan.weight_bytes(*w);
      ASSERT_EQ(bytes.size(), gg.size()) << name;
      std::vector<uint8_t> back(gg.size());
      codegen::unpack(*dt, layout, rows, K, bytes.data(), back.data());
      EXPECT_TRUE(back == gg) << name << ": planes blob does not unpack to the GGUF bytes";
      EXPECT_FALSE(std::vector<uint8_t>(bytes.begin(), bytes.end()) == gg) << name;
    }
    EXPECT_GT(planes, 0) << t;
    // Every program's weight pointers land inside a blob (eager ones in views of fused blobs).
    for (const auto* p : plan.programs())
      for (const auto* l : *p->launches())
        for (const auto* a : *l->args()) {
          if (a->kind() != fb::ArgKind::Ptr || a->region() != fb::Region::Weights) continue;
          const fb::WeightBlob* blob = nullptr;
          for (const auto* w : plan.weights())
            if (a->offset() >= w->offset() && a->offset() < w->offset() + w->size()) blob = w;
          EXPECT_NE(blob, nullptr) << l->label()->str();
        }
  }
}

// Every output-changing option is recorded in the plan and shown by
// `kiln inspect` (rt::describe): two compiles that differ only in
// --weight-layout record different options and hold different weights.
TEST(Compile, CompileOptionsAreRecordedAndInspectShowsThem) {
  std::map<std::string, std::string> described;
  std::map<std::string, uint64_t> weights_hash;
  for (const std::string layout : {"ggml", "planes"}) {
    auto o = opts(tiny("q8_0"), "tiny_options_" + layout + ".plan");
    o.weight_layout = layout;
    o.command_line = "kiln compile tiny.gguf --weight-layout " + layout;
    compile::compile_model(o);
    rt::Plan plan = rt::Plan::load(o.out_path);
    EXPECT_TRUE(plan.format_major() > 1 || plan.format_minor() >= 1);  // 1.1: Plan.compile_options
    const fb::CompileOptionsRecord* r = plan.root().compile_options();
    ASSERT_NE(r, nullptr) << layout;
    EXPECT_EQ(r->weight_layout()->str(), layout);
    EXPECT_EQ(r->target_sm(), 90u);
    EXPECT_EQ(r->context_length(), 256u);
    EXPECT_EQ(r->max_tokens(), 64u);
    ASSERT_NE(r->buckets(), nullptr);
    EXPECT_EQ(std::vector<uint32_t>(r->buckets()->begin(), r->buckets()->end()), (std::vector<uint32_t>{16, 64}));
    EXPECT_TRUE(r->eager());
    EXPECT_EQ(r->disabled_passes()->size(), 0u);
    EXPECT_EQ(r->command_line()->str(), o.command_line);
    described[layout] = rt::describe(plan);
    weights_hash[layout] = plan.header().weights_hash;
  }
  EXPECT_NE(described["ggml"].find("weight layout ggml"), std::string::npos) << described["ggml"];
  EXPECT_NE(described["planes"].find("weight layout planes"), std::string::npos) << described["planes"];
  EXPECT_EQ(described["ggml"].find("weight layout planes"), std::string::npos);
  EXPECT_NE(described["planes"].find("--weight-layout planes"), std::string::npos);
  EXPECT_NE(described["ggml"].find("context       256 (max tokens 64; prefill buckets 16, 64)"), std::string::npos)
      << described["ggml"];
  EXPECT_NE(weights_hash["ggml"], weights_hash["planes"]);

  // --no-eager and --disable-pass are recorded too.
  auto o = opts(tiny("q8_0"), "tiny_options_noeager.plan");
  o.eager = false;
  o.pipeline.disable = {"fuse-residual"};
  compile::compile_model(o);
  rt::Plan plan = rt::Plan::load(o.out_path);
  const fb::CompileOptionsRecord* r = plan.root().compile_options();
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(r->eager());
  ASSERT_EQ(r->disabled_passes()->size(), 1u);
  EXPECT_EQ(r->disabled_passes()->Get(0)->str(), "fuse-residual");
  const std::string d = rt::describe(plan);
  EXPECT_NE(d.find("eager         no (--no-eager)"), std::string::npos) << d;
  EXPECT_NE(d.find("disabled      fuse-residual"), std::string::npos) << d;
}

// --kv-type: the KV-cache states take that dtype, so f16 and bf16 caches are half
// the f32 one in the plan's arena and memory budget; the choice is recorded
// (format 1.2) and shown by `kiln inspect`; anything else is refused up front.
TEST(Compile, KvTypeHalvesTheCacheAndIsRecorded) {
  std::map<std::string, uint64_t> cache_bytes, budget_kv, report_kv;
  uint64_t scratch_bytes = 0;
  for (const std::string kv : {"f32", "f16", "bf16"}) {
    auto o = opts(tiny("q8_0"), "tiny_kv_" + kv + ".plan");
    o.kv_type = kv;
    const auto rep = compile::compile_model(o);
    rt::Plan plan = rt::Plan::load(o.out_path);
    EXPECT_TRUE(plan.format_major() > 1 || plan.format_minor() >= 2);  // 1.2: CompileOptionsRecord.kv_type
    const fb::CompileOptionsRecord* r = plan.root().compile_options();
    ASSERT_NE(r, nullptr);
    ASSERT_NE(r->kv_type(), nullptr);
    EXPECT_EQ(r->kv_type()->str(), kv);
    for (const auto* s : *plan.arena().kv()) {
      if (s->name()->str() == "attn_split_scratch") scratch_bytes = s->size();
      else cache_bytes[kv] += s->size();
    }
    budget_kv[kv] = plan.budget().kv_bytes();
    report_kv[kv] = rep.kv_bytes;
    const std::string d = rt::describe(plan);
    EXPECT_NE(d.find("kv type       " + kv), std::string::npos) << d;
  }
  const rt::Plan f16_plan = rt::Plan::load((scratch() / "tiny_kv_f16.plan").string());
  const auto& m = f16_plan.model();
  EXPECT_EQ(cache_bytes["f32"], 2ull * m.n_layers() * 256 * m.n_kv_heads() * m.head_dim() * 4);
  EXPECT_EQ(cache_bytes["f16"] * 2, cache_bytes["f32"]);
  EXPECT_EQ(cache_bytes["bf16"], cache_bytes["f16"]);
  EXPECT_GT(scratch_bytes, 0u);
  // the budget counts every state, the caches (halved) and the scratch; the compile
  // report's "KV cache" is their span in the arena (256-byte aligned slots)
  for (const std::string kv : {"f32", "f16", "bf16"}) {
    EXPECT_EQ(budget_kv[kv], cache_bytes[kv] + scratch_bytes) << kv;
    EXPECT_GE(report_kv[kv], budget_kv[kv]) << kv;
    EXPECT_LT(report_kv[kv], budget_kv[kv] + 256 * (2 * m.n_layers() + 1)) << kv;
  }
  EXPECT_LT(budget_kv["f16"], budget_kv["f32"] * 0.6);

  auto o = opts(tiny("q8_0"), "bad_kv.plan");
  o.kv_type = "f8";
  try {
    compile::compile_model(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("--kv-type 'f8'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("f16, bf16, f32"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(o.out_path));
}

TEST(Compile, UnknownWeightLayoutIsRefused) {
  auto o = opts(tiny("q8_0"), "bad_layout.plan");
  o.weight_layout = "tiles";
  try {
    compile::compile_model(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("--weight-layout 'tiles'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ggml, planes"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(o.out_path));
}

namespace kiln {
namespace {

// Prefill programs run their matmuls as cuBLASLt GEMMs on tensor cores (format
// 2.0 Launch.gemm) and attention as flash attention; decode programs keep their
// GEMVs. --disable-pass tensor-core-gemm restores the CUDA-core prefill.
TEST(Compile, PrefillGemmsOnTensorCores) {
  for (const bool disable : {false, true}) {
    auto o = opts(tiny("q4_k_m"), disable ? "tiny_no_tc.plan" : "tiny_tc.plan");
    if (disable) o.pipeline.disable = {"tensor-core-gemm"};
    compile::compile_model(o);
    rt::Plan plan = rt::Plan::load(o.out_path);
    int gemms_prefill = 0, gemms_decode = 0, flash = 0;
    for (const auto* p : plan.programs()) {
      const bool compiled_prefill = p->mode() == fb::ProgramMode::Compiled && p->phase() == fb::Phase::Prefill;
      for (const auto* l : *p->launches()) {
        if (l->gemm()) {
          (compiled_prefill ? gemms_prefill : gemms_decode)++;
          EXPECT_EQ(l->gemm()->m(), p->bucket()) << "a GEMM covers the program's bucket";
          EXPECT_EQ(l->gemm()->ab_type(), 1u) << "q4_k_m weights are dequantised to f16";
        } else if (std::string(plan.kernels().Get(l->kernel())->entry()->c_str()).rfind("kiln_flash_attention", 0) == 0) {
          EXPECT_TRUE(compiled_prefill) << p->name()->str();
          ++flash;
        }
      }
    }
    EXPECT_EQ(gemms_decode, 0) << "decode and eager programs never run GEMMs";
    if (disable) {
      EXPECT_EQ(gemms_prefill, 0);
      EXPECT_EQ(plan.arena().gemm_workspace_size(), 0u);
    } else {
      EXPECT_GT(gemms_prefill, 0);
      EXPECT_GT(plan.arena().gemm_workspace_size(), 0u);
    }
    // tiny: head_dim 64 and an f16 cache, so prefill attention is flash attention either way
    EXPECT_GT(flash, 0);
  }
}

// Pass names are checked against both pipelines (default and prefill) before
// any work, with the pipeline's own message; "all" only makes sense for dumps.
TEST(Compile, PassNamesCheckedAcrossBothPipelines) {
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"nope"}, std::vector<std::string>{"all"}}) {
    auto o = opts(tiny("q8_0"), "tiny_bad_pass.plan");
    o.pipeline.disable = bad;
    try {
      compile::compile_model(o);
      ADD_FAILURE() << "--disable-pass " << bad[0] << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("tensor-core-gemm"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kiln
