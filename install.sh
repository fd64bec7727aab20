#!/usr/bin/env bash
# Installs everything kiln needs on a fresh Debian 12 machine with the CUDA
# Toolkit (13.0) already present, then configures and builds into build/.
# Idempotent: re-running only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")"

APT_PKGS=(cmake ninja-build g++ pkg-config python3 python3-pip
          libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev libfmt-dev
          flatbuffers-compiler libflatbuffers-dev libxxhash-dev libpcre2-dev
          clang libclang-rt-14-dev)  # clang + libFuzzer/ASan/UBSan runtimes: tests/fuzz/run.sh
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Python: the `gguf` package is the format's own reader, used as an independent cross-check.
if ! python3 -c "import gguf, numpy" >/dev/null 2>&1; then
  echo "==> installing Python packages: gguf numpy"
  python3 -m pip install -q --disable-pip-version-check "gguf==0.19.0" numpy
fi

# CUDA toolkit location (the default Debian/NVIDIA layout), if nvcc is not on PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi

echo "==> configuring and building kiln (build/)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
