#!/usr/bin/env bash
# Builds the libFuzzer targets with clang + ASan + UBSan into build-fuzz/ and
# runs each for a bounded time (docs/fuzzing.md):
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 25 s, all four)
#
# Seeds come from tests/fuzz/make_seeds.py (needs a `kiln` binary: $KILN, default
# build/kiln, which ./install.sh builds), the committed seeds/ and
# regressions/, and the corpus earlier runs left in build-fuzz/corpus/.
# Exit status 1 if any target crashes, leaks, times out or fails a check; the
# input that did it is kept in build-fuzz/artifacts/<target>/ (commit it to
# tests/fuzz/regressions/<target>/ with the fix). A summary line per target
# (executions, coverage, features, corpus) is printed and appended to
# build-fuzz/fuzz-summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=${1:-25}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(gguf tokenizer plan plan_structured)
BUILD=${KILN_FUZZ_BUILD:-$ROOT/build-fuzz}
KILN=${KILN:-$ROOT/build/kiln}
export KILN_MODEL_DIR=${KILN_MODEL_DIR:-$ROOT/.cache/models}

if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "tests/fuzz/run.sh: needs clang++ and libFuzzer (Debian: clang libclang-rt-14-dev; ./install.sh installs them)" >&2
  exit 1
fi
if [ ! -x "$KILN" ]; then
  echo "tests/fuzz/run.sh: no kiln binary at $KILN (build it with ./install.sh, or set KILN=...)" >&2
  exit 1
fi

echo "==> building fuzz targets (clang, ASan + UBSan) in $BUILD"
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DKILN_FUZZ=ON \
        -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]/#/fuzz_}"

echo "==> seeds"
SEEDS=$BUILD/seeds
# Made in a fresh folder and swapped in, so a run started earlier keeps its own.
rm -rf "$SEEDS.new"
python3 tests/fuzz/make_seeds.py --kiln "$KILN" --out "$SEEDS.new" --models "$KILN_MODEL_DIR"
# The plan tests' small plan, written by the structured target, is a seed for fuzz_plan too.
KILN_FUZZ_PLANS= KILN_FUZZ_WRITE_BASES="$SEEDS.new/plan" "$BUILD/tests/fuzz/fuzz_plan_structured" -runs=0 >/dev/null 2>&1 || true
mkdir -p "$SEEDS.new/plan_structured"
rm -rf "$SEEDS.old"
[ -d "$SEEDS" ] && mv "$SEEDS" "$SEEDS.old"
mv "$SEEDS.new" "$SEEDS"
export KILN_FUZZ_PLANS=$SEEDS/plans

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
declare -A MAX_LEN=([gguf]=2097152 [tokenizer]=4096 [plan]=2097152 [plan_structured]=1024)
failed=()
for t in "${TARGETS[@]}"; do
  corpus=$BUILD/corpus/$t
  art=$BUILD/artifacts/$t
  log=$BUILD/logs/fuzz_$t.log
  mkdir -p "$corpus" "$art" "$(dirname "$log")"
  dirs=("$corpus")
  for d in "$SEEDS/$t" "tests/fuzz/seeds/$t" "tests/fuzz/regressions/$t"; do [ -d "$d" ] && dirs+=("$d"); done
  echo "==> fuzz_$t for ${SECS} s (log: $log)"
  set +e
  nice -n "${KILN_FUZZ_NICE:-0}" "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECS" -timeout=30 -rss_limit_mb=2560 \
    -max_len="${MAX_LEN[$t]}" -print_final_stats=1 -artifact_prefix="$art/" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || true)
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || true)
  corp=$(echo "$last" | grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' || true)
  line="fuzz_$t: ${SECS}s rc=$rc execs=${execs:-?} cov=${cov:-?} ft=${ft:-?} ${corp:-}"
  echo "    $line"
  echo "$(date -u +%FT%TZ) $line" >>"$BUILD/fuzz-summary.txt"
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    grep -E 'ERROR|SUMMARY|kiln fuzz check|Test unit written|runtime error|deadly|uncaught' "$log" | head -20 >&2 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "tests/fuzz/run.sh: FAILED: ${failed[*]} (inputs in $BUILD/artifacts/, logs in $BUILD/logs/)" >&2
  exit 1
fi
echo "tests/fuzz/run.sh: all ${#TARGETS[@]} targets ran ${SECS} s each without a crash, leak or timeout"
