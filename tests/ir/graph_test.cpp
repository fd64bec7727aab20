// Graph builders, op table, and the verifier: one rejection per rule.
#include <gtest/gtest.h>

#include <functional>

#include "ir/graph.h"
#include "ir_test_util.h"

namespace kiln::ir {
namespace {
using testing::F;

TEST(OpTable, NamesRoundTrip) {
  for (OpKind k : {OpKind::Embed, OpKind::RmsNorm, OpKind::MatMul, OpKind::Add, OpKind::Mul, OpKind::Silu,
                   OpKind::SwiGlu, OpKind::Rope, OpKind::KvStore, OpKind::Attention, OpKind::LastRow, OpKind::ArgMax}) {
    auto back = op_from_name(op_info(k).name);
    ASSERT_TRUE(back.has_value()) << op_info(k).name;
    EXPECT_EQ(*back, k);
  }
  // In-place outputs: kv_store's output is its cache (input 0); rope_store's
  // outputs 1, 2 are its k and v caches (inputs 2, 3), output 0 (q) is new.
  EXPECT_EQ(op_info(OpKind::KvStore).aliased_input(0), 0);
  EXPECT_EQ(op_info(OpKind::KvStore).aliased_input(1), -1);
  EXPECT_EQ(op_info(OpKind::RopeStore).aliased_input(0), -1);
  EXPECT_EQ(op_info(OpKind::RopeStore).aliased_input(1), 2);
  EXPECT_EQ(op_info(OpKind::RopeStore).aliased_input(2), 3);
  EXPECT_EQ(op_info(OpKind::RopeStore).aliased_input(7), -1);
  EXPECT_EQ(op_info(OpKind::MatMul).aliased_input(0), -1);
  EXPECT_TRUE(op_info(OpKind::KvStore).updates_in_place());
  EXPECT_TRUE(op_info(OpKind::RopeStore).updates_in_place());
  // attention's optional output 1 is its split scratch (optional input 4)
  EXPECT_EQ(op_info(OpKind::Attention).aliased_input(0), -1);
  EXPECT_EQ(op_info(OpKind::Attention).aliased_input(1), 4);
  EXPECT_TRUE(op_info(OpKind::Attention).updates_in_place());
  for (OpKind k : {OpKind::Embed, OpKind::RmsNorm, OpKind::MatMul, OpKind::Add, OpKind::Mul, OpKind::Silu,
                   OpKind::SwiGlu, OpKind::Rope, OpKind::LastRow, OpKind::ArgMax,
                   OpKind::RmsMatMul, OpKind::MatMulAdd, OpKind::RmsMatMulSwiGlu, OpKind::LmHeadSample})
    EXPECT_FALSE(op_info(k).updates_in_place()) << op_info(k).name;
  EXPECT_EQ(op_info(OpKind::Rope).min_inputs, 2);
  EXPECT_EQ(op_info(OpKind::Rope).max_inputs, 3);
  EXPECT_FALSE(op_from_name("conv2d").has_value());
}

TEST(Graph, BuildersAndUniqueNames) {
  Graph g;
  g.sym_bounds["tokens"] = 8;
  auto t = g.add_input("tokens", DType::I32, {Dim::symbolic("tokens", 8)});
  auto w = g.add_weight("emb", DType::F32, {F(10), F(4)}, "token_embd.weight");
  auto x = g.add_node(OpKind::Embed, {w, t}, {}, "x", DType::F32, {Dim::symbolic("tokens", 8), F(4)});
  EXPECT_EQ(t, 0);
  EXPECT_EQ(w, 1);
  EXPECT_EQ(x, 2);
  EXPECT_EQ(g.value(w).source, "token_embd.weight");
  EXPECT_EQ(g.value(x).kind, ValueKind::Temp);
  EXPECT_EQ(*g.find_value("x"), x);
  EXPECT_FALSE(g.find_value("nope").has_value());
  g.mark_output(x);
  EXPECT_NO_THROW(verify(g));
  try {
    g.add_state("x", DType::F32, {F(1)});
    FAIL() << "duplicate name accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(e.field(), "x");
  }
  EXPECT_THROW(g.add_node(OpKind::Silu, {99}, {}, "y", DType::F32, {F(1)}), Error);
  EXPECT_THROW(g.mark_output(42), Error);
}

TEST(Node, AttrAccessors) {
  Node n;
  n.op = OpKind::Rope;
  n.attrs = {{"i", int64_t{3}}, {"d", 2.5}, {"s", std::string("neox")}};
  EXPECT_EQ(n.attr_int("i"), 3);
  EXPECT_EQ(n.attr_float("i"), 3.0);
  EXPECT_EQ(n.attr_float("d"), 2.5);
  EXPECT_EQ(n.attr_str("s"), "neox");
  EXPECT_FALSE(n.attr_float_opt("missing").has_value());
  EXPECT_EQ(*n.attr_float_opt("d"), 2.5);
  EXPECT_THROW(n.attr_int("d"), Error);
  EXPECT_THROW(n.attr_int("missing"), Error);
  EXPECT_THROW(n.attr_str("i"), Error);
  EXPECT_THROW(n.attr_float("s"), Error);
}

// A valid one-layer graph that each rejection test then breaks in one place.
struct Fixture {
  Graph g;
  ValueId tokens, pos, emb, norm_w, wq, wk, kc, vc, x, xn, q, k, qr, kr, kst, vst, att, last, lm, logits, am;
  Dim T = Dim::symbolic("tokens", 16), C = Dim::symbolic("kv_len", 32);
  Fixture() {
    g.sym_bounds = {{"tokens", 16}, {"kv_len", 32}};
    tokens = g.add_input("tokens", DType::I32, {T});
    pos = g.add_input("positions", DType::I32, {T});
    emb = g.add_weight("emb", DType::F32, {F(50), F(16)}, "token_embd.weight");
    norm_w = g.add_weight("norm", DType::F32, {F(16)}, "norm.weight");
    wq = g.add_weight("wq", DType::F32, {F(16), F(16)}, "wq");
    wk = g.add_weight("wk", DType::F32, {F(8), F(16)}, "wk");
    kc = g.add_state("kc", DType::F32, {C, F(8)});
    vc = g.add_state("vc", DType::F32, {C, F(8)});
    x = g.add_node(OpKind::Embed, {emb, tokens}, {{"scale", 1.0}}, "x", DType::F32, {T, F(16)});
    xn = g.add_node(OpKind::RmsNorm, {x, norm_w}, {{"eps", 1e-5}}, "xn", DType::F32, {T, F(16)});
    q = g.add_node(OpKind::MatMul, {xn, wq}, {}, "q", DType::F32, {T, F(16)});
    k = g.add_node(OpKind::MatMul, {xn, wk}, {}, "k", DType::F32, {T, F(8)});
    Attrs rope_q{{"n_heads", int64_t{4}}, {"head_dim", int64_t{4}}, {"n_rot", int64_t{4}}, {"theta", 10000.0},
                 {"mode", std::string("normal")}};
    Attrs rope_k = rope_q;
    rope_k["n_heads"] = int64_t{2};
    qr = g.add_node(OpKind::Rope, {q, pos}, rope_q, "qr", DType::F32, {T, F(16)});
    kr = g.add_node(OpKind::Rope, {k, pos}, rope_k, "kr", DType::F32, {T, F(8)});
    kst = g.add_node(OpKind::KvStore, {kc, kr, pos}, {}, "kst", DType::F32, {C, F(8)});
    vst = g.add_node(OpKind::KvStore, {vc, k, pos}, {}, "vst", DType::F32, {C, F(8)});
    att = g.add_node(OpKind::Attention, {qr, kst, vst, pos},
                     {{"n_heads", int64_t{4}}, {"n_kv_heads", int64_t{2}}, {"head_dim", int64_t{4}}, {"scale", 0.5}},
                     "att", DType::F32, {T, F(16)});
    last = g.add_node(OpKind::LastRow, {att}, {}, "last", DType::F32, {F(1), F(16)});
    lm = g.add_node(OpKind::Add, {last, norm_w}, {}, "lm", DType::F32, {F(1), F(16)});
    logits = g.add_node(OpKind::MatMul, {lm, emb}, {}, "logits", DType::F32, {F(1), F(50)});
    am = g.add_node(OpKind::ArgMax, {logits}, {}, "am", DType::I32, {F(1)});
    g.mark_output(logits);
    g.mark_output(am);
  }
  Node& node_of(ValueId out) {
    for (auto& n : g.nodes())
      if (n.outputs[0] == out) return n;
    throw std::runtime_error("no node");
  }
};

void expect_rejected(const std::function<void(Fixture&)>& breakit, const std::string& rule_substr) {
  Fixture f;
  ASSERT_NO_THROW(verify(f.g));
  breakit(f);
  try {
    verify(f.g);
    ADD_FAILURE() << "verifier accepted a graph that breaks: " << rule_substr;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find(rule_substr), std::string::npos)
        << "message '" << e.what() << "' should mention '" << rule_substr << "'";
  }
}

TEST(Verify, AcceptsValidGraph) {
  Fixture f;
  EXPECT_NO_THROW(verify(f.g));
}

TEST(Verify, ErrorNamesNodeIndexOpAndRule) {
  Fixture f;
  f.g.mutable_values()[static_cast<size_t>(f.wq)].shape = {F(16), F(12)};
  try {
    verify(f.g);
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("node 2 "), std::string::npos) << m;
    EXPECT_NE(m.find("(matmul"), std::string::npos) << m;
    EXPECT_NE(m.find("K must match"), std::string::npos) << m;
    EXPECT_EQ(e.field(), "q");
  }
}

