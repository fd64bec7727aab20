// Lowering of one IR node to a kernel source + launch configuration.
// Each op variant is emitted once by emit_variant(); in Compiled mode scalars
// (shapes, attributes) become literals in the kernel body, in Eager mode they
// become kernel parameters and the kernel text is shared by one module per dtype.
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "codegen/codegen.h"
#include "ir/dtype.h"

namespace kiln::codegen {
namespace detail {
struct EmbeddedFile {
  std::string_view name, text;
};
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedCount;
}  // namespace detail

namespace {
using ir::DType;
using ir::OpKind;

uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}
std::string hex16(uint64_t v) {
  static const char* d = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = d[v & 15];
  return s;
}

const std::vector<std::string>& default_options() {
  static const std::vector<std::string> o = {"-std=c++17"};
  return o;
}

uint64_t hash_source(const std::string& src, const std::vector<std::string>& opts) {
  uint64_t h = fnv1a(src);
  for (const auto& o : opts) h = fnv1a(o, fnv1a(std::string_view("\0", 1), h));
  return h;
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
bool is_weight_type(DType t) { return t != DType::I32; }

std::string dt_macro(DType t) {
  std::string n(ir::dtype_name(t));
  for (auto& c : n) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return "DT_" + n;
}
std::string dt_lower(DType t) { return std::string(ir::dtype_name(t)); }

[[noreturn]] void unsupported(const std::string& msg) { throw Error(ErrorCode::kUnsupported, "codegen: " + msg); }

// ---- variants ---------------------------------------------------------------

enum class V {
  MatGemv, MatTiled, Embed, RmsNorm, Add, Mul, Silu, SwiGlu, Rope, KvStore, Attention, LastRow, ArgMax,
  RopeStore, LmHead
};

// Everything one kernel variant needs; scalars are ignored (become params) in Eager mode.
struct Spec {
  V v;
  DType dt = DType::F32;   // weight / table / b / gain / cache / freq dtype (the "op dtype")
  DType dt2 = DType::F32;  // matmul/lm_head: gain dtype; rope_store: cache dtype
  int flags = 0;           // matmul: MM_RMS | MM_ADD | MM_SWIGLU
  int mt = 1;              // gemv max tokens
  int split = 1;           // gemv warps per output column group
  int rows = 1;            // gemv output columns per group (x reuse from registers)
  bool has_ff = false;     // rope: freq factors present
  bool has_logits = true;
  int layout = 0;          // weight layout: 0 ggml, 1 planes (codegen.h; template L of the kernels)
  // scalars
  int64_t K = 0, N = 0, T = 0, R = 0, C = 0, nh = 0, nkv = 0, hd = 0, n_rot = 0, neox = 0, dyn = 0, bcast = 0,
          has_scale = 0;
  double eps = 0, theta = 0, scale = 1;
};

struct Emit {
  bool compiled;
  std::vector<std::string> sig;
  std::vector<Param> params;
  std::string ptr(ParamKind k, int idx, const char* ctype) {
    std::string name = "p" + std::to_string(sig.size());
    sig.push_back(std::string(ctype) + " " + name);
    params.push_back(Param{k, idx});
    return name;
  }
  std::string in(int idx, const char* ctype) { return ptr(ParamKind::Input, idx, ctype); }
  std::string out(int idx, const char* ctype) { return ptr(ParamKind::Output, idx, ctype); }
  std::string step(bool mut = false) { return ptr(ParamKind::Step, 0, mut ? "KilnStep*" : "const KilnStep*"); }
  std::string i(int64_t v) {
    if (compiled) return std::to_string(v);
    std::string name = "p" + std::to_string(sig.size());
    sig.push_back("int " + name);
    params.push_back(Param{ParamKind::I32, 0, v, 0.f});
    return name;
  }
  std::string f(double dv) {
    const float v = static_cast<float>(dv);
    if (compiled) {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      char buf[48];
      std::snprintf(buf, sizeof buf, "__int_as_float(0x%08x)", u);
      return buf;
    }
    std::string name = "p" + std::to_string(sig.size());
    sig.push_back("float " + name);
    params.push_back(Param{ParamKind::F32, 0, 0, v});
    return name;
  }
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

struct Variant {
  std::string base_name;           // eager entry name / compiled entry prefix
  std::vector<std::string> files;  // kernel files in order
  std::string call;                // the body: one device-function call
  unsigned block = 256;
  std::vector<std::string> sig;
  std::vector<Param> params;
};

Variant emit_variant(const Spec& s, bool compiled) {
  Emit e{compiled, {}, {}};
  Variant out;
  const std::string d = dt_macro(s.dt), d2 = dt_macro(s.dt2);
  auto matmul_name = [&](const char* path) {
    std::string n = "kiln_";
    if (s.flags == 0) n += "matmul";
    else if (s.flags == 1) n += "rms_matmul";
    else if (s.flags == 2) n += "matmul_add";
    else n += "rms_matmul_swiglu";
    n += std::string("_") + path + "_" + dt_lower(s.dt);
    if (s.flags & 1) n += "_g" + dt_lower(s.dt2);
    return n;
  };
  switch (s.v) {
    case V::MatGemv:
    case V::MatTiled: {
      const bool gemv = s.v == V::MatGemv;
      out.files = {"common.cuh", "dequant.cuh", "matmul.cuh"};
      out.base_name = matmul_name(gemv ? "gemv" : "tiled");
      if (gemv)
        out.base_name += "_t" + std::to_string(s.mt) + (s.split > 1 ? "_s" + std::to_string(s.split) : "") +
                         (s.rows > 1 ? "_r" + std::to_string(s.rows) : "");
      if (s.layout) out.base_name += "_pl";
      out.block = gemv ? 128 : 256;
      std::string x = e.in(0, "const float*");
      std::string g = (s.flags & 1) ? e.in(1, "const void*") : "nullptr";
      std::string w = e.in((s.flags & 1) ? 2 : 1, "const u8*");
      std::string r = (s.flags & 2) ? e.in(2, "const float*") : "nullptr";
      std::string y = e.out(0, "float*");
      std::string st = e.step();
      std::string K = e.i(s.K), N = e.i(s.N);
      // rows to compute: the step's tokens for [tokens, K] inputs, else the static row count
      std::string nt = "(" + e.i(s.dyn) + " ? min(" + st + "->n_tokens, " + e.i(s.T) + ") : " + e.i(s.T) + ")";
      std::string eps = (s.flags & 1) ? e.f(s.eps) : "0.f";
      std::string tmpl = "<" + d + ", " + ((s.flags & 1) ? d2 : "DT_F32") + ", " + std::to_string(s.flags);
      tmpl += gemv ? ", " + std::to_string(s.mt) + ", " + std::to_string(s.split) + ", " + std::to_string(s.rows) : "";
      tmpl += ", " + std::to_string(s.layout);
      out.call = (gemv ? "mm_gemv" : "mm_tiled") + tmpl + ">(" + x +
                 ", " + g + ", " + w + ", " + r + ", " + y + ", " + nt + ", " + K + ", " + N + ", " + eps +
                 ")";
      break;
    }
    case V::Embed: {
      out.files = {"common.cuh", "dequant.cuh", "elementwise.cuh"};
      out.base_name = "kiln_embed_" + dt_lower(s.dt) + (s.layout ? "_pl" : "");
      std::string tab = e.in(0, "const u8*"), ids = e.in(1, "const i32*"), y = e.out(0, "float*"),
                  st = e.step();
      std::string Vv = e.i(s.N), H = e.i(s.K), sc = e.f(s.scale), hs = e.i(s.has_scale);
      out.call = "k_embed<" + d + ", " + std::to_string(s.layout) + ">(" + tab + ", " + ids + ", " + y + ", " + st + "->n_tokens, " + Vv + ", " + H +
                 ", " + sc + ", " + hs + ")";
      break;
    }
    case V::RmsNorm: {
      out.files = {"common.cuh", "elementwise.cuh"};
      out.base_name = "kiln_rms_norm_" + dt_lower(s.dt);
      std::string x = e.in(0, "const float*"), w = e.in(1, "const void*"), y = e.out(0, "float*"), st = e.step();
      std::string H = e.i(s.K), eps = e.f(s.eps);
      out.call = "k_rms_norm<" + d + ">(" + x + ", " + w + ", " + y + ", " + st + "->n_tokens, " + H + ", " + eps + ")";
      break;
    }
    case V::Add:
    case V::Mul: {
      out.files = {"common.cuh", "elementwise.cuh"};
      out.base_name = std::string(s.v == V::Add ? "kiln_add_" : "kiln_mul_") + dt_lower(s.dt);
      std::string a = e.in(0, "const float*"), b = e.in(1, "const void*"), y = e.out(0, "float*"), st = e.step();
      std::string dyn = e.i(s.dyn), R = e.i(s.R), N = e.i(s.N), bc = e.i(s.bcast);
      out.call = "k_binary<" + d + ", " + (s.v == V::Mul ? "1" : "0") + ">(" + a + ", " + b + ", " + y + ", " + st +
                 "->n_tokens, " + dyn + ", " + R + ", " + N + ", " + bc + ")";
      break;
    }
    case V::Silu:
    case V::SwiGlu: {
      out.files = {"common.cuh", "elementwise.cuh"};
      const bool sw = s.v == V::SwiGlu;
      out.base_name = sw ? "kiln_swiglu" : "kiln_silu";
      std::string x = e.in(0, "const float*");
      std::string up = sw ? e.in(1, "const float*") : "nullptr";
      std::string y = e.out(0, "float*"), st = e.step();
      std::string dyn = e.i(s.dyn), R = e.i(s.R), N = e.i(s.N);
      out.call = "k_silu(" + x + ", " + up + ", " + y + ", " + st + "->n_tokens, " + dyn + ", " + R + ", " + N + ")";
      break;
    }
    case V::LastRow: {
      out.files = {"common.cuh", "elementwise.cuh"};
      out.base_name = "kiln_last_row";
      std::string x = e.in(0, "const float*"), y = e.out(0, "float*"), st = e.step();
      std::string dyn = e.i(s.dyn), R = e.i(s.R), H = e.i(s.N);
      out.call = "k_last_row(" + x + ", " + y + ", " + st + "->n_tokens, " + dyn + ", " + R + ", " + H + ")";
      break;
    }
    case V::ArgMax: {
      // The IR's argmax closes the unfused graph: on the GPU it is the sampling
      // step (greedy when step->temperature <= 0, which is the IR semantics),
      // writing the token to the output, step->out_token and tokens[0].
      out.files = {"common.cuh", "dequant.cuh", "matmul.cuh", "sample.cuh"};
      out.base_name = "kiln_sample_rows";
      out.block = 128;
      std::string x = e.in(0, "const float*"), y = e.out(0, "i32*");
      std::string toks = e.ptr(ParamKind::Tokens, 0, "i32*");
      std::string st = e.step(true);
      std::string R = e.i(s.R), N = e.i(s.N);
      out.call = "k_sample_rows(" + x + ", " + y + ", " + toks + ", " + st + ", " + R + ", " + N + ")";
      break;
    }
    case V::KvStore: {
      out.files = {"common.cuh", "elementwise.cuh"};
      out.base_name = "kiln_kv_store_" + dt_lower(s.dt);
      std::string c = e.in(0, "void*"), x = e.in(1, "const float*"), st = e.step();
      std::string C = e.i(s.C), W = e.i(s.N);
      out.call = "k_kv_store<" + d + ">(" + c + ", " + x + ", " + st + ", " + C + ", " + W + ")";
      break;
    }
    case V::Rope: {
      out.files = {"common.cuh", "rope.cuh"};
      out.base_name = s.has_ff ? "kiln_rope_ff_" + dt_lower(s.dt) : "kiln_rope";
      out.block = 64;
      std::string x = e.in(0, "const float*");
      std::string ff = s.has_ff ? e.in(2, "const void*") : "nullptr";
      std::string y = e.out(0, "float*"), st = e.step();
      std::string nh = e.i(s.nh), hd = e.i(s.hd), nr = e.i(s.n_rot), nx = e.i(s.neox), th = e.f(s.theta);
      out.call = "k_rope<" + (s.has_ff ? d : std::string("DT_F32")) + ">(" + x + ", " + ff + ", " + y + ", " + st +
                 ", " + nh + ", " + hd + ", " + nr + ", " + nx + ", " + th + ")";
      break;
    }
    case V::RopeStore: {
      out.files = {"common.cuh", "rope.cuh"};
      out.base_name = "kiln_rope_store_" + dt_lower(s.dt2) + (s.has_ff ? "_ff_" + dt_lower(s.dt) : "");
      out.block = 64;
      std::string qkv = e.in(0, "const float*");
      std::string ff = s.has_ff ? e.in(4, "const void*") : "nullptr";
      std::string kc = e.in(2, "void*"), vc = e.in(3, "void*"), y = e.out(0, "float*"), st = e.step();
      std::string C = e.i(s.C), nh = e.i(s.nh), nkv = e.i(s.nkv), hd = e.i(s.hd), nr = e.i(s.n_rot),
                  nx = e.i(s.neox), th = e.f(s.theta);
      out.call = "k_rope_store<" + (s.has_ff ? d : std::string("DT_F32")) + ", " + d2 + ">(" + qkv + ", " + ff + ", " +
                 kc + ", " + vc + ", " + y + ", " + st + ", " + C + ", " + nh + ", " + nkv + ", " + hd + ", " + nr +
                 ", " + nx + ", " + th + ")";
      break;
    }
    case V::Attention: {
      out.files = {"common.cuh", "attention.cuh"};
      out.base_name = "kiln_attention_" + dt_lower(s.dt);
      out.block = 256;  // 32 * ATT_WARPS
      std::string q = e.in(0, "const float*"), k = e.in(1, "const void*"), v = e.in(2, "const void*"),
                  y = e.out(0, "float*"), st = e.step();
      std::string C = e.i(s.C), nh = e.i(s.nh), nkv = e.i(s.nkv), hd = e.i(s.hd), sc = e.f(s.scale);
      out.call = "k_attention<" + d + ">(" + q + ", " + k + ", " + v + ", " + y + ", " + st + ", " + C + ", " + nh +
                 ", " + nkv + ", " + hd + ", " + sc + ")";
      break;
    }
    case V::LmHead: {
      out.files = {"common.cuh", "dequant.cuh", "matmul.cuh", "sample.cuh"};
      out.base_name = "kiln_lm_head_sample_" + dt_lower(s.dt) + "_g" + dt_lower(s.dt2) +
                      (s.split > 1 ? "_s" + std::to_string(s.split) : "") +
                      (s.rows > 1 ? "_r" + std::to_string(s.rows) : "") + (s.layout ? "_pl" : "");
      out.block = 128;
      std::string x = e.in(0, "const float*"), g = e.in(1, "const void*"), w = e.in(2, "const u8*");
      std::string tok = e.out(0, "i32*"), lg = e.out(1, "float*");
      std::string toks = e.ptr(ParamKind::Tokens, 0, "i32*");
      std::string st = e.step(true);
      std::string K = e.i(s.K), Vv = e.i(s.N), eps = e.f(s.eps);
      out.call = "k_lm_head_sample<" + d + ", " + d2 + ", " + std::to_string(s.split) + ", " + std::to_string(s.rows) + ", " + std::to_string(s.layout) + ">(" + x + ", " + g + ", " + w + ", " + tok + ", " + lg + ", " +
                 toks + ", " + st + ", " + K + ", " + Vv + ", " + eps + ")";
      break;
    }
  }
  out.sig = std::move(e.sig);
  out.params = std::move(e.params);
  return out;
}

std::string kernel_text(const Variant& v, const std::string& entry) {
  return "extern \"C\" __global__ void __launch_bounds__(" + std::to_string(v.block) + ") " + entry + "(" +
         join(v.sig) + ") {\n  " + v.call + ";\n}\n";
}

std::string files_text(const std::vector<std::string>& files) {
  std::string s;
  for (const auto& f : files) {
    s += "// ---- ";
    s += f;
    s += "\n";
    s += kernel_file(f);
    s += "\n";
  }
  return s;
}

// ---- eager modules -------------------------------------------------------------

const std::vector<DType>& weight_dtypes() {
  static const std::vector<DType> v = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                                       DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                                       DType::Q4_K, DType::Q5_K, DType::Q6_K};
  return v;
}

std::vector<Spec> eager_specs(DType dt) {
  std::vector<Spec> v;
  auto add = [&](V k) {
    Spec s;
    s.v = k;
    s.dt = dt;
    v.push_back(s);
  };
  add(V::MatGemv);
  add(V::MatTiled);
  add(V::Embed);
  if (is_float(dt)) {
    add(V::RmsNorm);
    add(V::Add);
    add(V::Mul);
    add(V::KvStore);
    add(V::Attention);
    Spec r;
    r.v = V::Rope;
    r.dt = dt;
    r.has_ff = true;
    v.push_back(r);
  }
  if (dt == DType::F32) {
    add(V::Silu);
    add(V::SwiGlu);
    add(V::Rope);
    add(V::LastRow);
    add(V::ArgMax);
  }
  return v;
}

struct EagerModule {
  KernelSource src;
};

const KernelSource& eager_module(DType dt) {
  static std::mutex mu;
  static std::map<DType, KernelSource> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dt);
  if (it != cache.end()) return it->second;
  std::vector<std::string> files;
  std::string kernels;
  for (const Spec& s : eager_specs(dt)) {
    Variant var = emit_variant(s, false);
    for (const auto& f : var.files)
      if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    kernels += kernel_text(var, var.base_name);
  }
  // dependency order of the kernel files
  static const std::vector<std::string> order = {"common.cuh", "dequant.cuh", "matmul.cuh", "sample.cuh",
                                                 "elementwise.cuh", "rope.cuh", "attention.cuh"};
  std::vector<std::string> sorted;
  for (const auto& f : order)
    if (std::find(files.begin(), files.end(), f) != files.end()) sorted.push_back(f);
  KernelSource k;
  k.entry = "";
  k.source = "// kiln eager module, dtype " + dt_lower(dt) + "\n" + files_text(sorted) + kernels;
  k.options = default_options();
  k.hash = hash_source(k.source, k.options);
  return cache.emplace(dt, std::move(k)).first->second;
}

// ---- node -> spec ------------------------------------------------------------

struct Ctx {
  const ir::Graph& g;
  const ir::Node& n;
  int64_t bucket;
  const ir::Value& in(size_t i) const {
    if (i >= n.inputs.size())
      unsupported(std::string(ir::op_info(n.op).name) + " needs input " + std::to_string(i));
    return g.value(n.inputs[i]);
  }
  const ir::Value& out(size_t i) const {
    if (i >= n.outputs.size())
      unsupported(std::string(ir::op_info(n.op).name) + " needs output " + std::to_string(i));
    return g.value(n.outputs[i]);
  }
  int64_t dim(const ir::Dim& d) const {
    if (d.is_static()) return d.value;
    if (d.sym == "tokens") return bucket;
    auto it = g.sym_bounds.find(d.sym);
    return it != g.sym_bounds.end() ? it->second : d.value;
  }
  int64_t dim(const ir::Value& v, size_t i) const {
    if (i >= v.shape.size()) unsupported("value %" + v.name + " has too few dimensions");
    return dim(v.shape[i]);
  }
  bool dyn(const ir::Value& v) const { return !v.shape.empty() && v.shape[0].sym == "tokens"; }
};

std::string opname(const ir::Node& n) {
  switch (n.op) {
    case OpKind::RmsMatMul: return "rms_matmul";
    case OpKind::MatMulAdd: return "matmul_add";
    case OpKind::RmsMatMulSwiGlu: return "rms_matmul_swiglu";
    case OpKind::RopeStore: return "rope_store";
    case OpKind::LmHeadSample: return "lm_head_sample";
    default: return std::string(ir::op_info(n.op).name);
  }
}

void need_f32(const Ctx& c, const ir::Value& v, const char* what) {
  if (v.dtype != DType::F32)
    unsupported(opname(c.n) + ": " + what + " %" + v.name + " is " + dt_lower(v.dtype) + ", kernels take f32");
}
void need_float(const Ctx& c, const ir::Value& v, const char* what) {
  if (!is_float(v.dtype))
    unsupported(opname(c.n) + ": " + what + " %" + v.name + " is " + dt_lower(v.dtype) +
                ", expected f32, f16 or bf16");
}
void need_weight(const Ctx& c, const ir::Value& w, int64_t K) {
  if (!is_weight_type(w.dtype) || !ir::dtype_info(static_cast<uint32_t>(w.dtype)))
    unsupported(opname(c.n) + ": weight %" + w.name + " has dtype " + dt_lower(w.dtype) + " which has no GPU kernel");
  const uint32_t qk = is_float(w.dtype) ? 8 : ir::dtype_info(w.dtype).block_elems;
  if (K <= 0 || K % qk != 0)
    unsupported(opname(c.n) + ": weight %" + w.name + " row length " + std::to_string(K) +
                " is not a multiple of " + std::to_string(qk) + " (" + dt_lower(w.dtype) + " kernel granule)");
}

// Warps per output column group of a decode GEMV: keep >= ~4 chunk loads per
// lane, split long rows (units = 8-element chunks per row, for every dtype).
int gemv_split(int64_t K) {
  const int64_t units = K / 8;
  return units >= 512 ? 4 : units >= 256 ? 2 : 1;
}
// Output columns per group (weight rows per warp sharing one x chunk load):
// as many as keep >= 4096 warps in the grid (~30 per SM on 132 SMs, each with
// several 16-byte loads per row in flight), at most 4 (2 with the swiglu "up"
// rows). Small matrices keep 1 (latency-bound: short warps win there).
int gemv_rows(int64_t N, int split, bool swiglu) {
  for (int r = swiglu ? 2 : 4; r > 1; r /= 2)
    if (N * split / r >= 4096) return r;
  return 1;
}

Spec make_spec(const Ctx& c, Mode mode) {
  const ir::Node& n = c.n;
  Spec s;
  auto matmul = [&](int flags) {
    const ir::Value& x = c.in(0);
    need_f32(c, x, "x");
    const ir::Value* g = nullptr;
    const ir::Value& w = c.in((flags & 1) ? 2 : 1);
    if (flags & 1) {
      g = &c.in(1);
      need_float(c, *g, "gain");
      s.dt2 = g->dtype;
      s.eps = n.attr_float("eps");
    }
    if (flags & 2) need_f32(c, c.in(2), "residual");
    s.K = c.dim(x, 1);
    need_weight(c, w, s.K);
    if (c.dim(w, 1) != s.K) unsupported(opname(n) + ": K of x and w differ");
    s.dt = w.dtype;
    s.flags = flags;
    s.N = c.dim(w, 0);
    if (flags & 4) {
      if (s.N % 2) unsupported(opname(n) + ": w must have 2F rows");
      s.N /= 2;
    }
    s.T = c.dim(x, 0);
    // Rows of x: the step's tokens when x is [tokens, K]; a fixed count otherwise
    // (the LM head after last_row has one row whatever the bucket).
    s.dyn = c.dyn(x);
    const int64_t rows = s.dyn ? std::min<int64_t>(c.bucket, s.T) : s.T;
    const bool gemv = mode == Mode::Compiled ? rows <= 4 : rows == 1;
    s.v = gemv ? V::MatGemv : V::MatTiled;
    s.mt = gemv ? static_cast<int>(std::max<int64_t>(1, rows)) : 1;
    if (gemv && mode == Mode::Compiled) {
      // warps per output column: keep >= ~4 chunk loads per lane, split long rows
      s.split = gemv_split(s.K);
      s.rows = gemv_rows(s.N, s.split, flags & 4);
    }
  };
  auto rows_cols = [&](const ir::Value& a) {
    s.N = a.shape.empty() ? 1 : c.dim(a, a.shape.size() - 1);
    s.R = 1;
    for (size_t i = 0; i + 1 < a.shape.size(); ++i) s.R *= c.dim(a.shape[i]);
    s.dyn = c.dyn(a) && a.shape.size() >= 2;
  };
  switch (n.op) {
    case OpKind::MatMul: matmul(0); break;
    case OpKind::RmsMatMul: matmul(1); break;
    case OpKind::MatMulAdd: matmul(2); break;
    case OpKind::RmsMatMulSwiGlu: matmul(1 | 4); break;
    case OpKind::Embed: {
      const ir::Value& t = c.in(0);
      s.v = V::Embed;
      s.K = c.dim(t, 1);
      s.N = c.dim(t, 0);
      need_weight(c, t, s.K);
      if (c.in(1).dtype != DType::I32) unsupported("embed: ids must be i32");
      s.dt = t.dtype;
      auto sc = n.attr_float_opt("scale");
      s.has_scale = sc.has_value();
      s.scale = sc.value_or(1.0);
      s.T = c.dim(c.in(1), 0);
      break;
    }
    case OpKind::RmsNorm: {
      need_f32(c, c.in(0), "x");
      need_float(c, c.in(1), "w");
      s.v = V::RmsNorm;
      s.dt = c.in(1).dtype;
      s.K = c.dim(c.in(0), 1);
      s.T = c.dim(c.in(0), 0);
      s.eps = n.attr_float("eps");
      break;
    }
    case OpKind::Add:
    case OpKind::Mul: {
      const ir::Value &a = c.in(0), &b = c.in(1);
      need_f32(c, a, "a");
      need_float(c, b, "b");
      s.v = n.op == OpKind::Add ? V::Add : V::Mul;
      s.dt = b.dtype;
      rows_cols(a);
      s.bcast = b.shape.size() == 1 && a.shape.size() != 1;
      break;
    }
    case OpKind::Silu:
    case OpKind::SwiGlu: {
      need_f32(c, c.in(0), "x");
      if (n.op == OpKind::SwiGlu) need_f32(c, c.in(1), "up");
      s.v = n.op == OpKind::Silu ? V::Silu : V::SwiGlu;
      rows_cols(c.in(0));
      break;
    }
    case OpKind::LastRow: {
      need_f32(c, c.in(0), "x");
      s.v = V::LastRow;
      rows_cols(c.in(0));
      break;
    }
    case OpKind::ArgMax: {
      need_f32(c, c.in(0), "x");
      s.v = V::ArgMax;
      rows_cols(c.in(0));
      if (s.R != 1)
        throw Error(ErrorCode::kUnsupported,
                    "codegen: argmax lowers to the sampling step, which takes one row of logits (got " +
                        std::to_string(s.R) + ")");
      break;
    }
    case OpKind::KvStore: {
      const ir::Value &cache = c.in(0), &x = c.in(1);
      need_float(c, cache, "cache");
      need_f32(c, x, "x");
      s.v = V::KvStore;
      s.dt = cache.dtype;
      s.C = c.dim(cache, 0);
      s.N = c.dim(cache, 1);
      s.T = c.dim(x, 0);
      break;
    }
    case OpKind::Rope:
    case OpKind::RopeStore: {
      const bool store = n.op == OpKind::RopeStore;
      need_f32(c, c.in(0), store ? "qkv" : "x");
      s.v = store ? V::RopeStore : V::Rope;
      s.nh = n.attr_int("n_heads");
      s.hd = n.attr_int("head_dim");
      s.n_rot = n.attr_int("n_rot");
      s.theta = n.attr_float("theta");
      const std::string& m = n.attr_str("mode");
      if (m != "normal" && m != "neox") unsupported(opname(n) + ": unknown rope mode '" + m + "'");
      s.neox = m == "neox";
      if (s.nh <= 0 || s.hd <= 0 || s.n_rot <= 0 || s.n_rot > s.hd || s.n_rot % 2)
        unsupported(opname(n) + ": bad n_heads/head_dim/n_rot");
      const size_t ffi = store ? 4 : 2;
      s.has_ff = n.inputs.size() > ffi;
      if (s.has_ff) {
        need_float(c, c.in(ffi), "freq_factors");
        s.dt = c.in(ffi).dtype;
      }
      s.T = c.dim(c.in(0), 0);
      if (store) {
        s.nkv = n.attr_int("n_kv_heads");
        const ir::Value &kc = c.in(2), &vc = c.in(3);
        need_float(c, kc, "k cache");
        if (vc.dtype != kc.dtype) unsupported("rope_store: k and v caches must have one dtype");
        s.dt2 = kc.dtype;
        s.C = c.dim(kc, 0);
        if (s.nkv <= 0 || c.dim(kc, 1) != s.nkv * s.hd || c.dim(vc, 1) != s.nkv * s.hd)
          unsupported("rope_store: cache width must be n_kv_heads*head_dim");
        if (c.dim(c.in(0), 1) != (s.nh + 2 * s.nkv) * s.hd)
          unsupported("rope_store: qkv width must be (n_heads + 2*n_kv_heads)*head_dim");
      } else if (c.dim(c.in(0), 1) != s.nh * s.hd) {
        unsupported("rope: width must be n_heads*head_dim");
      }
      break;
    }
    case OpKind::Attention: {
      need_f32(c, c.in(0), "q");
      need_float(c, c.in(1), "k");
      if (c.in(2).dtype != c.in(1).dtype) unsupported("attention: k and v must have one dtype");
      s.v = V::Attention;
      s.dt = c.in(1).dtype;
      s.nh = n.attr_int("n_heads");
      s.nkv = n.attr_int("n_kv_heads");
      s.hd = n.attr_int("head_dim");
      s.scale = n.attr_float("scale");
      if (s.hd <= 0 || s.hd > 256) unsupported("attention: head_dim " + std::to_string(s.hd) + " > 256");
      if (s.nkv <= 0 || s.nh % s.nkv) unsupported("attention: n_heads must be a multiple of n_kv_heads");
      s.C = c.dim(c.in(1), 0);
      s.T = c.dim(c.in(0), 0);
      break;
    }
    case OpKind::LmHeadSample: {
      const ir::Value &x = c.in(0), &g = c.in(1), &w = c.in(2);
      need_f32(c, x, "x");
      need_float(c, g, "gain");
      s.v = V::LmHead;
      s.K = c.dim(x, 1);
      need_weight(c, w, s.K);
      s.dt = w.dtype;
      s.dt2 = g.dtype;
      s.N = c.dim(w, 0);
      s.eps = n.attr_float("eps");
      s.split = gemv_split(s.K);
      s.rows = gemv_rows(s.N, s.split, false);
      if (n.outputs.size() < 2)
        throw Error(ErrorCode::kInvalidArgument,
                    "codegen: lm_head_sample needs its logits output [1,V] (outputs[1]) as scratch; the pass "
                    "that makes it must add one");
      break;
    }
  }
  for (size_t i = 0; i < n.inputs.size(); ++i)
    if (input_layout(c.g, n, i, mode) == kLayoutPlanes) s.layout = 1;
  if (mode == Mode::Eager) {
    switch (n.op) {
      case OpKind::RmsMatMul:
      case OpKind::MatMulAdd:
      case OpKind::RmsMatMulSwiGlu:
      case OpKind::RopeStore:
      case OpKind::LmHeadSample:
        unsupported("fused op " + opname(n) + " has no eager kernel: eager programs run the unfused graph");
      default: break;
    }
  }
  return s;
}

uint32_t cdiv(int64_t a, int64_t b) { return static_cast<uint32_t>(std::max<int64_t>(1, (a + b - 1) / b)); }

void launch(const Spec& s, Lowered& l) {
  l.grid = {1, 1, 1};
  switch (s.v) {
    case V::MatGemv: l.grid[0] = cdiv(s.N, (4 / s.split) * s.rows); break;
    case V::MatTiled: l.grid = {cdiv(s.N, (s.flags & 4) ? 32 : 64), cdiv(s.T, 16), 1}; break;
    case V::Embed:
    case V::RmsNorm:
    case V::KvStore: l.grid[0] = cdiv(s.T, 1); break;
    case V::Rope: l.grid = {cdiv(s.T, 1), static_cast<uint32_t>(s.nh), 1}; break;
    case V::RopeStore: l.grid = {cdiv(s.T, 1), static_cast<uint32_t>(s.nh + s.nkv), 1}; break;
    case V::Add:
    case V::Mul:
    case V::Silu:
    case V::SwiGlu: l.grid[0] = std::min<uint32_t>(cdiv(s.R * s.N, 256), 4096); break;
    case V::LastRow: l.grid[0] = std::min<uint32_t>(cdiv(s.N, 256), 1024); break;
    case V::ArgMax: l.grid[0] = std::min<uint32_t>(cdiv(s.N, 128 * 8), 256); break;
    case V::Attention: l.grid = {static_cast<uint32_t>(s.nh), cdiv(s.T, 1), 1}; break;
    case V::LmHead: l.grid[0] = cdiv(s.N, (4 / s.split) * s.rows); break;
  }
}

}  // namespace

