// Negative tests: one hand-made corrupt file per validation rule of the GGUF
// reader. Each asserts the error code, the field named and a word of the
// message. Some go through a temp file so the mmap path is covered too.
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "compiler/gguf/gguf.h"
#include "gguf_builder.h"

namespace kiln::gguf {
namespace {
using namespace kiln::gguf::testing;

enum class Via { kBytes, kFile };

void expect_reject(const std::vector<uint8_t>& bytes, ErrorCode code, const std::string& field,
                   const std::string& words, Via via = Via::kBytes, const Limits& limits = {}) {
  std::string path;
  try {
    if (via == Via::kFile) {
      path = write_temp(bytes, ::testing::UnitTest::GetInstance()->current_test_info()->name());
      File::open(path, limits);
    } else {
      File::from_bytes(bytes, limits);
    }
    ADD_FAILURE() << "file was accepted; expected an error about " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos)
        << "message '" << e.what() << "' lacks '" << words << "'";
    if (via == Via::kFile) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  if (!path.empty()) std::filesystem::remove(path);
}

// A small valid file: the base each test breaks in one place.
Builder valid() {
  Builder b;
  b.add_str("general.architecture", "llama");
  b.add_u32("llama.block_count", 2);
  b.tensor({"a", {32, 2}, 0});
  b.tensor({"b", {64}, 8});
  return b;
}

TEST(GgufCorrupt, BaseFileIsValid) {
  EXPECT_NO_THROW(File::from_bytes(valid().build()));
  EXPECT_NO_THROW(File::open(write_temp(valid().build(), "base")));
}

// ---- header
TEST(GgufCorrupt, BadMagic) {
  auto bytes = valid().build();
  bytes[3] = 'X';
  expect_reject(bytes, ErrorCode::kFormat, "magic", "not a GGUF file", Via::kFile);
}

TEST(GgufCorrupt, EmptyFile) {
  expect_reject({}, ErrorCode::kFormat, "magic", "not a GGUF file", Via::kFile);
}

TEST(GgufCorrupt, Version1Rejected) {
  Builder b = valid();
  b.version = 1;
  expect_reject(b.build(), ErrorCode::kUnsupported, "version", "version 1 is not supported");
}

TEST(GgufCorrupt, UnknownVersion) {
  Builder b = valid();
  b.version = 4;
  expect_reject(b.build(), ErrorCode::kUnsupported, "version", "unsupported GGUF version 4");
}

TEST(GgufCorrupt, BigEndianFile) {
  Builder b = valid();
  b.version = 0x03000000;  // v3 written big-endian
  expect_reject(b.build(), ErrorCode::kUnsupported, "version", "big-endian");
}

TEST(GgufCorrupt, TruncatedHeader) {
  auto bytes = valid().build();
  bytes.resize(12);  // magic + version + half the tensor count
  expect_reject(bytes, ErrorCode::kFormat, "tensor_count", "truncated", Via::kFile);
}

TEST(GgufCorrupt, TensorCountAboveCap) {
  Builder b = valid();
  b.n_tensors_override = (1ull << 20) + 1;
  expect_reject(b.build(), ErrorCode::kFormat, "tensor_count", "above the limit");
}

TEST(GgufCorrupt, KvCountAboveCap) {
  Builder b = valid();
  b.n_kv_override = std::numeric_limits<uint64_t>::max();
  expect_reject(b.build(), ErrorCode::kFormat, "kv_count", "above the limit");
}

TEST(GgufCorrupt, KvCountLargerThanFile) {
  Builder b = valid();
  b.n_kv_override = 100000;  // under the cap, but cannot fit in the bytes that follow
  expect_reject(b.build(), ErrorCode::kFormat, "kv_count", "only");
}

TEST(GgufCorrupt, TensorCountLargerThanFile) {
  Builder b = valid();
  b.n_tensors_override = 100000;
  expect_reject(b.build(), ErrorCode::kFormat, "tensor_count", "only");
}

// ---- strings and arrays
TEST(GgufCorrupt, StringLongerThanCap) {
  Builder b = valid();
  b.add_str("tokenizer.chat_template", std::string(100, 'x'));
  Limits lim;
  lim.max_string = 64;
  expect_reject(b.build(), ErrorCode::kFormat, "tokenizer.chat_template", "above the limit", Via::kBytes, lim);
}

TEST(GgufCorrupt, StringLongerThanFile) {
  Builder b;
  b.add("general.name", kStr, [](Bytes& o) { o.u64(1000).raw("abc", 3); });
  expect_reject(b.build(), ErrorCode::kFormat, "general.name", "truncated", Via::kFile);
}

TEST(GgufCorrupt, KeyLengthHuge) {
  Builder b;
  b.kv.u64(std::numeric_limits<uint64_t>::max()).raw("k", 1);
  b.n_kv = 1;
  expect_reject(b.build(), ErrorCode::kFormat, "kv[0]", "above the limit");
}

TEST(GgufCorrupt, ArrayLongerThanCap) {
  Builder b = valid();
  b.add("tokenizer.ggml.scores", kArr, [](Bytes& o) {
    o.u32(kF32).u64(20);
    for (int i = 0; i < 20; ++i) o.f32(0);
  });
  Limits lim;
  lim.max_array = 10;
  expect_reject(b.build(), ErrorCode::kFormat, "tokenizer.ggml.scores", "above the limit", Via::kBytes, lim);
}

TEST(GgufCorrupt, ArrayLongerThanFile) {
  Builder b;
  // 1M uint64 elements claimed (under the cap), 2 present: must fail before reserving 8 MB.
  b.add("x", kArr, [](Bytes& o) { o.u32(kU64).u64(1 << 20).u64(1).u64(2); });
  expect_reject(b.build(), ErrorCode::kFormat, "x", "does not fit");
}

TEST(GgufCorrupt, ArrayOfStringsLongerThanFile) {
  Builder b;
  b.add("tokenizer.ggml.tokens", kArr, [](Bytes& o) { o.u32(kStr).u64(1000).str("a").str("b"); });
  expect_reject(b.build(), ErrorCode::kFormat, "tokenizer.ggml.tokens", "does not fit");
}

TEST(GgufCorrupt, ArraysNestedTooDeep) {
  Builder b;
  b.add("deep", kArr, [](Bytes& o) {
    for (int i = 0; i < 4; ++i) o.u32(kArr).u64(1);
    o.u32(kU8).u64(1).u8(0);
  });
  expect_reject(b.build(), ErrorCode::kFormat, "deep", "nested deeper than 4");
}

TEST(GgufCorrupt, UnknownValueType) {
  Builder b = valid();
  b.add("weird", 13, [](Bytes& o) { o.u32(0); });
  expect_reject(b.build(), ErrorCode::kFormat, "weird", "value type 13");
}

TEST(GgufCorrupt, UnknownArrayElementType) {
  Builder b;
  b.add("weird_arr", kArr, [](Bytes& o) { o.u32(99).u64(1).u32(0); });
  expect_reject(b.build(), ErrorCode::kFormat, "weird_arr", "element type 99");
}

TEST(GgufCorrupt, BoolNotZeroOrOne) {
  Builder b;
  b.add("flag", kBool, [](Bytes& o) { o.u8(2); });
  expect_reject(b.build(), ErrorCode::kFormat, "flag", "0 or 1");
}

TEST(GgufCorrupt, TruncatedScalarValue) {
  Builder b;
  b.add("general.alignment", kU32, [](Bytes& o) { o.u16(32); });  // 2 of 4 bytes
  auto bytes = b.build();
  bytes.resize(b.header().size());
  expect_reject(bytes, ErrorCode::kFormat, "general.alignment", "truncated");
}

// ---- keys
TEST(GgufCorrupt, EmptyKey) {
  Builder b = valid();
  b.add_u32("", 1);
  expect_reject(b.build(), ErrorCode::kFormat, "kv[2]", "empty");
}

TEST(GgufCorrupt, DuplicateKey) {
  Builder b = valid();
  b.add_u32("llama.block_count", 3);
  expect_reject(b.build(), ErrorCode::kFormat, "llama.block_count", "appears twice", Via::kFile);
}

// ---- alignment
TEST(GgufCorrupt, AlignmentNotUint32) {
  Builder b = valid();
  b.add("general.alignment", kU64, [](Bytes& o) { o.u64(32); });
  expect_reject(b.build(), ErrorCode::kFormat, "general.alignment", "must be a uint32");
}

TEST(GgufCorrupt, AlignmentNotPowerOfTwo) {
  Builder b = valid();
  b.add_u32("general.alignment", 48);
  expect_reject(b.build(), ErrorCode::kFormat, "general.alignment", "power of two");
}

TEST(GgufCorrupt, AlignmentZero) {
  Builder b = valid();
  b.add_u32("general.alignment", 0);
  expect_reject(b.build(), ErrorCode::kFormat, "general.alignment", "power of two");
}

// ---- tensor infos
TEST(GgufCorrupt, ZeroDims) {
  Builder b = valid();
  b.tensors[1].n_dims = 0;
  b.tensors[1].ne.clear();
  expect_reject(b.build(), ErrorCode::kFormat, "b", "0 dimensions");
}

TEST(GgufCorrupt, FiveDims) {
  Builder b = valid();
  b.tensors[1].ne = {32, 1, 1, 1, 2};
  expect_reject(b.build(), ErrorCode::kFormat, "b", "5 dimensions");
}

TEST(GgufCorrupt, ZeroExtent) {
  Builder b = valid();
  b.tensors[0].ne = {32, 0};
  expect_reject(b.build(), ErrorCode::kFormat, "a", "ne[1] = 0");
}

TEST(GgufCorrupt, ExtentAboveInt64) {
  Builder b = valid();
  b.tensors[0].ne = {32, 1ull << 63};
  expect_reject(b.build(), ErrorCode::kFormat, "a", "overflows");
}

TEST(GgufCorrupt, ElementCountOverflows) {
  Builder b = valid();
  b.tensors[0].ne = {1ull << 32, 1ull << 32};  // each fine, product 2^64
  expect_reject(b.build(), ErrorCode::kFormat, "a", "element count overflows");
}

TEST(GgufCorrupt, ByteSizeOverflows) {
  Builder b = valid();
  b.tensors[0].ne = {1ull << 62};  // 2^62 f32 elements fit int64, 2^64 bytes do not
  b.data_size_override = 0;
  expect_reject(b.build(), ErrorCode::kFormat, "a", "byte size overflows");
}

TEST(GgufCorrupt, UnsupportedTensorType) {
  Builder b = valid();
  b.tensors[1].type = 16;  // iq2_xxs
  expect_reject(b.build(), ErrorCode::kUnsupported, "b", "iq2_xxs");
}

TEST(GgufCorrupt, UnknownTensorType) {
  Builder b = valid();
  b.tensors[1].type = 999;
  b.data_size_override = 4096;
  expect_reject(b.build(), ErrorCode::kUnsupported, "b", "unknown (id 999)", Via::kFile);
}

TEST(GgufCorrupt, RowNotMultipleOfBlock) {
  Builder b = valid();
  b.tensors[1].ne = {48};  // q8_0 blocks hold 32
  b.data_size_override = 4096;
  expect_reject(b.build(), ErrorCode::kFormat, "b", "not a multiple of the block size 32");
}

TEST(GgufCorrupt, MisalignedOffset) {
  Builder b = valid();
  b.tensors[1].offset = 256 + 4;
  expect_reject(b.build(), ErrorCode::kFormat, "b", "not a multiple of the alignment 32");
}

TEST(GgufCorrupt, DataPastEndOfFile) {
  Builder b = valid();
  b.data_size_override = b.data_size() - 1;  // last tensor loses one byte
  expect_reject(b.build(), ErrorCode::kFormat, "b", "past the end of the file", Via::kFile);
}

TEST(GgufCorrupt, OffsetOverflows) {
  Builder b = valid();
  b.tensors[1].offset = std::numeric_limits<uint64_t>::max() - 31;  // aligned, wraps when added
  expect_reject(b.build(), ErrorCode::kFormat, "b", "past the end of the file");
}

TEST(GgufCorrupt, OverlappingTensors) {
  Builder b = valid();
  b.tensors[1].offset = 224;  // a spans [0, 256)
  b.data_size_override = 1024;
  expect_reject(b.build(), ErrorCode::kFormat, "b", "overlaps tensor 'a'", Via::kFile);
}

TEST(GgufCorrupt, DuplicateTensorName) {
  Builder b = valid();
  b.tensors[1].name = "a";
  expect_reject(b.build(), ErrorCode::kFormat, "a", "appears twice");
}

TEST(GgufCorrupt, EmptyTensorName) {
  Builder b = valid();
  b.tensors[1].name = "";
  expect_reject(b.build(), ErrorCode::kFormat, "tensor[1]", "empty name");
}

TEST(GgufCorrupt, TensorInfoTruncated) {
  Builder b = valid();
  auto bytes = b.header().b;
  bytes.resize(bytes.size() - 4);  // the last tensor's offset is cut
  expect_reject(bytes, ErrorCode::kFormat, "b", "truncated");
}

}  // namespace
}  // namespace kiln::gguf
