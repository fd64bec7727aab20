// Plan round trip: PlanSpec -> write_plan -> rt::Plan::load, every field back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ir/error.h"
#include "plan_test_util.h"
#include "runtime/plan/describe.h"
#include "runtime/plan/plan.h"

namespace kiln::plan {
namespace {

using namespace kiln::plan::testing;
using ::testing::HasSubstr;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string("<null>"); }

TEST(PlanWriter, AssignWeightOffsetsAligns256) {
  std::vector<WeightSpec> w(4);
  w[0].size = 1000;
  w[1].size = 256;
  w[2].size = 1;
  w[3].size = 0;
  // 1000 -> [0,1000); 256 -> 1024; 1 -> 1280; the empty blob at align(1281) = 1536, ending there.
  EXPECT_EQ(assign_weight_offsets(w), 1536u);
  EXPECT_EQ(w[0].offset, 0u);
  EXPECT_EQ(w[1].offset, 1024u);
  EXPECT_EQ(w[2].offset, 1280u);
  EXPECT_EQ(w[3].offset, 1536u);
}

TEST(PlanRoundTrip, EveryFieldSurvives) {
  const PlanSpec s = small_spec();
  const auto path = temp_dir() / "roundtrip.plan";
  const WriteResult wr = write_plan(s, path.string());

  // File layout (docs/plan-abi.md).
  const std::vector<uint8_t> file = read_file(path);
  ASSERT_EQ(file.size(), wr.file_size);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file.data()), 8), "KILNPLAN");
  const plan_format::PlanHeader h = header_of(file);
  EXPECT_EQ(h.format_major, plan_format::kFormatMajor);
  EXPECT_EQ(h.format_minor, plan_format::kFormatMinor);
  EXPECT_EQ(h.fb_offset, 64u);
  EXPECT_EQ(h.weights_offset % 4096, 0u);
  EXPECT_GE(h.weights_offset, h.fb_offset + h.fb_size);
  EXPECT_EQ(h.weights_size, 1580u);
  EXPECT_EQ(file.size(), h.weights_offset + 1580);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file.data() + 64 + 4), 4), "KILN");
  // The weights section is exactly the blobs at their offsets (zero padding between).
  const std::vector<uint8_t> expect_w = weights_section(s);
  EXPECT_TRUE(std::equal(expect_w.begin(), expect_w.end(), file.begin() + h.weights_offset));

  const rt::Plan p = rt::Plan::load(path.string());
  EXPECT_EQ(p.format_major(), plan_format::kFormatMajor);
  EXPECT_EQ(p.format_minor(), plan_format::kFormatMinor);
  EXPECT_EQ(p.target_sm(), 90u);
  EXPECT_EQ(str(p.root().compiler_version()), "0.1.0-test");
  EXPECT_EQ(p.root().created_utc(), 1700000000u);

  const fb::ModelConfig& m = p.model();
  EXPECT_EQ(str(m.arch()), "llama");
  EXPECT_EQ(str(m.name()), "tiny");
  EXPECT_EQ(m.n_layers(), 2u);
  EXPECT_EQ(m.hidden(), 64u);
  EXPECT_EQ(m.ffn(), 128u);
  EXPECT_EQ(m.n_heads(), 4u);
  EXPECT_EQ(m.n_kv_heads(), 2u);
  EXPECT_EQ(m.head_dim(), 16u);
  EXPECT_EQ(m.vocab(), 8u);
  EXPECT_EQ(m.context_length(), 32u);
  EXPECT_EQ(m.max_tokens(), 16u);
  EXPECT_FLOAT_EQ(m.rope_theta(), 10000.0f);
  EXPECT_EQ(m.rope_dim(), 16u);
  EXPECT_EQ(m.rope_style(), fb::RopeStyle::NeoX);
  EXPECT_FLOAT_EQ(m.rope_freq_scale(), 0.5f);
  EXPECT_FLOAT_EQ(m.rms_eps(), 1e-5f);

  const fb::Tokenizer& t = p.tokenizer();
  EXPECT_EQ(str(t.model()), "gpt2");
  EXPECT_EQ(str(t.pre()), "smollm");
  ASSERT_EQ(t.tokens()->size(), 8u);
  for (uint32_t i = 0; i < 8; ++i) EXPECT_EQ(t.tokens()->Get(i)->str(), s.tokenizer.tokens[i]);
  ASSERT_EQ(t.scores()->size(), 8u);
  for (uint32_t i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(t.scores()->Get(i), s.tokenizer.scores[i]);
  ASSERT_EQ(t.token_types()->size(), 8u);
  for (uint32_t i = 0; i < 8; ++i) EXPECT_EQ(t.token_types()->Get(i), s.tokenizer.token_types[i]);
  ASSERT_EQ(t.merges()->size(), 3u);
  EXPECT_EQ(t.merges()->Get(2)->str(), "ab c");
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.eot_id(), 1);
  EXPECT_EQ(t.pad_id(), -1);
  EXPECT_EQ(t.unk_id(), -1);
  EXPECT_TRUE(t.add_bos());
  EXPECT_FALSE(t.add_eos());
  EXPECT_TRUE(t.add_space_prefix());
  ASSERT_EQ(t.eog_ids()->size(), 1u);
  EXPECT_EQ(t.eog_ids()->Get(0), 1);
  EXPECT_EQ(str(t.chat_template()), s.tokenizer.chat_template);

  ASSERT_EQ(p.kernels().size(), 2u);
  for (uint32_t i = 0; i < 2; ++i) {
    const fb::Kernel& k = *p.kernels().Get(i);
    const KernelSpec& ks = s.kernels[i];
    EXPECT_EQ(str(k.name()), ks.name);
    EXPECT_EQ(str(k.entry()), ks.entry);
    EXPECT_EQ(k.sm(), ks.sm);
    EXPECT_EQ(std::vector<uint8_t>(k.cubin()->begin(), k.cubin()->end()), ks.cubin);
    EXPECT_EQ(str(k.ptx()), ks.ptx);
    EXPECT_EQ(k.source_hash(), ks.source_hash);
    EXPECT_EQ(k.smem(), ks.smem);
  }

  ASSERT_EQ(p.weights().size(), 3u);
  EXPECT_EQ(p.weights_size(), 1580u);
  for (uint32_t i = 0; i < 3; ++i) {
    const fb::WeightBlob& w = *p.weights().Get(i);
    const WeightSpec& ws = s.weights[i];
    EXPECT_EQ(str(w.name()), ws.name);
    EXPECT_EQ(str(w.dtype()), ws.dtype);
    EXPECT_EQ(std::vector<int64_t>(w.shape()->begin(), w.shape()->end()), ws.shape);
    EXPECT_EQ(w.offset(), ws.offset);
    EXPECT_EQ(w.size(), ws.size);
    EXPECT_EQ(str(w.layout()), ws.layout);
  }
  EXPECT_EQ(p.weights().Get(1)->offset(), 1024u);
  EXPECT_EQ(p.weights().Get(2)->offset(), 1280u);
  const auto w0 = p.weight_bytes(*p.find_weight("token_embd.weight"));
  EXPECT_EQ(std::vector<uint8_t>(w0.begin(), w0.end()), s.weights[0].bytes);
  const auto w1 = p.weight_bytes(*p.find_weight("blk.0.attn_norm.weight"));
  ASSERT_EQ(w1.size(), 256u);
  for (size_t i = 0; i < 256; ++i) ASSERT_EQ(w1[i], static_cast<uint8_t>(255 - i)) << i;
  EXPECT_EQ(p.find_weight("nope"), nullptr);

  ASSERT_EQ(p.programs().size(), 2u);
  const fb::Program* dec = p.find_program(fb::ProgramMode::Compiled, fb::Phase::Decode, 1);
  ASSERT_NE(dec, nullptr);
  EXPECT_EQ(str(dec->name()), "decode");
  EXPECT_EQ(dec->logits_offset(), 512u);
  EXPECT_EQ(dec->token_offset(), 256u);
  ASSERT_EQ(dec->launches()->size(), 2u);
  const fb::Launch& l0 = *dec->launches()->Get(0);
  EXPECT_EQ(l0.kernel(), 0u);
  EXPECT_EQ(l0.grid()->x(), 1u);
  EXPECT_EQ(l0.block()->x(), 256u);
  EXPECT_EQ(l0.block()->y(), 1u);
  EXPECT_EQ(l0.smem(), 0u);
  EXPECT_EQ(str(l0.label()), "rms_norm blk.0");
  ASSERT_EQ(l0.args()->size(), 4u);
  EXPECT_EQ(l0.args()->Get(0)->kind(), fb::ArgKind::Ptr);
  EXPECT_EQ(l0.args()->Get(0)->region(), fb::Region::Arena);
  EXPECT_EQ(l0.args()->Get(0)->offset(), 20000u);
  EXPECT_EQ(l0.args()->Get(0)->size(), 256u);
  EXPECT_EQ(l0.args()->Get(1)->region(), fb::Region::Weights);
  EXPECT_EQ(l0.args()->Get(1)->offset(), 1024u);
  EXPECT_EQ(l0.args()->Get(2)->kind(), fb::ArgKind::F32);
  EXPECT_FLOAT_EQ(l0.args()->Get(2)->f(), 1e-5f);
  EXPECT_EQ(l0.args()->Get(3)->kind(), fb::ArgKind::I32);
  EXPECT_EQ(l0.args()->Get(3)->i(), 64);
  const fb::Launch& l1 = *dec->launches()->Get(1);
  EXPECT_EQ(l1.kernel(), 1u);
  EXPECT_EQ(l1.grid()->x(), 8u);
  EXPECT_EQ(l1.smem(), 4096u);
  EXPECT_EQ(l1.args()->Get(2)->i(), -3);
  const fb::Program* pre = p.find_program(fb::ProgramMode::Eager, fb::Phase::Prefill, 16);
  ASSERT_NE(pre, nullptr);
  EXPECT_EQ(str(pre->name()), "prefill_16");
  const fb::Launch& l2 = *pre->launches()->Get(0);
  EXPECT_EQ(l2.grid()->y(), 2u);
  EXPECT_EQ(l2.block()->x(), 32u);
  EXPECT_EQ(l2.block()->y(), 4u);
  EXPECT_EQ(p.find_program(fb::ProgramMode::Compiled, fb::Phase::Prefill, 16), nullptr);

  const fb::Arena& a = p.arena();
  EXPECT_EQ(a.size(), 65536u);
  EXPECT_EQ(a.step_offset(), 0u);
  EXPECT_EQ(a.tokens_offset(), 256u);
  EXPECT_EQ(a.tokens_capacity(), 16u);
  EXPECT_EQ(a.logits_offset(), 512u);
  ASSERT_EQ(a.kv()->size(), 4u);
  EXPECT_EQ(str(a.kv()->Get(3)->name()), "v.1");
  EXPECT_EQ(a.kv()->Get(3)->offset(), 13312u);
  EXPECT_EQ(a.kv()->Get(3)->size(), 4096u);

  // The writer computes the budget: weights + arena, kv part of the arena.
  EXPECT_EQ(p.budget().weights_bytes(), 1580u);
  EXPECT_EQ(p.budget().arena_bytes(), 65536u);
  EXPECT_EQ(p.budget().kv_bytes(), 4u * 4096u);
  EXPECT_EQ(p.budget().total_bytes(), 1580u + 65536u);
}

