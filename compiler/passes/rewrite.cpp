#include "compiler/passes/rewrite.h"

#include <algorithm>
#include <array>
#include <set>

namespace kiln::passes {

using ir::Graph;
using ir::Node;
using ir::ValueId;

Uses::Uses(const Graph& g)
    : consumers(g.values().size()), producer(g.values().size(), -1), is_output(g.values().size(), 0) {
  const auto& nodes = g.nodes();
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (ValueId in : nodes[i].inputs) {
      auto& c = consumers.at(static_cast<size_t>(in));
      if (c.empty() || c.back() != i) c.push_back(i);
    }
    for (ValueId o : nodes[i].outputs) producer.at(static_cast<size_t>(o)) = static_cast<int>(i);
  }
  for (ValueId o : g.outputs()) is_output.at(static_cast<size_t>(o)) = 1;
}

const Node* Uses::sole_consumer(const Graph& g, ValueId v) const {
  if (!single_use(v)) return nullptr;
  return &g.nodes()[consumers[static_cast<size_t>(v)][0]];
}

const Node* Uses::def(const Graph& g, ValueId v) const {
  int p = producer.at(static_cast<size_t>(v));
  return p < 0 ? nullptr : &g.nodes()[static_cast<size_t>(p)];
}

std::string unique_name(const Graph& g, const std::string& base) {
  if (!g.find_value(base)) return base;
  for (int i = 1;; ++i) {
    std::string s = base + "." + std::to_string(i);
    if (!g.find_value(s)) return s;
  }
}

std::string derive_name(const Graph& g, const std::string& base, const std::string& from, const std::string& to) {
  auto pos = base.rfind(from);
  std::string s = pos == std::string::npos ? base + "." + to : base.substr(0, pos) + to + base.substr(pos + from.size());
  return unique_name(g, s);
}

Rewriter::Rewriter(Graph& g) : g_(g), values_before_(g.values().size()) {}

Rewriter::~Rewriter() {
  if (!committed_) g_.mutable_values().resize(values_before_);
}

ValueId Rewriter::new_temp(const std::string& name, ir::DType dt, ir::Shape shape) {
  ir::Value v;
  v.id = static_cast<ValueId>(g_.values().size());
  v.name = unique_name(g_, name);
  v.dtype = dt;
  v.shape = std::move(shape);
  v.kind = ir::ValueKind::Temp;
  g_.mutable_values().push_back(std::move(v));
  return g_.values().back().id;
}

ValueId Rewriter::new_weight(const std::string& name, ir::DType dt, ir::Shape shape, const std::string& source) {
  ValueId id = new_temp(name, dt, std::move(shape));
  g_.value(id).kind = ir::ValueKind::Weight;
  g_.value(id).source = source;
  return id;
}

