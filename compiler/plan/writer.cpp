#include "compiler/plan/writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "ir/atomic_file.h"
#include "ir/error.h"
#include "runtime/error.h"
#include "runtime/plan/verify.h"
#include "schemas/plan_generated.h"
#include "schemas/plan_hash.h"
#include "schemas/plan_header.h"

namespace kiln::plan {
namespace {

using plan_format::kBlobAlign;
using plan_format::kHeaderSize;
using plan_format::kWeightsAlign;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

[[noreturn]] void bad_spec(const std::string& msg, const std::string& field) {
  throw Error(ErrorCode::kInvalidArgument, "plan writer: " + msg, field);
}

// Checks the weight layout and returns the section size.
uint64_t check_weights(const std::vector<WeightSpec>& weights) {
  std::vector<size_t> order(weights.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return weights[a].offset < weights[b].offset; });
  uint64_t end = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const WeightSpec& w = weights[order[k]];
    if (w.offset % kBlobAlign != 0)
      bad_spec("weight '" + w.name + "' offset " + std::to_string(w.offset) +
                   " is not 256-byte aligned: fill offsets with assign_weight_offsets()",
               w.name);
    if (w.offset < end)
      bad_spec("weight '" + w.name + "' overlaps '" + weights[order[k - 1]].name +
                   "': fill offsets with assign_weight_offsets()",
               w.name);
    if (w.offset + w.size < w.offset) bad_spec("weight '" + w.name + "' size overflows", w.name);
    if (!w.fill && w.bytes.size() != w.size)
      bad_spec("weight '" + w.name + "' has " + std::to_string(w.bytes.size()) +
                   " bytes but size " + std::to_string(w.size) +
                   ": set size to bytes.size() or give a fill callback",
               w.name);
    end = w.offset + w.size;
  }
  return end;
}

fb::Dim3 dim3(const std::array<uint32_t, 3>& d) { return fb::Dim3(d[0], d[1], d[2]); }

// Writes all of `data` or throws.
}  // namespace

uint64_t assign_weight_offsets(std::vector<WeightSpec>& weights) {
  uint64_t end = 0;
  for (WeightSpec& w : weights) {
    w.offset = align_up(end, kBlobAlign);
    end = w.offset + w.size;
  }
  return end;
}