const std::vector<int>& supported_sms() {
  static const std::vector<int> v = {75, 80, 86, 89, 90};
  return v;
}

int parse_target(std::string_view t) {
  auto fail = [&]() -> int {
    std::string list;
    for (int sm : supported_sms()) list += (list.empty() ? "sm_" : ", sm_") + std::to_string(sm);
    throw Error(ErrorCode::kInvalidArgument,
                "unknown or unsupported target '" + std::string(t) + "': use one of " + list, "target");
  };
  if (t.size() < 4 || t.substr(0, 3) != "sm_") return fail();
  int v = 0;
  for (char ch : t.substr(3)) {
    if (ch < '0' || ch > '9' || v > 1000) return fail();
    v = v * 10 + (ch - '0');
  }
  for (int sm : supported_sms())
    if (sm == v) return v;
  return fail();
}

std::string_view kernel_file(std::string_view name) {
  for (size_t i = 0; i < detail::kEmbeddedCount; ++i)
    if (detail::kEmbeddedFiles[i].name == name) return detail::kEmbeddedFiles[i].text;
  throw Error(ErrorCode::kInternal, "codegen: kernel file '" + std::string(name) + "' is not embedded");
}

std::vector<KernelSource> eager_modules() {
  std::vector<KernelSource> v;
  for (DType dt : weight_dtypes()) v.push_back(eager_module(dt));
  return v;
}