bool Rewriter::commit() {
  const auto& nodes = g_.nodes();
  std::sort(removed_.begin(), removed_.end());
  removed_.erase(std::unique(removed_.begin(), removed_.end()), removed_.end());
  if (removed_.empty() || removed_.back() >= nodes.size()) return false;
  std::set<size_t> rm(removed_.begin(), removed_.end());
  Uses u(g_);
  const size_t uses_size = values_before_;  // values that existed before this rewrite

  std::set<ValueId> produced_new;
  for (const Node& n : added_)
    for (ValueId o : n.outputs) {
      if (!produced_new.insert(o).second) return false;  // two new nodes define one value
      if (static_cast<size_t>(o) < uses_size) {
        int p = u.producer[static_cast<size_t>(o)];
        if (p < 0 || !rm.count(static_cast<size_t>(p))) return false;  // reuses a value still defined elsewhere
      }
    }
  // Outputs of removed nodes that are not produced again must be dead outside the group.
  for (size_t r : removed_)
    for (ValueId o : nodes[r].outputs) {
      if (produced_new.count(o)) continue;
      if (u.is_output[static_cast<size_t>(o)]) return false;
      for (size_t c : u.consumers[static_cast<size_t>(o)])
        if (!rm.count(c)) return false;
    }
  // Schedule window: after every kept producer of an input, before every kept consumer of an output.
  long lo = -1, hi = static_cast<long>(nodes.size());
  for (const Node& n : added_)
    for (ValueId in : n.inputs) {
      if (produced_new.count(in)) continue;
      if (static_cast<size_t>(in) >= uses_size) {  // made by this rewrite: only weights need no producer
        if (g_.value(in).kind != ir::ValueKind::Weight) return false;
        continue;
      }
      int p = u.producer[static_cast<size_t>(in)];
      if (p >= 0 && rm.count(static_cast<size_t>(p))) return false;  // reads a value the rewrite removes
      if (p < 0 && g_.value(in).kind == ir::ValueKind::Temp) return false;  // undefined temp
      lo = std::max(lo, static_cast<long>(p));
    }
  for (ValueId o : produced_new) {
    if (static_cast<size_t>(o) >= uses_size) continue;
    for (size_t c : u.consumers[static_cast<size_t>(o)])
      if (!rm.count(c)) hi = std::min(hi, static_cast<long>(c));
  }
  long at = std::max(lo + 1, static_cast<long>(removed_.front()));
  if (at > hi) return false;
  // New nodes must be in dependency order among themselves (the pass adds them so).
  {
    std::set<ValueId> seen;
    for (const Node& n : added_) {
      for (ValueId in : n.inputs)
        if (produced_new.count(in) && !seen.count(in)) return false;
      for (ValueId o : n.outputs) seen.insert(o);
    }
  }

  std::vector<ValueId> maybe_dead;
  for (size_t r : removed_)
    for (ValueId v : nodes[r].inputs) maybe_dead.push_back(v);
  for (size_t r : removed_)
    for (ValueId v : nodes[r].outputs)
      if (!produced_new.count(v)) maybe_dead.push_back(v);

  std::vector<Node> out;
  out.reserve(nodes.size() + added_.size());
  for (size_t i = 0; i <= nodes.size(); ++i) {
    if (static_cast<long>(i) == at)
      for (Node& n : added_) out.push_back(std::move(n));
    if (i < nodes.size() && !rm.count(i)) out.push_back(nodes[i]);
  }
  g_.nodes() = std::move(out);
  committed_ = true;
  drop_unreferenced(g_, maybe_dead);
  canonicalize_ids(g_);
  return true;
}

size_t drop_unreferenced(Graph& g, const std::vector<ValueId>& candidates) {
  const size_t nv = g.values().size();
  std::vector<char> referenced(nv, 0);
  for (const Node& n : g.nodes()) {
    for (ValueId v : n.inputs) referenced[static_cast<size_t>(v)] = 1;
    for (ValueId v : n.outputs) referenced[static_cast<size_t>(v)] = 1;
  }
  for (ValueId v : g.outputs()) referenced[static_cast<size_t>(v)] = 1;
  std::vector<char> drop(nv, 0);
  size_t dropped = 0;
  for (ValueId v : candidates) {
    auto i = static_cast<size_t>(v);
    if (!referenced[i] && !drop[i] && g.value(v).kind != ir::ValueKind::Input) {
      drop[i] = 1;
      ++dropped;
    }
  }
  if (!dropped) return 0;
  std::vector<ValueId> remap(nv, ir::kNoValue);
  std::vector<ir::Value> kept;
  for (size_t i = 0; i < nv; ++i) {
    if (drop[i]) continue;
    remap[i] = static_cast<ValueId>(kept.size());
    kept.push_back(g.values()[i]);
    kept.back().id = remap[i];
  }
  g.mutable_values() = std::move(kept);
  for (Node& n : g.nodes()) {
    for (ValueId& v : n.inputs) v = remap[static_cast<size_t>(v)];
    for (ValueId& v : n.outputs) v = remap[static_cast<size_t>(v)];
  }
  for (ValueId& v : g.mutable_outputs()) v = remap[static_cast<size_t>(v)];
  return dropped;
}

