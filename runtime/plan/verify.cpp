#include "runtime/plan/verify.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "runtime/error.h"
#include "schemas/plan_generated.h"
#include "schemas/plan_hash.h"

namespace kiln::rt {
namespace {

using plan_format::PlanHeader;

const char* kRecompile = "re-run `kiln compile` to regenerate the plan";

[[noreturn]] void corrupt(const std::string& field, const std::string& cause) {
  throw Error(ErrorCode::kFormat,
              "plan is corrupt or not a kiln plan: " + cause + " (" + field + "); " + kRecompile,
              field);
}

// Overflow-checked a + b.
bool add_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

// [off, off + size) inside [0, limit)? (size 0 needs only off <= limit)
bool range_inside(uint64_t off, uint64_t size, uint64_t limit) {
  uint64_t end;
  return add_ok(off, size, &end) && end <= limit;
}

std::string num(uint64_t v) { return std::to_string(v); }

PlanHeader check_header(std::span<const uint8_t> file) {
  if (file.size() < plan_format::kHeaderSize)
    corrupt("header", "file is " + num(file.size()) + " bytes, shorter than the 64-byte header");
  PlanHeader h;
  std::memcpy(&h, file.data(), sizeof h);
  if (std::memcmp(h.magic, plan_format::kMagic, sizeof h.magic) != 0)
    throw Error(ErrorCode::kFormat,
                "not a kiln plan (bad magic, expected \"KILNPLAN\"): pass a file written by "
                "`kiln compile <model.gguf> -o model.plan`",
                "header.magic");
  if (h.format_major != plan_format::kFormatMajor || h.format_minor > plan_format::kFormatMinor)
    throw Error(ErrorCode::kVersion,
                "plan format " + num(h.format_major) + "." + num(h.format_minor) +
                    ", this runtime reads " + num(plan_format::kFormatMajor) + ".0 to " +
                    num(plan_format::kFormatMajor) + "." + num(plan_format::kFormatMinor) +
                    ": recompile the model with this kiln version (kiln compile <model.gguf>)",
                "header.version");

  const uint64_t size = file.size();
  if (!range_inside(h.fb_offset, h.fb_size, size))
    corrupt("header.sections", "flatbuffer section [" + num(h.fb_offset) + ", +" + num(h.fb_size) +
                                   ") runs past the end of the " + num(size) +
                                   "-byte file (truncated?)");
  if (!range_inside(h.weights_offset, h.weights_size, size))
    corrupt("header.sections", "weights section [" + num(h.weights_offset) + ", +" +
                                   num(h.weights_size) + ") runs past the end of the " +
                                   num(size) + "-byte file (truncated?)");
  if (h.fb_offset < plan_format::kHeaderSize || h.weights_offset < plan_format::kHeaderSize)
    corrupt("header.sections", "a section overlaps the header");
  if (h.fb_offset % plan_format::kFlatbufferAlign != 0)
    corrupt("header.sections", "flatbuffer offset " + num(h.fb_offset) + " is not 8-byte aligned");
  if (h.weights_offset % plan_format::kWeightsAlign != 0)
    corrupt("header.sections",
            "weights offset " + num(h.weights_offset) + " is not 4096-byte aligned");
  if (h.fb_size < 8) corrupt("header.sections", "flatbuffer section is empty");
  // Both ranges are inside the file, so the ends cannot overflow.
  if (h.weights_size > 0 && h.fb_offset < h.weights_offset + h.weights_size &&
      h.weights_offset < h.fb_offset + h.fb_size)
    corrupt("header.sections", "flatbuffer and weights sections overlap");

  if (plan_format::hash64(file.data() + h.fb_offset, h.fb_size) != h.fb_hash)
    corrupt("header.fb_hash", "flatbuffer section hash mismatch (file damaged or modified)");
  if (plan_format::hash64(file.data() + h.weights_offset, h.weights_size) != h.weights_hash)
    corrupt("header.weights_hash", "weights section hash mismatch (file damaged or modified)");
  return h;
}

// The semantic verifier: everything the flatbuffers Verifier cannot know.
class PlanVerifier {
 public:
  PlanVerifier(const fb::Plan& p, const PlanHeader& h) : p_(p), h_(h) {}

  void run() {
    if (p_.format_major() != h_.format_major || p_.format_minor() != h_.format_minor)
      corrupt("plan.version", "format version in the table (" + num(p_.format_major()) + "." +
                                  num(p_.format_minor()) + ") differs from the header's");
    if (p_.target_sm() == 0) corrupt("plan.target_sm", "target SM is 0");
    model();
    tokenizer();
    kernels();
    weights();
    arena();
    programs();
    budget();
  }

