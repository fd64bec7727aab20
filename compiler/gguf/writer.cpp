#include "compiler/gguf/writer.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <unistd.h>
#include <vector>

#include "ir/atomic_file.h"

namespace kiln::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kVersion = 3;
constexpr size_t kMaxTensorName = 63;    // GGUF: names are at most 64 bytes incl. NUL in ggml
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS

[[noreturn]] void bad_arg(const std::string& msg, const std::string& field) {
  throw Error(ErrorCode::kInvalidArgument, msg, field);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Little-endian serialisation into a growable buffer (the header).
struct Buf {
  std::vector<uint8_t> b;
  template <typename T>
  void pod(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));  // all supported hosts are little-endian
    b.insert(b.end(), tmp, tmp + sizeof(T));
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
};

bool is_unsigned(ValueType t) {
  return t == ValueType::UINT8 || t == ValueType::UINT16 || t == ValueType::UINT32 ||
         t == ValueType::UINT64;
}
bool is_signed(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
         t == ValueType::INT64;
}
bool is_float(ValueType t) { return t == ValueType::FLOAT32 || t == ValueType::FLOAT64; }

// Checks that `v` is representable as `type`; throws naming `key` otherwise.
void check_value(const Value& v, const std::string& key, int depth) {
  if (depth > 4) bad_arg("GGUF writer: arrays nested deeper than 4 levels", key);
  const auto t = v.type;
  if (is_unsigned(t)) {
    const auto* u = std::get_if<uint64_t>(&v.v);
    if (!u) bad_arg("GGUF writer: unsigned value must hold uint64_t", key);
    const uint64_t max = t == ValueType::UINT8    ? 0xffu
                         : t == ValueType::UINT16 ? 0xffffu
                         : t == ValueType::UINT32 ? 0xffffffffu
                                                  : std::numeric_limits<uint64_t>::max();
    if (*u > max) bad_arg("GGUF writer: value out of range for its type", key);
  } else if (is_signed(t)) {
    const auto* s = std::get_if<int64_t>(&v.v);
    if (!s) bad_arg("GGUF writer: signed value must hold int64_t", key);
    const int64_t lim = t == ValueType::INT8    ? 127
                        : t == ValueType::INT16 ? 32767
                        : t == ValueType::INT32 ? 2147483647
                                                : std::numeric_limits<int64_t>::max();
    if (*s > lim || *s < -lim - 1) bad_arg("GGUF writer: value out of range for its type", key);
  } else if (is_float(t)) {
    if (!std::holds_alternative<double>(v.v)) bad_arg("GGUF writer: float value must hold double", key);
  } else if (t == ValueType::BOOL) {
    if (!std::holds_alternative<bool>(v.v)) bad_arg("GGUF writer: bool value must hold bool", key);
  } else if (t == ValueType::STRING) {
    if (!std::holds_alternative<std::string>(v.v)) bad_arg("GGUF writer: string value must hold std::string", key);
  } else if (t == ValueType::ARRAY) {
    const auto* a = std::get_if<Array>(&v.v);
    if (!a) bad_arg("GGUF writer: array value must hold Array", key);
    for (const auto& item : a->items) {
      if (item.type != a->elem_type) bad_arg("GGUF writer: array item type differs from the array's element type", key);
      check_value(item, key, depth + 1);
    }
    if (a->items.empty() && static_cast<uint32_t>(a->elem_type) > 12)
      bad_arg("GGUF writer: unknown array element type", key);
  } else {
    bad_arg("GGUF writer: unknown value type " + std::to_string(static_cast<uint32_t>(t)), key);
  }
}

