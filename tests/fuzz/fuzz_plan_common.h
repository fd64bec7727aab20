// What the plan fuzz targets do with a plan the verifier accepted: the CPU
// side of everything the runtime does with it before the GPU (describe() as
// `kiln inspect` prints it, the engine's plain-data inputs, the tokenizer and
// chat template built from the plan, program and weight look-ups). None of it
// may crash on a verified plan.
#pragma once
#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/kiln_runtime.h"
#include "runtime/plan/describe.h"
#include "runtime/plan/plan.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

namespace kiln::fuzz {

inline void exercise_plan(const rt::Plan& p) {
  (void)rt::describe(p);
  (void)rt::describe_launches(p);
  rt::EngineInputs in = rt::engine_inputs(p);
  for (const rt::ProgramDesc& d : in.programs)
    for (const rt::LaunchDesc& l : d.launches)  // a cuBLASLt GEMM launch has no kernel
      KILN_FUZZ_CHECK(l.gemm || l.kernel < in.kernels.size(), "verified launch names kernel %u of %zu", l.kernel,
                      in.kernels.size());
  for (const rt::KernelDesc& k : in.kernels)
    KILN_FUZZ_CHECK(static_cast<uint32_t>(k.sm) == p.target_sm(), "verified kernel for sm_%d in an sm_%u plan",
                    k.sm, p.target_sm());
  const std::span<const uint8_t> file = p.file();
  for (const fb::WeightBlob* w : p.weights()) {
    std::span<const uint8_t> b = p.weight_bytes(*w);
    KILN_FUZZ_CHECK(b.data() >= file.data() && b.data() + b.size() <= file.data() + file.size(),
                    "verified weight blob outside the file");
    if (w->name()) KILN_FUZZ_CHECK(p.find_weight(w->name()->string_view()) != nullptr, "find_weight");
  }
  for (const fb::Program* pr : p.programs()) (void)p.find_program(pr->mode(), pr->phase(), pr->bucket());
  try {
    rt::Tokenizer tok(rt::vocab_from_plan(p));
    std::vector<int32_t> ids = tok.encode("Hello, world! <|im_start|>user\n\xe4\xbd\xa0\xe5\xa5\xbd <s>");
    (void)tok.decode(ids);
    for (int32_t id = 0; id < std::min<int32_t>(tok.n_vocab(), 64); ++id) {
      (void)tok.token_to_piece(id);
      (void)tok.is_eog(id);
    }
    try {
      rt::ChatTemplate t = rt::chat_template_from_vocab(tok.vocab());
      std::vector<rt::ChatMessage> msgs = {{"system", "be brief"}, {"user", "hi"}};
      (void)rt::apply_chat_template(t, msgs, true);
    } catch (const rt::Error&) {
    }
  } catch (const rt::Error&) {
  }
}

}  // namespace kiln::fuzz
