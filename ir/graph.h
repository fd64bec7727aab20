// The kiln IR: a graph of ops over values with (partly symbolic) shapes.
//
// Conventions
// - Shapes are row-major, outermost dimension first. A GGUF weight with ggml
//   ne = [K, N] (ne[0] contiguous) is the IR shape [N, K].
// - A Dim is static (sym empty, value = size) or symbolic (sym = "tokens",
//   "seqs", "kv_len"; value = compile-time upper bound).
// - Nodes are stored in schedule order (a topological order); passes keep it so.
// - Values of kind State persist across executions (KV cache). An op that
//   updates a state in place (kv_store; rope_store's cache outputs) outputs a
//   new value that aliases that input; the op table records which output
//   aliases which input (OpInfo::output_alias).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ir/dtype.h"
#include "ir/error.h"

namespace kiln::ir {

struct Dim {
  int64_t value = 0;  // static size, or the upper bound of a symbolic dim
  std::string sym;    // "" when static
  bool is_static() const { return sym.empty(); }
  static Dim fixed(int64_t v) { return Dim{v, {}}; }
  static Dim symbolic(std::string s, int64_t bound) { return Dim{bound, std::move(s)}; }
  bool operator==(const Dim&) const = default;
};
using Shape = std::vector<Dim>;

enum class ValueKind { Input, Weight, State, Temp };

using ValueId = int32_t;
constexpr ValueId kNoValue = -1;

struct Value {
  ValueId id = kNoValue;
  std::string name;        // unique within the graph
  DType dtype = DType::F32;
  Shape shape;
  ValueKind kind = ValueKind::Temp;
  std::string source;      // Weight: the GGUF tensor name it comes from
};

// Op table. Semantics (x rows are tokens; all activations f32 unless noted):
//  embed(table[V,H] weight, ids i32[T])            -> [T,H]   rows of table; attr scale (opt, default 1)
//  rms_norm(x[T,H], w[H])                            -> [T,H]   x / sqrt(mean(x^2)+eps) * w; attr eps
//  rms_norm(x[T,n*D], w[D]) with attr head_dim = D   -> [T,n*D] the same over each D-wide head of a row
//                                                               (Gemma 3's per-head Q/K norm)
//  matmul(x[T,K], w[N,K])                            -> [T,N]   x @ w^T (w may be quantised)
//  add(a[T,N], b[T,N] or b[N])                       -> [T,N]
//  mul(a[T,N], b[T,N] or b[N])                       -> [T,N]
//  silu(x)                                           -> same    x * sigmoid(x)
//  swiglu(gate[T,F], up[T,F])                        -> [T,F]   silu(gate) * up
//  geglu(gate[T,F], up[T,F])                         -> [T,F]   gelu_tanh(gate) * up, gelu_tanh(x) =
//                                                               0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
//  rope(x[T,nh*hd], pos i32[T] [, freq_factors[hd_rot/2]])
//                                                    -> same    attrs n_heads, head_dim, n_rot,
//                                                               theta, mode ("normal"|"neox");
//                                                               freq_scale (opt, default 1): angles of
//                                                               pos * freq_scale (linear rope scaling)
//  kv_store(cache State[C,W], x[T,W], pos i32[T])    -> cache'  row pos[t] of cache := x[t]; aliases input 0
//                                                               attr ring (opt, 0|1): row pos[t] mod C
//                                                               (a sliding-window layer's ring buffer)
//  attention(q[T,nh*hd], k[C,nkv*hd], v[C,nkv*hd], pos i32[T] [, scratch State f32[n]])
//                                                    -> [T,nh*hd] causal: query t sees rows 0..pos[t];
//                                                               attrs n_heads, n_kv_heads, head_dim, scale;
//                                                               window (opt, 0 = none): query t sees only
//                                                               positions pos[t]-window+1..pos[t], position
//                                                               j read from row j mod C (a ring of C >=
//                                                               window + T - 1 rows keeps a whole chunk)
//                                                    [, scratch'] with the scratch (split-decode-attention
//                                                               pass): kernel workspace the op updates in
//                                                               place; it does not change the result.
//                                                               attr defer_merge (opt, 0|1): the op's one
//                                                               consumer, a matmul or matmul_add with
//                                                               x_merge = 1 and scratch' as its last input,
//                                                               merges the split states (defer-attention-
//                                                               merge pass; same result)
//  last_row(x[T,H])                                  -> [1,H]   the last row (logits of the last token)
//  argmax(x[R,N])                                    -> i32[R]
//  cast(x[T,K] f32)                                  -> [T,K] of the output's dtype (f16 | bf16):
//                                                               round to nearest even (the
//                                                               activations tensor cores read)
//  dequant(w[N,K] weight)                            -> [N,K] f16 | bf16: the weight's values,
//                                                               rounded (a GEMM's half-precision
//                                                               copy of a quantised weight)
// matmul and matmul_add also take x in f16 / bf16 when w has that same dtype
// (a tensor-core GEMM: products exact in fp32, fp32 accumulation).
// Fused ops (issue 3 passes) are added to this table by the pass that makes them.
// rms_matmul_swiglu takes an optional attr act: "silu" (default, SwiGLU) or
// "gelu_tanh" (Gemma's GeGLU: gelu_tanh(gate) * up).
//  rms_matmul_rope_store(x[T,K], pos i32[T], kc State, vc State, gain[K], w[N,K] [, wk, wv] [, freq_factors])
//                                                    -> q[T,nh*hd], kc', vc'
//                                                               exactly rope_store(rms_matmul(x, gain, w [, wk, wv]),
//                                                               pos, kc, vc [, freq_factors]), with the attrs of
//                                                               both (eps [, x_q8]; n_heads, n_kv_heads, head_dim,
//                                                               n_rot, theta, mode): 1 or 3 weights (rank 2) of
//                                                               (nh + 2*nkv)*hd rows in all, freq_factors (rank 1)
//                                                               last; kc', vc' alias inputs 2, 3
//                                                               (fuse-qkv-rope-epilogue, decode program only)
enum class OpKind {
  Embed, RmsNorm, MatMul, Add, Mul, Silu, SwiGlu, Rope, KvStore, Attention, LastRow, ArgMax,
  // Fused ops made by compiler passes; semantics in docs/plan-abi.md ("Fused ops").
  // Wired into op_info / verifier / interpreter by the pass work.
  RmsMatMul, MatMulAdd, RmsMatMulSwiGlu, RopeStore, LmHeadSample, RmsMatMulRopeStore,
  // Half-precision operands of tensor-core GEMMs (the tensor-core-gemm pass).
  Cast, Dequant,
  // Gemma's GeGLU feed-forward activation.
  GeGlu,
};

struct OpInfo {
  OpKind kind;
  std::string_view name;      // textual name: "rms_norm"
  int min_inputs, max_inputs; // arity
  // output_alias[j] = k >= 0: output j is input k (a State) updated in place,
  // i.e. the same buffer; -1: output j is a new value. Outputs past the array
  // alias nothing. kv_store {0}; rope_store and rms_matmul_rope_store
  // {-1, 2, 3} (the k and v caches).
  std::array<int8_t, 4> output_alias;
  int aliased_input(size_t output) const {
    return output < output_alias.size() ? output_alias[output] : -1;
  }
  // Whether some output updates an input in place (the node has a side effect).
  bool updates_in_place() const {
    for (int8_t a : output_alias)
      if (a >= 0) return true;
    return false;
  }
};
const OpInfo& op_info(OpKind k);
std::optional<OpKind> op_from_name(std::string_view name);

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>>;
using Attrs = std::map<std::string, AttrValue>;

struct Node {
  OpKind op;
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  Attrs attrs;

