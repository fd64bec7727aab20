// `kiln inspect model.gguf`: what is in a GGUF model and whether kiln can
// compile it. Text for people (tidy, short: repeated per-layer tensors are
// summarised), --json for tools (complete: every key, every tensor). A plan
// file is described by the runtime's inspect_plan (runtime/cli/), the same
// code `kiln-run inspect` runs.
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "compiler/cli/verbs.h"
#include "runtime/cli/args.h"
#include "runtime/cli/cli.h"
#include "compiler/frontend/frontend.h"
#include "compiler/gguf/gguf.h"

namespace kiln::cli {
namespace {

using gguf::Array;
using gguf::File;
using gguf::TensorInfo;
using gguf::Value;
using gguf::ValueType;
using nlohmann::json;

struct InspectOptions {
  std::string path;
  bool json = false;
  bool all_keys = false;
  bool all_tensors = false;
};

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) { v /= 1024.0; ++u; }
  if (u == 0) return fmt::format("{} B", n);
  int decimals = v < 10 ? 2 : v < 100 ? 1 : 0;
  return fmt::format("{:.{}f} {}", v, decimals, units[u]);
}

std::string human_count(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.2f}B", n / 1e9);
  if (n >= 1000000ull) return fmt::format("{:.1f}M", n / 1e6);
  if (n >= 1000ull) return fmt::format("{:.1f}K", n / 1e3);
  return fmt::format("{}", n);
}

std::string shape_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

std::string type_name(ir::DType t) { return std::string(ir::dtype_name(t)); }

// Printable, one-line, bounded form of a token or template line.
std::string printable(std::string_view s, size_t max_chars) {
  std::string out;
  size_t n = 0;
  for (char c : s) {
    if (n++ >= max_chars) { out += "…"; break; }
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (u < 0x20 || u == 0x7f) out += fmt::format("\\x{:02x}", u);
    else out += c;
  }
  return out;
}

// "1..29" / "1..3, 5, 7..9" from sorted ids.
std::string ranges(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!s.empty()) s += ",";
    if (j == i) s += std::to_string(ids[i]);
    else if (j == i + 1) s += fmt::format("{},{}", ids[i], ids[j]);
    else s += fmt::format("{}..{}", ids[i], ids[j]);
    i = j + 1;
  }
  return s;
}

// Splits "blk.12.attn_q.weight" into (12, "attn_q.weight").
bool split_block(const std::string& name, int* layer, std::string* rest) {
  if (name.rfind("blk.", 0) != 0) return false;
  size_t i = 4, start = 4;
  while (i < name.size() && i - start < 7 && name[i] >= '0' && name[i] <= '9') ++i;
  if (i == start || i >= name.size() || name[i] != '.') return false;
  *layer = std::stoi(name.substr(start, i - start));
  *rest = name.substr(i + 1);
  return true;
}

json value_json(const Value& v) {
  switch (v.type) {
    case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
      return std::get<uint64_t>(v.v);
    case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
      return std::get<int64_t>(v.v);
    case ValueType::FLOAT32: case ValueType::FLOAT64: return std::get<double>(v.v);
    case ValueType::BOOL: return std::get<bool>(v.v);
    case ValueType::STRING: return std::get<std::string>(v.v);
    case ValueType::ARRAY: {
      json a = json::array();
      for (const Value& item : std::get<Array>(v.v).items) a.push_back(value_json(item));
      return a;
    }
  }
  return nullptr;
}

// Everything the report shows, computed once for both output forms.
struct Report {
  std::string arch;  // "" if missing
  std::string name;
  struct HParam { std::string label, key; const Value* value; };
  std::vector<HParam> hparams;
  uint64_t vocab_size = 0;
  std::string vocab_size_source;
  struct TypeTotal { uint64_t count = 0, elements = 0, bytes = 0; };
  std::map<std::string, TypeTotal> per_type;
  uint64_t total_bytes = 0, total_elements = 0;
  std::vector<std::string> problems;
};

