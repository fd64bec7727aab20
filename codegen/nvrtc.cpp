// NVRTC driver and the on-disk kernel cache.
// Cache entry <dir>/<key>.kc, key = FNV-1a(source, options, sm, NVRTC version):
//   "KILNKC01" | u64 key | u64 cubin_size | u64 ptx_size | u64 fnv(payload) | cubin | ptx
// Written in full to an unnamed temporary, then renamed into place
// (kiln::AtomicFile), so concurrent compiles sharing a cache and a compile
// killed mid-write leave only whole entries; any entry that fails these checks
// (truncated, corrupt, another key) is treated as a miss and rewritten.
#include <nvrtc.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "codegen/codegen.h"
#include "ir/atomic_file.h"
#include "ir/fault.h"

namespace kiln::codegen {
namespace {
namespace fs = std::filesystem;

uint64_t fnv1a(const void* p, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}
uint64_t fnv_str(std::string_view s, uint64_t h) { return fnv1a(s.data(), s.size(), fnv1a("\0", 1, h)); }

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'K', 'C', '0', '1'};

uint64_t key_of(const KernelSource& k, int sm) {
  uint64_t h = fnv_str(k.source, 0xcbf29ce484222325ull);
  for (const auto& o : k.options) h = fnv_str(o, h);
  h = fnv_str("sm_" + std::to_string(sm), h);
  h = fnv_str("nvrtc " + std::to_string(nvrtc_version()), h);
  h = fnv_str(std::to_string(kernel_headers_digest()), h);  // the headers the source may #include
  return h;
}

std::string hex16(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

void put64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
uint64_t get64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

bool read_entry(const fs::path& path, uint64_t key, CompiledKernel& out) {
  if (fault::hit(fault::Site::kRead)) return false;  // an unreadable entry is a miss
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  constexpr size_t hdr = 8 + 4 * 8;
  if (data.size() < hdr || std::memcmp(data.data(), kMagic, 8) != 0) return false;
  if (get64(data.data() + 8) != key) return false;
  const uint64_t nc = get64(data.data() + 16), np = get64(data.data() + 24), sum = get64(data.data() + 32);
  if (nc > data.size() || np > data.size() || hdr + nc + np != data.size() || nc == 0) return false;
  if (fnv1a(data.data() + hdr, nc + np) != sum) return false;
  out.cubin.assign(data.begin() + hdr, data.begin() + static_cast<std::ptrdiff_t>(hdr + nc));
  out.ptx.assign(data.data() + hdr + nc, np);
  out.log.clear();
  return true;
}

void write_entry(const fs::path& dir, const fs::path& path, uint64_t key, const CompiledKernel& k) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::string data(kMagic, 8);
  put64(data, key);
  put64(data, k.cubin.size());
  put64(data, k.ptx.size());
  std::string payload(k.cubin.begin(), k.cubin.end());
  payload += k.ptx;
  put64(data, fnv1a(payload.data(), payload.size()));
  data += payload;
  try {
    AtomicFile f(path.string(), "kernel-cache entry");
    f.write(data.data(), data.size());
    f.commit();
  } catch (const Error&) {
    // An unwritable cache is not an error: the kernel is still compiled.
  }
}

std::string program_log(nvrtcProgram p) {
  size_t n = 0;
  if (nvrtcGetProgramLogSize(p, &n) != NVRTC_SUCCESS || n <= 1) return {};
  std::string s(n, '\0');
  nvrtcGetProgramLog(p, s.data());
  while (!s.empty() && (s.back() == '\0' || s.back() == '\n')) s.pop_back();
  return s;
}

std::atomic<uint64_t> g_compiles{0};

CompiledKernel nvrtc_compile(const KernelSource& k, int sm) {
  ++g_compiles;
  if (fault::hit(fault::Site::kNvrtc))
    throw Error(ErrorCode::kInternal, "NVRTC failed to compile kernel '" + k.entry + "' for sm_" + std::to_string(sm) +
                                          " (fault injected by KILN_FAULT)",
                k.entry);
  nvrtcProgram prog;
  const std::string name = (k.entry.empty() ? std::string("kiln_module") : k.entry) + ".cu";
  // Every embedded kernel file is a header the source may #include by name.
  static const auto headers = [] {
    std::pair<std::vector<std::string>, std::vector<std::string>> h;  // texts, names (NUL-terminated copies)
    for (auto n : kernel_file_names()) {
      h.first.emplace_back(kernel_file(n));
      h.second.emplace_back(n);
    }
    return h;
  }();
  std::vector<const char*> htext, hname;
  for (size_t i = 0; i < headers.first.size(); ++i) {
    htext.push_back(headers.first[i].c_str());
    hname.push_back(headers.second[i].c_str());
  }
  nvrtcResult r = nvrtcCreateProgram(&prog, k.source.c_str(), name.c_str(), static_cast<int>(htext.size()),
                                     htext.data(), hname.data());
  if (r != NVRTC_SUCCESS)
    throw Error(ErrorCode::kInternal, std::string("NVRTC: cannot create program: ") + nvrtcGetErrorString(r));
  std::vector<std::string> opts = k.options;
  opts.push_back("--gpu-architecture=sm_" + std::to_string(sm));
  std::vector<const char*> copts;
  for (const auto& o : opts) copts.push_back(o.c_str());
  r = nvrtcCompileProgram(prog, static_cast<int>(copts.size()), copts.data());
  CompiledKernel out;
  out.log = program_log(prog);
  if (r != NVRTC_SUCCESS) {
    nvrtcDestroyProgram(&prog);
    throw Error(ErrorCode::kInternal, "NVRTC failed to compile kernel '" + k.entry + "' for sm_" +
                                          std::to_string(sm) + " (" + nvrtcGetErrorString(r) + "):\n" + out.log,
                k.entry);
  }
  size_t n = 0;
  nvrtcGetCUBINSize(prog, &n);
  out.cubin.resize(n);
  if (n) nvrtcGetCUBIN(prog, reinterpret_cast<char*>(out.cubin.data()));
  size_t np = 0;
  nvrtcGetPTXSize(prog, &np);
  out.ptx.assign(np, '\0');
  if (np) nvrtcGetPTX(prog, out.ptx.data());
  while (!out.ptx.empty() && out.ptx.back() == '\0') out.ptx.pop_back();
  nvrtcDestroyProgram(&prog);
  if (out.cubin.empty())
    throw Error(ErrorCode::kInternal, "NVRTC produced no CUBIN for kernel '" + k.entry + "'", k.entry);
  return out;
}

}  // namespace

uint64_t nvrtc_compile_count() { return g_compiles.load(); }

int nvrtc_version() {
  int maj = 0, min = 0;
  nvrtcVersion(&maj, &min);
  return maj * 1000 + min * 10;
}

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "kiln" / "kernels").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "kiln" / "kernels").string();
  return {};
}

std::string cache_key(const KernelSource& k, int sm) { return hex16(key_of(k, sm)); }

CompiledKernel compile(const KernelSource& k, int sm, const std::string& cache_dir) {
  bool ok = false;
  for (int s : supported_sms()) ok |= s == sm;
  if (!ok) throw Error(ErrorCode::kInvalidArgument, "codegen::compile: unsupported sm_" + std::to_string(sm));
  if (cache_dir.empty()) return nvrtc_compile(k, sm);
  const uint64_t key = key_of(k, sm);
  const fs::path dir(cache_dir);
  const fs::path path = dir / (hex16(key) + ".kc");
  CompiledKernel out;
  if (read_entry(path, key, out)) return out;
  out = nvrtc_compile(k, sm);
  write_entry(dir, path, key, out);
  return out;
}

}  // namespace kiln::codegen