 private:
  template <typename T>
  const T& need(const T* t, const std::string& field) {
    if (!t) corrupt(field, "missing");
    return *t;
  }

  void model() {
    const fb::ModelConfig& m = need(p_.model(), "model");
    if (m.vocab() == 0 || m.hidden() == 0 || m.n_layers() == 0 || m.n_heads() == 0 ||
        m.n_kv_heads() == 0 || m.head_dim() == 0 || m.context_length() == 0 ||
        m.max_tokens() == 0)
      corrupt("model", "a model dimension is 0");
    if (m.n_heads() % m.n_kv_heads() != 0)
      corrupt("model.n_kv_heads", "n_heads " + num(m.n_heads()) + " is not a multiple of n_kv_heads " +
                                      num(m.n_kv_heads()));
    if (m.rope_dim() > m.head_dim())
      corrupt("model.rope_dim", "rope_dim " + num(m.rope_dim()) + " > head_dim " + num(m.head_dim()));
    if (static_cast<uint32_t>(m.rope_style()) > static_cast<uint32_t>(fb::RopeStyle::MAX))
      corrupt("model.rope_style", "unknown rope style");
  }

  void tokenizer() {
    const fb::Tokenizer& t = need(p_.tokenizer(), "tokenizer");
    const auto& tokens = need(t.tokens(), "tokenizer.tokens");
    const uint64_t n = tokens.size();
    if (n == 0) corrupt("tokenizer.tokens", "vocabulary is empty");
    if (n > p_.model()->vocab())
      corrupt("tokenizer.tokens", num(n) + " tokens but the model has " +
                                      num(p_.model()->vocab()) + " logits");
    if (t.scores() && t.scores()->size() != 0 && t.scores()->size() != n)
      corrupt("tokenizer.scores", num(t.scores()->size()) + " scores for " + num(n) + " tokens");
    if (t.token_types() && t.token_types()->size() != 0 && t.token_types()->size() != n)
      corrupt("tokenizer.token_types",
              num(t.token_types()->size()) + " token types for " + num(n) + " tokens");
    auto id = [&](int32_t v, const char* field, bool allow_none) {
      if ((allow_none && v == -1)) return;
      if (v < 0 || static_cast<uint64_t>(v) >= n)
        corrupt(field, "token id " + std::to_string(v) + " out of range [0, " + num(n) + ")");
    };
    id(t.bos_id(), "tokenizer.bos_id", true);
    id(t.eos_id(), "tokenizer.eos_id", true);
    id(t.eot_id(), "tokenizer.eot_id", true);
    id(t.pad_id(), "tokenizer.pad_id", true);
    id(t.unk_id(), "tokenizer.unk_id", true);
    if (t.eog_ids())
      for (int32_t v : *t.eog_ids()) id(v, "tokenizer.eog_ids", false);
  }

  void kernels() {
    const auto& ks = need(p_.kernels(), "kernels");
    for (uint32_t i = 0; i < ks.size(); ++i) {
      const fb::Kernel& k = *ks.Get(i);
      const std::string f = "kernels[" + num(i) + "]";
      if (!k.entry() || k.entry()->size() == 0) corrupt(f + ".entry", "kernel has no entry symbol");
      if (!k.cubin() || k.cubin()->size() == 0) corrupt(f + ".cubin", "kernel has no CUBIN");
      if (k.sm() != p_.target_sm())
        corrupt(f + ".sm", "kernel built for sm_" + num(k.sm()) + " in a plan for sm_" +
                               num(p_.target_sm()));
      if (k.smem() > kMaxSharedMemPerBlock)
        corrupt(f + ".smem", "static shared memory " + num(k.smem()) + " > " +
                                 num(kMaxSharedMemPerBlock) + " bytes");
    }
  }