const std::vector<std::pair<std::string, std::string>>& hparam_keys() {
  static const std::vector<std::pair<std::string, std::string>> k = {
      {"layers", "block_count"},
      {"hidden size", "embedding_length"},
      {"feed-forward size", "feed_forward_length"},
      {"attention heads", "attention.head_count"},
      {"KV heads", "attention.head_count_kv"},
      {"head dim (key)", "attention.key_length"},
      {"context length", "context_length"},
      {"rope dims", "rope.dimension_count"},
      {"rope freq base", "rope.freq_base"},
      {"RMS norm epsilon", "attention.layer_norm_rms_epsilon"},
      {"sliding window", "attention.sliding_window"},
      {"rope scaling", "rope.scaling.type"},
      {"rope scale factor", "rope.scaling.factor"},
  };
  return k;
}

Report build_report(const File& f) {
  Report r;
  if (const Value* a = f.find("general.architecture"); a && a->type == ValueType::STRING)
    r.arch = std::get<std::string>(a->v);
  if (const Value* n = f.find("general.name"); n && n->type == ValueType::STRING)
    r.name = std::get<std::string>(n->v);
  for (const auto& [label, suffix] : hparam_keys()) {
    std::string key = r.arch + "." + suffix;
    const Value* v = r.arch.empty() ? nullptr : f.find(key);
    // Optional keys are only listed when present; the core ones always (as "not set").
    if (v || suffix == "block_count" || suffix == "embedding_length" || suffix == "feed_forward_length" ||
        suffix == "attention.head_count" || suffix == "attention.head_count_kv" ||
        suffix == "context_length" || suffix == "rope.freq_base" ||
        suffix == "attention.layer_norm_rms_epsilon")
      r.hparams.push_back({label, key, v});
  }
  if (const Value* v = f.find(r.arch + ".vocab_size"); v && !r.arch.empty()) {
    if (auto n = f.get_u64(r.arch + ".vocab_size")) { r.vocab_size = *n; r.vocab_size_source = r.arch + ".vocab_size"; }
  } else if (const Value* t = f.find("tokenizer.ggml.tokens"); t && t->type == ValueType::ARRAY) {
    r.vocab_size = std::get<Array>(t->v).items.size();
    r.vocab_size_source = "tokenizer.ggml.tokens";
  }
  for (const TensorInfo& t : f.tensors()) {
    auto& tt = r.per_type[type_name(t.type)];
    ++tt.count;
    tt.elements += t.n_elements;
    tt.bytes += t.n_bytes;
    r.total_bytes += t.n_bytes;
    r.total_elements += t.n_elements;
  }
  try {
    r.problems = frontend::support_problems(f);
  } catch (const Error& e) {
    r.problems = {e.what()};
  }
  return r;
}

const Value* find_typed(const File& f, const std::string& key, ValueType t) {
  const Value* v = f.find(key);
  return v && v->type == t ? v : nullptr;
}

// Token id key -> "1 \"<|im_start|>\"".
std::string token_with_text(const File& f, const std::string& key) {
  const Value* v = f.find(key);
  if (!v) return "";
  std::string id = gguf::format_value(*v);
  const Value* toks = find_typed(f, "tokenizer.ggml.tokens", ValueType::ARRAY);
  if (toks && (v->type == ValueType::UINT32 || v->type == ValueType::UINT64 || v->type == ValueType::INT32)) {
    const Array& a = std::get<Array>(toks->v);
    int64_t i = v->type == ValueType::INT32 ? std::get<int64_t>(v->v) : static_cast<int64_t>(std::get<uint64_t>(v->v));
    if (i >= 0 && static_cast<uint64_t>(i) < a.items.size() && a.items[i].type == ValueType::STRING)
      return fmt::format("{:<7} \"{}\"", id, printable(std::get<std::string>(a.items[i].v), 40));
    return id + "  (out of range of the vocabulary!)";
  }
  return id;
}

size_t array_len(const File& f, const std::string& key) {
  const Value* v = find_typed(f, key, ValueType::ARRAY);
  return v ? std::get<Array>(v->v).items.size() : 0;
}

