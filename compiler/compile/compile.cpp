#include "compiler/compile/compile.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "codegen/codegen.h"
#include "compiler/frontend/frontend.h"
#include "compiler/gguf/gguf.h"
#include "compiler/gguf/weight_source.h"
#include "compiler/plan/memory_planner.h"
#include "compiler/plan/plan_spec.h"
#include "compiler/plan/writer.h"
#include "compiler/tokenizer/import.h"
#include "runtime/cuda/cuda_api.h"
#include "runtime/engine/program.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kiln::compile {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Where each weight source lives in the weights section, per layout its
// readers want (codegen::input_layout: compiled matmul-family kernels read
// repacked "planes", eager kernels the GGUF "ggml" blocks). A fused weight whose
// source is "a+b+c" (rows concatenated by a pass) is one blob; when that blob is
// in "ggml" layout, the eager program's separate a, b, c are views into it (no
// extra memory); a repacked fused blob interleaves its parts' rows over planes,
// so a program reading a part in "ggml" gets a blob of its own.
struct WeightLayout {
  std::vector<plan::WeightSpec> blobs;
  // (source, layout) -> (offset, bytes)
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> where;
};

struct GraphUse {
  const ir::Graph* g;
  codegen::Mode mode;
};

WeightLayout layout_weights(const gguf::File& f, const std::vector<GraphUse>& graphs) {
  WeightLayout L;
  auto tensor = [&](const std::string& name) -> const gguf::TensorInfo& {
    const auto* t = f.find_tensor(name);
    if (!t) throw Error(ErrorCode::kFormat, "weight " + name + " is not in the GGUF file", name);
    return *t;
  };
  // Layouts each source is read in; concatenated sources first, so single
  // sources inside a "ggml" one become views.
  std::map<std::string, std::set<std::string>> need;
  std::vector<std::string> concat, single;
  for (const auto& gu : graphs) {
    for (const auto& n : gu.g->nodes())
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        const ir::Value& v = gu.g->value(n.inputs[i]);
        if (v.kind != ir::ValueKind::Weight) continue;
        if (!need.count(v.source))
          (v.source.find('+') != std::string::npos ? concat : single).push_back(v.source);
        need[v.source].insert(codegen::input_layout(*gu.g, n, i, gu.mode));
      }
    for (const auto& v : gu.g->values())  // weights no node reads (none today): stored as-is
      if (v.kind == ir::ValueKind::Weight && !need.count(v.source)) {
        (v.source.find('+') != std::string::npos ? concat : single).push_back(v.source);
        need[v.source].insert(codegen::kLayoutGgml);
      }
  }
  std::set<std::string> names;
  auto add_blob = [&](const std::string& source, const std::string& layout) {
    auto parts = gguf::split_weight_source(source);
    plan::WeightSpec w;
    w.name = names.count(source) ? source + "@" + layout : source;
    names.insert(w.name);
    const auto& t0 = tensor(parts[0]);
    w.dtype = std::string(ir::dtype_name(t0.type));
    w.layout = layout;
    // Matrices are joined row-wise (same row length); vectors (Qwen2's q/k/v
    // biases) end to end.
    const bool vec = t0.ne.size() == 1;
    int64_t rows = 0, elems = 0;
    std::vector<const gguf::TensorInfo*> ts;
    for (const auto& p : parts) {
      const auto& t = tensor(p);
      if (t.type != t0.type || (t.ne.size() == 1) != vec || (!vec && t.ne[0] != t0.ne[0]))
        throw Error(ErrorCode::kInternal, "fused weight " + source + " mixes types or row lengths", source);
      rows += static_cast<int64_t>(t.n_elements) / t.ne[0];
      elems += static_cast<int64_t>(t.n_elements);
      w.size += t.n_bytes;
      ts.push_back(&t);
    }
    w.shape = vec ? std::vector<int64_t>{elems} : std::vector<int64_t>{rows, t0.ne[0]};
    const ir::DType dt = t0.type;
    const int64_t K = t0.ne[0];
    w.fill = [ts, layout, dt, rows, K](std::span<uint8_t> dst) {
      std::vector<uint8_t> tmp;
      uint8_t* out = dst.data();
      if (layout != codegen::kLayoutGgml) {
        tmp.resize(dst.size());
        out = tmp.data();
      }
      size_t off = 0;
      for (const auto* t : ts) {
        std::memcpy(out + off, t->data, t->n_bytes);
        off += t->n_bytes;
      }
      if (layout != codegen::kLayoutGgml) codegen::repack(dt, layout, rows, K, tmp.data(), dst.data());
    };
    L.blobs.push_back(std::move(w));
    L.where[{source, layout}] = {};  // offset filled below
  };
  std::set<std::string> covered;  // parts of a "ggml" concatenated blob
  for (const auto& s : concat)
    for (const auto& l : need[s]) {
      add_blob(s, l);
      if (l == codegen::kLayoutGgml)
        for (const auto& p : gguf::split_weight_source(s)) covered.insert(p);
    }
  for (const auto& s : single)
    for (const auto& l : need[s])
      if (!(l == codegen::kLayoutGgml && covered.count(s))) add_blob(s, l);
  plan::assign_weight_offsets(L.blobs);
  for (const auto& b : L.blobs) {
    const std::string source = b.name.substr(0, b.name.find('@'));
    L.where[{source, b.layout}] = {b.offset, b.size};
    if (b.layout != codegen::kLayoutGgml) continue;
    uint64_t off = b.offset;
    for (const auto& p : gguf::split_weight_source(source)) {
      const auto& t = tensor(p);
      if (!L.where.count({p, b.layout})) L.where[{p, b.layout}] = {off, t.n_bytes};
      off += t.n_bytes;
    }
  }
  return L;
}

