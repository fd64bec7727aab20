// GGUF reader. Layout (ggml docs/gguf.md, v2/v3, little-endian):
//   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to general.alignment (default 32) | tensor data
// where string = u64 length + bytes (no terminator) and an array value is
// u32 elem_type | u64 count | count x value.
//
// The whole header is untrusted: every length is checked against both a cap
// (Limits) and the bytes actually remaining before anything is allocated, and
// every size is computed with overflow checks before it is used.
#include "compiler/gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "ir/fault.h"

namespace kiln::gguf {
namespace {

constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;

[[noreturn]] void fail(std::string field, std::string msg, ErrorCode code = ErrorCode::kFormat) {
  throw Error(code, std::move(msg), std::move(field));
}

bool is_valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::FLOAT64); }

// Bytes a scalar of type t occupies on disk; 0 for STRING / ARRAY.
uint64_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    case ValueType::STRING: case ValueType::ARRAY: return 0;
  }
  return 0;
}

// The fewest bytes one element of type t can take: used to reject an array
// count that cannot possibly fit in the rest of the file before reserving.
uint64_t min_encoded_size(ValueType t) {
  if (t == ValueType::STRING) return 8;        // u64 length
  if (t == ValueType::ARRAY) return 4 + 8;     // u32 type + u64 count
  return scalar_size(t);
}

// Bounds-checked little-endian cursor over the untrusted image.
class Reader {
 public:
  Reader(const uint8_t* data, uint64_t size, const Limits& limits)
      : data_(data), size_(size), limits_(limits) {}

  uint64_t pos() const { return pos_; }

  // Counts `bytes` of memory the parsed header will take against
  // Limits::max_metadata_bytes; call before allocating them.
  void charge(uint64_t bytes, const std::string& field, const std::string& what) {
    if (__builtin_add_overflow(used_, bytes, &used_) || used_ > limits_.max_metadata_bytes)
      fail(field, fmt::format("{} would bring the memory the file's header takes past {} MiB, the "
                              "reader's budget for metadata (corrupt or hostile file; a real model "
                              "needs a few tens of MiB)",
                              what, limits_.max_metadata_bytes >> 20));
  }
  uint64_t used() const { return used_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& field, const char* what) {
    if (n > remaining())
      fail(field, fmt::format("file truncated: {} needs {} bytes at offset {}, only {} left "
                              "(the file is incomplete or corrupt; re-download it)",
                              what, n, pos_, remaining()));
  }