  void weights() {
    const auto& ws = need(p_.weights(), "weights");
    std::vector<std::pair<uint64_t, uint32_t>> by_offset;  // (offset, index)
    for (uint32_t i = 0; i < ws.size(); ++i) {
      const fb::WeightBlob& w = *ws.Get(i);
      const std::string f = "weights[" + num(i) + "]";
      if (w.offset() % plan_format::kBlobAlign != 0)
        corrupt(f + ".offset", "weight blob offset " + num(w.offset()) + " is not 256-byte aligned");
      if (!range_inside(w.offset(), w.size(), h_.weights_size))
        corrupt(f + ".offset", "weight blob [" + num(w.offset()) + ", +" + num(w.size()) +
                                   ") is outside the " + num(h_.weights_size) +
                                   "-byte weights section");
      if (w.shape()) {
        // flatbuffers' Verifier (2.0.8) checks a vector's length field for
        // 4-byte alignment only: 8-byte elements may sit misaligned (a load
        // of them is undefined behaviour; found by tests/fuzz/fuzz_plan).
        if (reinterpret_cast<uintptr_t>(w.shape()->data()) % alignof(int64_t) != 0)
          corrupt(f + ".shape", "shape vector is not 8-byte aligned");
        for (int64_t d : *w.shape())
          if (d < 0) corrupt(f + ".shape", "negative dimension");
      }
      by_offset.emplace_back(w.offset(), i);
    }
    std::sort(by_offset.begin(), by_offset.end());
    for (size_t k = 1; k < by_offset.size(); ++k) {
      const fb::WeightBlob& prev = *ws.Get(by_offset[k - 1].second);
      if (prev.size() > 0 && by_offset[k].first < prev.offset() + prev.size())
        corrupt("weights[" + num(by_offset[k].second) + "].offset",
                "weight blob overlaps weights[" + num(by_offset[k - 1].second) + "]");
    }
  }

  void arena() {
    const fb::Arena& a = need(p_.arena(), "arena");
    const uint64_t size = a.size();
    const uint64_t vocab = p_.model()->vocab();
    std::vector<std::tuple<uint64_t, uint64_t, std::string>> slots;  // (offset, size, name)
    auto slot = [&](uint64_t off, uint64_t bytes, const std::string& field) {
      if (off % 16 != 0) corrupt(field, "arena slot offset " + num(off) + " is not 16-byte aligned");
      if (!range_inside(off, bytes, size))
        corrupt(field, "arena slot [" + num(off) + ", +" + num(bytes) + ") is outside the " +
                           num(size) + "-byte arena");
      if (bytes > 0) slots.emplace_back(off, bytes, field);
    };
    slot(a.step_offset(), plan_format::kStepBytes, "arena.step_offset");
    if (a.tokens_capacity() == 0) corrupt("arena.tokens_capacity", "token buffer has no room");
    slot(a.tokens_offset(), uint64_t{4} * a.tokens_capacity(), "arena.tokens_offset");
    slot(a.logits_offset(), 4 * vocab, "arena.logits_offset");
    slot(a.gemm_workspace_offset(), a.gemm_workspace_size(), "arena.gemm_workspace_offset");
    if (a.kv()) {
      for (uint32_t i = 0; i < a.kv()->size(); ++i) {
        const fb::StateBuffer& s = *a.kv()->Get(i);
        slot(s.offset(), s.size(), "arena.kv[" + num(i) + "]");
      }
    }
    std::sort(slots.begin(), slots.end());
    for (size_t k = 1; k < slots.size(); ++k)
      if (std::get<0>(slots[k]) < std::get<0>(slots[k - 1]) + std::get<1>(slots[k - 1]))
        corrupt(std::get<2>(slots[k]), "arena slot overlaps " + std::get<2>(slots[k - 1]));
  }

  void programs() {
    const auto& ps = need(p_.programs(), "programs");
    const uint32_t n_kernels = p_.kernels()->size();
    const uint64_t arena_size = p_.arena()->size();
    const uint64_t vocab = p_.model()->vocab();
    for (uint32_t pi = 0; pi < ps.size(); ++pi) {
      const fb::Program& p = *ps.Get(pi);
      const std::string pf = "programs[" + num(pi) + "]";
      if (static_cast<uint32_t>(p.mode()) > static_cast<uint32_t>(fb::ProgramMode::MAX))
        corrupt(pf + ".mode", "unknown program mode " + num(static_cast<uint32_t>(p.mode())));
      if (static_cast<uint32_t>(p.phase()) > static_cast<uint32_t>(fb::Phase::MAX))
        corrupt(pf + ".phase", "unknown phase " + num(static_cast<uint32_t>(p.phase())));
      if (p.bucket() == 0 || p.bucket() > p_.arena()->tokens_capacity())
        corrupt(pf + ".bucket", "bucket " + num(p.bucket()) + " outside [1, tokens_capacity " +
                                    num(p_.arena()->tokens_capacity()) + "]");
      if (!range_inside(p.logits_offset(), 4 * vocab, arena_size))
        corrupt(pf + ".logits_offset", "logits buffer outside the arena");
      if (!range_inside(p.token_offset(), 4, arena_size))
        corrupt(pf + ".token_offset", "token slot outside the arena");
      const auto& ls = need(p.launches(), pf + ".launches");
      for (uint32_t li = 0; li < ls.size(); ++li)
        launch(*ls.Get(li), pf + ".launches[" + num(li) + "]", n_kernels, arena_size);
      if (p.device_step()) device_step(ls, pf);
    }
  }

