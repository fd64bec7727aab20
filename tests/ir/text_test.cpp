// Printer/parser: golden text, round trips, exact doubles, error line numbers.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ir/graph.h"
#include "ir_test_util.h"

namespace kiln::ir {
namespace {
using testing::expect_graphs_equal;
using testing::F;

Graph small_graph() {
  Graph g;
  Dim T = Dim::symbolic("tokens", 512), C = Dim::symbolic("kv_len", 2048);
  g.sym_bounds = {{"tokens", 512}, {"kv_len", 2048}};
  g.meta["arch"] = std::string("llama");
  g.meta["n_layers"] = int64_t{30};
  auto tokens = g.add_input("tokens", DType::I32, {T});
  auto pos = g.add_input("positions", DType::I32, {T});
  auto emb = g.add_weight("token_embd", DType::Q8_0, {F(49152), F(576)}, "token_embd.weight");
  auto x0 = g.add_node(OpKind::Embed, {emb, tokens}, {{"scale", 1.0}}, "x0", DType::F32, {T, F(576)});
  auto nw = g.add_weight("blk.0.attn_norm", DType::F32, {F(576)}, "blk.0.attn_norm.weight");
  auto xn = g.add_node(OpKind::RmsNorm, {x0, nw}, {{"eps", 1e-5}}, "x1", DType::F32, {T, F(576)});
  auto wk = g.add_weight("blk.0.attn_k", DType::Q4_1, {F(192), F(576)}, "blk.0.attn_k.weight");
  auto k = g.add_node(OpKind::MatMul, {xn, wk}, {}, "k.0", DType::F32, {T, F(192)});
  auto kr = g.add_node(OpKind::Rope, {k, pos},
                       {{"n_heads", int64_t{3}}, {"head_dim", int64_t{64}}, {"n_rot", int64_t{64}},
                        {"theta", 100000.0}, {"mode", std::string("normal")}},
                       "k_rope.0", DType::F32, {T, F(192)});
  auto kc = g.add_state("k_cache.0", DType::F32, {C, F(192)});
  auto ks = g.add_node(OpKind::KvStore, {kc, kr, pos}, {}, "k_store.0", DType::F32, {C, F(192)});
  auto last = g.add_node(OpKind::LastRow, {ks}, {}, "last", DType::F32, {F(1), F(192)});
  g.mark_output(last);
  return g;
}

// Written by hand from the format description, not captured from print().
const char* kSmallGraphText = R"(graph {
  sym kv_len <= 2048
  sym tokens <= 512
  meta arch = "llama"
  meta n_layers = 30
  input %tokens : i32[tokens]
  input %positions : i32[tokens]
  weight %token_embd : q8_0[49152, 576] = "token_embd.weight"
  %x0 : f32[tokens, 576] = embed(%token_embd, %tokens) {scale = 1.0}
  weight %blk.0.attn_norm : f32[576] = "blk.0.attn_norm.weight"
  %x1 : f32[tokens, 576] = rms_norm(%x0, %blk.0.attn_norm) {eps = 1e-05}
  weight %blk.0.attn_k : q4_1[192, 576] = "blk.0.attn_k.weight"
  %k.0 : f32[tokens, 192] = matmul(%x1, %blk.0.attn_k)
  %k_rope.0 : f32[tokens, 192] = rope(%k.0, %positions) {head_dim = 64, mode = "normal", n_heads = 3, n_rot = 64, theta = 100000.0}
  state %k_cache.0 : f32[kv_len, 192]
  %k_store.0 : f32[kv_len, 192] = kv_store(%k_cache.0, %k_rope.0, %positions)
  %last : f32[1, 192] = last_row(%k_store.0)
  output %last
}
)";

TEST(Text, GoldenPrint) {
  Graph g = small_graph();
  EXPECT_EQ(print(g), kSmallGraphText);
}

TEST(Text, ParsePrintRoundTrip) {
  Graph g = small_graph();
  Graph back = parse(print(g));
  expect_graphs_equal(g, back);
  EXPECT_NO_THROW(verify(back));
  EXPECT_EQ(print(parse(kSmallGraphText)), kSmallGraphText);
}