  template <typename T>
  T scalar(const std::string& field, const char* what) {
    need(sizeof(T), field, what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // host is little-endian (x86-64 / aarch64)
    pos_ += sizeof(T);
    return v;
  }
  uint32_t u32(const std::string& field, const char* what) { return scalar<uint32_t>(field, what); }
  uint64_t u64(const std::string& field, const char* what) { return scalar<uint64_t>(field, what); }

  std::string string(const std::string& field, const char* what) {
    uint64_t len = u64(field, what);
    if (len > limits_.max_string)
      fail(field, fmt::format("{} has length {} bytes, above the limit of {} "
                              "(corrupt length field)", what, len, limits_.max_string));
    need(len, field, what);
    if (len > kSmallString) charge(len + 1, field, fmt::format("{} of {} bytes", what, len));
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

  Value value(ValueType type, const std::string& field, uint32_t depth) {
    Value out{type, uint64_t{0}};
    switch (type) {
      case ValueType::UINT8: out.v = uint64_t{scalar<uint8_t>(field, "uint8 value")}; break;
      case ValueType::UINT16: out.v = uint64_t{scalar<uint16_t>(field, "uint16 value")}; break;
      case ValueType::UINT32: out.v = uint64_t{scalar<uint32_t>(field, "uint32 value")}; break;
      case ValueType::UINT64: out.v = uint64_t{scalar<uint64_t>(field, "uint64 value")}; break;
      case ValueType::INT8: out.v = int64_t{scalar<int8_t>(field, "int8 value")}; break;
      case ValueType::INT16: out.v = int64_t{scalar<int16_t>(field, "int16 value")}; break;
      case ValueType::INT32: out.v = int64_t{scalar<int32_t>(field, "int32 value")}; break;
      case ValueType::INT64: out.v = int64_t{scalar<int64_t>(field, "int64 value")}; break;
      case ValueType::FLOAT32: out.v = double{scalar<float>(field, "float32 value")}; break;
      case ValueType::FLOAT64: out.v = double{scalar<double>(field, "float64 value")}; break;
      case ValueType::BOOL: {
        uint8_t b = scalar<uint8_t>(field, "bool value");
        if (b > 1) fail(field, fmt::format("bool value is {}, must be 0 or 1", b));
        out.v = b != 0;
        break;
      }
      case ValueType::STRING: out.v = string(field, "string value"); break;
      case ValueType::ARRAY: {
        if (depth >= limits_.max_array_depth)
          fail(field, fmt::format("arrays nested deeper than {} levels", limits_.max_array_depth));
        uint32_t et = u32(field, "array element type");
        if (!is_valid_value_type(et))
          fail(field, fmt::format("array element type {} is not a GGUF value type (0..12)", et));
        Array arr{static_cast<ValueType>(et), {}};
        uint64_t n = u64(field, "array length");
        if (n > limits_.max_array)
          fail(field, fmt::format("array has {} elements, above the limit of {} (corrupt length field)",
                                  n, limits_.max_array));
        uint64_t min_bytes = 0;
        if (__builtin_mul_overflow(n, min_encoded_size(arr.elem_type), &min_bytes) ||
            min_bytes > remaining())
          fail(field, fmt::format("array of {} {} elements does not fit in the {} bytes left in the file",
                                  n, value_type_name(arr.elem_type), remaining()));
        charge(n * sizeof(Value), field,
               fmt::format("metadata key '{}': an array of {} {} items ({} bytes each in memory)", field, n,
                           value_type_name(arr.elem_type), sizeof(Value)));
        arr.items.reserve(static_cast<size_t>(n));
        for (uint64_t i = 0; i < n; ++i) arr.items.push_back(value(arr.elem_type, field, depth + 1));
        out.v = std::move(arr);
        break;
      }
    }
    return out;
  }

 private:
  static constexpr uint64_t kSmallString = 15;  // fits std::string's own buffer (libstdc++)
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t used_ = 0;  // bytes charged against limits_.max_metadata_bytes
  const Limits& limits_;
};

// What one key/value or tensor info costs besides its value and name: the
// record itself and its node in the name index.
constexpr uint64_t kIndexNodeBytes = 64;

}  // namespace

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8: return "uint8";
    case ValueType::INT8: return "int8";
    case ValueType::UINT16: return "uint16";
    case ValueType::INT16: return "int16";
    case ValueType::UINT32: return "uint32";
    case ValueType::INT32: return "int32";
    case ValueType::FLOAT32: return "float32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "uint64";
    case ValueType::INT64: return "int64";
    case ValueType::FLOAT64: return "float64";
  }
  return "unknown";
}

struct File::Impl {
  std::string path;
  std::vector<uint8_t> bytes;          // from_bytes
  void* map = nullptr;                 // open
  uint64_t map_size = 0;
  const uint8_t* data = nullptr;
  uint64_t size = 0;

  uint32_t version = 0;
  uint64_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;
  std::vector<KeyValue> kv;
  std::map<std::string, size_t, std::less<>> kv_index;
  std::vector<TensorInfo> tensors;
  std::map<std::string, size_t, std::less<>> tensor_index;

  ~Impl() {
    if (map) munmap(map, map_size);
  }

  void parse(const Limits& limits);
};