  // Program.device_step (2.3): the runtime then stops uploading the step
  // block between decode steps, trusting the program's last launch to have
  // advanced it. That launch must be a kernel handed the step block.
  void device_step(const flatbuffers::Vector<flatbuffers::Offset<fb::Launch>>& ls, const std::string& pf) {
    const std::string why = "device_step: the last launch must be the sampling kernel, given the step block";
    if (ls.size() == 0) corrupt(pf + ".device_step", why + " (the program has no launches)");
    const fb::Launch& l = *ls.Get(ls.size() - 1);
    bool step = false;
    if (!l.gemm() && l.args())
      for (const fb::Arg* a : *l.args())
        step |= a->kind() == fb::ArgKind::Ptr && a->region() == fb::Region::Arena &&
                a->offset() == p_.arena()->step_offset();
    if (!step) corrupt(pf + ".device_step", why);
  }

  // A cuBLASLt GEMM: shape in range, args x, w, [r,] y pointers covering the
  // matrices (2-byte x and w, 4-byte r and y), a workspace in the arena.
  void gemm(const fb::Launch& l, const std::string& f) {
    const fb::Gemm& g = *l.gemm();
    if (g.m() == 0 || g.n() == 0 || g.k() == 0 || g.m() > (1u << 20) || g.n() > (1u << 24) || g.k() > (1u << 20))
      corrupt(f + ".gemm", "GEMM shape " + num(g.m()) + "x" + num(g.n()) + "x" + num(g.k()) +
                               " is empty or beyond what a plan needs");
    if (g.ab_type() != 1 && g.ab_type() != 30)
      corrupt(f + ".gemm.ab_type", "GEMM operand type " + num(g.ab_type()) + " is not f16 (1) or bf16 (30)");
    if (g.n() % 8 || g.k() % 8) corrupt(f + ".gemm", "GEMM n and k must be multiples of 8");
    if (p_.arena()->gemm_workspace_size() == 0) corrupt(f + ".gemm", "a GEMM needs arena.gemm_workspace_size > 0");
    const uint32_t want = g.residual() ? 4 : 3;
    if (!l.args() || l.args()->size() != want)
      corrupt(f + ".args", "a GEMM takes " + num(want) + " pointer arguments (x, w, " +
                               (g.residual() ? "r, " : "") + "y)");
    const uint64_t m = g.m(), n = g.n(), k = g.k();
    std::vector<uint64_t> need_bytes = {2 * m * k, 2 * n * k};
    if (g.residual()) need_bytes.push_back(4 * m * n);
    need_bytes.push_back(4 * m * n);
    for (uint32_t ai = 0; ai < want; ++ai) {
      const fb::Arg& a = *l.args()->Get(ai);
      if (a.kind() != fb::ArgKind::Ptr) corrupt(f + ".args[" + num(ai) + "]", "a GEMM argument is a pointer");
      if (a.size() < need_bytes[ai])
        corrupt(f + ".args[" + num(ai) + "].size",
                "GEMM operand of " + num(a.size()) + " bytes, needs " + num(need_bytes[ai]));
    }
  }

