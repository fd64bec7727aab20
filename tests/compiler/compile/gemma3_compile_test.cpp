// Compiling the real Gemma 3 270M (no GPU needed): the plan verifies, its
// sliding-window layers' K/V caches are rings of window + max_tokens - 1 rows
// (the global layers' the whole context), and the compile report and
// `kiln inspect` of the plan state what the rings save. Skips with a message
// when the model file is absent.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "compiler/compile/compile.h"
#include "runtime/kiln_runtime.h"
#include "runtime/plan/describe.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path gemma_path() {
  const char* d = std::getenv("KILN_MODEL_DIR");
  return (d ? fs::path(d) : fs::path(KILN_SOURCE_DIR) / ".cache" / "models") / "gemma-3-270m-q4_k_m.gguf";
}

TEST(Gemma3Compile, PlanKeepsRingCachesForSlidingWindowLayers) {
  if (!fs::exists(gemma_path())) {
    std::printf("SKIPPED: %s is missing (run ./fetch_models.sh)\n", gemma_path().string().c_str());
    GTEST_SKIP() << gemma_path() << " is missing: run ./fetch_models.sh";
  }
  const fs::path dir = fs::temp_directory_path() / ("kiln_gemma3_compile_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  compile::CompileOptions o;
  o.model_path = gemma_path().string();
  o.out_path = (dir / "gemma3.plan").string();
  o.sm = 90;
  o.ctx = 2048;
  o.max_tokens = 256;
  o.cache_dir = (dir / "kcache").string();
  const auto rep = compile::compile_model(o);
  rt::Plan plan = rt::Plan::load(o.out_path);
  EXPECT_EQ(std::string(plan.model().arch()->c_str()), "gemma3");

  // 18 layers, layer i global when i % 6 == 5; 1 KV head of 256 dims, f16: 512 bytes a row.
  const uint64_t row = 256 * 2, ring = 512 + 256 - 1, full = 2048;
  std::map<std::string, uint64_t> sizes;
  for (const auto* s : *plan.root().arena()->kv()) sizes[s->name()->str()] = s->size();
  for (int i = 0; i < 18; ++i) {
    const bool global = i % 6 == 5;
    for (const char* kv : {"k_cache", "v_cache"}) {
      const std::string name = "blk." + std::to_string(i) + "." + kv;
      ASSERT_TRUE(sizes.count(name)) << name;
      EXPECT_EQ(sizes[name], (global ? full : ring) * row) << name;
    }
  }
  EXPECT_EQ(rep.kv_ring_saved_bytes, 15 * 2 * (full - ring) * row);
  const std::string d = rt::describe(plan);
  EXPECT_NE(d.find("sliding-window rings"), std::string::npos) << d;
  EXPECT_NE(d.find("kv saved"), std::string::npos) << d;  // in the memory budget
  fs::remove_all(dir);
}

}  // namespace