int64_t resolve_dim(const ir::Dim& d, int64_t bucket, int64_t ctx) {
  if (d.is_static()) return d.value;
  if (d.sym == "tokens") return bucket;
  if (d.sym == "kv_len") return ctx;
  if (d.sym == "seqs") return 1;
  return d.value;
}

uint64_t value_bytes(const ir::Value& v, int64_t bucket, int64_t ctx) {
  uint64_t n = 1;
  for (const auto& d : v.shape) n *= static_cast<uint64_t>(resolve_dim(d, bucket, ctx));
  const auto& info = ir::dtype_info(v.dtype);
  return n / info.block_elems * info.block_bytes;
}

// Output j of node n that updates a state in place returns that state's id, else kNoValue.
ir::ValueId alias_of(const ir::Node& n, size_t j) {
  if (n.op == ir::OpKind::RopeStore && (j == 1 || j == 2)) return n.inputs[j + 1];
  const auto& info = ir::op_info(n.op);
  if (j == 0 && info.inplace_input >= 0) return n.inputs[static_cast<size_t>(info.inplace_input)];
  return ir::kNoValue;
}

struct FixedSlots {
  uint64_t step = 0, tokens = 0, positions = 0, temps_base = 0, kv_offset = 0, kv_size = 0;
  uint32_t tokens_capacity = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> states;  // name -> (offset, bytes)
};

struct ProgramBuild {
  plan::ProgramSpec spec;
  uint64_t temps_bytes = 0;
};

}  // namespace

int resolve_target(const std::string& target) {
  if (target == "native") {
    std::string why;
    auto dev = rt::cuda::probe_device(0, &why);
    if (!dev)
      throw Error(ErrorCode::kInvalidArgument,
                  "--target native needs a local GPU (" + why + "): name the target instead, e.g. --target sm_90");
    return dev->sm;
  }
  return codegen::parse_target(target);
}

