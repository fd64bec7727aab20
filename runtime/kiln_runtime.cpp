#include "runtime/kiln_runtime.h"

namespace kiln::rt {

namespace {
std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }
}  // namespace

EngineInputs engine_inputs(const Plan& p) {
  EngineInputs in;
  in.target_sm = static_cast<int32_t>(p.target_sm());
  in.vocab = static_cast<int32_t>(p.model().vocab());
  in.weights = p.weights_data();
  in.weights_size = p.weights_size();
  for (const auto* k : p.kernels()) {
    KernelDesc d;
    d.name = str(k->name());
    d.entry = str(k->entry());
    d.sm = static_cast<int32_t>(k->sm());
    d.cubin = k->cubin()->data();
    d.cubin_size = k->cubin()->size();
    if (k->ptx() && k->ptx()->size()) {
      d.ptx = k->ptx()->c_str();
      d.ptx_size = k->ptx()->size();
    }
    d.smem = k->smem();
    d.source_hash = k->source_hash();
    in.kernels.push_back(std::move(d));
  }
  for (const auto* pr : p.programs()) {
    ProgramDesc d;
    d.name = str(pr->name());
    d.mode = pr->mode();
    d.phase = pr->phase() == fb::Phase::Decode ? Phase::Decode : Phase::Prefill;
    d.bucket = static_cast<int32_t>(pr->bucket());
    d.logits_offset = pr->logits_offset();
    d.pdl = pr->pdl();
    d.device_step = pr->device_step();
    for (const auto* l : *pr->launches()) {
      LaunchDesc ld;
      ld.kernel = l->kernel();
      ld.grid = {l->grid()->x(), l->grid()->y(), l->grid()->z()};
      ld.block = {l->block()->x(), l->block()->y(), l->block()->z()};
      ld.smem = l->smem();
      ld.label = str(l->label());
      if (l->inputs())
        for (const auto* s : *l->inputs()) ld.inputs.push_back(s ? s->str() : std::string());
      if (const auto* g = l->gemm())
        ld.gemm = GemmDesc{g->m(), g->n(), g->k(), g->ab_type() == 30, g->residual()};
      if (l->args())
        for (const auto* a : *l->args()) {
          ArgDesc ad;
          switch (a->kind()) {
            case fb::ArgKind::Ptr: ad.kind = ArgDesc::Kind::Ptr; break;
            case fb::ArgKind::I32: ad.kind = ArgDesc::Kind::I32; break;
            case fb::ArgKind::F32: ad.kind = ArgDesc::Kind::F32; break;
          }
          ad.region = a->region() == fb::Region::Weights ? Region::Weights : Region::Arena;
          ad.offset = a->offset();
          ad.i = static_cast<int32_t>(a->i());
          ad.f = a->f();
          ad.size = a->size();
          ad.out = a->out();
          ld.args.push_back(ad);
        }
      d.launches.push_back(std::move(ld));
    }
    in.programs.push_back(std::move(d));
  }
  const auto& A = p.arena();
  in.arena.size = A.size();
  in.arena.step_offset = A.step_offset();
  in.arena.tokens_offset = A.tokens_offset();
  in.arena.tokens_capacity = A.tokens_capacity();
  in.arena.gemm_workspace_offset = A.gemm_workspace_offset();
  in.arena.gemm_workspace_size = A.gemm_workspace_size();
  if (A.kv() && A.kv()->size()) {
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const auto* s : *A.kv()) {
      lo = std::min<uint64_t>(lo, s->offset());
      hi = std::max<uint64_t>(hi, s->offset() + s->size());
    }
    in.arena.kv_offset = lo;
    in.arena.kv_size = hi - lo;
  }
  in.model_hint = str(p.model().name()).empty() ? std::string() : "<" + str(p.model().name()) + ".gguf>";
  return in;
}

VocabData vocab_from_plan(const Plan& p) {
  const auto& t = p.tokenizer();
  VocabData v;
  std::string model = str(t.model());
  if (model == "gpt2") v.model = TokenizerModel::kBpe;
  else if (model == "llama") v.model = TokenizerModel::kSpm;
  else throw Error(ErrorCode::kUnsupported, "plan tokenizer model '" + model + "' is not supported", "tokenizer.model");
  v.pre = str(t.pre());
  if (t.tokens())
    for (const auto* s : *t.tokens()) v.tokens.push_back(s->str());
  if (t.scores()) v.scores.assign(t.scores()->begin(), t.scores()->end());
  if (t.token_types()) v.token_types.assign(t.token_types()->begin(), t.token_types()->end());
  if (t.merges())
    for (const auto* s : *t.merges()) v.merges.push_back(s->str());
  v.bos_id = t.bos_id();
  v.eos_id = t.eos_id();
  v.eot_id = t.eot_id();
  v.pad_id = t.pad_id();
  v.unk_id = t.unk_id();
  v.add_bos = t.add_bos();
  v.add_eos = t.add_eos();
  v.add_space_prefix = t.add_space_prefix();
  v.chat_template = str(t.chat_template());
  return v;
}

std::unique_ptr<Model> Model::load(const std::string& plan_path, const EngineOptions& opt) {
  Plan plan = Plan::load(plan_path);
  Tokenizer tok(vocab_from_plan(plan));
  std::unique_ptr<Model> m(new Model(std::move(plan), std::move(tok)));
  if (!m->tok_.vocab().chat_template.empty()) {
    try {
      m->chat_ = chat_template_from_vocab(m->tok_.vocab());
    } catch (const Error&) {
      m->chat_ = ChatTemplate{};  // unknown family: --chat will say so
    }
  }
  m->engine_ = Engine::create(engine_inputs(m->plan_), opt);
  return m;
}

}  // namespace kiln::rt
