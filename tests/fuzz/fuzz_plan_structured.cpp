// Structure-aware plan fuzzer. Starts from valid plans — the small plan of the
// plan tests (tests/runtime/plan/plan_test_util.h) and every plan named by
// $KILN_FUZZ_PLANS (files or folders of *.plan, ':'-separated; tests/fuzz/run.sh
// compiles tiny `kiln synth` models for it) — read back into the compiler's
// PlanSpec. The input is a program of edits to that spec: first any number of
// free edits (any field to any value, deletions, duplications: the plan may or
// may not stay valid), then optionally one edit that certainly makes it invalid
// (a launch naming a kernel past the end, an empty or oversized grid or block,
// too much shared memory, a pointer past its region, an unknown argument kind
// or region, an int32 argument out of range, a weight blob unaligned, past the
// section or overlapping another, a truncated weights section, a memory budget
// that disagrees, arena slots unaligned / outside / overlapping, no token room,
// a bucket of 0 or past the token buffer, unknown enums, a zero model
// dimension, n_heads not a multiple of n_kv_heads, rope_dim > head_dim, fewer
// logits than tokens, score / type arrays of the wrong length, special ids out
// of range, an empty vocabulary, a kernel without entry or CUBIN, a kernel
// built for another SM than the plan's, target SM 0). The spec is rebuilt into
// a flatbuffer (plan::build_plan_flatbuffer: always structurally valid) and a
// file with correct section hashes (so the semantic verifier is what decides),
// then loaded. An invalid plan must be refused with rt::Error; a plan that
// loads goes through everything the runtime does with it on the CPU.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "compiler/plan/plan_spec.h"
#include "compiler/plan/writer.h"
#include "runtime/error.h"
#include "runtime/plan/plan.h"
#include "runtime/plan/verify.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_plan_common.h"
#include "tests/runtime/plan/plan_test_util.h"

