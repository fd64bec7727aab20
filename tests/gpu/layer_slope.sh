#!/usr/bin/env bash
# A decode step's cost split into a per-layer slope and a per-token
# intercept: synthetic models of one geometry and type with several layer
# counts (`kiln synth --layers`), each compiled and its compiled decode
# benched; a least-squares line through GPU ms per token against layers.
# The slope is one layer (its kernels, boundaries and bytes), the intercept
# what a token costs besides (embedding, LM head and sampling, the step's
# own overhead). Printed with the bytes a layer reads and their time at the
# copy bandwidth measured in the same runs.
#
#   tests/gpu/layer_slope.sh GEOMETRY TYPE LAYERS [LAYERS ...]
#   e.g. tests/gpu/layer_slope.sh llama-1b q4_k_m 16 8 4 2
#
# Env: KILN (default build/kiln), CONTEXT (rows, default 512), CTX (compile
# --ctx, default 1024), COMPILE_ARGS (more `kiln compile` flags, e.g.
# --no-pdl), ROUNDS (runs per model, default 2), WORK (default
# /tmp/kiln-layer-slope; models are deleted once benched), RESULTS (default
# /tmp/kiln-gpu-results: one JSON line per run in layer_slope.jsonl).
set -uo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 4 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
GEO=$1 TYPE=$2; shift 2
KILN=${KILN:-build/kiln}
CONTEXT=${CONTEXT:-512}
CTX=${CTX:-1024}
COMPILE_ARGS=${COMPILE_ARGS:-}
ROUNDS=${ROUNDS:-2}
WORK=${WORK:-/tmp/kiln-layer-slope}
RESULTS=${RESULTS:-/tmp/kiln-gpu-results}
mkdir -p "$WORK" "$RESULTS"
OUTL="$RESULTS/layer_slope.jsonl"
[ -x "$KILN" ] || { echo "no kiln binary at $KILN (set KILN)" >&2; exit 2; }
RUN="$WORK/run.jsonl"; : > "$RUN"

for n in "$@"; do
  g="$WORK/m.gguf" p="$WORK/m.plan"
  "$KILN" synth --geometry "$GEO" --type "$TYPE" --layers "$n" -o "$g" -q &&
    "$KILN" compile "$g" --target native --ctx "$CTX" $COMPILE_ARGS -o "$p" -q 2> "$WORK/c.err" ||
    { echo "$GEO $TYPE x $n layers FAILED: $(tail -n 1 "$WORK/c.err" 2>/dev/null)" >&2; rm -f "$g" "$p"; continue; }
  for r in $(seq 1 "$ROUNDS"); do
    if "$KILN" bench "$p" --context "$CONTEXT" --gen 64 --repeats 5 --warmup 2 --json --compiled-only > "$WORK/b.json" 2> "$WORK/b.err"; then
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["slope"]={"geometry":sys.argv[2],"type":sys.argv[3],"layers":int(sys.argv[4])}; print(json.dumps(d))' \
        "$WORK/b.json" "$GEO" "$TYPE" "$n" | tee -a "$OUTL" >> "$RUN"
    else
      echo "bench $GEO $TYPE x $n layers FAILED: $(tail -n 1 "$WORK/b.err")" >&2
    fi
  done
  rm -f "$g" "$p"
done

python3 - "$RUN" "$COMPILE_ARGS" <<'PY'
import json, sys, statistics
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for d in runs:
    by.setdefault(d["slope"]["layers"], []).append(d)
if len(by) < 2:
    sys.exit("layer_slope: need runs at two layer counts at least")
xs = sorted(by)
ys = [statistics.median(d["compiled"]["tpot_gpu_ms_p50"] for d in by[n]) for n in xs]
mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
a = my - b * mx
d0 = runs[0]
geo, typ = d0["slope"]["geometry"], d0["slope"]["type"]
print(f"{geo} {typ}, {d0['context']} rows, {d0.get('device', '?')}" + (f", compiled with {sys.argv[2]}" if sys.argv[2] else ""))
print(f"{'layers':>6} {'GPU ms/token':>13} {'fit':>8} {'kernels':>8} {'weights GB':>11}")
for n, y in zip(xs, ys):
    c = by[n][0]["compiled"]
    print(f"{n:>6} {y:>13.4f} {a + b * n:>8.4f} {c.get('decode_kernels_per_token', '?'):>8} {c['decode_weight_bytes_per_token'] / 1e9:>11.3f}")
# bytes a layer reads: the difference between the largest and smallest model
lo, hi = by[xs[0]][0]["compiled"], by[xs[-1]][0]["compiled"]
per = ((hi["decode_weight_bytes_per_token"] + hi["decode_kv_bytes_per_token"]) -
       (lo["decode_weight_bytes_per_token"] + lo["decode_kv_bytes_per_token"])) / (xs[-1] - xs[0])
bw = statistics.median(d["roofline"]["device_copy_GBps"] for d in runs)
k = (hi.get("decode_kernels_per_token", 0) - lo.get("decode_kernels_per_token", 0)) / (xs[-1] - xs[0])
print(f"per layer: {1000 * b:.2f} us ({k:.0f} kernels), {per / 1e6:.1f} MB = {per / bw / 1e3:.2f} us at the copy "
      f"bandwidth ({bw:.0f} GB/s): {1000 * b - per / bw / 1e3:.2f} us over its bytes")
print(f"per token besides the layers: {1000 * a:.1f} us")
PY