std::vector<uint8_t> build_plan_flatbuffer(const PlanSpec& s, uint64_t weights_size) {
  flatbuffers::FlatBufferBuilder b(1 << 16);

  const ModelConfigSpec& m = s.model;
  auto model = fb::CreateModelConfig(
      b, b.CreateString(m.arch), b.CreateString(m.name), m.n_layers, m.hidden, m.ffn, m.n_heads,
      m.n_kv_heads, m.head_dim, m.vocab, m.context_length, m.max_tokens, m.rope_theta, m.rope_dim,
      static_cast<fb::RopeStyle>(m.rope_style), m.rope_freq_scale, m.rms_eps);

  const TokenizerSpec& t = s.tokenizer;
  auto tokenizer = fb::CreateTokenizer(
      b, b.CreateString(t.model), b.CreateString(t.pre), b.CreateVectorOfStrings(t.tokens),
      b.CreateVector(t.scores), b.CreateVector(t.token_types), b.CreateVectorOfStrings(t.merges),
      t.bos_id, t.eos_id, t.eot_id, t.pad_id, t.unk_id, t.add_bos, t.add_eos, t.add_space_prefix,
      b.CreateVector(t.eog_ids), b.CreateString(t.chat_template));

  std::vector<flatbuffers::Offset<fb::Kernel>> kernels;
  for (const KernelSpec& k : s.kernels)
    kernels.push_back(fb::CreateKernel(b, b.CreateString(k.name), b.CreateString(k.entry), k.sm,
                                       b.CreateVector(k.cubin), b.CreateString(k.ptx),
                                       k.source_hash, k.smem));

  std::vector<flatbuffers::Offset<fb::WeightBlob>> weights;
  for (const WeightSpec& w : s.weights)
    weights.push_back(fb::CreateWeightBlob(b, b.CreateString(w.name), b.CreateString(w.dtype),
                                           b.CreateVector(w.shape), w.offset, w.size,
                                           b.CreateString(w.layout)));

  std::vector<flatbuffers::Offset<fb::Program>> programs;
  for (const ProgramSpec& p : s.programs) {
    std::vector<flatbuffers::Offset<fb::Launch>> launches;
    for (const LaunchSpec& l : p.launches) {
      std::vector<flatbuffers::Offset<fb::Arg>> args;
      for (const ArgSpec& a : l.args)
        args.push_back(fb::CreateArg(b, static_cast<fb::ArgKind>(a.kind),
                                     static_cast<fb::Region>(a.region), a.offset, a.i, a.f,
                                     a.size, a.out));
      fb::Dim3 grid = dim3(l.grid), block = dim3(l.block);
      flatbuffers::Offset<fb::Gemm> gemm = 0;
      if (l.gemm) gemm = fb::CreateGemm(b, l.gemm->m, l.gemm->n, l.gemm->k, l.gemm->ab_type, l.gemm->residual);
      std::vector<flatbuffers::Offset<flatbuffers::String>> inputs;
      for (const std::string& in : l.inputs) inputs.push_back(b.CreateString(in));
      launches.push_back(fb::CreateLaunch(b, l.kernel, &grid, &block, l.smem, b.CreateVector(args),
                                          b.CreateString(l.label), gemm, b.CreateVector(inputs)));
    }
    programs.push_back(fb::CreateProgram(b, b.CreateString(p.name),
                                         static_cast<fb::ProgramMode>(p.mode),
                                         static_cast<fb::Phase>(p.phase), p.bucket,
                                         b.CreateVector(launches), p.logits_offset,
                                         p.token_offset, p.pdl, p.device_step));
  }

  const ArenaSpec& a = s.arena;
  std::vector<flatbuffers::Offset<fb::StateBuffer>> kv;
  uint64_t kv_bytes = 0;
  for (const StateBufferSpec& sb : a.kv) {
    kv.push_back(fb::CreateStateBuffer(b, b.CreateString(sb.name), sb.offset, sb.size));
    kv_bytes += sb.size;
  }
  auto arena = fb::CreateArena(b, a.size, b.CreateVector(kv), a.step_offset, a.tokens_offset,
                               a.tokens_capacity, a.logits_offset, a.gemm_workspace_offset,
                               a.gemm_workspace_size);
  auto budget =
      fb::CreateMemoryBudget(b, weights_size, a.size, kv_bytes, weights_size + a.size);

  flatbuffers::Offset<fb::CompileOptionsRecord> options = 0;
  if (s.compile_options) {
    const CompileOptionsSpec& o = *s.compile_options;
    options = fb::CreateCompileOptionsRecord(
        b, o.target_sm, o.context_length, o.max_tokens, b.CreateVector(o.buckets), o.eager,
        b.CreateString(o.weight_layout), b.CreateVectorOfStrings(o.disabled_passes),
        b.CreateString(o.command_line), b.CreateString(o.kv_type));
  }

  auto plan = fb::CreatePlan(b, plan_format::kFormatMajor, plan_format::kFormatMinor,
                             b.CreateString(s.compiler_version), s.target_sm, s.created_utc, model,
                             tokenizer, b.CreateVector(kernels), b.CreateVector(weights),
                             b.CreateVector(programs), arena, budget, options);
  b.Finish(plan, fb::PlanIdentifier());
  return std::vector<uint8_t>(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
}

WriteResult write_plan(const PlanSpec& spec, const std::string& path, const WriteOptions& options) {
  const uint64_t weights_size = check_weights(spec.weights);
  const std::vector<uint8_t> fbuf = build_plan_flatbuffer(spec, weights_size);

  plan_format::PlanHeader h{};
  std::memcpy(h.magic, plan_format::kMagic, sizeof h.magic);
  h.format_major = plan_format::kFormatMajor;
  h.format_minor = plan_format::kFormatMinor;
  h.fb_offset = kHeaderSize;
  h.fb_size = fbuf.size();
  h.weights_offset = align_up(h.fb_offset + h.fb_size, kWeightsAlign);
  h.weights_size = weights_size;
  h.fb_hash = plan_format::hash64(fbuf.data(), fbuf.size());

  WriteResult r;
  r.fb_offset = h.fb_offset;
  r.fb_size = h.fb_size;
  r.weights_offset = h.weights_offset;
  r.weights_size = h.weights_size;
  r.file_size = h.weights_offset + h.weights_size;

  // Written in full to an unnamed file, verified, then renamed over `path`
  // (AtomicFile): a failure at any point, a full disk or a kill leaves an
  // existing plan at `path` as it was and no partial file.
  remove_stale_temporaries(path);
  AtomicFile out(path, "plan");
  // Header last (once the weights hash is known): reserve its bytes now.
  std::vector<uint8_t> pad(kWeightsAlign, 0);
  out.write(pad.data(), kHeaderSize);
  out.write(fbuf.data(), fbuf.size());
  out.write(pad.data(), h.weights_offset - (h.fb_offset + h.fb_size));

  // Weights in offset order, zero padding between blobs, hashed as written.
  std::vector<size_t> order(spec.weights.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return spec.weights[a].offset < spec.weights[b].offset;
  });
  plan_format::Hasher hasher;
  uint64_t pos = 0;
  std::vector<uint8_t> scratch;
  for (size_t idx : order) {
    const WeightSpec& w = spec.weights[idx];
    if (w.offset > pos) {
      const uint64_t gap = w.offset - pos;  // < 256 after assign_weight_offsets, any size otherwise
      std::vector<uint8_t> zeros(gap, 0);
      hasher.update(zeros.data(), zeros.size());
      out.write(zeros.data(), zeros.size());
    }
    const uint8_t* data = w.bytes.data();
    if (w.fill) {
      scratch.assign(w.size, 0);
      w.fill(std::span<uint8_t>(scratch.data(), scratch.size()));
      data = scratch.data();
    }
    hasher.update(data, w.size);
    out.write(data, w.size);
    pos = w.offset + w.size;
  }
  h.weights_hash = hasher.digest();
  out.pwrite(&h, sizeof h, 0);

  if (options.verify) {
    void* map = ::mmap(nullptr, r.file_size, PROT_READ, MAP_SHARED, out.fd(), 0);
    if (map == MAP_FAILED)
      throw Error(ErrorCode::kIo, "cannot map plan '" + path + "' to verify it: " + std::strerror(errno));
    struct Unmap {  // on every way out, also an exception that is not rt::Error (std::bad_alloc)
      void* p;
      size_t n;
      ~Unmap() { ::munmap(p, n); }
    } unmap{map, static_cast<size_t>(r.file_size)};
    try {
      rt::verify_plan(std::span<const uint8_t>(static_cast<const uint8_t*>(map), r.file_size));
    } catch (const rt::Error& e) {
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("plan writer: the plan fails the runtime verifier: ") + e.what(), e.field());
    }
  }
  out.commit();
  return r;
}

}  // namespace kiln::plan
