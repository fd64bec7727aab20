// Stage "write" (compiler/compile/plan_assembly.h): the PlanSpec parts —
// model config from the resolved shapes, tokenizer with its end-of-generation
// set, kernels mapped to their modules, arena from the fixed slots, and the
// record of the compile options.
#include <gtest/gtest.h>

#include "compiler/compile/plan_assembly.h"

namespace kiln::compile {
namespace {

TEST(PlanAssembly, OptionsRecordHoldsEveryOutputChangingChoice) {
  CompileOptions o;
  o.sm = 86;
  o.weight_layout = "planes";
  o.eager = false;
  o.ctx = 0;  // resolved below
  o.pipeline.disable = {"fuse-residual", "dce"};
  o.command_line = "kiln compile m.gguf --weight-layout planes";
  o.jobs = 3;             // does not change the plan: not recorded
  o.cache_dir = "/tmp/x";  // ditto
  const ProgramShapes shapes{512, 64, {8, 64}};
  const plan::CompileOptionsSpec r = options_record(o, shapes);
  EXPECT_EQ(r.target_sm, 86u);
  EXPECT_EQ(r.context_length, 512u);
  EXPECT_EQ(r.max_tokens, 64u);
  EXPECT_EQ(r.buckets, (std::vector<uint32_t>{8, 64}));
  EXPECT_FALSE(r.eager);
  EXPECT_EQ(r.weight_layout, "planes");
  EXPECT_EQ(r.disabled_passes, (std::vector<std::string>{"fuse-residual", "dce"}));
  EXPECT_EQ(r.command_line, o.command_line);
}

TEST(PlanAssembly, ArenaFromFixedSlots) {
  FixedSlots S;
  S.step = 0;
  S.tokens = 256;
  S.tokens_capacity = 16;
  S.positions = 512;
  S.kv_offset = 768;
  S.states["v_cache"] = {768, 1024};  // placed first, but listed by name
  S.states["k_cache"] = {1792, 1024};
  S.kv_size = 2048;
  S.temps_base = 2816;
  const plan::ArenaSpec A = arena_spec(S, 1000, 3072);
  EXPECT_EQ(A.size, 3840u);  // 2816 + 1000 rounded up to 256
  EXPECT_EQ(A.step_offset, 0u);
  EXPECT_EQ(A.tokens_offset, 256u);
  EXPECT_EQ(A.tokens_capacity, 16u);
  EXPECT_EQ(A.logits_offset, 3072u);
  ASSERT_EQ(A.kv.size(), 2u);
  EXPECT_EQ(A.kv[0].name, "k_cache");
  EXPECT_EQ(A.kv[0].offset, 1792u);
  EXPECT_EQ(A.kv[1].name, "v_cache");
  EXPECT_EQ(A.kv[1].size, 1024u);
}

TEST(PlanAssembly, KernelsTakeTheirModulesImage) {
  std::vector<codegen::KernelSource> src = {{"a", "s1", {}, 11}, {"b", "s2", {}, 22}, {"c", "s1", {}, 11}};
  KernelBuild b;
  b.modules.resize(2);
  b.modules[0].cubin = {1, 2, 3};
  b.modules[0].ptx = "ptx one";
  b.modules[1].cubin = {4};
  b.modules[1].ptx = "ptx two";
  b.module_of = {0, 1, 0};
  const auto k = kernel_specs(src, b, 89);
  ASSERT_EQ(k.size(), 3u);
  EXPECT_EQ(k[0].entry, "a");
  EXPECT_EQ(k[0].name, "a");
  EXPECT_EQ(k[0].sm, 89u);
  EXPECT_EQ(k[0].source_hash, 11u);
  EXPECT_EQ(k[2].cubin, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(k[2].ptx, "ptx one");
  EXPECT_EQ(k[1].cubin, (std::vector<uint8_t>{4}));
}

TEST(PlanAssembly, ModelConfigAndTokenizer) {
  frontend::ModelConfig cfg;
  cfg.arch = "llama";
  cfg.name = "tiny";
  cfg.n_layers = 2;
  cfg.hidden = 64;
  cfg.ffn = 128;
  cfg.n_heads = 4;
  cfg.n_kv_heads = 2;
  cfg.head_dim = 16;
  cfg.vocab = 300;
  cfg.context_length = 4096;
  cfg.n_rot = 16;
  cfg.rope_theta = 500000.0;
  cfg.rope_mode = "neox";
  const plan::ModelConfigSpec m = model_config(cfg, {1024, 128, {16, 128}});
  EXPECT_EQ(m.context_length, 1024u);  // the compiled context, not the model's
  EXPECT_EQ(m.max_tokens, 128u);
  EXPECT_EQ(m.n_kv_heads, 2u);
  EXPECT_EQ(m.rope_dim, 16u);
  EXPECT_EQ(m.rope_style, plan::RopeStyle::kNeoX);
  EXPECT_FLOAT_EQ(m.rope_theta, 500000.0f);

  rt::VocabData vd;
  vd.model = rt::TokenizerModel::kBpe;
  vd.pre = "smollm";
  for (int i = 0; i < 8; ++i) vd.tokens.push_back("t" + std::to_string(i));
  vd.tokens[2] = "<|im_end|>";
  vd.token_types.assign(8, 1);
  vd.token_types[2] = 3;  // control
  vd.eos_id = 2;
  vd.bos_id = 1;
  const plan::TokenizerSpec t = tokenizer_spec(vd);
  EXPECT_EQ(t.model, "gpt2");
  EXPECT_EQ(t.pre, "smollm");
  EXPECT_EQ(t.tokens, vd.tokens);
  EXPECT_EQ(t.eos_id, 2);
  ASSERT_FALSE(t.eog_ids.empty());
  EXPECT_NE(std::find(t.eog_ids.begin(), t.eog_ids.end(), 2), t.eog_ids.end());
}

}  // namespace
}  // namespace kiln::compile
