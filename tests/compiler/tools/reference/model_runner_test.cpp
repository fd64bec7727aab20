// ModelRunner's tensor-core mode: the interpreter running the compiled
// prefill programs' graph (fused weights "a+b+c" joined from their parts,
// f16 GEMM operands) on the KV cache its fp32 decode graph shares.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "compiler/gguf/gguf.h"
#include "compiler/tools/reference/logits_check.h"
#include "compiler/tools/reference/model_runner.h"
#include "compiler/tools/synth/model.h"

namespace kiln {
namespace {
namespace fs = std::filesystem;

using gen::rel_err;

TEST(ModelRunner, TensorCorePrefillIsTheFp32ModelWithF16Operands) {
  for (const char* type : {"f16", "q4_k_m"}) {
    synth::SynthOptions so;
    so.geometry = "tiny";
    so.type = type;
    so.seed = 11;
    const fs::path p = fs::temp_directory_path() / (std::string("kiln_mr_tiny_") + type + ".gguf");
    synth::build_model(so).write(p.string());
    auto f = gguf::File::open(p.string());
    gen::ModelRunner fp32(f, 64, 32), tc(f, 64, 32, true);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 20; ++i) prompt.push_back((i * 37 + 11) % static_cast<int32_t>(fp32.vocab()));
    const auto a = fp32.feed(prompt), b = tc.feed(prompt);
    const double e = rel_err(b, a);
    EXPECT_GT(e, 0.0) << type << ": the prefill graph must round its GEMM operands";
    EXPECT_LT(e, 2e-2) << type;
    // one-token steps run the fp32 graph on the KV cache the prefill wrote
    const int32_t tok = 3;
    const auto a1 = fp32.feed(std::vector<int32_t>{tok}), b1 = tc.feed(std::vector<int32_t>{tok});
    EXPECT_LT(rel_err(b1, a1), 2e-2) << type;
    EXPECT_EQ(tc.position(), 21);
    tc.reset();  // the shared cache is rebuilt and shared again
    const auto b2 = tc.feed(prompt);
    EXPECT_EQ(b2, b) << type << ": reset must restore the same state";
  }
}

}  // namespace
}  // namespace kiln