void File::Impl::parse(const Limits& limits) {
  Reader r(data, size, limits);

  // ---- header
  if (size < 4 || std::memcmp(data, "GGUF", 4) != 0)
    fail("magic", "not a GGUF file: it does not start with the magic bytes \"GGUF\"");
  r.need(4, "magic", "magic");
  r.scalar<uint32_t>("magic", "magic");
  version = r.u32("version", "version");
  if (version == 1)
    fail("version", "GGUF version 1 is not supported (it predates 64-bit lengths); "
                    "re-convert the model with a current llama.cpp convert script to get v3",
         ErrorCode::kUnsupported);
  if (version != 2 && version != 3) {
    uint32_t swapped = __builtin_bswap32(version);
    if (swapped == 2 || swapped == 3)
      fail("version", "this is a big-endian GGUF file; kiln reads little-endian GGUF only "
                      "(re-convert the model without --bigendian)", ErrorCode::kUnsupported);
    fail("version", fmt::format("unsupported GGUF version {} (kiln reads versions 2 and 3)", version),
         ErrorCode::kUnsupported);
  }
  uint64_t n_tensors = r.u64("tensor_count", "tensor count");
  uint64_t n_kv = r.u64("kv_count", "metadata key/value count");
  if (n_tensors > limits.max_tensors)
    fail("tensor_count", fmt::format("header declares {} tensors, above the limit of {} (corrupt header)",
                                     n_tensors, limits.max_tensors));
  if (n_kv > limits.max_kv)
    fail("kv_count", fmt::format("header declares {} metadata keys, above the limit of {} (corrupt header)",
                                 n_kv, limits.max_kv));
  // Each key/value takes at least 8 (key length) + 1 (key) + 4 (type) bytes, and each tensor info
  // at least 8 + 1 + 4 + 8 + 4 + 8: reject counts the file cannot hold before reserving memory.
  uint64_t min_kv_bytes = 0;
  if (__builtin_mul_overflow(n_kv, uint64_t{13}, &min_kv_bytes) || min_kv_bytes > r.remaining())
    fail("kv_count", fmt::format("header declares {} metadata keys but only {} bytes follow", n_kv,
                                 r.remaining()));

  // ---- metadata
  kv.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string idx = fmt::format("kv[{}]", i);
    std::string key = r.string(idx, "metadata key");
    if (key.empty()) fail(idx, fmt::format("metadata key #{} is empty", i));
    if (kv_index.count(key)) fail(key, fmt::format("metadata key '{}' appears twice", key));
    r.charge(sizeof(KeyValue) + kIndexNodeBytes + (key.size() > 15 ? key.size() + 1 : 0), key,
             fmt::format("metadata key '{}'", key));
    uint32_t t = r.u32(key, "value type");
    if (!is_valid_value_type(t))
      fail(key, fmt::format("metadata key '{}' has value type {}, not a GGUF value type (0..12)", key, t));
    Value v = r.value(static_cast<ValueType>(t), key, 0);
    kv_index.emplace(key, kv.size());
    kv.push_back(KeyValue{std::move(key), std::move(v)});
  }

  if (auto it = kv_index.find("general.alignment"); it != kv_index.end()) {
    const Value& v = kv[it->second].value;
    if (v.type != ValueType::UINT32)
      fail("general.alignment", fmt::format("general.alignment must be a uint32, found {}",
                                            value_type_name(v.type)));
    uint64_t a = std::get<uint64_t>(v.v);
    if (a == 0 || (a & (a - 1)) != 0)
      fail("general.alignment", fmt::format("general.alignment is {}, must be a power of two", a));
    alignment = a;
  }

  // ---- tensor infos
  uint64_t min_tensor_bytes = 0;
  if (__builtin_mul_overflow(n_tensors, uint64_t{33}, &min_tensor_bytes) || min_tensor_bytes > r.remaining())
    fail("tensor_count", fmt::format("header declares {} tensors but only {} bytes follow", n_tensors,
                                     r.remaining()));
  tensors.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string idx = fmt::format("tensor[{}]", i);
    TensorInfo ti;
    ti.name = r.string(idx, "tensor name");
    if (ti.name.empty()) fail(idx, fmt::format("tensor #{} has an empty name", i));
    const std::string& f = ti.name;
    if (tensor_index.count(f)) fail(f, fmt::format("tensor name '{}' appears twice", f));
    r.charge(sizeof(TensorInfo) + kIndexNodeBytes + 4 * sizeof(int64_t) + (f.size() > 15 ? f.size() + 1 : 0), f,
             fmt::format("tensor info '{}'", f));
    uint32_t n_dims = r.u32(f, "tensor n_dims");
    if (n_dims < 1 || n_dims > kMaxDims)
      fail(f, fmt::format("tensor '{}' has {} dimensions, must be 1..{}", f, n_dims, kMaxDims));
    // Rule for 0: every dimension must be >= 1. An empty tensor carries no weights, no
    // converter writes one, and allowing it would let a tensor sit anywhere (size 0).
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = r.u64(f, "tensor dimension");
      if (ne == 0) fail(f, fmt::format("tensor '{}' has ne[{}] = 0; every dimension must be >= 1", f, d));
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(n_elem, ne, &n_elem) ||
          n_elem > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(f, fmt::format("tensor '{}': element count overflows (ne[{}] = {})", f, d, ne));
      ti.ne.push_back(static_cast<int64_t>(ne));
    }
    uint32_t type_id = r.u32(f, "tensor type");
    const ir::DTypeInfo* info = ir::dtype_info(type_id);
    if (!info)
      fail(f, fmt::format("tensor '{}' has ggml type {} (id {}), which kiln does not support; "
                          "use a model quantised to f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0 "
                          "or q2_k..q6_k", f, ir::ggml_type_name(type_id), type_id),
           ErrorCode::kUnsupported);
    ti.type = info->type;
    if (static_cast<uint64_t>(ti.ne[0]) % info->block_elems != 0)
      fail(f, fmt::format("tensor '{}' of type {} has a row length ne[0] = {} that is not a multiple "
                          "of the block size {}", f, info->name, ti.ne[0], info->block_elems));
    ti.n_elements = n_elem;
    if (__builtin_mul_overflow(n_elem / info->block_elems, uint64_t{info->block_bytes}, &ti.n_bytes))
      fail(f, fmt::format("tensor '{}': byte size overflows", f));
    ti.offset = r.u64(f, "tensor offset");
    if (ti.offset % alignment != 0)
      fail(f, fmt::format("tensor '{}' data offset {} is not a multiple of the alignment {}", f,
                          ti.offset, alignment));
    tensor_index.emplace(ti.name, tensors.size());
    tensors.push_back(std::move(ti));
  }

  // ---- data section: header end rounded up to the alignment
  uint64_t header_end = r.pos();
  uint64_t rounded = 0;
  if (__builtin_add_overflow(header_end, alignment - 1, &rounded))
    fail("general.alignment", "data section offset overflows");
  data_offset = rounded / alignment * alignment;

  // Every tensor's data inside the file, and no two overlapping (sorted by offset).
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors[a].offset < tensors[b].offset; });
  for (size_t k = 0; k < order.size(); ++k) {
    TensorInfo& t = tensors[order[k]];
    uint64_t begin = 0, end = 0;
    if (__builtin_add_overflow(data_offset, t.offset, &begin) ||
        __builtin_add_overflow(begin, t.n_bytes, &end) || end > size)
      fail(t.name, fmt::format("tensor '{}' data (offset {} + {} bytes in the data section at {}) "
                               "extends past the end of the file ({} bytes); the file is truncated",
                               t.name, t.offset, t.n_bytes, data_offset, size));
    if (k > 0) {
      const TensorInfo& prev = tensors[order[k - 1]];
      if (prev.offset + prev.n_bytes > t.offset)  // cannot overflow: checked on prev above
        fail(t.name, fmt::format("tensor '{}' (offset {}) overlaps tensor '{}' (offset {}, {} bytes)",
                                 t.name, t.offset, prev.name, prev.offset, prev.n_bytes));
    }
    t.data = data + begin;
  }
}

