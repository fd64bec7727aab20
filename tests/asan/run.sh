#!/usr/bin/env bash
# The fault-injection tests of the CPU paths under ASan, LSan and UBSan, built
# with clang into build-asan/: CompileFaults.* (every file read, file write and
# NVRTC compile of a tiny compile failed in turn) and PlanFaults.* (every file
# operation of loading a plan): each failure must also free everything it
# allocated (docs/robustness.md). The alloc site is absent in
# this build (the sanitizer owns operator new); the normal build runs it.
#
#   tests/asan/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${KILN_ASAN_BUILD:-$PWD/build-asan}
if ! command -v clang++ >/dev/null; then
  echo "tests/asan/run.sh: needs clang++ (Debian: clang; ./install.sh installs it)" >&2
  exit 1
fi
echo "==> building the compile and plan-load fault tests (clang, ASan + LSan + UBSan) in $BUILD"
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DKILN_ASAN=ON \
        -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" --target kiln_test_compiler_compile kiln_test_runtime_plan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
echo "==> CompileFaults.* under ASan + LSan + UBSan"
"$BUILD/tests/kiln_test_compiler_compile" --gtest_filter='CompileFaults.*' --gtest_brief=1
echo "==> PlanFaults.* under ASan + LSan + UBSan"
"$BUILD/tests/kiln_test_runtime_plan" --gtest_filter='PlanFaults.*' --gtest_brief=1
echo "tests/asan/run.sh: every injected fault ended cleanly, with no leak"
