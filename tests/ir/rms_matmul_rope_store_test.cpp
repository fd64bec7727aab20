// rms_matmul_rope_store (the fuse-qkv-rope-epilogue pass's op): its op-table
// entry, its text form, the verifier's rules (those of rms_matmul with one or
// three weights and of rope_store) and its meaning in the interpreter, which
// must be rope_store(rms_matmul(...)) bit for bit.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/interpreter.h"
#include "ir/quantize.h"
#include "ir_test_util.h"

namespace kiln::ir {
namespace {

using testing::expect_graphs_equal;

// One attention input block: nh = 2, nkv = 1, hd = 8 (qkv width 32), K = 256,
// f16 caches of 8 rows.
struct Block {
  bool three_weights = true;  // wq q4_k[16], wk q4_k[8], wv q6_k[8]; else one q6_k[32] weight
  bool ff = false;            // freq_factors (then n_rot = 6: a partial rotation, 3 factors)
  bool x_q8 = false;
  std::string mode = "normal";

  int64_t n_rot() const { return ff ? 6 : 8; }
  std::string weights_decl() const {
    if (!three_weights) return "  weight %w : q6_k[32, 256] = \"wqkv\"\n";
    return "  weight %wq : q4_k[16, 256] = \"wq\"\n  weight %wk : q4_k[8, 256] = \"wk\"\n"
           "  weight %wv : q6_k[8, 256] = \"wv\"\n";
  }
  std::string weights() const { return three_weights ? "%wq, %wk, %wv" : "%w"; }
  std::string mm_attrs() const { return x_q8 ? "eps = 1e-05, x_q8 = 1" : "eps = 1e-05"; }
  std::string rope_attrs() const {
    return "head_dim = 8, mode = \"" + mode + "\", n_heads = 2, n_kv_heads = 1, n_rot = " + std::to_string(n_rot()) +
           ", theta = 10000.0";
  }
  std::string head() const {
    return "graph {\n  sym tokens <= 4\n  input %x : f32[tokens, 256]\n  input %pos : i32[tokens]\n"
           "  weight %g : f32[256] = \"g\"\n" +
           weights_decl() + "  state %kc : f16[8, 8]\n  state %vc : f16[8, 8]\n" +
           (ff ? "  weight %ff : f32[" + std::to_string(n_rot() / 2) + "] = \"ff\"\n" : std::string());
  }
  static std::string tail() { return "  output %q\n  output %kc2\n  output %vc2\n}\n"; }
  static std::string outs() { return "  %q : f32[tokens, 16], %kc2 : f16[8, 8], %vc2 : f16[8, 8] = "; }

