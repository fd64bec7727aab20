// Shared fixtures for the plan tests: a small but complete PlanSpec, temp
// paths, and a way to assemble a plan file from a flatbuffer without the
// writer (so the verifier can be fed things the writer refuses to produce).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "compiler/plan/plan_spec.h"
#include "compiler/plan/writer.h"
#include "schemas/plan_hash.h"
#include "schemas/plan_header.h"

namespace kiln::plan::testing {

inline std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

// Two kernels, three weights (one through a fill callback), two programs.
inline PlanSpec small_spec() {
  PlanSpec s;
  s.compiler_version = "0.1.0-test";
  s.target_sm = 90;
  s.created_utc = 1700000000;

  ModelConfigSpec& m = s.model;
  m.arch = "llama";
  m.name = "tiny";
  m.n_layers = 2;
  m.hidden = 64;
  m.ffn = 128;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.head_dim = 16;
  m.vocab = 8;
  m.context_length = 32;
  m.max_tokens = 16;
  m.rope_theta = 10000.0f;
  m.rope_dim = 16;
  m.rope_style = RopeStyle::kNeoX;
  m.rope_freq_scale = 0.5f;
  m.rms_eps = 1e-5f;

  TokenizerSpec& t = s.tokenizer;
  t.model = "gpt2";
  t.pre = "smollm";
  t.tokens = {"<s>", "</s>", "a", "b", "c", "ab", "bc", "abc"};
  t.scores = {0.f, 0.f, -1.f, -2.f, -3.f, -4.f, -5.f, -6.f};
  t.token_types = {3, 3, 1, 1, 1, 1, 1, 1};
  t.merges = {"a b", "b c", "ab c"};
  t.bos_id = 0;
  t.eos_id = 1;
  t.eot_id = 1;
  t.add_bos = true;
  t.add_space_prefix = true;
  t.eog_ids = {1};
  t.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}";

  KernelSpec k0;
  k0.name = "rms_norm_64";
  k0.entry = "kiln_rms_norm_64";
  k0.sm = 90;
  k0.cubin = pattern(5, 1);
  k0.ptx = ".version 8.0\n.target sm_90\n";
  k0.source_hash = 0x1234abcdull;
  k0.smem = 256;
  KernelSpec k1;
  k1.name = "matmul_q4_1";
  k1.entry = "kiln_matmul_q4_1";
  k1.sm = 90;
  k1.cubin = pattern(100, 9);
  k1.source_hash = 77;
  s.kernels = {k0, k1};

  WeightSpec w0;
  w0.name = "token_embd.weight";
  w0.dtype = "f16";
  w0.shape = {8, 64};
  w0.size = 1024;
  w0.layout = "ggml";
  w0.bytes = pattern(1024, 3);
  WeightSpec w1;
  w1.name = "blk.0.attn_norm.weight";
  w1.dtype = "f32";
  w1.shape = {64};
  w1.size = 256;
  w1.layout = "ggml";
  w1.fill = [](std::span<uint8_t> dst) {
    for (size_t i = 0; i < dst.size(); ++i) dst[i] = static_cast<uint8_t>(255 - i);
  };
  WeightSpec w2;
  w2.name = "output.weight";
  w2.dtype = "q4_1";
  w2.shape = {8, 64};
  w2.size = 300;  // not a multiple of 256: the section ends mid-block
  w2.layout = "q4_1_split";
  w2.bytes = pattern(300, 5);
  s.weights = {w0, w1, w2};
  assign_weight_offsets(s.weights);  // 0, 1024, 1280; section 1580 bytes

  ArenaSpec& a = s.arena;
  a.size = 65536;
  a.step_offset = 0;
  a.tokens_offset = 256;
  a.tokens_capacity = 16;
  a.logits_offset = 512;
  a.kv = {{"k.0", 1024, 4096}, {"v.0", 5120, 4096}, {"k.1", 9216, 4096}, {"v.1", 13312, 4096}};

