// Test helper: writes GGUF images byte by byte so tests can build both valid
// files and files broken in exactly one place. Layout facts from ggml
// docs/gguf.md; nothing here is shared with the reader under test.
#pragma once
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

namespace kiln::gguf::testing {

// Little-endian byte writer.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& i8(int8_t v) { return put(v); }
  Bytes& u16(uint16_t v) { return put(v); }
  Bytes& i16(int16_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& i32(int32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& i64(int64_t v) { return put(v); }
  Bytes& f32(float v) { return put(v); }
  Bytes& f64(double v) { return put(v); }
  Bytes& raw(const void* p, size_t n) {
    auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  Bytes& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
  Bytes& append(const Bytes& o) { return raw(o.b.data(), o.b.size()); }
  size_t size() const { return b.size(); }
};

// GGUF value type ids (docs/gguf.md).
enum VT : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kStr = 8, kArr = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// ggml type ids and block geometry (ggml.c type_traits), written out here so
// the tests do not depend on ir/dtype.cpp being right.
struct GgmlType {
  uint32_t id;
  const char* name;
  uint64_t block_elems, block_bytes;
};
inline const std::vector<GgmlType>& ggml_types() {
  static const std::vector<GgmlType> t = {
      {0, "f32", 1, 4},      {1, "f16", 1, 2},       {30, "bf16", 1, 2},
      {2, "q4_0", 32, 18},   {3, "q4_1", 32, 20},    {6, "q5_0", 32, 22},
      {7, "q5_1", 32, 24},   {8, "q8_0", 32, 34},    {10, "q2_k", 256, 84},
      {11, "q3_k", 256, 110}, {12, "q4_k", 256, 144}, {13, "q5_k", 256, 176},
      {14, "q6_k", 256, 210},
  };
  return t;
}
inline uint64_t ggml_bytes(uint32_t id, uint64_t n) {
  if (id == 26) return n * 4;  // i32
  for (const auto& t : ggml_types())
    if (t.id == id) return n / t.block_elems * t.block_bytes;
  return 0;
}

struct TensorSpec {
  TensorSpec(std::string n, std::vector<uint64_t> dims, uint32_t t, std::optional<uint64_t> off = {})
      : name(std::move(n)), ne(std::move(dims)), type(t), offset(off) {}
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type = 0;
  std::optional<uint64_t> offset;   // default: packed, aligned, in order
  std::optional<uint32_t> n_dims;   // default: ne.size()
};

struct Builder {
  uint32_t version = 3;
  uint64_t alignment = 32;          // used for auto offsets and padding
  std::optional<uint64_t> n_tensors_override, n_kv_override;
  Bytes kv;                         // encoded key/values
  uint64_t n_kv = 0;
  std::vector<TensorSpec> tensors;
  std::optional<uint64_t> data_size_override;  // truncate / extend the data section
  uint8_t fill_seed = 1;

  // A key/value whose value bytes are written by `value`.
  Builder& add(const std::string& key, uint32_t type, const std::function<void(Bytes&)>& value) {
    kv.str(key).u32(type);
    value(kv);
    ++n_kv;
    return *this;
  }
  Builder& add_u32(const std::string& k, uint32_t v) { return add(k, kU32, [=](Bytes& b) { b.u32(v); }); }
  Builder& add_str(const std::string& k, const std::string& v) {
    return add(k, kStr, [=](Bytes& b) { b.str(v); });
  }
  Builder& tensor(TensorSpec t) {
    tensors.push_back(std::move(t));
    return *this;
  }

  // Offsets as the builder lays them out (explicit ones kept).
  std::vector<uint64_t> offsets() const {
    std::vector<uint64_t> out;
    uint64_t next = 0;
    for (const auto& t : tensors) {
      uint64_t n = 1;
      for (uint64_t d : t.ne) n *= d;
      uint64_t off = t.offset ? *t.offset : next;
      out.push_back(off);
      uint64_t end = off + ggml_bytes(t.type, n);
      next = std::max(next, (end + alignment - 1) / alignment * alignment);
    }
    return out;
  }
  uint64_t data_size() const {
    uint64_t end = 0;
    auto offs = offsets();
    for (size_t i = 0; i < tensors.size(); ++i) {
      uint64_t n = 1;
      for (uint64_t d : tensors[i].ne) n *= d;
      end = std::max(end, offs[i] + ggml_bytes(tensors[i].type, n));
    }
    return end;
  }

  Bytes header() const {
    Bytes b;
    b.raw("GGUF", 4).u32(version);
    b.u64(n_tensors_override.value_or(tensors.size()));
    b.u64(n_kv_override.value_or(n_kv));
    b.append(kv);
    auto offs = offsets();
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      b.str(t.name).u32(t.n_dims.value_or(static_cast<uint32_t>(t.ne.size())));
      for (uint64_t d : t.ne) b.u64(d);
      b.u32(t.type).u64(offs[i]);
    }
    return b;
  }

  std::vector<uint8_t> build() const {
    Bytes b = header();
    while (b.size() % alignment) b.u8(0);
    uint64_t n = data_size_override.value_or(data_size());
    for (uint64_t i = 0; i < n; ++i) b.u8(static_cast<uint8_t>(i * 31 + fill_seed));
    return b.b;
  }
};

inline std::string write_temp(const std::vector<uint8_t>& bytes, const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "kiln_test_gguf";
  std::filesystem::create_directories(dir);
  auto path = dir / (name + "_" + std::to_string(::getpid()) + ".gguf");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
  return path.string();
}

}  // namespace kiln::gguf::testing