// Value payload without the leading type tag (array items are written this way).
void put_payload(Buf& out, const Value& v) {
  switch (v.type) {
    case ValueType::UINT8: out.pod<uint8_t>(static_cast<uint8_t>(std::get<uint64_t>(v.v))); break;
    case ValueType::UINT16: out.pod<uint16_t>(static_cast<uint16_t>(std::get<uint64_t>(v.v))); break;
    case ValueType::UINT32: out.pod<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(v.v))); break;
    case ValueType::UINT64: out.pod<uint64_t>(std::get<uint64_t>(v.v)); break;
    case ValueType::INT8: out.pod<int8_t>(static_cast<int8_t>(std::get<int64_t>(v.v))); break;
    case ValueType::INT16: out.pod<int16_t>(static_cast<int16_t>(std::get<int64_t>(v.v))); break;
    case ValueType::INT32: out.pod<int32_t>(static_cast<int32_t>(std::get<int64_t>(v.v))); break;
    case ValueType::INT64: out.pod<int64_t>(std::get<int64_t>(v.v)); break;
    case ValueType::FLOAT32: out.pod<float>(static_cast<float>(std::get<double>(v.v))); break;
    case ValueType::FLOAT64: out.pod<double>(std::get<double>(v.v)); break;
    case ValueType::BOOL: out.pod<uint8_t>(std::get<bool>(v.v) ? 1 : 0); break;
    case ValueType::STRING: out.str(std::get<std::string>(v.v)); break;
    case ValueType::ARRAY: {
      const auto& a = std::get<Array>(v.v);
      out.pod<uint32_t>(static_cast<uint32_t>(a.elem_type));
      out.pod<uint64_t>(a.items.size());
      for (const auto& item : a.items) put_payload(out, item);
      break;
    }
  }
}

Value scalar_u(ValueType t, uint64_t v) { return Value{t, v}; }
Value scalar_i(ValueType t, int64_t v) { return Value{t, v}; }

template <typename T, typename F>
Value make_array(ValueType elem, const std::vector<T>& xs, F&& conv) {
  Array a{elem, {}};
  a.items.reserve(xs.size());
  for (const auto& x : xs) a.items.push_back(Value{elem, conv(x)});
  return Value{ValueType::ARRAY, std::move(a)};
}

// Counts bytes a tensor source hands over and forwards them.
class CountingSink : public ByteSink {
 public:
  CountingSink(ByteSink& out, uint64_t limit, uint64_t done_before, uint64_t total,
               const Progress& progress, const std::string& name)
      : out_(out), limit_(limit), done_before_(done_before), total_(total),
        progress_(progress), name_(name) {}
  void write(const void* data, size_t n) override {
    if (n > limit_ - count_)
      throw Error(ErrorCode::kInternal,
                  "GGUF writer: tensor source wrote more bytes than the tensor holds", name_);
    out_.write(data, n);
    count_ += n;
    if (progress_) progress_(done_before_ + count_, total_);
  }
  uint64_t count() const { return count_; }

 private:
  ByteSink& out_;
  uint64_t limit_, done_before_, total_;
  const Progress& progress_;
  const std::string& name_;
  uint64_t count_ = 0;
};

class VectorSink : public ByteSink {
 public:
  std::vector<uint8_t> bytes;
  void write(const void* data, size_t n) override {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + n);
  }
};

// Buffers small writes (metadata values) into large ones for the AtomicFile.
class FileSink : public ByteSink {
 public:
  explicit FileSink(AtomicFile& f) : f_(f) { buf_.reserve(kBuffer); }
  void write(const void* data, size_t n) override {
    const auto* p = static_cast<const uint8_t*>(data);
    if (buf_.size() + n > kBuffer) flush();
    if (n >= kBuffer) {
      f_.write(p, n);
      return;
    }
    buf_.insert(buf_.end(), p, p + n);
  }
  void flush() {
    if (!buf_.empty()) f_.write(buf_.data(), buf_.size());
    buf_.clear();
  }

 private:
  static constexpr size_t kBuffer = size_t{4} << 20;
  AtomicFile& f_;
  std::vector<uint8_t> buf_;
};

void write_zeros(ByteSink& out, uint64_t n) {
  static const uint8_t zeros[256] = {};
  while (n) {
    const size_t k = n < sizeof(zeros) ? static_cast<size_t>(n) : sizeof(zeros);
    out.write(zeros, k);
    n -= k;
  }
}

}  // namespace

Writer::Writer(uint64_t alignment) : alignment_(kDefaultAlignment) { set_alignment(alignment); }

void Writer::set_alignment(uint64_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > (1u << 30))
    bad_arg("GGUF writer: alignment must be a power of two (got " + std::to_string(alignment) + ")",
            "general.alignment");
  alignment_ = alignment;
  bool found = false;
  for (auto& kv : kv_)
    if (kv.key == "general.alignment") {
      kv.value = scalar_u(ValueType::UINT32, alignment);
      found = true;
    }
  if (!found && alignment != kDefaultAlignment)
    kv_.push_back({"general.alignment", scalar_u(ValueType::UINT32, alignment)});
  // Re-lay the tensors out under the new alignment.
  data_end_ = 0;
  for (auto& t : tensors_) {
    t.offset = align_up(data_end_, alignment_);
    data_end_ = t.offset + t.n_bytes;
  }
}

