// Stage "weights" (compiler/compile/weight_layout.h): one blob per (source,
// layout); a fused "a+b" source in ggml layout is one blob and its parts are
// views into it; in planes layout the fused blob is repacked and the parts
// read in ggml get blobs of their own.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "codegen/codegen.h"
#include "compiler/compile/weight_layout.h"
#include "stage_graphs.h"

namespace kiln::compile {
namespace {

using namespace stage_test;

const plan::WeightSpec* blob(const WeightLayout& L, const std::string& name) {
  for (const auto& b : L.blobs)
    if (b.name == name) return &b;
  return nullptr;
}

std::vector<uint8_t> filled(const plan::WeightSpec& b) {
  std::vector<uint8_t> out(b.size, 0);
  b.fill(out);
  return out;
}

std::vector<uint8_t> gguf_bytes(const gguf::File& f, const std::vector<std::string>& names) {
  std::vector<uint8_t> out;
  for (const auto& n : names) {
    const auto* t = f.find_tensor(n);
    out.insert(out.end(), t->data, t->data + t->n_bytes);
  }
  return out;
}

TEST(WeightLayout, FusedGgmlSourceIsOneBlobAndItsPartsAreViews) {
  const gguf::File f = mini_gguf();
  const Mini fused = fused_graph(), eager = unfused_graph();
  const WeightLayout L = layout_weights(f, {{&fused.g, ProgramMode::Compiled}, {&eager.g, ProgramMode::Eager}},
                                        codegen::Target{90, codegen::kLayoutGgml});
  // Concatenated sources first, then single ones; the parts of "wq+wk+wv" are not stored again.
  std::vector<std::string> names;
  for (const auto& b : L.blobs) names.push_back(b.name);
  EXPECT_EQ(names, (std::vector<std::string>{"wq+wk+wv", "token_embd.weight"}));
  const auto* qkv = blob(L, "wq+wk+wv");
  ASSERT_NE(qkv, nullptr);
  EXPECT_EQ(qkv->layout, codegen::kLayoutGgml);
  EXPECT_EQ(qkv->dtype, "q4_1");
  EXPECT_EQ(qkv->shape, (std::vector<int64_t>{kQkv, kH}));
  const uint64_t q_bytes = ir::row_bytes(DType::Q4_1, kH) * kQ, kv_bytes = ir::row_bytes(DType::Q4_1, kH) * kKv;
  EXPECT_EQ(qkv->size, q_bytes + 2 * kv_bytes);
  // Offsets: 256-aligned, in order, not overlapping.
  EXPECT_EQ(qkv->offset, 0u);
  const auto* emb = blob(L, "token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->offset, (qkv->size + 255) / 256 * 256);
  EXPECT_EQ(emb->size, 4u * kV * kH);
  EXPECT_EQ(L.section_bytes(), emb->offset + emb->size);
  // The eager program's q, k, v are views into the fused blob, in concatenation order.
  EXPECT_EQ(L.find("wq", "ggml").offset, qkv->offset);
  EXPECT_EQ(L.find("wq", "ggml").bytes, q_bytes);
  EXPECT_EQ(L.find("wk", "ggml").offset, qkv->offset + q_bytes);
  EXPECT_EQ(L.find("wk", "ggml").bytes, kv_bytes);
  EXPECT_EQ(L.find("wv", "ggml").offset, qkv->offset + q_bytes + kv_bytes);
  EXPECT_EQ(L.find("wq+wk+wv", "ggml").offset, qkv->offset);
  EXPECT_EQ(L.find("wq+wk+wv", "ggml").bytes, qkv->size);
  EXPECT_THROW(L.find("wq", "planes"), Error);
  // The blob's bytes are the parts' GGUF bytes, concatenated.
  EXPECT_EQ(filled(*qkv), gguf_bytes(f, {"wq", "wk", "wv"}));
  EXPECT_EQ(filled(*emb), gguf_bytes(f, {"token_embd.weight"}));
}

TEST(WeightLayout, PlanesFusedBlobIsRepackedAndPartsAreViews) {
  const gguf::File f = mini_gguf();
  const Mini fused = fused_graph(), eager = unfused_graph();
  const WeightLayout L = layout_weights(f, {{&fused.g, ProgramMode::Compiled}, {&eager.g, ProgramMode::Eager}},
                                        codegen::Target{90, codegen::kLayoutPlanes});
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& b : L.blobs) got.insert({b.name, b.layout});
  // Compiled and eager matmuls read planes (q4_1 rows of 128 fit); embed and
  // logits read an f32 table (no planes layout for f32): ggml. One blob per
  // source: the weights are stored once.
  EXPECT_EQ(got, (std::set<std::pair<std::string, std::string>>{{"wq+wk+wv", "planes"}, {"token_embd.weight", "ggml"}}));
  const auto* qkv = blob(L, "wq+wk+wv");
  ASSERT_NE(qkv, nullptr);
  // The eager q, k, v are row ranges (views) of the planes blob: planes rows
  // keep the GGUF row size.
  const uint64_t rb = ir::row_bytes(DType::Q4_1, kH);
  EXPECT_EQ(L.find("wq", "planes").offset, qkv->offset);
  EXPECT_EQ(L.find("wk", "planes").offset, qkv->offset + rb * kQ);
  EXPECT_EQ(L.find("wv", "planes").offset, qkv->offset + rb * (kQ + kKv));
  EXPECT_EQ(L.find("wv", "planes").bytes, rb * kKv);
  EXPECT_THROW(L.find("wq", "ggml"), Error);
  // The planes blob is the concatenation repacked (and differs from it); a
  // part's rows repacked alone are the same bytes as its view.
  const auto gg = gguf_bytes(f, {"wq", "wk", "wv"});
  std::vector<uint8_t> want(gg.size());
  codegen::repack(DType::Q4_1, codegen::kLayoutPlanes, kQkv, kH, gg.data(), want.data());
  const auto got_bytes = filled(*qkv);
  EXPECT_EQ(got_bytes, want);
  EXPECT_NE(got_bytes, gg);
  const auto wk = gguf_bytes(f, {"wk"});
  std::vector<uint8_t> wk_planes(wk.size());
  codegen::repack(DType::Q4_1, codegen::kLayoutPlanes, kKv, kH, wk.data(), wk_planes.data());
  EXPECT_TRUE(std::equal(wk_planes.begin(), wk_planes.end(), got_bytes.begin() + static_cast<std::ptrdiff_t>(rb * kQ)));
}

// The target picks the layout of a weight that fits both (one blob either
// way); a row of 72 q4_1 values (36 scale bytes) would not fit planes.
TEST(WeightLayout, TargetPicksTheLayoutOfOneBlob) {
  const gguf::File f = mini_gguf();
  Graph g;
  g.sym_bounds = {{"tokens", 4}};
  auto x = g.add_input("x", DType::F32, {Dim::symbolic("tokens", 4), fx(kH)});
  auto w = g.add_weight("w", DType::Q4_1, {fx(kH), fx(kH)}, "wo");
  g.mark_output(g.add_node(OpKind::MatMul, {x, w}, {}, "y", DType::F32, {Dim::symbolic("tokens", 4), fx(kH)}));
  const WeightLayout P =
      layout_weights(f, {{&g, ProgramMode::Compiled}, {&g, ProgramMode::Eager}}, {90, codegen::kLayoutPlanes});
  ASSERT_EQ(P.blobs.size(), 1u);
  EXPECT_EQ(P.blobs[0].layout, "planes");
  EXPECT_FALSE(codegen::layout_fits(DType::Q4_1, codegen::kLayoutPlanes, 72));
  EXPECT_TRUE(codegen::layout_fits(DType::Q4_1, codegen::kLayoutPlanes, kH));
  const WeightLayout G =
      layout_weights(f, {{&g, ProgramMode::Compiled}, {&g, ProgramMode::Eager}}, {90, codegen::kLayoutGgml});
  ASSERT_EQ(G.blobs.size(), 1u);
  EXPECT_EQ(G.blobs[0].layout, "ggml");
}

TEST(WeightLayout, MissingWeightAndMixedFusedPartsAreErrors) {
  const gguf::File f = mini_gguf();
  auto one = [&](const std::string& source, DType dt, std::vector<Dim> shape) {
    Graph g;
    auto w = g.add_weight("w", dt, shape, source);
    g.mark_output(w);
    return g;
  };
  {
    Graph g = one("nope.weight", DType::F32, {fx(4)});
    try {
      layout_weights(f, {{&g, ProgramMode::Compiled}}, {});
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat);
      EXPECT_NE(std::string(e.what()).find("nope.weight"), std::string::npos) << e.what();
    }
  }
  {
    Graph g = one("wq+bias", DType::Q4_1, {fx(kQ + 1), fx(kH)});  // q4_1 matrix + f32 vector
    try {
      layout_weights(f, {{&g, ProgramMode::Compiled}}, {});
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInternal);
      EXPECT_NE(std::string(e.what()).find("mixes types"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kiln::compile
