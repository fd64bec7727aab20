// Shared by the fuzz targets (tests/fuzz/fuzz_*.cpp). Each target is one
// function over raw bytes that must return normally for every input: an input
// kiln refuses ends in kiln's own error type (kiln::Error / kiln::rt::Error),
// which the target swallows; any other exception, a sanitizer report, a trap
// or a crash is a bug.
//
// Built two ways (tests/fuzz/CMakeLists.txt):
//  - KILN_FUZZ=ON (clang, ASan + UBSan): KILN_LIBFUZZER is defined and each
//    target is LLVMFuzzerTestOneInput of its own libFuzzer binary (fuzz_gguf, ...);
//  - the normal build: each target is kiln_fuzz_<name>(), and the GoogleTest
//    kiln_test_fuzz replays the committed inputs (tests/fuzz/regressions/,
//    tests/fuzz/seeds/) through all of them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(KILN_LIBFUZZER)
#define KILN_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#define KILN_FUZZ_INIT(name) extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
#else
#define KILN_FUZZ_TARGET(name) int kiln_fuzz_##name(const uint8_t* data, size_t size)
#define KILN_FUZZ_INIT(name) int kiln_fuzz_init_##name(int* argc, char*** argv)
#endif

// An invariant the input broke that kiln should have refused: abort so that
// libFuzzer (or the replay test) reports it with the message.
#define KILN_FUZZ_CHECK(cond, ...)                                  \
  do {                                                              \
    if (!(cond)) {                                                  \
      std::fprintf(stderr, "kiln fuzz check failed: %s: ", #cond);  \
      std::fprintf(stderr, __VA_ARGS__);                            \
      std::fprintf(stderr, "\n");                                   \
      std::abort();                                                 \
    }                                                               \
  } while (0)

namespace kiln::fuzz {

// Consumes the fuzz input front to back as the choices of a structure-aware
// target (zeros once it runs out, so every input is a complete program).
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t u32() { uint32_t v = 0; for (int i = 0; i < 4; ++i) v |= uint32_t{u8()} << (8 * i); return v; }
  uint64_t u64() { return uint64_t{u32()} | uint64_t{u32()} << 32; }
  bool flag() { return u8() & 1; }
  // Uniform-ish in [0, n); 0 when n == 0.
  uint32_t below(uint64_t n) { return n == 0 ? 0 : static_cast<uint32_t>(u32() % n); }
  // A value picked to hit limits: small numbers, powers of two and their
  // neighbours, all-ones, or raw.
  uint64_t interesting() {
    switch (u8() % 6) {
      case 0: return u8();
      case 1: { uint64_t p = uint64_t{1} << (u8() % 64); return p + (u8() % 3) - 1; }
      case 2: return ~uint64_t{0} - u8();
      case 3: return u32();
      case 4: return uint64_t{0xffffffffu} - u8();
      default: return u64();
    }
  }
  std::string str(size_t max_len) {
    size_t n = below(max_len + 1);
    std::string s;
    for (size_t i = 0; i < n && !empty(); ++i) s += static_cast<char>(u8());
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace kiln::fuzz
