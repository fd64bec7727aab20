#include "compiler/compile/weight_layout.h"

#include <cstring>
#include <set>

#include "compiler/gguf/weight_source.h"
#include "compiler/plan/writer.h"

namespace kiln::compile {

WeightPlace WeightLayout::find(const std::string& source, const std::string& layout) const {
  auto it = where.find({source, layout});
  if (it == where.end())
    throw Error(ErrorCode::kInternal, "weight " + source + " has no blob in layout " + layout, source);
  return it->second;
}

uint64_t WeightLayout::section_bytes() const {
  uint64_t end = 0;
  for (const auto& b : blobs) end = std::max(end, b.offset + b.size);
  return end;
}

WeightLayout layout_weights(const gguf::File& f, const std::vector<GraphUse>& graphs, const codegen::Target& target) {
  WeightLayout L;
  auto tensor = [&](const std::string& name) -> const gguf::TensorInfo& {
    const auto* t = f.find_tensor(name);
    if (!t) throw Error(ErrorCode::kFormat, "weight " + name + " is not in the GGUF file", name);
    return *t;
  };
  // Layouts each source is read in; concatenated sources first, so single
  // sources inside a "ggml" one become views.
  std::map<std::string, std::set<std::string>> need;
  std::vector<std::string> concat, single;
  for (const auto& gu : graphs) {
    for (const auto& n : gu.g->nodes())
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        const ir::Value& v = gu.g->value(n.inputs[i]);
        if (v.kind != ir::ValueKind::Weight) continue;
        if (!need.count(v.source))
          (v.source.find('+') != std::string::npos ? concat : single).push_back(v.source);
        need[v.source].insert(codegen::input_layout(*gu.g, n, i, gu.mode, target));
      }
    for (const auto& v : gu.g->values())  // weights no node reads (none today): stored as-is
      if (v.kind == ir::ValueKind::Weight && !need.count(v.source)) {
        (v.source.find('+') != std::string::npos ? concat : single).push_back(v.source);
        need[v.source].insert(codegen::kLayoutGgml);
      }
  }
  std::set<std::string> names;
  auto add_blob = [&](const std::string& source, const std::string& layout) {
    auto parts = gguf::split_weight_source(source);
    plan::WeightSpec w;
    w.name = names.count(source) ? source + "@" + layout : source;
    names.insert(w.name);
    const auto& t0 = tensor(parts[0]);
    w.dtype = std::string(ir::dtype_name(t0.type));
    w.layout = layout;
    // Matrices are joined row-wise (same row length); vectors (Qwen2's q/k/v
    // biases) end to end.
    const bool vec = t0.ne.size() == 1;
    int64_t rows = 0, elems = 0;
    std::vector<const gguf::TensorInfo*> ts;
    for (const auto& p : parts) {
      const auto& t = tensor(p);
      if (t.type != t0.type || (t.ne.size() == 1) != vec || (!vec && t.ne[0] != t0.ne[0]))
        throw Error(ErrorCode::kInternal, "fused weight " + source + " mixes types or row lengths", source);
      rows += static_cast<int64_t>(t.n_elements) / t.ne[0];
      elems += static_cast<int64_t>(t.n_elements);
      w.size += t.n_bytes;
      ts.push_back(&t);
    }
    w.shape = vec ? std::vector<int64_t>{elems} : std::vector<int64_t>{rows, t0.ne[0]};
    const ir::DType dt = t0.type;
    const int64_t K = t0.ne[0];
    w.fill = [ts, layout, dt, rows, K](std::span<uint8_t> dst) {
      std::vector<uint8_t> tmp;
      uint8_t* out = dst.data();
      if (layout != codegen::kLayoutGgml) {
        tmp.resize(dst.size());
        out = tmp.data();
      }
      size_t off = 0;
      for (const auto* t : ts) {
        std::memcpy(out + off, t->data, t->n_bytes);
        off += t->n_bytes;
      }
      if (layout != codegen::kLayoutGgml) codegen::repack(dt, layout, rows, K, tmp.data(), dst.data());
    };
    L.blobs.push_back(std::move(w));
    L.where[{source, layout}] = {};  // offset filled below
  };
  // parts of a concatenated blob, per layout: every layout keeps whole rows
  // in GGUF row size (codegen.h), so a part is a row range of the blob
  std::set<std::pair<std::string, std::string>> covered;
  for (const auto& s : concat)
    for (const auto& l : need[s]) {
      add_blob(s, l);
      for (const auto& p : gguf::split_weight_source(s)) covered.insert({p, l});
    }
  for (const auto& s : single)
    for (const auto& l : need[s])
      if (!covered.count({s, l})) add_blob(s, l);
  plan::assign_weight_offsets(L.blobs);
  for (const auto& b : L.blobs) {
    const std::string source = b.name.substr(0, b.name.find('@'));
    L.where[{source, b.layout}] = {b.offset, b.size};
    uint64_t off = b.offset;
    for (const auto& p : gguf::split_weight_source(source)) {
      const auto& t = tensor(p);
      if (!L.where.count({p, b.layout})) L.where[{p, b.layout}] = {off, t.n_bytes};
      off += t.n_bytes;
    }
  }
  return L;
}

}  // namespace kiln::compile
