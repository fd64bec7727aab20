#include "compiler/compile/kernel_build.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "ir/atomic_file.h"

namespace kiln::compile {

void parallel_for(size_t n, int jobs, const std::function<void(size_t)>& fn,
                  const std::function<void(size_t, size_t)>& progress) {
  const size_t n_jobs = jobs > 0 ? static_cast<size_t>(jobs) : std::max(1u, std::thread::hardware_concurrency());
  std::atomic<size_t> next{0};
  size_t done = 0;
  std::mutex mu;
  std::exception_ptr failure;
  auto worker = [&] {
    for (size_t i; (i = next++) < n;) {
      try {
        fn(i);
        std::lock_guard<std::mutex> lk(mu);
        ++done;
        if (progress) progress(done, n);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!failure) failure = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t i = 0; i < std::min(n_jobs, n); ++i) pool.emplace_back(worker);
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
}

KernelBuild compile_all(const std::vector<codegen::KernelSource>& sources, int sm, const std::string& cache_dir,
                        int jobs, const std::function<void(size_t, size_t)>& progress) {
  KernelBuild r;
  std::vector<size_t> unique;  // index of the first source of each distinct hash
  std::map<uint64_t, size_t> module_by_hash;
  r.module_of.reserve(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    auto [it, fresh] = module_by_hash.try_emplace(sources[i].hash, unique.size());
    if (fresh) unique.push_back(i);
    r.module_of.push_back(it->second);
  }
  r.modules.resize(unique.size());
  // Temporaries of compiles killed while renaming an entry into place (AtomicFile).
  if (!cache_dir.empty()) remove_stale_temporaries_in(cache_dir);
  parallel_for(
      unique.size(), jobs, [&](size_t u) { r.modules[u] = codegen::compile(sources[unique[u]], sm, cache_dir); },
      progress);
  return r;
}

}  // namespace kiln::compile