void Writer::add_kv(std::string key, Value v) {
  if (key.empty()) bad_arg("GGUF writer: empty metadata key", key);
  for (const auto& kv : kv_)
    if (kv.key == key) bad_arg("GGUF writer: duplicate metadata key '" + key + "'", key);
  check_value(v, key, 0);
  if (key == "general.alignment") {
    const auto* u = std::get_if<uint64_t>(&v.v);
    if (v.type != ValueType::UINT32 || !u)
      bad_arg("GGUF writer: general.alignment must be a uint32", key);
    kv_.push_back({std::move(key), std::move(v)});
    set_alignment(*u);  // validates and re-lays out; updates the entry just added
    return;
  }
  kv_.push_back({std::move(key), std::move(v)});
}

void Writer::add_u8(std::string k, uint8_t v) { add_kv(std::move(k), scalar_u(ValueType::UINT8, v)); }
void Writer::add_i8(std::string k, int8_t v) { add_kv(std::move(k), scalar_i(ValueType::INT8, v)); }
void Writer::add_u16(std::string k, uint16_t v) { add_kv(std::move(k), scalar_u(ValueType::UINT16, v)); }
void Writer::add_i16(std::string k, int16_t v) { add_kv(std::move(k), scalar_i(ValueType::INT16, v)); }
void Writer::add_u32(std::string k, uint32_t v) { add_kv(std::move(k), scalar_u(ValueType::UINT32, v)); }
void Writer::add_i32(std::string k, int32_t v) { add_kv(std::move(k), scalar_i(ValueType::INT32, v)); }
void Writer::add_u64(std::string k, uint64_t v) { add_kv(std::move(k), scalar_u(ValueType::UINT64, v)); }
void Writer::add_i64(std::string k, int64_t v) { add_kv(std::move(k), scalar_i(ValueType::INT64, v)); }
void Writer::add_f32(std::string k, float v) { add_kv(std::move(k), Value{ValueType::FLOAT32, double(v)}); }
void Writer::add_f64(std::string k, double v) { add_kv(std::move(k), Value{ValueType::FLOAT64, v}); }
void Writer::add_bool(std::string k, bool v) { add_kv(std::move(k), Value{ValueType::BOOL, v}); }
void Writer::add_string(std::string k, std::string v) {
  add_kv(std::move(k), Value{ValueType::STRING, std::move(v)});
}
void Writer::add_string_array(std::string k, const std::vector<std::string>& v) {
  add_kv(std::move(k), make_array(ValueType::STRING, v, [](const std::string& s) { return s; }));
}
void Writer::add_i32_array(std::string k, const std::vector<int32_t>& v) {
  add_kv(std::move(k), make_array(ValueType::INT32, v, [](int32_t x) { return int64_t(x); }));
}
void Writer::add_u32_array(std::string k, const std::vector<uint32_t>& v) {
  add_kv(std::move(k), make_array(ValueType::UINT32, v, [](uint32_t x) { return uint64_t(x); }));
}
void Writer::add_f32_array(std::string k, const std::vector<float>& v) {
  add_kv(std::move(k), make_array(ValueType::FLOAT32, v, [](float x) { return double(x); }));
}
void Writer::add_value(std::string key, Value v) { add_kv(std::move(key), std::move(v)); }

void Writer::add_tensor(std::string name, ir::DType type, std::vector<int64_t> ne,
                        std::vector<uint8_t> bytes) {
  auto shared = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  const uint64_t given = shared->size();
  add_tensor(name, type, std::move(ne),
             [shared](ByteSink& out) { out.write(shared->data(), shared->size()); });
  if (tensors_.back().n_bytes != given) {
    const uint64_t want = tensors_.back().n_bytes;
    tensors_.pop_back();
    data_end_ = tensors_.empty() ? 0 : tensors_.back().offset + tensors_.back().n_bytes;
    bad_arg("GGUF writer: tensor '" + name + "' has " + std::to_string(given) +
                " bytes, its type and shape need " + std::to_string(want),
            name);
  }
}