CompileReport compile_model(const CompileOptions& opt) {
  CompileReport rep;
  const auto t_all = Clock::now();
  auto stage_done = [&](const std::string& name, Clock::time_point t, const std::string& detail) {
    double s = since(t);
    rep.stages.emplace_back(name, s);
    if (opt.progress) opt.progress(fmt::format("{:<10} {:>7.2f} s  {}", name, s, detail));
  };

  // 1. Read and check the model.
  auto t = Clock::now();
  gguf::File f = gguf::File::open(opt.model_path);
  auto problems = frontend::support_problems(f);
  if (!problems.empty()) {
    std::string msg = "kiln cannot compile " + opt.model_path + ":";
    for (const auto& p : problems) msg += "\n  - " + p;
    throw Error(ErrorCode::kUnsupported, msg);
  }
  const frontend::ModelConfig cfg = frontend::read_config(f);
  const int64_t ctx = opt.ctx > 0 ? opt.ctx : std::min<int64_t>(2048, cfg.context_length);
  if (ctx > cfg.context_length)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--ctx {} exceeds the model's context length {}", ctx, cfg.context_length));
  const int64_t max_tokens = std::min<int64_t>(opt.max_tokens, ctx);
  std::vector<int64_t> buckets = opt.prefill_buckets;
  if (buckets.empty()) buckets = {16, 64, max_tokens};
  std::set<int64_t> bset;
  for (auto b : buckets)
    if (b >= 2 && b <= max_tokens) bset.insert(b);
  bset.insert(max_tokens);
  buckets.assign(bset.begin(), bset.end());
  stage_done("read", t, fmt::format("{} ({}, {} layers, hidden {}, vocab {})", cfg.name, cfg.arch, cfg.n_layers,
                                    cfg.hidden, cfg.vocab));

  // 2. IR: the eager graph is the frontend's, plus sampling; the compiled graph is it after the passes.
  t = Clock::now();
  ir::Graph base = frontend::build_graph(f, cfg, {max_tokens, ctx});
  {
    auto logits = base.find_value("logits");
    if (!logits) throw Error(ErrorCode::kInternal, "frontend graph has no 'logits' output");
    ir::ValueId next = base.add_node(ir::OpKind::ArgMax, {*logits}, {}, "next_token", ir::DType::I32,
                                     {ir::Dim::fixed(1)});
    base.mark_output(next);
    ir::verify(base);
  }
  ir::Graph fused = passes::run_pipeline(base, passes::default_pipeline(), opt.pipeline);
  stage_done("passes", t, fmt::format("{} ops -> {} ops", base.nodes().size(), fused.nodes().size()));

  // 3. Weights: one blob per (possibly fused) source, views for the parts.
  t = Clock::now();
  std::vector<const ir::Graph*> graphs = {&fused};
  if (opt.eager) graphs.push_back(&base);
  std::vector<GraphUse> uses = {{&fused, codegen::Mode::Compiled}};
  if (opt.eager) uses.push_back({&base, codegen::Mode::Eager});
  WeightLayout W = layout_weights(f, uses);
  uint64_t weights_bytes = 0;
  for (const auto& b : W.blobs) weights_bytes = std::max(weights_bytes, b.offset + b.size);
  stage_done("weights", t, fmt::format("{} blobs, {:.1f} MiB", W.blobs.size(), weights_bytes / 1048576.0));

  // 4. Fixed arena slots: step block, token ids, positions, KV-cache states.
  FixedSlots S;
  uint64_t cur = 0;
  S.step = cur;
  cur = align_up(cur + sizeof(rt::KilnStep), 256);
  S.tokens_capacity = static_cast<uint32_t>(max_tokens);
  S.tokens = cur;
  cur = align_up(cur + 4ull * max_tokens, 256);
  S.positions = cur;
  cur = align_up(cur + 4ull * max_tokens, 256);
  S.kv_offset = cur;
  for (const auto* g : graphs)
    for (const auto& v : g->values())
      if (v.kind == ir::ValueKind::State && !S.states.count(v.name)) {
        uint64_t bytes = value_bytes(v, max_tokens, ctx);
        S.states[v.name] = {cur, bytes};
        cur = align_up(cur + bytes, 256);
      }
  S.kv_size = cur - S.kv_offset;
  S.temps_base = cur;

  // 5. Lower every node of every program; plan each program's temporaries.
  t = Clock::now();
  std::vector<codegen::KernelSource> sources;
  // A kernel is (module source, entry): eager modules hold every generic kernel
  // of one dtype, so several kernels share one source (compiled once below).
  std::map<std::pair<uint64_t, std::string>, uint32_t> kernel_index;
  std::vector<ProgramBuild> builds;
  struct Job {
    const ir::Graph* g;
    plan::ProgramMode mode;
    plan::Phase phase;
    int64_t bucket;
  };
  std::vector<Job> jobs;
  for (int m = 0; m < (opt.eager ? 2 : 1); ++m) {
    const ir::Graph* g = m == 0 ? &fused : &base;
    auto mode = m == 0 ? plan::ProgramMode::kCompiled : plan::ProgramMode::kEager;
    jobs.push_back({g, mode, plan::Phase::kDecode, 1});
    for (auto b : buckets) jobs.push_back({g, mode, plan::Phase::kPrefill, b});
  }
  for (const auto& job : jobs) {
    const ir::Graph& g = *job.g;
    const auto& nodes = g.nodes();
    // Temporaries and their live ranges over this program's schedule.
    std::vector<plan::BufferLife> temps;
    std::map<ir::ValueId, size_t> temp_of;
    std::map<ir::ValueId, ir::ValueId> alias;  // output -> state it updates
    for (size_t i = 0; i < nodes.size(); ++i)
      for (size_t j = 0; j < nodes[i].outputs.size(); ++j) {
        ir::ValueId out = nodes[i].outputs[j];
        ir::ValueId a = alias_of(nodes[i], j);
        if (a != ir::kNoValue) {
          while (alias.count(a)) a = alias[a];
          alias[out] = a;
          continue;
        }
        temp_of[out] = temps.size();
        temps.push_back({static_cast<int64_t>(temps.size()), value_bytes(g.value(out), job.bucket, ctx),
                         static_cast<int32_t>(i), static_cast<int32_t>(i)});
      }
    for (size_t i = 0; i < nodes.size(); ++i)
      for (auto in : nodes[i].inputs)
        if (auto it = temp_of.find(in); it != temp_of.end())
          temps[it->second].last_use = std::max(temps[it->second].last_use, static_cast<int32_t>(i));
    for (auto o : g.outputs())
      if (auto it = temp_of.find(o); it != temp_of.end())
        temps[it->second].last_use = static_cast<int32_t>(nodes.size());
    plan::MemoryPlan mp = plan::MemoryPlanner(256).plan(temps);

    const auto cg_mode = job.mode == plan::ProgramMode::kCompiled ? codegen::Mode::Compiled : codegen::Mode::Eager;
    // layout: how the reading kernel wants a weight (codegen::input_layout)
    auto address = [&](ir::ValueId id, const std::string& layout = codegen::kLayoutGgml) -> plan::ArgSpec {
      if (auto a = alias.find(id); a != alias.end()) id = a->second;
      const ir::Value& v = g.value(id);
      switch (v.kind) {
        case ir::ValueKind::Weight: {
          auto it = W.where.find({v.source, layout});
          if (it == W.where.end())
            throw Error(ErrorCode::kInternal, "weight " + v.source + " has no blob in layout " + layout, v.source);
          auto w = it->second;
          return plan::ArgSpec::ptr(plan::Region::kWeights, w.first, w.second);
        }
        case ir::ValueKind::State: {
          auto s = S.states.at(v.name);
          return plan::ArgSpec::ptr(plan::Region::kArena, s.first, s.second);
        }
        case ir::ValueKind::Input:
          if (v.name == "tokens") return plan::ArgSpec::ptr(plan::Region::kArena, S.tokens, 4ull * max_tokens);
          if (v.name == "positions")
            return plan::ArgSpec::ptr(plan::Region::kArena, S.positions, 4ull * max_tokens);
          throw Error(ErrorCode::kInternal, "graph input " + v.name + " has no place in the arena");
        case ir::ValueKind::Temp: {
          size_t ti = temp_of.at(id);
          return plan::ArgSpec::ptr(plan::Region::kArena, S.temps_base + mp.offsets[ti], temps[ti].size);
        }
      }
      throw Error(ErrorCode::kInternal, "unreachable");
    };

    ProgramBuild pb;
    pb.temps_bytes = mp.total;
    auto& ps = pb.spec;
    ps.mode = job.mode;
    ps.phase = job.phase;
    ps.bucket = static_cast<uint32_t>(job.bucket);
    ps.name = fmt::format("{}_{}_{}", job.mode == plan::ProgramMode::kCompiled ? "compiled" : "eager",
                          job.phase == plan::Phase::kDecode ? "decode" : "prefill", job.bucket);
    for (const auto& n : nodes) {
      codegen::Lowered low = codegen::lower(g, n, job.bucket, opt.sm, cg_mode);
      auto [it, fresh] = kernel_index.try_emplace({low.kernel.hash, low.kernel.entry},
                                                  static_cast<uint32_t>(sources.size()));
      if (fresh) sources.push_back(low.kernel);
      plan::LaunchSpec ls;
      ls.kernel = it->second;
      ls.grid = low.grid;
      ls.block = low.block;
      ls.smem = low.smem;
      ls.label = std::string(ir::op_info(n.op).name) + " -> " + g.value(n.outputs[0]).name;
      for (const auto& p : low.params) {
        switch (p.kind) {
          case codegen::ParamKind::Input: {
            const size_t i = static_cast<size_t>(p.index);
            ls.args.push_back(address(n.inputs.at(i), codegen::input_layout(g, n, i, cg_mode)));
            break;
          }
          case codegen::ParamKind::Output: ls.args.push_back(address(n.outputs.at(static_cast<size_t>(p.index)))); break;
          case codegen::ParamKind::Step:
            ls.args.push_back(plan::ArgSpec::ptr(plan::Region::kArena, S.step, sizeof(rt::KilnStep)));
            break;
          case codegen::ParamKind::Tokens:
            ls.args.push_back(plan::ArgSpec::ptr(plan::Region::kArena, S.tokens, 4ull * max_tokens));
            break;
          case codegen::ParamKind::I32: ls.args.push_back(plan::ArgSpec::i32(static_cast<int32_t>(p.i))); break;
          case codegen::ParamKind::F32: ls.args.push_back(plan::ArgSpec::f32(p.f)); break;
        }
      }
      ps.launches.push_back(std::move(ls));
    }
    auto logits = g.find_value("logits");
    ps.logits_offset = logits ? address(*logits).offset : 0;
    ps.token_offset = S.step + offsetof(rt::KilnStep, out_token);
    if (job.phase == plan::Phase::kDecode) {
      if (job.mode == plan::ProgramMode::kCompiled) rep.n_launches_compiled_decode = ps.launches.size();
      else rep.n_launches_eager_decode = ps.launches.size();
    }
    builds.push_back(std::move(pb));
  }
  stage_done("lower", t, fmt::format("{} programs, {} distinct kernels; decode launches: compiled {}, eager {}",
                                     builds.size(), sources.size(), rep.n_launches_compiled_decode,
                                     rep.n_launches_eager_decode));

  // 6. NVRTC: compile each distinct module source once, in parallel (cached on disk).
  t = Clock::now();
  plan::PlanSpec spec;
  spec.kernels.resize(sources.size());
  {
    std::vector<size_t> unique;  // index of the first kernel of each distinct source
    std::map<uint64_t, size_t> first;
    for (size_t i = 0; i < sources.size(); ++i)
      if (first.try_emplace(sources[i].hash, i).second) unique.push_back(i);
    std::vector<codegen::CompiledKernel> modules(unique.size());
    const std::string cache = opt.cache_dir == "-" ? std::string() : opt.cache_dir;
    unsigned n_jobs = opt.jobs > 0 ? static_cast<unsigned>(opt.jobs) : std::max(1u, std::thread::hardware_concurrency());
    std::atomic<size_t> next{0}, done{0};
    std::mutex mu;
    std::exception_ptr failure;
    auto worker = [&] {
      for (size_t u; (u = next++) < unique.size();) {
        try {
          modules[u] = codegen::compile(sources[unique[u]], opt.sm, cache);
          size_t d = ++done;
          if (opt.progress && (d % 16 == 0 || d == unique.size())) {
            std::lock_guard<std::mutex> lk(mu);
            opt.progress(fmt::format("           modules {}/{}", d, unique.size()));
          }
        } catch (...) {
          std::lock_guard<std::mutex> lk(mu);
          if (!failure) failure = std::current_exception();
          next = unique.size();
        }
      }
    };
    std::vector<std::thread> pool;
    for (unsigned i = 0; i < std::min<size_t>(n_jobs, unique.size()); ++i) pool.emplace_back(worker);
    for (auto& th : pool) th.join();
    if (failure) std::rethrow_exception(failure);
    std::map<uint64_t, size_t> module_of;
    for (size_t u = 0; u < unique.size(); ++u) module_of[sources[unique[u]].hash] = u;
    for (size_t i = 0; i < sources.size(); ++i) {
      const auto& m = modules[module_of.at(sources[i].hash)];
      auto& k = spec.kernels[i];
      k.name = sources[i].entry;
      k.entry = sources[i].entry;
      k.sm = static_cast<uint32_t>(opt.sm);
      k.cubin = m.cubin;
      k.ptx = m.ptx;
      k.source_hash = sources[i].hash;
    }
    rep.n_modules = unique.size();
  }
  rep.n_kernels = sources.size();
  stage_done("nvrtc", t, fmt::format("{} modules, {} kernels for sm_{}", rep.n_modules, sources.size(), opt.sm));

  // 7. Assemble the plan.
  t = Clock::now();
  uint64_t temps = 0;
  for (const auto& b : builds) temps = std::max(temps, b.temps_bytes);
  spec.compiler_version = KILN_COMPILER_VERSION;
  spec.target_sm = static_cast<uint32_t>(opt.sm);
  spec.created_utc = static_cast<uint64_t>(std::time(nullptr));
  auto& mc = spec.model;
  mc.arch = cfg.arch;
  mc.name = cfg.name;
  mc.n_layers = static_cast<uint32_t>(cfg.n_layers);
  mc.hidden = static_cast<uint32_t>(cfg.hidden);
  mc.ffn = static_cast<uint32_t>(cfg.ffn);
  mc.n_heads = static_cast<uint32_t>(cfg.n_heads);
  mc.n_kv_heads = static_cast<uint32_t>(cfg.n_kv_heads);
  mc.head_dim = static_cast<uint32_t>(cfg.head_dim);
  mc.vocab = static_cast<uint32_t>(cfg.vocab);
  mc.context_length = static_cast<uint32_t>(ctx);
  mc.max_tokens = static_cast<uint32_t>(max_tokens);
  mc.rope_theta = static_cast<float>(cfg.rope_theta);
  mc.rope_dim = static_cast<uint32_t>(cfg.n_rot);
  mc.rope_style = cfg.rope_mode == "neox" ? plan::RopeStyle::kNeoX : plan::RopeStyle::kNormal;
  mc.rms_eps = static_cast<float>(cfg.rms_eps);

  rt::VocabData vd = tokenizer::import_vocab(f);
  auto& ts = spec.tokenizer;
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
  {
    rt::Tokenizer tok(vd);
    for (int32_t id = 0; id < static_cast<int32_t>(vd.tokens.size()); ++id)
      if (tok.is_eog(id)) ts.eog_ids.push_back(id);
  }

  spec.weights = std::move(W.blobs);
  auto& A = spec.arena;
  A.step_offset = S.step;
  A.tokens_offset = S.tokens;
  A.tokens_capacity = S.tokens_capacity;
  for (const auto& [name, s] : S.states) A.kv.push_back({name, s.first, s.second});
  A.size = align_up(S.temps_base + temps, 256);
  for (auto& b : builds) spec.programs.push_back(std::move(b.spec));
  A.logits_offset = spec.programs.empty() ? 0 : spec.programs[0].logits_offset;

  auto wr = plan::write_plan(spec, opt.out_path);
  rep.plan_bytes = wr.file_size;
  rep.weights_bytes = wr.weights_size;
  rep.arena_bytes = A.size;
  rep.kv_bytes = S.kv_size;
  stage_done("write", t, fmt::format("{} ({:.1f} MiB; arena {:.1f} MiB of which KV cache {:.1f} MiB)", opt.out_path,
                                     wr.file_size / 1048576.0, A.size / 1048576.0, S.kv_size / 1048576.0));
  rep.total_seconds = since(t_all);
  return rep;
}

}  // namespace kiln::compile
