#!/usr/bin/env python3
"""A compile never loses or corrupts what is on disk (docs/robustness.md).

Runs `kiln compile` on a tiny synthetic model over an existing plan and checks
that whatever stops the compile leaves that plan byte for byte as it was and no
partial file, and that the kernel cache holds only whole, valid entries:

- bad input (a corrupt model, a value the model cannot take): exit 1;
- a full disk: a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) of 0, 4 KiB,
  half the plan, the plan less one byte: exit 1 naming the disk space;
- SIGKILL at every file write of a compile (the KILN_FAULT=write:N:kill hook),
  at several file writes and several moments of a compile that fills an empty
  kernel cache;
- a failure injected at every host file read and file write, and at the first
  and last NVRTC compile (KILN_FAULT=<site>:N): a clean one-line error (exit 1,
  or 2 for NVRTC) or a good plan where the failure is survivable (an
  unreadable cache entry is a miss), never a crash (every n of every site in
  process, with leak checks: tests/compiler/compile/fault_test.cpp);
- two compiles at once sharing one empty kernel cache (to two outputs, then to
  the same output): both succeed, every entry valid, a third compile all hits.

No GPU needed. Run: python3 tests/python/compile_durability_test.py --kiln build/kiln --build build
"""
import argparse
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAILURES = []
KILN = None


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)
        if detail:
            print("     " + str(detail).replace("\n", "\n     "))


def compile_args(model, out, cache, *extra):
    return [KILN, "compile", str(model), "--target", "sm_90", "-q", "--no-eager", "--ctx", "64",
            "--max-tokens", "16", "--buckets", "8", "-o", str(out),
            *(["--kernel-cache", str(cache)] if cache else ["--no-kernel-cache"]), *extra]


def run(args, env=None, preexec=None, timeout=300):
    e = dict(os.environ)
    e.pop("KILN_FAULT", None)
    e.update(env or {})
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=e, preexec_fn=preexec,
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def fault_counts(args):
    """(read, write, nvrtc) calls of one run (KILN_FAULT=report)."""
    rc, _, err = run(args, {"KILN_FAULT": "report"})
    m = re.search(r"fault sites: read (\d+), write (\d+), nvrtc (\d+)", err)
    assert rc == 0 and m, err
    return tuple(int(x) for x in m.groups())


def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def cache_problems(cache):
    """Entries of the kernel cache that are not whole, valid entries (codegen/nvrtc.cpp format)."""
    bad = []
    for p in sorted(Path(cache).iterdir()):
        if not p.name.endswith(".kc"):
            bad.append(f"{p.name}: not an entry")
            continue
        d = p.read_bytes()
        if len(d) < 40 or d[:8] != b"KILNKC01":
            bad.append(f"{p.name}: bad header")
            continue
        key, nc, npx, s = struct.unpack_from("<QQQQ", d, 8)
        if f"{key:016x}.kc" != p.name or 40 + nc + npx != len(d) or nc == 0 or fnv1a(d[40:]) != s:
            bad.append(f"{p.name}: corrupt")
    return bad


def one_error_line(err, prefixes=("kiln: error: ",)):
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(prefixes)


