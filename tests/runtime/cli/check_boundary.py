#!/usr/bin/env python3
"""The deployment boundary, checked without a GPU.

For each --binary (kiln-run, kiln_test_runtime_only):
  * dynamic dependencies (readelf -d NEEDED): no libnvrtc, libcublas(Lt), libcuda
    (the driver is reached through cudart_static) or a shared libcudart;
  * symbols (nm -C): nothing of the compiler's namespaces (kiln::compile::,
    kiln::codegen::, kiln::ir::, kiln::passes::, kiln::gguf::, ... or
    kiln::Error, the compiler-side error type).
And over the sources: nothing under runtime/ includes compiler/, codegen/ or ir/.
"""
import argparse
import pathlib
import re
import subprocess
import sys

FORBIDDEN_LIBS = re.compile(r"^lib(nvrtc|cublas|cublasLt|cuda|cudart)\.so")
FORBIDDEN_SYMBOLS = re.compile(
    r"\bkiln::(compile|codegen|ir|passes|gguf|frontend|gen|plan|synth|tokenizer|cli)::|\bkiln::Error\b")
FORBIDDEN_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](compiler|codegen|ir)/')


def needed(binary):
    out = subprocess.run(["readelf", "-d", binary], check=True, capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def symbols(binary):
    r = subprocess.run(["nm", "-C", binary], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        sys.exit(f"FAIL: nm -C {binary} gave no symbols ({r.stderr.strip()}); a stripped binary cannot be checked")
    return r.stdout.splitlines()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", action="append", required=True)
    ap.add_argument("--source", required=True, help="repository root")
    a = ap.parse_args()
    failures = []
    for b in a.binary:
        libs = needed(b)
        bad = [l for l in libs if FORBIDDEN_LIBS.match(l)]
        print(f"{pathlib.Path(b).name}: needs {', '.join(libs) or '(nothing)'}")
        if bad:
            failures.append(f"{b} needs {', '.join(bad)}")
        syms = symbols(b)
        bad_syms = [s for s in syms if FORBIDDEN_SYMBOLS.search(s)]
        print(f"{pathlib.Path(b).name}: {len(syms)} symbols, {len(bad_syms)} from the compiler side")
        if bad_syms:
            failures.append(f"{b} has compiler-side symbols, e.g.:\n    " + "\n    ".join(bad_syms[:10]))
    root = pathlib.Path(a.source) / "runtime"
    n = 0
    for f in sorted(root.rglob("*")):
        if f.suffix not in (".h", ".cpp", ".cuh", ".hpp", ".cc"):
            continue
        n += 1
        for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if FORBIDDEN_INCLUDE.match(line):
                failures.append(f"{f.relative_to(a.source)}:{i}: {line.strip()}")
    print(f"runtime/: {n} source files checked for includes of compiler/, codegen/, ir/")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