namespace {

using namespace kiln;
using namespace kiln::plan;
using fuzz::Bytes;

struct Base {
  std::string name;
  PlanSpec spec;
  std::vector<uint8_t> weights;  // the weights section
};
std::vector<Base>* g_bases = nullptr;

// What the run did, printed at exit: plans built, loaded, and per kind of
// certainly-invalid edit how many were applied (every one refused, or the
// target would have aborted).
struct Stats {
  uint64_t built = 0, accepted = 0;
  std::map<std::string, uint64_t> refused;
};
Stats* g_stats = nullptr;

void print_stats() {
  if (!g_stats || g_stats->built == 0) return;
  uint64_t invalid = 0;
  for (const auto& [k, n] : g_stats->refused) invalid += n;
  std::fprintf(stderr, "fuzz_plan_structured: %llu plans built, %llu loaded, %llu certainly invalid (all refused):\n",
               static_cast<unsigned long long>(g_stats->built), static_cast<unsigned long long>(g_stats->accepted),
               static_cast<unsigned long long>(invalid));
  for (const auto& [k, n] : g_stats->refused)
    std::fprintf(stderr, "  %8llu  %s\n", static_cast<unsigned long long>(n), k.c_str());
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }
template <typename T, typename V>
std::vector<T> vec(const V* v) {
  return v ? std::vector<T>(v->begin(), v->end()) : std::vector<T>();
}

// A verified plan back into the spec it was written from. CUBINs and PTX are
// cut short: their contents mean nothing to the verifier and make every
// rebuild slower.
Base base_from_plan(const rt::Plan& p, std::string name) {
  Base b;
  b.name = std::move(name);
  PlanSpec& s = b.spec;
  const fb::Plan& r = p.root();
  s.compiler_version = str(r.compiler_version());
  s.target_sm = r.target_sm();
  s.created_utc = r.created_utc();
  const fb::ModelConfig& m = p.model();
  s.model = {str(m.arch()), str(m.name()), m.n_layers(), m.hidden(), m.ffn(), m.n_heads(), m.n_kv_heads(),
             m.head_dim(), m.vocab(), m.context_length(), m.max_tokens(), m.rope_theta(), m.rope_dim(),
             static_cast<RopeStyle>(m.rope_style()), m.rope_freq_scale(), m.rms_eps()};
  const fb::Tokenizer& t = p.tokenizer();
  TokenizerSpec& ts = s.tokenizer;
  ts.model = str(t.model());
  ts.pre = str(t.pre());
  if (t.tokens()) for (const auto* x : *t.tokens()) ts.tokens.push_back(x->str());
  ts.scores = vec<float>(t.scores());
  ts.token_types = vec<int32_t>(t.token_types());
  if (t.merges()) for (const auto* x : *t.merges()) ts.merges.push_back(x->str());
  ts.bos_id = t.bos_id();
  ts.eos_id = t.eos_id();
  ts.eot_id = t.eot_id();
  ts.pad_id = t.pad_id();
  ts.unk_id = t.unk_id();
  ts.add_bos = t.add_bos();
  ts.add_eos = t.add_eos();
  ts.add_space_prefix = t.add_space_prefix();
  ts.eog_ids = vec<int32_t>(t.eog_ids());
  ts.chat_template = str(t.chat_template());
  for (const fb::Kernel* k : p.kernels()) {
    KernelSpec ks;
    ks.name = str(k->name());
    ks.entry = str(k->entry());
    ks.sm = k->sm();
    ks.cubin.assign(k->cubin()->begin(), k->cubin()->begin() + std::min<size_t>(k->cubin()->size(), 16));
    ks.ptx = str(k->ptx()).substr(0, 64);
    ks.source_hash = k->source_hash();
    ks.smem = k->smem();
    s.kernels.push_back(std::move(ks));
  }
  for (const fb::WeightBlob* w : p.weights()) {
    WeightSpec ws;
    ws.name = str(w->name());
    ws.dtype = str(w->dtype());
    ws.shape = vec<int64_t>(w->shape());
    ws.offset = w->offset();
    ws.size = w->size();
    ws.layout = str(w->layout());
    s.weights.push_back(std::move(ws));
  }
  for (const fb::Program* pr : p.programs()) {
    ProgramSpec ps;
    ps.name = str(pr->name());
    ps.mode = pr->mode();
    ps.phase = static_cast<Phase>(pr->phase());
    ps.bucket = pr->bucket();
    ps.logits_offset = pr->logits_offset();
    ps.token_offset = pr->token_offset();
    for (const fb::Launch* l : *pr->launches()) {
      LaunchSpec ls;
      ls.kernel = l->kernel();
      ls.grid = {l->grid()->x(), l->grid()->y(), l->grid()->z()};
      ls.block = {l->block()->x(), l->block()->y(), l->block()->z()};
      ls.smem = l->smem();
      ls.label = str(l->label());
      if (const fb::Gemm* g = l->gemm()) ls.gemm = GemmSpec{g->m(), g->n(), g->k(), g->ab_type(), g->residual()};
      if (l->args())
        for (const fb::Arg* a : *l->args()) {
          ArgSpec as;
          as.kind = static_cast<ArgKind>(a->kind());
          as.region = static_cast<Region>(a->region());
          as.offset = a->offset();
          as.i = a->i();
          as.f = a->f();
          as.size = a->size();
          ls.args.push_back(as);
        }
      ps.launches.push_back(std::move(ls));
    }
    s.programs.push_back(std::move(ps));
  }
  const fb::Arena& a = p.arena();
  s.arena.size = a.size();
  if (a.kv())
    for (const fb::StateBuffer* kv : *a.kv()) s.arena.kv.push_back({str(kv->name()), kv->offset(), kv->size()});
  s.arena.step_offset = a.step_offset();
  s.arena.tokens_offset = a.tokens_offset();
  s.arena.tokens_capacity = a.tokens_capacity();
  s.arena.logits_offset = a.logits_offset();
  s.arena.gemm_workspace_offset = a.gemm_workspace_offset();
  s.arena.gemm_workspace_size = a.gemm_workspace_size();
  if (const fb::CompileOptionsRecord* c = r.compile_options()) {
    CompileOptionsSpec o;
    o.target_sm = c->target_sm();
    o.context_length = c->context_length();
    o.max_tokens = c->max_tokens();
    o.buckets = vec<uint32_t>(c->buckets());
    o.eager = c->eager();
    o.weight_layout = str(c->weight_layout());
    if (c->disabled_passes()) for (const auto* x : *c->disabled_passes()) o.disabled_passes.push_back(x->str());
    o.command_line = str(c->command_line());
    if (c->kv_type()) o.kv_type = c->kv_type()->str();
    s.compile_options = std::move(o);
  }
  b.weights.assign(p.weights_data(), p.weights_data() + p.weights_size());
  return b;
}

std::vector<uint8_t> build_file(const PlanSpec& s, const std::vector<uint8_t>& weights, uint64_t budget_weights) {
  return plan::testing::assemble(build_plan_flatbuffer(s, budget_weights), weights);
}

// ---------------------------------------------------------------- edits

struct Edit {
  PlanSpec& s;
  std::vector<uint8_t>& w;
  uint64_t& budget_weights;
  Bytes& in;

