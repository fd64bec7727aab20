// The full default pipeline preserves the model's meaning: the reference
// interpreter gives the same logits (relative L2 error < 1e-5) and the same
// greedy token on the unfused and the fused graph, over a prefill and three
// decode steps sharing the KV cache. Also: the fused SmolLM2 graph has the
// expected 6 ops per layer, and the decode pipeline's fusions (fuse-qkv-parts,
// fuse-qkv-rope-epilogue) keep the decode program's meaning (the epilogue
// fusion bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "compiler/frontend/frontend.h"
#include "compiler/gguf/gguf.h"
#include "compiler/gguf/weight_source.h"
#include "compiler/passes/pipeline.h"
#include "compiler/tools/synth/model.h"
#include "ir/interpreter.h"

namespace {

using kiln::ir::Graph;
using kiln::ir::OpKind;
using kiln::ir::Tensor;

// The graph the compile driver feeds the pipeline: the frontend's plus greedy sampling.
Graph with_sampling(Graph g) {
  auto logits = g.find_value("logits");
  EXPECT_TRUE(logits.has_value());
  auto next = g.add_node(OpKind::ArgMax, {*logits}, {}, "next_token", kiln::ir::DType::I32,
                         {kiln::ir::Dim::fixed(1)});
  g.mark_output(next);
  kiln::ir::verify(g);
  return g;
}

std::map<std::string, int> op_counts(const Graph& g) {
  std::map<std::string, int> c;
  for (const auto& n : g.nodes()) c[std::string(kiln::ir::op_info(n.op).name)]++;
  return c;
}

double rel_l2(const std::vector<float>& ref, const std::vector<float>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (double(ref[i]) - got[i]) * (double(ref[i]) - got[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

// Runs unfused and fused side by side: prefill `prompt`, then `decode_steps`
// greedy steps, comparing logits and tokens at every step (exact: the logits
// bit for bit).
void compare_runs(const Graph& unfused, const Graph& fused, const kiln::ir::WeightSource& ws,
                  std::vector<int32_t> prompt, int decode_steps, bool exact = false) {
  kiln::ir::Interpreter a(unfused, ws), b(fused, ws);
  std::vector<int32_t> toks = prompt;
  int32_t pos0 = 0;
  for (int step = 0; step <= decode_steps; ++step) {
    std::vector<int32_t> positions;
    for (size_t i = 0; i < toks.size(); ++i) positions.push_back(pos0 + static_cast<int32_t>(i));
    std::map<std::string, Tensor> in{{"tokens", Tensor::from_i32(toks)}, {"positions", Tensor::from_i32(positions)}};
    auto ra = a.run(in);
    auto rb = b.run(in);
    ASSERT_TRUE(ra.count("logits") && rb.count("logits") && ra.count("next_token") && rb.count("next_token"));
    const auto &la = ra["logits"].f32, &lb = rb["logits"].f32;
    ASSERT_EQ(la.size(), lb.size());
    double err = rel_l2(la, lb);
    EXPECT_LT(err, 1e-5) << "step " << step;
    if (exact) {
      size_t differ = 0;
      for (size_t i = 0; i < la.size(); ++i) differ += la[i] != lb[i];
      EXPECT_EQ(differ, 0u) << "step " << step << ": logits differ in " << differ << " of " << la.size();
    }
    int32_t ta = ra["next_token"].i32.at(0), tb = rb["next_token"].i32.at(0);
    EXPECT_EQ(ta, tb) << "step " << step;
    // And the token is the argmax (first max) of the logits.
    EXPECT_EQ(ta, static_cast<int32_t>(std::max_element(la.begin(), la.end()) - la.begin()));
    pos0 += static_cast<int32_t>(toks.size());
    toks = {tb};
  }
}

// The decode pipeline's last pass, fuse-qkv-rope-epilogue: every layer's
// rms_matmul + rope_store (llama: mode normal) of `before` (the decode
// pipeline without it) is one rms_matmul_rope_store in `decode`, carrying the
// rms_matmul's weights and x_q8, and the program computes the same logits bit
// for bit.
void expect_rope_epilogue_fused(const Graph& before, const Graph& decode, int64_t layers,
                                const kiln::ir::WeightSource& ws) {
  auto cb = op_counts(before), cd = op_counts(decode);
  EXPECT_EQ(cb["rope_store"], layers);
  EXPECT_EQ(cd["rope_store"], 0);
  EXPECT_EQ(cd["rms_matmul_rope_store"], layers);
  EXPECT_EQ(cd["rms_matmul"], cb["rms_matmul"] - layers);
  EXPECT_EQ(decode.nodes().size(), before.nodes().size() - static_cast<size_t>(layers));
  // the projections feeding rope_store before, the fused nodes after: same weights and attrs
  std::vector<std::pair<std::vector<std::string>, kiln::ir::Attrs>> want, got;
  for (const auto& n : before.nodes())
    if (n.op == OpKind::RopeStore)
      for (const auto& m : before.nodes())
        if (m.op == OpKind::RmsMatMul && m.outputs[0] == n.inputs[0]) {
          std::vector<std::string> w;
          for (size_t i = 2; i < m.inputs.size(); ++i) w.push_back(before.value(m.inputs[i]).name);
          want.emplace_back(w, m.attrs);
        }
  for (const auto& n : decode.nodes())
    if (n.op == OpKind::RmsMatMulRopeStore) {
      std::vector<std::string> w;
      for (size_t i = 5; i < n.inputs.size(); ++i) w.push_back(decode.value(n.inputs[i]).name);
      kiln::ir::Attrs a;
      for (const char* k : {"eps", "x_q8"})
        if (n.attrs.count(k)) a[k] = n.attrs.at(k);
      got.emplace_back(w, a);
    }
  ASSERT_EQ(want.size(), static_cast<size_t>(layers));
  EXPECT_TRUE(got == want) << "the fused nodes' weights / eps / x_q8 are not their rms_matmuls'";
  compare_runs(before, decode, ws, {1, 2, 3, 4}, 3, /*exact=*/true);
}

TEST(PipelineSemantics, TinyLlamaPrefillAndDecode) {
  for (const char* type : {"q4_1", "q8_0"}) {
    SCOPED_TRACE(type);
    auto bytes = kiln::synth::build_model({.geometry = "tiny", .type = type, .seed = 11}).to_bytes();
    auto f = kiln::gguf::File::from_bytes(std::move(bytes));
    auto cfg = kiln::frontend::read_config(f);
    Graph g = with_sampling(kiln::frontend::build_graph(f, cfg, {.max_tokens = 8, .max_context = 32}));
    Graph fused = kiln::passes::run_pipeline(g, kiln::passes::default_pipeline(), {});

    auto c = op_counts(fused);
    const int L = static_cast<int>(cfg.n_layers);
    EXPECT_EQ(c["rms_matmul"], L);
    EXPECT_EQ(c["rope_store"], L);
    EXPECT_EQ(c["attention"], L);
    EXPECT_EQ(c["matmul_add"], 2 * L);
    EXPECT_EQ(c["rms_matmul_swiglu"], L);
    EXPECT_EQ(c["embed"], 1);
    EXPECT_EQ(c["lm_head_sample"], 1);
    EXPECT_EQ(fused.nodes().size(), static_cast<size_t>(6 * L + 2));
    // every attention node takes the one split scratch (split-decode-attention)
    std::set<kiln::ir::ValueId> scratch;
    for (const auto& n : fused.nodes())
      if (n.op == kiln::ir::OpKind::Attention) {
        ASSERT_EQ(n.inputs.size(), 5u);
        scratch.insert(n.inputs[4]);
      }
    EXPECT_EQ(scratch.size(), 1u);

    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(cfg.vocab) - 1);
    std::vector<int32_t> prompt(6);
    for (auto& t : prompt) t = tok(rng);
    compare_runs(g, fused, kiln::gguf::weight_source(f), prompt, 3);

    // The decode program: one weight per projection, int8 activations (q4_1, q8_0).
    kiln::passes::PipelineOptions no_epilogue;
    no_epilogue.disable = {"fuse-qkv-rope-epilogue"};
    Graph before = kiln::passes::run_pipeline(fused, kiln::passes::decode_pipeline(), no_epilogue);
    Graph decode = kiln::passes::run_pipeline(fused, kiln::passes::decode_pipeline(), {});
    for (const auto& n : decode.nodes())
      if (n.op == OpKind::RmsMatMulRopeStore) {
        EXPECT_EQ(n.inputs.size(), 6u);
        EXPECT_EQ(n.attr_int("x_q8"), 1);
      }
    expect_rope_epilogue_fused(before, decode, cfg.n_layers, kiln::gguf::weight_source(f));
  }
}

TEST(PipelineSemantics, MixedWeightTypesStayCorrect) {
  // q4_k_m gives attn_v / ffn_down another type in some layers: the QKV fusion
  // must then leave that layer's projections alone, and the result must still match.
  auto bytes = kiln::synth::build_model({.geometry = "tiny", .type = "q4_k_m", .seed = 5}).to_bytes();
  auto f = kiln::gguf::File::from_bytes(std::move(bytes));
  auto cfg = kiln::frontend::read_config(f);
  Graph g = with_sampling(kiln::frontend::build_graph(f, cfg, {.max_tokens = 8, .max_context = 32}));
  Graph fused = kiln::passes::run_pipeline(g, kiln::passes::default_pipeline(), {});
  int mixed_layers = 0;
  for (int64_t i = 0; i < cfg.n_layers; ++i) {
    auto q = f.find_tensor("blk." + std::to_string(i) + ".attn_q.weight");
    auto v = f.find_tensor("blk." + std::to_string(i) + ".attn_v.weight");
    mixed_layers += q->type != v->type;
  }
  EXPECT_EQ(op_counts(fused)["rope_store"], cfg.n_layers - mixed_layers);
  compare_runs(g, fused, kiln::gguf::weight_source(f), {1, 2, 3, 4}, 3);
  // The decode program fuses the mixed layers too (fuse-qkv-parts: one
  // rms_matmul with three weights), and computes what the decode program
  // without that pass computes (both with int8 activations).
  ASSERT_GT(mixed_layers, 0) << "the synthetic q4_k_m model has no mixed layer";
  kiln::passes::PipelineOptions no_epilogue, no_parts;
  no_epilogue.disable = {"fuse-qkv-rope-epilogue"};
  no_parts.disable = {"fuse-qkv-parts", "fuse-qkv-rope-epilogue"};
  Graph parts = kiln::passes::run_pipeline(fused, kiln::passes::decode_pipeline(), no_epilogue);
  Graph decode_unfused = kiln::passes::run_pipeline(fused, kiln::passes::decode_pipeline(), no_parts);
  EXPECT_EQ(op_counts(parts)["rope_store"], cfg.n_layers);
  int n_parts = 0;
  for (const auto& n : parts.nodes())
    if (n.op == OpKind::RmsMatMul && n.inputs.size() == 5) {
      ++n_parts;
      EXPECT_TRUE(n.attrs.count("x_q8")) << "q4_k + q6_k parts read int8 activations";
    }
  EXPECT_EQ(n_parts, mixed_layers);
  EXPECT_EQ(parts.nodes().size(), decode_unfused.nodes().size() - 5 * static_cast<size_t>(mixed_layers));
  compare_runs(decode_unfused, parts, kiln::gguf::weight_source(f), {1, 2, 3, 4}, 3);
  // The whole decode pipeline then puts every layer's rope_store into its
  // projection (fuse-qkv-rope-epilogue): the mixed layers' three-weight ones too.
  Graph decode = kiln::passes::run_pipeline(fused, kiln::passes::decode_pipeline(), {});
  int three = 0;
  for (const auto& n : decode.nodes())
    if (n.op == OpKind::RmsMatMulRopeStore && n.inputs.size() == 8) {
      ++three;
      EXPECT_EQ(n.attr_int("x_q8"), 1) << "q4_k + q6_k parts read int8 activations";
    }
  EXPECT_EQ(three, mixed_layers);
  expect_rope_epilogue_fused(parts, decode, cfg.n_layers, kiln::gguf::weight_source(f));
}

TEST(WeightSource, ConcatenatesParts) {
  auto bytes = kiln::synth::build_model({.geometry = "tiny", .type = "q8_0", .seed = 3}).to_bytes();
  auto f = kiln::gguf::File::from_bytes(std::move(bytes));
  auto ws = kiln::gguf::weight_source(f);
  auto q = ws("blk.0.attn_q.weight"), k = ws("blk.0.attn_k.weight");
  auto qk = ws("blk.0.attn_q.weight+blk.0.attn_k.weight");
  EXPECT_EQ(qk.dtype, q.dtype);
  EXPECT_EQ(qk.shape, (std::vector<int64_t>{q.shape[0] + k.shape[0], q.shape[1]}));
  ASSERT_EQ(qk.nbytes, q.nbytes + k.nbytes);
  EXPECT_EQ(0, std::memcmp(qk.data, q.data, q.nbytes));
  EXPECT_EQ(0, std::memcmp(qk.data + q.nbytes, k.data, k.nbytes));
  EXPECT_EQ(ws("blk.0.attn_q.weight+blk.0.attn_k.weight").data, qk.data);  // cached
  // 1-D parts join end to end.
  auto n2 = ws("blk.0.attn_norm.weight+blk.0.ffn_norm.weight");
  EXPECT_EQ(n2.shape, (std::vector<int64_t>{2 * kiln::frontend::read_config(f).hidden}));
  // Mismatched row lengths and missing parts are errors naming the part.
  try {
    ws("blk.0.attn_q.weight+blk.0.ffn_down.weight");
    FAIL();
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_down.weight"), std::string::npos) << e.what();
  }
  try {
    ws("blk.0.attn_q.weight+nope");
    FAIL();
  } catch (const kiln::Error& e) {
    EXPECT_EQ(e.code(), kiln::ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos) << e.what();
  }
}

std::filesystem::path model_dir() {
  if (const char* d = std::getenv("KILN_MODEL_DIR")) return d;
  return std::filesystem::path(KILN_SOURCE_DIR) / ".cache" / "models";
}

TEST(PipelineSemantics, RealSmolLM2) {
  auto path = model_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf";
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: run ./fetch_models.sh";
  auto f = kiln::gguf::File::open(path.string());
  auto cfg = kiln::frontend::read_config(f);
  Graph g = with_sampling(kiln::frontend::build_graph(f, cfg, {.max_tokens = 16, .max_context = 64}));
  std::vector<std::string> log;
  kiln::passes::PipelineOptions opt;
  opt.on_pass = [&](const std::string& p, bool changed, double) { log.push_back(p + (changed ? "+" : "-")); };
  Graph fused = kiln::passes::run_pipeline(g, kiln::passes::default_pipeline(), opt);
  kiln::ir::verify(fused);

  std::string before, after;
  for (const auto& [op, n] : op_counts(g)) before += " " + op + "=" + std::to_string(n);
  for (const auto& [op, n] : op_counts(fused)) after += " " + op + "=" + std::to_string(n);
  std::cout << "SmolLM2 ops before (" << g.nodes().size() << "):" << before << "\n"
            << "SmolLM2 ops after (" << fused.nodes().size() << "):" << after << "\n";

  const int L = static_cast<int>(cfg.n_layers);
  std::map<std::string, int> want{{"embed", 1},          {"rms_matmul", L},         {"rope_store", L},
                                  {"attention", L},      {"matmul_add", 2 * L},     {"rms_matmul_swiglu", L},
                                  {"lm_head_sample", 1}};
  EXPECT_EQ(op_counts(fused), want);
  // Per layer, in schedule order.
  std::vector<std::string> layer0;
  for (size_t i = 1; i <= 6; ++i) layer0.emplace_back(kiln::ir::op_info(fused.nodes()[i].op).name);
  EXPECT_EQ(layer0, (std::vector<std::string>{"rms_matmul", "rope_store", "attention", "matmul_add",
                                              "rms_matmul_swiglu", "matmul_add"}));
  // The concatenated weights resolve (Q4_1 rows of one length), and the graph
  // keeps the names the compile driver and runtime look up.
  auto ws = kiln::gguf::weight_source(f);
  for (const auto& v : fused.values())
    if (v.kind == kiln::ir::ValueKind::Weight) {
      auto wd = ws(v.source);
      std::vector<int64_t> shape;
      for (const auto& d : v.shape) shape.push_back(d.value);
      EXPECT_EQ(wd.shape, shape) << v.source;
    }
  EXPECT_TRUE(fused.find_value("logits").has_value());
  EXPECT_TRUE(fused.find_value("next_token").has_value());
  EXPECT_TRUE(fused.find_value("blk.0.k_cache").has_value());
}

TEST(PipelineSemantics, RealSmolLM2Interpreted) {
  auto path = model_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf";
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: run ./fetch_models.sh";
  auto f = kiln::gguf::File::open(path.string());
  auto cfg = kiln::frontend::read_config(f);
  Graph g = with_sampling(kiln::frontend::build_graph(f, cfg, {.max_tokens = 8, .max_context = 16}));
  Graph fused = kiln::passes::run_pipeline(g, kiln::passes::default_pipeline(), {});
  compare_runs(g, fused, kiln::gguf::weight_source(f), {1, 9690, 2683, 314}, 2);
}

}  // namespace
