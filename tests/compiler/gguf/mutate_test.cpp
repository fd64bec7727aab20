// Robustness without libFuzzer: thousands of deterministic mutations of a
// valid file (bit flips, byte overwrites with boundary values, truncations,
// 64-bit length fields set to extremes). The reader must either accept the
// file or throw kiln::Error: never crash, hang, or throw anything else.
#include <gtest/gtest.h>

#include <random>

#include "compiler/gguf/gguf.h"
#include "gguf_builder.h"

namespace kiln::gguf {
namespace {
using namespace kiln::gguf::testing;

std::vector<uint8_t> seed_file() {
  Builder b;
  b.add_str("general.architecture", "llama");
  b.add_u32("general.alignment", 32);
  b.add("llama.rope.freq_base", kF32, [](Bytes& o) { o.f32(10000.f); });
  b.add("tokenizer.ggml.tokens", kArr, [](Bytes& o) { o.u32(kStr).u64(3).str("<s>").str("a").str("bc"); });
  b.add("tokenizer.ggml.scores", kArr, [](Bytes& o) { o.u32(kF32).u64(3).f32(0).f32(-1).f32(-2); });
  b.add("nested", kArr, [](Bytes& o) {
    o.u32(kArr).u64(2).u32(kI16).u64(1).i16(5).u32(kBool).u64(2).u8(1).u8(0);
  });
  b.add("flag", kBool, [](Bytes& o) { o.u8(1); });
  b.add("i64", kI64, [](Bytes& o) { o.i64(-5); });
  b.tensor({"token_embd.weight", {32, 3}, 8});
  b.tensor({"blk.0.attn_q.weight", {256, 1}, 12});
  b.tensor({"output_norm.weight", {32}, 0});
  return b.build();
}

// Parses and, on success, touches everything the reader exposes.
void parse_and_touch(std::vector<uint8_t> bytes, uint64_t* ok, uint64_t* rejected) {
  try {
    File f = File::from_bytes(std::move(bytes));
    uint64_t sum = 0;
    for (const auto& kv : f.metadata()) sum += format_value(kv.value).size();
    for (const auto& t : f.tensors())
      if (t.n_bytes) sum += t.data[0] + t.data[t.n_bytes - 1];  // must be inside the image
    ASSERT_LE(f.data_offset(), f.file_size() + f.alignment());
    (void)sum;
    ++*ok;
  } catch (const Error&) {
    ++*rejected;
  }
  // Anything else propagates and fails the test.
}

TEST(GgufMutate, SeedIsValid) {
  uint64_t ok = 0, rej = 0;
  parse_and_touch(seed_file(), &ok, &rej);
  EXPECT_EQ(ok, 1u);
}

TEST(GgufMutate, RandomMutationsNeverCrash) {
  const std::vector<uint8_t> seed = seed_file();
  File ref = File::from_bytes(seed);
  const uint64_t header_end = ref.data_offset();  // mutating tensor data proves nothing
  std::mt19937_64 rng(0x6b696c6e);  // "kiln"
  uint64_t ok = 0, rejected = 0;
  const uint64_t boundary[] = {0, 1, 0x7f, 0x80, 0xff};
  const uint64_t big[] = {0, 1, 31, 32, 33, 0xffffffffull, 1ull << 32, 1ull << 62,
                          (1ull << 63) - 1, 1ull << 63, ~0ull, ~0ull - 31};
  for (int iter = 0; iter < 6000; ++iter) {
    std::vector<uint8_t> m = seed;
    switch (iter % 4) {
      case 0: {  // flip 1..4 random bits in the header
        int n = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < n; ++k) m[rng() % header_end] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      }
      case 1:  // overwrite one byte with a boundary value
        m[rng() % header_end] = static_cast<uint8_t>(boundary[rng() % 5]);
        break;
      case 2:  // truncate anywhere
        m.resize(rng() % m.size());
        break;
      case 3: {  // overwrite an 8-byte window (lengths, counts, ne, offsets) with an extreme
        uint64_t pos = rng() % (header_end - 8);
        uint64_t v = big[rng() % (sizeof(big) / sizeof(big[0]))];
        std::memcpy(m.data() + pos, &v, 8);
        break;
      }
    }
    SCOPED_TRACE(iter);
    parse_and_touch(std::move(m), &ok, &rejected);
    if (HasFatalFailure()) return;
  }
  // The mutations must exercise both outcomes, or the test proves little.
  EXPECT_GT(ok, 100u);
  EXPECT_GT(rejected, 1000u);
  std::printf("mutations: %llu accepted, %llu rejected\n", static_cast<unsigned long long>(ok),
              static_cast<unsigned long long>(rejected));
}

}  // namespace
}  // namespace kiln::gguf
