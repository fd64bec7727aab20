// Graph builders and node attribute accessors.
#include <utility>

#include "ir/graph.h"

namespace kiln::ir {
namespace {
const AttrValue& find_attr(const Node& n, std::string_view key) {
  auto it = n.attrs.find(std::string(key));
  if (it == n.attrs.end())
    throw Error(ErrorCode::kInternal,
                "op " + std::string(op_info(n.op).name) + " is missing attribute '" + std::string(key) + "'",
                std::string(key));
  return it->second;
}
[[noreturn]] void wrong_type(const Node& n, std::string_view key, const char* want) {
  throw Error(ErrorCode::kInternal,
              "op " + std::string(op_info(n.op).name) + ": attribute '" + std::string(key) + "' must be " + want,
              std::string(key));
}
}  // namespace

int64_t Node::attr_int(std::string_view key) const {
  const AttrValue& v = find_attr(*this, key);
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  wrong_type(*this, key, "an integer");
}

double Node::attr_float(std::string_view key) const {
  const AttrValue& v = find_attr(*this, key);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  wrong_type(*this, key, "a number");
}

const std::string& Node::attr_str(std::string_view key) const {
  const AttrValue& v = find_attr(*this, key);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  wrong_type(*this, key, "a string");
}

std::optional<double> Node::attr_float_opt(std::string_view key) const {
  if (attrs.find(std::string(key)) == attrs.end()) return std::nullopt;
  return attr_float(key);
}

ValueId Graph::new_value(std::string name, DType dt, Shape shape, ValueKind kind) {
  if (name.empty()) throw Error(ErrorCode::kInvalidArgument, "IR value names must not be empty");
  if (find_value(name))
    throw Error(ErrorCode::kInvalidArgument, "IR value name '" + name + "' is already used; names must be unique",
                name);
  Value v;
  v.id = static_cast<ValueId>(values_.size());
  v.name = std::move(name);
  v.dtype = dt;
  v.shape = std::move(shape);
  v.kind = kind;
  values_.push_back(std::move(v));
  return values_.back().id;
}

ValueId Graph::add_input(std::string name, DType dt, Shape shape) {
  return new_value(std::move(name), dt, std::move(shape), ValueKind::Input);
}

ValueId Graph::add_weight(std::string name, DType dt, Shape shape, std::string source) {
  ValueId id = new_value(std::move(name), dt, std::move(shape), ValueKind::Weight);
  values_[static_cast<size_t>(id)].source = std::move(source);
  return id;
}

ValueId Graph::add_state(std::string name, DType dt, Shape shape) {
  return new_value(std::move(name), dt, std::move(shape), ValueKind::State);
}

ValueId Graph::add_node(OpKind op, std::vector<ValueId> inputs, Attrs attrs, std::string out_name, DType dt,
                        Shape shape) {
  for (ValueId in : inputs)
    if (in < 0 || static_cast<size_t>(in) >= values_.size())
      throw Error(ErrorCode::kInvalidArgument,
                  "add_node(" + std::string(op_info(op).name) + ", '" + out_name + "'): input id " +
                      std::to_string(in) + " is not a value of this graph");
  ValueId out = new_value(std::move(out_name), dt, std::move(shape), ValueKind::Temp);
  Node n;
  n.op = op;
  n.inputs = std::move(inputs);
  n.outputs = {out};
  n.attrs = std::move(attrs);
  nodes_.push_back(std::move(n));
  return out;
}

void Graph::mark_output(ValueId v) {
  if (v < 0 || static_cast<size_t>(v) >= values_.size())
    throw Error(ErrorCode::kInvalidArgument, "mark_output: id " + std::to_string(v) + " is not a value of this graph");
  outputs_.push_back(v);
}

std::optional<ValueId> Graph::find_value(std::string_view name) const {
  for (const auto& v : values_)
    if (v.name == name) return v.id;
  return std::nullopt;
}

int64_t resolve_dim(const Graph& g, const Dim& d, const DimBindings& b) {
  if (d.is_static()) return d.value;
  int64_t bound = d.value;
  if (auto it = g.sym_bounds.find(d.sym); it != g.sym_bounds.end()) bound = it->second;
  int64_t bind = 0;
  if (d.sym == "tokens") bind = b.tokens;
  else if (d.sym == "kv_len") bind = b.kv_len;
  else if (d.sym == "seqs") bind = b.seqs;
  return bind > 0 ? bind : bound;
}

int64_t resolve_elements(const Graph& g, const Value& v, const DimBindings& b) {
  int64_t n = 1;
  for (const auto& d : v.shape) n *= resolve_dim(g, d, b);
  return n;
}

uint64_t resolve_bytes(const Graph& g, const Value& v, const DimBindings& b) {
  const auto& info = dtype_info(v.dtype);
  const uint64_t n = static_cast<uint64_t>(resolve_elements(g, v, b));
  return n / info.block_elems * info.block_bytes;
}

}  // namespace kiln::ir
