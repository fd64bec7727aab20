#!/usr/bin/env python3
"""Command-line validation and exit status of `kiln` and `kiln-run` (README.md,
"Exit status"): every bad value is refused before any work with one line in
kiln's format ("kiln: error: ...", exit 1) — zero, negative, huge or
non-numeric token counts, sampling parameters, seeds and device indices, prefill
buckets, and a directory, device file or FIFO where a model or plan is
expected; --help / --version exit 0; a good command on a machine without a GPU
exits 3. No GPU needed.

Run: python3 tests/python/cli_exit_test.py --kiln build/kiln --build build
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

FAILURES = []


def run(*args, timeout=120, env=None):
    try:
    # errors="replace": a tiny random model's text may hold invalid UTF-8 (kiln run writes token bytes as they are)
        r = subprocess.run([str(a) for a in args], capture_output=True, text=True, errors="replace", timeout=timeout,
                           env=None if env is None else {**os.environ, **env})
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        return None, "", "TIMEOUT"


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)
        if detail:
            print("     " + detail.replace("\n", "\n     "))


def expect_error(prog, args, words, rc_want=1):
    """`prog args` exits rc_want with a single kiln-format error line naming `words`."""
    rc, out, err = run(prog, *args)
    name = Path(prog).name
    lines = err.strip().splitlines()
    ok = (rc == rc_want and len(lines) == 1 and lines[0].startswith(f"{name}: error: ")
          and all(w in err for w in words) and "done in" not in err)
    check(ok, f"{name} {' '.join(map(str, args))}: exit {rc_want}, '{' / '.join(words)}'",
          f"rc={rc}\nstdout={out[:500]}\nstderr={err[:1000]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--build", required=True)
    a = ap.parse_args()
    kiln = a.kiln
    kiln_run = str(Path(a.build) / "kiln-run")

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model, plan, cache = d / "tiny.gguf", d / "tiny.plan", d / "kc"
        rc, _, err = run(kiln, "synth", "--geometry", "tiny", "--type", "q4_0", "-q", "-o", model)
        check(rc == 0, "kiln synth tiny", err)
        rc, _, err = run(kiln, "compile", model, "--target", "sm_90", "-q", "--kernel-cache", cache,
                         "--no-eager", "--ctx", "64", "--max-tokens", "16", "--buckets", "8", "-o", plan,
                         timeout=600)
        check(rc == 0 and plan.exists(), "kiln compile with --ctx 64 --max-tokens 16 --buckets 8", err)
        fifo = d / "fifo.gguf"
        os.mkfifo(fifo)
        a_dir = d / "adir"
        a_dir.mkdir()
        a_file = d / "afile"
        a_file.write_text("x")

        # ---- --list-passes names every pipeline's passes, the decode one included
        rc, out, err = run(kiln, "compile", "--list-passes")
        check(rc == 0 and "q8-activations" in out and "tensor-core-gemm" in out and "fold-rms-norm" in out,
              "kiln compile --list-passes lists the default, prefill and decode passes", out + err)
        rc, _, err = run(kiln, "compile", model, "--target", "sm_90", "-q", "--kernel-cache", cache, "--no-eager",
                         "--ctx", "64", "--max-tokens", "16", "--disable-pass", "q8-activations", "-o", d / "noq8.plan",
                         timeout=600)
        check(rc == 0, "kiln compile --disable-pass q8-activations", err)

        # ---- help and version: exit 0
        for prog in (kiln, kiln_run):
            for args in (["--help"], ["--version"], ["run", "--help"]):
                rc, out, _ = run(prog, *args)
                check(rc == 0 and out, f"{Path(prog).name} {' '.join(args)}: exit 0")

        # ---- parser errors in kiln's format, exit 1
        for prog in (kiln, kiln_run):
            expect_error(prog, [], ["--help"])
            expect_error(prog, ["frobnicate"], ["frobnicate"])
            expect_error(prog, ["run", plan, "--no-such-flag"], ["--no-such-flag"])
            expect_error(prog, ["run"], ["plan"])
        expect_error(kiln, ["compile", model, "--ctx", "abc"], ["--ctx", "abc"])
        expect_error(kiln_run, ["run", plan, "-n", "99999999999"], ["99999999999"])

        # ---- a directory, a device file, a FIFO where a file is expected
        for bad, kind in ((a_dir, "a directory"), ("/dev/null", "a character device"), (fifo, "a FIFO")):
            for verb in (["inspect"], ["compile"], ["tokenize"], ["generate", "--reference", "-p", "hi"]):
                expect_error(kiln, verb[:1] + [bad] + verb[1:], ["model", kind])
            for prog in (kiln, kiln_run):
                for verb in (["run", "-p", "hi"], ["bench"]):
                    expect_error(prog, verb[:1] + [bad] + verb[1:], ["plan", kind])
            expect_error(kiln_run, ["inspect", bad], ["plan", kind])
        expect_error(kiln, ["inspect", d / "missing.gguf"], ["cannot open", "missing.gguf"])

        # ---- kiln compile: every value before any work (no plan written, no progress printed)
        out_plan = d / "out.plan"
        for args, words in [
            (["--ctx", "0"], ["--ctx 0", "1..16777216"]),
            (["--ctx", "-5"], ["--ctx -5"]),
            (["--ctx", "99999999999999"], ["--ctx 99999999999999"]),
            (["--max-tokens", "0"], ["--max-tokens 0"]),
            (["--max-tokens", "-1"], ["--max-tokens -1"]),
            (["--max-tokens", "100000000"], ["--max-tokens 100000000"]),
            (["--ctx", "64", "--max-tokens", "128"], ["--max-tokens 128", "at most --ctx"]),
            (["--buckets", "0"], ["--buckets 0"]),
            (["--buckets", "16,0,64"], ["--buckets 0"]),
            (["--buckets", "-16"], ["--buckets -16"]),
            (["--buckets", "1"], ["--buckets 1", "decode"]),
            (["--buckets", "1024"], ["--buckets 1024"]),
            (["--ctx", "64", "--buckets", "128"], ["--buckets 128"]),
            # --ctx not given: the tiny model's context (2048) is the default; nothing is clipped silently
            (["--max-tokens", "4096"], ["--max-tokens 4096", "model's context length 2048"]),
            (["--ctx", "100", "--max-tokens", "128"], ["--max-tokens 128", "at most --ctx"]),
            (["--max-tokens", "64", "--buckets", "16,65"], ["--buckets 65"]),
            (["--buckets", "600"], ["--buckets 600", "2..512"]),
            (["-j", "-1"], ["--jobs -1"]),

            (["--kernel-cache", a_file], ["--kernel-cache", "not a directory"]),
            (["--target", "sm_12"], ["sm_12"]),
        ]:
            expect_error(kiln, ["compile", model, "-o", out_plan, *args], words)
        check(not out_plan.exists(), "no plan written by a refused compile")
        expect_error(kiln, ["compile", model, "-o", a_dir], ["--output", "is a directory"])
        expect_error(kiln, ["compile", model, "-o", d / "nodir" / "x.plan"], ["--output", "does not exist"])

        # ---- sampling, token counts, seeds, devices: refused before the plan is loaded (no GPU needed)
        sampling = [
            (["-n", "0"], ["--max-tokens 0"]),
            (["-n", "-3"], ["--max-tokens -3"]),
            (["--max-tokens", "100000000"], ["--max-tokens 100000000"]),
            (["--temp", "-1"], ["--temp -1"]),
            (["--temp", "nan"], ["--temp nan"]),
            (["--temp", "inf"], ["--temp inf"]),
            (["--temp", "1e9"], ["--temp 1e+09"]),
            (["--top-k", "-1"], ["--top-k -1"]),
            (["--top-k", "999999999"], ["--top-k 999999999"]),
            (["--top-p", "0"], ["--top-p 0"]),
            (["--top-p", "1.5"], ["--top-p 1.5"]),
            (["--top-p", "nan"], ["--top-p nan"]),
            (["--seed", "-1"], ["--seed -1"]),
            (["--seed", "18446744073709551616"], ["--seed 18446744073709551616"]),
            (["--seed", "0x10"], ["--seed 0x10"]),
        ]
        for prog in (kiln, kiln_run):
            for args, words in sampling + [(["--device", "-1"], ["--device -1"]),
                                           (["--device", "100000"], ["--device 100000"])]:
                expect_error(prog, ["run", plan, "-p", "hi", *args], words)
            for args, words in [(["--gen", "0"], ["--gen 0"]), (["--prompt-tokens", "-1"], ["--prompt-tokens -1"]),
                                (["--repeats", "0"], ["--repeats 0"]), (["--warmup", "-1"], ["--warmup -1"]),
                                (["--device", "-2"], ["--device -2"])]:
                expect_error(prog, ["bench", plan, *args], words)
        for args, words in sampling + [(["--ctx", "0"], ["--ctx 0"]), (["--chunk", "0"], ["--chunk 0"]),
                                       (["--ctx", "-1"], ["--ctx -1"])]:
            expect_error(kiln, ["generate", "--reference", model, "-p", "hi", *args], words)
        expect_error(kiln, ["synth", "-o", a_dir], ["--output", "is a directory"])
        expect_error(kiln, ["synth", "-o", d / "s.gguf", "--alignment", "3"], ["--alignment 3", "power of two"])
        expect_error(kiln, ["synth", "-o", d / "s.gguf", "--seed", "-1"], ["--seed -1"])

        # ---- a good command: generates (GPU) or says there is no GPU (exit 3)
        for prog in (kiln, kiln_run):
            rc, out, err = run(prog, "run", plan, "-p", "Hello", "-n", "2")
            name = Path(prog).name
            check(rc == 0 or (rc == 3 and err.startswith(f"{name}: error:")),
                  f"{name} run PLAN: generates, or exits 3 naming the missing GPU (rc={rc})", err)
        rc, out, err = run(kiln, "generate", "--reference", model, "-p", "Hi", "-n", "2", "--seed", "7", "-q")
        check(rc == 0, "kiln generate --reference with valid values: exit 0", err)

        # ---- faults on the host side of `run` (before any GPU is needed): each large host
        # allocation (KILN_FAULT=alloc:n) ends in "out of host memory", exit 1; each plan file
        # operation (plan_read:n: open, stat, map) in an I/O error naming the plan, exit 1
        rc, _, err = run(kiln, "run", plan, "-p", "hi", env={"KILN_FAULT": "report"})
        m = re.search(r"fault sites: read \d+, write \d+, nvrtc \d+, alloc (\d+)", err)
        n_alloc = int(m.group(1)) if m else 0
        check(n_alloc >= 5, f"KILN_FAULT=report counts the host allocations of kiln run ({n_alloc})", err)
        # every site here (12 without a GPU); with a GPU the count runs through the whole
        # generation, so 40 of them spread over it, the first and the last included
        picks = range(1, n_alloc + 1) if n_alloc <= 40 else sorted({1 + (n_alloc - 1) * i // 39 for i in range(40)})
        for n in picks:
            rc, out, err = run(kiln, "run", plan, "-p", "hi", env={"KILN_FAULT": f"alloc:{n}"})
            lines = err.strip().splitlines()
            if not (rc == 1 and len(lines) == 1 and "kiln: error: out of host memory" in lines[0]):
                check(False, f"KILN_FAULT=alloc:{n} kiln run: exit 1, out of host memory", f"rc={rc}\n{err[:800]}")
                break
        else:
            check(n_alloc > 0, f"KILN_FAULT=alloc:n kiln run for {len(picks)} of {n_alloc} sites: each exits 1, "
                  "out of host memory")
        for n in (1, 2, 3):
            rc, out, err = run(kiln_run, "run", plan, "-p", "hi", env={"KILN_FAULT": f"plan_read:{n}"})
            check(rc == 1 and "Input/output error" in err and str(plan) in err and err.count("\n") == 1,
                  f"KILN_FAULT=plan_read:{n} kiln-run run: exit 1, an I/O error naming the plan", f"rc={rc}\n{err}")

        # ---- kiln verify: values checked first; then PASS (exit 0, GPU) or no GPU (exit 3)
        expect_error(kiln, ["verify", plan, model, "--steps", "0"], ["--steps 0"])
        expect_error(kiln, ["verify", plan, a_dir], ["model", "is a directory"])
        expect_error(kiln, ["verify", a_dir, model], ["plan", "is a directory"])
        expect_error(kiln, ["verify", plan, model, "--compiled-only", "--eager-only"], ["exclude each other"])
        expect_error(kiln, ["verify", plan, model, "--vs-fp32", "--eager-only"], ["--vs-fp32", "--eager-only leaves"])
        expect_error(kiln, ["verify", plan, model, "-p", ""], ["empty prompt"])
        rc, out, err = run(kiln, "verify", plan, model, "--steps", "4", timeout=600)
        check((rc == 0 and "verify: PASS" in out) or (rc == 3 and err.startswith("kiln: error:")),
              f"kiln verify PLAN MODEL: PASS (exit 0) or exits 3 naming the missing GPU (rc={rc})", out + err)

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
