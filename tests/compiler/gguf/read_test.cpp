// Positive tests of the GGUF reader: every value type round-trips, nested
// arrays, v2 and v3, every supported tensor type, alignment, mmap path,
// typed getters and value formatting.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "compiler/gguf/gguf.h"
#include "gguf_builder.h"

namespace kiln::gguf {
namespace {
using namespace kiln::gguf::testing;

Builder every_value_type() {
  Builder b;
  b.add("u8", kU8, [](Bytes& o) { o.u8(250); });
  b.add("i8", kI8, [](Bytes& o) { o.i8(-120); });
  b.add("u16", kU16, [](Bytes& o) { o.u16(65000); });
  b.add("i16", kI16, [](Bytes& o) { o.i16(-32000); });
  b.add("u32", kU32, [](Bytes& o) { o.u32(4000000000u); });
  b.add("i32", kI32, [](Bytes& o) { o.i32(-2000000000); });
  b.add("f32", kF32, [](Bytes& o) { o.f32(1e-5f); });
  b.add("bool_t", kBool, [](Bytes& o) { o.u8(1); });
  b.add("bool_f", kBool, [](Bytes& o) { o.u8(0); });
  b.add("str", kStr, [](Bytes& o) { o.str("héllo\nworld"); });
  b.add("empty_str", kStr, [](Bytes& o) { o.str(""); });
  b.add("u64", kU64, [](Bytes& o) { o.u64(18000000000000000000ull); });
  b.add("i64", kI64, [](Bytes& o) { o.i64(-9000000000000000000ll); });
  b.add("f64", kF64, [](Bytes& o) { o.f64(3.141592653589793); });
  b.add("arr_i32", kArr, [](Bytes& o) { o.u32(kI32).u64(3).i32(1).i32(-2).i32(3); });
  b.add("arr_str", kArr, [](Bytes& o) { o.u32(kStr).u64(2).str("a").str("<|bos|>"); });
  b.add("arr_f32", kArr, [](Bytes& o) { o.u32(kF32).u64(2).f32(0.5f).f32(-1.25f); });
  b.add("arr_bool", kArr, [](Bytes& o) { o.u32(kBool).u64(2).u8(1).u8(0); });
  b.add("arr_u8", kArr, [](Bytes& o) { o.u32(kU8).u64(3).u8(1).u8(2).u8(255); });
  b.add("arr_empty", kArr, [](Bytes& o) { o.u32(kU64).u64(0); });
  return b;
}

TEST(GgufRead, EveryValueTypeRoundTrips) {
  File f = File::from_bytes(every_value_type().build());
  EXPECT_EQ(f.version(), 3u);
  ASSERT_EQ(f.metadata().size(), 20u);
  EXPECT_EQ(f.metadata()[0].key, "u8");  // file order kept
  EXPECT_EQ(f.find("u8")->type, ValueType::UINT8);
  EXPECT_EQ(*f.get_u64("u8"), 250u);
  EXPECT_EQ(*f.get_i64("i8"), -120);
  EXPECT_EQ(f.find("i8")->type, ValueType::INT8);
  EXPECT_EQ(*f.get_u32("u16"), 65000u);
  EXPECT_EQ(*f.get_i64("i16"), -32000);
  EXPECT_EQ(*f.get_u32("u32"), 4000000000u);
  EXPECT_EQ(*f.get_i64("i32"), -2000000000);
  EXPECT_EQ(*f.get_f32("f32"), 1e-5f);
  EXPECT_EQ(f.find("f32")->type, ValueType::FLOAT32);
  EXPECT_EQ(*f.get_bool("bool_t"), true);
  EXPECT_EQ(*f.get_bool("bool_f"), false);
  EXPECT_EQ(*f.get_string("str"), "héllo\nworld");
  EXPECT_EQ(*f.get_string("empty_str"), "");
  EXPECT_EQ(*f.get_u64("u64"), 18000000000000000000ull);
  EXPECT_EQ(*f.get_i64("i64"), -9000000000000000000ll);
  EXPECT_EQ(*f.get_f64("f64"), 3.141592653589793);
  EXPECT_EQ(*f.get_i64_array("arr_i32"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*f.get_string_array("arr_str"), (std::vector<std::string>{"a", "<|bos|>"}));
  EXPECT_EQ(*f.get_f32_array("arr_f32"), (std::vector<float>{0.5f, -1.25f}));
  const Array& bools = std::get<Array>(f.find("arr_bool")->v);
  EXPECT_EQ(bools.elem_type, ValueType::BOOL);
  ASSERT_EQ(bools.items.size(), 2u);
  EXPECT_TRUE(std::get<bool>(bools.items[0].v));
  EXPECT_FALSE(std::get<bool>(bools.items[1].v));
  EXPECT_EQ(*f.get_i64_array("arr_u8"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_TRUE(f.get_i64_array("arr_empty")->empty());
  EXPECT_FALSE(f.get_u64("absent").has_value());
  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_TRUE(f.tensors().empty());
}

TEST(GgufRead, NestedArrays) {
  Builder b;
  // [[1, 2], [3]] of int32
  b.add("aa", kArr, [](Bytes& o) {
    o.u32(kArr).u64(2);
    o.u32(kI32).u64(2).i32(1).i32(2);
    o.u32(kI32).u64(1).i32(3);
  });
  // [[["x"]], [["y", "z"]]]: depth 3 of strings
  b.add("aaa", kArr, [](Bytes& o) {
    o.u32(kArr).u64(2);
    o.u32(kArr).u64(1).u32(kStr).u64(1).str("x");
    o.u32(kArr).u64(1).u32(kStr).u64(2).str("y").str("z");
  });
  // depth exactly 4 (the default limit) is accepted
  b.add("d4", kArr, [](Bytes& o) {
    o.u32(kArr).u64(1).u32(kArr).u64(1).u32(kArr).u64(1).u32(kU16).u64(1).u16(7);
  });
  File f = File::from_bytes(b.build());
  const Array& aa = std::get<Array>(f.find("aa")->v);
  EXPECT_EQ(aa.elem_type, ValueType::ARRAY);
  ASSERT_EQ(aa.items.size(), 2u);
  const Array& first = std::get<Array>(aa.items[0].v);
  EXPECT_EQ(first.elem_type, ValueType::INT32);
  ASSERT_EQ(first.items.size(), 2u);
  EXPECT_EQ(std::get<int64_t>(first.items[1].v), 2);
  EXPECT_EQ(std::get<int64_t>(std::get<Array>(aa.items[1].v).items[0].v), 3);
  const Array& aaa = std::get<Array>(f.find("aaa")->v);
  const Array& inner = std::get<Array>(std::get<Array>(aaa.items[1].v).items[0].v);
  EXPECT_EQ(std::get<std::string>(inner.items[1].v), "z");
  const Value* d4 = f.find("d4");
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(d4->type, ValueType::ARRAY);
    d4 = &std::get<Array>(d4->v).items[0];
  }
  EXPECT_EQ(std::get<uint64_t>(d4->v), 7u);
  EXPECT_EQ(format_value(*f.find("aa")), "[[1, 2], [3]]");
  // A nested array is not an array of integers.
  EXPECT_THROW(f.get_i64_array("aa"), Error);
}

TEST(GgufRead, Version2And3) {
  for (uint32_t v : {2u, 3u}) {
    Builder b = every_value_type();
    b.version = v;
    b.tensor({"w", {64, 2}, 8});
    File f = File::from_bytes(b.build());
    EXPECT_EQ(f.version(), v);
    EXPECT_EQ(*f.get_string("str"), "héllo\nworld");
    ASSERT_EQ(f.tensors().size(), 1u);
    EXPECT_EQ(f.tensors()[0].n_bytes, 2u * 2 * 34);
  }
}

TEST(GgufRead, EveryTensorTypeGeometryAndData) {
  Builder b;
  b.add_str("general.architecture", "llama");
  std::vector<std::string> names;
  for (const auto& t : ggml_types()) {
    std::string name = std::string("t_") + t.name;
    b.tensor({name, {t.block_elems * 2, 3}, t.id});
  }
  auto bytes = b.build();
  File f = File::from_bytes(bytes);
  EXPECT_EQ(f.architecture(), "llama");
  ASSERT_EQ(f.tensors().size(), ggml_types().size());
  auto offs = b.offsets();
  uint64_t header = b.header().size();
  EXPECT_EQ(f.data_offset(), (header + 31) / 32 * 32);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.file_size(), bytes.size());
  for (size_t i = 0; i < ggml_types().size(); ++i) {
    const auto& g = ggml_types()[i];
    const TensorInfo& t = f.tensors()[i];
    SCOPED_TRACE(g.name);
    EXPECT_EQ(t.name, std::string("t_") + g.name);
    EXPECT_EQ(static_cast<uint32_t>(t.type), g.id);
    EXPECT_EQ(t.ne, (std::vector<int64_t>{static_cast<int64_t>(g.block_elems * 2), 3}));
    EXPECT_EQ(t.n_elements, g.block_elems * 6);
    EXPECT_EQ(t.n_bytes, g.block_bytes * 6);
    EXPECT_EQ(t.offset, offs[i]);
    ASSERT_NE(t.data, nullptr);
    // Data pointer lands on the bytes the builder wrote at data_offset + offset.
    uint64_t abs = f.data_offset() + t.offset;
    EXPECT_EQ(std::memcmp(t.data, bytes.data() + abs, t.n_bytes), 0);
    EXPECT_EQ(f.find_tensor(t.name), &t);
  }
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
}

TEST(GgufRead, FourDimsAndI32Tensor) {
  Builder b;
  b.tensor({"x", {2, 3, 4, 5}, 0});
  b.tensor({"ids", {7}, 26});
  File f = File::from_bytes(b.build());
  EXPECT_EQ(f.tensors()[0].n_elements, 120u);
  EXPECT_EQ(f.tensors()[0].n_bytes, 480u);
  EXPECT_EQ(f.tensors()[1].type, ir::DType::I32);
  EXPECT_EQ(f.tensors()[1].n_bytes, 28u);
}

TEST(GgufRead, CustomAlignment) {
  Builder b;
  b.alignment = 256;
  b.add_u32("general.alignment", 256);
  b.tensor({"a", {32}, 0});   // 128 bytes; next at 256
  b.tensor({"b", {32}, 2});
  File f = File::from_bytes(b.build());
  EXPECT_EQ(f.alignment(), 256u);
  EXPECT_EQ(f.data_offset() % 256, 0u);
  EXPECT_GE(f.data_offset(), b.header().size());
  EXPECT_LT(f.data_offset(), b.header().size() + 256);
  EXPECT_EQ(f.tensors()[1].offset, 256u);
}

TEST(GgufRead, TensorsOutOfOffsetOrderAreFine) {
  Builder b;
  b.tensor({"late", {8}, 0, 64});
  b.tensor({"early", {8}, 0, 0});
  File f = File::from_bytes(b.build());
  EXPECT_EQ(f.find_tensor("late")->offset, 64u);
  EXPECT_EQ(f.find_tensor("early")->offset, 0u);
}

TEST(GgufRead, OpenMapsFile) {
  Builder b = every_value_type();
  b.tensor({"w", {32, 4}, 3});
  auto bytes = b.build();
  std::string path = write_temp(bytes, "open_ok");
  File f = File::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.file_size(), bytes.size());
  EXPECT_EQ(*f.get_string("str"), "héllo\nworld");
  const TensorInfo& t = f.tensors()[0];
  EXPECT_EQ(std::memcmp(t.data, bytes.data() + f.data_offset() + t.offset, t.n_bytes), 0);
  File moved = std::move(f);  // the mapping moves with the object
  EXPECT_EQ(moved.tensors()[0].n_bytes, 4u * 20);
  std::filesystem::remove(path);
}

TEST(GgufRead, OpenMissingFileIsIoError) {
  try {
    File::open("/nonexistent/kiln/model.gguf");
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/kiln/model.gguf"), std::string::npos);
  }
}

TEST(GgufRead, TypedGettersConvertAndCheck) {
  File f = File::from_bytes(every_value_type().build());
  // get_f64 / get_f32 accept integers.
  EXPECT_EQ(*f.get_f64("u16"), 65000.0);
  EXPECT_EQ(*f.get_f32("i8"), -120.0f);
  // get_u64 accepts a non-negative signed value; refuses a negative one.
  auto expect_error = [](auto&& fn, const std::string& key) {
    try {
      fn();
      ADD_FAILURE() << "expected kiln::Error for " << key;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat);
      EXPECT_EQ(e.field(), key);
    }
  };
  expect_error([&] { f.get_u64("i8"); }, "i8");
  expect_error([&] { f.get_u32("u64"); }, "u64");       // does not fit in 32 bits
  expect_error([&] { f.get_i64("u64"); }, "u64");       // above INT64_MAX
  expect_error([&] { f.get_string("u32"); }, "u32");
  expect_error([&] { f.get_u64("str"); }, "str");
  expect_error([&] { f.get_u64("f32"); }, "f32");       // a float is not an integer
  expect_error([&] { f.get_bool("u8"); }, "u8");
  expect_error([&] { f.get_f64("str"); }, "str");
  expect_error([&] { f.get_string_array("arr_i32"); }, "arr_i32");
  expect_error([&] { f.get_i64_array("arr_str"); }, "arr_str");
  expect_error([&] { f.get_f32_array("arr_str"); }, "arr_str");
  expect_error([&] { f.get_string_array("str"); }, "str");
  expect_error([&] { f.architecture(); }, "general.architecture");
}

TEST(GgufRead, FormatValue) {
  File f = File::from_bytes(every_value_type().build());
  EXPECT_EQ(format_value(*f.find("u8")), "250");
  EXPECT_EQ(format_value(*f.find("i64")), "-9000000000000000000");
  EXPECT_EQ(format_value(*f.find("f32")), "1e-05");
  EXPECT_EQ(format_value(*f.find("bool_t")), "true");
  EXPECT_EQ(format_value(*f.find("str")), "\"héllo\\nworld\"");
  EXPECT_EQ(format_value(*f.find("arr_i32")), "[1, -2, 3]");
  EXPECT_EQ(format_value(*f.find("arr_i32"), 2), "[1, -2, … 3 items]");
  EXPECT_EQ(format_value(*f.find("arr_empty")), "[]");
  EXPECT_EQ(value_type_name(ValueType::FLOAT64), "float64");
}

}  // namespace
}  // namespace kiln::gguf
