// fuse-gate-up-swiglu: the feed-forward input block of a llama layer
//
//   h = rms_norm(x, g);  gate = matmul(h, wg);  up = matmul(h, wu);  a = swiglu(gate, up)
//   (or a = mul(silu(gate), up), either operand order)
//
// becomes  a = rms_matmul_swiglu(x, g, wgu)  with wgu the gate rows then the up
// rows (source "wg+wu"). h, gate and up must have no other users: the norm is
// computed inside the fused op. a keeps its value id and name. Gemma's
// a = geglu(gate, up) fuses the same way, with attr act = "gelu_tanh".
#include <optional>

#include "compiler/passes/passes.h"
#include "compiler/passes/rewrite.h"

namespace kiln::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::OpKind;
using ir::ValueId;

// gate/up operands of the activation node `i`, and the silu node if any.
struct Act {
  ValueId gate = ir::kNoValue, up = ir::kNoValue;
  int silu = -1;
  bool gelu = false;  // geglu: gelu_tanh(gate) * up
};

std::optional<Act> activation(const Graph& g, const Uses& u, const Node& n) {
  if (n.op == OpKind::SwiGlu && n.attrs.empty()) return Act{n.inputs[0], n.inputs[1], -1};
  if (n.op == OpKind::GeGlu && n.attrs.empty()) return Act{n.inputs[0], n.inputs[1], -1, true};
  if (n.op != OpKind::Mul || !n.attrs.empty()) return std::nullopt;
  if (!same_shape(g.value(n.inputs[0]).shape, g.value(n.inputs[1]).shape)) return std::nullopt;
  for (int s = 0; s < 2; ++s) {
    ValueId a = n.inputs[static_cast<size_t>(s)], b = n.inputs[static_cast<size_t>(1 - s)];
    const Node* d = u.def(g, a);
    if (d && d->op == OpKind::Silu && d->attrs.empty() && u.single_use(a) && a != b)
      return Act{d->inputs[0], b, u.def_index(a)};
  }
  return std::nullopt;
}

bool try_fuse(Graph& g, size_t act_i) {
  Uses u(g);
  const auto& nodes = g.nodes();
  const Node& act = nodes[act_i];
  auto a = activation(g, u, act);
  if (!a || a->gate == a->up || act.outputs.size() != 1) return false;
  if (!u.single_use(a->gate) || !u.single_use(a->up)) return false;
  const Node *mg = u.def(g, a->gate), *mu = u.def(g, a->up);
  if (!mg || !mu || mg->op != OpKind::MatMul || mu->op != OpKind::MatMul) return false;
  if (!mg->attrs.empty() || !mu->attrs.empty()) return false;
  const ValueId h = mg->inputs[0];
  if (mu->inputs[0] != h) return false;
  const ValueId wg = mg->inputs[1], wu = mu->inputs[1];
  if (!is_weight(g, wg) || !is_weight(g, wu) || wg == wu) return false;
  const ir::Value &Wg = g.value(wg), &Wu = g.value(wu);
  if (Wg.dtype != Wu.dtype || !same_shape(Wg.shape, Wu.shape) || Wg.shape.size() != 2 || !Wg.shape[0].is_static())
    return false;
  const Node* norm = u.def(g, h);
  if (!norm || norm->op != OpKind::RmsNorm || !has_exactly_attrs(*norm, {"eps"})) return false;
  // h feeds exactly these two matmuls.
  if (u.is_output[static_cast<size_t>(h)] || u.consumers[static_cast<size_t>(h)].size() != 2) return false;

  const int64_t F = Wg.shape[0].value;
  std::vector<size_t> remove{act_i, static_cast<size_t>(u.def_index(a->gate)), static_cast<size_t>(u.def_index(a->up)),
                             static_cast<size_t>(u.def_index(h))};
  if (a->silu >= 0) remove.push_back(static_cast<size_t>(a->silu));
  const std::string name = derive_name(g, Wg.name, "ffn_gate", "ffn_gate_up");
  const std::string src = Wg.source + "+" + Wu.source;
  const ir::DType dt = Wg.dtype;
  const ir::Dim K = Wg.shape[1];
  const ValueId x = norm->inputs[0], gain = norm->inputs[1], out = act.outputs[0];
  ir::Attrs attrs{{"eps", norm->attr_float("eps")}};
  if (a->gelu) attrs["act"] = std::string("gelu_tanh");

  Rewriter rw(g);
  for (size_t r : remove) rw.remove(r);
  ValueId w = rw.new_weight(name, dt, {ir::Dim::fixed(2 * F), K}, src);
  rw.add(Node{OpKind::RmsMatMulSwiGlu, {x, gain, w}, {out}, attrs});
  return rw.commit();
}

bool run(Graph& g) { return rewrite_to_fixpoint(g, {OpKind::SwiGlu, OpKind::GeGlu, OpKind::Mul}, try_fuse); }

}  // namespace

Pass fuse_gate_up_swiglu_pass() {
  return {"fuse-gate-up-swiglu",
          "rms_norm + gate/up matmuls + swiglu (or geglu) -> rms_matmul_swiglu (weights \"gate+up\")", run};
}

}  // namespace kiln::passes
