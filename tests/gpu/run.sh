#!/usr/bin/env bash
# GPU verification from a fresh clone: builds (unless KILN_BUILD names a ready
# build), runs every GPU test, compute-sanitizer on one full generation, and
# the benchmarks, then prints a summary table last.
#
#   tests/gpu/run.sh [all|tests|bench-smol|bench-1b|bench-8b]...   (default: all)
#
# Env: KILN_BUILD (build dir, default build), KILN_MODEL_DIR (default .cache/models),
#      KILN_BENCH_TYPES (synthetic weight types, default "f16 q8_0 q4_k_m"),
#      RESULTS (folder for logs and JSON, default /tmp/kiln-gpu-results).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${KILN_BUILD:-build}
export KILN_MODEL_DIR=${KILN_MODEL_DIR:-$ROOT/.cache/models}
RESULTS=${RESULTS:-/tmp/kiln-gpu-results}
mkdir -p "$RESULTS"
WORK=${KILN_GPU_WORK:-/tmp/kiln-gpu-work}
mkdir -p "$WORK"
STAGES=("$@"); [ ${#STAGES[@]} -eq 0 ] && STAGES=(all)
want() { for s in "${STAGES[@]}"; do [ "$s" = all ] || [ "$s" = "$1" ] && return 0; done; return 1; }

if [ ! -x "$BUILD/kiln" ]; then
  ./install.sh || exit 1
  BUILD=build
fi
KILN="$BUILD/kiln"
SUMMARY="$RESULTS/summary.txt"
: > "$SUMMARY"
row() { printf '%-44s %s\n' "$1" "$2" | tee -a "$SUMMARY" >/dev/null; }

if ! nvidia-smi -L > "$RESULTS/device.txt" 2>&1; then
  echo "no NVIDIA GPU here (nvidia-smi failed): nothing to verify" >&2
  exit 2
fi
DEVICE=$(head -n 1 "$RESULTS/device.txt")
row "device" "$DEVICE ($(date -u +%Y-%m-%d))"

SMOL="$KILN_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"

if want tests; then
  "$BUILD/tests/kiln_test_gpu" --gtest_color=no > "$RESULTS/gpu_tests.log" 2>&1
  rc=$?
  passed=$(grep -c '^\[       OK \]' "$RESULTS/gpu_tests.log")
  failed=$(grep -c '^\[  FAILED  \]' "$RESULTS/gpu_tests.log")
  skipped=$(grep -c '^\[  SKIPPED \]' "$RESULTS/gpu_tests.log")
  row "GPU tests (kernels vs interpreter, e2e)" "rc=$rc passed=$passed failed=$failed skipped=$skipped"
  grep -E '^\[(smollm2|tiny|kernel)' "$RESULTS/gpu_tests.log" | head -n 60 > "$RESULTS/gpu_errors.txt"
  grep '^\[  FAILED  \]' "$RESULTS/gpu_tests.log" | sort -u | head -n 20 | sed 's/^/    /' | tee -a "$SUMMARY" >/dev/null

  if [ -f "$SMOL" ]; then
    "$KILN" compile "$SMOL" --target native -o "$WORK/smol.plan" -q || row "compile smollm2" "FAILED"
    if command -v compute-sanitizer >/dev/null; then
      compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
        "$KILN" run "$WORK/smol.plan" -p "The three primary colors are" -n 24 > "$RESULTS/memcheck.log" 2>&1
      rc=$?
      row "compute-sanitizer memcheck (compiled run)" "rc=$rc $(grep -E 'ERROR SUMMARY' "$RESULTS/memcheck.log" | tail -n 1)"
      compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$KILN" run "$WORK/smol.plan" --eager -p "The three primary colors are" -n 8 > "$RESULTS/memcheck_eager.log" 2>&1
      rc=$?
      row "compute-sanitizer memcheck (eager run)" "rc=$rc $(grep -E 'ERROR SUMMARY' "$RESULTS/memcheck_eager.log" | tail -n 1)"
    fi
    "$KILN" run "$WORK/smol.plan" -p "The three primary colors are" -n 32 > "$RESULTS/smol_run.txt" 2>&1
    row "kiln run smollm2 (greedy, 32 tokens)" "$(tr '\n' ' ' < "$RESULTS/smol_run.txt" | cut -c1-120)"
    "$KILN" run "$WORK/smol.plan" --chat -p "What is the capital of France?" -n 24 > "$RESULTS/smol_chat.txt" 2>&1
    row "kiln run --chat (one turn)" "$(tr '\n' ' ' < "$RESULTS/smol_chat.txt" | cut -c1-120)"
    "$KILN" run "$WORK/smol.plan" -p "Once upon a time" -n 24 --temp 0.8 --top-k 40 --top-p 0.9 --seed 7 > "$RESULTS/smol_sample.txt" 2>&1
    row "kiln run sampled (T 0.8, top-k 40, top-p 0.9)" "$(tr '\n' ' ' < "$RESULTS/smol_sample.txt" | cut -c1-120)"
    python3 -c 'print("word " * 3000)' > "$WORK/long.txt"
    "$KILN" run "$WORK/smol.plan" -p "$(cat "$WORK/long.txt")" -n 4 > "$RESULTS/smol_long.txt" 2>&1
    row "prompt longer than the context (rc=$?)" "$(tail -n 1 "$RESULTS/smol_long.txt" | cut -c1-150)"
    # A plan compiled on a machine without a GPU (KILN_CPU_PLAN, from KILN_CPU_GGUF)
    # runs here as is, and says what a plan compiled here from the same model says.
    if [ -n "${KILN_CPU_PLAN:-}" ] && [ -f "$KILN_CPU_PLAN" ] && [ -f "${KILN_CPU_GGUF:-}" ]; then
      "$KILN" compile "$KILN_CPU_GGUF" --target native -o "$WORK/cpu_ref.plan" -q
      "$KILN" run "$WORK/cpu_ref.plan" -p "hello world" -n 32 > "$RESULTS/cpu_ref_run.txt" 2>&1
      "$KILN" run "$KILN_CPU_PLAN" -p "hello world" -n 32 > "$RESULTS/cpu_plan_run.txt" 2>&1
      rc=$?
      same=no; cmp -s "$RESULTS/cpu_plan_run.txt" "$RESULTS/cpu_ref_run.txt" && same=yes
      row "plan compiled without a GPU, run here" "rc=$rc, same output as a plan compiled here: $same"
    fi
  fi
fi

bench() {  # bench NAME GGUF
  local name=$1 gguf=$2
  if ! "$KILN" compile "$gguf" --target native -o "$WORK/$name.plan" -q --ctx 1024 > "$RESULTS/compile_$name.log" 2>&1; then
    row "bench $name" "compile FAILED: $(tail -n 1 "$RESULTS/compile_$name.log")"; return
  fi
  if "$KILN" bench "$WORK/$name.plan" --json --prompt-tokens 128 --gen 64 --repeats 5 > "$RESULTS/bench_$name.json" 2> "$RESULTS/bench_$name.err"; then
    python3 - "$RESULTS/bench_$name.json" "$name" >> "$SUMMARY" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); n = sys.argv[2]
for m in ("compiled", "eager"):
    if m in d:
        r = d[m]
        print(f"bench {n:<14} {m:<8} TTFT {r['ttft_ms_p50']:8.2f} ms  prefill {r['prefill_tok_s']:8.0f} t/s  "
              f"TPOT p50 {r['tpot_ms_p50']:7.3f} p99 {r['tpot_ms_p99']:7.3f} ms  {r['decode_tok_s']:6.0f} t/s  "
              f"{100*r['decode_fraction_of_copy_bw']:5.1f}% of copy BW")
print(f"bench {n:<14} load {d['load_s']:.2f} s; speedup decode {d.get('speedup_decode', 0):.2f}x TTFT {d.get('speedup_ttft', 0):.2f}x; "
      f"copy {d['roofline']['device_copy_GBps']:.0f} GB/s, bf16 {d['roofline']['bf16_tensor_TFLOPs']:.0f} TFLOP/s")
PY
  else
    row "bench $name" "FAILED: $(tail -n 2 "$RESULTS/bench_$name.err" | tr '\n' ' ')"
  fi
  rm -f "$WORK/$name.plan"
}

if want bench-smol && [ -f "$SMOL" ]; then bench smollm2-q4_1 "$SMOL"; fi
for geo in 1b 8b; do
  want "bench-$geo" || continue
  for t in ${KILN_BENCH_TYPES:-f16 q8_0 q4_k_m}; do
    g="$WORK/llama-$geo-$t.gguf"
    "$KILN" synth --geometry "llama-$geo" --type "$t" -o "$g" -q > /dev/null 2>&1 || { row "synth llama-$geo $t" FAILED; continue; }
    bench "llama-$geo-$t" "$g"
    rm -f "$g"
  done
done

echo
echo "================ kiln GPU summary ================"
cat "$SUMMARY"
