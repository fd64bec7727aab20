// Stage "nvrtc" of the compile driver: compile every distinct kernel module
// source once, in parallel, through codegen::compile (and its on-disk cache).
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "codegen/codegen.h"

namespace kiln::compile {

// Runs fn(i) for every i in [0, n) on min(jobs, n) threads (jobs <= 0: the
// hardware threads). After the first exception no new index starts; once the
// running ones finish, that exception is rethrown. progress(done, n), when
// set, is called after each successful fn, serialised and with done counting
// up 1, 2, ... n.
void parallel_for(size_t n, int jobs, const std::function<void(size_t)>& fn,
                  const std::function<void(size_t done, size_t total)>& progress = {});

struct KernelBuild {
  std::vector<codegen::CompiledKernel> modules;  // one per distinct source (by hash), in first-use order
  std::vector<size_t> module_of;                 // per input source: index into modules
};

// codegen::compile(source, sm, cache_dir) for each distinct source of
// `sources` (sources with one hash share a module: eager modules hold several
// entries), on `jobs` threads. cache_dir "" = no cache. Results do not depend
// on jobs. Rethrows the first compile error (kiln::Error with the NVRTC log).
// progress(done, modules) as in parallel_for.
KernelBuild compile_all(const std::vector<codegen::KernelSource>& sources, int sm, const std::string& cache_dir,
                        int jobs, const std::function<void(size_t done, size_t total)>& progress = {});

}  // namespace kiln::compile
