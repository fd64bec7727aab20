#include "compiler/compile/lowering.h"

#include <set>

#include <fmt/format.h>

#include "schemas/kiln_step.h"

namespace kiln::compile {

ProgramShapes resolve_shapes(int64_t ctx_opt, int64_t max_tokens_opt, const std::vector<int64_t>& buckets_opt,
                             int64_t model_context) {
  ProgramShapes s;
  s.ctx = ctx_opt > 0 ? ctx_opt : std::min<int64_t>(2048, model_context);
  if (s.ctx > model_context)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--ctx {} exceeds the model's context length {}", s.ctx, model_context), "--ctx");
  // Where ctx came from, for the messages below.
  const std::string ctx_is = ctx_opt > 0 ? fmt::format("--ctx {}", s.ctx)
                                         : fmt::format("the compiled context {} (--ctx not given: min(2048, the "
                                                       "model's {}))",
                                                       s.ctx, model_context);
  if (max_tokens_opt > model_context)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--max-tokens {} exceeds the model's context length {}: pass --max-tokens {} or less",
                            max_tokens_opt, model_context, model_context),
                "--max-tokens");
  if (max_tokens_opt > s.ctx)
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("--max-tokens {} exceeds {}: pass --ctx {} or more, or a smaller --max-tokens",
                            max_tokens_opt, ctx_is, max_tokens_opt),
                "--max-tokens");
  s.max_tokens = max_tokens_opt > 0 ? max_tokens_opt : std::min(kDefaultMaxTokens, s.ctx);
  std::set<int64_t> bset;
  if (buckets_opt.empty()) {
    for (int64_t b : {int64_t{16}, int64_t{64}})
      if (b <= s.max_tokens) bset.insert(b);
  }
  for (int64_t b : buckets_opt) {
    if (b < 2 || b > s.max_tokens)
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("--buckets {}: each prefill chunk size must be 2..{} (the largest prefill chunk, "
                              "--max-tokens{}; one token runs the decode program): pass a larger --max-tokens "
                              "(and --ctx) or leave the bucket out",
                              b, s.max_tokens, max_tokens_opt > 0 ? "" : fmt::format(" {} by default", s.max_tokens)),
                  "--buckets");
    bset.insert(b);
  }
  bset.insert(s.max_tokens);
  s.buckets.assign(bset.begin(), bset.end());
  return s;
}

std::string ProgramJob::name() const {
  return fmt::format("{}_{}_{}", mode == ProgramMode::Compiled ? "compiled" : "eager",
                     phase == plan::Phase::kDecode ? "decode" : "prefill", bucket());
}

std::vector<ProgramJob> program_jobs(const ir::Graph& compiled, const ir::Graph* eager, const ProgramShapes& shapes,
                                     const ir::Graph* compiled_prefill) {
  std::vector<ProgramJob> jobs;
  auto add = [&](const ir::Graph* g, const ir::Graph* prefill, ProgramMode mode) {
    jobs.push_back({g, mode, plan::Phase::kDecode, ir::DimBindings{1, shapes.ctx, 1}});
    for (auto b : shapes.buckets)
      jobs.push_back({prefill, mode, plan::Phase::kPrefill, ir::DimBindings{b, shapes.ctx, 1}});
  };
  add(&compiled, compiled_prefill ? compiled_prefill : &compiled, ProgramMode::Compiled);
  if (eager) add(eager, eager, ProgramMode::Eager);
  return jobs;
}

uint32_t KernelTable::add(const codegen::KernelSource& k) {
  auto [it, fresh] = index_.try_emplace({k.hash, k.entry}, static_cast<uint32_t>(sources_.size()));
  if (fresh) sources_.push_back(k);
  return it->second;
}

plan::ProgramSpec lower_program(const ProgramJob& job, const codegen::Target& target,
                                const BufferAssignment& buffers, KernelTable& kernels) {
  const ir::Graph& g = *job.g;
  plan::ProgramSpec ps;
  ps.mode = job.mode;
  ps.phase = job.phase;
  ps.bucket = static_cast<uint32_t>(job.bucket());
  ps.name = job.name();
  for (const auto& n : g.nodes()) {
    codegen::Lowered low = codegen::lower(g, n, job.dims, target, job.mode);
    plan::LaunchSpec ls;
    if (low.gemm) {  // a cuBLASLt GEMM: no kernel
      const auto& gc = *low.gemm;
      ls.gemm = plan::GemmSpec{static_cast<uint32_t>(gc.m), static_cast<uint32_t>(gc.n), static_cast<uint32_t>(gc.k),
                               static_cast<uint8_t>(gc.ab_type), gc.residual};
    } else {
      ls.kernel = kernels.add(low.kernel);
    }
    ls.grid = low.grid;
    ls.block = low.block;
    ls.smem = low.smem;
    ls.label = std::string(ir::op_info(n.op).name) + " -> " + g.value(n.outputs[0]).name;
    for (ir::ValueId in : n.inputs) ls.inputs.push_back(g.value(in).name);
    for (const auto& p : low.params) {
      switch (p.kind) {
        case codegen::ParamKind::Input: {
          const size_t i = static_cast<size_t>(p.index);
          ls.args.push_back(buffers.value(n.inputs.at(i), codegen::input_layout(g, n, i, job.mode, target)));
          break;
        }
        case codegen::ParamKind::Output: {
          const ir::ValueId o = n.outputs.at(static_cast<size_t>(p.index));
          plan::ArgSpec a = buffers.value(o);
          // activations are scanned by kiln run --check-finite (states such
          // as caches and the split-K scratch are not: they may hold -inf)
          const ir::Value& v = g.value(o);
          if (v.kind == ir::ValueKind::Temp)
            a.out = v.dtype == ir::DType::F32 ? 1 : v.dtype == ir::DType::F16 ? 2 : v.dtype == ir::DType::BF16 ? 3 : 0;
          if (a.out && !v.shape.empty() && !v.shape[0].is_static() && v.shape[0].sym == "tokens")
            a.out |= 16;  // only the step's rows are written
          ls.args.push_back(a);
          break;
        }
        case codegen::ParamKind::Step: ls.args.push_back(buffers.step()); break;
        case codegen::ParamKind::Tokens: ls.args.push_back(buffers.tokens()); break;
        case codegen::ParamKind::I32: ls.args.push_back(plan::ArgSpec::i32(static_cast<int32_t>(p.i))); break;
        case codegen::ParamKind::F32: ls.args.push_back(plan::ArgSpec::f32(p.f)); break;
      }
    }
    ps.launches.push_back(std::move(ls));
  }
  auto logits = g.find_value("logits");
  ps.logits_offset = logits ? buffers.value(*logits).offset : 0;
  ps.token_offset = buffers.slots().step + KILN_STEP_OFFSETOF(out_token);
  // Compiled programs that end in the sampling kernel set up the next decode
  // step on the device when the host asks (KilnStep.ring): nothing after
  // that kernel reads the block. Eager programs stay the host-driven baseline.
  const auto& nodes = g.nodes();
  ps.device_step = job.mode == ProgramMode::Compiled && !nodes.empty() &&
                   (nodes.back().op == ir::OpKind::LmHeadSample || nodes.back().op == ir::OpKind::ArgMax);
  return ps;
}

}  // namespace kiln::compile