// ---------------------------------------------------------------- File

File::File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::string& path, const Limits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  // O_NONBLOCK: opening a FIFO must not hang (it is refused below as not a regular file).
  int fd = fault::hit(fault::Site::kRead) ? (errno = EIO, -1) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    throw Error(ErrorCode::kIo, fmt::format("cannot open '{}': {}", path, std::strerror(errno)), path);
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int e = errno;
    ::close(fd);
    throw Error(ErrorCode::kIo, fmt::format("'{}' is not a regular file{}", path,
                                            e ? std::string(": ") + std::strerror(e) : ""), path);
  }
  impl->size = static_cast<uint64_t>(st.st_size);
  if (impl->size > 0) {
    void* m = mmap(nullptr, impl->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error(ErrorCode::kIo, fmt::format("cannot map '{}': {}", path, std::strerror(e)), path);
    }
    impl->map = m;
    impl->map_size = impl->size;
    impl->data = static_cast<const uint8_t*>(m);
  } else {
    static const uint8_t kEmpty = 0;
    impl->data = &kEmpty;
  }
  ::close(fd);
  try {
    impl->parse(limits);
  } catch (const Error& e) {
    throw Error(e.code(), fmt::format("{}: {}", path, e.what()), e.field());
  }
  return File(std::move(impl));
}

