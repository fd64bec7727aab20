#!/usr/bin/env python3
"""Compile memory stays bounded (docs/robustness.md): `kiln compile` of the
Llama 3.2 1B geometry in F16 (`kiln synth --geometry llama-1b --type f16`, a
2.4 GB model) keeps its peak anonymous memory — what the compiler allocates,
as `kiln compile` reports it (RssAnon sampled every 10 ms) — under 1 GiB plus
the largest tensor of the model (the plan writer holds one weight blob at a
time). The model's pages are mapped from the file and not counted.

Takes about a minute on two cores (synth ~35 s, compile ~15 s) and ~5 GB of
temporary disk. No GPU needed.

Run: python3 tests/python/compile_memory_test.py --kiln build/kiln --build build
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gguf

MIB = 1 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--build", required=True)
    kiln = ap.parse_args().kiln
    failures = []

    def check(cond, what, detail=""):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)
            if detail:
                print("     " + str(detail).replace("\n", "\n     "))

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model = d / "llama-1b-f16.gguf"
        t = time.time()
        r = subprocess.run([kiln, "synth", "--geometry", "llama-1b", "--type", "f16", "-q", "-o", str(model)],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"kiln synth llama-1b f16 ({time.time() - t:.1f} s)", r.stderr)
        if failures:
            return 1
        largest = max(int(t.n_bytes) for t in gguf.GGUFReader(str(model)).tensors)
        t = time.time()
        r = subprocess.run([kiln, "compile", str(model), "--target", "sm_90", "--kernel-cache", str(d / "kc"),
                            "-o", str(d / "m.plan")], capture_output=True, text=True)
        elapsed = time.time() - t
        check(r.returncode == 0, f"kiln compile llama-1b f16 ({elapsed:.1f} s)", r.stderr)
        m = re.search(r"peak memory: anonymous ([\d.]+) MiB .*largest weight blob ([\d.]+) MiB\), "
                      r"resident ([\d.]+) MiB", r.stderr)
        check(m is not None, "kiln compile reports its peak memory", r.stderr)
        if failures:
            return 1
        anon, blob, rss = (float(x) * MIB for x in m.groups())
        bound = (1 << 30) + largest
        print(f"     peak anonymous {anon / MIB:.1f} MiB, resident {rss / MIB:.1f} MiB; largest tensor "
              f"{largest / MIB:.1f} MiB; bound {bound / MIB:.1f} MiB")
        check(anon < bound, f"peak anonymous memory {anon / MIB:.0f} MiB < 1 GiB + largest tensor "
                            f"({bound / MIB:.0f} MiB)")
        check(anon > 16 * MIB and rss >= anon, "the numbers are measurements (anonymous > 16 MiB, resident >= it)")
        check(abs(blob - largest) <= 0.1 * MIB, f"the largest weight blob is the largest tensor ({blob / MIB:.1f} MiB)")

    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
