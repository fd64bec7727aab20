// The reader's memory budget for the header (Limits::max_metadata_bytes): a
// metadata value costs ~sizeof(Value) in memory however small it is on disk
// (48x for an array of uint8), so small hostile files must be refused before
// the reader allocates, with an error naming the key.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "compiler/gguf/gguf.h"
#include "gguf_builder.h"

namespace kiln::gguf {
namespace {
using namespace kiln::gguf::testing;

std::string reject(const std::vector<uint8_t>& bytes, const std::string& field, const Limits& limits = {}) {
  try {
    File::from_bytes(bytes, limits);
    ADD_FAILURE() << "accepted; expected the metadata budget to refuse " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find("budget for metadata"), std::string::npos) << e.what();
    return e.what();
  }
  return "";
}

// 8 MiB of uint8 items on disk would be 384 MiB of Values in memory.
TEST(GgufMemory, ByteArrayOverBudgetIsRefusedBeforeAllocating) {
  Builder b;
  b.add_str("general.architecture", "llama");
  const uint64_t n = 8u << 20;
  b.add("hostile.bytes", kArr, [n](Bytes& o) {
    o.u32(kU8).u64(n);
    o.b.resize(o.b.size() + n, 0);
  });
  std::string msg = reject(b.build(), "hostile.bytes");
  EXPECT_NE(msg.find("hostile.bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("8388608 uint8 items"), std::string::npos) << msg;
}

// The budget is for the whole header: keys each under it, together over.
TEST(GgufMemory, BudgetIsTotalOverAllKeys) {
  Builder b;
  const uint64_t n = 1u << 20;  // 48 MiB each in memory
  for (int k = 0; k < 8; ++k)
    b.add("arr." + std::to_string(k), kArr, [n](Bytes& o) {
      o.u32(kU8).u64(n);
      o.b.resize(o.b.size() + n, 1);
    });
  reject(b.build(), "arr.5");  // 6 x 48 MiB > 256 MiB
}

// Nested arrays: every level is charged.
TEST(GgufMemory, NestedArraysAreCharged) {
  Builder b;
  const uint64_t outer = 1000, inner = 1000;  // 1M uint16 items, 2 MB on disk, 48 MB in memory
  b.add("nested", kArr, [&](Bytes& o) {
    o.u32(kArr).u64(outer);
    for (uint64_t i = 0; i < outer; ++i) {
      o.u32(kU16).u64(inner);
      o.b.resize(o.b.size() + 2 * inner, 0);
    }
  });
  Limits lim;
  lim.max_metadata_bytes = 16u << 20;
  reject(b.build(), "nested", lim);
  lim.max_metadata_bytes = 64u << 20;
  EXPECT_NO_THROW(File::from_bytes(b.build(), lim));
}

// Long strings count their bytes; many keys and tensor infos count too.
TEST(GgufMemory, StringsKeysAndTensorsAreCharged) {
  Limits lim;
  lim.max_metadata_bytes = 1u << 20;
  {
    Builder b;
    b.add("tokenizer.ggml.tokens", kArr, [](Bytes& o) {
      o.u32(kStr).u64(200);
      for (int i = 0; i < 200; ++i) o.str(std::string(8192, 'a'));
    });
    reject(b.build(), "tokenizer.ggml.tokens", lim);
  }
  {
    Builder b;
    for (int k = 0; k < 20000; ++k) b.add_u32("key." + std::to_string(k), 1);
    try {
      File::from_bytes(b.build(), lim);
      ADD_FAILURE() << "20000 keys accepted under a 1 MiB budget";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.field()).rfind("key.", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find("budget for metadata"), std::string::npos) << e.what();
    }
  }
}

// Real models fit with room to spare (a quarter of the default budget).
TEST(GgufMemory, RealModelsFitTheBudget) {
  const char* md = std::getenv("KILN_MODEL_DIR");
  std::filesystem::path dir = md ? std::filesystem::path(md) : std::filesystem::path(".cache/models");
  int seen = 0;
  for (const char* name : {"SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"}) {
    if (!std::filesystem::exists(dir / name)) continue;
    Limits lim;
    lim.max_metadata_bytes = Limits{}.max_metadata_bytes / 4;
    EXPECT_NO_THROW(File::open((dir / name).string(), lim)) << name;
    ++seen;
  }
  if (seen == 0) GTEST_SKIP() << "no real models in " << dir << " (run ./fetch_models.sh)";
}

}  // namespace
}  // namespace kiln::gguf
