#include "compiler/tools/synth/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "compiler/tools/synth/weights.h"
#include "ir/error.h"

namespace kiln::synth {
namespace {

using ir::DType;

struct Scheme {
  bool q4_k_m = false;
  DType single = DType::F16;
};

Scheme parse_scheme(const std::string& type) {
  if (type == "q4_k_m") return {true, DType::Q4_K};
  const auto t = ir::dtype_from_name(type);
  if (!t || *t == DType::I32) {
    std::string valid;
    for (const auto& n : type_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::kInvalidArgument,
                "unknown synthetic weight type '" + type + "'; valid: " + valid, "type");
  }
  return {false, *t};
}

// llama.cpp's fallback when a row is not a multiple of the K-quant super-block (256).
DType fit_row(DType t, int64_t row) {
  if (row % ir::dtype_info(t).block_elems == 0) return t;
  switch (t) {
    case DType::Q2_K:
    case DType::Q3_K: return DType::Q4_0;
    case DType::Q4_K: return DType::Q5_0;
    case DType::Q5_K: return DType::Q5_1;
    case DType::Q6_K: return DType::Q8_0;
    default: break;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "row length " + std::to_string(row) + " is not a multiple of the " +
                  std::string(ir::dtype_name(t)) + " block size",
              "type");
}

// llama.cpp use_more_bits(): the layers Q4_K_M gives Q6_K for attn_v / ffn_down.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

constexpr float kWeightSigma = 0.02f;

}  // namespace

const std::vector<Geometry>& geometries() {
  static const std::vector<Geometry> g = {
      {"tiny", "kiln tiny llama", 256, 2, 4, 2, 64, 512, 512, 2048, false, 10000.0f, false, 1e-5f,
       ChatStyle::kChatML},
      // tiny with an 8192-token context: long-context GPU tests at the cost of a tiny model
      {"tiny-8k", "kiln tiny llama 8k", 256, 2, 4, 2, 64, 512, 512, 8192, false, 10000.0f, false, 1e-5f,
       ChatStyle::kChatML},
      // tiny with head_dim 128 and 256 (the CUDA-core split attention; 256 as Gemma 3's
      // 4 heads over one KV head) and a 4096-token context
      {"tiny-hd128", "kiln tiny llama hd128", 256, 2, 4, 2, 128, 512, 512, 4096, false, 10000.0f, false, 1e-5f,
       ChatStyle::kChatML},
      {"tiny-hd256", "kiln tiny llama hd256", 256, 2, 4, 1, 256, 512, 512, 4096, false, 10000.0f, false, 1e-5f,
       ChatStyle::kChatML},
      {"smollm2-135m", "SmolLM2 135M geometry", 576, 30, 9, 3, 64, 1536, 49152, 8192, true,
       100000.0f, false, 1e-5f, ChatStyle::kChatML},
      {"llama-1b", "Llama 3.2 1B geometry", 2048, 16, 32, 8, 64, 8192, 128256, 131072, true,
       500000.0f, true, 1e-5f, ChatStyle::kLlama3},
      {"llama-8b", "Llama 3.1 8B geometry", 4096, 32, 32, 8, 128, 14336, 128256, 131072, false,
       500000.0f, true, 1e-5f, ChatStyle::kLlama3},
  };
  return g;
}

const Geometry& find_geometry(const std::string& name) {
  std::string valid;
  for (const auto& g : geometries()) {
    if (g.name == name) return g;
    valid += (valid.empty() ? "" : ", ") + g.name;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown synthetic geometry '" + name + "'; valid: " + valid, "geometry");
}

std::vector<std::string> type_names() {
  return {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
          "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_k_m"};
}

uint32_t file_type(const std::string& type) {
  // llama_ftype (llama.h): the "mostly" type of the file.
  const Scheme s = parse_scheme(type);
  if (s.q4_k_m) return 15;
  switch (s.single) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::Q2_K: return 10;
    case DType::Q3_K: return 11;  // Q3_K_S
    case DType::Q4_K: return 14;  // Q4_K_S
    case DType::Q5_K: return 16;  // Q5_K_S
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    default: break;
  }
  throw Error(ErrorCode::kInternal, "no llama_ftype for " + type, "type");
}

Geometry resolve_geometry(const SynthOptions& opt) {
  Geometry g = find_geometry(opt.geometry);
  if (opt.layers < 0 || opt.layers > 1024)
    throw Error(ErrorCode::kInvalidArgument,
                "layers must be 1..1024 (0: the geometry's " + std::to_string(g.layers) + ")", "layers");
  if (opt.layers > 0) g.layers = opt.layers;
  return g;
}

std::vector<PlannedTensor> plan_tensors(const SynthOptions& opt) {
  const Geometry g = resolve_geometry(opt);
  const Scheme s = parse_scheme(opt.type);
  const int64_t h = g.hidden, q_dim = g.heads * g.head_dim, kv_dim = g.kv_heads * g.head_dim;

  auto weight = [&](const std::string& role, int64_t layer, int64_t row) {
    DType t = s.single;
    if (s.q4_k_m) {
      t = DType::Q4_K;
      if (role == "output" || (role == "token_embd" && g.tied)) t = DType::Q6_K;
      if ((role == "attn_v" || role == "ffn_down") && use_more_bits(layer, g.layers)) t = DType::Q6_K;
    }
    return fit_row(t, row);
  };

  std::vector<PlannedTensor> out;
  out.push_back({"token_embd.weight", weight("token_embd", -1, h), {h, g.vocab}});
  if (g.llama3_rope) out.push_back({"rope_freqs.weight", DType::F32, {g.head_dim / 2}});
  for (int64_t l = 0; l < g.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    out.push_back({p + "attn_norm.weight", DType::F32, {h}});
    out.push_back({p + "attn_q.weight", weight("attn_q", l, h), {h, q_dim}});
    out.push_back({p + "attn_k.weight", weight("attn_k", l, h), {h, kv_dim}});
    out.push_back({p + "attn_v.weight", weight("attn_v", l, h), {h, kv_dim}});
    out.push_back({p + "attn_output.weight", weight("attn_output", l, q_dim), {q_dim, h}});
    out.push_back({p + "ffn_norm.weight", DType::F32, {h}});
    out.push_back({p + "ffn_gate.weight", weight("ffn_gate", l, h), {h, g.ffn}});
    out.push_back({p + "ffn_up.weight", weight("ffn_up", l, h), {h, g.ffn}});
    out.push_back({p + "ffn_down.weight", weight("ffn_down", l, g.ffn), {g.ffn, h}});
  }
  out.push_back({"output_norm.weight", DType::F32, {h}});
  if (!g.tied) out.push_back({"output.weight", weight("output", -1, h), {h, g.vocab}});
  return out;
}

std::vector<float> llama3_rope_factors(int64_t head_dim, float theta) {
  // Llama 3.1's frequency-dependent RoPE scaling (Meta's reference
  // apply_scaling; llama.cpp stores the per-frequency divisors as rope_freqs).
  const double factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, old_ctx = 8192.0;
  const double low_wavelen = old_ctx / low_freq_factor, high_wavelen = old_ctx / high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const double freq = 1.0 / std::pow(static_cast<double>(theta), static_cast<double>(i) / head_dim);
    const double wavelen = 2.0 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) f = 1.0;
    else if (wavelen > low_wavelen) f = factor;
    else {
      const double smooth = (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

gguf::Writer build_model(const SynthOptions& opt) {
  const Geometry g = resolve_geometry(opt);
  const auto tensors = plan_tensors(opt);  // validates the type
  gguf::Writer w(opt.alignment);

  w.add_string("general.architecture", "llama");
  w.add_string("general.type", "model");
  const std::string layers = opt.layers > 0 ? ", " + std::to_string(g.layers) + " layers" : "";
  w.add_string("general.name", g.model_name + " (kiln synthetic, random weights, " + opt.type + layers + ")");
  w.add_u32("general.file_type", file_type(opt.type));
  w.add_u32("general.quantization_version", 2);
  w.add_string("kiln.synth.geometry", g.name);
  w.add_u64("kiln.synth.seed", opt.seed);

  w.add_u32("llama.vocab_size", static_cast<uint32_t>(g.vocab));
  w.add_u32("llama.context_length", static_cast<uint32_t>(g.context));
  w.add_u32("llama.embedding_length", static_cast<uint32_t>(g.hidden));
  w.add_u32("llama.block_count", static_cast<uint32_t>(g.layers));
  w.add_u32("llama.feed_forward_length", static_cast<uint32_t>(g.ffn));
  w.add_u32("llama.attention.head_count", static_cast<uint32_t>(g.heads));
  w.add_u32("llama.attention.head_count_kv", static_cast<uint32_t>(g.kv_heads));
  w.add_u32("llama.attention.key_length", static_cast<uint32_t>(g.head_dim));
  w.add_u32("llama.attention.value_length", static_cast<uint32_t>(g.head_dim));
  w.add_u32("llama.rope.dimension_count", static_cast<uint32_t>(g.head_dim));
  w.add_f32("llama.rope.freq_base", g.rope_theta);
  w.add_f32("llama.attention.layer_norm_rms_epsilon", g.rms_eps);

  const SynthVocab v = make_vocab(g.chat, g.vocab, 4096);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", v.pre);
  w.add_string_array("tokenizer.ggml.tokens", v.tokens);
  w.add_i32_array("tokenizer.ggml.token_type", v.types);
  w.add_string_array("tokenizer.ggml.merges", v.merges);
  w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos));
  w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos));
  if (v.eot >= 0) w.add_u32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(v.eot));
  if (v.unk >= 0) w.add_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(v.unk));
  if (v.pad >= 0) w.add_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(v.pad));
  w.add_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  w.add_bool("tokenizer.ggml.add_space_prefix", false);
  w.add_string("tokenizer.chat_template", v.chat_template);

  for (const auto& t : tensors) {
    const uint64_t tseed = mix_seed(opt.seed, hash_name(t.name.data(), t.name.size()));
    const bool is_norm = t.name.find("_norm.") != std::string::npos;
    if (t.name == "rope_freqs.weight") {
      const auto f = llama3_rope_factors(g.head_dim, g.rope_theta);
      std::vector<uint8_t> bytes(f.size() * 4);
      std::memcpy(bytes.data(), f.data(), bytes.size());
      w.add_tensor(t.name, t.type, t.ne, std::move(bytes));
      continue;
    }
    // Norm weights ~1 keep RMSNorm outputs at unit scale; matmul weights
    // sigma 0.02 keep every projection's output O(1) for these widths.
    const WeightDist dist = is_norm ? WeightDist{1.0f, 0.1f} : WeightDist{0.0f, kWeightSigma};
    const DType type = t.type;
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    const uint64_t n_blocks = static_cast<uint64_t>(n) / ir::dtype_info(type).block_elems;
    w.add_tensor(t.name, type, t.ne, [=](gguf::ByteSink& out) {
      // Chunks of ~4 MiB are generated by one thread each, a round of them at
      // a time, and written in order: every block is seeded by its own index,
      // so the bytes do not depend on the thread count (an 8B F16 model is
      // 8G normal draws).
      const uint64_t per_chunk = std::max<uint64_t>(1, (4u << 20) / ir::dtype_info(type).block_bytes);
      const uint64_t n_chunks = (n_blocks + per_chunk - 1) / per_chunk;
      const uint64_t round = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
      std::vector<std::vector<uint8_t>> bufs(round);
      for (uint64_t c0 = 0; c0 < n_chunks; c0 += round) {
        const uint64_t nc = std::min(round, n_chunks - c0);
        auto gen = [&](uint64_t i) {
          const uint64_t b = (c0 + i) * per_chunk;
          bufs[i].clear();
          append_blocks(type, tseed, dist, b, std::min(per_chunk, n_blocks - b), bufs[i]);
        };
        std::vector<std::thread> pool;
        std::exception_ptr err;
        std::mutex mu;
        for (uint64_t i = 1; i < nc; ++i)
          pool.emplace_back([&, i] {
            try {
              gen(i);
            } catch (...) {
              std::lock_guard<std::mutex> lock(mu);
              err = std::current_exception();
            }
          });
        try {
          gen(0);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mu);
          err = std::current_exception();
        }
        for (auto& th : pool) th.join();
        if (err) std::rethrow_exception(err);
        for (uint64_t i = 0; i < nc; ++i) out.write(bufs[i].data(), bufs[i].size());
      }
    });
  }
  return w;
}

}  // namespace kiln::synth
