#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/run.sh calls it).

  make_seeds.py --kiln build/kiln --out build-fuzz/corpus [--models .cache/models]

Makes, under OUT/<target>/:
  gguf/       `kiln synth` tiny models of several weight types; for each real
              model, its metadata alone (no tensors) with every array cut to
              its first 512 items, and its first 64 KiB; small hand-made files
              holding every GGUF value type (scalars, strings, nested arrays)
  tokenizer/  the golden tokenizer strings (tests/golden/tokenizer/*.json) for
              each vocabulary and mode of fuzz_tokenizer, and their ids
  plan/       tiny models compiled by `kiln compile` (several types, with and
              without eager programs); run.sh adds the plan tests' small plan
  plans/      the same plans, the bases of fuzz_plan_structured (not a corpus)
Nothing here is committed; the committed seeds (tests/fuzz/seeds/) are small.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- GGUF encoding
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
          U64: "<Q", I64: "<q", F64: "<d"}


def read_value(buf, pos, t):
    if t in SCALAR:
        fmt = SCALAR[t]
        return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
    if t == STR:
        (n,) = struct.unpack_from("<Q", buf, pos)
        return bytes(buf[pos + 8:pos + 8 + n]), pos + 8 + n
    et, n = struct.unpack_from("<IQ", buf, pos)
    pos += 12
    items = []
    for _ in range(n):
        v, pos = read_value(buf, pos, et)
        items.append(v)
    return (et, items), pos


def write_value(t, v):
    if t in SCALAR:
        return struct.pack(SCALAR[t], v)
    if t == STR:
        return struct.pack("<Q", len(v)) + v
    et, items = v
    return struct.pack("<IQ", et, len(items)) + b"".join(write_value(et, x) for x in items)


def read_metadata(path):
    """(version, [(key, type, value)]) of a GGUF file's key/values."""
    with open(path, "rb") as f:
        head = f.read(24)
        magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", head)
        assert magic == b"GGUF", path
        buf = head + f.read(64 << 20)  # the metadata of real models is a few MiB
    pos, kvs = 24, []
    for _ in range(n_kv):
        (kl,) = struct.unpack_from("<Q", buf, pos)
        key = bytes(buf[pos + 8:pos + 8 + kl])
        (t,) = struct.unpack_from("<I", buf, pos + 8 + kl)
        v, pos = read_value(buf, pos + 12 + kl, t)
        kvs.append((key, t, v))
    return version, kvs


def gguf_bytes(kvs, version=3, tensors=b"", n_tensors=0):
    out = struct.pack("<4sIQQ", b"GGUF", version, n_tensors, len(kvs))
    for key, t, v in kvs:
        out += struct.pack("<Q", len(key)) + key + struct.pack("<I", t) + write_value(t, v)
    out += tensors
    return out + b"\0" * (-len(out) % 32)


def cut(t, v, n):
    if t != ARR:
        return v
    et, items = v
    return et, [cut(et, x, n) for x in items[:n]]


def handmade():
    """Small files with every value type, nested arrays, tensors of several types."""
    kvs = [(b"general.architecture", STR, b"llama"), (b"general.name", STR, b"handmade"),
           (b"general.alignment", U32, 32)]
    for t, v in [(U8, 200), (I8, -100), (U16, 60000), (I16, -30000), (U32, 4000000000), (I32, -2000000000),
                 (F32, 1.5), (BOOL, 1), (U64, 1 << 60), (I64, -(1 << 60)), (F64, 2.25)]:
        kvs.append((b"t.%d" % t, t, v))
    kvs.append((b"t.str_arr", ARR, (STR, [b"a", b"bc", b"\xe4\xbd\xa0"])))
    kvs.append((b"t.nested", ARR, (ARR, [(U8, [1, 2]), (I32, [-1])])))
    kvs.append((b"t.f32_arr", ARR, (F32, [0.5, -1.0])))
    # one f32 tensor [4] and one q8_0 tensor [32]
    tinfo = (struct.pack("<Q", 1) + b"a" + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<IQ", 0, 0) +
             struct.pack("<Q", 1) + b"b" + struct.pack("<I", 1) + struct.pack("<Q", 32) + struct.pack("<IQ", 8, 32))
    head = gguf_bytes(kvs, tensors=tinfo, n_tensors=2)
    data = bytes(range(16)) + b"\0" * 16 + bytes(34)
    yield "handmade_types.gguf", head + data
    yield "handmade_v2.gguf", gguf_bytes(kvs[:4], version=2)
    yield "empty_v3.gguf", gguf_bytes([])


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"make_seeds: {' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr}")


# ---------------------------------------------------------------- tokenizer inputs
def tokenizer_seeds(out):
    texts, ids = [], []
    for f in sorted((ROOT / "tests/golden/tokenizer").glob("*.json")):
        d = json.loads(f.read_text())
        if "cases" in d:
            for c in d["cases"]:
                texts.append(c["text"].encode())
                ids.append(c["ids"])
        else:  # chat templates: conversations, and the rendered text
            for tmpl in d:
                for r in tmpl["renders"]:
                    texts.append(b"\x1e".join(m["content"].encode() for m in r["messages"]))
                    texts.append(r["expected"].encode())
    # Each text once, for a vocabulary and mode chosen round-robin (vocabularies
    # of fuzz_tokenizer: 0, 1 synthetic BPE, 2 small SPM, 3 SmolLM2, 4 Gemma 3),
    # and a third of the golden id sequences, to decode and stream-decode.
    texts = sorted(set(texts))
    n = 0
    for i, t in enumerate(texts):
        vocab, mode = i % 5, (0, 0, 3, 0)[(i // 5) % 4]
        sel = vocab | (mode << 3) | (((i // 20) & 3) << 5)
        write(out / f"text_{i:04d}", bytes([sel]) + t)
        n += 1
    for i, seq in enumerate(ids[::3]):
        sel = (i % 5) | (1 << 3) | ((i & 1) << 5)
        raw = b"".join(struct.pack("<i", x) for x in seq)
        write(out / f"ids_{i:03d}", bytes([sel]) + raw)
        write(out / f"stream_{i:03d}", bytes([sel ^ (3 << 3)]) + raw)
        n += 2
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default=str(ROOT / ".cache/models"))
    a = ap.parse_args()
    out = Path(a.out)
    for sub in ("gguf", "tokenizer", "plan", "plans"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    tmp = out / "tmp"
    tmp.mkdir(exist_ok=True)

    # GGUF: synthetic tiny models, real models' metadata, hand-made files.
    # (f16 / bf16 tiny models are 2.9 MB: compiled below, not fuzzed as GGUF.)
    for t in ["q4_0", "q4_1", "q8_0", "q4_k_m", "q5_1", "q6_k", "f16"]:
        run([a.kiln, "synth", "--geometry", "tiny", "--type", t, "--seed", "1", "-q", "-o", tmp / f"tiny_{t}.gguf"])
        if t != "f16":
            shutil.copy(tmp / f"tiny_{t}.gguf", out / "gguf" / f"synth_tiny_{t}.gguf")
    for m in sorted(Path(a.models).glob("*.gguf")):
        version, kvs = read_metadata(m)
        write(out / "gguf" / f"{m.stem}.meta512.gguf",
              gguf_bytes([(k, t, cut(t, v, 512)) for k, t, v in kvs], version))
        with open(m, "rb") as f:
            write(out / "gguf" / f"{m.stem}.head64k.gguf", f.read(64 << 10))
    for name, data in handmade():
        write(out / "gguf" / name, data)

    n_tok = tokenizer_seeds(out / "tokenizer")

    # Plans: tiny models compiled (kernel cache next to the corpus: fast re-runs).
    cache = out / "kernel-cache"
    # Plans with eager programs are ~4 MB (the eager modules' CUBINs): bases for
    # the structured target (which cuts CUBINs short), not raw seeds.
    for t, extra in [("q4_0", ["--no-eager"]), ("q8_0", []), ("f16", ["--no-eager", "--ctx", "64", "--max-tokens", "32"]),
                     ("q4_k_m", ["--no-eager", "--ctx", "128", "--buckets", "16"]), ("q4_1", ["--no-eager", "--target", "sm_80"])]:
        plan = out / "plans" / f"tiny_{t}.plan"
        target = [] if "--target" in extra else ["--target", "sm_90"]
        run([a.kiln, "compile", tmp / f"tiny_{t}.gguf", "-q", "--kernel-cache", cache, "-o", plan] + target + extra)
        if plan.stat().st_size <= (2 << 20):
            shutil.copy(plan, out / "plan" / plan.name)
    shutil.rmtree(tmp)
    print(f"make_seeds: {len(list((out / 'gguf').iterdir()))} gguf, {n_tok} tokenizer, "
          f"{len(list((out / 'plan').iterdir()))} plan seeds in {out}")


if __name__ == "__main__":
    main()
