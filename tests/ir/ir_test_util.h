// Shared helpers for the IR tests: graph equality and a tiny llama-like graph.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/interpreter.h"

namespace kiln::ir::testing {

inline void expect_graphs_equal(const Graph& a, const Graph& b) {
  ASSERT_EQ(a.values().size(), b.values().size());
  for (size_t i = 0; i < a.values().size(); ++i) {
    const Value &x = a.values()[i], &y = b.values()[i];
    EXPECT_EQ(x.id, y.id) << i;
    EXPECT_EQ(x.name, y.name) << i;
    EXPECT_EQ(x.dtype, y.dtype) << x.name;
    EXPECT_EQ(x.shape, y.shape) << x.name;
    EXPECT_EQ(x.kind, y.kind) << x.name;
    EXPECT_EQ(x.source, y.source) << x.name;
  }
  ASSERT_EQ(a.nodes().size(), b.nodes().size());
  for (size_t i = 0; i < a.nodes().size(); ++i) {
    const Node &x = a.nodes()[i], &y = b.nodes()[i];
    EXPECT_EQ(x.op, y.op) << i;
    EXPECT_EQ(x.inputs, y.inputs) << i;
    EXPECT_EQ(x.outputs, y.outputs) << i;
    EXPECT_TRUE(x.attrs == y.attrs) << "attrs of node " << i;
  }
  EXPECT_EQ(a.outputs(), b.outputs());
  EXPECT_EQ(a.sym_bounds, b.sym_bounds);
  EXPECT_TRUE(a.meta == b.meta);
}

// Holds fp32 (or raw) weights by source name and serves them to an Interpreter.
struct WeightStore {
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::map<std::string, Entry> entries;

  std::vector<float> add_f32(const std::string& name, std::vector<int64_t> shape, std::mt19937& rng, float lo = -1,
                             float hi = 1) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = u(rng);
    Entry e{DType::F32, shape, std::vector<uint8_t>(v.size() * 4)};
    std::memcpy(e.bytes.data(), v.data(), e.bytes.size());
    entries[name] = std::move(e);
    return v;
  }
  WeightSource source() const {
    return [this](const std::string& name) -> WeightData {
      auto it = entries.find(name);
      if (it == entries.end()) throw Error(ErrorCode::kInvalidArgument, "no weight " + name, name);
      return WeightData{it->second.dtype, it->second.shape, it->second.bytes.data(), it->second.bytes.size()};
    };
  }
};

inline Shape S(std::initializer_list<Dim> d) { return Shape(d); }

// n values uniform in [lo, hi).
inline std::vector<float> rand_vec(size_t n, std::mt19937& rng, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}
// An f32 tensor of `shape` holding `data`.
inline Tensor f32_tensor(std::vector<int64_t> shape, std::vector<float> data) {
  Tensor t;
  t.shape = std::move(shape);
  t.f32 = std::move(data);
  return t;
}
inline Dim F(int64_t v) { return Dim::fixed(v); }

}  // namespace kiln::ir::testing