  LaunchSpec* launch() {
    std::vector<LaunchSpec*> all;
    for (ProgramSpec& p : s.programs)
      for (LaunchSpec& l : p.launches) all.push_back(&l);
    return all.empty() ? nullptr : all[in.below(all.size())];
  }
  // A launch of a kernel (not a cuBLASLt GEMM, whose kernel, grid, block and
  // smem are unused).
  LaunchSpec* kernel_launch() {
    std::vector<LaunchSpec*> all;
    for (ProgramSpec& p : s.programs)
      for (LaunchSpec& l : p.launches)
        if (!l.gemm) all.push_back(&l);
    return all.empty() ? nullptr : all[in.below(all.size())];
  }
  template <typename T>
  T* pick(std::vector<T>& v) { return v.empty() ? nullptr : &v[in.below(v.size())]; }
  template <typename T>
  void erase_one(std::vector<T>& v) { if (!v.empty()) v.erase(v.begin() + in.below(v.size())); }
  uint32_t u32v() { return static_cast<uint32_t>(in.interesting()); }
  uint32_t n_tokens() const { return static_cast<uint32_t>(s.tokenizer.tokens.size()); }

  // Any field to any value: the plan may stay valid or not.
  void free_edit() {
    switch (in.u8() % 28) {
      case 0: if (LaunchSpec* l = launch()) l->kernel = in.below(s.kernels.size() + 1); break;
      case 1: if (LaunchSpec* l = launch()) (in.flag() ? l->grid : l->block)[in.below(3)] = in.flag() ? 1 + in.u8() % 8 : u32v(); break;
      case 2: if (LaunchSpec* l = launch()) l->smem = in.flag() ? in.u32() % 65536 : u32v(); break;
      case 3:
        if (LaunchSpec* l = launch()) {
          if (l->args.empty() || in.u8() % 4 == 0) l->args.push_back(ArgSpec::i32(0));
          ArgSpec& a = *pick(l->args);
          switch (in.u8() % 6) {
            case 0: a.kind = static_cast<ArgKind>(in.u8() % 3); break;
            case 1: a.region = static_cast<Region>(in.u8() % 2); break;
            case 2: a.offset = in.flag() ? in.interesting() : in.below(std::max<uint64_t>(s.arena.size, 1)); break;
            case 3: a.size = in.interesting(); break;
            case 4: a.i = static_cast<int32_t>(in.u32()); break;
            default: { uint32_t bits = in.u32(); std::memcpy(&a.f, &bits, 4); }
          }
        }
        break;
      case 4: if (ProgramSpec* p = pick(s.programs)) erase_one(p->launches); break;
      case 5: if (ProgramSpec* p = pick(s.programs); p && !p->launches.empty()) p->launches.push_back(*pick(p->launches)); break;
      case 6: erase_one(s.programs); break;
      case 7: if (!s.kernels.empty()) s.kernels.pop_back(); break;
      case 8: erase_one(s.weights); break;
      case 9: erase_one(s.arena.kv); break;
      case 10: {
        ModelConfigSpec& m = s.model;
        uint32_t* f[] = {&m.n_layers, &m.hidden, &m.ffn, &m.n_heads, &m.n_kv_heads, &m.head_dim,
                         &m.vocab, &m.context_length, &m.max_tokens, &m.rope_dim};
        *f[in.below(std::size(f))] = in.flag() ? in.u8() : u32v();
        break;
      }
      case 11: if (std::string* t = pick(s.tokenizer.tokens)) *t = in.str(12); break;
      case 12: if (int32_t* t = pick(s.tokenizer.token_types)) *t = in.flag() ? in.u8() % 8 : static_cast<int32_t>(in.u32()); break;
      case 13:
        switch (in.u8() % 3) {
          case 0: if (std::string* m = pick(s.tokenizer.merges)) *m = in.str(12); break;
          case 1: s.tokenizer.merges.push_back(in.str(12)); break;
          default: erase_one(s.tokenizer.merges);
        }
        break;
      case 14: {
        static const char* models[] = {"gpt2", "llama", "bert", ""};
        static const char* pres[] = {"smollm", "llama-bpe", "qwen2", "gpt-2", "default", "", "deepseek-llm"};
        if (in.flag()) s.tokenizer.model = in.flag() ? models[in.below(4)] : in.str(8);
        else s.tokenizer.pre = in.flag() ? pres[in.below(7)] : in.str(8);
        break;
      }
      case 15: {
        TokenizerSpec& t = s.tokenizer;
        int32_t v = static_cast<int32_t>(in.below(n_tokens() + 4)) - 2;
        int32_t* ids[] = {&t.bos_id, &t.eos_id, &t.eot_id, &t.pad_id, &t.unk_id};
        switch (in.u8() % 4) {
          case 0: *ids[in.below(5)] = v; break;
          case 1: t.add_bos = in.flag(); t.add_eos = in.flag(); t.add_space_prefix = in.flag(); break;
          case 2: if (int32_t* e = pick(t.eog_ids)) *e = v; break;
          default: t.eog_ids.push_back(static_cast<int32_t>(in.below(n_tokens() + 1)));
        }
        break;
      }
      case 16: {
        static const char* tmpls[] = {
            "", "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}",
            "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}",
            "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"};
        s.tokenizer.chat_template = in.flag() ? tmpls[in.below(4)] : in.str(64);
        break;
      }
      case 17: {
        ArenaSpec& a = s.arena;
        uint64_t* f[] = {&a.size, &a.step_offset, &a.tokens_offset, &a.logits_offset};
        if (in.u8() % 5 == 0) a.tokens_capacity = in.flag() ? in.u8() : u32v();
        else { uint64_t& x = *f[in.below(4)]; x = in.flag() ? x + 16 * (int64_t{in.u8()} - 128) : in.interesting(); }
        break;
      }
      case 18: if (StateBufferSpec* kv = pick(s.arena.kv)) (in.flag() ? kv->offset : kv->size) = in.flag() ? in.interesting() : in.below(s.arena.size + 1) / 16 * 16; break;
      case 19: if (WeightSpec* ws = pick(s.weights)) (in.flag() ? ws->offset : ws->size) = in.flag() ? in.interesting() : in.below(w.size() + 1) / 256 * 256; break;
      case 20: w.resize(in.below(w.size() * 2 + 4096)); budget_weights = w.size(); break;
      case 21:
        if (ProgramSpec* p = pick(s.programs)) {
          switch (in.u8() % 5) {
            case 0: p->bucket = in.flag() ? in.u8() : u32v(); break;
            case 1: p->logits_offset = in.interesting(); break;
            case 2: p->token_offset = in.interesting(); break;
            case 3: p->mode = static_cast<ProgramMode>(in.u8() % 3); break;
            default: p->phase = static_cast<Phase>(in.u8() % 3);
          }
        }
        break;
      case 22:
        if (KernelSpec* k = pick(s.kernels)) {
          switch (in.u8() % 4) {
            case 0: k->entry = in.str(8); break;
            case 1: k->sm = in.flag() ? s.target_sm : u32v(); break;
            case 2: k->smem = in.flag() ? in.u32() % 65536 : u32v(); break;
            default: k->cubin.resize(in.u8() % 4);
          }
        }
        break;
      case 23: s.target_sm = in.flag() ? in.u8() : u32v(); break;
      case 24:
        if (!s.compile_options || in.u8() % 4 == 0) s.compile_options = in.flag() ? std::optional<CompileOptionsSpec>{CompileOptionsSpec{}} : std::nullopt;
        if (s.compile_options) {
          CompileOptionsSpec& o = *s.compile_options;
          switch (in.u8() % 5) {
            case 0: o.target_sm = u32v(); break;
            case 1: o.context_length = u32v(); o.max_tokens = u32v(); break;
            case 2: o.buckets.push_back(u32v()); break;
            case 3: o.weight_layout = in.str(8); break;
            default: o.disabled_passes.push_back(in.str(8));
          }
        }
        break;
      case 25:
        if (in.flag()) s.tokenizer.tokens.push_back(in.str(8));
        else if (!s.tokenizer.tokens.empty()) s.tokenizer.tokens.pop_back();
        break;
      case 26:
        if (in.flag()) s.tokenizer.scores.resize(in.below(n_tokens() + 2));
        else s.tokenizer.token_types.resize(in.below(n_tokens() + 2), 1);
        break;
      default:  // cuBLASLt GEMM launches and their workspace
        if (in.u8() % 4 == 0) {
          ArenaSpec& a = s.arena;
          (in.flag() ? a.gemm_workspace_offset : a.gemm_workspace_size) = in.flag() ? in.interesting() : in.below(a.size + 1) / 16 * 16;
        } else if (LaunchSpec* l = launch()) {
          if (!l->gemm || in.u8() % 4 == 0) {
            l->gemm = in.flag() ? std::optional<GemmSpec>{GemmSpec{8, 64, 64, 1, false}} : std::nullopt;
          } else {
            GemmSpec& g = *l->gemm;
            switch (in.u8() % 5) {
              case 0: g.m = in.flag() ? 1 + in.u8() : u32v(); break;
              case 1: g.n = in.flag() ? 8 * (1 + in.u8()) : u32v(); break;
              case 2: g.k = in.flag() ? 8 * (1 + in.u8()) : u32v(); break;
              case 3: g.ab_type = in.flag() ? (in.flag() ? 1 : 30) : in.u8(); break;
              default: g.residual = in.flag();
            }
          }
        }
    }
  }

