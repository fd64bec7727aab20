// Lowering of one IR node to a kernel source + launch configuration: find the
// one kernel family whose predicate selects the node (the table below), let it
// emit its kernel, and wrap that into a translation unit. In compiled mode the
// family writes shapes and attributes as literals (one kernel per
// specialisation, named by a hash of its text, so identical layers share it);
// in eager mode they are kernel parameters and every eager kernel of one dtype
// lives in one module. Kernel files are NVRTC headers (embedded at build time),
// so a source is just #include lines and extern "C" wrappers.
#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "codegen/codegen.h"
#include "codegen/family.h"
#include "codegen/families/matmul.h"
#include "ir/dtype.h"

namespace kiln::codegen {
namespace detail {
struct EmbeddedFile {
  std::string_view name, text;
};
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedCount;

// The kernel families, in no particular order: their predicates are disjoint.
const std::vector<const Family*>& families() {
  static const std::vector<const Family*> v = {&gemv_family(),  &tiled_family(),     &embed_family(),
                                               &elementwise_family(), &rope_family(), &attention_family(),
                                               &sampling_family(), &convert_family(), &gemm_family(),
                                               &flash_attention_family()};
  return v;
}
}  // namespace detail

namespace {
using detail::Family;
using detail::Kernel;
using detail::NodeCtx;
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

// A source's identity includes the headers it may #include.
uint64_t hash_source(const std::string& src, const std::vector<std::string>& opts) {
  uint64_t h = fnv1a(src);
  for (const auto& o : opts) h = fnv1a(o, fnv1a(std::string_view("\0", 1), h));
  const uint64_t hd = kernel_headers_digest();
  return fnv1a(std::string_view(reinterpret_cast<const char*>(&hd), sizeof hd), h);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

// Every kernel starts with kiln_pdl_wait() and ends with kiln_pdl_trigger()
// (common.cuh): under programmatic dependent launch it waits for the previous
// kernel before any memory access, and lets the next one launch once all its
// blocks are done with their work; otherwise both do nothing. A kernel with
// own_pdl_wait calls kiln_pdl_wait_own itself, after issuing weight loads
// (weights are constants; nothing of the arena is touched before its wait).
// With early_trigger the next kernel may launch as soon as every block has
// passed its wait (early_trigger_wanted): the wrapper triggers right after its
// wait, or, for a kernel that waits itself, kiln_pdl_wait_own does
// (early_trigger_define, before the kernel's #include).
std::string kernel_text(const Kernel& k, const std::string& entry) {
  const std::string bounds =
      std::to_string(k.block) + (k.min_blocks ? ", " + std::to_string(k.min_blocks) : std::string());
  const bool early = k.early_trigger;
  return "extern \"C\" __global__ void __launch_bounds__(" + bounds + ") " + entry + "(" + join(k.sig) + ") {\n" +
         (k.own_pdl_wait ? "" : early ? "  kiln_pdl_wait();\n  kiln_pdl_trigger();\n" : "  kiln_pdl_wait();\n") +
         "  " + k.call + ";\n" + (early ? "" : "  kiln_pdl_trigger();\n") + "}\n";
}
std::string early_trigger_define(const Kernel& k) {
  return k.early_trigger && k.own_pdl_wait ? "#define KILN_EARLY_TRIGGER 1\n" : "";
}

// Whether the kernel of n should let its successor launch early, for one of
// two reasons. First, a rope_store reads its output. rope_store's blocks are
// small (64 threads, no shared memory) and compute their rotation angles
// before their own wait (rope.cuh), so landing early costs nothing and hides
// their launch and the angle arithmetic behind the projection's tail. Measured on the H200
// (docs/perf.md, 2026-11-30): triggering every kernel early helped the 8B
// (-2.3% to -4.8% per token) and SmolLM2 but slowed the 1B (+1.4% to +6.8%,
// cause not found then), so only this pair triggered early. Since the decode
// program ropes and stores q, k, v in the QKV GEMV's epilogue
// (rms_matmul_rope_store) the pair is left only where that fusion does not
// apply ("neox" rope); every kernel triggering early was measured again
// then: 1B Q4_K_M +12%, 1B F16 +4%, SmolLM2 +2%, 8B Q4_K_M equal.
// Second (session 9): the next kernel is a GEMV that gains from landing
// early (detail::gemv_wants_early_launch: a bulk-copy GEMV or a small matrix).
// With every kernel of SmolLM2, the 1B and the 8B triggering early and the
// GEMVs' weight loads issued before their own wait, it measured 1B +4.8%,
// SmolLM2 -8.5%, 8B -4.9%; by the kind of kernel that triggers, docs/perf.md.
// Early triggers never affect results: a kernel's wait still waits for the
// whole previous kernel to finish and its writes to be visible.
bool early_trigger_wanted(const ir::Graph& g, const ir::Node& n, const ir::DimBindings& dims, const Target& target) {
  for (const ir::Node& u : g.nodes())
    if (u.op == ir::OpKind::RopeStore)
      for (ir::ValueId in : u.inputs)
        if (std::find(n.outputs.begin(), n.outputs.end(), in) != n.outputs.end()) return true;
  const std::vector<ir::Node>& nodes = g.nodes();
  if (nodes.empty() || &n < nodes.data() || &n >= nodes.data() + nodes.size() - 1) return false;
  const ir::Node& next = *(&n + 1);  // the next launch of the program (one per node, in order)
  try {
    // Third (session 11): a small QKV GEMV lets the split attention land early;
    // attention loads its first tile of earlier steps' K/V rows before its
    // wait (attention.cuh). SmolLM2 -3.7% per token; the 8B's 14 MB QKV
    // gained nothing that way (+1.7%, +1.9% in session 9).
    if (next.op == ir::OpKind::Attention && detail::gemv_small(NodeCtx{g, n, dims, target, ProgramMode::Compiled}))
      return true;
    return detail::gemv_wants_early_launch(NodeCtx{g, next, dims, target, ProgramMode::Compiled});
  } catch (const Error&) {
    return false;  // the next node's own lowering reports what it cannot do
  }
}

// The eager module of one dtype: every family's generic kernels for it.
const KernelSource& eager_module(DType dt) {
  static std::mutex mu;
  static std::map<DType, KernelSource> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dt);
  if (it != cache.end()) return it->second;
  std::set<std::string> headers;
  std::string kernels;
  for (const Family* f : detail::families())
    for (const Kernel& k : f->eager_kernels(dt)) {
      if (k.eager_module != dt)
        throw Error(ErrorCode::kInternal, "codegen: family " + std::string(f->name()) + " put " + k.name +
                                              " in the " + detail::dt_lower(dt) + " eager module");
      headers.insert(k.header);
      kernels += kernel_text(k, k.name);
    }
  KernelSource k;
  k.source = "// kiln eager module, dtype " + detail::dt_lower(dt) + "\n";
  for (const auto& h : headers) k.source += "#include \"" + h + "\"\n";
  k.source += kernels;
  k.options = default_options();
  k.hash = hash_source(k.source, k.options);
  return cache.emplace(dt, std::move(k)).first->second;
}

bool is_fused(OpKind op) {
  switch (op) {
    case OpKind::RmsMatMul:
    case OpKind::MatMulAdd:
    case OpKind::RmsMatMulSwiGlu:
    case OpKind::RmsMatMulRopeStore:
    case OpKind::RopeStore:
    case OpKind::LmHeadSample: return true;
    default: return false;
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

std::vector<std::string_view> kernel_file_names() {
  std::vector<std::string_view> v;
  for (size_t i = 0; i < detail::kEmbeddedCount; ++i) v.push_back(detail::kEmbeddedFiles[i].name);
  return v;
}

uint64_t kernel_headers_digest() {
  static const uint64_t d = [] {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < detail::kEmbeddedCount; ++i)
      h = fnv1a(detail::kEmbeddedFiles[i].text, fnv1a(detail::kEmbeddedFiles[i].name, h));
    return h;
  }();
  return d;
}

std::vector<KernelSource> eager_modules() {
  std::vector<KernelSource> v;
  for (DType dt : weight_dtypes()) v.push_back(eager_module(dt));
  return v;
}

std::vector<std::string> selecting_families(const ir::Graph& g, const ir::Node& n, const ir::DimBindings& dims,
                                            const Target& target, ProgramMode mode) {
  const NodeCtx c{g, n, dims, target, mode};
  std::vector<std::string> v;
  for (const Family* f : detail::families())
    if (f->selects(c)) v.emplace_back(f->name());
  return v;
}

Lowered lower(const ir::Graph& g, const ir::Node& n, const ir::DimBindings& dims, const Target& target,
              ProgramMode mode) {
  if (dims.tokens <= 0) throw Error(ErrorCode::kInvalidArgument, "codegen: bucket must be > 0");
  if (std::find(supported_sms().begin(), supported_sms().end(), target.sm) == supported_sms().end())
    throw Error(ErrorCode::kInvalidArgument, "codegen: unsupported sm_" + std::to_string(target.sm));
  const NodeCtx c{g, n, dims, target, mode};
  if (mode == ProgramMode::Eager && is_fused(n.op))
    detail::unsupported("fused op " + c.opname() + " has no eager kernel: eager programs run the unfused graph");
  const Family* fam = nullptr;
  for (const Family* f : detail::families())
    if (f->selects(c)) {
      fam = f;
      break;
    }
  if (!fam) detail::unsupported("no kernel family lowers " + c.opname());
  Kernel k = fam->lower(c);
  if (mode == ProgramMode::Compiled) k.early_trigger = early_trigger_wanted(g, n, dims, target);
  Lowered l;
  l.grid = k.grid;
  l.block = {k.block, 1, 1};
  l.smem = k.smem;
  l.params = k.params;
  if (k.gemm) {  // a library call: no kernel source
    l.gemm = k.gemm;
    l.kernel.entry = "";
  } else if (mode == ProgramMode::Eager) {
    l.kernel = eager_module(k.eager_module);
    l.kernel.entry = k.name;
  } else {
    // the entry is unique per specialisation: name + hash of the kernel text
    const std::string entry = k.name + "_" + hex16(fnv1a(kernel_text(k, k.name))).substr(0, 12);
    l.kernel.entry = entry;
    l.kernel.source = "// kiln compiled kernel: " + c.opname() + " (" + std::string(fam->name()) + " family)\n" +
                      early_trigger_define(k) + "#include \"" + k.header + "\"\n" + kernel_text(k, entry);
    l.kernel.options = default_options();
    l.kernel.hash = hash_source(l.kernel.source, l.kernel.options);
  }
  return l;
}

const std::vector<DType>& weight_dtypes() {
  static const std::vector<DType> v = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                                       DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                                       DType::Q4_K, DType::Q5_K, DType::Q6_K};
  return v;
}

}  // namespace kiln::codegen