TEST(Text, DoublesAndAttrKindsRoundTripExactly) {
  Graph g;
  g.meta["third"] = 1.0 / 3.0;
  g.meta["tiny"] = 4.9406564584124654e-324;  // smallest denormal
  g.meta["big"] = 1.7976931348623157e308;
  g.meta["neg"] = -0.1;
  g.meta["whole"] = 100000.0;       // must stay a double, not become an int
  g.meta["negzero"] = -0.0;
  g.meta["inf"] = std::numeric_limits<double>::infinity();
  g.meta["i"] = int64_t{-9007199254740993};
  g.meta["ints"] = std::vector<int64_t>{1, -2, 3};
  g.meta["no_ints"] = std::vector<int64_t>{};
  g.meta["dbls"] = std::vector<double>{0.5, 2.0, 1e-7};
  g.meta["no_dbls"] = std::vector<double>{};
  g.meta["str"] = std::string("tab\there \"quoted\" back\\slash\nnewline \x01");
  g.meta["general.name"] = std::string("SmolLM2 135M");
  g.meta["odd key!"] = int64_t{1};
  auto a = g.add_input("a b", DType::F32, {F(2)});  // a name that needs quoting
  auto s = g.add_node(OpKind::Silu, {a}, {}, "s", DType::F32, {F(2)});
  g.mark_output(s);
  std::string text = print(g);
  Graph back = parse(text);
  expect_graphs_equal(g, back);
  EXPECT_EQ(std::get<double>(back.meta["third"]), 1.0 / 3.0);
  EXPECT_TRUE(std::holds_alternative<double>(back.meta["whole"]));
  EXPECT_TRUE(std::signbit(std::get<double>(back.meta["negzero"])));
  EXPECT_TRUE(std::holds_alternative<std::vector<double>>(back.meta["no_dbls"]));
  EXPECT_TRUE(std::holds_alternative<std::vector<int64_t>>(back.meta["no_ints"]));
  EXPECT_EQ(print(back), text);
}

TEST(Text, SymbolicBoundDifferentFromDeclared) {
  Graph g;
  g.sym_bounds["tokens"] = 8;
  auto a = g.add_input("a", DType::F32, {Dim::symbolic("tokens", 4), F(2)});
  g.mark_output(a);
  std::string text = print(g);
  EXPECT_NE(text.find("f32[tokens<=4, 2]"), std::string::npos) << text;
  expect_graphs_equal(g, parse(text));
}

TEST(Text, CommentsAndBlankLinesAreIgnored) {
  Graph g = parse("\n# a comment\ngraph {\n\n  input %a : f32[3]\n  # inside\n  %b : f32[3] = silu(%a)\n  output %b\n}\n");
  EXPECT_EQ(g.values().size(), 2u);
  EXPECT_EQ(g.nodes().size(), 1u);
  EXPECT_NO_THROW(verify(g));
}

int error_line(const std::string& text) {
  try {
    parse(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    std::string m = e.what();
    auto p = m.find("line ");
    if (p == std::string::npos) return -1;
    return std::stoi(m.substr(p + 5));
  }
  return 0;  // no error
}

TEST(Text, ErrorsReportLineNumbers) {
  const std::string head = "graph {\n  sym tokens <= 4\n  input %a : f32[tokens, 2]\n";  // lines 1-3
  EXPECT_EQ(error_line(head + "  %b : f32[tokens, 2] = frobnicate(%a)\n  output %b\n}\n"), 4);  // unknown op
  EXPECT_EQ(error_line(head + "  %b : f32[tokens, 2] = silu(%zz)\n}\n"), 4);                   // undefined value
  EXPECT_EQ(error_line(head + "  output %a\n  %c : f99[2] = silu(%a)\n}\n"), 5);               // bad dtype
  EXPECT_EQ(error_line(head + "  input %c : f32[seqs]\n}\n"), 4);                              // undeclared sym
  EXPECT_EQ(error_line(head + "  input %a : f32[2]\n}\n"), 4);                                 // duplicate name
  EXPECT_EQ(error_line(head + "  meta x = \"open\n}\n"), 4);                                   // unterminated
  EXPECT_EQ(error_line(head + "  meta x = 1.5.5\n}\n"), 4);                                    // bad number
  EXPECT_EQ(error_line(head + "  output %a extra\n}\n"), 4);                                   // trailing text
  EXPECT_EQ(error_line(head + "\n\n  bogus %a\n}\n"), 6);                                      // unknown keyword
  EXPECT_EQ(error_line(head + "  output %a\n"), 4);                                            // missing '}'
  EXPECT_EQ(error_line(head + "}\nmore\n"), 5);                                                // after '}'
  EXPECT_EQ(error_line("gruph {\n}\n"), 1);
  EXPECT_EQ(error_line(head + "  output %a\n}\n"), 0);  // the valid version parses
}

}  // namespace
}  // namespace kiln::ir
