// Small hand-built IR graphs (one llama-shaped layer) and a matching in-memory
// GGUF for the compile-stage tests (weight layout, buffer assignment,
// lowering). The fused graph is what the passes make (one qkv matmul over the
// concatenated weight "wq+wk+wv", rope_store writing both caches); the
// unfused one is the eager graph (separate q/k/v matmuls, rope, kv_store).
#pragma once
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "compiler/gguf/gguf.h"
#include "compiler/gguf/writer.h"
#include "ir/dequant.h"
#include "ir/dtype.h"
#include "ir/graph.h"

namespace kiln::stage_test {

using ir::DType;
using ir::Dim;
using ir::Graph;
using ir::OpKind;
using ir::ValueId;

constexpr int64_t kV = 40, kH = 128, kHeads = 2, kKvHeads = 1, kHd = 64;
constexpr int64_t kQ = kHeads * kHd, kKv = kKvHeads * kHd, kQkv = kQ + 2 * kKv;

inline Dim fx(int64_t v) { return Dim::fixed(v); }

inline ir::Attrs rope_attrs(int64_t heads) {
  return {{"n_heads", heads}, {"head_dim", kHd}, {"n_rot", kHd}, {"theta", 10000.0}, {"mode", std::string("normal")}};
}

struct Mini {
  Graph g;
  ValueId tokens = -1, pos = -1, emb = -1, kc = -1, vc = -1;
  ValueId x = -1, qkv = -1, q = -1, kc_out = -1, vc_out = -1, att = -1, last = -1, logits = -1, next = -1;
  ValueId k = -1, v = -1, qr = -1, kr = -1;  // unfused only
  int64_t T = 0, C = 0;
};

// T: bound of "tokens"; C: bound of "kv_len".
inline Mini fused_graph(int64_t T = 16, int64_t C = 32) {
  Mini m;
  m.T = T;
  m.C = C;
  Graph& g = m.g;
  g.sym_bounds = {{"tokens", T}, {"kv_len", C}};
  const Dim t = Dim::symbolic("tokens", T), c = Dim::symbolic("kv_len", C);
  m.tokens = g.add_input("tokens", DType::I32, {t});
  m.pos = g.add_input("positions", DType::I32, {t});
  m.emb = g.add_weight("emb", DType::F32, {fx(kV), fx(kH)}, "token_embd.weight");
  auto wqkv = g.add_weight("wqkv", DType::Q4_1, {fx(kQkv), fx(kH)}, "wq+wk+wv");
  m.kc = g.add_state("k_cache", DType::F32, {c, fx(kKv)});
  m.vc = g.add_state("v_cache", DType::F32, {c, fx(kKv)});
  m.x = g.add_node(OpKind::Embed, {m.emb, m.tokens}, {{"scale", 1.0}}, "x", DType::F32, {t, fx(kH)});
  m.qkv = g.add_node(OpKind::MatMul, {m.x, wqkv}, {}, "qkv", DType::F32, {t, fx(kQkv)});
  ir::Attrs ra = rope_attrs(kHeads);
  ra["n_kv_heads"] = kKvHeads;
  m.q = g.add_node(OpKind::RopeStore, {m.qkv, m.pos, m.kc, m.vc}, ra, "q", DType::F32, {t, fx(kQ)});
  // rope_store's cache outputs (add_node makes one output; passes append the others).
  auto& vals = g.mutable_values();
  for (const char* name : {"k_cache_out", "v_cache_out"}) {
    ir::Value v;
    v.id = static_cast<ValueId>(vals.size());
    v.name = name;
    v.dtype = DType::F32;
    v.shape = {c, fx(kKv)};
    vals.push_back(v);
    g.nodes().back().outputs.push_back(v.id);
  }
  m.kc_out = *g.find_value("k_cache_out");
  m.vc_out = *g.find_value("v_cache_out");
  m.att = g.add_node(OpKind::Attention, {m.q, m.kc_out, m.vc_out, m.pos},
                     {{"n_heads", kHeads}, {"n_kv_heads", kKvHeads}, {"head_dim", kHd}, {"scale", 0.125}}, "att",
                     DType::F32, {t, fx(kQ)});
  m.last = g.add_node(OpKind::LastRow, {m.att}, {}, "last", DType::F32, {fx(1), fx(kQ)});
  m.logits = g.add_node(OpKind::MatMul, {m.last, m.emb}, {}, "logits", DType::F32, {fx(1), fx(kV)});
  m.next = g.add_node(OpKind::ArgMax, {m.logits}, {}, "next_token", DType::I32, {fx(1)});
  g.mark_output(m.logits);
  g.mark_output(m.next);
  return m;
}

inline Mini unfused_graph(int64_t T = 16, int64_t C = 32) {
  Mini m;
  m.T = T;
  m.C = C;
  Graph& g = m.g;
  g.sym_bounds = {{"tokens", T}, {"kv_len", C}};
  const Dim t = Dim::symbolic("tokens", T), c = Dim::symbolic("kv_len", C);
  m.tokens = g.add_input("tokens", DType::I32, {t});
  m.pos = g.add_input("positions", DType::I32, {t});
  m.emb = g.add_weight("emb", DType::F32, {fx(kV), fx(kH)}, "token_embd.weight");
  auto wq = g.add_weight("wq", DType::Q4_1, {fx(kQ), fx(kH)}, "wq");
  auto wk = g.add_weight("wk", DType::Q4_1, {fx(kKv), fx(kH)}, "wk");
  auto wv = g.add_weight("wv", DType::Q4_1, {fx(kKv), fx(kH)}, "wv");
  m.kc = g.add_state("k_cache", DType::F32, {c, fx(kKv)});
  m.vc = g.add_state("v_cache", DType::F32, {c, fx(kKv)});
  m.x = g.add_node(OpKind::Embed, {m.emb, m.tokens}, {{"scale", 1.0}}, "x", DType::F32, {t, fx(kH)});
  m.q = g.add_node(OpKind::MatMul, {m.x, wq}, {}, "q", DType::F32, {t, fx(kQ)});
  m.k = g.add_node(OpKind::MatMul, {m.x, wk}, {}, "k", DType::F32, {t, fx(kKv)});
  m.v = g.add_node(OpKind::MatMul, {m.x, wv}, {}, "v", DType::F32, {t, fx(kKv)});
  m.qr = g.add_node(OpKind::Rope, {m.q, m.pos}, rope_attrs(kHeads), "q_rope", DType::F32, {t, fx(kQ)});
  m.kr = g.add_node(OpKind::Rope, {m.k, m.pos}, rope_attrs(kKvHeads), "k_rope", DType::F32, {t, fx(kKv)});
  m.kc_out = g.add_node(OpKind::KvStore, {m.kc, m.kr, m.pos}, {}, "k_cache_out", DType::F32, {c, fx(kKv)});
  m.vc_out = g.add_node(OpKind::KvStore, {m.vc, m.v, m.pos}, {}, "v_cache_out", DType::F32, {c, fx(kKv)});
  m.att = g.add_node(OpKind::Attention, {m.qr, m.kc_out, m.vc_out, m.pos},
                     {{"n_heads", kHeads}, {"n_kv_heads", kKvHeads}, {"head_dim", kHd}, {"scale", 0.125}}, "att",
                     DType::F32, {t, fx(kQ)});
  m.last = g.add_node(OpKind::LastRow, {m.att}, {}, "last", DType::F32, {fx(1), fx(kQ)});
  m.logits = g.add_node(OpKind::MatMul, {m.last, m.emb}, {}, "logits", DType::F32, {fx(1), fx(kV)});
  m.next = g.add_node(OpKind::ArgMax, {m.logits}, {}, "next_token", DType::I32, {fx(1)});
  g.mark_output(m.logits);
  g.mark_output(m.next);
  return m;
}

// Deterministic bytes (q4_1 blocks get finite f16 d and m so they are valid).
inline std::vector<uint8_t> tensor_bytes(DType dt, int64_t rows, int64_t K, uint8_t seed) {
  std::vector<uint8_t> b(ir::row_bytes(dt, K) * static_cast<uint64_t>(rows));
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(seed + 7 * i);
  if (dt == DType::Q4_1)
    for (size_t i = 0; i + 20 <= b.size(); i += 20) b[i + 1] = b[i + 3] = 0x3c;  // d, m ~ 1.0
  if (dt == DType::F32)
    for (size_t i = 0; i + 4 <= b.size(); i += 4) {
      const float f = static_cast<float>(static_cast<int>(i % 97) - 48) / 64.0f;
      std::memcpy(&b[i], &f, 4);
    }
  return b;
}

// The GGUF the mini graphs read: token_embd.weight f32 [V, H], wq/wk/wv/wo q4_1 (rows of 128: 4 blocks, 16 scale bytes, so they fit "planes")
// (ggml ne order: ne[0] = K).
inline gguf::File mini_gguf() {
  gguf::Writer w;
  w.add_string("general.architecture", "llama");
  w.add_tensor("token_embd.weight", DType::F32, {kH, kV}, tensor_bytes(DType::F32, kV, kH, 1));
  w.add_tensor("wq", DType::Q4_1, {kH, kQ}, tensor_bytes(DType::Q4_1, kQ, kH, 2));
  w.add_tensor("wk", DType::Q4_1, {kH, kKv}, tensor_bytes(DType::Q4_1, kKv, kH, 3));
  w.add_tensor("wv", DType::Q4_1, {kH, kKv}, tensor_bytes(DType::Q4_1, kKv, kH, 4));
  w.add_tensor("wo", DType::Q4_1, {kH, kH}, tensor_bytes(DType::Q4_1, kH, kH, 5));
  w.add_tensor("bias", DType::F32, {kH}, tensor_bytes(DType::F32, 1, kH, 6));
  return gguf::File::from_bytes(w.to_bytes());
}

}  // namespace kiln::stage_test