Lowered lower(const ir::Graph& g, const ir::Node& n, int64_t bucket, int sm, Mode mode) {
  if (bucket <= 0) throw Error(ErrorCode::kInvalidArgument, "codegen: bucket must be > 0");
  bool ok_sm = false;
  for (int s : supported_sms()) ok_sm |= s == sm;
  if (!ok_sm) throw Error(ErrorCode::kInvalidArgument, "codegen: unsupported sm_" + std::to_string(sm));
  Ctx c{g, n, bucket};
  const Spec s = make_spec(c, mode);
  Lowered l;
  launch(s, l);
  if (mode == Mode::Eager) {
    Variant v = emit_variant(s, false);
    DType mod = s.dt;
    if (s.v == V::Silu || s.v == V::SwiGlu || s.v == V::LastRow || s.v == V::ArgMax || (s.v == V::Rope && !s.has_ff))
      mod = DType::F32;
    l.kernel = eager_module(mod);
    l.kernel.entry = v.base_name;
    l.block = {v.block, 1, 1};
    l.params = std::move(v.params);
  } else {
    Variant v = emit_variant(s, true);
    const std::string body = files_text(v.files);
    // the entry is unique per specialisation: name + hash of the kernel text
    const std::string entry = v.base_name + "_" + hex16(fnv1a(kernel_text(v, v.base_name))).substr(0, 12);
    l.kernel.entry = entry;
    l.kernel.source = "// kiln compiled kernel: " + opname(n) + "\n" + body +
                      kernel_text(v, entry);
    l.kernel.options = default_options();
    l.kernel.hash = hash_source(l.kernel.source, l.kernel.options);
    l.block = {v.block, 1, 1};
    l.params = std::move(v.params);
  }
  return l;
}

}  // namespace kiln::codegen
