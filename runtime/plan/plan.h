// kiln::rt::Plan: a verified, read-only view of a plan file (docs/plan-abi.md).
// load() maps the file and runs verify_plan (header, hashes, flatbuffers
// Verifier, semantic PlanVerifier) before handing out anything, so every
// accessor below returns verified data: required tables are present and every
// index/offset in them is in range. The device check (target_sm() against the
// GPU) is the engine's job.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "schemas/plan_generated.h"
#include "schemas/plan_header.h"

namespace kiln::rt {

class Plan {
 public:
  // Maps `path` read-only and verifies it. Throws kiln::rt::Error: kIo when the
  // file cannot be opened/mapped, kVersion for a format this runtime does not
  // read, kFormat for anything corrupt; field() names the failed check.
  static Plan load(const std::string& path);
  // Same checks on an in-memory image (copied); `name` is used in messages.
  static Plan from_bytes(std::vector<uint8_t> bytes, std::string name = "<memory>");

  Plan(Plan&&) noexcept;
  Plan& operator=(Plan&&) noexcept;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan();

  const std::string& source() const { return source_; }
  const plan_format::PlanHeader& header() const { return header_; }
  uint32_t format_major() const { return header_.format_major; }
  uint32_t format_minor() const { return header_.format_minor; }
  uint32_t target_sm() const { return root().target_sm(); }

  const fb::Plan& root() const { return *root_; }
  const fb::ModelConfig& model() const { return *root_->model(); }
  const fb::Tokenizer& tokenizer() const { return *root_->tokenizer(); }
  const flatbuffers::Vector<flatbuffers::Offset<fb::Kernel>>& kernels() const { return *root_->kernels(); }
  const flatbuffers::Vector<flatbuffers::Offset<fb::WeightBlob>>& weights() const { return *root_->weights(); }
  const flatbuffers::Vector<flatbuffers::Offset<fb::Program>>& programs() const { return *root_->programs(); }
  const fb::Arena& arena() const { return *root_->arena(); }
  const fb::MemoryBudget& budget() const { return *root_->budget(); }

  // The program for (mode, phase, bucket), or nullptr.
  const fb::Program* find_program(fb::ProgramMode mode, fb::Phase phase, uint32_t bucket) const;
  // The weight blob called `name`, or nullptr.
  const fb::WeightBlob* find_weight(std::string_view name) const;

  // The weights section, to be uploaded as is (one copy into one allocation).
  const uint8_t* weights_data() const { return file().data() + header_.weights_offset; }
  uint64_t weights_size() const { return header_.weights_size; }
  // Bytes of one blob inside the weights section.
  std::span<const uint8_t> weight_bytes(const fb::WeightBlob& w) const {
    return {weights_data() + w.offset(), static_cast<size_t>(w.size())};
  }
  // The whole file image.
  std::span<const uint8_t> file() const;

 private:
  struct Storage;
  Plan(std::unique_ptr<Storage> storage, std::string source);

  std::unique_ptr<Storage> storage_;
  std::string source_;
  plan_format::PlanHeader header_{};
  const fb::Plan* root_ = nullptr;
};

}  // namespace kiln::rt