std::string first_line(const std::string& s) {
  size_t start = s.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  size_t end = s.find('\n', start);
  return s.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// ------------------------------------------------------------------ text output

void print_tensor_rows(const std::vector<const TensorInfo*>& rows, size_t name_w) {
  for (const TensorInfo* t : rows)
    fmt::print("  {:<{}}  {:<5} {:<18} {:>10}\n", t->name, name_w, type_name(t->type), shape_str(t->ne),
               human_bytes(t->n_bytes));
}

void print_tensors(const File& f, const Report& r, bool all) {
  const auto& ts = f.tensors();
  fmt::print("\nTensors: {}, {} ({} parameters); shapes in ggml order, row length first\n", ts.size(),
             human_bytes(r.total_bytes), human_count(r.total_elements));
  size_t name_w = 4;
  for (const auto& t : ts) name_w = std::max(name_w, t.name.size());
  name_w = std::min<size_t>(name_w, 36);
  fmt::print("  {:<{}}  {:<5} {:<18} {:>10}\n", "name", name_w, "type", "shape", "bytes");

  if (all) {
    std::vector<const TensorInfo*> rows;
    for (const auto& t : ts) rows.push_back(&t);
    print_tensor_rows(rows, name_w);
  } else {
    // Non-block tensors in file order, then the first layer in full, then the
    // other layers grouped by how they differ from it.
    std::vector<const TensorInfo*> other;
    std::map<int, std::vector<std::pair<std::string, const TensorInfo*>>> layers;
    for (const auto& t : ts) {
      int layer;
      std::string rest;
      if (split_block(t.name, &layer, &rest)) layers[layer].emplace_back(rest, &t);
      else other.push_back(&t);
    }
    print_tensor_rows(other, name_w);
    if (!layers.empty()) {
      auto& [ref_id, ref] = *layers.begin();
      std::vector<const TensorInfo*> ref_rows;
      std::map<std::string, const TensorInfo*> ref_map;
      uint64_t ref_bytes = 0;
      for (auto& [rest, t] : ref) { ref_rows.push_back(t); ref_map[rest] = t; ref_bytes += t->n_bytes; }
      print_tensor_rows(ref_rows, name_w);
      // Describe each other layer relative to the reference; group equal descriptions.
      std::vector<std::pair<std::string, std::vector<int>>> groups;  // first-seen order
      for (auto it = std::next(layers.begin()); it != layers.end(); ++it) {
        std::map<std::string, const TensorInfo*> mine(it->second.begin(), it->second.end());
        std::vector<std::string> diffs;
        for (auto& [rest, t] : mine) {
          auto rt = ref_map.find(rest);
          if (rt == ref_map.end())
            diffs.push_back(fmt::format("+{} {} {}", rest, type_name(t->type), shape_str(t->ne)));
          else if (rt->second->type != t->type || rt->second->ne != t->ne)
            diffs.push_back(rt->second->ne == t->ne
                                ? fmt::format("{} {}", rest, type_name(t->type))
                                : fmt::format("{} {} {}", rest, type_name(t->type), shape_str(t->ne)));
        }
        for (auto& [rest, t] : ref_map)
          if (!mine.count(rest)) diffs.push_back("-" + rest);
        std::string desc;
        for (const auto& d : diffs) desc += (desc.empty() ? "" : ", ") + d;
        auto g = std::find_if(groups.begin(), groups.end(), [&](auto& x) { return x.first == desc; });
        if (g == groups.end()) groups.push_back({desc, {it->first}});
        else g->second.push_back(it->first);
      }
      for (const auto& [desc, ids] : groups) {
        std::string label = "blk." + ranges(ids);
        if (desc.empty())
          fmt::print("  {:<{}}  same as blk.{} ({} tensors, {} per layer)\n", label, name_w, ref_id, ref.size(),
                     human_bytes(ref_bytes));
        else
          fmt::print("  {:<{}}  as blk.{} except {}\n", label, name_w, ref_id, desc);
      }
    }
  }
  fmt::print("\n  by type:\n");
  std::vector<std::pair<std::string, Report::TypeTotal>> types(r.per_type.begin(), r.per_type.end());
  std::sort(types.begin(), types.end(), [](auto& a, auto& b) { return a.second.bytes > b.second.bytes; });
  for (const auto& [name, tt] : types)
    fmt::print("    {:<5} {:>5} tensor{}  {:>10}  {:>5.1f}%\n", name, tt.count, tt.count == 1 ? " " : "s",
               human_bytes(tt.bytes), r.total_bytes ? 100.0 * tt.bytes / r.total_bytes : 0.0);
}

void print_text(const File& f, const Report& r, const InspectOptions& o) {
  auto row = [](const std::string& label, const std::string& value) {
    fmt::print("  {:<18} {}\n", label, value);
  };
  fmt::print("{}\n", f.path());
  row("name", r.name.empty() ? "(general.name not set)" : r.name);
  row("architecture", r.arch.empty() ? "(general.architecture not set)" : r.arch);
  row("format", fmt::format("GGUF v{}, {} metadata keys, alignment {}", f.version(), f.metadata().size(),
                            f.alignment()));
  row("file size", fmt::format("{} ({} tensor data)", human_bytes(f.file_size()), human_bytes(r.total_bytes)));

  fmt::print("\nHyper-parameters ({}.*)\n", r.arch.empty() ? "?" : r.arch);
  for (const auto& h : r.hparams) row(h.label, h.value ? gguf::format_value(*h.value) : "(not set)");
  if (r.vocab_size) row("vocab size", fmt::format("{}", r.vocab_size));
  else row("vocab size", "(not set)");

  print_tensors(f, r, o.all_tensors);

  fmt::print("\nVocabulary\n");
  auto model = f.find("tokenizer.ggml.model");
  if (!model) {
    fmt::print("  (no tokenizer.ggml.* keys: the model has no embedded tokenizer)\n");
  } else {
    auto plain = [](const Value& v) {
      return v.type == ValueType::STRING ? printable(std::get<std::string>(v.v), 40) : gguf::format_value(v);
    };
    std::string m = plain(*model);
    if (const Value* pre = f.find("tokenizer.ggml.pre")) m += "  (pre-tokenizer: " + plain(*pre) + ")";
    row("tokenizer", m);
    row("tokens", fmt::format("{}", array_len(f, "tokenizer.ggml.tokens")));
    if (f.find("tokenizer.ggml.merges")) row("merges", fmt::format("{}", array_len(f, "tokenizer.ggml.merges")));
    for (const char* which : {"bos", "eos", "eot", "unknown", "padding"}) {
      std::string s = token_with_text(f, fmt::format("tokenizer.ggml.{}_token_id", which));
      if (!s.empty()) row(std::string(which) + " token", s);
    }
  }
  const Value* tmpl = find_typed(f, "tokenizer.chat_template", ValueType::STRING);
  if (tmpl) {
    const std::string& s = std::get<std::string>(tmpl->v);
    row("chat template", fmt::format("yes, {} chars; starts: {}", s.size(), printable(first_line(s), 50)));
  } else {
    row("chat template", "none");
  }

  if (o.all_keys) {
    fmt::print("\nMetadata ({} keys)\n", f.metadata().size());
    size_t w = 0;
    for (const auto& kv : f.metadata()) w = std::max(w, kv.key.size());
    for (const auto& kv : f.metadata()) {
      std::string type(gguf::value_type_name(kv.value.type));
      if (kv.value.type == ValueType::ARRAY)
        type = fmt::format("{}[{}]", gguf::value_type_name(std::get<Array>(kv.value.v).elem_type),
                           std::get<Array>(kv.value.v).items.size());
      fmt::print("  {:<{}}  {:<16} {}\n", kv.key, w, type, gguf::format_value(kv.value, 6));
    }
  } else {
    fmt::print("\n{} metadata keys in all (kiln inspect --all-keys lists them)\n", f.metadata().size());
  }

  if (r.problems.empty()) {
    fmt::print("\nVerdict: supported by kiln\n");
  } else {
    fmt::print("\nVerdict: NOT supported:\n");
    for (const auto& p : r.problems) fmt::print("  - {}\n", p);
  }
}

// ------------------------------------------------------------------ JSON output

void print_json(const File& f, const Report& r) {
  json j;
  j["path"] = f.path();
  j["version"] = f.version();
  j["alignment"] = f.alignment();
  j["data_offset"] = f.data_offset();
  j["file_size"] = f.file_size();
  j["architecture"] = r.arch.empty() ? json(nullptr) : json(r.arch);
  j["name"] = r.name.empty() ? json(nullptr) : json(r.name);
  json hp = json::object();
  for (const auto& h : r.hparams) hp[h.key] = h.value ? value_json(*h.value) : json(nullptr);
  j["hparams"] = hp;
  j["vocab_size"] = r.vocab_size;
  json md = json::array();
  for (const auto& kv : f.metadata()) {
    json e{{"key", kv.key}, {"type", gguf::value_type_name(kv.value.type)}, {"value", value_json(kv.value)}};
    if (kv.value.type == ValueType::ARRAY)
      e["elem_type"] = gguf::value_type_name(std::get<Array>(kv.value.v).elem_type);
    md.push_back(std::move(e));
  }
  j["metadata"] = std::move(md);
  json ts = json::array();
  for (const auto& t : f.tensors())
    ts.push_back({{"name", t.name}, {"type", type_name(t.type)}, {"type_id", static_cast<uint32_t>(t.type)},
                  {"shape", t.ne}, {"offset", t.offset}, {"n_elements", t.n_elements}, {"n_bytes", t.n_bytes}});
  j["tensors"] = std::move(ts);
  json totals = json::object();
  for (const auto& [name, tt] : r.per_type)
    totals[name] = {{"count", tt.count}, {"elements", tt.elements}, {"bytes", tt.bytes}};
  j["totals"] = {{"bytes", r.total_bytes}, {"elements", r.total_elements}, {"by_type", totals}};
  json vocab = json::object();
  if (const Value* m = find_typed(f, "tokenizer.ggml.model", ValueType::STRING)) vocab["model"] = value_json(*m);
  if (const Value* p = find_typed(f, "tokenizer.ggml.pre", ValueType::STRING)) vocab["pre"] = value_json(*p);
  vocab["tokens"] = array_len(f, "tokenizer.ggml.tokens");
  vocab["merges"] = array_len(f, "tokenizer.ggml.merges");
  for (const char* which : {"bos", "eos", "eot"})
    if (const Value* v = f.find(fmt::format("tokenizer.ggml.{}_token_id", which)))
      vocab[std::string(which) + "_id"] = value_json(*v);
  j["vocab"] = std::move(vocab);
  const Value* tmpl = find_typed(f, "tokenizer.chat_template", ValueType::STRING);
  j["chat_template"] = {{"present", tmpl != nullptr},
                        {"length", tmpl ? std::get<std::string>(tmpl->v).size() : 0},
                        {"first_line", tmpl ? first_line(std::get<std::string>(tmpl->v)) : ""}};
  j["supported"] = r.problems.empty();
  j["problems"] = r.problems;
  std::string out = j.dump(-1, ' ', false, json::error_handler_t::replace);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fputc('\n', stdout);
}

void run_inspect(const InspectOptions& o) {
  File f = File::open(o.path);
  Report r = build_report(f);
  if (o.json) print_json(f, r);
  else print_text(f, r, o);
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto opt = std::make_shared<InspectOptions>();
  CLI::App* sub = app.add_subcommand(
      "inspect",
      "Show what is in a GGUF model (metadata, tensors, vocabulary) and whether kiln supports it,\n"
      "or what is in a compiled plan (target, kernels, programs, arena, memory budget)");
  sub->add_option("model", opt->path, "the .gguf or .plan file")->required();
  sub->add_flag("--json", opt->json, "machine-readable output: every key and tensor");
  sub->add_flag("--all-keys", opt->all_keys, "list every metadata key with its value");
  sub->add_flag("--all-tensors", opt->all_tensors,
                "list every tensor instead of summarising repeated layers (for a plan: every launch of every program)");
  sub->callback([opt] {
    rt::cli::check_input_file(opt->path, "model or plan");
    // A plan file starts with the plan header's magic; everything else is treated as GGUF.
    if (rt::cli::is_plan_file(opt->path)) rt::cli::inspect_plan(opt->path, opt->all_tensors);
    else run_inspect(*opt);
  });
}

}  // namespace kiln::cli