  void launch(const fb::Launch& l, const std::string& f, uint32_t n_kernels, uint64_t arena_size) {
    if (l.gemm()) {
      gemm(l, f);
      check_args(l, f, arena_size);
      return;
    }
    if (l.kernel() >= n_kernels)
      corrupt(f + ".kernel", "kernel index " + num(l.kernel()) + " out of range (plan has " +
                                 num(n_kernels) + " kernels)");
    const fb::Dim3& g = need(l.grid(), f + ".grid");
    const fb::Dim3& b = need(l.block(), f + ".block");
    if (g.x() == 0 || g.y() == 0 || g.z() == 0 || g.x() > kMaxGridDimX || g.y() > kMaxGridDimYZ ||
        g.z() > kMaxGridDimYZ)
      corrupt(f + ".grid", "grid (" + num(g.x()) + "," + num(g.y()) + "," + num(g.z()) +
                               ") is empty or beyond CUDA's limits (x < 2^31, y,z <= 65535)");
    // The product is formed only once each factor is <= 1024 (no overflow).
    if (b.x() == 0 || b.y() == 0 || b.z() == 0 || b.x() > kMaxThreadsPerBlock ||
        b.y() > kMaxThreadsPerBlock || b.z() > kMaxBlockDimZ ||
        uint64_t{b.x()} * b.y() * b.z() > kMaxThreadsPerBlock)
      corrupt(f + ".block", "block (" + num(b.x()) + "," + num(b.y()) + "," + num(b.z()) +
                                ") is empty or beyond CUDA's limits (<= 1024 threads, z <= 64)");
    const fb::Kernel& k = *p_.kernels()->Get(l.kernel());
    if (uint64_t{l.smem()} + k.smem() > kMaxSharedMemPerBlock)
      corrupt(f + ".smem", "shared memory " + num(l.smem()) + " + " + num(k.smem()) + " > " +
                               num(kMaxSharedMemPerBlock) + " bytes per block");
    check_args(l, f, arena_size);
  }

  void check_args(const fb::Launch& l, const std::string& f, uint64_t arena_size) {
    if (!l.args()) return;
    for (uint32_t ai = 0; ai < l.args()->size(); ++ai) {
      const fb::Arg& a = *l.args()->Get(ai);
      const std::string af = f + ".args[" + num(ai) + "]";
      switch (a.kind()) {
        case fb::ArgKind::Ptr: {
          uint64_t limit;
          if (a.region() == fb::Region::Weights) limit = h_.weights_size;
          else if (a.region() == fb::Region::Arena) limit = arena_size;
          else corrupt(af + ".region", "unknown memory region " + num(static_cast<uint32_t>(a.region())));
          // A pointer must point into its region; with a known size, all of it must fit.
          if (a.offset() >= limit || !range_inside(a.offset(), a.size(), limit))
            corrupt(af + ".offset", "pointer [" + num(a.offset()) + ", +" + num(a.size()) +
                                        ") is outside its " + num(limit) + "-byte region");
          // 2.2: an activation output (--check-finite reads `size` bytes of it)
          if (a.out() != 0 && ((a.out() & 15) < 1 || (a.out() & 15) > 3 || (a.out() & ~31) != 0 ||
                               a.region() != fb::Region::Arena || a.size() == 0))
            corrupt(af + ".out", "output mark " + num(a.out()) +
                                     " is not 1-3 (+16) on an arena pointer of known size");
          break;
        }
        case fb::ArgKind::I32:
          if (a.i() < std::numeric_limits<int32_t>::min() || a.i() > std::numeric_limits<int32_t>::max())
            corrupt(af + ".i", "integer argument " + std::to_string(a.i()) + " does not fit in int32");
          break;
        case fb::ArgKind::F32:
          break;
        default:
          corrupt(af + ".kind", "unknown argument kind " + num(static_cast<uint32_t>(a.kind())));
      }
    }
  }

  void budget() {
    const fb::MemoryBudget& b = need(p_.budget(), "budget");
    uint64_t kv = 0;
    if (p_.arena()->kv())
      for (const fb::StateBuffer* s : *p_.arena()->kv())
        if (!add_ok(kv, s->size(), &kv)) corrupt("budget", "kv size overflows");
    uint64_t total;
    if (b.weights_bytes() != h_.weights_size || b.arena_bytes() != p_.arena()->size() ||
        b.kv_bytes() != kv || !add_ok(b.weights_bytes(), b.arena_bytes(), &total) ||
        b.total_bytes() != total)
      corrupt("budget", "memory budget disagrees with the weights section and arena");
  }

  const fb::Plan& p_;
  const PlanHeader& h_;
};

}  // namespace

PlanHeader verify_plan(std::span<const uint8_t> file) {
  const PlanHeader h = check_header(file);
  const uint8_t* fbuf = file.data() + h.fb_offset;
  if (!flatbuffers::BufferHasIdentifier(fbuf, fb::PlanIdentifier()))
    corrupt("flatbuffer", "flatbuffer section has no \"KILN\" identifier");
  flatbuffers::Verifier verifier(fbuf, h.fb_size);
  if (!fb::VerifyPlanBuffer(verifier))
    corrupt("flatbuffer", "flatbuffer section fails structural verification");
  PlanVerifier(*fb::GetPlan(fbuf), h).run();
  return h;
}

}  // namespace kiln::rt