TEST(PlanRoundTrip, NoWeightsIsValid) {
  PlanSpec s = small_spec();
  s.weights.clear();
  for (ProgramSpec& pr : s.programs)
    for (LaunchSpec& l : pr.launches)
      for (ArgSpec& a : l.args) a.region = Region::kArena;
  const auto path = temp_dir() / "noweights.plan";
  const WriteResult wr = write_plan(s, path.string());
  EXPECT_EQ(wr.weights_size, 0u);
  const rt::Plan p = rt::Plan::load(path.string());
  EXPECT_EQ(p.weights().size(), 0u);
  EXPECT_EQ(p.weights_size(), 0u);
}

TEST(PlanWriter, InvalidSpecNeverClobbersAnExistingPlan) {
  const auto path = temp_dir() / "keep.plan";
  write_plan(small_spec(), path.string());
  const std::vector<uint8_t> before = read_file(path);

  PlanSpec bad = small_spec();
  bad.programs[0].launches[0].kernel = 7;  // fails the runtime verifier
  try {
    write_plan(bad, path.string());
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("kernel index 7"));
  }
  EXPECT_EQ(read_file(path), before);
  // No temporary left behind.
  for (const auto& entry : std::filesystem::directory_iterator(temp_dir()))
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
}

TEST(PlanWriter, RejectsInconsistentWeights) {
  PlanSpec s = small_spec();
  s.weights[1].offset = 1000;  // overlaps weights[0] and is unaligned
  EXPECT_THROW(write_plan(s, (temp_dir() / "w1.plan").string()), Error);
  s = small_spec();
  s.weights[0].bytes.pop_back();  // 1023 bytes for size 1024
  EXPECT_THROW(write_plan(s, (temp_dir() / "w2.plan").string()), Error);
  EXPECT_FALSE(std::filesystem::exists(temp_dir() / "w1.plan"));
  EXPECT_FALSE(std::filesystem::exists(temp_dir() / "w2.plan"));
}

