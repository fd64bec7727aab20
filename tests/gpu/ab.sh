#!/usr/bin/env bash
# Old against new, in one run on one GPU: each build compiles its own plan of
# the same GGUF and benches it; the runs alternate (old, new, old, new) so
# drift between them shows. Prints one JSON line per run and a table last.
#
#   tests/gpu/ab.sh OLD_BUILD NEW_BUILD NAME=GGUF [NAME=GGUF ...]
#
# Env: AB_ROUNDS (default 2), AB_ARGS (extra `kiln bench` arguments, default
# "--prompt-tokens 128 --gen 64 --repeats 5"), AB_CTX (compile --ctx, default 1024),
# RESULTS (default /tmp/kiln-ab).
set -uo pipefail
OLD=$1; NEW=$2; shift 2
RESULTS=${RESULTS:-/tmp/kiln-ab}; mkdir -p "$RESULTS"
ROUNDS=${AB_ROUNDS:-2}
ARGS=${AB_ARGS:---prompt-tokens 128 --gen 64 --repeats 5}
: > "$RESULTS/ab.jsonl"
for spec in "$@"; do
  name=${spec%%=*}; gguf=${spec#*=}
  for r in $(seq 1 "$ROUNDS"); do
    for which in old new; do
      b=$OLD; [ "$which" = new ] && b=$NEW
      plan=/tmp/kiln-ab-$which-$name.plan
      [ -f "$plan" ] || "$b/kiln" compile "$gguf" --target native --ctx "${AB_CTX:-1024}" -o "$plan" -q \
        > "$RESULTS/compile_${which}_$name.log" 2>&1 || { echo "compile $which $name FAILED" >&2; tail -n 3 "$RESULTS/compile_${which}_$name.log" >&2; continue; }
      if "$b/kiln" bench "$plan" --json $ARGS > "$RESULTS/b.json" 2> "$RESULTS/bench_${which}_$name.err"; then
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["ab"]={"build":sys.argv[2],"model":sys.argv[3],"round":int(sys.argv[4])}; print(json.dumps(d))' \
          "$RESULTS/b.json" "$which" "$name" "$r" >> "$RESULTS/ab.jsonl"
      else
        echo "bench $which $name FAILED: $(tail -n 2 "$RESULTS/bench_${which}_$name.err")" >&2
      fi
    done
  done
  rm -f /tmp/kiln-ab-*-"$name".plan
done
python3 - "$RESULTS/ab.jsonl" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
agg = collections.defaultdict(list)
for d in rows:
    for m in ("compiled", "eager"):
        if m in d:
            agg[(d["ab"]["model"], m, d["ab"]["build"])].append((d[m]["ttft_ms_p50"], d[m]["tpot_ms_p50"]))
print(f"{'model':<18} {'mode':<9} {'old TTFT ms':>12} {'new TTFT ms':>12} {'old TPOT ms':>12} {'new TPOT ms':>12}  new/old TPOT")
for (model, m) in sorted({(k[0], k[1]) for k in agg}):
    o, n = agg.get((model, m, "old"), []), agg.get((model, m, "new"), [])
    if not o or not n: continue
    f = lambda v, i: "/".join(f"{x[i]:.3f}" for x in v)
    ratio = (sum(x[1] for x in n) / len(n)) / (sum(x[1] for x in o) / len(o))
    print(f"{model:<18} {m:<9} {f(o,0):>12} {f(n,0):>12} {f(o,1):>12} {f(n,1):>12}  {ratio:.3f}")
PY
