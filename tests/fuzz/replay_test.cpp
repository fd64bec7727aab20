// The fuzz targets (tests/fuzz/fuzz_*.cpp) in the normal build: every
// committed input — crashers found by fuzzing, once fixed (regressions/<target>/),
// and the small seeds (seeds/<target>/) — replayed through its target, plus a
// fixed pseudo-random stream of structured plan edits. A target returns
// normally or the test crashes / fails (see fuzz_common.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

int kiln_fuzz_gguf(const uint8_t* data, size_t size);
int kiln_fuzz_tokenizer(const uint8_t* data, size_t size);
int kiln_fuzz_plan(const uint8_t* data, size_t size);
int kiln_fuzz_plan_structured(const uint8_t* data, size_t size);
int kiln_fuzz_init_tokenizer(int* argc, char*** argv);
int kiln_fuzz_init_plan_structured(int* argc, char*** argv);

namespace fs = std::filesystem;

namespace {

fs::path fuzz_dir() {
  const char* s = std::getenv("KILN_SOURCE_DIR");
  return (s ? fs::path(s) : fs::path(KILN_SOURCE_DIR)) / "tests" / "fuzz";
}

std::vector<uint8_t> read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Every file under regressions/<target>/ and seeds/<target>/; returns how many.
size_t replay(const std::string& target, int (*fn)(const uint8_t*, size_t)) {
  size_t n = 0;
  for (const char* kind : {"regressions", "seeds"}) {
    fs::path dir = fuzz_dir() / kind / target;
    if (!fs::is_directory(dir)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      SCOPED_TRACE(f.string());
      std::vector<uint8_t> bytes = read(f);
      fn(bytes.data(), bytes.size());
      ++n;
    }
  }
  return n;
}

int no_args = 0;
char** no_argv = nullptr;

void init_structured() {
  static bool once = (kiln_fuzz_init_plan_structured(&no_args, &no_argv), true);
  (void)once;
}

}  // namespace

TEST(FuzzReplay, Gguf) { EXPECT_GT(replay("gguf", kiln_fuzz_gguf), 0u); }

TEST(FuzzReplay, Tokenizer) {
  static bool init = (kiln_fuzz_init_tokenizer(&no_args, &no_argv), true);
  (void)init;
  EXPECT_GT(replay("tokenizer", kiln_fuzz_tokenizer), 0u);
}

TEST(FuzzReplay, Plan) { EXPECT_GT(replay("plan", kiln_fuzz_plan), 0u); }

TEST(FuzzReplay, PlanStructured) {
  init_structured();
  replay("plan_structured", kiln_fuzz_plan_structured);
}

// A fixed stream of edit programs: the structured target's own checks (every
// certainly-invalid plan refused, nothing else crashes) on each CI run.
TEST(FuzzReplay, PlanStructuredStream) {
  init_structured();
  std::mt19937_64 rng(20240901);
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> in(16 + rng() % 240);
    for (uint8_t& b : in) b = static_cast<uint8_t>(rng());
    kiln_fuzz_plan_structured(in.data(), in.size());
  }
}
