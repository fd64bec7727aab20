// Shared machinery of the fusion passes: who uses a value, and one safe way to
// replace a group of nodes by a fused group.
//
// A rewrite names the nodes it removes and the nodes it adds. New nodes may
// reuse output values of removed nodes (so names, graph outputs and the
// consumers of those values stay as they are: nothing to rewire) and may
// produce fresh temps made with new_temp(). Rewriter::commit() checks, before
// changing anything, that
//  - every output of a removed node is either produced again by a new node, or
//    is used only by removed nodes and is not a graph output;
//  - there is a point in the schedule after every (kept) producer of the new
//    nodes' inputs and before every (kept) consumer of their outputs.
// If a check fails the graph is left exactly as it was (values added through
// the Rewriter are dropped again) and commit() returns false.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::passes {

// Def-use information of a graph at one moment (rebuild after a rewrite).
struct Uses {
  explicit Uses(const ir::Graph& g);
  std::vector<std::vector<size_t>> consumers;  // by value id: node indices (once per node)
  std::vector<int> producer;                   // by value id: node index, -1 if none
  std::vector<char> is_output;                 // by value id: a graph output
  // The only consumer of v, if it has exactly one consumer and is not a graph output.
  const ir::Node* sole_consumer(const ir::Graph& g, ir::ValueId v) const;
  // The node producing v (nullptr for inputs, weights, states, orphans).
  const ir::Node* def(const ir::Graph& g, ir::ValueId v) const;
  int def_index(ir::ValueId v) const { return producer.at(static_cast<size_t>(v)); }
  bool single_use(ir::ValueId v) const {
    return consumers.at(static_cast<size_t>(v)).size() == 1 && !is_output.at(static_cast<size_t>(v));
  }
};

// A name not used in g: `base`, else base.1, base.2, ...
std::string unique_name(const ir::Graph& g, const std::string& base);
// base with the last occurrence of `from` replaced by `to` (base + "." + to if
// `from` does not occur), made unique.
std::string derive_name(const ir::Graph& g, const std::string& base, const std::string& from, const std::string& to);

class Rewriter {
 public:
  explicit Rewriter(ir::Graph& g);
  ~Rewriter();  // rolls back values added when commit() was not reached or failed
  Rewriter(const Rewriter&) = delete;
  Rewriter& operator=(const Rewriter&) = delete;

  ir::ValueId new_temp(const std::string& name, ir::DType dt, ir::Shape shape);
  ir::ValueId new_weight(const std::string& name, ir::DType dt, ir::Shape shape, const std::string& source);
  void remove(size_t node_index) { removed_.push_back(node_index); }
  void add(ir::Node n) { added_.push_back(std::move(n)); }
  // Applies the rewrite if it is safe (see the file comment); false = unchanged.
  bool commit();

 private:
  ir::Graph& g_;
  size_t values_before_;
  bool committed_ = false;
  std::vector<size_t> removed_;
  std::vector<ir::Node> added_;
};

// Drops the given values if nothing references them any more (no node input or
// output, not a graph output) and renumbers the rest, keeping their order.
// Graph inputs are never dropped. Returns how many were dropped.
size_t drop_unreferenced(ir::Graph& g, const std::vector<ir::ValueId>& candidates);

// Renumbers values so that ids follow the schedule: graph inputs first (in
// their order), each weight/state just before its first user, node outputs in
// node order. print() then declares everything next to its first use and
// parse(print(g)) reproduces the ids. Every rewrite ends with it.
void canonicalize_ids(ir::Graph& g);

// Attribute maps: `n` has exactly these keys.
bool has_exactly_attrs(const ir::Node& n, std::initializer_list<const char*> keys);
bool is_weight(const ir::Graph& g, ir::ValueId v);
bool same_shape(const ir::Shape& a, const ir::Shape& b);  // symbolic dims by name, static by size

// A residual add z = add(r, y) or add(y, r) (no attrs, one output) whose
// operand y is the single-use output of a node `absorbs` accepts, and whose
// other operand r is an f32 value of z's full shape (a [N] bias row is not a
// residual), y of that shape too. y on the right is tried first (the frontend
// writes add(residual, proj)). For the passes whose op takes the add into its
// epilogue (fuse-residual, fuse-norm-residual). def: y's producer's index.
struct ResidualAdd {
  ir::ValueId y, r;
  size_t def;
};
std::optional<ResidualAdd> residual_add(const ir::Graph& g, const Uses& u, const ir::Node& add,
                                        bool (*absorbs)(const ir::Graph&, const ir::Node&));

// The driver every fusion pass shares: tries `try_at` on each node whose op is
// one of `anchors`, restarting the scan after each successful rewrite (node
// indices shift), until a whole scan changes nothing. Returns whether anything changed.
bool rewrite_to_fixpoint(ir::Graph& g, std::initializer_list<ir::OpKind> anchors,
                         bool (*try_at)(ir::Graph&, size_t));

}  // namespace kiln::passes