File File::from_bytes(std::vector<uint8_t> bytes, const Limits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->path = "<memory>";
  impl->bytes = std::move(bytes);
  impl->data = impl->bytes.data();
  impl->size = impl->bytes.size();
  impl->parse(limits);
  return File(std::move(impl));
}

uint32_t File::version() const { return impl_->version; }
uint64_t File::alignment() const { return impl_->alignment; }
uint64_t File::data_offset() const { return impl_->data_offset; }
uint64_t File::file_size() const { return impl_->size; }
const std::string& File::path() const { return impl_->path; }
const std::vector<KeyValue>& File::metadata() const { return impl_->kv; }
const std::vector<TensorInfo>& File::tensors() const { return impl_->tensors; }

const Value* File::find(std::string_view key) const {
  auto it = impl_->kv_index.find(key);
  return it == impl_->kv_index.end() ? nullptr : &impl_->kv[it->second].value;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = impl_->tensor_index.find(name);
  return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

// ---------------------------------------------------------------- typed getters
namespace {

bool is_unsigned(ValueType t) {
  return t == ValueType::UINT8 || t == ValueType::UINT16 || t == ValueType::UINT32 || t == ValueType::UINT64;
}
bool is_signed(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 || t == ValueType::INT64;
}
bool is_float(ValueType t) { return t == ValueType::FLOAT32 || t == ValueType::FLOAT64; }

[[noreturn]] void wrong_type(std::string_view key, const Value& v, std::string_view wanted) {
  fail(std::string(key), fmt::format("metadata key '{}' is {} but {} was expected", key,
                                     value_type_name(v.type), wanted));
}

// Integer value as (negative?, magnitude) so range checks need no casts that overflow.
bool to_i64(const Value& v, int64_t* out) {
  if (is_unsigned(v.type)) {
    uint64_t u = std::get<uint64_t>(v.v);
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (is_signed(v.type)) { *out = std::get<int64_t>(v.v); return true; }
  return false;
}

bool to_u64(const Value& v, uint64_t* out) {
  if (is_unsigned(v.type)) { *out = std::get<uint64_t>(v.v); return true; }
  if (is_signed(v.type)) {
    int64_t s = std::get<int64_t>(v.v);
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
    return true;
  }
  return false;
}

bool to_f64(const Value& v, double* out) {
  if (is_float(v.type)) { *out = std::get<double>(v.v); return true; }
  if (is_unsigned(v.type)) { *out = static_cast<double>(std::get<uint64_t>(v.v)); return true; }
  if (is_signed(v.type)) { *out = static_cast<double>(std::get<int64_t>(v.v)); return true; }
  return false;
}

const Array& as_array(std::string_view key, const Value& v, std::string_view wanted) {
  if (v.type != ValueType::ARRAY) wrong_type(key, v, wanted);
  return std::get<Array>(v.v);
}

}  // namespace

std::optional<std::string> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::STRING) wrong_type(key, *v, "a string");
  return std::get<std::string>(v->v);
}

std::optional<uint64_t> File::get_u64(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  uint64_t u;
  if (!is_unsigned(v->type) && !is_signed(v->type)) wrong_type(key, *v, "an integer");
  if (!to_u64(*v, &u))
    fail(std::string(key), fmt::format("metadata key '{}' is negative, expected a non-negative integer", key));
  return u;
}

std::optional<uint32_t> File::get_u32(std::string_view key) const {
  auto u = get_u64(key);
  if (!u) return std::nullopt;
  if (*u > std::numeric_limits<uint32_t>::max())
    fail(std::string(key), fmt::format("metadata key '{}' = {} does not fit in 32 bits", key, *u));
  return static_cast<uint32_t>(*u);
}

