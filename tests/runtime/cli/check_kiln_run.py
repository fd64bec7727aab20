#!/usr/bin/env python3
"""kiln-run's command line, without a GPU: --help, clean errors with the
`kiln-run: error:` format and exit codes (1 for input errors, 3 when there is
no usable GPU), and `inspect` printing exactly what `kiln inspect` prints for
the same plan (one implementation)."""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

failures = []


def run(*args):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
        if detail:
            print("     " + detail.replace("\n", "\n     "))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln-run", required=True)
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--plan", required=True)
    a = ap.parse_args()
    kr, plan = a.kiln_run, a.plan

    rc, out, err = run(kr, "--help")
    check(rc == 0 and all(v in out for v in ("run", "bench", "inspect")), "kiln-run --help lists run, bench, inspect",
          out + err)
    verbs = {l.split()[0] for l in out.split("Subcommands:")[-1].splitlines() if l.startswith("  ") and
             not l.startswith("   ")}
    check(verbs == {"run", "bench", "inspect"}, f"kiln-run's verbs are run, bench, inspect (got {sorted(verbs)})", out)
    rc, out, err = run(kr, "run", "--help")
    check(rc == 0 and all(f in out for f in ("--chat", "--temp", "--top-k", "--top-p", "--seed", "--eager",
                                               "--allow-ptx-jit", "kiln-run run model.plan")),
          "kiln-run run --help has kiln run's flags", out + err)
    rc, out, err = run(kr, "bench", "--help")
    check(rc == 0 and all(f in out for f in ("--json", "--prompt-tokens", "--compiled-only")),
          "kiln-run bench --help has kiln bench's flags", out + err)
    rc, out, err = run(kr, "--version")
    check(rc == 0 and out.startswith("kiln-run "), "kiln-run --version", out + err)

    for verb in ("run", "bench", "inspect"):
        rc, out, err = run(kr, verb, "missing.plan")
        check(rc == 1 and err.startswith("kiln-run: error: cannot open plan 'missing.plan'") and not out.strip(),
              f"kiln-run {verb} missing.plan: a clean error, exit 1", f"rc={rc}\nstdout={out}\nstderr={err}")
    rc, out, err = run(kr, "compile", "x.gguf")
    check(0 < rc < 128, "kiln-run compile: not a verb of the runtime", f"rc={rc}\n{err}")

    rc, out, err = run(kr, "inspect", plan)
    rc2, out2, err2 = run(a.kiln, "inspect", plan)
    check(rc == 0 and "sm_90" in out, "kiln-run inspect PLAN", f"rc={rc}\n{out}{err}")
    check(rc2 == 0 and out == out2, "kiln-run inspect and kiln inspect print the same", f"{out}\n---\n{out2}{err2}")
    rc, out, err = run(kr, "inspect", "--all-tensors", plan)
    rc2, out2, _ = run(a.kiln, "inspect", "--all-tensors", plan)
    check(rc == 0 and out == out2 and "launches" in out, "inspect --all-tensors: same, with every launch", out + err)

    gguf = pathlib.Path(plan).with_suffix(".gguf")
    if gguf.exists():
        rc, out, err = run(kr, "inspect", str(gguf))
        check(rc == 1 and err.startswith("kiln-run: error:") and "not a plan" in err,
              "kiln-run inspect model.gguf: says it reads plans only", f"rc={rc}\n{err}")

    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, "bad.plan")
        data = bytearray(pathlib.Path(plan).read_bytes())
        data[len(data) // 2] ^= 0x01
        pathlib.Path(bad).write_bytes(bytes(data))
        for verb in (["inspect", bad], ["run", bad, "-p", "Hi"]):
            rc, out, err = run(kr, *verb)
            check(rc == 1 and err.startswith("kiln-run: error:") and "hash mismatch" in err and "bad.plan" in err,
                  f"kiln-run {verb[0]} of a corrupt plan: exit 1, names the failed check", f"rc={rc}\n{err}")

    # On a machine with a GPU this generates; without one it is a device error (exit 3).
    rc, out, err = run(kr, "run", plan, "-p", "Hello", "-n", "4")
    check(rc == 0 or (rc == 3 and err.startswith("kiln-run: error:")),
          f"kiln-run run PLAN: generates, or exits 3 naming the missing GPU (rc={rc})", err)

    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
