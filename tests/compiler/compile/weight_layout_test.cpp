// Stage "weights" (compiler/compile/weight_layout.h): one blob per (source,
// layout); a fused "a+b" source in ggml layout is one blob and its parts are
// views into it; in planes layout the fused blob is repacked and the parts
// read in ggml get blobs of their own.
#include <gtest/gtest.h>

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
  EXPECT_EQ(qkv->dtype, "q8_0");
  EXPECT_EQ(qkv->shape, (std::vector<int64_t>{kQkv, kH}));
  const uint64_t q_bytes = ir::row_bytes(DType::Q8_0, kH) * kQ, kv_bytes = ir::row_bytes(DType::Q8_0, kH) * kKv;
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

TEST(WeightLayout, PlanesFusedBlobIsRepackedAndPartsGetTheirOwnBlobs) {
  const gguf::File f = mini_gguf();
  const Mini fused = fused_graph(), eager = unfused_graph();
  const WeightLayout L = layout_weights(f, {{&fused.g, ProgramMode::Compiled}, {&eager.g, ProgramMode::Eager}},
                                        codegen::Target{90, codegen::kLayoutPlanes});
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& b : L.blobs) got.insert({b.name, b.layout});
  // The compiled qkv matmul reads planes; embed / logits read an f32 table
  // (no planes layout for f32): ggml; the eager q/k/v matmuls read ggml.
  EXPECT_EQ(got, (std::set<std::pair<std::string, std::string>>{{"wq+wk+wv", "planes"},
                                                                {"token_embd.weight", "ggml"},
                                                                {"wq", "ggml"},
                                                                {"wk", "ggml"},
                                                                {"wv", "ggml"}}));
  const auto* qkv = blob(L, "wq+wk+wv");
  ASSERT_NE(qkv, nullptr);
  // Separate blobs, not views: no ggml place for the fused source, and the
  // parts do not point into the planes blob.
  EXPECT_THROW(L.find("wq+wk+wv", "ggml"), Error);
  for (const char* p : {"wq", "wk", "wv"}) {
    const auto* b = blob(L, p);
    ASSERT_NE(b, nullptr) << p;
    EXPECT_EQ(L.find(p, "ggml").offset, b->offset) << p;
    EXPECT_TRUE(b->offset >= qkv->offset + qkv->size || b->offset + b->size <= qkv->offset) << p;
    EXPECT_EQ(filled(*b), gguf_bytes(f, {p})) << p;
  }
  // The planes blob is the concatenation repacked (and differs from it).
  const auto gg = gguf_bytes(f, {"wq", "wk", "wv"});
  std::vector<uint8_t> want(gg.size());
  codegen::repack(DType::Q8_0, codegen::kLayoutPlanes, kQkv, kH, gg.data(), want.data());
  EXPECT_EQ(filled(*qkv), want);
  EXPECT_NE(filled(*qkv), gg);
}

// A source read in two layouts gets two blobs: the first keeps the source's
// name, the second is "<source>@<layout>" (layouts in name order).
TEST(WeightLayout, OneSourceInTwoLayoutsGetsTwoNamedBlobs) {
  const gguf::File f = mini_gguf();
  Graph g;
  g.sym_bounds = {{"tokens", 4}};
  auto x = g.add_input("x", DType::F32, {Dim::symbolic("tokens", 4), fx(kH)});
  auto w = g.add_weight("w", DType::Q8_0, {fx(kH), fx(kH)}, "wo");
  g.mark_output(g.add_node(OpKind::MatMul, {x, w}, {}, "y", DType::F32, {Dim::symbolic("tokens", 4), fx(kH)}));
  const WeightLayout L =
      layout_weights(f, {{&g, ProgramMode::Compiled}, {&g, ProgramMode::Eager}}, {90, codegen::kLayoutPlanes});
  ASSERT_EQ(L.blobs.size(), 2u);
  EXPECT_EQ(L.blobs[0].name, "wo");
  EXPECT_EQ(L.blobs[0].layout, "ggml");
  EXPECT_EQ(L.blobs[1].name, "wo@planes");
  EXPECT_EQ(L.blobs[1].layout, "planes");
  EXPECT_EQ(L.find("wo", "planes").offset, L.blobs[1].offset);
  EXPECT_NE(L.blobs[0].offset, L.blobs[1].offset);
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
    Graph g = one("wq+bias", DType::Q8_0, {fx(kQ + 1), fx(kH)});  // q8_0 matrix + f32 vector
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
