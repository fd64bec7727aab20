// Stage "buffers" (compiler/compile/buffer_assignment.h) on hand-built
// graphs: exact offsets of the fixed arena slots, temporaries' live ranges,
// no two simultaneously live temporaries overlapping, in-place outputs
// (kv_store, rope_store's caches: the op table) addressed at their state's
// slot, graph outputs live to the end of the schedule.
#include <gtest/gtest.h>

#include <numeric>

#include "compiler/compile/buffer_assignment.h"
#include "schemas/kiln_step.h"
#include "stage_graphs.h"

namespace kiln::compile {
namespace {

using namespace stage_test;

// Weights at made-up places (the buffer stage only looks them up).
WeightLayout fake_weights() {
  WeightLayout W;
  W.where[{"token_embd.weight", "ggml"}] = {1024, 4u * kV * kH};
  W.where[{"wq+wk+wv", "ggml"}] = {65536, 999};
  return W;
}

void expect_ptr(const plan::ArgSpec& a, plan::Region r, uint64_t offset, uint64_t size, const std::string& what) {
  EXPECT_EQ(a.kind, plan::ArgKind::kPtr) << what;
  EXPECT_EQ(a.region, r) << what;
  EXPECT_EQ(a.offset, offset) << what;
  EXPECT_EQ(a.size, size) << what;
}

// Step block, tokens, positions (max_tokens int32 each), then the states in
// value order, every slot 256-aligned; sizes bound by ctx, not the graph's bound.
TEST(BufferAssignment, FixedSlotsHaveExactOffsets) {
  const Mini m = fused_graph(16, 32);
  const FixedSlots S = assign_fixed_slots({&m.g}, /*max_tokens=*/16, /*ctx=*/20);
  EXPECT_EQ(S.step, 0u);
  EXPECT_EQ(S.tokens, 256u);  // after the 64-byte step block
  EXPECT_EQ(S.tokens_capacity, 16u);
  EXPECT_EQ(S.positions, 512u);  // 16 int32 = 64 bytes, rounded to 256
  EXPECT_EQ(S.kv_offset, 768u);
  ASSERT_EQ(S.states.size(), 2u);
  const uint64_t cache = 20ull * kKv * 4;  // f32 [ctx, 64] = 5120
  EXPECT_EQ(S.states.at("k_cache").offset, 768u);
  EXPECT_EQ(S.states.at("k_cache").bytes, cache);
  EXPECT_EQ(S.states.at("v_cache").offset, 768u + cache);  // 5888: already 256-aligned
  EXPECT_EQ(S.states.at("v_cache").bytes, cache);
  EXPECT_EQ(S.kv_size, 2 * cache);
  EXPECT_EQ(S.temps_base, 768u + 2 * cache);
  // 100 tokens: 400 bytes per slot, rounded to 512.
  const FixedSlots L = assign_fixed_slots({&m.g}, 100, 20);
  EXPECT_EQ(L.tokens, 256u);
  EXPECT_EQ(L.positions, 256u + 512u);
  EXPECT_EQ(L.kv_offset, 256u + 1024u);
}

// A state shared by two graphs (compiled + eager) gets one slot; a state only
// the second graph has is placed after the first graph's.
TEST(BufferAssignment, StatesSharedByGraphsGetOneSlot) {
  const Mini a = fused_graph(16, 32), b = unfused_graph(16, 32);
  Graph c = unfused_graph(16, 32).g;
  c.add_state("extra", DType::F16, {Dim::symbolic("kv_len", 32), fx(8)});  // 32 * 8 * 2 = 512 bytes
  const FixedSlots S = assign_fixed_slots({&a.g, &b.g, &c}, 16, 32);
  ASSERT_EQ(S.states.size(), 3u);
  const uint64_t cache = 32ull * kKv * 4;
  EXPECT_EQ(S.states.at("k_cache").offset, 768u);
  EXPECT_EQ(S.states.at("v_cache").offset, 768u + cache);
  EXPECT_EQ(S.states.at("extra").offset, 768u + 2 * cache);
  EXPECT_EQ(S.states.at("extra").bytes, 512u);
  EXPECT_EQ(S.temps_base, 768u + 2 * cache + 512u);
}

TEST(BufferAssignment, TemporariesLiveFromProducerToLastReaderAndOutputsToTheEnd) {
  const Mini m = fused_graph(16, 32);
  const ProgramBuffers B = plan_temporaries(m.g, {8, 32, 1});
  // One temporary per node output that is not an in-place update, in schedule order.
  ASSERT_EQ(B.temps.size(), 7u);
  const std::vector<ValueId> order = {m.x, m.qkv, m.q, m.att, m.last, m.logits, m.next};
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(B.temp_of.at(order[i]), i) << m.g.value(order[i]).name;
    EXPECT_EQ(B.temps[i].id, static_cast<int64_t>(i));
  }
  // Sizes at tokens = 8.
  EXPECT_EQ(B.temps[0].size, 8u * kH * 4);
  EXPECT_EQ(B.temps[1].size, 8u * kQkv * 4);
  EXPECT_EQ(B.temps[2].size, 8u * kQ * 4);
  EXPECT_EQ(B.temps[4].size, 1u * kQ * 4);
  EXPECT_EQ(B.temps[5].size, 1u * kV * 4);
  EXPECT_EQ(B.temps[6].size, 4u);
  // Live ranges [producer, last reader]; logits and next_token are graph
  // outputs: live to nodes.size() = 7 (logits is also read by argmax at 6).
  const std::vector<std::pair<int32_t, int32_t>> want = {{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 7}, {6, 7}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(B.temps[i].first_use, want[i].first) << i;
    EXPECT_EQ(B.temps[i].last_use, want[i].second) << i;
  }
  // rope_store's outputs 1, 2 are the caches: no temporaries of their own.
  EXPECT_FALSE(B.temp_of.count(m.kc_out));
  EXPECT_FALSE(B.temp_of.count(m.vc_out));
  EXPECT_EQ(B.alias.at(m.kc_out), m.kc);
  EXPECT_EQ(B.alias.at(m.vc_out), m.vc);
  EXPECT_EQ(B.alias.size(), 2u);
}

TEST(BufferAssignment, SimultaneouslyLiveTemporariesNeverOverlap) {
  for (bool fused : {true, false})
    for (int64_t tokens : {1, 5, 16}) {
      const Mini m = fused ? fused_graph(16, 32) : unfused_graph(16, 32);
      const ProgramBuffers B = plan_temporaries(m.g, {tokens, 32, 1});
      const auto& t = B.temps;
      const auto& off = B.placement.offsets;
      ASSERT_EQ(off.size(), t.size());
      uint64_t sum = 0;
      for (size_t i = 0; i < t.size(); ++i) {
        sum += t[i].size;
        EXPECT_EQ(off[i] % kArenaAlign, 0u);
        EXPECT_LE(off[i] + t[i].size, B.placement.total);
        for (size_t j = i + 1; j < t.size(); ++j) {
          const bool live_together = t[i].first_use <= t[j].last_use && t[j].first_use <= t[i].last_use;
          const bool disjoint = off[i] + t[i].size <= off[j] || off[j] + t[j].size <= off[i];
          if (live_together) {
            EXPECT_TRUE(disjoint) << "temps " << i << " and " << j << " (tokens " << tokens << ")";
          }
        }
      }
      // Temporaries that never live together share memory.
      EXPECT_LT(B.placement.total, sum) << "tokens " << tokens;
      EXPECT_GE(B.placement.total, plan::MemoryPlanner::lower_bound(t));
    }
}

// The eager graph: each kv_store's output is its cache (OpInfo::output_alias {0}).
TEST(BufferAssignment, KvStoreOutputsAliasTheirState) {
  const Mini m = unfused_graph(16, 32);
  const FixedSlots S = assign_fixed_slots({&m.g}, 16, 32);
  const WeightLayout W = fake_weights();
  const BufferAssignment A(m.g, {16, 32, 1}, S, W);
  EXPECT_EQ(A.buffers().alias.at(m.kc_out), m.kc);
  EXPECT_EQ(A.buffers().alias.at(m.vc_out), m.vc);
  const uint64_t cache = 32ull * kKv * 4;
  expect_ptr(A.value(m.kc_out), plan::Region::kArena, 768, cache, "k_cache_out");
  expect_ptr(A.value(m.kc), plan::Region::kArena, 768, cache, "k_cache");
  expect_ptr(A.value(m.vc_out), plan::Region::kArena, 768 + cache, cache, "v_cache_out");
}

TEST(BufferAssignment, AddressesOfEveryKindOfValue) {
  const Mini m = fused_graph(16, 32);
  const FixedSlots S = assign_fixed_slots({&m.g}, 16, 32);
  const WeightLayout W = fake_weights();
  const BufferAssignment A(m.g, {16, 32, 1}, S, W);
  const uint64_t cache = 32ull * kKv * 4;
  // In-place outputs of rope_store: the caches' slots.
  expect_ptr(A.value(m.kc_out), plan::Region::kArena, S.states.at("k_cache").offset, cache, "k_cache_out");
  expect_ptr(A.value(m.vc_out), plan::Region::kArena, S.states.at("v_cache").offset, cache, "v_cache_out");
  // Inputs and the step block.
  expect_ptr(A.value(m.tokens), plan::Region::kArena, 256, 64, "tokens");
  expect_ptr(A.tokens(), plan::Region::kArena, 256, 64, "tokens()");
  expect_ptr(A.value(m.pos), plan::Region::kArena, 512, 64, "positions");
  expect_ptr(A.step(), plan::Region::kArena, 0, sizeof(KilnStep), "step");
  // Weights: their place in the layout asked for.
  expect_ptr(A.value(m.emb), plan::Region::kWeights, 1024, 4u * kV * kH, "emb");
  try {
    A.value(m.emb, "planes");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("token_embd.weight"), std::string::npos) << e.what();
  }
  // Temporaries: above the fixed slots, at the planner's offsets.
  const auto& B = A.buffers();
  for (ValueId v : {m.x, m.qkv, m.q, m.att, m.last, m.logits, m.next}) {
    const size_t ti = B.temp_of.at(v);
    expect_ptr(A.value(v), plan::Region::kArena, S.temps_base + B.placement.offsets[ti], B.temps[ti].size,
               m.g.value(v).name);
  }
  EXPECT_EQ(A.temps_bytes(), B.placement.total);
}

