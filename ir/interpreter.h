// Reference interpreter: executes any ir::Graph in fp32 on the CPU.
// It is the oracle every pass, kernel and the runtime are compared with, so it
// favours obviously-correct code over speed (but uses both cores for matmul).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::ir {

// A dense host tensor. f32 for activations/weights, i32 for ids/positions.
struct Tensor {
  DType dtype = DType::F32;           // F32 or I32
  std::vector<int64_t> shape;         // concrete (symbolic dims resolved)
  std::vector<float> f32;
  std::vector<int32_t> i32;
  int64_t numel() const;
  static Tensor zeros_f32(std::vector<int64_t> shape);
  static Tensor from_i32(std::vector<int32_t> v);  // 1-D
};

// Raw weight bytes as stored (possibly quantised), ir shape (row-major).
struct WeightData {
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
};
// Looks a weight up by its Value::source name. Throws kiln::Error if missing.
using WeightSource = std::function<WeightData(const std::string& source)>;

class Interpreter {
 public:
  Interpreter(const Graph& g, WeightSource weights);
  ~Interpreter();
  // Binds inputs by value name, resolves symbolic dims from the input shapes,
  // runs every node in order and returns the graph outputs by name. State
  // values (KV cache) persist across calls until reset_state().
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs);
  void reset_state();
  // Makes this interpreter's state values (KV cache) the very tensors of
  // `other`'s states of the same name, so two graphs of one model (decode and
  // prefill programs) run on one KV cache; states only this graph has stay
  // its own. Undone by reset_state() on either side. Throws kiln::Error when a
  // shared state has another shape or dtype.
  void share_states(const Interpreter& other);
  // Makes this interpreter and `other` keep one cache of dequantised weights,
  // by source name (Value::source, with dtype and shape), so weights that two
  // graphs of one model read (the decode and prefill programs) are
  // dequantised and held once. Call before either runs.
  void share_weights(Interpreter& other);
  // Intermediate values of the last run (for debugging / op-by-op comparison).
  const Tensor* last_value(const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::ir
