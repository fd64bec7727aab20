// Textual form of the IR: a readable, line-oriented printer and its parser.
//
//   graph {
//     sym tokens <= 512
//     meta arch = "llama"
//     input %tokens : i32[tokens]
//     weight %w : q4_1[576, 576] = "blk.0.attn_q.weight"
//     state %k_cache.0 : f32[kv_len, 192]
//     %x0 : f32[tokens, 576] = embed(%token_embd, %tokens) {scale = 1.0}
//     output %logits
//   }
//
// Order: syms and meta (sorted by key), then values in id order, each node
// printed where its output's id falls (declarations with smaller ids first),
// then outputs. parse() numbers values in the order they appear, so
// parse(print(g)) reproduces ids exactly whenever node outputs have
// increasing ids along the schedule (true for builder-made graphs and for
// passes that append values); otherwise it yields the same graph renumbered.
// Doubles print in shortest round-trip form (std::to_chars) and always carry
// a '.', 'e', "inf" or "nan" so they never read back as integers.
#include <charconv>
#include <cmath>
#include <cstring>

#include "ir/graph.h"

namespace kiln::ir {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}
bool is_bare_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_name_char(c)) return false;
  return true;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          static const char* hex = "0123456789abcdef";
          out += "\\x";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string name_ref(std::string_view name) {
  return "%" + (is_bare_name(name) ? std::string(name) : quote(name));
}

std::string fmt_double(double d) {
  char buf[512];
  // Shortest round-trip digits; positional for moderate magnitudes (100000.0,
  // 0.5), scientific otherwise (1e-05, 1e+20).
  double a = std::fabs(d);
  bool positional = a == 0.0 || (a >= 1e-4 && a < 1e16);
  auto r = positional ? std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed)
                      : std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".ein") == std::string::npos) s += ".0";
  return s;
}

std::string fmt_attr(const AttrValue& v) {
  struct V {
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return fmt_double(d); }
    std::string operator()(const std::string& s) const { return quote(s); }
    std::string operator()(const std::vector<int64_t>& xs) const {
      std::string out = "[";
      for (size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + std::to_string(xs[i]);
      return out + "]";
    }
    std::string operator()(const std::vector<double>& xs) const {
      if (xs.empty()) return "f64[]";
      std::string out = "[";
      for (size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + fmt_double(xs[i]);
      return out + "]";
    }
  };
  return std::visit(V{}, v);
}

std::string fmt_type(const Graph& g, const Value& v) {
  std::string out = std::string(dtype_name(v.dtype)) + "[";
  for (size_t i = 0; i < v.shape.size(); ++i) {
    const Dim& d = v.shape[i];
    if (i) out += ", ";
    if (d.is_static()) {
      out += std::to_string(d.value);
    } else {
      out += d.sym;
      auto it = g.sym_bounds.find(d.sym);
      if (it == g.sym_bounds.end() || it->second != d.value) out += "<=" + std::to_string(d.value);
    }
  }
  return out + "]";
}

std::string fmt_key(const std::string& k) { return is_bare_name(k) ? k : quote(k); }

}  // namespace

