#!/usr/bin/env bash
# The whole test suite: installs and builds (install.sh), fetches the real
# models, then runs every test through CTest (GPU tests skip with a message
# when no GPU is present), then the fuzz targets for a short time each.
set -euo pipefail
cd "$(dirname "$0")"
./install.sh
./fetch_models.sh >/dev/null
export KILN_MODEL_DIR="$PWD/.cache/models"
(cd build && ctest --output-on-failure -j"$(nproc)" "$@")
# Fuzzing under ASan + UBSan (clang): each libFuzzer target for a short bounded
# time; any crash, leak or timeout fails the run (tests/fuzz/run.sh,
# docs/fuzzing.md). KILN_FUZZ_SECONDS sets the time per target (0 skips).
secs=${KILN_FUZZ_SECONDS:-25}
if [ "$secs" != 0 ]; then tests/fuzz/run.sh "$secs"; fi
