#!/usr/bin/env python3
"""Cross-checks kiln's GGUF reader against the `gguf` package (the format's
reference reader/writer).

1. gguf.GGUFWriter writes a small file with every value type, nested arrays
   and several tensor types (random data); `kiln inspect --json` must report
   the same keys, types, values, tensor names/types/shapes/offsets/sizes as
   gguf.GGUFReader reads, and the values we wrote.
2. The same comparison on the real SmolLM2 model if present (KILN_MODEL_DIR,
   default <source>/.cache/models).
3. `kiln inspect` text mode works, and a truncated file is rejected cleanly.

Run: python3 tests/python/gguf_reader_test.py --kiln build/kiln --build build
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf

GT = gguf.GGMLQuantizationType
VT = gguf.GGUFValueType
FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        print("FAIL:", msg)


def kiln_json(kiln, path):
    out = subprocess.run([kiln, "inspect", "--json", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kiln inspect --json {path} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def flatten(v):
    if isinstance(v, list):
        r = []
        for x in v:
            r.extend(flatten(x))
        return r
    return [v]


def same_value(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) if isinstance(a, float) and math.isnan(a) else float(a) == float(b)
    return a == b


def py_value(field):
    """Value of a GGUFReader field as plain Python (nested arrays flattened by the reader)."""
    c = field.contents()
    if isinstance(c, list):
        return [x.item() if hasattr(x, "item") else x for x in c]
    return c.item() if hasattr(c, "item") else c


def compare_with_reader(path, j, label, full_values=True):
    r = gguf.GGUFReader(path)
    check(j["version"] == int(r.fields["GGUF.version"].contents()), f"{label}: version")
    fields = [(k, f) for k, f in r.fields.items() if not k.startswith("GGUF.")]
    keys = [m["key"] for m in j["metadata"]]
    check(keys == [k for k, _ in fields], f"{label}: key list/order differs: {keys} vs {[k for k, _ in fields]}")
    md = {m["key"]: m for m in j["metadata"]}
    for k, f in fields:
        m = md.get(k)
        if m is None:
            continue
        want_type = f.types[0].name.lower()
        check(m["type"] == want_type, f"{label}: {k}: type {m['type']} vs {want_type}")
        if f.types[0] == VT.ARRAY:
            check(m["elem_type"] == f.types[1].name.lower(), f"{label}: {k}: elem type {m['elem_type']}")
            got, want = flatten(m["value"]), py_value(f)
            check(len(got) == len(want), f"{label}: {k}: {len(got)} items vs {len(want)}")
            if full_values:
                bad = [i for i, (a, b) in enumerate(zip(got, want)) if not same_value(a, b)]
                check(not bad, f"{label}: {k}: items differ at {bad[:5]}")
        else:
            check(same_value(m["value"], py_value(f)), f"{label}: {k}: {m['value']!r} vs {py_value(f)!r}")

    check(len(j["tensors"]) == len(r.tensors), f"{label}: tensor count {len(j['tensors'])} vs {len(r.tensors)}")
    for kt, rt in zip(j["tensors"], r.tensors):
        n = rt.name
        check(kt["name"] == n, f"{label}: tensor name {kt['name']} vs {n}")
        check(kt["type"] == rt.tensor_type.name.lower(), f"{label}: {n}: type {kt['type']} vs {rt.tensor_type.name}")
        check(kt["type_id"] == int(rt.tensor_type), f"{label}: {n}: type id")
        check(kt["shape"] == [int(x) for x in rt.shape], f"{label}: {n}: shape {kt['shape']} vs {list(rt.shape)}")
        check(j["data_offset"] + kt["offset"] == int(rt.data_offset),
              f"{label}: {n}: offset {j['data_offset']}+{kt['offset']} vs {rt.data_offset}")
        check(kt["n_bytes"] == int(rt.n_bytes), f"{label}: {n}: bytes {kt['n_bytes']} vs {rt.n_bytes}")
        check(kt["n_elements"] == int(rt.n_elements), f"{label}: {n}: elements")
    check(j["file_size"] == os.path.getsize(path), f"{label}: file size")
    total = sum(int(t.n_bytes) for t in r.tensors)
    check(j["totals"]["bytes"] == total, f"{label}: total bytes {j['totals']['bytes']} vs {total}")


def synthetic(kiln, tmp):
    rng = np.random.default_rng(1234)
    path = os.path.join(tmp, "every_type.gguf")
    w = gguf.GGUFWriter(path, "llama")
    scalars = {
        "t.u8": (w.add_uint8, 200), "t.i8": (w.add_int8, -100), "t.u16": (w.add_uint16, 60000),
        "t.i16": (w.add_int16, -30000), "t.u32": (w.add_uint32, 4000000000), "t.i32": (w.add_int32, -2000000000),
        "t.f32": (w.add_float32, 0.1), "t.u64": (w.add_uint64, 2**63 + 5), "t.i64": (w.add_int64, -(2**62)),
        "t.f64": (w.add_float64, math.pi), "t.bool": (w.add_bool, True), "t.str": (w.add_string, "héllo\n\"world\""),
    }
    for k, (fn, v) in scalars.items():
        fn(k, v)
    arrays = {
        "t.arr_int": [1, -2, 3], "t.arr_float": [0.5, -1.25, 3.0], "t.arr_str": ["a", "<|bos|>", ""],
        "t.arr_bool": [True, False], "t.nested": [[1, 2], [3]], "t.nested_str": [["x"], ["y", "z"]],
    }
    for k, v in arrays.items():
        w.add_array(k, v)
    tensors = {}
    for name, qt, shape in [("f32", GT.F32, (3, 64)), ("f16", GT.F16, (2, 32)), ("bf16", GT.BF16, (2, 64)),
                            ("q4_0", GT.Q4_0, (4, 64)), ("q4_1", GT.Q4_1, (2, 32)), ("q5_0", GT.Q5_0, (2, 64)),
                            ("q5_1", GT.Q5_1, (2, 32)), ("q8_0", GT.Q8_0, (5, 96))]:
        x = rng.standard_normal(shape).astype(np.float32)
        if qt == GT.F32:
            w.add_tensor(f"w.{name}", x)
        elif qt == GT.F16:
            w.add_tensor(f"w.{name}", x.astype(np.float16))
        else:
            w.add_tensor(f"w.{name}", gguf.quants.quantize(x, qt), raw_dtype=qt)
        tensors[f"w.{name}"] = (qt, [shape[1], shape[0]])
    # K-quants: random block bytes (the reader does not interpret them).
    for name, qt in [("q2_k", GT.Q2_K), ("q3_k", GT.Q3_K), ("q4_k", GT.Q4_K), ("q5_k", GT.Q5_K), ("q6_k", GT.Q6_K)]:
        _, block_bytes = gguf.GGML_QUANT_SIZES[qt]
        w.add_tensor(f"w.{name}", rng.integers(0, 256, (2, block_bytes), dtype=np.uint8), raw_dtype=qt)
        tensors[f"w.{name}"] = (qt, [256, 2])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    j = kiln_json(kiln, path)
    compare_with_reader(path, j, "synthetic")
    # And against what we wrote, independently of GGUFReader.
    md = {m["key"]: m for m in j["metadata"]}
    for k, (_, v) in scalars.items():
        got = md[k]["value"]
        want = float(np.float32(v)) if k == "t.f32" else v
        check(got == want, f"written {k}: {got!r} vs {want!r}")
    check(md["t.arr_int"]["value"] == [1, -2, 3], "written t.arr_int")
    check(md["t.arr_str"]["value"] == ["a", "<|bos|>", ""], "written t.arr_str")
    check(md["t.arr_bool"]["value"] == [True, False], "written t.arr_bool")
    check(md["t.nested"]["value"] == [[1, 2], [3]], f"written t.nested: {md['t.nested']['value']}")
    check(md["t.nested_str"]["value"] == [["x"], ["y", "z"]], "written t.nested_str")
    by_name = {t["name"]: t for t in j["tensors"]}
    for n, (qt, shape) in tensors.items():
        check(by_name[n]["type"] == qt.name.lower() and by_name[n]["shape"] == shape, f"written tensor {n}")
    check(j["architecture"] == "llama", "architecture")
    print(f"synthetic: {len(j['metadata'])} keys, {len(j['tensors'])} tensors compared")
    return path


def text_mode(kiln, path, tmp):
    out = subprocess.run([kiln, "inspect", path], capture_output=True, text=True)
    check(out.returncode == 0, f"kiln inspect text exit {out.returncode}: {out.stderr}")
    check("Verdict:" in out.stdout and "Tensors:" in out.stdout, "text output has tensors and verdict")
    # Truncated copy: must fail with a clear error, not crash.
    data = open(path, "rb").read()
    end = max(int(t.data_offset) + int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)
    bad = os.path.join(tmp, "truncated.gguf")
    with open(bad, "wb") as f:
        f.write(data[: end - 1])  # the last tensor loses its last byte
    out = subprocess.run([kiln, "inspect", bad], capture_output=True, text=True)
    check(out.returncode == 1 and "kiln: error:" in out.stderr and "truncated" in out.stderr,
          f"truncated file: rc={out.returncode} stderr={out.stderr!r}")


def real_model(kiln, source):
    d = os.environ.get("KILN_MODEL_DIR", os.path.join(source, ".cache", "models"))
    path = os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        print(f"SKIP real model: {path} not found (run ./fetch_models.sh)")
        return
    j = kiln_json(kiln, path)
    compare_with_reader(path, j, "smollm2")
    check(j["supported"] is True or j["problems"], "verdict present")
    out = subprocess.run([kiln, "inspect", path], capture_output=True, text=True)
    check(out.returncode == 0 and "blk.1..29" in out.stdout, "smollm2 text output groups layers")
    print(f"smollm2: {len(j['metadata'])} keys, {len(j['tensors'])} tensors compared")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as tmp:
        path = synthetic(args.kiln, tmp)
        text_mode(args.kiln, path, tmp)
    real_model(args.kiln, source)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