std::string print(const Graph& g) {
  std::string out = "graph {\n";
  for (const auto& [sym, bound] : g.sym_bounds) out += "  sym " + fmt_key(sym) + " <= " + std::to_string(bound) + "\n";
  for (const auto& [key, val] : g.meta) out += "  meta " + fmt_key(key) + " = " + fmt_attr(val) + "\n";

  const auto& values = g.values();
  std::vector<char> printed(values.size(), 0);
  size_t next_decl = 0;  // declarations with ids below this are printed
  auto print_decls_below = [&](size_t limit) {
    for (; next_decl < limit && next_decl < values.size(); ++next_decl) {
      const Value& v = values[next_decl];
      if (v.kind == ValueKind::Temp) continue;
      const char* kw = v.kind == ValueKind::Input ? "input" : v.kind == ValueKind::Weight ? "weight" : "state";
      out += std::string("  ") + kw + " " + name_ref(v.name) + " : " + fmt_type(g, v);
      if (v.kind == ValueKind::Weight) out += " = " + quote(v.source);
      out += "\n";
    }
  };
  for (const Node& n : g.nodes()) {
    size_t first = values.size();
    for (ValueId o : n.outputs) first = std::min(first, static_cast<size_t>(o));
    print_decls_below(first);
    out += "  ";
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      const Value& o = g.value(n.outputs[i]);
      out += (i ? ", " : "") + name_ref(o.name) + " : " + fmt_type(g, o);
    }
    out += " = " + std::string(op_info(n.op).name) + "(";
    for (size_t i = 0; i < n.inputs.size(); ++i) out += (i ? ", " : "") + name_ref(g.value(n.inputs[i]).name);
    out += ")";
    if (!n.attrs.empty()) {
      out += " {";
      bool first_attr = true;
      for (const auto& [k, v] : n.attrs) {
        out += (first_attr ? "" : ", ") + fmt_key(k) + " = " + fmt_attr(v);
        first_attr = false;
      }
      out += "}";
    }
    out += "\n";
  }
  print_decls_below(values.size());
  for (ValueId o : g.outputs()) out += "  output " + name_ref(g.value(o).name) + "\n";
  out += "}\n";
  return out;
}

// ---------------------------------------------------------------- parser

namespace {

class LineParser {
 public:
  LineParser(std::string_view line, int line_no) : s_(line), line_no_(line_no) {}

  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(ErrorCode::kFormat,
                "IR text line " + std::to_string(line_no_) + ", column " + std::to_string(pos_ + 1) + ": " + msg,
                "line " + std::to_string(line_no_));
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r')) ++pos_;
  }
  bool at_end() {
    skip_ws();
    return pos_ >= s_.size();
  }
  bool peek(char c) {
    skip_ws();
    return pos_ < s_.size() && s_[pos_] == c;
  }
  bool accept(std::string_view tok) {
    skip_ws();
    if (s_.substr(pos_, tok.size()) == tok) {
      pos_ += tok.size();
      return true;
    }
    return false;
  }
  void expect(std::string_view tok) {
    if (!accept(tok)) fail("expected '" + std::string(tok) + "', found " + rest());
  }
  void expect_end() {
    if (!at_end()) fail("unexpected trailing text " + rest());
  }
  std::string rest() const {
    if (pos_ >= s_.size()) return "end of line";
    return "'" + std::string(s_.substr(pos_, 20)) + "'";
  }

