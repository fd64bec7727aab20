#!/usr/bin/env bash
# The whole test suite: installs and builds (install.sh), fetches the real
# models, then runs every test through CTest (GPU tests skip with a message
# when no GPU is present), the compile fault tests under ASan/LSan, then the
# fuzz targets for a short time each.
set -euo pipefail
cd "$(dirname "$0")"
./install.sh
./fetch_models.sh >/dev/null
export KILN_MODEL_DIR="$PWD/.cache/models"
(cd build && ctest --output-on-failure -j"$(nproc)" "$@")
# The compile fault-injection tests again under ASan + LSan + UBSan (clang):
# every injected failure must also leak nothing (tests/asan/run.sh).
# KILN_ASAN=0 skips it.
if [ "${KILN_ASAN:-1}" != 0 ]; then tests/asan/run.sh; fi
# Fuzzing under ASan + UBSan (clang): each libFuzzer target for a short bounded
# time; any crash, leak or timeout fails the run (tests/fuzz/run.sh,
# docs/fuzzing.md). KILN_FUZZ_SECONDS sets the time per target (0 skips).
secs=${KILN_FUZZ_SECONDS:-25}
if [ "$secs" != 0 ]; then tests/fuzz/run.sh "$secs"; fi
