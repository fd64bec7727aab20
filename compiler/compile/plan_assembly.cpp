#include "compiler/compile/plan_assembly.h"

#include <map>

#include "runtime/tokenizer/tokenizer.h"

namespace kiln::compile {
namespace {
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

plan::ModelConfigSpec model_config(const frontend::ModelConfig& cfg, const ProgramShapes& shapes) {
  plan::ModelConfigSpec mc;
  mc.arch = cfg.arch;
  mc.name = cfg.name;
  mc.n_layers = static_cast<uint32_t>(cfg.n_layers);
  mc.hidden = static_cast<uint32_t>(cfg.hidden);
  mc.ffn = static_cast<uint32_t>(cfg.ffn);
  mc.n_heads = static_cast<uint32_t>(cfg.n_heads);
  mc.n_kv_heads = static_cast<uint32_t>(cfg.n_kv_heads);
  mc.head_dim = static_cast<uint32_t>(cfg.head_dim);
  mc.vocab = static_cast<uint32_t>(cfg.vocab);
  mc.context_length = static_cast<uint32_t>(shapes.ctx);
  mc.max_tokens = static_cast<uint32_t>(shapes.max_tokens);
  mc.rope_theta = static_cast<float>(cfg.rope_theta);
  mc.rope_dim = static_cast<uint32_t>(cfg.n_rot);
  mc.rope_style = cfg.rope_mode == "neox" ? plan::RopeStyle::kNeoX : plan::RopeStyle::kNormal;
  mc.rms_eps = static_cast<float>(cfg.rms_eps);
  return mc;
}

plan::TokenizerSpec tokenizer_spec(const rt::VocabData& vd) {
  plan::TokenizerSpec ts;
  ts.model = vd.model == rt::TokenizerModel::kBpe ? "gpt2" : "llama";
  ts.pre = vd.pre;
  ts.tokens = vd.tokens;
  ts.scores = vd.scores;
  ts.token_types = vd.token_types;
  ts.merges = vd.merges;
  ts.bos_id = vd.bos_id;
  ts.eos_id = vd.eos_id;
  ts.eot_id = vd.eot_id;
  ts.pad_id = vd.pad_id;
  ts.unk_id = vd.unk_id;
  ts.add_bos = vd.add_bos;
  ts.add_eos = vd.add_eos;
  ts.add_space_prefix = vd.add_space_prefix;
  ts.chat_template = vd.chat_template;
  rt::Tokenizer tok(vd);
  for (int32_t id = 0; id < static_cast<int32_t>(vd.tokens.size()); ++id)
    if (tok.is_eog(id)) ts.eog_ids.push_back(id);
  return ts;
}

std::vector<plan::KernelSpec> kernel_specs(const std::vector<codegen::KernelSource>& sources,
                                           const KernelBuild& build, int sm) {
  std::vector<plan::KernelSpec> out(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    const auto& m = build.modules.at(build.module_of.at(i));
    auto& k = out[i];
    k.name = sources[i].entry;
    k.entry = sources[i].entry;
    k.sm = static_cast<uint32_t>(sm);
    k.cubin = m.cubin;
    k.ptx = m.ptx;
    k.source_hash = sources[i].hash;
  }
  return out;
}

plan::ArenaSpec arena_spec(const FixedSlots& slots, uint64_t temps_bytes, uint64_t logits_offset) {
  plan::ArenaSpec A;
  A.step_offset = slots.step;
  A.tokens_offset = slots.tokens;
  A.tokens_capacity = slots.tokens_capacity;
  A.gemm_workspace_offset = slots.gemm_workspace.offset;
  A.gemm_workspace_size = slots.gemm_workspace.bytes;
  for (const auto& [name, s] : slots.states) A.kv.push_back({name, s.offset, s.bytes});
  A.size = align_up(slots.temps_base + temps_bytes, kArenaAlign);
  A.logits_offset = logits_offset;
  return A;
}

plan::CompileOptionsSpec options_record(const CompileOptions& opt, const ProgramShapes& shapes) {
  plan::CompileOptionsSpec r;
  r.target_sm = static_cast<uint32_t>(opt.sm);
  r.context_length = static_cast<uint32_t>(shapes.ctx);
  r.max_tokens = static_cast<uint32_t>(shapes.max_tokens);
  for (auto b : shapes.buckets) r.buckets.push_back(static_cast<uint32_t>(b));
  r.eager = opt.eager;
  r.weight_layout = opt.weight_layout;
  r.disabled_passes = opt.pipeline.disable;
  r.command_line = opt.command_line;
  r.kv_type = opt.kv_type;
  return r;
}

plan::PlanSpec assemble_plan(PlanParts parts) {
  plan::PlanSpec spec;
  spec.compiler_version = KILN_COMPILER_VERSION;
  spec.target_sm = parts.options.target_sm;
  spec.created_utc = parts.created_utc;
  spec.model = model_config(parts.config, parts.shapes);
  spec.tokenizer = tokenizer_spec(parts.vocab);
  spec.kernels = std::move(parts.kernels);
  spec.weights = std::move(parts.weights.blobs);
  const uint64_t logits = parts.programs.empty() ? 0 : parts.programs[0].logits_offset;
  spec.arena = arena_spec(parts.slots, parts.temps_bytes, logits);
  spec.programs = std::move(parts.programs);
  spec.compile_options = std::move(parts.options);
  return spec;
}

}  // namespace kiln::compile