  std::string bare_name(const char* what) {
    skip_ws();
    size_t start = pos_;
    while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
    if (pos_ == start) fail(std::string("expected ") + what + ", found " + rest());
    return std::string(s_.substr(start, pos_ - start));
  }
  // A key: bare name or quoted string.
  std::string key(const char* what) {
    if (peek('"')) return string_lit();
    return bare_name(what);
  }
  std::string value_ref() {
    skip_ws();
    if (!accept("%")) fail("expected a value name starting with '%', found " + rest());
    if (pos_ < s_.size() && s_[pos_] == '"') return string_lit();
    return bare_name("a value name after '%'");
  }
  std::string string_lit() {
    skip_ws();
    if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string literal, found " + rest());
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string literal");
      char c = s_[pos_++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape in string literal");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'x': {
          if (pos_ + 2 > s_.size()) fail("bad \\x escape");
          unsigned v = 0;
          auto r = std::from_chars(s_.data() + pos_, s_.data() + pos_ + 2, v, 16);
          if (r.ec != std::errc() || r.ptr != s_.data() + pos_ + 2) fail("bad \\x escape");
          pos_ += 2;
          out += static_cast<char>(v);
          break;
        }
        default: fail(std::string("unknown escape '\\") + e + "'");
      }
    }
    return out;
  }
  int64_t integer(const char* what) {
    skip_ws();
    int64_t v = 0;
    auto r = std::from_chars(s_.data() + pos_, s_.data() + s_.size(), v);
    if (r.ec != std::errc()) fail(std::string("expected ") + what + ", found " + rest());
    pos_ = static_cast<size_t>(r.ptr - s_.data());
    return v;
  }
  // A number; is_double tells whether it was written as a double.
  AttrValue number() {
    skip_ws();
    size_t start = pos_;
    size_t p = pos_;
    if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) ++p;
    while (p < s_.size() && (is_name_char(s_[p]) || s_[p] == '+' || s_[p] == '-')) {
      // exponent signs only right after e/E
      if ((s_[p] == '+' || s_[p] == '-') && !(s_[p - 1] == 'e' || s_[p - 1] == 'E')) break;
      ++p;
    }
    std::string_view tok = s_.substr(start, p - start);
    if (tok.empty()) fail("expected a value, found " + rest());
    bool is_double = tok.find_first_of(".eEin") != std::string_view::npos;
    const char* b = tok.data();
    if (*b == '+') ++b;
    const char* e = tok.data() + tok.size();
    if (is_double) {
      double d = 0;
      auto r = std::from_chars(b, e, d);
      if (r.ec != std::errc() || r.ptr != e) fail("bad number '" + std::string(tok) + "'");
      pos_ = p;
      return d;
    }
    int64_t i = 0;
    auto r = std::from_chars(b, e, i);
    if (r.ec != std::errc() || r.ptr != e) fail("bad integer '" + std::string(tok) + "'");
    pos_ = p;
    return i;
  }
  AttrValue attr_value() {
    skip_ws();
    if (peek('"')) return string_lit();
    if (accept("f64[")) {
      expect("]");
      return std::vector<double>{};
    }
    if (accept("[")) {
      std::vector<AttrValue> items;
      if (!accept("]")) {
        do items.push_back(number());
        while (accept(","));
        expect("]");
      }
      bool any_double = false;
      for (const auto& it : items) any_double |= std::holds_alternative<double>(it);
      if (any_double) {
        std::vector<double> out;
        for (const auto& it : items)
          out.push_back(std::holds_alternative<double>(it) ? std::get<double>(it)
                                                            : static_cast<double>(std::get<int64_t>(it)));
        return out;
      }
      std::vector<int64_t> out;
      for (const auto& it : items) out.push_back(std::get<int64_t>(it));
      return out;
    }
    return number();
  }

  std::string_view s_;
  size_t pos_ = 0;
  int line_no_;
};

struct TypeSpec {
  DType dtype;
  Shape shape;
};

TypeSpec parse_type(LineParser& p, const Graph& g) {
  std::string dt_name = p.bare_name("a dtype");
  auto dt = dtype_from_name(dt_name);
  if (!dt) p.fail("unknown dtype '" + dt_name + "'");
  TypeSpec t{*dt, {}};
  p.expect("[");
  if (p.accept("]")) return t;
  do {
    p.skip_ws();
    if (p.pos_ < p.s_.size() && ((p.s_[p.pos_] >= '0' && p.s_[p.pos_] <= '9'))) {
      int64_t v = p.integer("a dim size");
      t.shape.push_back(Dim::fixed(v));
    } else {
      std::string sym = p.bare_name("a dim (size or symbol)");
      if (p.accept("<=")) {
        t.shape.push_back(Dim::symbolic(sym, p.integer("a symbolic dim bound")));
      } else {
        auto it = g.sym_bounds.find(sym);
        if (it == g.sym_bounds.end())
          p.fail("symbolic dim '" + sym + "' is not declared; add 'sym " + sym + " <= N' before its first use");
        t.shape.push_back(Dim::symbolic(sym, it->second));
      }
    }
  } while (p.accept(","));
  p.expect("]");
  return t;
}

}  // namespace

