#!/usr/bin/env bash
# Prefill (and decode) on the tensor-core path: for each NAME=GGUF, compile
# once (compiled programs only) and run `kiln bench --json` at several prompt
# lengths; prints one JSON line per run and a table last.
#
#   tests/gpu/bench_prefill.sh BUILD NAME=GGUF [NAME=GGUF ...]
#
# Env: PF_PROMPTS (default "128 512 4096"), PF_MAX_TOKENS (compile --max-tokens,
# default 512), PF_GEN (default 16), PF_REPEATS (default 5), RESULTS (default /tmp/kiln-pf).
set -uo pipefail
B=$1; shift
RESULTS=${RESULTS:-/tmp/kiln-pf}; mkdir -p "$RESULTS"
PROMPTS=${PF_PROMPTS:-128 512 4096}
: > "$RESULTS/pf.jsonl"
for spec in "$@"; do
  name=${spec%%=*}; gguf=${spec#*=}
  maxp=0; for p in $PROMPTS; do [ "$p" -gt "$maxp" ] && maxp=$p; done
  plan=/tmp/kiln-pf-$name.plan
  if ! "$B/kiln" compile "$gguf" --target native --no-eager --ctx $((maxp + 128)) \
       --max-tokens "${PF_MAX_TOKENS:-512}" -o "$plan" -q > "$RESULTS/compile_$name.log" 2>&1; then
    echo "compile $name FAILED: $(tail -n 3 "$RESULTS/compile_$name.log")" >&2; continue
  fi
  for p in $PROMPTS; do
    if "$B/kiln" bench "$plan" --json --compiled-only --prompt-tokens "$p" --gen "${PF_GEN:-16}" \
         --repeats "${PF_REPEATS:-5}" > "$RESULTS/b.json" 2> "$RESULTS/bench_$name.err"; then
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["pf"]={"model":sys.argv[2],"prompt":int(sys.argv[3])}; print(json.dumps(d))' \
        "$RESULTS/b.json" "$name" "$p" >> "$RESULTS/pf.jsonl"
    else
      echo "bench $name p$p FAILED: $(tail -n 2 "$RESULTS/bench_$name.err")" >&2
    fi
  done
  rm -f "$plan"
done
python3 - "$RESULTS/pf.jsonl" <<'PY'
import json, sys
print(f"{'model':<16} {'prompt':>6} {'TTFT ms':>9} {'prefill tok/s':>13} {'TFLOP/s':>8} {'% TC':>6} {'TPOT ms':>8} {'% BW':>6}  roofline")
for l in open(sys.argv[1]):
    d = json.loads(l); c = d["compiled"]; r = d["roofline"]
    print(f"{d['pf']['model']:<16} {d['pf']['prompt']:>6} {c['ttft_ms_p50']:>9.2f} {c['prefill_tok_s']:>13.0f} "
          f"{c['prefill_TFLOPs']:>8.1f} {100*c['prefill_fraction_of_tensor_rate']:>5.1f}% {c['tpot_ms_p50']:>8.3f} "
          f"{100*c['decode_fraction_of_copy_bw']:>5.1f}%  bf16 {r['bf16_tensor_TFLOPs']:.0f} TFLOP/s, copy {r['device_copy_GBps']:.0f} GB/s")
PY
