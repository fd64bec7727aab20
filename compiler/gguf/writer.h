// GGUF v3 writer. Collects metadata and a tensor table, then streams the file:
// tensor bytes come from a per-tensor source called at write time, so a model
// far larger than memory (an 8B Q4_K_M is ~4.9 GB) is written one tensor, one
// chunk at a time. The file is written to "<path>.tmp-<pid>" in the target's
// folder and renamed over the target only when complete, so the destination
// never holds a half-written file. Spec: ggml docs/gguf.md (v3).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "compiler/gguf/gguf.h"
#include "ir/dtype.h"
#include "ir/error.h"

namespace kiln::gguf {

// Where a tensor source writes its bytes.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* data, size_t n) = 0;
};

// Produces exactly the tensor's n_bytes into the sink, in order. Called once,
// at write time. Throwing aborts the write (the target is left untouched).
using TensorSource = std::function<void(ByteSink&)>;

// Called after each chunk of tensor data: bytes written so far, total bytes.
using Progress = std::function<void(uint64_t written, uint64_t total)>;

class Writer {
 public:
  static constexpr uint64_t kDefaultAlignment = 32;

  explicit Writer(uint64_t alignment = kDefaultAlignment);

  // Alignment of the data section and of every tensor (a power of two). A
  // value other than 32 is recorded as the `general.alignment` key (u32), as
  // the spec requires.
  void set_alignment(uint64_t alignment);
  uint64_t alignment() const { return alignment_; }

  // ---- metadata. Keys must be unique and non-empty (throws kInvalidArgument).
  void add_u8(std::string key, uint8_t v);
  void add_i8(std::string key, int8_t v);
  void add_u16(std::string key, uint16_t v);
  void add_i16(std::string key, int16_t v);
  void add_u32(std::string key, uint32_t v);
  void add_i32(std::string key, int32_t v);
  void add_u64(std::string key, uint64_t v);
  void add_i64(std::string key, int64_t v);
  void add_f32(std::string key, float v);
  void add_f64(std::string key, double v);
  void add_bool(std::string key, bool v);
  void add_string(std::string key, std::string v);
  void add_string_array(std::string key, const std::vector<std::string>& v);
  void add_i32_array(std::string key, const std::vector<int32_t>& v);
  void add_u32_array(std::string key, const std::vector<uint32_t>& v);
  void add_f32_array(std::string key, const std::vector<float>& v);
  // Any value, including arrays of any element type and nested arrays. The
  // variant member must match `type` (uint64_t for unsigned, int64_t for
  // signed, double for floats) and every value must fit its on-disk type.
  void add_value(std::string key, Value v);

  const std::vector<KeyValue>& metadata() const { return kv_; }

  // ---- tensors. `ne` in ggml order (ne[0] contiguous), 1..4 dims, each > 0,
  // ne[0] a multiple of the type's block size. Names unique, 1..63 bytes.
  void add_tensor(std::string name, ir::DType type, std::vector<int64_t> ne,
                  std::vector<uint8_t> bytes);
  void add_tensor(std::string name, ir::DType type, std::vector<int64_t> ne,
                  TensorSource source);

  struct Tensor {
    std::string name;
    ir::DType type;
    std::vector<int64_t> ne;
    uint64_t n_bytes = 0;
    uint64_t offset = 0;  // relative to the data section, aligned
    TensorSource source;
  };
  const std::vector<Tensor>& tensors() const { return tensors_; }

  // Exact size of the file write() produces.
  uint64_t file_size() const;
  // Total tensor data bytes (what progress counts against).
  uint64_t data_bytes() const;

  // Writes the file (temp + rename). Throws kiln::Error(kIo) on I/O failure.
  // Sources are called in tensor order; a writer can be written more than
  // once only if its sources are repeatable (the synth ones are).
  void write(const std::string& path, const Progress& progress = {}) const;
  // Writes the whole image to memory (tests, small files).
  std::vector<uint8_t> to_bytes() const;

 private:
  void add_kv(std::string key, Value v);
  void write_to(ByteSink& out, const Progress& progress) const;

  uint64_t alignment_;
  std::vector<KeyValue> kv_;
  std::vector<Tensor> tensors_;
  uint64_t data_end_ = 0;  // end of the last tensor, relative to the data section
};

}  // namespace kiln::gguf
