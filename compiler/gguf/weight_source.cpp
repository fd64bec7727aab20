#include "compiler/gguf/weight_source.h"

#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace kiln::gguf {
namespace {

const TensorInfo& need(const File& f, const std::string& name, const std::string& source) {
  const TensorInfo* t = f.find_tensor(name);
  if (!t) {
    std::string in = name == source ? "" : fmt::format(" (part of fused weight '{}')", source);
    throw Error(ErrorCode::kFormat, fmt::format("tensor '{}'{} is missing from {}", name, in, f.path()), name);
  }
  return *t;
}

std::vector<int64_t> ir_shape(const TensorInfo& t) { return {t.ne.rbegin(), t.ne.rend()}; }

struct Fused {
  ir::DType type;
  std::vector<int64_t> shape;  // IR order
  std::vector<uint8_t> bytes;
};
struct Cache {
  std::mutex mu;
  std::map<std::string, Fused> fused;  // map nodes are stable: handed-out pointers stay valid
};

}  // namespace

ir::WeightSource weight_source(const File& f) {
  auto cache = std::make_shared<Cache>();
  return [&f, cache](const std::string& source) -> ir::WeightData {
    if (source.find('+') == std::string::npos) {
      const TensorInfo& t = need(f, source, source);
      return {t.type, ir_shape(t), t.data, t.n_bytes};
    }
    std::lock_guard<std::mutex> lock(cache->mu);
    auto it = cache->fused.find(source);
    if (it == cache->fused.end()) {
      auto parts = split_weight_source(source);
      const TensorInfo& t0 = need(f, parts[0], source);
      std::vector<int64_t> ne = t0.ne;  // ggml order; the last entry is the outermost dim
      ne.back() = 0;
      uint64_t total = 0;
      for (const auto& p : parts) {
        const TensorInfo& t = need(f, p, source);
        bool inner_same = t.ne.size() == t0.ne.size() &&
                          std::equal(t.ne.begin(), t.ne.end() - 1, t0.ne.begin());
        if (t.type != t0.type || !inner_same)
          throw Error(ErrorCode::kInvalidArgument,
                      fmt::format("fused weight '{}': part '{}' is {} with ne {} but '{}' is {} with ne {}; parts "
                                  "must share the type and row length",
                                  source, p, ir::dtype_name(t.type), fmt::join(t.ne, "x"), parts[0],
                                  ir::dtype_name(t0.type), fmt::join(t0.ne, "x")),
                      p);
        ne.back() += t.ne.back();
        total += t.n_bytes;
      }
      std::vector<uint8_t> bytes(total);
      uint64_t off = 0;
      for (const auto& p : parts) {
        const TensorInfo& t = need(f, p, source);
        if (t.n_bytes) std::memcpy(bytes.data() + off, t.data, t.n_bytes);
        off += t.n_bytes;
      }
      Fused fw{t0.type, std::vector<int64_t>(ne.rbegin(), ne.rend()), std::move(bytes)};
      it = cache->fused.emplace(source, std::move(fw)).first;
    }
    const Fused& fw = it->second;
    return {fw.type, fw.shape, fw.bytes.data(), fw.bytes.size()};
  };
}

std::vector<std::string> split_weight_source(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t p = s.find('+', start);
    parts.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return parts;
}

}  // namespace kiln::gguf