TEST(Verify, Rejections) {
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.wk)].shape = {F(8), F(15)}; },
                  "K must match");
  expect_rejected(
      [](Fixture& f) {
        f.node_of(f.q).inputs.push_back(f.pos);
        f.node_of(f.q).inputs.push_back(f.pos);
      },
      "arity");
  // a third matmul input is an attention's scratch' under x_merge only
  expect_rejected([](Fixture& f) { f.node_of(f.q).inputs.push_back(f.pos); }, "x_merge");
  expect_rejected([](Fixture& f) { std::swap(f.g.nodes()[0], f.g.nodes()[1]); }, "defined before use");
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.x)].shape = {f.T, F(15)}; },
                  "output shape");  // embed's declared output no longer matches the table width
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.norm_w)].shape = {F(15)}; },
                  "rms_norm w width");
  expect_rejected([](Fixture& f) { f.node_of(f.xn).attrs.erase("eps"); }, "attribute 'eps'");
  expect_rejected([](Fixture& f) { f.node_of(f.qr).attrs["n_heads"] = int64_t{3}; }, "width == n_heads*head_dim");
  expect_rejected([](Fixture& f) { f.node_of(f.qr).attrs["n_rot"] = int64_t{3}; }, "n_rot is even");
  expect_rejected([](Fixture& f) { f.node_of(f.qr).attrs["mode"] = std::string("gptj"); }, "rope mode");
  expect_rejected([](Fixture& f) { f.node_of(f.qr).attrs["theta"] = std::string("big"); }, "attribute 'theta'");
  expect_rejected(
      [](Fixture& f) {
        auto ff = f.g.add_weight("ff", DType::I32, {F(2)}, "rope_freqs.weight");
        f.node_of(f.qr).inputs.push_back(ff);
      },
      "rope freq_factors is a float type");
  expect_rejected(
      [](Fixture& f) {
        // A freq_factors of the wrong length, declared up front: 16 entries, n_rot/2 = 2.
        f.node_of(f.qr).inputs.push_back(f.norm_w);
      },
      "freq_factors has n_rot/2 entries");
  expect_rejected([](Fixture& f) { f.node_of(f.kst).inputs[0] = f.kr; }, "kv_store input 0 is a State");
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.kc)].shape = {f.C, F(4)}; },
                  "kv_store x width equals cache width");
  expect_rejected([](Fixture& f) { f.node_of(f.kst).inputs[2] = f.x; },
                  "kv_store pos");
  expect_rejected([](Fixture& f) { f.node_of(f.att).attrs["n_kv_heads"] = int64_t{3}; },
                  "n_heads % n_kv_heads == 0");
  expect_rejected([](Fixture& f) { f.node_of(f.att).attrs["n_kv_heads"] = int64_t{4}; },
                  "k width == n_kv_heads*head_dim");
  expect_rejected([](Fixture& f) { f.node_of(f.att).inputs[2] = f.qr; }, "k and v have one shape");
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.last)].shape = {F(2), F(16)}; },
                  "output shape");
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.am)].dtype = DType::F32; },
                  "output dtype");
  expect_rejected([](Fixture& f) { f.node_of(f.lm).inputs[1] = f.wk; }, "b has the shape of a");
  expect_rejected([](Fixture& f) { f.node_of(f.x).inputs[1] = f.emb; },
                  "embed ids");
  // Structural rules.
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.q)].name = "x"; }, "used twice");
  expect_rejected([](Fixture& f) { f.g.sym_bounds.erase("kv_len"); }, "not in sym_bounds");
  expect_rejected([](Fixture& f) { f.g.sym_bounds["kv_len"] = 64; }, "sym_bounds says 64");
  expect_rejected([](Fixture& f) { f.node_of(f.q).outputs[0] = f.kc; }, "node outputs must be temps");
  expect_rejected([](Fixture& f) { f.node_of(f.k).outputs[0] = f.q; }, "already defined");
  expect_rejected([](Fixture& f) { f.g.mutable_outputs().clear(); }, "no outputs");
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.wq)].source.clear(); }, "no source");
  expect_rejected([](Fixture& f) { f.g.mutable_values()[static_cast<size_t>(f.wq)].shape[0] = F(-1); }, "negative");
}