  // rms_matmul, then rope_store
  std::string unfused() const {
    return head() + "  %qkv : f32[tokens, 32] = rms_matmul(%x, %g, " + weights() + ") {" + mm_attrs() + "}\n" +
           outs() + "rope_store(%qkv, %pos, %kc, %vc" + (ff ? ", %ff" : "") + ") {" + rope_attrs() + "}\n" + tail();
  }
  // the one fused node
  std::string fused() const {
    return head() + outs() + "rms_matmul_rope_store(%x, %pos, %kc, %vc, %g, " + weights() + (ff ? ", %ff" : "") +
           ") {eps = 1e-05, " + rope_attrs() + (x_q8 ? ", x_q8 = 1" : "") + "}\n" + tail();
  }
};

// Random quantised weights (valid blocks), a positive gain and factors.
struct Weights {
  std::map<std::string, std::pair<DType, std::vector<int64_t>>> decl{
      {"wq", {DType::Q4_K, {16, 256}}}, {"wk", {DType::Q4_K, {8, 256}}}, {"wv", {DType::Q6_K, {8, 256}}},
      {"wqkv", {DType::Q6_K, {32, 256}}}};
  std::map<std::string, std::vector<uint8_t>> bytes;
  std::vector<float> gain, ff;
  Weights() {
    uint64_t seed = 21;
    for (const auto& [name, d] : decl) random_blocks(d.first, d.second[0] * d.second[1], seed++, bytes[name]);
    SplitMix64 rng(4);
    gain.resize(256);
    for (float& v : gain) v = 0.5f + static_cast<float>(rng.uniform());
    for (int i = 0; i < 4; ++i) ff.push_back(1.0f + 3.0f * static_cast<float>(rng.uniform()));
  }
  WeightSource source() const {
    return [this](const std::string& name) -> WeightData {
      if (name == "g") return {DType::F32, {256}, reinterpret_cast<const uint8_t*>(gain.data()), 1024};
      if (name == "ff") return {DType::F32, {3}, reinterpret_cast<const uint8_t*>(ff.data()), 12};
      const auto& d = decl.at(name);
      const auto& b = bytes.at(name);
      return {d.first, d.second, b.data(), b.size()};
    };
  }
};

TEST(RmsMatMulRopeStore, OpTableAndTextRoundTrip) {
  const OpInfo& info = op_info(OpKind::RmsMatMulRopeStore);
  EXPECT_EQ(info.name, "rms_matmul_rope_store");
  EXPECT_EQ(op_from_name("rms_matmul_rope_store"), OpKind::RmsMatMulRopeStore);
  EXPECT_EQ(info.min_inputs, 6);
  EXPECT_EQ(info.max_inputs, 9);
  EXPECT_EQ(info.aliased_input(0), -1);  // q is new
  EXPECT_EQ(info.aliased_input(1), 2);   // kc' is the k cache
  EXPECT_EQ(info.aliased_input(2), 3);   // vc' is the v cache
  EXPECT_EQ(info.aliased_input(3), -1);
  EXPECT_TRUE(info.updates_in_place());
  for (bool three : {false, true})
    for (bool ff : {false, true}) {
      const std::string text = Block{three, ff, true}.fused();
      Graph g = parse(text);
      EXPECT_NO_THROW(verify(g)) << text;
      EXPECT_EQ(print(g), text);  // the hand-written text is already canonical
      expect_graphs_equal(parse(print(g)), g);
      ASSERT_EQ(g.nodes().size(), 1u);
      EXPECT_EQ(g.nodes()[0].op, OpKind::RmsMatMulRopeStore);
      EXPECT_EQ(g.nodes()[0].inputs.size(), size_t(5 + (three ? 3 : 1) + (ff ? 1 : 0)));
      EXPECT_EQ(aliased_input(g.nodes()[0], 1), *g.find_value("kc"));
      EXPECT_EQ(aliased_input(g.nodes()[0], 2), *g.find_value("vc"));
    }
}

// The fused node against rms_matmul + rope_store on the same inputs: q and
// both caches bit-identical, over a 3-token step and a 1-token step that
// share the caches (positions > 0).
void expect_same_as_unfused(const Block& b) {
  SCOPED_TRACE(b.fused());
  const Weights w;
  Graph gu = parse(b.unfused()), gf = parse(b.fused());
  verify(gu);
  verify(gf);
  Interpreter iu(gu, w.source()), jf(gf, w.source());
  std::mt19937 rng(17);
  int32_t p0 = 2;
  for (int64_t T : {3, 1}) {
    SCOPED_TRACE("T = " + std::to_string(T));
    std::vector<int32_t> pos;
    for (int64_t t = 0; t < T; ++t) pos.push_back(p0 + static_cast<int32_t>(t));
    std::vector<float> x = testing::rand_vec(static_cast<size_t>(T * 256), rng, -2, 2);
    for (float& v : x)
      if (v == 0.0f) v = 0.5f;
    const std::map<std::string, Tensor> in{{"x", testing::f32_tensor({T, 256}, x)}, {"pos", Tensor::from_i32(pos)}};
    auto ru = iu.run(in);
    auto rf = jf.run(in);
    for (const char* name : {"q", "kc2", "vc2"}) {
      ASSERT_EQ(ru.at(name).shape, rf.at(name).shape) << name;
      const auto &u = ru.at(name).f32, &f = rf.at(name).f32;
      ASSERT_EQ(u.size(), f.size()) << name;
      for (size_t i = 0; i < u.size(); ++i) EXPECT_EQ(u[i], f[i]) << name << "[" << i << "]";
    }
    // the step wrote its rows: the comparison is not of zeros
    for (int32_t p : pos) {
      float k = 0, v = 0;
      for (int i = 0; i < 8; ++i) {
        k += std::fabs(rf.at("kc2").f32[static_cast<size_t>(p * 8 + i)]);
        v += std::fabs(rf.at("vc2").f32[static_cast<size_t>(p * 8 + i)]);
      }
      EXPECT_GT(k, 0.0f) << "k row " << p;
      EXPECT_GT(v, 0.0f) << "v row " << p;
    }
    p0 += static_cast<int32_t>(T);
  }
}

TEST(RmsMatMulRopeStore, InterpreterEqualsRmsMatMulThenRopeStore) {
  for (bool three : {false, true})
    for (bool ff : {false, true})
      for (bool q8 : {false, true}) expect_same_as_unfused(Block{three, ff, q8});
  expect_same_as_unfused(Block{true, true, true, "neox"});  // the op allows neox (the pass does not make it)
}

// The fused node's result depends on every part: the rope (positions), the
// freq factors and the int8 activations (a check that the equality above
// compares something these change).
TEST(RmsMatMulRopeStore, ResultDependsOnRopeFactorsAndQ8) {
  const Weights w;
  auto q_of = [&](const Block& b, int32_t pos) {
    Interpreter in(parse(b.fused()), w.source());
    std::mt19937 rng(3);
    auto out = in.run({{"x", testing::f32_tensor({1, 256}, testing::rand_vec(256, rng))},
                       {"pos", Tensor::from_i32({pos})}});
    return out.at("q").f32;
  };
  EXPECT_NE(q_of(Block{true, false, false}, 1), q_of(Block{true, false, false}, 2));
  EXPECT_NE(q_of(Block{true, false, false}, 1), q_of(Block{true, false, true}, 1));
  Block ff{true, true, false}, no_ff{true, false, false};
  EXPECT_NE(q_of(ff, 3), q_of(no_ff, 3));
}

void expect_rejected(const std::string& text, const std::string& what) {
  SCOPED_TRACE(what);
  Graph g = parse(text);
  try {
    verify(g);
    ADD_FAILURE() << "verify accepted:\n" << text;
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rms_matmul_rope_store"), std::string::npos) << m;
    EXPECT_NE(m.find(what), std::string::npos) << m;
  }
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const auto p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

TEST(RmsMatMulRopeStore, VerifierRejectsWhatRopeStoreOrRmsMatMulWould) {
  const std::string ok = Block{true, true, true}.fused();
  ASSERT_NO_THROW(verify(parse(ok)));
  // the weights' rows must make up (n_heads + 2 n_kv_heads) * head_dim = 32 columns
  expect_rejected(replaced(ok, "%wv : q6_k[8, 256]", "%wv : q6_k[16, 256]"),
                  "weight rows in all (the qkv width) == (n_heads + 2*n_kv_heads)*head_dim");
  expect_rejected(replaced(ok, "n_kv_heads = 1", "n_kv_heads = 2"),
                  "weight rows in all (the qkv width) == (n_heads + 2*n_kv_heads)*head_dim");
  // caches
  expect_rejected(replaced(ok, "state %kc : f16[8, 8]", "input %kc : f16[8, 8]"),
                  "inputs 2, 3 are State values (k, v caches)");
  expect_rejected(replaced(replaced(ok, "state %vc : f16[8, 8]", "state %vc : f32[8, 8]"), "%vc2 : f16", "%vc2 : f32"),
                  "k and v caches have one type");
  expect_rejected(replaced(ok, "%kc2 : f16[8, 8]", "%kc2 : f32[8, 8]"), "output 1 (k cache') is f16[8, 8]");
  // freq_factors
  expect_rejected(replaced(ok, "%ff : f32[3]", "%ff : f32[4]"), "freq_factors has n_rot/2 entries");
  expect_rejected(replaced(ok, "%ff : f32[3]", "%ff : i32[3]"), "freq_factors is a float type");
  // weights: 1 or 3, each [N, K] with x's K; x_q8 only on integer-dot types
  expect_rejected(replaced(ok, "%g, %wq, %wk, %wv", "%g, %wq, %wv"), "has 1 or 3 weights");
  expect_rejected(replaced(ok, "%wk : q4_k[8, 256]", "%wk : q4_k[8, 512]"), "K must match");
  expect_rejected(replaced(ok, "%wk : q4_k[8, 256]", "%wk : f16[8, 256]"), "x_q8 needs a weight of type");
  // the rms prologue and the attrs of both ops
  expect_rejected(replaced(ok, "%g : f32[256]", "%g : f32[128]"), "gain width equals x width");
  expect_rejected(replaced(ok, "{eps = 1e-05, ", "{"), "attribute 'eps'");
  expect_rejected(replaced(ok, "n_rot = 6", "n_rot = 5"), "n_rot is even");
  expect_rejected(replaced(ok, "mode = \"normal\"", "mode = \"gptj\""), "rope mode");
  expect_rejected(replaced(ok, "%q : f32[tokens, 16]", "%q : f32[tokens, 32]"), "output 0 (q) is f32[tokens, 16]");
  expect_rejected(replaced(ok, "input %pos : i32[tokens]", "input %pos : f32[tokens]"), "pos is i32");
  // arity comes from the op table
  Graph g = parse(ok);
  g.nodes()[0].inputs.push_back(*g.find_value("ff"));
  try {
    verify(g);
    ADD_FAILURE() << "10 inputs accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("takes 6..9 inputs, has 10"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::ir
