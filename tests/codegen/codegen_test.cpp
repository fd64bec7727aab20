// codegen tests (no GPU): targets, lowering launch configs, unsupported
// inputs, the NVRTC kernel cache, and NVRTC compilation of every kernel
// variant (op x dtype x mode) for every supported SM.
#include "codegen/codegen.h"
#include "codegen/kernels/launch.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "tests/codegen/op_cases.h"

namespace kiln::codegen {
namespace {
namespace fs = std::filesystem;
using testcases::OpCase;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("kiln_codegen_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static std::atomic<int>& counter() {
    static std::atomic<int> c{0};
    return c;
  }
};

TEST(Codegen, ParseTarget) {
  EXPECT_EQ(parse_target("sm_90"), 90);
  EXPECT_EQ(parse_target("sm_75"), 75);
  for (int sm : supported_sms()) EXPECT_EQ(parse_target("sm_" + std::to_string(sm)), sm);
  for (const char* bad : {"sm_70", "sm_", "90", "compute_90", "sm_9x", "sm_100000000000"}) {
    try {
      parse_target(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("sm_90"), std::string::npos) << e.what();
    }
  }
}

TEST(Codegen, EmbeddedKernelFiles) {
  EXPECT_NE(kernel_file("kiln_step.h").find("struct KilnStep"), std::string_view::npos);
  EXPECT_NE(kernel_file("common.cuh").find("#include \"kiln_step.h\""), std::string_view::npos);
  EXPECT_NE(kernel_file("launch.h").find("kGemvWarps"), std::string_view::npos);
  EXPECT_NE(kernel_file("dequant.cuh").find("deq8"), std::string_view::npos);
  EXPECT_THROW(kernel_file("nope.cuh"), Error);
}

// Counts the parameters declared in the entry's signature in the source.
size_t signature_params(const KernelSource& k) {
  const std::string needle = " " + k.entry + "(";
  const size_t at = k.source.find(needle);
  if (at == std::string::npos) return static_cast<size_t>(-1);
  const size_t open = at + needle.size(), close = k.source.find(')', open);
  const std::string sig = k.source.substr(open, close - open);
  if (sig.find_first_not_of(' ') == std::string::npos) return 0;
  return static_cast<size_t>(std::count(sig.begin(), sig.end(), ',')) + 1;
}

bool is_fused(ir::OpKind k) {
  return k == ir::OpKind::RmsMatMul || k == ir::OpKind::MatMulAdd || k == ir::OpKind::RmsMatMulSwiGlu ||
         k == ir::OpKind::RopeStore || k == ir::OpKind::LmHeadSample || k == ir::OpKind::RmsMatMulRopeStore;
}

TEST(Codegen, LowerLaunchConfigsAreSane) {
  int lowered = 0;
  auto cases = testcases::all_cases({1, 3, 20}, 20);
  for (auto& c : testcases::tensor_core_cases({16, 512}, 20)) cases.push_back(std::move(c));
  for (auto& c : testcases::window_split_cases()) cases.push_back(std::move(c));
  for (auto& c : testcases::lm_head_item_cases()) cases.push_back(std::move(c));
  for (const OpCase& c : cases) {
    const ir::Node& n = c.g.nodes()[0];
    for (ProgramMode mode : {ProgramMode::Eager, ProgramMode::Compiled}) {
      SCOPED_TRACE(c.name + (mode == ProgramMode::Eager ? " eager" : " compiled"));
      if (mode == ProgramMode::Eager && c.compiled_only) continue;
      if (mode == ProgramMode::Eager && is_fused(n.op)) {
        try {
          lower(c.g, n, {c.bucket}, Target{90, c.weight_layout}, mode);
          ADD_FAILURE() << "fused op lowered in eager mode";
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
        }
        continue;
      }
      const Lowered l = lower(c.g, n, {c.bucket}, Target{90, c.weight_layout}, mode);
      ++lowered;
      if (l.gemm) {  // a cuBLASLt GEMM: no kernel; params x, w, [r,] y
        EXPECT_TRUE(l.kernel.entry.empty());
        EXPECT_EQ(l.params.size(), l.gemm->residual ? 4u : 3u);
        EXPECT_EQ(l.gemm->m, c.bucket);
        EXPECT_EQ(l.params.back().kind, ParamKind::Output);
        continue;
      }
      EXPECT_GE(l.block[0], 32u);
      EXPECT_LE(l.block[0] * l.block[1] * l.block[2], 1024u);
      EXPECT_EQ(l.block[0] % 32, 0u);
      for (int i = 0; i < 3; ++i) EXPECT_GE(l.grid[static_cast<size_t>(i)], 1u);
      EXPECT_LE(l.grid[1], 65535u);
      EXPECT_LE(l.grid[2], 65535u);
      // dynamic shared memory: only the int8-activation GEMVs (x_q8), sized
      // for the block's quantised x (codegen gemv_xq_smem), within the
      // 48 KiB a launch gets without raising the function's limit, and the
      // bulk-copy GEMVs (int8 x, or f32 x on f16/bf16 weights) with their row
      // buffers, within an sm_90 block's 227 KiB and leaving room for the
      // reserved 1 KiB per block
      const bool xq = n.attrs.count("x_q8") && n.attr_int("x_q8") == 1;
      std::smatch bm;
      const bool bulk = std::regex_search(l.kernel.entry, bm, std::regex("_b([0-9]+)x([0-9])(?:k([0-9]))?_"));
      if (xq || bulk) {  // (bulk without x_q8: f16/bf16 weights, f32 x in shared memory)
        EXPECT_GT(l.smem, 0u) << c.name;
        EXPECT_LE(l.smem, (bulk ? 226u : 48u) * 1024u) << c.name;
      } else {
        EXPECT_EQ(l.smem, 0u) << c.name;
      }
      int steps = 0;
      for (const Param& p : l.params) {
        switch (p.kind) {
          case ParamKind::Input:
            EXPECT_GE(p.index, 0);
            EXPECT_LT(static_cast<size_t>(p.index), n.inputs.size());
            break;
          case ParamKind::Output:
            EXPECT_GE(p.index, 0);
            EXPECT_LT(static_cast<size_t>(p.index), n.outputs.size());
            break;
          case ParamKind::Step: ++steps; break;
          default: break;
        }
      }
      EXPECT_EQ(steps, 1) << "every kernel reads KilnStep";
      EXPECT_EQ(signature_params(l.kernel), l.params.size()) << l.kernel.entry;
      // compiled kernels carry no shape scalars; eager ones carry them as params
      if (mode == ProgramMode::Compiled) {
        for (const Param& p : l.params) EXPECT_TRUE(p.kind != ParamKind::I32 && p.kind != ParamKind::F32);
      }
      // the grid covers every token row and output column
      const ir::Value& out = c.g.value(n.outputs[0]);
      if (n.op == ir::OpKind::MatMul || n.op == ir::OpKind::RmsMatMul || n.op == ir::OpKind::MatMulAdd ||
          n.op == ir::OpKind::RmsMatMulSwiGlu) {
        const int64_t N = out.shape[1].value;
        const bool gemv = l.block[0] == 128;
        if (bulk && l.kernel.entry.find("_parts_") != std::string::npos) {
          // several weights: each part's bulk GEMV on its own contiguous
          // range of blocks (GemvSlice{b0, nb, ldy}), the ranges covering the
          // grid, every block of a part with at least one item of R columns
          const std::regex part(
              "mm_gemv_bulk<[A-Z0-9_]+, [A-Z0-9_]+, [0-9]+, [0-9]+, ([0-9]+), ([0-9]+), [01], ([0-9]+), "
              "(?:true|false)>\\(.*?, ([0-9]+), __int_as_float\\(0x[0-9a-f]+\\), nullptr, "
              "GemvSlice\\{([0-9]+), ([0-9]+), ([0-9]+)\\}");
          int64_t b0 = 0, cols = 0, parts = 0;
          std::string src = l.kernel.source;
          for (std::smatch pm; std::regex_search(src, pm, part); src = pm.suffix(), ++parts) {
            const int R = std::stoi(pm[1]), S = std::stoi(pm[2]), KS = std::stoi(pm[3]);
            const int64_t Np = std::stoll(pm[4]), nb = std::stoll(pm[6]);
            EXPECT_GE(S, 2) << l.kernel.entry;
            EXPECT_EQ(std::stoll(pm[5]), b0) << l.kernel.entry;
            EXPECT_EQ(std::stoll(pm[7]), N) << l.kernel.entry;
            EXPECT_LT((nb - 1) * (int64_t(l.block[0] / 32) / KS), (Np + R - 1) / R) << l.kernel.entry;
            b0 += nb;
            cols += Np;
          }
          EXPECT_EQ(parts, int64_t(n.inputs.size()) - 2) << l.kernel.source;
          EXPECT_EQ(b0, int64_t(l.grid[0])) << l.kernel.entry;
          EXPECT_EQ(cols, N) << l.kernel.entry;
        } else if (bulk) {
          // W warps per block in groups of KS ("k<KS>", default 1), S >= 2 row
          // buffers per group; every group of the grid takes the same number
          // of columns (one per item), and no block is idle
          const int W = std::stoi(bm[1]), S = std::stoi(bm[2]), KS = bm[3].matched ? std::stoi(bm[3]) : 1;
          EXPECT_EQ(l.block[0], 32u * W) << l.kernel.entry;
          EXPECT_GE(S, 2) << l.kernel.entry;
          EXPECT_EQ(W % KS, 0) << l.kernel.entry;
          const int64_t groups = int64_t(l.grid[0]) * W / KS, per_group = (N + groups - 1) / groups;
          EXPECT_LT((int64_t(l.grid[0]) - 1) * (W / KS) * per_group, N) << l.kernel.entry;
          EXPECT_LE(c.bucket, 4);
        } else if (gemv) {
          // 4 warps per block; a group of SPLIT warps computes R columns (entry "_r<R>", default 1)
          std::smatch m;
          const std::string& en = l.kernel.entry;
          const int rows = std::regex_search(en, m, std::regex("_r([0-9])_")) ? std::stoi(m[1]) : 1;
          const int split = std::regex_search(en, m, std::regex("_s([0-9])_")) ? std::stoi(m[1]) : 1;
          // (the int8 GEMV's grid stops at kGemvXqMaxBlocks, whose blocks loop over the rest)
          // (q8_0's, q4_K's and q6_K's stop at one wave of their 3 resident blocks per SM)
          // (a multi-weight kernel: the smallest budget of its parts)
          const bool wave = std::regex_search(en, std::regex("_(q8_0|q4_k|q6_k)_"));
          const uint32_t cap = wave ? uint32_t(launch::kGemvXqMaxBlocksWave) : uint32_t(launch::kGemvXqMaxBlocks);
          if (xq) {
            EXPECT_LE(l.grid[0], cap) << en;
          }
          if (!xq || l.grid[0] < cap) {
            EXPECT_GE(int64_t(l.grid[0]) * (4 / split) * rows, N) << en;
          }
          EXPECT_LE(c.bucket, 4);
        } else {
          EXPECT_GE(int64_t(l.grid[1]) * 16, c.bucket);
        }
      }
      if (n.op == ir::OpKind::Attention) {
        // the split-K variant exactly for compiled steps of <= 4 rows whose node has the scratch:
        // grid (KV heads, splits, rows); else one block per (head, token)
        const bool split = mode == ProgramMode::Compiled && n.inputs.size() == 5 && c.bucket <= 4;
        EXPECT_EQ(l.kernel.entry.find("kiln_attention_split_") == 0, split) << l.kernel.entry;
        if (split) {
          // on tensor cores (sm_90 here) exactly for f16 caches, head_dim 64, <= 8 heads per KV head,
          // no sliding window (a windowed node's split kernel is the CUDA-core one, "_win")
          const int64_t hd = n.attr_int("head_dim"), G = n.attr_int("n_heads") / n.attr_int("n_kv_heads");
          const bool win = n.attrs.count("window") && n.attr_int("window") > 0;
          const bool tc = c.g.value(n.inputs[1]).dtype == ir::DType::F16 && hd == 64 && G <= 8 && !win;
          EXPECT_EQ(l.kernel.entry.find("_win_") != std::string::npos, win) << l.kernel.entry;
          EXPECT_EQ(l.kernel.entry.find("kiln_attention_split_tc_") == 0, tc) << l.kernel.entry;
          EXPECT_EQ(l.block[0], uint32_t(tc ? launch::kAttSplitTcThreads : launch::kAttSplitThreads));
          const int64_t C = ir::resolve_dim(c.g, c.g.value(n.inputs[1]).shape[0], {c.bucket});
          EXPECT_EQ(l.grid[0], static_cast<uint32_t>(n.attr_int("n_kv_heads")));
          EXPECT_EQ(l.grid[1], static_cast<uint32_t>(attention_splits(n.attr_int("n_kv_heads"), c.bucket, C)));
          EXPECT_EQ(l.grid[2], static_cast<uint32_t>(c.bucket));
        } else if (l.kernel.entry.find("kiln_flash_attention_") == 0) {
          // prefill on tensor cores: compiled, f16 cache, > 4 rows; blocks of kFlashRows rows per head
          EXPECT_EQ(mode, ProgramMode::Compiled);
          EXPECT_GT(c.bucket, 4);
          EXPECT_EQ(l.grid[0], static_cast<uint32_t>((c.bucket + launch::kFlashRows - 1) / launch::kFlashRows));
          EXPECT_EQ(l.grid[1], static_cast<uint32_t>(n.attr_int("n_heads")));
        } else {
          EXPECT_EQ(l.grid[0], static_cast<uint32_t>(n.attr_int("n_heads")));
          EXPECT_EQ(l.grid[1], static_cast<uint32_t>(c.bucket));
        }
      }
    }
  }
  EXPECT_GT(lowered, 100);
}

TEST(Codegen, EagerKernelsShareOneModulePerDtype) {
  const auto cases = testcases::all_cases({1}, 4);
  std::map<std::string, std::set<uint64_t>> by_dtype;
  for (const OpCase& c : cases) {
    if (is_fused(c.g.nodes()[0].op) || c.compiled_only) continue;
    Lowered l = lower(c.g, c.g.nodes()[0], {c.bucket}, Target{80}, ProgramMode::Eager);
    by_dtype[testcases::dn(c.dtype)].insert(l.kernel.hash);
  }
  std::set<uint64_t> all;
  for (const auto& m : eager_modules()) all.insert(m.hash);
  for (const auto& [dt, hashes] : by_dtype) {
    EXPECT_LE(hashes.size(), dt == "f32" ? 1u : 2u) << dt;  // its own module (+ the f32 one for silu etc.)
    for (uint64_t h : hashes) EXPECT_TRUE(all.count(h)) << dt;
  }
}

TEST(Codegen, CompiledKernelsAreSharedAcrossIdenticalNodes) {
  // Two layers with the same shapes lower to one source.
  testcases::OpCase a = testcases::matmul_case(ir::OpKind::MatMul, ir::DType::Q4_1, 1);
  ir::Graph g = a.g;
  auto x2 = g.add_input("x2", ir::DType::F32, {testcases::tok(1), testcases::fx(160)});
  auto w2 = g.add_weight("w2", ir::DType::Q4_1, {testcases::fx(70), testcases::fx(160)}, "w2");
  g.add_node(ir::OpKind::MatMul, {x2, w2}, {}, "y2", ir::DType::F32, {testcases::tok(1), testcases::fx(70)});
  const Lowered l0 = lower(g, g.nodes()[0], {1}, Target{90}, ProgramMode::Compiled);
  const Lowered l1 = lower(g, g.nodes()[1], {1}, Target{90}, ProgramMode::Compiled);
  EXPECT_EQ(l0.kernel.hash, l1.kernel.hash);
  EXPECT_EQ(l0.kernel.entry, l1.kernel.entry);
  // a different bucket (decode vs prefill) is a different specialisation
  const Lowered l2 = lower(g, g.nodes()[0], {16}, Target{90}, ProgramMode::Compiled);
  EXPECT_NE(l0.kernel.hash, l2.kernel.hash);
}

// defer-attention-merge, as codegen carries it out: a deferring attention
// names its limit (DEFER) on either split kernel at head_dim 64 (tensor cores
// on sm_90; the CUDA-core kernel on sm_75, and at head_dim 256 on any SM) and
// its GEMV merges (AttXMerge, kGemvMergeWarps warps, the merged x's shared
// memory).
TEST(Codegen, DeferredAttentionMergeLowersOnBothSplitKernels) {
  auto layer = [](int64_t nh, int64_t hd) {
    const int64_t C = 1024, K = nh * hd;
    ir::Graph g = testcases::base_graph(1, C);
    auto q = g.add_input("q", ir::DType::F32, {testcases::tok(1), testcases::fx(K)});
    auto k = g.add_input("k", ir::DType::F16, {testcases::fx(C), testcases::fx(hd)});
    auto v = g.add_input("v", ir::DType::F16, {testcases::fx(C), testcases::fx(hd)});
    auto pos = g.add_input("pos", ir::DType::I32, {testcases::tok(1)});
    const int64_t n = attention_split_scratch_floats(nh, 1, hd, C);
    auto sc = g.add_state("scratch", ir::DType::F32, {testcases::fx(n)});
    ir::Attrs a = {{"n_heads", nh}, {"n_kv_heads", int64_t{1}}, {"head_dim", hd}, {"scale", 0.125},
                   {"defer_merge", int64_t{1}}};
    auto y = g.add_node(ir::OpKind::Attention, {q, k, v, pos, sc}, a, "y", ir::DType::F32,
                        {testcases::tok(1), testcases::fx(K)});
    ir::Value so;
    so.id = static_cast<ir::ValueId>(g.values().size());
    so.name = "scratch_out";
    so.dtype = ir::DType::F32;
    so.shape = {testcases::fx(n)};
    so.kind = ir::ValueKind::Temp;
    g.mutable_values().push_back(so);
    g.nodes()[0].outputs.push_back(so.id);
    auto w = g.add_weight("w", ir::DType::Q4_0, {testcases::fx(64), testcases::fx(K)}, "w");
    auto o = g.add_node(ir::OpKind::MatMul, {y, w, so.id}, {{"x_q8", int64_t{1}}, {"x_merge", int64_t{1}}}, "o",
                        ir::DType::F32, {testcases::tok(1), testcases::fx(64)});
    g.mark_output(o);
    ir::verify(g);
    return g;
  };
  {  // 4 heads of 64: x of 256 values, the tensor-core kernel, 16 splits deferred
    const ir::Graph g = layer(4, 64);
    const Lowered at = lower(g, g.nodes()[0], {1, 1024}, Target{90}, ProgramMode::Compiled);
    const Lowered mm = lower(g, g.nodes()[1], {1, 1024}, Target{90}, ProgramMode::Compiled);
    EXPECT_NE(at.kernel.source.find("k_attention_split_tc<64, 4, kAttSplitTcWarps, 1, 0, 16>("), std::string::npos)
        << at.kernel.source;
    EXPECT_NE(mm.kernel.source.find("AttXMerge<64>{"), std::string::npos) << mm.kernel.source;
    EXPECT_EQ(mm.block[0], 32u * launch::kGemvMergeWarps);
    EXPECT_GE(mm.smem, 256u * 4) << "the merged x's shared memory";
    // sm_75: no tensor-core split kernel; the CUDA-core one defers
    const Lowered at75 = lower(g, g.nodes()[0], {1, 1024}, Target{75}, ProgramMode::Compiled);
    const Lowered mm75 = lower(g, g.nodes()[1], {1, 1024}, Target{75}, ProgramMode::Compiled);
    EXPECT_EQ(at75.kernel.source.find("k_attention_split_tc"), std::string::npos);
    EXPECT_NE(at75.kernel.source.find("kAttSplitPrefetch, 1, 16>("), std::string::npos) << at75.kernel.source;
    EXPECT_NE(mm75.kernel.source.find("AttXMerge<64>{"), std::string::npos) << mm75.kernel.source;
  }
  {  // 4 heads of 256 (Gemma 3): x of 1024 values, the CUDA-core split kernel, 16 splits deferred
    const ir::Graph g = layer(4, 256);
    const Lowered at = lower(g, g.nodes()[0], {1, 1024}, Target{90}, ProgramMode::Compiled);
    const Lowered mm = lower(g, g.nodes()[1], {1, 1024}, Target{90}, ProgramMode::Compiled);
    EXPECT_EQ(at.kernel.source.find("k_attention_split_tc"), std::string::npos);
    EXPECT_NE(at.kernel.source.find("kAttSplitPrefetch, 1, 16>("), std::string::npos) << at.kernel.source;
    EXPECT_NE(mm.kernel.source.find("AttXMerge<256>{"), std::string::npos) << mm.kernel.source;
    EXPECT_GE(mm.smem, 1024u * 4) << "the merged x's shared memory";
  }
}

TEST(Codegen, UnsupportedInputsThrow) {
  auto code_of = [](auto&& fn) -> std::optional<ErrorCode> {
    try {
      fn();
    } catch (const Error& e) {
      EXPECT_FALSE(std::string(e.what()).empty());
      return e.code();
    }
    return std::nullopt;
  };
  {  // i32 weight
    ir::Graph g = testcases::base_graph(1);
    auto x = g.add_input("x", ir::DType::F32, {testcases::tok(1), testcases::fx(64)});
    auto w = g.add_weight("w", ir::DType::I32, {testcases::fx(8), testcases::fx(64)}, "w");
    g.add_node(ir::OpKind::MatMul, {x, w}, {}, "y", ir::DType::F32, {testcases::tok(1), testcases::fx(8)});
    for (ProgramMode m : {ProgramMode::Eager, ProgramMode::Compiled})
      EXPECT_EQ(code_of([&] { lower(g, g.nodes()[0], {1}, Target{90}, m); }), ErrorCode::kUnsupported);
  }
  {  // q4_k rows must hold whole 256-element super-blocks
    ir::Graph g = testcases::base_graph(1);
    auto x = g.add_input("x", ir::DType::F32, {testcases::tok(1), testcases::fx(160)});
    auto w = g.add_weight("w", ir::DType::Q4_K, {testcases::fx(8), testcases::fx(160)}, "w");
    g.add_node(ir::OpKind::MatMul, {x, w}, {}, "y", ir::DType::F32, {testcases::tok(1), testcases::fx(8)});
    EXPECT_EQ(code_of([&] { lower(g, g.nodes()[0], {1}, Target{90}, ProgramMode::Compiled); }), ErrorCode::kUnsupported);
  }
  {  // head_dim above 256
    ir::Graph g = testcases::base_graph(1);
    auto q = g.add_input("q", ir::DType::F32, {testcases::tok(1), testcases::fx(512)});
    auto k = g.add_input("k", ir::DType::F32, {testcases::fx(8), testcases::fx(512)});
    auto v = g.add_input("v", ir::DType::F32, {testcases::fx(8), testcases::fx(512)});
    auto p = g.add_input("pos", ir::DType::I32, {testcases::tok(1)});
    g.add_node(ir::OpKind::Attention, {q, k, v, p},
               {{"n_heads", int64_t(1)}, {"n_kv_heads", int64_t(1)}, {"head_dim", int64_t(512)}, {"scale", 0.1}},
               "y", ir::DType::F32, {testcases::tok(1), testcases::fx(512)});
    EXPECT_EQ(code_of([&] { lower(g, g.nodes()[0], {1}, Target{90}, ProgramMode::Compiled); }), ErrorCode::kUnsupported);
  }
  {  // lm_head_sample without its logits output
    testcases::OpCase c = testcases::lm_head_case(ir::DType::Q8_0, 1);
    c.g.nodes()[0].outputs.resize(1);
    EXPECT_EQ(code_of([&] { lower(c.g, c.g.nodes()[0], {1}, Target{90}, ProgramMode::Compiled); }), ErrorCode::kInvalidArgument);
  }
  {  // unsupported SM and bucket
    testcases::OpCase c = testcases::matmul_case(ir::OpKind::MatMul, ir::DType::Q8_0, 1);
    EXPECT_EQ(code_of([&] { lower(c.g, c.g.nodes()[0], {1}, Target{70}, ProgramMode::Compiled); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(code_of([&] { lower(c.g, c.g.nodes()[0], {0}, Target{90}, ProgramMode::Compiled); }), ErrorCode::kInvalidArgument);
  }
}

KernelSource tiny_kernel(const std::string& body_suffix = "") {
  KernelSource k;
  k.entry = "kiln_tiny";
  k.source = std::string(kernel_file("common.cuh")) +
             "extern \"C\" __global__ void kiln_tiny(float* y, const KilnStep* s) { if (threadIdx.x < s->n_tokens) "
             "y[threadIdx.x] = 2.f * y[threadIdx.x]; }\n" + body_suffix;
  k.options = {"-std=c++17"};
  k.hash = 0;
  return k;
}

TEST(Codegen, CacheHitMissAndCorruption) {
  TempDir dir;
  const KernelSource k = tiny_kernel();
  const uint64_t c0 = nvrtc_compile_count();
  const CompiledKernel a = compile(k, 90, dir.path.string());
  EXPECT_EQ(nvrtc_compile_count(), c0 + 1);  // miss
  ASSERT_GE(a.cubin.size(), 4u);
  EXPECT_EQ(a.cubin[0], 0x7f);
  EXPECT_EQ(a.cubin[1], 'E');
  EXPECT_NE(a.ptx.find(".entry kiln_tiny"), std::string::npos);
  const fs::path entry = dir.path / (cache_key(k, 90) + ".kc");
  ASSERT_TRUE(fs::exists(entry));
  for (const auto& f : fs::directory_iterator(dir.path))  // no temp files left behind
    EXPECT_EQ(f.path().extension(), ".kc") << f.path();

  const CompiledKernel b = compile(k, 90, dir.path.string());
  EXPECT_EQ(nvrtc_compile_count(), c0 + 1);  // hit
  EXPECT_EQ(a.cubin, b.cubin);
  EXPECT_EQ(a.ptx, b.ptx);

  // other SM, other options, other source: other keys (misses)
  EXPECT_NE(cache_key(k, 90), cache_key(k, 80));
  KernelSource k2 = k;
  k2.options.push_back("-lineinfo");
  EXPECT_NE(cache_key(k, 90), cache_key(k2, 90));
  compile(k, 80, dir.path.string());
  EXPECT_EQ(nvrtc_compile_count(), c0 + 2);

  // corruption: a flipped payload byte, then a truncated file, then garbage
  const auto size = fs::file_size(entry);
  for (int mode = 0; mode < 3; ++mode) {
    {
      std::fstream f(entry, std::ios::in | std::ios::out | std::ios::binary);
      ASSERT_TRUE(f);
      if (mode == 0) {
        f.seekg(static_cast<std::streamoff>(size - 10));
        char ch;
        f.read(&ch, 1);
        ch = static_cast<char>(ch ^ 0x5a);
        f.seekp(static_cast<std::streamoff>(size - 10));
        f.write(&ch, 1);
      }
    }
    if (mode == 1) fs::resize_file(entry, size / 2);
    if (mode == 2) std::ofstream(entry, std::ios::binary | std::ios::trunc) << "not a cache entry";
    const uint64_t before = nvrtc_compile_count();
    const CompiledKernel c = compile(k, 90, dir.path.string());
    EXPECT_EQ(nvrtc_compile_count(), before + 1) << "corrupt entry " << mode << " was used";
    EXPECT_EQ(c.cubin, a.cubin);
    EXPECT_EQ(fs::file_size(entry), size) << "entry rebuilt";
    compile(k, 90, dir.path.string());
    EXPECT_EQ(nvrtc_compile_count(), before + 1) << "rebuilt entry is a hit";
  }

  // no cache dir: always compiles; an unusable cache dir is not an error
  const uint64_t before = nvrtc_compile_count();
  compile(k, 90, "");
  EXPECT_EQ(nvrtc_compile_count(), before + 1);
  std::ofstream(dir.path / "file") << "x";
  EXPECT_NO_THROW(compile(k, 90, (dir.path / "file" / "sub").string()));
}

TEST(Codegen, CompileErrorCarriesNvrtcLog) {
  KernelSource k = tiny_kernel("this is not CUDA;\n");
  try {
    compile(k, 90, "");
    FAIL() << "bad source compiled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("error"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("kiln_tiny"), std::string::npos) << e.what();
  }
  EXPECT_THROW(compile(tiny_kernel(), 70, ""), Error);
}

TEST(Codegen, DefaultCacheDir) {
  const char* old = std::getenv("XDG_CACHE_HOME");
  const std::string saved = old ? old : "";
  ::setenv("XDG_CACHE_HOME", "/tmp/xdg_kiln_test", 1);
  EXPECT_EQ(default_cache_dir(), "/tmp/xdg_kiln_test/kiln/kernels");
  if (old) ::setenv("XDG_CACHE_HOME", saved.c_str(), 1);
  else ::unsetenv("XDG_CACHE_HOME");
}

// Split-K decode attention: the split count rule (kernels/launch.h) and the
// scratch size the split-decode-attention pass allocates.
TEST(Codegen, AttentionSplitCountAndScratch) {
  auto cdiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  for (int64_t nkv : {1, 2, 3, 8, 32})
    for (int64_t rows = 1; rows <= launch::kAttSplitMaxRows; ++rows)
      for (int64_t C : {1, 16, 64, 100, 512, 4096, 8192, 131072}) {
        SCOPED_TRACE("nkv " + std::to_string(nkv) + " rows " + std::to_string(rows) + " C " + std::to_string(C));
        const int S = attention_splits(nkv, rows, C);
        const int64_t cap = std::min<int64_t>(launch::kAttSplitMaxSplits, cdiv(C, launch::kAttSplitMinKeys));
        EXPECT_GE(S, 1);
        EXPECT_LE(S, std::max<int64_t>(1, cap));
        // as many splits as fill the GPU (kAttSplitTargetBlocks) unless capped;
        // that grid trimmed to whole waves where it spills at most a quarter wave past them
        const int64_t per = nkv * rows, wave = launch::kAttSplitWaveBlocks;
        const int64_t S0 = std::max<int64_t>(1, std::min(cdiv(launch::kAttSplitTargetBlocks, per), cap));
        const int64_t spill0 = S0 * per % wave;
        const bool trim = S0 * per > wave && spill0 > 0 && spill0 <= wave / 4;
        EXPECT_EQ(S, trim ? std::max<int64_t>(1, (S0 * per - spill0) / per) : S0);
        // so no grid spills a few blocks past whole waves (SMs with twice the work)
        const int64_t blocks = per * S, spill = blocks % wave;
        if (blocks > wave) EXPECT_TRUE(spill == 0 || spill > wave / 4) << blocks << " blocks";
        EXPECT_LE(attention_splits(nkv, rows, C), attention_splits(nkv, 1, C));  // rows 1 sizes the scratch
      }
  // Llama-3 8B at 8192 rows: the most splits; at 512 rows: 8 splits of >= 64 keys
  EXPECT_EQ(attention_splits(8, 1, 8192), std::min<int64_t>(launch::kAttSplitMaxSplits,
                                                            cdiv(launch::kAttSplitTargetBlocks, 8)));
  EXPECT_EQ(attention_splits(8, 1, 512), 512 / launch::kAttSplitMinKeys);
  // SmolLM2 (3 KV heads): 44 splits, one wave, not the 48 of the cap (144 blocks)
  EXPECT_EQ(attention_splits(3, 1, 8192), launch::kAttSplitWaveBlocks / 3);
  EXPECT_EQ(attention_splits(3, 1, 2048), 2048 / launch::kAttSplitMinKeys);  // 96 blocks: within a wave
  EXPECT_EQ(attention_splits(4, 1, 8192), launch::kAttSplitMaxSplits);       // 192 blocks: spills too far to trim
  EXPECT_EQ(attention_splits(8, 2, 8192), 2 * launch::kAttSplitWaveBlocks / 16);  // 272 -> 256 blocks
  const int64_t hdr = (launch::kAttSplitMaxRows * 8 + 3) / 4 * 4;
  EXPECT_EQ(attention_split_scratch_floats(32, 8, 128, 8192),
            hdr + launch::kAttSplitMaxRows * 32 * attention_splits(8, 1, 8192) * 130);
  EXPECT_EQ(attention_split_scratch_floats(4, 2, 80, 512), 0);    // head_dim 80: not the split kernel's
  EXPECT_EQ(attention_split_scratch_floats(32, 2, 128, 512), 0);  // 16 query heads per KV head: too many
  EXPECT_GT(attention_split_scratch_floats(9, 3, 64, 2048), 0);   // SmolLM2
}

// The int8-activation GEMV streams whole weight rows through shared memory by
// bulk copies on sm_90 when a row is a multiple of 16 bytes, and issues its
// first copies before waiting for the previous kernel; otherwise (older SMs,
// odd row sizes) it is the register-pipelined kernel.
// Programmatic dependent launch: a kernel lets the next one launch after its
// blocks finish (trigger at the end), except the projection feeding a
// rope_store, which triggers right after its wait so that rope_store's small
// blocks land early; rope_store waits itself, after computing its angles.
TEST(Codegen, OnlyTheProjectionBeforeRopeStoreTriggersEarly) {
  using ir::DType;
  using ir::OpKind;
  const int64_t nh = 4, nkv = 2, hd = 64, C = 64, K = 256;
  ir::Graph g = testcases::base_graph(1, C);
  auto x = g.add_input("x", DType::F32, {testcases::tok(1), testcases::fx(K)});
  auto w = g.add_weight("w", DType::F16, {testcases::fx((nh + 2 * nkv) * hd), testcases::fx(K)}, "w");
  auto qkv = g.add_node(OpKind::MatMul, {x, w}, {}, "qkv", DType::F32, {testcases::tok(1), testcases::fx((nh + 2 * nkv) * hd)});
  auto pos = g.add_input("pos", DType::I32, {testcases::tok(1)});
  auto kc = g.add_state("kc", DType::F16, {testcases::fx(C), testcases::fx(nkv * hd)});
  auto vc = g.add_state("vc", DType::F16, {testcases::fx(C), testcases::fx(nkv * hd)});
  ir::Attrs a = testcases::rope_attrs(nh, hd, hd, true);
  a["n_kv_heads"] = nkv;
  auto q = g.add_node(OpKind::RopeStore, {qkv, pos, kc, vc}, a, "q", DType::F32, {testcases::tok(1), testcases::fx(nh * hd)});
  auto w2 = g.add_weight("w2", DType::F16, {testcases::fx(K), testcases::fx(nh * hd)}, "w2");
  auto y = g.add_node(OpKind::MatMul, {q, w2}, {}, "y", DType::F32, {testcases::tok(1), testcases::fx(K)});
  g.mark_output(y);
  auto body = [](const Lowered& l) {
    const std::string& s = l.kernel.source;
    return s.substr(s.find(l.kernel.entry + "("));
  };
  const std::string proj = body(lower(g, g.nodes()[0], {1}, Target{90, "ggml"}, ProgramMode::Compiled));
  const std::string rope = body(lower(g, g.nodes()[1], {1}, Target{90, "ggml"}, ProgramMode::Compiled));
  const std::string out = body(lower(g, g.nodes()[2], {1}, Target{90, "ggml"}, ProgramMode::Compiled));
  EXPECT_NE(proj.find("kiln_pdl_wait();\n  kiln_pdl_trigger();\n  mm_gemv"), std::string::npos) << proj;
  EXPECT_EQ(proj.find("kiln_pdl_trigger();\n}"), std::string::npos) << proj;
  EXPECT_EQ(rope.find("kiln_pdl_wait();"), std::string::npos) << rope;  // k_rope_store waits itself
  EXPECT_NE(rope.find(");\n  kiln_pdl_trigger();\n}"), std::string::npos) << rope;
  EXPECT_NE(out.find("kiln_pdl_wait();\n  mm_gemv"), std::string::npos) << out;
  EXPECT_NE(out.find(");\n  kiln_pdl_trigger();\n}"), std::string::npos) << out;
}

// The split decode attention runs on tensor cores (k_attention_split_tc)
// exactly where mma.sync m16n8k16 exists (sm_80+) and the cache is f16 with
// head_dim 64: 8 warps a block, 2 blocks per SM in its launch bounds. Other
// caches, head sizes and older targets keep the CUDA-core split kernel.
TEST(Codegen, SplitAttentionOnTensorCoresOnlyWhereTheTargetAndShapeAllow) {
  using ir::DType;
  auto entry = [](DType ft, int64_t nh, int64_t nkv, int64_t hd, int sm) {
    const testcases::OpCase c = testcases::attention_case(ft, 1, 512, nh, nkv, hd, true);
    const Lowered l = lower(c.g, c.g.nodes()[0], {1}, Target{sm}, ProgramMode::Compiled);
    EXPECT_EQ(l.kernel.entry.find("kiln_attention_split_"), 0u) << l.kernel.entry;
    if (l.kernel.entry.find("kiln_attention_split_tc_") == 0) {
      EXPECT_EQ(l.block[0], uint32_t(launch::kAttSplitTcThreads));
      EXPECT_NE(l.kernel.source.find("__launch_bounds__(" + std::to_string(launch::kAttSplitTcThreads) + ", " +
                                     std::to_string(launch::kAttSplitTcMinBlocks) + ")"),
                std::string::npos);
      EXPECT_NE(l.kernel.source.find("k_attention_split_tc<" + std::to_string(hd) + ", " + std::to_string(nh / nkv) +
                                     ", kAttSplitTcWarps, 1>("),
                std::string::npos)
          << l.kernel.source;
    }
    return l.kernel.entry;
  };
  auto tc = [](const std::string& e) { return e.find("kiln_attention_split_tc_") == 0; };
  EXPECT_TRUE(tc(entry(DType::F16, 9, 3, 64, 90)));   // SmolLM2
  EXPECT_TRUE(tc(entry(DType::F16, 32, 8, 64, 80)));  // Llama-3.2 1B on sm_80
  EXPECT_TRUE(tc(entry(DType::F16, 16, 2, 64, 90)));  // 8 query heads per KV head: hi and lo rows fill 16
  EXPECT_FALSE(tc(entry(DType::F16, 9, 3, 64, 75)));  // no mma.sync m16n8k16 before sm_80
  EXPECT_FALSE(tc(entry(DType::BF16, 9, 3, 64, 90)));
  EXPECT_FALSE(tc(entry(DType::F32, 9, 3, 64, 90)));
  EXPECT_FALSE(tc(entry(DType::F16, 32, 8, 128, 90)));  // measured slower at head_dim 128
  EXPECT_FALSE(tc(entry(DType::F16, 8, 2, 256, 90)));
}

// A kernel also triggers early when the next launch is an int8-activation
// GEMV that gains from landing early (gemv_wants_early_launch): a bulk-copy
// GEMV, or one of a small matrix (< 2 MiB). Register GEMVs of larger
// matrices, f32-activation GEMVs and the last launch keep the end trigger. A
// predecessor that waits itself (an int8 GEMV) triggers inside its wait
// (KILN_EARLY_TRIGGER in its source) instead.
TEST(Codegen, KernelBeforeABulkOrSmallInt8GemvTriggersEarly) {
  using ir::DType;
  using ir::OpKind;
  using testcases::fx;
  using testcases::tok;
  // x -> a (matmul, K x K, first_xq: int8 activations) -> b (op, next_dt, K x N, next_xq)
  auto pair = [](DType first_dt, bool first_xq, OpKind op, DType next_dt, int64_t K, int64_t N, bool next_xq) {
    ir::Graph g = testcases::base_graph(1);
    auto x = g.add_input("x", DType::F32, {tok(1), fx(K)});
    auto w0 = g.add_weight("w0", first_dt, {fx(K), fx(K)}, "w0");
    ir::Attrs xa;
    if (first_xq) xa["x_q8"] = int64_t{1};
    auto a = g.add_node(OpKind::MatMul, {x, w0}, xa, "a", DType::F32, {tok(1), fx(K)});
    const bool swi = op == OpKind::RmsMatMulSwiGlu;
    std::vector<ir::ValueId> ins{a};
    ir::Attrs ba;
    if (swi) {
      ins.push_back(g.add_weight("gain", DType::F32, {fx(K)}, "gain"));
      ba["eps"] = 1e-5;
    }
    ins.push_back(g.add_weight("w1", next_dt, {fx(swi ? 2 * N : N), fx(K)}, "w1"));
    if (next_xq) ba["x_q8"] = int64_t{1};
    auto y = g.add_node(op, ins, ba, "y", DType::F32, {tok(1), fx(N)});
    g.mark_output(y);
    return g;
  };
  auto lowered = [](const ir::Graph& g, size_t i, int sm) {
    return lower(g, g.nodes()[i], {1}, Target{sm, "planes"}, ProgramMode::Compiled);
  };
  auto body = [](const Lowered& l) { return l.kernel.source.substr(l.kernel.source.find(l.kernel.entry + "(")); };
  // (a first kernel that waits itself, a bulk GEMV, triggers early through
  // KILN_EARLY_TRIGGER)
  auto early = [&](const ir::Graph& g, int sm) {
    const Lowered l = lowered(g, 0, sm);
    const std::string b = body(l);
    const bool own = b.find("kiln_pdl_wait") == std::string::npos;
    const bool at_start = own ? l.kernel.source.find("#define KILN_EARLY_TRIGGER 1\n") != std::string::npos
                              : b.find("kiln_pdl_wait();\n  kiln_pdl_trigger();\n") != std::string::npos;
    const bool at_end = b.find("kiln_pdl_trigger();\n}") != std::string::npos;
    EXPECT_NE(at_start, at_end) << b;
    return at_start;
  };
  // SmolLM2's gate/up (q4_1, 576 x 3072: 1.1 MB) and down (1536 -> 576)
  EXPECT_TRUE(early(pair(DType::F16, false, OpKind::RmsMatMulSwiGlu, DType::Q4_1, 576, 1536, true), 90));
  EXPECT_TRUE(early(pair(DType::F16, false, OpKind::MatMul, DType::Q4_1, 1536, 576, true), 90));
  // the 1B's o projection (q4_K, 2048 x 2048: 2.4 MB): the bulk kernel on
  // sm_90, the register kernel on sm_80 (a register GEMV of a few MB: not early)
  EXPECT_TRUE(early(pair(DType::F16, false, OpKind::MatMul, DType::Q4_K, 2048, 2048, true), 90));
  EXPECT_FALSE(early(pair(DType::F16, false, OpKind::MatMul, DType::Q4_K, 2048, 2048, true), 80));
  // the 8B's gate/up: the bulk kernel on sm_90, the register kernel on sm_80
  EXPECT_TRUE(early(pair(DType::F16, false, OpKind::RmsMatMulSwiGlu, DType::Q4_K, 4096, 14336, true), 90));
  EXPECT_FALSE(early(pair(DType::F16, false, OpKind::RmsMatMulSwiGlu, DType::Q4_K, 4096, 14336, true), 80));
  // a small matrix with f32 activations: its GEMV waits before any load
  EXPECT_FALSE(early(pair(DType::F16, false, OpKind::MatMul, DType::Q4_1, 576, 576, false), 90));
  // f16 weights of >= 2 MiB (the 1B's o projection, the 8B's gate/up): the
  // bulk GEMV on f32 activations on sm_90, the register GEMV on sm_80
  EXPECT_TRUE(early(pair(DType::F16, false, OpKind::MatMul, DType::F16, 2048, 2048, false), 90));
  EXPECT_TRUE(early(pair(DType::F16, false, OpKind::RmsMatMulSwiGlu, DType::F16, 4096, 14336, false), 90));
  EXPECT_FALSE(early(pair(DType::F16, false, OpKind::RmsMatMulSwiGlu, DType::F16, 4096, 14336, false), 80));
  // and a bulk GEMV before one triggers early itself
  EXPECT_TRUE(early(pair(DType::F16, false, OpKind::MatMul, DType::F16, 4096, 4096, false), 90));
  // the last launch has no successor
  const ir::Graph small = pair(DType::F16, false, OpKind::MatMul, DType::Q4_1, 576, 576, true);
  EXPECT_NE(body(lowered(small, 1, 90)).find("kiln_pdl_trigger();\n}"), std::string::npos);
  // an int8 GEMV before a small one waits itself: KILN_EARLY_TRIGGER makes
  // kiln_pdl_wait_own trigger, and its end trigger goes
  const ir::Graph own = pair(DType::Q4_1, true, OpKind::MatMul, DType::Q4_1, 576, 576, true);
  const Lowered first = lowered(own, 0, 90);
  EXPECT_NE(first.kernel.source.find("#define KILN_EARLY_TRIGGER 1\n#include"), std::string::npos)
      << first.kernel.source;
  EXPECT_EQ(body(first).find("kiln_pdl_wait"), std::string::npos) << body(first);
  EXPECT_EQ(body(first).find("kiln_pdl_trigger"), std::string::npos) << body(first);
  const Lowered last = lowered(own, 1, 90);
  EXPECT_EQ(last.kernel.source.find("KILN_EARLY_TRIGGER"), std::string::npos);
  EXPECT_NE(body(last).find("kiln_pdl_trigger();\n}"), std::string::npos) << body(last);
  // a QKV GEMV (rope epilogue) before attention triggers early when its
  // weights are small (SmolLM2's 1.1 MB), not the 8B's 14 MB
  auto qkv_then_attention = [&](DType wt, int64_t nh, int64_t nkv, int64_t hd, int64_t K) {
    testcases::OpCase c = testcases::rope_gemv_case({wt}, nh, nkv, hd, hd, K, 1, true, DType::F32, DType::F16, false,
                                                    "planes");
    ir::Graph& g = c.g;
    const ir::ValueId q = g.nodes()[0].outputs[0], pos = g.nodes()[0].inputs[1], kc = g.nodes()[0].inputs[2],
                      vc = g.nodes()[0].inputs[3];
    const ir::Attrs a = {{"n_heads", nh}, {"n_kv_heads", nkv}, {"head_dim", hd}, {"scale", 0.125}};
    g.mark_output(g.add_node(OpKind::Attention, {q, kc, vc, pos}, a, "att", DType::F32, {tok(1), fx(nh * hd)}));
    return lowered(g, 0, 90).kernel.source.find("#define KILN_EARLY_TRIGGER 1") != std::string::npos;
  };
  EXPECT_TRUE(qkv_then_attention(DType::Q4_1, 9, 3, 64, 576));
  EXPECT_FALSE(qkv_then_attention(DType::Q4_K, 32, 8, 128, 4096));
  // kernels that wait themselves do it through kiln_pdl_wait_own, the one that
  // honours KILN_EARLY_TRIGGER: no kernel file but common.cuh calls the bare wait
  for (std::string_view f : kernel_file_names()) {
    if (f == "common.cuh") continue;
    EXPECT_EQ(kernel_file(f).find("kiln_pdl_wait();"), std::string_view::npos) << f;
  }
  for (const char* f : {"gemv.cuh", "rope.cuh", "attention.cuh"})
    EXPECT_NE(kernel_file(f).find("kiln_pdl_wait_own();"), std::string_view::npos) << f;
  // both split attentions' short-context K/V prefetch to L2 comes before their wait
  const std::string_view att = kernel_file("attention.cuh");
  for (const char* k : {"void k_attention_split(", "void k_attention_split_tc("}) {
    SCOPED_TRACE(k);
    const size_t split = att.find(k);
    ASSERT_NE(split, std::string_view::npos);
    const size_t pf = att.find("att_split_prefetch_l2(", split), wait = att.find("kiln_pdl_wait_own();", split);
    EXPECT_NE(pf, std::string_view::npos);
    EXPECT_LT(pf, wait);
    const size_t lim = att.find("L <= kAttSplitL2PrefetchMaxRows", split);
    EXPECT_LT(lim, pf);
  }
}

// A multi-weight int8 GEMV (fuse-qkv-parts) of the register kind (sm_89;
// sm_90 takes the bulk kind below) scales its parts' blocks to the smallest
// one-wave budget of its weight types: a q4_K + q6_K mix stops at 3 blocks
// per SM like each of them alone, in proportion to the parts' rows.
// On sm_90 the same weights (>= 2 MiB in all) are bulk-copy GEMVs of one
// block size: at most one block per SM in all, shared in proportion to the
// parts' bytes (q6_K rows are 210/144 of q4_K's).
TEST(Codegen, PartsGemvKeepsTheOneWaveBudgetOfItsTypes) {
  using ir::DType;
  const testcases::OpCase c =
      testcases::parts_case({DType::Q4_K, DType::Q4_K, DType::Q6_K}, {16384, 4096, 4096}, 4096, 1, true, "planes");
  // block ranges: GemvSlice{b0, nb, ldy} per part
  auto slices = [](std::string src) {
    std::vector<int> nb;
    for (std::smatch m; std::regex_search(src, m, std::regex("GemvSlice\\{([0-9]+), ([0-9]+), 24576\\}"));
         src = m.suffix())
      nb.push_back(std::stoi(m[2]));
    return nb;
  };
  const Lowered l = lower(c.g, c.g.nodes()[0], {1}, Target{89, "planes"}, ProgramMode::Compiled);
  EXPECT_EQ(l.grid[0], uint32_t(launch::kGemvXqMaxBlocksWave)) << l.kernel.entry;
  EXPECT_EQ(l.kernel.source.find("mm_gemv_bulk<"), std::string::npos);
  std::vector<int> nb = slices(l.kernel.source);
  ASSERT_EQ(nb.size(), 3u) << l.kernel.source;
  EXPECT_EQ(nb[0] + nb[1] + nb[2], launch::kGemvXqMaxBlocksWave);
  EXPECT_NEAR(nb[0], 4 * nb[1], 4);  // 4 : 1 : 1 like the rows
  EXPECT_EQ(nb[1], nb[2]);
  const Lowered b = lower(c.g, c.g.nodes()[0], {1}, Target{90, "planes"}, ProgramMode::Compiled);
  EXPECT_NE(b.kernel.source.find("mm_gemv_bulk<DT_Q6_K"), std::string::npos) << b.kernel.source;
  EXPECT_EQ(b.block[0], 512u);
  EXPECT_LE(b.grid[0], 132u);
  EXPECT_GE(b.grid[0], 128u);
  nb = slices(b.kernel.source);
  ASSERT_EQ(nb.size(), 3u) << b.kernel.source;
  EXPECT_EQ(uint32_t(nb[0] + nb[1] + nb[2]), b.grid[0]);
  EXPECT_NEAR(nb[0], 4 * nb[1], 4);
  EXPECT_NEAR(nb[2], nb[1] * 210 / 144, 2);
}

// rms_matmul_rope_store: the rope_store epilogue pairs columns (2i, 2i+1)
// inside a block, so a block's columns must be even in count (4 split warps
// of single columns take 2 columns per group); the bulk-copy GEMV (sm_90,
// >= 2 MiB) keeps a pair in one item of 2 columns, q6_K too; the parts get
// their first qkv column, and a "neox" node (pairs half a head apart) is
// refused with the reason.
TEST(Codegen, RopeEpilogueGemvKeepsPairsInOneBlock) {
  using ir::DType;
  auto lower_case = [](const OpCase& c, int sm = 90) {
    return lower(c.g, c.g.nodes()[0], {c.bucket}, Target{sm, c.weight_layout}, ProgramMode::Compiled);
  };
  // f16 weights, K = 4096 (4 MiB: sm_89 has no bulk GEMV): split 4 (one
  // group per block); 2 columns per group
  const OpCase f = testcases::rope_gemv_case({DType::F16}, 4, 2, 64, 64, 4096, 1, false, DType::F32, DType::F16,
                                             false, "ggml");
  const Lowered lf = lower_case(f, 89);
  EXPECT_NE(lf.kernel.entry.find("_s4_r2"), std::string::npos) << lf.kernel.entry;
  EXPECT_EQ(lf.grid[0], 512u / 2u) << lf.kernel.entry;  // 512 columns, 2 per block
  EXPECT_NE(lf.kernel.source.find("RopeEpi<DT_F32, DT_F16>{"), std::string::npos) << lf.kernel.source;
  // a plain rms_matmul of the same shape keeps 1 column per group
  const OpCase plain = testcases::matmul_case(ir::OpKind::RmsMatMul, DType::F16, 1, DType::F32, 4096, 512);
  const Lowered lp = lower_case(plain, 89);
  EXPECT_EQ(lp.kernel.entry.find("_r2"), std::string::npos) << lp.kernel.entry;
  EXPECT_EQ(lp.grid[0], 512u);
  // on sm_90 the f16 one is a bulk GEMV on f32 activations, with the epilogue
  const Lowered lf90 = lower_case(f);
  EXPECT_NE(lf90.kernel.source.find("mm_gemv_bulk<DT_F16, DT_F32, "), std::string::npos) << lf90.kernel.source;
  EXPECT_NE(lf90.kernel.source.find("GemvSlice{0, 0, 0}, RopeEpi<DT_F32, DT_F16>{"), std::string::npos)
      << lf90.kernel.source;
  EXPECT_NE(lf90.kernel.entry.find("_fx"), std::string::npos) << lf90.kernel.entry;
  // a projection of >= 2 MiB (the 8B's 14 MB q4_K, a q6_K one): the bulk
  // GEMV with the epilogue, 2 columns per item; on sm_89 the register GEMV
  for (DType wt : {DType::Q4_K, DType::Q6_K}) {
    const OpCase big =
        testcases::rope_gemv_case({wt}, 32, 8, 128, 128, 4096, 1, true, DType::F32, DType::F16, false, "planes");
    const Lowered lb = lower_case(big);
    EXPECT_TRUE(std::regex_search(lb.kernel.entry, std::regex("_b16x[0-9]"))) << lb.kernel.entry;
    EXPECT_TRUE(std::regex_search(lb.kernel.source,
                                  std::regex("mm_gemv_bulk<DT_Q[46]_K, DT_F32, [0-9]+, 1, 2, [0-9], 1, ")))
        << lb.kernel.source;
    EXPECT_NE(lb.kernel.source.find("GemvSlice{0, 0, 0}, RopeEpi<DT_F32, DT_F16>{"), std::string::npos)
        << lb.kernel.source;
    const Lowered lr = lower(big.g, big.g.nodes()[0], {1}, Target{89, "planes"}, ProgramMode::Compiled);
    EXPECT_EQ(lr.kernel.source.find("mm_gemv_bulk<"), std::string::npos) << lr.kernel.source;
  }
  // under 2 MiB (SmolLM2's 1.1 MB): the register GEMV
  const OpCase small =
      testcases::rope_gemv_case({DType::Q4_1}, 9, 3, 64, 64, 576, 1, true, DType::F32, DType::F16, false, "planes");
  EXPECT_EQ(lower_case(small).kernel.source.find("mm_gemv_bulk<"), std::string::npos);
  // the 8B Q4_K_M block: three parts at qkv columns 0, 4096, 5120, one set of
  // cache / frequency-factor parameters
  const OpCase parts = testcases::rope_gemv_case({DType::Q4_K, DType::Q4_K, DType::Q6_K}, 32, 8, 128, 128, 4096, 1,
                                                 true, DType::F32, DType::F16, true, "planes");
  const Lowered lq = lower_case(parts);
  for (const char* c0 : {", 0, __int_as_float", ", 4096, __int_as_float", ", 5120, __int_as_float"})
    EXPECT_NE(lq.kernel.source.find(c0), std::string::npos) << c0 << "\n" << lq.kernel.source;
  EXPECT_EQ(lq.params.size(), 10u);  // x, gain, 3 weights, y, step, kc, vc, ff: each once
  // lowering c fails as unsupported, naming `why`
  auto expect_refused = [&](const OpCase& c, const char* what, const char* why) {
    SCOPED_TRACE(what);
    try {
      lower_case(c);
      ADD_FAILURE() << what << " lowered";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  // a step of more rows than the GEMV takes has no rope epilogue: refused
  const OpCase wide = testcases::rope_gemv_case({DType::F16}, 4, 2, 64, 64, 512, 20, false, DType::F32, DType::F16,
                                                false, "ggml");
  expect_refused(wide, "a 20-row rms_matmul_rope_store", "compiled GEMV only");
  // neox pairs (i, i + n_rot/2) are not in one block: refused, naming the mode
  OpCase neox = parts;
  neox.g.nodes()[0].attrs["mode"] = std::string("neox");
  expect_refused(neox, "a neox rms_matmul_rope_store", "neox");
}

TEST(Codegen, BulkGemvOnSm90ForSixteenByteRows) {
  auto xq_case = [](ir::DType wt, int64_t K, int64_t N, ir::OpKind op) {
    OpCase c = testcases::matmul_case(op, wt, 1, ir::DType::F32, K, N);
    c.g.nodes()[0].attrs["x_q8"] = int64_t{1};
    return c;
  };
  auto bulk = [](const Lowered& l) { return std::regex_search(l.kernel.entry, std::regex("_b[0-9]+x[0-9](k[0-9])?_")); };
  auto entry_at = [](const OpCase& c, int sm, const char* layout) {
    return lower(c.g, c.g.nodes()[0], {1}, Target{sm, layout}, ProgramMode::Compiled);
  };
  for (const char* layout : {"ggml", "planes"}) {
    // Llama-3 8B gate/up, q4_K: rows of 16 * 144 bytes
    const OpCase gu = xq_case(ir::DType::Q4_K, 4096, 14336, ir::OpKind::RmsMatMulSwiGlu);
    const Lowered l90 = entry_at(gu, 90, layout), l80 = entry_at(gu, 80, layout);
    EXPECT_TRUE(bulk(l90)) << l90.kernel.entry;
    EXPECT_FALSE(bulk(l80)) << l80.kernel.entry;
    EXPECT_GT(l90.smem, 48u * 1024u);  // x plus 8 warps x 2 buffers x (gate + up rows)
    // both kernels wait for their predecessor themselves, after their first
    // weight loads (the bulk kernel's first copies)
    const std::string& src = l90.kernel.source;
    const size_t call = src.find("mm_gemv_bulk<"), body = src.find(l90.kernel.entry + "(");
    ASSERT_NE(call, std::string::npos);
    EXPECT_EQ(src.find("kiln_pdl_wait();", body), std::string::npos);
    const size_t body80 = l80.kernel.source.find(l80.kernel.entry + "(");
    EXPECT_NE(l80.kernel.source.find("mm_gemv<", body80), std::string::npos);
    EXPECT_EQ(l80.kernel.source.find("kiln_pdl_wait();", body80), std::string::npos);
  }
  // every int8 weight type from 2 MiB: the 8B's o projection (q4_K, 9 MiB),
  // the 1B's (2.4 MiB), a q4_0 gate/up, a q8_0 down projection; smaller
  // matrices (SmolLM2's 1 MiB) keep the register-pipelined kernel
  EXPECT_TRUE(bulk(entry_at(xq_case(ir::DType::Q4_K, 4096, 4096, ir::OpKind::MatMulAdd), 90, "planes")));
  EXPECT_TRUE(bulk(entry_at(xq_case(ir::DType::Q4_K, 2048, 2048, ir::OpKind::MatMulAdd), 90, "planes")));
  EXPECT_TRUE(bulk(entry_at(xq_case(ir::DType::Q4_0, 4096, 14336, ir::OpKind::RmsMatMulSwiGlu), 90, "planes")));
  EXPECT_TRUE(bulk(entry_at(xq_case(ir::DType::Q8_0, 8192, 2048, ir::OpKind::MatMulAdd), 90, "planes")));
  EXPECT_TRUE(bulk(entry_at(xq_case(ir::DType::Q6_K, 14336, 4096, ir::OpKind::MatMulAdd), 90, "planes")));
  EXPECT_FALSE(bulk(entry_at(xq_case(ir::DType::Q4_K, 2048, 1024, ir::OpKind::MatMulAdd), 90, "planes")));
  EXPECT_FALSE(bulk(entry_at(xq_case(ir::DType::Q8_0, 1536, 576, ir::OpKind::MatMulAdd), 90, "ggml")));
  // large stages (the 8B's down projection: rows of 8-12 KiB; q4_K's gate/up:
  // two columns per item, so 4 rows of 2.3 KiB) make groups of warps share the
  // row buffers so that 16 warps per SM stay resident (8 at one warp per
  // buffer set); q6_K's gate/up (one column: 2 rows of 3.4 KiB) keeps one
  // warp per group
  auto resident_warps = [&](ir::DType dt, int64_t K, int64_t N, ir::OpKind op, int want_ks) {
    const Lowered l = entry_at(xq_case(dt, K, N, op), 90, "planes");
    std::smatch m;
    EXPECT_TRUE(std::regex_search(l.kernel.entry, m, std::regex("_b([0-9]+)x[0-9](k([0-9]))?_"))) << l.kernel.entry;
    if (m.empty()) return 0;
    EXPECT_EQ(m[3].matched ? std::stoi(m[3]) : 1, want_ks) << l.kernel.entry;
    const int W = std::stoi(m[1]);
    return std::min<int>(16 / W, (227 * 1024) / (static_cast<int>(l.smem) + 1024)) * W;
  };
  EXPECT_EQ(resident_warps(ir::DType::Q4_K, 14336, 4096, ir::OpKind::MatMulAdd, 4), 16);
  EXPECT_EQ(resident_warps(ir::DType::Q6_K, 14336, 4096, ir::OpKind::MatMulAdd, 2), 16);
  EXPECT_EQ(resident_warps(ir::DType::Q4_K, 4096, 14336, ir::OpKind::RmsMatMulSwiGlu, 2), 16);
  EXPECT_EQ(resident_warps(ir::DType::Q6_K, 4096, 14336, ir::OpKind::RmsMatMulSwiGlu, 1), 16);
  // SmolLM2's q4_1 rows of 576 values are 18 blocks of 20 bytes: not a multiple of 16
  const OpCase smol = xq_case(ir::DType::Q4_1, 576, 1536, ir::OpKind::MatMul);
  EXPECT_FALSE(bulk(entry_at(smol, 90, "ggml")));
  // without x_q8 (f32 activations) a quantised weight's GEMV is never the
  // bulk variant (f16 and bf16 weights' are: the next test)
  OpCase f = testcases::matmul_case(ir::OpKind::MatMul, ir::DType::Q4_K, 1, ir::DType::F32, 4096, 4096);
  EXPECT_EQ(entry_at(f, 90, "planes").kernel.entry.find("_xq"), std::string::npos);
  EXPECT_FALSE(bulk(entry_at(f, 90, "planes")));
}

TEST(Codegen, BulkGemvOnF32ActivationsForSixteenBitWeights) {
  using ir::DType;
  using ir::OpKind;
  // the kernel call's template arguments: weight dtype, then (after gain dtype,
  // flags, tokens) rows per item, stages, layout, warps per group
  const std::regex call("mm_gemv_bulk<(DT_[A-Z0-9]+), [A-Z0-9_]+, [0-9]+, ([0-9]+), ([0-9]+), ([0-9]+), [01], ([0-9]+)");
  struct Want {
    ir::DType wt;
    int64_t K, N;
    OpKind op;
    int64_t tokens;
    int sm;
    bool bulk;
  };
  for (const Want& w : {
           Want{DType::F16, 4096, 4096, OpKind::MatMulAdd, 1, 90, true},         // the 8B's o projection
           Want{DType::F16, 4096, 14336, OpKind::RmsMatMulSwiGlu, 1, 90, true},  // its gate/up
           Want{DType::BF16, 4096, 6144, OpKind::RmsMatMul, 1, 90, true},        // its QKV, bf16
           Want{DType::F16, 8192, 2048, OpKind::MatMulAdd, 1, 90, true},         // the 1B's down: 32 KiB of x
           Want{DType::F16, 14336, 4096, OpKind::MatMulAdd, 1, 90, false},       // the 8B's down: 56 KiB of x
           Want{DType::F16, 4096, 4096, OpKind::MatMulAdd, 3, 90, false},        // 3 tokens: 48 KiB of x
           Want{DType::F16, 2048, 2048, OpKind::MatMul, 3, 90, true},            // 3 tokens: 24 KiB
           Want{DType::F16, 4096, 4096, OpKind::MatMulAdd, 1, 89, false},        // no bulk copies before sm_90
           Want{DType::F16, 576, 1536, OpKind::MatMul, 1, 90, false},            // SmolLM2's: under 2 MiB
           Want{DType::F32, 4096, 4096, OpKind::MatMul, 1, 90, false},           // f32 weights: never
       }) {
    const OpCase c = testcases::matmul_case(w.op, w.wt, w.tokens, DType::F32, w.K, w.N);
    const Lowered l = lower(c.g, c.g.nodes()[0], {w.tokens}, Target{w.sm, "ggml"}, ProgramMode::Compiled);
    std::smatch m;
    const bool found = std::regex_search(l.kernel.source, m, call);
    EXPECT_EQ(found, w.bulk) << l.kernel.entry;
    if (!found) {
      EXPECT_EQ(l.smem, 0u) << l.kernel.entry;
      continue;
    }
    EXPECT_EQ(m[1].str(), w.wt == DType::F16 ? "DT_F16" : "DT_BF16");
    EXPECT_EQ(std::stoll(m[2]), w.tokens);
    EXPECT_EQ(std::stoi(m[3]), 2) << "two columns per item";
    EXPECT_GE(std::stoi(m[4]), 2) << "at least two row buffers";
    EXPECT_LE(std::stoi(m[5]), 2) << "at most 2 warps share a buffer set with f32 x";
    EXPECT_NE(l.kernel.entry.find("_fx"), std::string::npos) << l.kernel.entry;
    // x in f32 (4 bytes a value) plus the row buffers, within one SM
    EXPECT_GT(l.smem, uint32_t(4 * w.K * w.tokens)) << l.kernel.entry;
    EXPECT_LE(l.smem + 1024u, 227u * 1024u) << l.kernel.entry;
    // eager programs (plain matmuls only) keep their generic kernel
    if (w.op == OpKind::MatMul) {
      const Lowered e = lower(c.g, c.g.nodes()[0], {w.tokens}, Target{w.sm, "ggml"}, ProgramMode::Eager);
      EXPECT_EQ(e.kernel.source.find("mm_gemv_bulk<"), std::string::npos) << e.kernel.entry;
    }
  }
  // the LM head of an f16 model (the 8B's: 128256 x 4096) samples on the bulk
  // GEMV, with the sampling step's 4 warps
  const OpCase lm = testcases::lm_head_case(DType::F16, 1, 128256, 4096);
  const Lowered ll = lower(lm.g, lm.g.nodes()[0], {1}, Target{90, "ggml"}, ProgramMode::Compiled);
  EXPECT_NE(ll.kernel.source.find("k_lm_head_sample_bulk<DT_F16"), std::string::npos) << ll.kernel.entry;
  EXPECT_EQ(ll.block[0], 128u);
  EXPECT_NE(ll.kernel.entry.find("_fx"), std::string::npos) << ll.kernel.entry;
}

// The q8_0 LM heads on sm_90's bulk GEMV take items of at least 6,000
// bytes of rows (kLmHeadMinItemBytes, up to 8 rows), and their rows that
// are not a 16-byte multiple take the bulk kernel where whole items are:
// Gemma 3 270M's LM head (262,144 x 640: 680-byte rows) and SmolLM2's
// (49,152 x 576: 612), 8 rows; the 1B's (2,176) 4. q6_K keeps one row, q4_K
// and q4_0 their two (and q4_0's 324-byte rows at K = 576 the register
// GEMV). A vocabulary whose last item would not be a 16-byte
// multiple keeps the register GEMV, as does any other GEMV of such rows.
TEST(Codegen, LmHeadItemsOnTheBulkGemv) {
  struct Want {
    ir::DType wt;
    int64_t V, K;
    const char* layout;
    int rows;  // 0: not the bulk kernel
  };
  const Want wants[] = {{ir::DType::Q8_0, 262144, 640, "ggml", 8},   {ir::DType::Q8_0, 49152, 576, "ggml", 8},
                        {ir::DType::Q8_0, 128256, 2048, "planes", 4}, {ir::DType::Q6_K, 128256, 2048, "planes", 1},
                        {ir::DType::Q6_K, 128256, 4096, "planes", 1}, {ir::DType::Q8_0, 128256, 4096, "planes", 2},
                        {ir::DType::Q8_0, 262143, 640, "ggml", 0},  {ir::DType::Q4_K, 128256, 2048, "planes", 2},
                        {ir::DType::Q4_0, 128256, 2048, "planes", 8}, {ir::DType::Q4_0, 49152, 576, "ggml", 8},
                        {ir::DType::Q4_0, 128256, 4096, "planes", 4}, {ir::DType::Q4_1, 128256, 2048, "planes", 2}};
  for (const Want& w : wants) {
    OpCase c = testcases::lm_head_case(w.wt, 1, w.V, w.K);
    c.g.nodes()[0].attrs["x_q8"] = int64_t{1};
    SCOPED_TRACE(c.name + " " + w.layout);
    const Lowered l = lower(c.g, c.g.nodes()[0], {1}, Target{90, w.layout}, ProgramMode::Compiled);
    std::smatch m;
    const bool bulk = std::regex_search(l.kernel.source, m, std::regex("k_lm_head_sample_bulk<DT_[A-Z0-9_]+, DT_F32, ([0-9]+),"));
    ASSERT_EQ(bulk, w.rows > 0) << l.kernel.entry;
    if (!bulk) continue;
    const int rows = std::stoi(m[1]);
    EXPECT_EQ(rows, w.rows);
    const int64_t rb = static_cast<int64_t>(ir::row_bytes(w.wt, w.K));
    EXPECT_EQ(rows * rb % 16, 0);
    if (w.wt == ir::DType::Q8_0 || w.wt == ir::DType::Q4_0)
      EXPECT_TRUE(rows == 8 || rows * rb >= 6000) << rows << " rows of " << rb;
    EXPECT_LE(l.smem + 1024u, 227u * 1024u);
  }
  // another GEMV of 680-byte rows (>= 2 MiB) keeps the register kernel
  OpCase mm = testcases::matmul_case(ir::OpKind::MatMul, ir::DType::Q8_0, 1, ir::DType::F32, 640, 4000);
  mm.g.nodes()[0].attrs["x_q8"] = int64_t{1};
  const Lowered ml = lower(mm.g, mm.g.nodes()[0], {1}, Target{90, "ggml"}, ProgramMode::Compiled);
  EXPECT_EQ(ml.kernel.source.find("mm_gemv_bulk<"), std::string::npos) << ml.kernel.entry;
}

// "CI compiles every kernel variant for every supported SM": every lowered
// source (both modes, decode and prefill paths) and every eager module, for
// every SM, through NVRTC, with the cache in a temp dir so identical sources
// compile once. Checks the CUBIN is an ELF and the PTX defines the entry.
TEST(Codegen, EveryVariantCompilesForEverySupportedSm) {
  struct Job {
    KernelSource k;
    std::set<std::string> entries;
  };
  std::map<uint64_t, Job> jobs;
  for (const KernelSource& m : eager_modules()) jobs[m.hash].k = m;
  // To stay within the CI budget the fused matmul ops take the GEMV path
  // (bucket 1) for every other weight dtype and the tiled path (bucket 20)
  // for the rest; plain matmul takes both paths for every dtype.
  std::map<ir::DType, size_t> dtype_index;
  for (ir::DType t : testcases::weight_dtypes()) dtype_index.emplace(t, dtype_index.size());
  auto all = testcases::all_cases({1, 20}, 20);
  for (auto& c : testcases::tensor_core_cases({16}, 20)) all.push_back(std::move(c));
  for (const OpCase& c : all) {
    const ir::Node& n = c.g.nodes()[0];
    const bool fused_mm = n.op == ir::OpKind::RmsMatMul || n.op == ir::OpKind::MatMulAdd ||
                          n.op == ir::OpKind::RmsMatMulSwiGlu;
    if (fused_mm && c.bucket != (dtype_index.at(c.dtype) % 2 ? 20 : 1)) continue;
    for (ProgramMode mode : {ProgramMode::Eager, ProgramMode::Compiled}) {
      if (mode == ProgramMode::Eager && (is_fused(n.op) || c.compiled_only)) continue;
      const Lowered l = lower(c.g, n, {c.bucket}, Target{90, c.weight_layout}, mode);
      if (l.gemm) continue;  // cuBLASLt, nothing for NVRTC
      Job& j = jobs[l.kernel.hash];
      if (j.k.source.empty()) j.k = l.kernel;
      j.entries.insert(l.kernel.entry);
    }
  }
  std::vector<std::pair<const Job*, int>> work;
  for (const auto& [h, j] : jobs)
    for (int sm : supported_sms()) work.emplace_back(&j, sm);
  TempDir dir;
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::vector<std::string> failures;
  const auto t0 = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (size_t i; (i = next++) < work.size();) {
      const auto& [job, sm] = work[i];
      try {
        const CompiledKernel ck = compile(job->k, sm, dir.path.string());
        std::string bad;
        if (ck.cubin.size() < 4 || ck.cubin[0] != 0x7f || ck.cubin[1] != 'E') bad = "no ELF cubin";
        for (const auto& e : job->entries)
          if (ck.ptx.find(".entry " + e + "(") == std::string::npos) bad += " missing entry " + e;
        if (!bad.empty()) {
          std::lock_guard<std::mutex> lock(mu);
          failures.push_back(job->k.entry + " sm_" + std::to_string(sm) + ": " + bad);
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back(job->k.entry + " sm_" + std::to_string(sm) + ": " + e.what());
      }
    }
  };
  const unsigned nthreads = std::max(2u, std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < nthreads; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("compiled %zu sources x %zu SMs = %zu NVRTC runs in %.1f s (%u threads)\n", jobs.size(),
              supported_sms().size(), work.size(), secs, nthreads);
  for (const auto& f : failures) ADD_FAILURE() << f.substr(0, 4000);
  EXPECT_TRUE(failures.empty());
}

}  // namespace
}  // namespace kiln::codegen
