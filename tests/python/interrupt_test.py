#!/usr/bin/env python3
"""Ctrl-C ends generation cleanly (docs/robustness.md, runtime/cli/interrupt.h).

`kiln generate --reference` (the CPU path of the handler `kiln run` and
`kiln bench` share) on synthetic models (tiny, greedy; SmolLM2-135M geometry,
sampled with a fixed seed); SIGINT while it generates must stop it after the
current token, print
what it generated, and exit with status 130 after one line
"kiln: interrupted: stopped after N generated tokens". The printed text must be
exactly what a run of N tokens (`-n N`, same seed) prints: nothing lost,
nothing half-written. A SIGINT to a verb that installs no handler (synth)
keeps the default action and leaves no partial file. No GPU needed.

Run: python3 tests/python/interrupt_test.py --kiln build/kiln --build build
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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

    def interrupted_run(what, gen, max_n, when):
        """Starts `gen -n max_n`, sends SIGINT when `when(p)` returns, checks the result."""
        p = subprocess.Popen(gen + ["-n", str(max_n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = when(p)
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            check(False, f"{what}: generation stopped within 60 s of SIGINT")
            return
        out, err = first + out, err.decode()
        lines = err.strip().splitlines()
        m = re.fullmatch(r"kiln: interrupted: stopped after (\d+) generated tokens", lines[-1] if lines else "")
        check(p.returncode == 130 and m is not None, f"{what}: exit 130, 'kiln: interrupted' last",
              f"rc={p.returncode}\n{err}")
        check("stopped: interrupted" in err, "  the timing line says why it stopped", err)
        if not m:
            return
        n = int(m.group(1))
        check(1 <= n < max_n, f"  stopped after {n} tokens, not at the end ({max_n})")
        ref = subprocess.run(gen + ["-n", str(n), "-q"], capture_output=True)
        check(ref.returncode == 0 and out == ref.stdout,
              f"  printed exactly what a {n}-token run prints ({len(out)} bytes)",
              f"interrupted: {out[-200:]!r}\nreference:  {ref.stdout[-200:]!r}")

    def read_at_least(n_bytes):
        def when(p):
            got = b""
            while len(got) < n_bytes:
                chunk = os.read(p.stdout.fileno(), n_bytes - len(got))
                if not chunk:
                    break
                got += chunk
            return got
        return when

    with tempfile.TemporaryDirectory() as d:
        models = {}
        for geometry in ("tiny", "smollm2-135m"):
            models[geometry] = Path(d) / f"{geometry}.gguf"
            r = subprocess.run([kiln, "synth", "--geometry", geometry, "--type", "q4_0", "-q", "-o",
                                str(models[geometry])], capture_output=True, text=True)
            check(r.returncode == 0, f"kiln synth {geometry}", r.stderr)
        if failures:
            return 1
        # Greedy on the tiny model prints text fast (~2000 tokens/s, no end-of-generation token in
        # 2000): SIGINT once 200 bytes of text have arrived.
        interrupted_run("tiny, SIGINT after 200 bytes",
                        [kiln, "generate", "--reference", str(models["tiny"]), "-p", "Once", "--ctx", "2048"], 2000,
                        read_at_least(200))
        # A slower model (~20 tokens/s here), sampled: SIGINT 3 s in.
        interrupted_run("smollm2-135m, SIGINT 3 s in",
                        [kiln, "generate", "--reference", str(models["smollm2-135m"]), "-p", "Once", "--temp", "1",
                         "--seed", "5", "--ctx", "4096"], 4000, lambda p: (time.sleep(3.0), b"")[1])

        # A verb without the handler keeps SIGINT's default action.
        p = subprocess.Popen([kiln, "synth", "--geometry", "llama-1b", "--type", "f16", "-q", "-o",
                              str(Path(d) / "big.gguf")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)
        check(p.returncode == -signal.SIGINT, f"kiln synth: SIGINT keeps its default action (rc={p.returncode})")
        left = [f for f in os.listdir(d) if f.startswith("big.gguf")]
        check(not left, "  and leaves no partial file (the GGUF is written whole, then renamed)", left)

    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