void canonicalize_ids(Graph& g) {
  const size_t nv = g.values().size();
  const auto& nodes = g.nodes();
  constexpr long kNever = 1L << 40;
  // key: (slot, rank, original id); inputs first, declarations just before their first user.
  std::vector<std::array<long, 3>> key(nv);
  for (size_t i = 0; i < nv; ++i) key[i] = {kNever, 0, static_cast<long>(i)};
  for (size_t i = 0; i < nv; ++i)
    if (g.values()[i].kind == ir::ValueKind::Input) key[i][0] = -1;
  for (size_t ni = 0; ni < nodes.size(); ++ni) {
    for (ValueId v : nodes[ni].inputs) {
      auto& k = key[static_cast<size_t>(v)];
      if (g.value(v).kind != ir::ValueKind::Temp && g.value(v).kind != ir::ValueKind::Input && k[0] == kNever)
        k[0] = static_cast<long>(ni);
    }
    for (size_t oi = 0; oi < nodes[ni].outputs.size(); ++oi)
      key[static_cast<size_t>(nodes[ni].outputs[oi])] = {static_cast<long>(ni), 1 + static_cast<long>(oi),
                                                         static_cast<long>(nodes[ni].outputs[oi])};
  }
  std::vector<size_t> order(nv);
  for (size_t i = 0; i < nv; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key[a] < key[b]; });
  std::vector<ValueId> remap(nv);
  std::vector<ir::Value> vals;
  vals.reserve(nv);
  for (size_t i = 0; i < nv; ++i) {
    remap[order[i]] = static_cast<ValueId>(i);
    vals.push_back(g.values()[order[i]]);
    vals.back().id = static_cast<ValueId>(i);
  }
  g.mutable_values() = std::move(vals);
  for (ir::Node& n : g.nodes()) {
    for (ValueId& v : n.inputs) v = remap[static_cast<size_t>(v)];
    for (ValueId& v : n.outputs) v = remap[static_cast<size_t>(v)];
  }
  for (ValueId& v : g.mutable_outputs()) v = remap[static_cast<size_t>(v)];
}

bool has_exactly_attrs(const Node& n, std::initializer_list<const char*> keys) {
  if (n.attrs.size() != keys.size()) return false;
  for (const char* k : keys)
    if (!n.attrs.count(k)) return false;
  return true;
}

bool is_weight(const Graph& g, ValueId v) { return g.value(v).kind == ir::ValueKind::Weight; }

std::optional<ResidualAdd> residual_add(const Graph& g, const Uses& u, const ir::Node& add,
                                        bool (*absorbs)(const Graph&, const ir::Node&)) {
  if (add.op != ir::OpKind::Add || !add.attrs.empty() || add.outputs.size() != 1) return std::nullopt;
  const ir::Value& z = g.value(add.outputs[0]);
  for (int s : {1, 0}) {
    const ValueId y = add.inputs[static_cast<size_t>(s)], r = add.inputs[static_cast<size_t>(1 - s)];
    if (y == r || !u.single_use(y)) continue;
    const ir::Node* n = u.def(g, y);
    if (!n || !absorbs(g, *n)) continue;
    const ir::Value& rv = g.value(r);
    if (rv.dtype != ir::DType::F32 || !same_shape(rv.shape, z.shape) || !same_shape(g.value(y).shape, z.shape))
      continue;
    return ResidualAdd{y, r, static_cast<size_t>(u.def_index(y))};
  }
  return std::nullopt;
}

bool same_shape(const ir::Shape& a, const ir::Shape& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].is_static() != b[i].is_static()) return false;
    if (a[i].is_static() ? a[i].value != b[i].value : a[i].sym != b[i].sym) return false;
  }
  return true;
}

bool rewrite_to_fixpoint(ir::Graph& g, std::initializer_list<ir::OpKind> anchors,
                         bool (*try_at)(ir::Graph&, size_t)) {
  bool changed = false;
  for (bool again = true; again;) {
    again = false;
    for (size_t i = 0; i < g.nodes().size(); ++i) {
      const ir::OpKind op = g.nodes()[i].op;
      if (std::find(anchors.begin(), anchors.end(), op) == anchors.end()) continue;
      if (try_at(g, i)) {
        changed = again = true;
        break;
      }
    }
  }
  return changed;
}

}  // namespace kiln::passes