// ir::aliased_input reads the op table for one node: the state value an
// in-place output updates, kNoValue for a new value.
TEST(OpTable, AliasedInputOfANode) {
  Fixture f;
  EXPECT_EQ(aliased_input(f.node_of(f.kst), 0), f.kc);
  EXPECT_EQ(aliased_input(f.node_of(f.vst), 0), f.vc);
  EXPECT_EQ(aliased_input(f.node_of(f.q), 0), kNoValue);
  EXPECT_EQ(aliased_input(f.node_of(f.kst), 1), kNoValue);
}

// The one resolver of symbolic dims (compiler, codegen and tests use it):
// bound dims take the binding, unbound ones (0) fall back to sym_bounds.
TEST(ResolveDims, BindingsThenSymBounds) {
  Fixture f;
  const Dim S = F(8);
  EXPECT_EQ(resolve_dim(f.g, S, {.tokens = 3, .kv_len = 5, .seqs = 1}), 8);
  EXPECT_EQ(resolve_dim(f.g, f.T, {.tokens = 3, .kv_len = 5, .seqs = 1}), 3);
  EXPECT_EQ(resolve_dim(f.g, f.C, {.tokens = 3, .kv_len = 5, .seqs = 1}), 5);
  EXPECT_EQ(resolve_dim(f.g, f.T, {}), 16);  // sym_bounds
  EXPECT_EQ(resolve_dim(f.g, f.C, {.tokens = 3}), 32);
  EXPECT_EQ(resolve_dim(f.g, Dim::symbolic("seqs", 4), {.seqs = 1}), 1);
  const Value& kc = f.g.value(f.kc);  // f32 [kv_len, 8]
  EXPECT_EQ(resolve_elements(f.g, kc, {.tokens = 3, .kv_len = 5}), 40);
  EXPECT_EQ(resolve_bytes(f.g, kc, {.tokens = 3, .kv_len = 5}), 160u);
  EXPECT_EQ(resolve_bytes(f.g, kc, {}), 32u * 8 * 4);
  // Quantised: whole blocks (q4_1: 32 elements in 20 bytes).
  Value w;
  w.dtype = DType::Q4_1;
  w.shape = {f.T, F(64)};
  EXPECT_EQ(resolve_elements(f.g, w, {.tokens = 2}), 128);
  EXPECT_EQ(resolve_bytes(f.g, w, {.tokens = 2}), 4u * 20);
}

TEST(Verify, SymbolicDimsCompareBySymbol) {
  // x[tokens, 8] + b[tokens, 8] is fine; x[tokens, 8] + b[kv_len, 8] is not,
  // even though both bounds are 16.
  Graph g;
  g.sym_bounds = {{"tokens", 16}, {"kv_len", 16}};
  auto a = g.add_input("a", DType::F32, {Dim::symbolic("tokens", 16), F(8)});
  auto b = g.add_input("b", DType::F32, {Dim::symbolic("kv_len", 16), F(8)});
  auto c = g.add_input("c", DType::F32, {F(16), F(8)});
  auto ok = g.add_node(OpKind::Add, {a, a}, {}, "ok", DType::F32, {Dim::symbolic("tokens", 16), F(8)});
  g.mark_output(ok);
  EXPECT_NO_THROW(verify(g));
  Graph g2 = g;
  g2.nodes()[0].inputs[1] = b;
  EXPECT_THROW(verify(g2), Error);
  Graph g3 = g;
  g3.nodes()[0].inputs[1] = c;  // static 16 never equals symbolic bound 16
  EXPECT_THROW(verify(g3), Error);
}

}  // namespace
}  // namespace kiln::ir