Graph parse(std::string_view text) {
  Graph g;
  std::vector<std::pair<std::string_view, int>> lines;
  {
    size_t start = 0;
    int no = 1;
    while (start <= text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string_view::npos) nl = text.size();
      lines.emplace_back(text.substr(start, nl - start), no++);
      start = nl + 1;
    }
  }
  enum { kBefore, kBody, kAfter } state = kBefore;
  int last_line = 1;  // last non-blank line, for errors at the end of the text
  auto lookup = [&](LineParser& p, const std::string& name) -> ValueId {
    auto id = g.find_value(name);
    if (!id) p.fail("value %" + name + " is not defined above this line");
    return *id;
  };
  for (auto [line, no] : lines) {
    LineParser p(line, no);
    if (p.at_end() || p.peek('#')) continue;
    last_line = no;
    if (state == kBefore) {
      p.expect("graph");
      p.expect("{");
      p.expect_end();
      state = kBody;
      continue;
    }
    if (state == kAfter) p.fail("unexpected text after the closing '}'");
    if (p.accept("}")) {
      p.expect_end();
      state = kAfter;
      continue;
    }
    size_t save = p.pos_;
    if (!p.peek('%')) {
      std::string kw = p.bare_name("a keyword (sym, meta, input, weight, state, output) or '%name'");
      if (kw == "sym") {
        std::string sym = p.key("a symbol name");
        p.expect("<=");
        int64_t bound = p.integer("a bound");
        p.expect_end();
        if (g.sym_bounds.count(sym)) p.fail("symbol '" + sym + "' is declared twice");
        g.sym_bounds[sym] = bound;
      } else if (kw == "meta") {
        std::string key = p.key("a meta key");
        p.expect("=");
        AttrValue v = p.attr_value();
        p.expect_end();
        if (g.meta.count(key)) p.fail("meta key '" + key + "' is given twice");
        g.meta[key] = std::move(v);
      } else if (kw == "input" || kw == "weight" || kw == "state") {
        std::string name = p.value_ref();
        p.expect(":");
        TypeSpec t = parse_type(p, g);
        std::string source;
        if (kw == "weight") {
          p.expect("=");
          source = p.string_lit();
        }
        p.expect_end();
        if (g.find_value(name)) p.fail("value %" + name + " is defined twice");
        if (kw == "input") g.add_input(name, t.dtype, t.shape);
        else if (kw == "weight") g.add_weight(name, t.dtype, t.shape, source);
        else g.add_state(name, t.dtype, t.shape);
      } else if (kw == "output") {
        std::string name = p.value_ref();
        p.expect_end();
        g.mark_output(lookup(p, name));
      } else {
        p.pos_ = save;
        p.fail("unknown keyword '" + kw + "'");
      }
      continue;
    }
    // Node: %out : type [, %out2 : type] = op(%a, ...) [{k = v, ...}]
    std::vector<std::pair<std::string, TypeSpec>> outs;
    do {
      std::string name = p.value_ref();
      p.expect(":");
      outs.emplace_back(name, parse_type(p, g));
    } while (p.accept(","));
    p.expect("=");
    std::string op_name = p.bare_name("an op name");
    auto op = op_from_name(op_name);
    if (!op) p.fail("unknown op '" + op_name + "'");
    p.expect("(");
    std::vector<ValueId> inputs;
    if (!p.accept(")")) {
      do inputs.push_back(lookup(p, p.value_ref()));
      while (p.accept(","));
      p.expect(")");
    }
    Attrs attrs;
    if (p.accept("{")) {
      if (!p.accept("}")) {
        do {
          std::string k = p.key("an attribute name");
          p.expect("=");
          if (attrs.count(k)) p.fail("attribute '" + k + "' is given twice");
          attrs[k] = p.attr_value();
        } while (p.accept(","));
        p.expect("}");
      }
    }
    p.expect_end();
    for (const auto& o : outs)
      if (g.find_value(o.first)) p.fail("value %" + o.first + " is defined twice");
    ValueId first = g.add_node(*op, inputs, std::move(attrs), outs[0].first, outs[0].second.dtype, outs[0].second.shape);
    for (size_t i = 1; i < outs.size(); ++i) {
      // Extra outputs (fused ops): append temps and attach them to the node.
      Value v;
      v.id = static_cast<ValueId>(g.values().size());
      v.name = outs[i].first;
      v.dtype = outs[i].second.dtype;
      v.shape = outs[i].second.shape;
      v.kind = ValueKind::Temp;
      g.mutable_values().push_back(v);
      g.nodes().back().outputs.push_back(v.id);
    }
    (void)first;
  }
  if (state == kBefore)
    throw Error(ErrorCode::kFormat, "IR text line " + std::to_string(last_line) + ": no 'graph {' found");
  if (state == kBody)
    throw Error(ErrorCode::kFormat,
                "IR text line " + std::to_string(last_line) + ": missing closing '}' of the graph");
  return g;
}

}  // namespace kiln::ir