  // One edit that makes the plan certainly invalid; returns what it did, or
  // nullptr when the plan has nothing it could apply to.
  const char* invalid_edit() {
    const uint32_t kMaxSmem = rt::kMaxSharedMemPerBlock;
    switch (in.u8() % 30) {
      case 0: {
        LaunchSpec* l = kernel_launch();
        if (!l) return nullptr;
        l->kernel = static_cast<uint32_t>(s.kernels.size()) + in.below(1000);
        return "launch kernel index past the end";
      }
      case 1: {
        LaunchSpec* l = kernel_launch();
        if (!l) return nullptr;
        uint32_t c = in.below(3);
        if (in.flag()) l->grid[c] = 0;
        else l->grid[c] = c == 0 ? static_cast<uint32_t>(rt::kMaxGridDimX) + 1 + in.below(1000) : rt::kMaxGridDimYZ + 1 + in.below(1u << 20);
        return "grid empty or beyond CUDA limits";
      }
      case 2: {
        LaunchSpec* l = kernel_launch();
        if (!l) return nullptr;
        switch (in.u8() % 4) {
          case 0: l->block[in.below(3)] = 0; break;
          case 1: l->block[0] = rt::kMaxThreadsPerBlock + 1 + in.below(1u << 20); break;
          case 2: l->block[2] = rt::kMaxBlockDimZ + 1 + in.below(1000); break;
          default: l->block = {64, 32, 1};  // 2048 threads
        }
        return "block empty or beyond CUDA limits";
      }
      case 3: {
        LaunchSpec* l = kernel_launch();
        if (!l || l->kernel >= s.kernels.size() || s.kernels[l->kernel].smem > kMaxSmem) return nullptr;
        l->smem = kMaxSmem - s.kernels[l->kernel].smem + 1 + in.below(1u << 20);
        return "launch shared memory past the per-block limit";
      }
      case 4: {
        LaunchSpec* l = launch();
        if (!l) return nullptr;
        const bool weights = in.flag();
        const uint64_t limit = weights ? w.size() : s.arena.size;
        if (limit > (uint64_t{1} << 62)) return nullptr;
        ArgSpec a = ArgSpec::ptr(weights ? Region::kWeights : Region::kArena, 0, 0);
        switch (in.u8() % 3) {
          case 0: a.offset = limit + in.below(1u << 20); break;
          case 1: if (limit == 0) return nullptr; a.offset = limit - 1; a.size = 2 + in.below(4096); break;
          default: a.offset = in.below(std::max<uint64_t>(limit, 1)); a.size = ~uint64_t{0} - in.u8(); break;
        }
        if (l->args.empty() || in.flag()) l->args.insert(l->args.begin() + in.below(l->args.size() + 1), a);
        else *pick(l->args) = a;
        return "pointer argument outside its region";
      }
      case 5: {
        LaunchSpec* l = launch();
        if (!l) return nullptr;
        if (l->args.empty()) l->args.push_back(ArgSpec::i32(0));
        ArgSpec& a = *pick(l->args);
        if (in.flag()) {
          a.kind = static_cast<ArgKind>(3 + in.below(253));
        } else {
          a.kind = ArgKind::kPtr;
          a.region = static_cast<Region>(2 + in.below(254));
        }
        return "unknown argument kind or region";
      }
      case 6: {
        LaunchSpec* l = launch();
        if (!l) return nullptr;
        if (l->args.empty()) l->args.push_back(ArgSpec::i32(0));
        ArgSpec& a = *pick(l->args);
        a.kind = ArgKind::kI32;
        a.i = in.flag() ? int64_t{std::numeric_limits<int32_t>::max()} + 1 + in.u32()
                        : int64_t{std::numeric_limits<int32_t>::min()} - 1 - in.u32();
        return "int32 argument out of range";
      }
      case 7: {
        WeightSpec* ws = pick(s.weights);
        if (!ws) return nullptr;
        if (in.flag()) ws->offset = ws->offset / 256 * 256 + 1 + in.below(255);
        else { ws->offset = (w.size() + 256) / 256 * 256 + 256 * in.below(1000); ws->size = std::max<uint64_t>(ws->size, 1); }
        return "weight blob unaligned or past the section";
      }
      case 8: {
        std::vector<WeightSpec*> nz;
        for (WeightSpec& x : s.weights)
          if (x.size > 0 && x.offset % 256 == 0 && x.offset + x.size <= w.size() && x.offset + x.size >= x.offset) nz.push_back(&x);
        if (nz.size() < 2) return nullptr;
        uint32_t i = in.below(nz.size()), j = in.below(nz.size() - 1);
        if (j >= i) ++j;
        nz[i]->offset = nz[j]->offset;
        return "weight blobs overlap";
      }
      case 9: {
        uint64_t end = 0;
        for (const WeightSpec& x : s.weights)
          if (x.size > 0 && x.offset + x.size >= x.offset) end = std::max(end, x.offset + x.size);
        if (end == 0 || end > w.size()) return nullptr;
        w.resize(in.below(end));
        budget_weights = w.size();
        return "weights section shorter than its blobs";
      }
      case 10: budget_weights = w.size() + 1 + in.below(1u << 30); return "memory budget disagrees";
      case 11: {
        ArenaSpec& a = s.arena;
        std::vector<StateBufferSpec*> nz;
        for (StateBufferSpec& kv : a.kv) if (kv.size > 0) nz.push_back(&kv);
        if (nz.empty()) return nullptr;
        StateBufferSpec* k = nz[in.below(nz.size())];
        switch (in.u8() % 3) {
          case 0: k->offset = a.step_offset; break;
          case 1: k->offset = a.tokens_offset; break;
          default: {
            if (nz.size() < 2) return nullptr;
            StateBufferSpec* o = nz[in.below(nz.size())];
            if (o == k) return nullptr;
            k->offset = o->offset;
          }
        }
        return "arena slots overlap";
      }
      case 12: {
        ArenaSpec& a = s.arena;
        uint64_t* f[] = {&a.step_offset, &a.tokens_offset, &a.logits_offset};
        uint64_t& x = *f[in.below(3)];
        x = x / 16 * 16 + 1 + in.below(15);
        return "arena slot unaligned";
      }
      case 13: {
        ArenaSpec& a = s.arena;
        if (a.size > (uint64_t{1} << 62)) return nullptr;
        if (in.flag()) {
          StateBufferSpec* kv = pick(a.kv);
          if (!kv) return nullptr;
          kv->offset = (a.size + 16) / 16 * 16 + 16 * in.below(1000);
          kv->size = std::max<uint64_t>(kv->size, 1);
        } else {
          a.step_offset = a.size / 16 * 16;  // a 64-byte slot starting within 16 bytes of the end
        }
        return "arena slot past the end";
      }
      case 14: s.arena.tokens_capacity = 0; return "no token room";
      case 15: {
        ProgramSpec* p = pick(s.programs);
        if (!p) return nullptr;
        if (in.flag() || s.arena.tokens_capacity == std::numeric_limits<uint32_t>::max()) p->bucket = 0;
        else p->bucket = s.arena.tokens_capacity + 1 + in.below(std::numeric_limits<uint32_t>::max() - s.arena.tokens_capacity);
        return "bucket 0 or past the token buffer";
      }
      case 16: {
        ProgramSpec* p = pick(s.programs);
        if (!p) return nullptr;
        if (in.flag()) p->mode = static_cast<ProgramMode>(2 + in.below(254));
        else p->phase = static_cast<Phase>(2 + in.below(254));
        return "unknown program mode or phase";
      }
      case 17: {
        ProgramSpec* p = pick(s.programs);
        if (!p) return nullptr;
        if (in.flag()) {
          if (s.model.vocab == 0) return nullptr;
          p->logits_offset = s.arena.size - std::min<uint64_t>(s.arena.size, 4ull * s.model.vocab) + 1 + in.below(4096);
        } else {
          p->token_offset = s.arena.size - std::min<uint64_t>(s.arena.size, 3) + in.below(4096);
        }
        return "program logits or token slot outside the arena";
      }
      case 18: {
        ModelConfigSpec& m = s.model;
        uint32_t* f[] = {&m.vocab, &m.hidden, &m.n_layers, &m.n_heads, &m.n_kv_heads, &m.head_dim,
                         &m.context_length, &m.max_tokens};
        *f[in.below(std::size(f))] = 0;
        return "a zero model dimension";
      }
      case 19:
        if (s.model.n_heads == 0 || s.model.n_heads == std::numeric_limits<uint32_t>::max()) return nullptr;
        s.model.n_kv_heads = s.model.n_heads + 1 + in.below(100);
        if (s.model.n_kv_heads <= s.model.n_heads) return nullptr;
        return "n_heads not a multiple of n_kv_heads";
      case 20:
        if (s.model.head_dim >= std::numeric_limits<uint32_t>::max() - 1000) return nullptr;
        s.model.rope_dim = s.model.head_dim + 1 + in.below(1000);
        return "rope_dim > head_dim";
      case 21: s.model.rope_style = static_cast<RopeStyle>(2 + in.below(254)); return "unknown rope style";
      case 22:
        if (n_tokens() == 0) return nullptr;
        s.model.vocab = in.below(n_tokens());
        return "fewer logits than tokens";
      case 23: {
        std::vector<float>& sc = s.tokenizer.scores;
        std::vector<int32_t>& ty = s.tokenizer.token_types;
        const uint32_t n = n_tokens();
        size_t len = n + 1 + in.below(10);
        if (in.flag() && n > 1) len = 1 + in.below(n - 1);
        if (in.flag()) sc.resize(len, 0.0f);
        else ty.resize(len, 1);
        return "scores or token types of the wrong length";
      }
      case 24: {
        TokenizerSpec& t = s.tokenizer;
        const int32_t n = static_cast<int32_t>(n_tokens());
        int32_t bad = in.flag() ? n + static_cast<int32_t>(in.below(1000)) : -2 - static_cast<int32_t>(in.below(1000));
        int32_t* ids[] = {&t.bos_id, &t.eos_id, &t.eot_id, &t.pad_id, &t.unk_id};
        if (in.u8() % 6 == 0) {
          if (in.flag()) bad = -1;  // -1 means "none" for the specials, never for an EOG id
          t.eog_ids.insert(t.eog_ids.begin() + in.below(t.eog_ids.size() + 1), bad);
        } else {
          *ids[in.below(5)] = bad;
        }
        return "special token id out of range";
      }
      case 25: s.tokenizer.tokens.clear(); return "empty vocabulary";
      case 26: {
        KernelSpec* k = pick(s.kernels);
        if (!k) return nullptr;
        switch (in.u8() % 3) {
          case 0: k->entry.clear(); break;
          case 1: k->cubin.clear(); break;
          default: k->smem = kMaxSmem + 1 + in.below(1u << 20);
        }
        return "kernel without entry or CUBIN, or too much static shared memory";
      }
      case 27: {
        KernelSpec* k = pick(s.kernels);
        if (!k) return nullptr;
        k->sm = s.target_sm + 1 + in.below(200);
        if (k->sm == s.target_sm) return nullptr;
        return "kernel built for another SM than the plan's";
      }
      case 28: s.target_sm = 0; return "target SM 0";
      default: {
        std::vector<LaunchSpec*> gemms;
        for (ProgramSpec& p : s.programs)
          for (LaunchSpec& l : p.launches)
            if (l.gemm) gemms.push_back(&l);
        if (gemms.empty()) return nullptr;
        LaunchSpec& l = *gemms[in.below(gemms.size())];
        GemmSpec& g = *l.gemm;
        switch (in.u8() % 7) {
          case 0: (in.flag() ? g.m : in.flag() ? g.n : g.k) = 0; return "GEMM with an empty dimension";
          case 1: g.m = (1u << 20) + 1 + in.below(1000); return "GEMM m beyond the limit";
          case 2:
            g.ab_type = static_cast<uint8_t>(in.u8());
            if (g.ab_type == 1 || g.ab_type == 30) return nullptr;
            return "GEMM operand type not f16 or bf16";
          case 3:
            if (g.n >= (1u << 24)) return nullptr;
            g.n = g.n / 8 * 8 + 1 + in.below(7);
            return "GEMM n not a multiple of 8";
          case 4: s.arena.gemm_workspace_size = 0; return "GEMM without a workspace";
          case 5:
            if (in.flag() || l.args.empty()) l.args.push_back(ArgSpec::ptr(Region::kArena, 0, 16));
            else l.args.pop_back();
            if (l.args.size() == (g.residual ? 4u : 3u)) return nullptr;
            return "GEMM with the wrong number of arguments";
          default: {
            if (l.args.empty()) return nullptr;
            const uint32_t i = in.below(l.args.size());
            ArgSpec& a = l.args[i];
            if (in.flag()) { a.kind = ArgKind::kI32; return "GEMM argument not a pointer"; }
            // Operand bytes x, w, [r,] y (overflow only past the shape limits, refused anyway).
            const uint64_t m = g.m, n = g.n, k = g.k;
            std::vector<uint64_t> need = {2 * m * k, 2 * n * k};
            if (g.residual) need.push_back(4 * m * n);
            need.push_back(4 * m * n);
            if (i >= need.size() || need[i] == 0) return nullptr;
            a.kind = ArgKind::kPtr;
            a.size = in.below(need[i]);
            return "GEMM operand smaller than its matrix";
          }
        }
      }
    }
  }
};

void add_base(Base b) {
  // The unedited spec must load: base_from_plan loses nothing the verifier reads.
  try {
    rt::Plan p = rt::Plan::from_bytes(build_file(b.spec, b.weights, b.weights.size()), b.name);
  } catch (const rt::Error& e) {
    std::fprintf(stderr, "fuzz_plan_structured: base plan %s does not survive a rebuild: %s\n", b.name.c_str(), e.what());
    std::abort();
  }
  std::fprintf(stderr, "fuzz_plan_structured: base plan %zu: %s (%zu kernels, %zu programs, %zu weights)\n",
               g_bases->size(), b.name.c_str(), b.spec.kernels.size(), b.spec.programs.size(), b.spec.weights.size());
  g_bases->push_back(std::move(b));
}

}  // namespace

