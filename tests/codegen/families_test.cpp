// Kernel families (codegen/family.h) and the ABI they share with the host:
// every node is taken by exactly one family, launch geometry comes from
// kernels/launch.h, each kernel file compiles on its own (it #includes what it
// uses), and NVRTC sees the KilnStep layout the host sees. No GPU needed.
#include <gtest/gtest.h>

#include <cstddef>
#include <regex>
#include <set>
#include <vector>
#include <string>

#include "codegen/codegen.h"
#include "codegen/kernels/launch.h"
#include "schemas/kiln_step.h"
#include "tests/codegen/op_cases.h"

namespace kiln::codegen {
namespace {
using testcases::OpCase;

bool is_fused(ir::OpKind k) {
  return k == ir::OpKind::RmsMatMul || k == ir::OpKind::MatMulAdd || k == ir::OpKind::RmsMatMulSwiGlu ||
         k == ir::OpKind::RopeStore || k == ir::OpKind::LmHeadSample || k == ir::OpKind::RmsMatMulRopeStore;
}

TEST(Families, ExactlyOneFamilySelectsEveryNode) {
  std::set<std::string> seen;
  auto cases = testcases::all_cases({1, 3, 4, 5, 20}, 20);
  for (auto& c : testcases::tensor_core_cases({16, 512}, 20)) cases.push_back(std::move(c));
  for (auto& c : testcases::window_split_cases()) cases.push_back(std::move(c));
  for (auto& c : testcases::lm_head_item_cases()) cases.push_back(std::move(c));
  for (const OpCase& c : cases) {
    const ir::Node& n = c.g.nodes()[0];
    for (ProgramMode mode : {ProgramMode::Eager, ProgramMode::Compiled}) {
      if (mode == ProgramMode::Eager && (is_fused(n.op) || c.compiled_only)) continue;
      const auto fams = selecting_families(c.g, n, {c.bucket}, Target{90}, mode);
      ASSERT_EQ(fams.size(), 1u) << c.name << " " << program_mode_name(mode) << ": " << fams.size() << " families";
      seen.insert(fams[0]);
    }
  }
  // every family of codegen/families/ takes part
  EXPECT_EQ(seen, (std::set<std::string>{"gemv", "tiled", "embed", "elementwise", "rope", "attention", "sampling",
                                         "convert", "gemm", "flash_attention"}));
}

// The GEMV/tiled choice is the GEMV family's predicate: compiled programs use
// the GEMV up to kGemvMaxTokens rows, eager programs only for one row.
TEST(Families, GemvPredicateFollowsLaunchHeader) {
  for (int64_t b : {int64_t{1}, int64_t{launch::kGemvMaxTokens}, int64_t{launch::kGemvMaxTokens + 1}, int64_t{64}}) {
    const OpCase c = testcases::matmul_case(ir::OpKind::MatMul, ir::DType::Q8_0, b, ir::DType::F32, 256, 64);
    const ir::Node& n = c.g.nodes()[0];
    const auto comp = selecting_families(c.g, n, {b}, Target{90}, ProgramMode::Compiled);
    const auto eager = selecting_families(c.g, n, {b}, Target{90}, ProgramMode::Eager);
    ASSERT_EQ(comp.size(), 1u);
    ASSERT_EQ(eager.size(), 1u);
    EXPECT_EQ(comp[0], b <= launch::kGemvMaxTokens ? "gemv" : "tiled") << b;
    EXPECT_EQ(eager[0], b == 1 ? "gemv" : "tiled") << b;
  }
}

// The block size a kernel is launched with is the one it was compiled for
// (__launch_bounds__), and both come from launch.h.
TEST(Families, LaunchBoundsMatchLaunchGeometry) {
  const std::set<uint32_t> from_header = {launch::kGemvThreads, launch::kTiledThreads, launch::kRowThreads,
                                          launch::kElementwiseThreads, launch::kRopeThreads, launch::kAttThreads,
                                          launch::kSampleThreads};
  for (const OpCase& c : testcases::all_cases({1, 20}, 20)) {
    const ir::Node& n = c.g.nodes()[0];
    const Lowered l = lower(c.g, n, {c.bucket}, Target{90, c.weight_layout}, ProgramMode::Compiled);
    // __launch_bounds__(block) or (block, min blocks per SM)
    const std::regex bounds("__launch_bounds__\\(" + std::to_string(l.block[0]) + "(, [1-9][0-9]*)?\\) " +
                            l.kernel.entry + "\\(");
    EXPECT_TRUE(std::regex_search(l.kernel.source, bounds)) << c.name;
    // sm_90's bulk-copy GEMV sizes its blocks itself (gemv_bulk_geometry: 32..512 threads)
    if (std::regex_search(l.kernel.entry, std::regex("_b[0-9]+x[0-9](k[0-9])?_"))) {
      EXPECT_TRUE(l.block[0] == 32 || l.block[0] == 64 || l.block[0] == 128 || l.block[0] == 256 ||
                  l.block[0] == 512)
          << c.name;
      continue;
    }
    EXPECT_TRUE(from_header.count(l.block[0])) << c.name << " block " << l.block[0];
  }
}

// A compiled kernel's source is #include lines and its extern "C" wrapper:
// the kernel files reach NVRTC as headers, not pasted text.
TEST(Families, SourcesIncludeKernelHeaders) {
  const OpCase c = testcases::matmul_case(ir::OpKind::RmsMatMul, ir::DType::Q4_K, 1, ir::DType::F32, 256, 64);
  const Lowered l = lower(c.g, c.g.nodes()[0], {1}, Target{90}, ProgramMode::Compiled);
  EXPECT_NE(l.kernel.source.find("#include \"gemv.cuh\""), std::string::npos) << l.kernel.source;
  EXPECT_EQ(l.kernel.source.find("template <int DT"), std::string::npos) << "kernel file text pasted into the source";
  EXPECT_LT(l.kernel.source.size(), 1000u);
}

// Every kernel file compiles on its own: it #includes everything it uses.
TEST(Families, EveryKernelFileIsSelfContained) {
  for (std::string_view name : kernel_file_names()) {
    KernelSource k;
    k.entry = "kiln_self_contained";
    k.source = "#include \"" + std::string(name) + "\"\n#include \"" + std::string(name) +
               "\"  // twice: include guards\nextern \"C\" __global__ void kiln_self_contained() {}\n";
    k.options = {"-std=c++17"};
    k.hash = 0;
    EXPECT_NO_THROW(compile(k, 90, "")) << name;
  }
}

// sm_90's bulk-copy GEMV reads the RMS gain before its PDL wait only when
// the gain is a weight (a constant): an activation gain is written by an
// earlier kernel and may be read only after the wait (the memory planner
// reuses arena buffers).
TEST(Families, BulkGemvReadsTheGainEarlyOnlyWhenItIsAWeight) {
  OpCase c = testcases::matmul_case(ir::OpKind::RmsMatMulSwiGlu, ir::DType::Q4_K, 1, ir::DType::F32, 4096, 14336);
  c.g.nodes()[0].attrs["x_q8"] = int64_t{1};
  const Target t{90, "planes"};
  const Lowered w = lower(c.g, c.g.nodes()[0], {1}, t, ProgramMode::Compiled);
  ASSERT_NE(w.kernel.source.find("mm_gemv_bulk<"), std::string::npos) << "expected the bulk-copy GEMV";
  EXPECT_NE(w.kernel.source.find(", true>("), std::string::npos) << w.kernel.source;
  const ir::ValueId gain = c.g.nodes()[0].inputs[1];
  ASSERT_EQ(c.g.value(gain).kind, ir::ValueKind::Weight);
  c.g.value(gain).kind = ir::ValueKind::Temp;
  const Lowered a = lower(c.g, c.g.nodes()[0], {1}, t, ProgramMode::Compiled);
  EXPECT_NE(a.kernel.source.find(", false>("), std::string::npos) << a.kernel.source;
  EXPECT_NE(a.kernel.entry, w.kernel.entry);
}

// NVRTC and the host compiler agree on every KilnStep offset. NVRTC has no
// constant offsetof, so a kernel stores a distinct value into each field and
// the byte offsets of those stores are read back from the PTX.
TEST(Families, KilnStepLayoutAgreesOnDevice) {
  struct Field {
    const char* name;
    size_t host_offset;
    const char* store;  // the device statement storing parameter v (+ a distinct constant)
  };
  const std::vector<Field> fields = {
      {"n_tokens", offsetof(KilnStep, n_tokens), "s->n_tokens = v + 1;"},
      {"pos0", offsetof(KilnStep, pos0), "s->pos0 = v + 2;"},
      {"temperature", offsetof(KilnStep, temperature), "s->temperature = (float)v + 3.f;"},
      {"top_k", offsetof(KilnStep, top_k), "s->top_k = v + 4;"},
      {"top_p", offsetof(KilnStep, top_p), "s->top_p = (float)v + 5.f;"},
      {"seed_lo", offsetof(KilnStep, seed_lo), "s->seed_lo = v + 6;"},
      {"seed_hi", offsetof(KilnStep, seed_hi), "s->seed_hi = v + 7;"},
      {"step", offsetof(KilnStep, step), "s->step = v + 8;"},
      {"out_token", offsetof(KilnStep, out_token), "s->out_token = v + 9;"},
      {"sample_done", offsetof(KilnStep, sample_done), "s->sample_done = v + 10;"},
      {"greedy_key", offsetof(KilnStep, greedy_key), "s->greedy_key = (unsigned long long)v << 33;"},
      {"ring", offsetof(KilnStep, ring), "s->ring = v + 12;"},
      {"reserved", offsetof(KilnStep, reserved), "s->reserved = v + 13;"},
      {"host_tokens", offsetof(KilnStep, host_tokens), "s->host_tokens = (unsigned long long)v << 34;"},
  };
  std::set<size_t> want;
  std::string body;
  for (const auto& f : fields) {
    want.insert(f.host_offset);
    body += "  " + std::string(f.store) + "\n";
  }
  KernelSource k{"kiln_step_layout",
                 "#include \"kiln_step.h\"\nextern \"C\" __global__ void kiln_step_layout(volatile kiln::KilnStep* s, int v) {\n" +
                     body + "}\n",
                 {"-std=c++17"}, 0};
  const CompiledKernel ck = compile(k, 90, "");
  // st.volatile.global.u32 [%rd1+4], %r2;  (volatile: one store per field; offset 0 has no "+N")
  std::set<size_t> got;
  const std::regex st(R"(st(?:\.global)?\.[a-z0-9.]+\s+\[%rd\d+(?:\+(\d+))?\])");
  for (auto it = std::sregex_iterator(ck.ptx.begin(), ck.ptx.end(), st); it != std::sregex_iterator(); ++it)
    got.insert((*it)[1].matched ? std::stoul((*it)[1].str()) : 0);
  EXPECT_EQ(got, want) << ck.ptx;
  EXPECT_EQ(sizeof(KilnStep), 64u);
}

}  // namespace
}  // namespace kiln::codegen