TEST(PlanWriter, UnwritableDirectoryIsAnIoError) {
  try {
    write_plan(small_spec(), "/nonexistent-dir-kiln/x.plan");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
  }
}

TEST(PlanLoad, MissingFileIsAnIoError) {
  try {
    rt::Plan::load((temp_dir() / "missing.plan").string());
    FAIL();
  } catch (const rt::Error& e) {
    EXPECT_EQ(e.code(), rt::ErrorCode::kIo);
    EXPECT_THAT(e.what(), HasSubstr("kiln compile"));
  }
}

// Format 1.1: the compile options record, optional (absent: nullptr).
TEST(PlanRoundTrip, CompileOptionsRecord) {
  PlanSpec s = small_spec();
  {
    const auto path = temp_dir() / "no_options.plan";
    write_plan(s, path.string());
    EXPECT_EQ(rt::Plan::load(path.string()).root().compile_options(), nullptr);
  }
  CompileOptionsSpec o;
  o.target_sm = 90;
  o.context_length = 32;
  o.max_tokens = 16;
  o.buckets = {4, 16};
  o.eager = false;
  o.weight_layout = "planes";
  o.disabled_passes = {"dce", "fuse-residual"};
  o.command_line = "kiln compile 'my model.gguf' --weight-layout planes";
  s.compile_options = o;
  const auto path = temp_dir() / "options.plan";
  write_plan(s, path.string());
  const rt::Plan p = rt::Plan::load(path.string());
  const fb::CompileOptionsRecord* r = p.root().compile_options();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->target_sm(), 90u);
  EXPECT_EQ(r->context_length(), 32u);
  EXPECT_EQ(r->max_tokens(), 16u);
  EXPECT_EQ(std::vector<uint32_t>(r->buckets()->begin(), r->buckets()->end()), (std::vector<uint32_t>{4, 16}));
  EXPECT_FALSE(r->eager());
  EXPECT_EQ(str(r->weight_layout()), "planes");
  ASSERT_EQ(r->disabled_passes()->size(), 2u);
  EXPECT_EQ(r->disabled_passes()->Get(1)->str(), "fuse-residual");
  EXPECT_EQ(str(r->command_line()), o.command_line);
  const std::string d = rt::describe(p);
  EXPECT_THAT(d, HasSubstr("compile options\n"));
  EXPECT_THAT(d, HasSubstr("  context       32 (max tokens 16; prefill buckets 4, 16)"));
  EXPECT_THAT(d, HasSubstr("  eager         no (--no-eager)"));
  EXPECT_THAT(d, HasSubstr("  weight layout planes"));
  EXPECT_THAT(d, HasSubstr("  disabled      dce, fuse-residual"));
  EXPECT_THAT(d, HasSubstr("  command line  kiln compile 'my model.gguf' --weight-layout planes"));
}

