#include "runtime/plan/describe.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace kiln::rt {
namespace {

void add(std::string& out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void add(std::string& out, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) out.append(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

const char* str(const flatbuffers::String* s) { return s ? s->c_str() : ""; }

const char* mode_name(fb::ProgramMode m) { return m == fb::ProgramMode::Compiled ? "compiled" : "eager"; }
const char* phase_name(fb::Phase p) { return p == fb::Phase::Prefill ? "prefill" : "decode"; }

std::string token_name(const fb::Tokenizer& t, int32_t id) {
  if (id < 0) return "-";
  std::string s = std::to_string(id);
  if (t.tokens() && static_cast<uint32_t>(id) < t.tokens()->size())
    s += " '" + t.tokens()->Get(static_cast<uint32_t>(id))->str() + "'";
  return s;
}

}  // namespace

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024.0 && u < 4) { v /= 1024.0; ++u; }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%" PRIu64 " B", b);
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string describe(const Plan& plan) {
  std::string o;
  const fb::Plan& p = plan.root();
  add(o, "plan            %s\n", plan.source().c_str());
  add(o, "format          %u.%u\n", plan.format_major(), plan.format_minor());
  add(o, "compiler        kiln %s\n", str(p.compiler_version()));
  add(o, "target          sm_%u\n", p.target_sm());
  if (p.created_utc() != 0) {
    std::time_t t = static_cast<std::time_t>(p.created_utc());
    std::tm tm{};
    char buf[32] = "?";
    if (gmtime_r(&t, &tm)) std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    add(o, "created         %s\n", buf);
  } else {
    add(o, "created         (not recorded)\n");
  }
  add(o, "file            %s (flatbuffer %s, weights %s at offset %" PRIu64 ")\n",
      human_bytes(plan.file().size()).c_str(), human_bytes(plan.header().fb_size).c_str(),
      human_bytes(plan.weights_size()).c_str(), plan.header().weights_offset);

  // What the plan was compiled with (format 1.1; a 1.0 plan has no record).
  if (const fb::CompileOptionsRecord* c = p.compile_options()) {
    std::string buckets, disabled;
    if (c->buckets())
      for (uint32_t b : *c->buckets()) buckets += (buckets.empty() ? "" : ", ") + std::to_string(b);
    if (c->disabled_passes())
      for (const auto* d : *c->disabled_passes()) disabled += (disabled.empty() ? "" : ", ") + d->str();
    add(o, "\ncompile options\n");
    add(o, "  target        sm_%u\n", c->target_sm());
    add(o, "  context       %u (max tokens %u; prefill buckets %s)\n", c->context_length(), c->max_tokens(),
        buckets.empty() ? "-" : buckets.c_str());
    add(o, "  eager         %s\n", c->eager() ? "yes" : "no (--no-eager)");
    add(o, "  weight layout %s\n", str(c->weight_layout()));
    add(o, "  kv type       %s\n", c->kv_type() ? c->kv_type()->c_str() : "f32 (not recorded: format < 1.2)");
    add(o, "  disabled      %s\n", disabled.empty() ? "- (every pass ran)" : disabled.c_str());
    const std::string cmd = c->command_line() ? c->command_line()->str() : "";
    o += "  command line  " + (cmd.empty() ? std::string("(not recorded)") : cmd) + "\n";
  } else {
    add(o, "\ncompile options (not recorded: plan format %u.%u)\n", plan.format_major(), plan.format_minor());
  }

  const fb::ModelConfig& m = plan.model();
  add(o, "\nmodel\n");
  add(o, "  arch          %s\n", str(m.arch()));
  add(o, "  name          %s\n", str(m.name()));
  add(o, "  layers        %u\n", m.n_layers());
  add(o, "  hidden        %u\n", m.hidden());
  add(o, "  ffn           %u\n", m.ffn());
  add(o, "  heads         %u (kv %u, head_dim %u)\n", m.n_heads(), m.n_kv_heads(), m.head_dim());
  add(o, "  vocab         %u\n", m.vocab());
  add(o, "  context       %u (prefill up to %u tokens a step)\n", m.context_length(), m.max_tokens());
  add(o, "  rope          theta %g, dim %u, %s, freq scale %g\n", m.rope_theta(), m.rope_dim(),
      m.rope_style() == fb::RopeStyle::NeoX ? "neox" : "normal", m.rope_freq_scale());
  add(o, "  rms_eps       %g\n", m.rms_eps());

  const fb::Tokenizer& t = plan.tokenizer();
  add(o, "\ntokenizer\n");
  add(o, "  model         %s (pre %s)\n", str(t.model()), t.pre() && t.pre()->size() ? t.pre()->c_str() : "-");
  add(o, "  tokens        %u, merges %u\n", t.tokens() ? t.tokens()->size() : 0,
      t.merges() ? t.merges()->size() : 0);
  add(o, "  bos           %s%s\n", token_name(t, t.bos_id()).c_str(), t.add_bos() ? " (added)" : "");
  add(o, "  eos           %s%s\n", token_name(t, t.eos_id()).c_str(), t.add_eos() ? " (added)" : "");
  add(o, "  eot           %s\n", token_name(t, t.eot_id()).c_str());
  add(o, "  pad, unk      %s, %s\n", token_name(t, t.pad_id()).c_str(), token_name(t, t.unk_id()).c_str());
  std::string eog;
  if (t.eog_ids())
    for (int32_t id : *t.eog_ids()) eog += (eog.empty() ? "" : ", ") + token_name(t, id);
  add(o, "  end of gen    %s\n", eog.empty() ? "-" : eog.c_str());
  add(o, "  chat template %s\n",
      t.chat_template() && t.chat_template()->size()
          ? (std::to_string(t.chat_template()->size()) + " chars").c_str()
          : "none");

  uint64_t cubin = 0, ptx = 0;
  for (const fb::Kernel* k : plan.kernels()) {
    cubin += k->cubin()->size();
    ptx += k->ptx() ? k->ptx()->size() : 0;
  }
  add(o, "\nkernels         %u (cubin %s, ptx %s)\n", plan.kernels().size(), human_bytes(cubin).c_str(),
      human_bytes(ptx).c_str());
  for (uint32_t i = 0; i < plan.kernels().size(); ++i) {
    const fb::Kernel& k = *plan.kernels().Get(i);
    add(o, "  %4u  %-44s sm_%-3u cubin %9s  smem %6u\n", i, str(k.name()), k.sm(),
        human_bytes(k.cubin()->size()).c_str(), k.smem());
  }

  add(o, "\nweights         %u blobs, %s\n", plan.weights().size(), human_bytes(plan.weights_size()).c_str());

  add(o, "\nprograms        %u\n", plan.programs().size());
  for (const fb::Program* pr : plan.programs()) {
    const uint32_t n = pr->launches()->size();
    uint32_t gemms = 0;
    for (const fb::Launch* l : *pr->launches()) gemms += l->gemm() != nullptr;
    add(o, "  %-24s %-8s %-7s bucket %5u  %5u launches", str(pr->name()), mode_name(pr->mode()),
        phase_name(pr->phase()), pr->bucket(), n);
    if (gemms) add(o, " (%u cuBLASLt GEMMs on tensor cores)", gemms);
    if (pr->pdl()) add(o, ", programmatic dependent launch");
    if (pr->device_step()) add(o, ", next step set up on the device");
    add(o, "\n");
  }

  const fb::Arena& a = plan.arena();
  add(o, "\narena           %s\n", human_bytes(a.size()).c_str());
  add(o, "  step          @ %12" PRIu64 "  64 B\n", a.step_offset());
  add(o, "  tokens        @ %12" PRIu64 "  %u x int32\n", a.tokens_offset(), a.tokens_capacity());
  add(o, "  logits        @ %12" PRIu64 "  %u x float\n", a.logits_offset(), m.vocab());
  uint64_t kv = 0;
  const uint32_t n_kv = a.kv() ? a.kv()->size() : 0;
  for (uint32_t i = 0; i < n_kv; ++i) kv += a.kv()->Get(i)->size();
  add(o, "  kv cache      %u buffers, %s\n", n_kv, human_bytes(kv).c_str());
  // Sliding-window layers keep only their window in a ring (Gemma 3): what
  // that saves against full caches of the compiled context.
  uint64_t ring_saved = 0;
  if (const fb::CompileOptionsRecord* c = p.compile_options()) {
    uint64_t full = 0, have = 0;
    for (uint32_t i = 0; i < n_kv; ++i) {
      const fb::StateBuffer& s = *a.kv()->Get(i);
      const std::string name = str(s.name());
      if (name.size() < 6 || name.compare(name.size() - 6, 6, "_cache") != 0) continue;  // not a K/V cache
      have += s.size();
    }
    const uint64_t elem = c->kv_type() && c->kv_type()->str() != "f32" ? 2 : 4;
    full = uint64_t{2} * m.n_layers() * c->context_length() * m.n_kv_heads() * m.head_dim() * elem;
    if (have > 0 && have < full) {
      ring_saved = full - have;
      add(o, "                sliding-window rings: K/V caches %s, full caches would be %s (%s saved)\n",
          human_bytes(have).c_str(), human_bytes(full).c_str(), human_bytes(ring_saved).c_str());
    }
  }
  if (a.gemm_workspace_size())
    add(o, "  gemm space    @ %12" PRIu64 "  %s (cuBLASLt workspace)\n", a.gemm_workspace_offset(),
        human_bytes(a.gemm_workspace_size()).c_str());
  for (uint32_t i = 0; i < n_kv && i < 4; ++i) {
    const fb::StateBuffer& s = *a.kv()->Get(i);
    add(o, "    %-10s  @ %12" PRIu64 "  %s\n", str(s.name()), s.offset(), human_bytes(s.size()).c_str());
  }
  if (n_kv > 4) add(o, "    ... %u more\n", n_kv - 4);

  const fb::MemoryBudget& b = plan.budget();
  add(o, "\nmemory budget\n");
  add(o, "  weights       %12s\n", human_bytes(b.weights_bytes()).c_str());
  add(o, "  arena         %12s  (kv cache %s)\n", human_bytes(b.arena_bytes()).c_str(),
      human_bytes(b.kv_bytes()).c_str());
  if (ring_saved)
    add(o, "  kv saved      %12s  (sliding-window layers keep only their window in a ring)\n",
        human_bytes(ring_saved).c_str());
  add(o, "  total         %12s\n", human_bytes(b.total_bytes()).c_str());
  return o;
}

std::string describe_launches(const Plan& plan) {
  std::string o;
  for (const fb::Program* p : plan.programs()) {
    add(o, "\nprogram %s: %u launches\n", str(p->name()), p->launches()->size());
    for (const fb::Launch* l : *p->launches()) {
      const char* label = str(l->label());
      if (const fb::Gemm* g = l->gemm()) {  // a cuBLASLt GEMM, no kernel
        add(o, "  %-28s m %u n %u k %u %s%s  %s\n", "cublasLt GEMM", g->m(), g->n(), g->k(),
            g->ab_type() == 30 ? "bf16" : "f16", g->residual() ? " +residual" : "", label);
        continue;
      }
      add(o, "  %-28s grid %u,%u,%u block %u  %s\n", str(plan.kernels().Get(l->kernel())->entry()),
          l->grid()->x(), l->grid()->y(), l->grid()->z(), l->block()->x(), label);
    }
  }
  return o;
}

}  // namespace kiln::rt