KILN_FUZZ_INIT(plan_structured) {
  g_bases = new std::vector<Base>();
  g_stats = new Stats();
  std::atexit(print_stats);
  {
    Base b;
    b.name = "small_spec";
    b.spec = plan::testing::small_spec();
    b.weights = plan::testing::weights_section(b.spec);
    for (WeightSpec& ws : b.spec.weights) { ws.bytes.clear(); ws.fill = nullptr; }
    add_base(std::move(b));
  }
  namespace fs = std::filesystem;
  // KILN_FUZZ_WRITE_BASES=dir: also write the small base plan there (a seed for fuzz_plan).
  if (const char* out = std::getenv("KILN_FUZZ_WRITE_BASES")) {
    const Base& b = g_bases->front();
    std::vector<uint8_t> file = build_file(b.spec, b.weights, b.weights.size());
    std::ofstream(fs::path(out) / (b.name + ".plan"), std::ios::binary)
        .write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
  }
  if (const char* env = std::getenv("KILN_FUZZ_PLANS")) {
    std::string list = env;
    for (size_t start = 0; start <= list.size();) {
      size_t end = list.find(':', start);
      if (end == std::string::npos) end = list.size();
      fs::path p = list.substr(start, end - start);
      start = end + 1;
      if (p.empty()) continue;
      std::vector<fs::path> files;
      if (fs::is_directory(p)) {
        for (const auto& e : fs::directory_iterator(p))
          if (e.path().extension() == ".plan") files.push_back(e.path());
        std::sort(files.begin(), files.end());
      } else {
        files.push_back(p);
      }
      for (const fs::path& f : files) {
        try {
          add_base(base_from_plan(rt::Plan::load(f.string()), f.filename().string()));
        } catch (const rt::Error& e) {
          std::fprintf(stderr, "fuzz_plan_structured: %s\n", e.what());
          std::abort();
        }
      }
    }
  }
  return 0;
}

KILN_FUZZ_TARGET(plan_structured) {
  Bytes in(data, size);
  const Base& base = (*g_bases)[in.u8() % g_bases->size()];
  PlanSpec s = base.spec;
  std::vector<uint8_t> w = base.weights;
  uint64_t budget_weights = w.size();
  Edit e{s, w, budget_weights, in};
  const uint32_t n_free = in.u8() % 9;
  for (uint32_t i = 0; i < n_free; ++i) e.free_edit();
  const char* invalid = in.flag() ? e.invalid_edit() : nullptr;

  bool accepted = false;
  try {
    rt::Plan p = rt::Plan::from_bytes(build_file(s, w, budget_weights), "<fuzz>");
    accepted = true;
    fuzz::exercise_plan(p);
  } catch (const rt::Error&) {
  }
  KILN_FUZZ_CHECK(!(invalid && accepted), "the verifier accepted a plan with: %s (base %s)", invalid,
                  base.name.c_str());
  ++g_stats->built;
  if (accepted) ++g_stats->accepted;
  if (invalid) ++g_stats->refused[invalid];
  return 0;
}