def main():
    global KILN
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--build", required=True)
    KILN = ap.parse_args().kiln

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model, plan, cache = d / "tiny.gguf", d / "out" / "tiny.plan", d / "kc"
        plan.parent.mkdir()
        rc, _, err = run([KILN, "synth", "--geometry", "tiny", "--type", "q4_0", "-q", "-o", model])
        check(rc == 0, "kiln synth tiny", err)
        rc, _, err = run(compile_args(model, plan, cache))
        check(rc == 0 and plan.exists(), "first compile (fills the kernel cache)", err)
        if FAILURES:
            return 1
        old = plan.read_bytes()
        listing = sorted(p.name for p in plan.parent.iterdir())

        def intact(what, allow_stale_of=None):
            """The old plan byte for byte, nothing else in its folder (a kill between naming and
            renaming may leave the dead process's named temporary, which the next compile removes)."""
            now = sorted(p.name for p in plan.parent.iterdir())
            extra = [n for n in now if n not in listing]
            stale_ok = allow_stale_of is not None and all(
                n.startswith(f"{plan.name}.tmp.{allow_stale_of}.") for n in extra)
            check(plan.read_bytes() == old and (not extra or stale_ok), what,
                  f"plan unchanged: {plan.read_bytes() == old}; new files: {extra}")
            return extra

        # ---- bad input: exit 1, the plan as it was
        bad_model = d / "bad.gguf"
        bad_model.write_bytes(model.read_bytes()[:5000])
        rc, _, err = run(compile_args(bad_model, plan, cache))
        check(rc == 1 and one_error_line(err), "corrupt model: exit 1, one error line", err)
        intact("corrupt model: old plan intact, nothing left")
        rc, _, err = run([KILN, "compile", model, "--target", "sm_90", "-q", "--max-tokens", "4096", "-o", plan,
                          "--kernel-cache", cache])
        check(rc == 1 and one_error_line(err) and "--max-tokens 4096" in err, "--max-tokens 4096: exit 1", err)
        intact("refused option: old plan intact")

        # ---- full disk: a file-size limit in the child
        for limit in (0, 4096, len(old) // 2, len(old) - 1):
            def limit_fsize(limit=limit):
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            rc, _, err = run(compile_args(model, plan, cache), preexec=limit_fsize)
            check(rc == 1 and one_error_line(err) and "cannot write plan" in err and "File too large" in err
                  and "free some disk space" in err, f"file-size limit {limit}: exit 1 naming the disk space", err)
            intact(f"file-size limit {limit}: old plan intact, nothing left")

        # ---- SIGKILL at every file write (warm cache: the plan writer's writes)
        _, n_writes, _ = fault_counts(compile_args(model, d / "probe.plan", cache))
        check(n_writes >= 10, f"a warm compile makes {n_writes} file writes")
        stale = 0
        for n in range(1, n_writes + 1):
            p = subprocess.Popen(compile_args(model, plan, cache), env={**os.environ, "KILN_FAULT": f"write:{n}:kill"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _, err = p.communicate(timeout=300)
            check(p.returncode == -signal.SIGKILL, f"write {n}/{n_writes}: killed", f"rc={p.returncode} {err}")
            stale += len(intact(f"write {n}: old plan intact", allow_stale_of=p.pid))
        check(stale <= 1, f"kills left {stale} named temporaries (at most the one killed before its rename)")
        rc, _, err = run(compile_args(model, plan, cache))
        now = sorted(x.name for x in plan.parent.iterdir())
        check(rc == 0 and now == listing, "the next compile succeeds and removes stale temporaries", f"{err} {now}")
        old = plan.read_bytes()

        # ---- a failure at every read and write: a clean error or a good plan
        reads, writes, _ = fault_counts(compile_args(model, d / "probe.plan", cache))
        for site, total in (("read", reads), ("write", writes)):
            outcomes = {}
            for n in range(1, total + 2):
                rc, _, err = run(compile_args(model, plan, cache), {"KILN_FAULT": f"{site}:{n}"})
                outcomes[rc] = outcomes.get(rc, 0) + 1
                if rc == 0:
                    rc2, _, err2 = run([KILN, "inspect", plan])
                    check(rc2 == 0, f"{site} {n}: survived, and the plan verifies", err2)
                    old = plan.read_bytes()
                else:
                    check(rc == 1 and one_error_line(err) and "Input/output error" in err,
                          f"{site} {n}/{total}: exit 1, one error line", f"rc={rc} {err}")
                    intact(f"{site} {n}: old plan intact, nothing left")
            print(f"     {site}: exit status -> runs {outcomes}")
        check(not cache_problems(cache), "kernel cache valid after the read/write faults", cache_problems(cache))

        # ---- a failure at the first and the last NVRTC compile (no cache: every module compiles;
        # every n, with file-descriptor and mapping leak checks: CompileFaults.EveryNvrtcCompile)
        _, _, n_nvrtc = fault_counts(compile_args(model, d / "probe.plan", None))
        check(n_nvrtc >= 5, f"a compile without cache runs NVRTC {n_nvrtc} times")
        for n in (1, n_nvrtc):
            rc, _, err = run(compile_args(model, plan, None, "-j", "2"), {"KILN_FAULT": f"nvrtc:{n}"})
            check(rc == 2 and one_error_line(err, ("kiln: internal error: NVRTC failed",)) and "fault injected" in err,
                  f"nvrtc {n}/{n_nvrtc}: exit 2, one error line", f"rc={rc} {err}")
            intact(f"nvrtc {n}: old plan intact")

        # ---- SIGKILL at moments of a compile filling an empty cache
        cold = d / "kc-cold"
        for delay in (0.05, 0.2, 0.4, 0.7, 1.0, 1.5):
            p = subprocess.Popen(compile_args(model, plan, cold), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            p.kill()
            p.wait()
            if p.returncode == 0:  # finished before the kill: a good plan
                rc, _, err = run([KILN, "inspect", plan])
                check(rc == 0, f"finished within {delay} s: the plan verifies", err)
                old = plan.read_bytes()
                continue
            if plan.read_bytes() != old:
                # killed after the new plan's rename, before the process exited (the cache,
                # filled by the earlier kills, makes the later compiles that fast): the new
                # plan must be whole, and it is the one the next checks keep
                rc, _, err = run([KILN, "inspect", plan])
                check(rc == 0, f"killed {delay} s into a cold compile, after its rename: the new plan verifies", err)
                old = plan.read_bytes()
            intact(f"killed {delay} s into a cold compile (rc {p.returncode}): old plan intact", allow_stale_of=p.pid)
            if cold.exists():
                probs = [x for x in cache_problems(cold) if ".tmp." not in x]
                check(not probs, f"killed {delay} s in: cache entries whole and valid", probs)
        # SIGKILL at file writes of a compile filling an empty cache (kernel-cache entries, then the plan)
        cold2 = d / "kc-cold2"
        for n in (1, 2, 3, 5, 8, 13, 21, 34):
            p = subprocess.Popen(compile_args(model, plan, cold2), env={**os.environ, "KILN_FAULT": f"write:{n}:kill"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p.wait(timeout=300)
            check(p.returncode == -signal.SIGKILL, f"cold compile, write {n}: killed (rc {p.returncode})")
            intact(f"cold compile, write {n}: old plan intact", allow_stale_of=p.pid)
            probs = [x for x in cache_problems(cold2) if f".tmp.{p.pid}." not in x]
            check(not probs, f"cold compile, write {n}: cache entries whole and valid", probs)
        for c in (cold, cold2):
            rc, _, err = run(compile_args(model, plan, c))
            check(rc == 0, "a compile after the kills succeeds", err)
            check(not cache_problems(c), "  and leaves only valid cache entries", cache_problems(c))

        # ---- two compiles at once sharing one empty kernel cache
        for round_, same_output in ((1, False), (2, True)):
            shared = d / f"kc-shared-{round_}"
            outs = [plan.parent / "a.plan", plan.parent / ("a.plan" if same_output else "b.plan")]
            procs = [subprocess.Popen(compile_args(model, o, shared, "-j", "1"), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for o in outs]
            results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
            check(all(rc == 0 for rc, _ in results),
                  f"two concurrent compiles ({'same' if same_output else 'two'} output{'' if same_output else 's'}) "
                  "both succeed", results)
            for o in set(outs):
                rc, _, err = run([KILN, "inspect", o])
                check(rc == 0, f"  {o.name} verifies", err)
            check(not cache_problems(shared), "  every shared cache entry valid", cache_problems(shared))
            _, _, n = fault_counts(compile_args(model, d / "probe.plan", shared))
            check(n == 0, f"  a third compile finds every kernel in the cache (NVRTC runs: {n})")
            leftovers = [x.name for x in plan.parent.iterdir() if ".tmp." in x.name]
            check(not leftovers, "  no temporaries left", leftovers)

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
