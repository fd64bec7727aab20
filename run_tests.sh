#!/usr/bin/env bash
# The whole test suite: installs and builds (install.sh), fetches the real
# models, then runs every test through CTest. GPU tests skip with a message
# when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")"
./install.sh
./fetch_models.sh >/dev/null
export KILN_MODEL_DIR="$PWD/.cache/models"
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
