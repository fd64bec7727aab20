#include "runtime/plan/plan.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/fault.h"
#include "runtime/plan/verify.h"

namespace kiln::rt {

// Either a read-only private mapping of the file or an owned copy.
struct Plan::Storage {
  void* map = nullptr;
  size_t map_size = 0;
  std::vector<uint8_t> owned;

  ~Storage() {
    if (map) ::munmap(map, map_size);
  }
  std::span<const uint8_t> bytes() const {
    if (map) return {static_cast<const uint8_t*>(map), map_size};
    return {owned.data(), owned.size()};
  }
};

Plan::Plan(std::unique_ptr<Storage> storage, std::string source)
    : storage_(std::move(storage)), source_(std::move(source)) {
  try {
    header_ = verify_plan(storage_->bytes());
  } catch (const Error& e) {
    throw Error(e.code(), "cannot load plan '" + source_ + "': " + e.what(), e.field());
  }
  root_ = fb::GetPlan(storage_->bytes().data() + header_.fb_offset);
}

Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;
Plan::~Plan() = default;

std::span<const uint8_t> Plan::file() const { return storage_->bytes(); }

Plan Plan::load(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang (it is refused below as not a regular file).
  // each system call is a fault-injection site (runtime/fault.h: plan_read)
  auto io_fault = [] { return fault::hit(fault::Site::kPlanRead) ? (errno = EIO, true) : false; };
  int fd = io_fault() ? -1 : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    throw Error(ErrorCode::kIo, "cannot open plan '" + path + "': " + std::strerror(errno) +
                                    " (compile one with `kiln compile <model.gguf> -o " + path + "`)");
  struct stat st {};
  if (io_fault() || ::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw Error(ErrorCode::kIo, "cannot stat plan '" + path + "': " + std::strerror(err));
  }
  auto storage = std::make_unique<Storage>();
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::kIo, "plan '" + path + "' is not a regular file");
  }
  if (st.st_size > 0) {
    void* m = io_fault() ? MAP_FAILED : ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error(ErrorCode::kIo, "cannot map plan '" + path + "': " + std::strerror(err));
    }
    storage->map = m;
    storage->map_size = static_cast<size_t>(st.st_size);
  }
  ::close(fd);
  return Plan(std::move(storage), path);
}

Plan Plan::from_bytes(std::vector<uint8_t> bytes, std::string name) {
  auto storage = std::make_unique<Storage>();
  storage->owned = std::move(bytes);
  return Plan(std::move(storage), std::move(name));
}

const fb::Program* Plan::find_program(fb::ProgramMode mode, fb::Phase phase, uint32_t bucket) const {
  for (const fb::Program* p : programs())
    if (p->mode() == mode && p->phase() == phase && p->bucket() == bucket) return p;
  return nullptr;
}

const fb::WeightBlob* Plan::find_weight(std::string_view name) const {
  for (const fb::WeightBlob* w : weights())
    if (w->name() && w->name()->string_view() == name) return w;
  return nullptr;
}

}  // namespace kiln::rt
