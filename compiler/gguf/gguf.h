// GGUF reader: memory-maps a .gguf file, validates it completely before use
// and exposes metadata and tensors. The file is untrusted input: every check
// failure throws kiln::Error{kFormat or kUnsupported} whose field() names the
// key / tensor / header field at fault. Spec: ggml docs/gguf.md (v2, v3).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ir/dtype.h"
#include "ir/error.h"

namespace kiln::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view value_type_name(ValueType t);

struct Value;
struct Array {
  ValueType elem_type;
  std::vector<Value> items;
};
// Scalars are widened: all unsigned ints -> uint64_t, signed -> int64_t,
// floats -> double; `type` keeps the on-disk type.
struct Value {
  ValueType type;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;
};

struct KeyValue {
  std::string key;
  Value value;
};

struct TensorInfo {
  std::string name;
  ir::DType type;
  std::vector<int64_t> ne;   // ggml order: ne[0] is the contiguous (row) dimension
  uint64_t offset = 0;       // relative to the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // points into the mapping
};

// Hard caps that bound what an untrusted header can make us allocate.
struct Limits {
  uint64_t max_tensors = 1u << 20;
  uint64_t max_kv = 1u << 20;
  uint64_t max_string = 1u << 26;        // 64 MiB for one string
  uint64_t max_array = 1u << 26;         // elements in one array
  uint32_t max_array_depth = 4;          // nested arrays
  // Memory the parsed header may take: each metadata value costs about
  // sizeof(Value) in memory however few bytes it has on disk (48x for an array
  // of uint8), so without a budget a small hostile file could make the reader
  // allocate gigabytes. Charged before anything is allocated: every value
  // (sizeof(Value)), string bytes past the small-string buffer, every key and
  // tensor info with its index entry. Real models need a few tens of MiB
  // (SmolLM2: 6.8 MiB; Gemma 3 and its 262k-token vocabulary: 36 MiB).
  uint64_t max_metadata_bytes = 256ull << 20;
};

class File {
 public:
  // Maps and validates; throws kiln::Error.
  static File open(const std::string& path, const Limits& limits = {});
  // Parses an in-memory image (tests, fuzzing). The bytes are copied.
  static File from_bytes(std::vector<uint8_t> bytes, const Limits& limits = {});

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  uint32_t version() const;
  uint64_t alignment() const;
  uint64_t data_offset() const;   // absolute offset of the tensor data section
  uint64_t file_size() const;
  const std::string& path() const;

  const std::vector<KeyValue>& metadata() const;
  const Value* find(std::string_view key) const;

  // Typed getters: nullopt if the key is absent; throw kiln::Error(kFormat,
  // field=key) if present with an incompatible type. Integer getters accept
  // any integer type whose value fits; get_f32/f64 accept any numeric type.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<uint64_t> get_u64(std::string_view key) const;
  std::optional<uint32_t> get_u32(std::string_view key) const;
  std::optional<int64_t> get_i64(std::string_view key) const;
  std::optional<double> get_f64(std::string_view key) const;
  std::optional<float> get_f32(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<float>> get_f32_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_i64_array(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* find_tensor(std::string_view name) const;

  // general.architecture, or throws kFormat if missing.
  std::string architecture() const;

 private:
  struct Impl;
  explicit File(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Prints the key/value in human form (arrays abbreviated), for `kiln inspect`.
std::string format_value(const Value& v, size_t max_items = 8);

}  // namespace kiln::gguf
