#!/usr/bin/env bash
# The main job on a fresh machine: install, build, fetch the real SmolLM2 model,
# compile it for the GPU, and generate text. Without a GPU it compiles the plan,
# generates on the CPU with the reference interpreter, and says what it could not run.
set -euo pipefail
cd "$(dirname "$0")"
./install.sh
./fetch_models.sh >/dev/null
MODEL=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
KILN=./build/kiln
PROMPT=${PROMPT:-"The three primary colors are"}
TARGET=${TARGET:-}
if [ -z "$TARGET" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then TARGET=native; else TARGET=sm_90; fi
fi
PLAN=.cache/models/smollm2.plan

echo; echo "==> kiln inspect $MODEL"
$KILN inspect "$MODEL"

echo; echo "==> kiln compile (target $TARGET)"
$KILN compile "$MODEL" --target "$TARGET" -o "$PLAN"

echo; echo "==> kiln inspect $PLAN"
$KILN inspect "$PLAN"

if $KILN run "$PLAN" -p "$PROMPT" -n 48 --stats 2>/tmp/kiln_run_err.$$; then
  echo; echo "==> kiln bench"
  $KILN bench "$PLAN" --repeats 3 --gen 32
else
  cat /tmp/kiln_run_err.$$ >&2
  echo
  echo "==> no GPU run: the plan above was compiled and verified, but \`kiln run\` needs an NVIDIA GPU."
  echo "==> generating on the CPU with the reference interpreter instead:"
  $KILN generate --reference "$MODEL" -p "$PROMPT" -n 24
fi
rm -f /tmp/kiln_run_err.$$