TEST(BufferAssignment, UnknownInputIsAnError) {
  Mini m = fused_graph(16, 32);
  m.g.add_input("mystery", DType::I32, {fx(4)});
  const FixedSlots S = assign_fixed_slots({&m.g}, 16, 32);
  const WeightLayout W = fake_weights();
  const BufferAssignment A(m.g, {16, 32, 1}, S, W);
  EXPECT_THROW(A.value(*m.g.find_value("mystery")), Error);
}

// An in-place update of an in-place output resolves to the original state.
TEST(BufferAssignment, AliasChainsEndAtTheState) {
  Graph g;
  g.sym_bounds = {{"tokens", 4}, {"kv_len", 8}};
  const Dim t = Dim::symbolic("tokens", 4), c = Dim::symbolic("kv_len", 8);
  auto cache = g.add_state("cache", DType::F32, {c, fx(16)});
  auto x = g.add_input("x", DType::F32, {t, fx(16)});
  auto pos = g.add_input("positions", DType::I32, {t});
  auto a = g.add_node(OpKind::KvStore, {cache, x, pos}, {}, "a", DType::F32, {c, fx(16)});
  auto b = g.add_node(OpKind::KvStore, {a, x, pos}, {}, "b", DType::F32, {c, fx(16)});
  g.mark_output(b);
  const ProgramBuffers B = plan_temporaries(g, {4, 8, 1});
  EXPECT_TRUE(B.temps.empty());
  EXPECT_EQ(B.alias.at(a), cache);
  EXPECT_EQ(B.alias.at(b), cache);
}

}  // namespace
}  // namespace kiln::compile
