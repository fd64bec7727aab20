#!/usr/bin/env python3
"""README.md's list of supported architectures, weight types and targets is
the output of `kiln supported` (which reads them from the code), verbatim,
between the <!-- kiln supported --> markers. Fails when either changes alone.

Run: python3 tests/python/supported_readme_test.py --kiln build/kiln --build build
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    r = subprocess.run([args.kiln, "supported"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        print("FAIL kiln supported exited %d: %s" % (r.returncode, r.stderr))
        return 1
    out = r.stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- kiln supported -->\n```\n(.*?)```\n<!-- /kiln supported -->", readme, re.S)
    if not m:
        print("FAIL README.md has no ```-block between <!-- kiln supported --> and <!-- /kiln supported -->")
        return 1
    ok = True
    for what in ("architectures", "weight types", "targets"):
        if not re.search(r"^%s\s+\S" % what, out, re.M):
            print("FAIL `kiln supported` prints no '%s' line" % what)
            ok = False
    if "gemma3" not in out or "llama" not in out:
        print("FAIL `kiln supported` does not list llama and gemma3:\n" + out)
        ok = False
    if m.group(1) != out:
        print("FAIL README.md's list differs from `kiln supported`; paste this between the markers:\n" + out)
        print("README has:\n" + m.group(1))
        ok = False
    if ok:
        print("ok   README.md lists what `kiln supported` prints:\n" + out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