std::optional<int64_t> File::get_i64(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  int64_t s;
  if (!is_unsigned(v->type) && !is_signed(v->type)) wrong_type(key, *v, "an integer");
  if (!to_i64(*v, &s))
    fail(std::string(key), fmt::format("metadata key '{}' does not fit in a signed 64-bit integer", key));
  return s;
}

std::optional<double> File::get_f64(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  double d;
  if (!to_f64(*v, &d)) wrong_type(key, *v, "a number");
  return d;
}

std::optional<float> File::get_f32(std::string_view key) const {
  auto d = get_f64(key);
  if (!d) return std::nullopt;
  return static_cast<float>(*d);
}

std::optional<bool> File::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::BOOL) wrong_type(key, *v, "a bool");
  return std::get<bool>(v->v);
}

std::optional<std::vector<std::string>> File::get_string_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  const Array& a = as_array(key, *v, "an array of strings");
  if (a.elem_type != ValueType::STRING)
    fail(std::string(key), fmt::format("metadata key '{}' is an array of {}, expected an array of strings",
                                       key, value_type_name(a.elem_type)));
  std::vector<std::string> out;
  out.reserve(a.items.size());
  for (const Value& item : a.items) out.push_back(std::get<std::string>(item.v));
  return out;
}

std::optional<std::vector<float>> File::get_f32_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  const Array& a = as_array(key, *v, "an array of numbers");
  std::vector<float> out;
  out.reserve(a.items.size());
  for (const Value& item : a.items) {
    double d;
    if (!to_f64(item, &d))
      fail(std::string(key), fmt::format("metadata key '{}' is an array of {}, expected an array of numbers",
                                         key, value_type_name(a.elem_type)));
    out.push_back(static_cast<float>(d));
  }
  return out;
}

std::optional<std::vector<int64_t>> File::get_i64_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  const Array& a = as_array(key, *v, "an array of integers");
  if (!is_unsigned(a.elem_type) && !is_signed(a.elem_type))
    fail(std::string(key), fmt::format("metadata key '{}' is an array of {}, expected an array of integers",
                                       key, value_type_name(a.elem_type)));
  std::vector<int64_t> out;
  out.reserve(a.items.size());
  for (const Value& item : a.items) {
    int64_t s;
    if (!to_i64(item, &s))
      fail(std::string(key), fmt::format("metadata key '{}' holds a value that does not fit in int64", key));
    out.push_back(s);
  }
  return out;
}

std::string File::architecture() const {
  auto a = get_string("general.architecture");
  if (!a || a->empty())
    fail("general.architecture", "the model has no general.architecture key; it is not a model GGUF "
                                 "or was written by a broken converter");
  return *a;
}

// ---------------------------------------------------------------- formatting

namespace {

std::string quote(std::string_view s, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (n++ >= max_chars) { out += "…"; break; }
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (u < 0x20 || u == 0x7f) out += fmt::format("\\x{:02x}", u);
        else out += c;
    }
  }
  out += "\"";
  return out;
}

void format_into(std::string& out, const Value& v, size_t max_items) {
  switch (v.type) {
    case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
      out += fmt::format("{}", std::get<uint64_t>(v.v)); break;
    case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
      out += fmt::format("{}", std::get<int64_t>(v.v)); break;
    case ValueType::FLOAT32:  // shortest text that reads back as the same float
      out += fmt::format("{}", static_cast<float>(std::get<double>(v.v))); break;
    case ValueType::FLOAT64: out += fmt::format("{}", std::get<double>(v.v)); break;
    case ValueType::BOOL: out += std::get<bool>(v.v) ? "true" : "false"; break;
    case ValueType::STRING: out += quote(std::get<std::string>(v.v), 120); break;
    case ValueType::ARRAY: {
      const Array& a = std::get<Array>(v.v);
      out += "[";
      size_t shown = std::min(a.items.size(), max_items);
      for (size_t i = 0; i < shown; ++i) {
        if (i) out += ", ";
        format_into(out, a.items[i], max_items);
      }
      if (shown < a.items.size())
        out += fmt::format("{}… {} items", shown ? ", " : "", a.items.size());
      out += "]";
      break;
    }
  }
}

}  // namespace

std::string format_value(const Value& v, size_t max_items) {
  std::string out;
  format_into(out, v, max_items);
  return out;
}

}  // namespace kiln::gguf