TEST(PlanDescribe, ShowsTheImportantFacts) {
  const auto path = temp_dir() / "describe.plan";
  write_plan(small_spec(), path.string());
  const std::string d = rt::describe(rt::Plan::load(path.string()));
  EXPECT_THAT(d, HasSubstr("format          " + std::to_string(plan_format::kFormatMajor) + "." + std::to_string(plan_format::kFormatMinor)));
  EXPECT_THAT(d, HasSubstr("compile options (not recorded"));  // small_spec() has no record
  EXPECT_THAT(d, HasSubstr("kiln 0.1.0-test"));
  EXPECT_THAT(d, HasSubstr("sm_90"));
  EXPECT_THAT(d, HasSubstr("2023-11-14 22:13:20 UTC"));  // 1700000000
  EXPECT_THAT(d, HasSubstr("tiny"));
  EXPECT_THAT(d, HasSubstr("kernels         2 (cubin 105 B"));
  EXPECT_THAT(d, HasSubstr("matmul_q4_1"));
  EXPECT_THAT(d, HasSubstr("decode"));
  EXPECT_THAT(d, HasSubstr("prefill_16"));
  EXPECT_THAT(d, HasSubstr("eager"));
  EXPECT_THAT(d, HasSubstr("bos           0 '<s>' (added)"));
  EXPECT_THAT(d, HasSubstr("kv cache      4 buffers, 16.0 KiB"));
  EXPECT_THAT(d, HasSubstr("total             65.5 KiB"));
  EXPECT_EQ(rt::human_bytes(1536), "1.5 KiB");
  EXPECT_EQ(rt::human_bytes(100), "100 B");
}

}  // namespace
}  // namespace kiln::plan
