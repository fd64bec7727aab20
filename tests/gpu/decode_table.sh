#!/usr/bin/env bash
# Issue 8's decode table: for each weight type, a synthetic model of one
# geometry is compiled once (--ctx covers the longest context) and its
# compiled decode is benched at each context; one JSON line per run goes to
# $RESULTS/decode_table.jsonl and a table is printed last: GPU ms per token,
# tokens/s, bytes read per token (weights + KV) and the fraction of the copy
# bandwidth measured in the same run.
#
#   tests/gpu/decode_table.sh GEOMETRY TYPE [TYPE ...]
#   e.g. tests/gpu/decode_table.sh llama-8b q4_k_m q8_0
#
# Env: KILN (the binary, default build/kiln), CONTEXTS (default "512 4096
# 8192"), CTX (compile --ctx, default 8448), TARGET (compile --target, default
# native), ROUNDS (runs per context, default 2), WORK (models and plans, default /tmp/kiln-decode-table; a model already
# there is reused), KEEP (1, the default: keep each type's model and plan in
# WORK for the next run; 0: delete them once the type is benched, so that the
# 8B's five types fit a 64 GB disk: its F16 model and plan take 30 GB,
# all five ~75 GB), RESULTS (default /tmp/kiln-gpu-results). On an H200
# machine an 8B type took 50-100 s to write, compile and bench at the three
# contexts once (session 25).
set -uo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
GEO=$1; shift
KILN=${KILN:-build/kiln}
CONTEXTS=${CONTEXTS:-512 4096 8192}
CTX=${CTX:-8448}
TARGET=${TARGET:-native}
ROUNDS=${ROUNDS:-2}
WORK=${WORK:-/tmp/kiln-decode-table}
RESULTS=${RESULTS:-/tmp/kiln-gpu-results}
mkdir -p "$WORK" "$RESULTS"
OUTL="$RESULTS/decode_table.jsonl"
[ -x "$KILN" ] || { echo "no kiln binary at $KILN (set KILN)" >&2; exit 2; }

for t in "$@"; do
  g="$WORK/$GEO-$t.gguf" p="$WORK/$GEO-$t-$CTX.plan"
  if [ ! -f "$g" ]; then
    "$KILN" synth --geometry "$GEO" --type "$t" -o "$g" -q || { echo "synth $GEO $t FAILED" >&2; rm -f "$g"; continue; }
  fi
  if [ ! -f "$p" ]; then
    "$KILN" compile "$g" --target "$TARGET" --ctx "$CTX" -o "$p" -q 2> "$WORK/c.err" ||
      { echo "compile $GEO $t FAILED: $(tail -n 1 "$WORK/c.err")" >&2; rm -f "$p"; continue; }
  fi
  for c in $CONTEXTS; do
    for r in $(seq 1 "$ROUNDS"); do
      if "$KILN" bench "$p" --context "$c" --gen 64 --repeats 5 --warmup 2 --json --compiled-only > "$WORK/b.json" 2> "$WORK/b.err"; then
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["table"]={"geometry":sys.argv[2],"type":sys.argv[3],"context":int(sys.argv[4])}; print(json.dumps(d))' \
          "$WORK/b.json" "$GEO" "$t" "$c" >> "$OUTL"
      else
        echo "bench $GEO $t at $c FAILED: $(tail -n 1 "$WORK/b.err")" >&2
      fi
    done
  done
  [ "${KEEP:-1}" = 0 ] && rm -f "$g" "$p"
done

[ -s "$OUTL" ] || { echo "no bench runs in $OUTL" >&2; exit 1; }
python3 - "$OUTL" <<'PY'
import json, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    d = json.loads(line)
    k = d["table"]
    c = d["compiled"]
    rows[(k["geometry"], k["type"], k["context"])].append((c, d["roofline"]["device_copy_GBps"], d.get("device", "?")))
print(f"{'geometry':<13} {'type':<7} {'context':>7} {'GPU ms/token':>20} {'tok/s':>7} {'GB/token (w + kv)':>18} {'copy GB/s':>10} {'fraction':>14}")
for (g, t, ctx), v in sorted(rows.items()):
    ms = " / ".join(f"{c['tpot_gpu_ms_p50']:.4f}" for c, _, _ in v)
    c0 = v[0][0]
    gb = f"{c0['decode_weight_bytes_per_token'] / 1e9:.3f} + {c0['decode_kv_bytes_per_token'] / 1e9:.3f}"
    frac = " / ".join(f"{100 * c['decode_fraction_of_copy_bw']:.1f}%" for c, _, _ in v)
    bw = "-".join(sorted({f"{b:.0f}" for _, b, _ in v}))
    print(f"{g:<13} {t:<7} {ctx:>7} {ms:>20} {c0['decode_tok_s']:>7.0f} {gb:>18} {bw:>10} {frac:>14}")
PY