  int64_t attr_int(std::string_view key) const;           // throws kiln::Error if missing/wrong type
  double attr_float(std::string_view key) const;          // accepts int too
  const std::string& attr_str(std::string_view key) const;
  std::optional<double> attr_float_opt(std::string_view key) const;
};

// The input value output j of n updates in place (op_info(n.op).output_alias),
// or kNoValue when output j is a new value.
ValueId aliased_input(const Node& n, size_t j);

class Graph {
 public:
  // Builders. Names must be unique (throws kiln::Error kInvalidArgument).
  ValueId add_input(std::string name, DType dt, Shape shape);
  ValueId add_weight(std::string name, DType dt, Shape shape, std::string source);
  ValueId add_state(std::string name, DType dt, Shape shape);
  // Adds a node with one output value of the given type/shape; returns the output id.
  ValueId add_node(OpKind op, std::vector<ValueId> inputs, Attrs attrs, std::string out_name, DType dt,
                   Shape shape);
  void mark_output(ValueId v);

  const Value& value(ValueId id) const { return values_.at(static_cast<size_t>(id)); }
  Value& value(ValueId id) { return values_.at(static_cast<size_t>(id)); }
  std::optional<ValueId> find_value(std::string_view name) const;
  const std::vector<Value>& values() const { return values_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  std::vector<Node>& nodes() { return nodes_; }
  const std::vector<ValueId>& outputs() const { return outputs_; }

  // Symbolic dims and their upper bounds, e.g. {"tokens", 512}, {"kv_len", 2048}.
  std::map<std::string, int64_t> sym_bounds;
  // Free-form model facts (architecture, vocab size, ...) carried for later stages.
  Attrs meta;

  // Low-level access for passes.
  std::vector<Value>& mutable_values() { return values_; }
  std::vector<ValueId>& mutable_outputs() { return outputs_; }

 private:
  ValueId new_value(std::string name, DType dt, Shape shape, ValueKind kind);
  std::vector<Value> values_;
  std::vector<Node> nodes_;
  std::vector<ValueId> outputs_;
};

// Sizes for the symbolic dims of one program: the one resolver the compiler,
// codegen and tests use. A binding of 0 leaves the dim at its bound in
// Graph::sym_bounds (or, when the graph has none, the Dim's own bound).
struct DimBindings {
  int64_t tokens = 0;  // rows per step: the program's bucket (1 = decode)
  int64_t kv_len = 0;  // KV-cache rows: the compiled context
  int64_t seqs = 0;    // sequences per step
};
int64_t resolve_dim(const Graph& g, const Dim& d, const DimBindings& b);

// The weight inputs [first, last) of a matmul-family node: matmul / matmul_add
// input 1; rms_matmul 2.. (one to three weights); rms_matmul_swiglu and
// lm_head_sample 2; rms_matmul_rope_store 5.. up to its optional rank-1
// frequency factors (the last input). Other ops: {0, 0}.
struct InputRange {
  size_t first = 0, last = 0;
};
InputRange matmul_weight_inputs(const Graph& g, const Node& n);
// Where rope_store's optional freq_factors go: after qkv, pos, kc, vc (4),
// or after the q and k norm gains too (6) with attr qk_norm_eps; the node has
// them when it has more inputs than that.
size_t rope_store_ff_input(const Node& n);
// Elements of v under b, and bytes (whole GGML blocks for quantised dtypes).
int64_t resolve_elements(const Graph& g, const Value& v, const DimBindings& b);
uint64_t resolve_bytes(const Graph& g, const Value& v, const DimBindings& b);

// Checks the graph is well formed: ids in range, each value defined once,
// defined before use (schedule order), arity, dtype and shape rules of each op,
// symbolic dims known in sym_bounds. Throws kiln::Error(kInternal) naming the
// node and the rule broken.
void verify(const Graph& g);

// Textual form. parse(print(g)) reproduces g exactly (print(parse(s)) == s for printed s).
std::string print(const Graph& g);
Graph parse(std::string_view text);  // throws kiln::Error(kFormat) with line number

}  // namespace kiln::ir