  ProgramSpec decode;
  decode.name = "decode";
  decode.mode = ProgramMode::Compiled;
  decode.phase = Phase::kDecode;
  decode.bucket = 1;
  decode.logits_offset = 512;
  decode.token_offset = 256;
  LaunchSpec l0;
  l0.kernel = 0;
  l0.grid = {1, 1, 1};
  l0.block = {256, 1, 1};
  l0.args = {ArgSpec::ptr(Region::kArena, 20000, 256), ArgSpec::ptr(Region::kWeights, 1024, 256),
             ArgSpec::f32(1e-5f), ArgSpec::i32(64)};
  l0.label = "rms_norm blk.0";
  LaunchSpec l1;
  l1.kernel = 1;
  l1.grid = {8, 1, 1};
  l1.block = {128, 1, 1};
  l1.smem = 4096;
  l1.args = {ArgSpec::ptr(Region::kWeights, 0, 1024), ArgSpec::ptr(Region::kArena, 512, 32),
             ArgSpec::i32(-3)};
  l1.label = "lm_head";
  decode.launches = {l0, l1};

  ProgramSpec prefill;
  prefill.name = "prefill_16";
  prefill.mode = ProgramMode::Eager;
  prefill.phase = Phase::kPrefill;
  prefill.bucket = 16;
  prefill.logits_offset = 512;
  prefill.token_offset = 256;
  LaunchSpec l2;
  l2.kernel = 1;
  l2.grid = {16, 2, 1};
  l2.block = {32, 4, 1};
  l2.args = {ArgSpec::ptr(Region::kArena, 20000)};
  prefill.launches = {l2};
  s.programs = {decode, prefill};
  return s;
}

// A fresh directory per test process.
inline std::filesystem::path temp_dir() {
  static std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("kiln_plan_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::vector<uint8_t> read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline plan_format::PlanHeader header_of(const std::vector<uint8_t>& file) {
  plan_format::PlanHeader h;
  std::memcpy(&h, file.data(), sizeof h);
  return h;
}
inline void set_header(std::vector<uint8_t>& file, const plan_format::PlanHeader& h) {
  std::memcpy(file.data(), &h, sizeof h);
}

// Recomputes both section hashes (so a corruption reaches the later checks).
inline void rehash(std::vector<uint8_t>& file) {
  plan_format::PlanHeader h = header_of(file);
  h.fb_hash = plan_format::hash64(file.data() + h.fb_offset, h.fb_size);
  h.weights_hash = plan_format::hash64(file.data() + h.weights_offset, h.weights_size);
  set_header(file, h);
}

// Builds a file image from a flatbuffer and a weights section, by the layout
// in docs/plan-abi.md, independently of the writer.
inline std::vector<uint8_t> assemble(const std::vector<uint8_t>& fbuf,
                                     const std::vector<uint8_t>& weights) {
  plan_format::PlanHeader h{};
  std::memcpy(h.magic, "KILNPLAN", 8);
  h.format_major = plan_format::kFormatMajor;
  h.format_minor = plan_format::kFormatMinor;
  h.fb_offset = 64;
  h.fb_size = fbuf.size();
  h.weights_offset = (64 + fbuf.size() + 4095) / 4096 * 4096;
  h.weights_size = weights.size();
  std::vector<uint8_t> file(h.weights_offset + weights.size(), 0);
  std::memcpy(file.data() + 64, fbuf.data(), fbuf.size());
  if (!weights.empty()) std::memcpy(file.data() + h.weights_offset, weights.data(), weights.size());
  set_header(file, h);
  rehash(file);
  return file;
}

// The weights section the small spec describes (1580 bytes).
inline std::vector<uint8_t> weights_section(const PlanSpec& s) {
  uint64_t end = 0;
  for (const WeightSpec& w : s.weights) end = std::max(end, w.offset + w.size);
  std::vector<uint8_t> out(end, 0);
  for (const WeightSpec& w : s.weights) {
    if (w.fill) w.fill(std::span<uint8_t>(out.data() + w.offset, w.size));
    else std::memcpy(out.data() + w.offset, w.bytes.data(), w.size);
  }
  return out;
}

}  // namespace kiln::plan::testing
