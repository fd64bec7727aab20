#!/usr/bin/env bash
# CTest fixture for tests/runtime/cli: a small plan made by the full `kiln`
# binary (the runtime-only tests cannot compile one themselves).
# Usage: make_plan.sh KILN OUT_DIR  -> OUT_DIR/tiny.plan
set -euo pipefail
kiln=$1
dir=$2
mkdir -p "$dir"
"$kiln" synth --geometry tiny --type q8_0 --seed 7 -q -o "$dir/tiny.gguf"
"$kiln" compile "$dir/tiny.gguf" --target sm_90 --ctx 64 --max-tokens 16 --buckets 16 \
  --kernel-cache "$dir/kernel-cache" -q -o "$dir/tiny.plan"
test -s "$dir/tiny.plan"
echo "wrote $dir/tiny.plan"