void Writer::add_tensor(std::string name, ir::DType type, std::vector<int64_t> ne,
                        TensorSource source) {
  if (name.empty() || name.size() > kMaxTensorName)
    bad_arg("GGUF writer: tensor name must be 1.." + std::to_string(kMaxTensorName) + " bytes", name);
  for (const auto& t : tensors_)
    if (t.name == name) bad_arg("GGUF writer: duplicate tensor '" + name + "'", name);
  if (ne.empty() || ne.size() > kMaxDims)
    bad_arg("GGUF writer: tensor '" + name + "' must have 1..4 dimensions", name);
  if (!ir::dtype_info(static_cast<uint32_t>(type)))
    bad_arg("GGUF writer: tensor '" + name + "' has an unknown type", name);
  if (!source) bad_arg("GGUF writer: tensor '" + name + "' has no data source", name);
  const auto& info = ir::dtype_info(type);
  uint64_t n = 1;
  for (int64_t d : ne) {
    if (d <= 0) bad_arg("GGUF writer: tensor '" + name + "' has a dimension <= 0", name);
    if (n > std::numeric_limits<uint64_t>::max() / 2 / static_cast<uint64_t>(d))
      bad_arg("GGUF writer: tensor '" + name + "' is too large", name);
    n *= static_cast<uint64_t>(d);
  }
  if (ne[0] % info.block_elems != 0)
    bad_arg("GGUF writer: tensor '" + name + "' row length " + std::to_string(ne[0]) +
                " is not a multiple of the " + std::string(info.name) + " block size " +
                std::to_string(info.block_elems),
            name);
  Tensor t;
  t.name = std::move(name);
  t.type = type;
  t.ne = std::move(ne);
  t.n_bytes = n / info.block_elems * info.block_bytes;
  t.offset = align_up(data_end_, alignment_);
  t.source = std::move(source);
  data_end_ = t.offset + t.n_bytes;
  tensors_.push_back(std::move(t));
}

uint64_t Writer::data_bytes() const {
  uint64_t s = 0;
  for (const auto& t : tensors_) s += t.n_bytes;
  return s;
}

namespace {
std::vector<uint8_t> header_bytes(const std::vector<KeyValue>& kv,
                                  const std::vector<Writer::Tensor>& tensors) {
  Buf h;
  h.pod<uint32_t>(kMagic);
  h.pod<uint32_t>(kVersion);
  h.pod<uint64_t>(tensors.size());
  h.pod<uint64_t>(kv.size());
  for (const auto& e : kv) {
    h.str(e.key);
    h.pod<uint32_t>(static_cast<uint32_t>(e.value.type));
    put_payload(h, e.value);
  }
  for (const auto& t : tensors) {
    h.str(t.name);
    h.pod<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) h.pod<uint64_t>(static_cast<uint64_t>(d));
    h.pod<uint32_t>(static_cast<uint32_t>(t.type));
    h.pod<uint64_t>(t.offset);
  }
  return std::move(h.b);
}
}  // namespace

uint64_t Writer::file_size() const {
  const uint64_t header = header_bytes(kv_, tensors_).size();
  return align_up(header, alignment_) + align_up(data_end_, alignment_);
}

void Writer::write_to(ByteSink& out, const Progress& progress) const {
  const auto header = header_bytes(kv_, tensors_);
  out.write(header.data(), header.size());
  write_zeros(out, align_up(header.size(), alignment_) - header.size());
  const uint64_t total = data_bytes();
  uint64_t pos = 0, done = 0;
  for (const auto& t : tensors_) {
    write_zeros(out, t.offset - pos);
    CountingSink sink(out, t.n_bytes, done, total, progress, t.name);
    t.source(sink);
    if (sink.count() != t.n_bytes)
      throw Error(ErrorCode::kInternal,
                  "GGUF writer: tensor source for '" + t.name + "' wrote " +
                      std::to_string(sink.count()) + " bytes, expected " + std::to_string(t.n_bytes),
                  t.name);
    done += t.n_bytes;
    pos = t.offset + t.n_bytes;
  }
  // Pad the end as the reference writer (gguf-py) does, so the file size is
  // a multiple of the alignment.
  write_zeros(out, align_up(pos, alignment_) - pos);
  if (progress && total == 0) progress(0, 0);
}

std::vector<uint8_t> Writer::to_bytes() const {
  VectorSink sink;
  write_to(sink, {});
  return std::move(sink.bytes);
}

void Writer::write(const std::string& path, const Progress& progress) const {
  if (path.empty()) bad_arg("GGUF writer: empty output path", "path");
  // Written whole, then renamed into place (AtomicFile): an error, a full disk
  // or a kill leaves an existing file at `path` as it was and no partial file.
  remove_stale_temporaries(path);
  AtomicFile f(path, "GGUF file");
  FileSink sink(f);
  write_to(sink, progress);
  sink.flush();
  f.commit();
}

}  // namespace kiln::gguf
