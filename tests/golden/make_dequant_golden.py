#!/usr/bin/env python3
"""Golden vectors for kiln's CPU dequantiser (ir/dequant.cpp), produced by the
`gguf` Python package (the GGUF format's reference implementation).

For each type, writes tests/golden/dequant/<type>.bin:
    b"KDQ1", u32 ggml type id, u32 n_elems, u32 n_bytes,
    n_bytes raw block bytes, n_elems little-endian f32 = gguf.quants.dequantize
Block bytes are random (fixed seed) except the fp16 scale/min fields, which are
always finite (never inf/NaN), drawn half from moderate magnitudes and half
from all finite fp16 bit patterns (incl. subnormals, zeros, +-65504).

Also writes quant_<type>.bin for the reference quantisers (Q8_0, Q4_0):
    b"KQT1", u32 ggml type id, u32 n_elems, u32 n_bytes,
    n_elems f32 inputs, n_bytes = gguf.quants.quantize(inputs)

Run: python3 tests/golden/make_dequant_golden.py   (needs numpy and gguf)
"""
import os
import struct
import sys

import numpy as np
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dequant")

# fp16 scale/min field offsets inside a block (ggml-common.h block layouts).
FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
N_BLOCKS = {T.Q4_0: 64, T.Q4_1: 64, T.Q5_0: 64, T.Q5_1: 64, T.Q8_0: 64,
            T.Q2_K: 16, T.Q3_K: 16, T.Q4_K: 16, T.Q5_K: 16, T.Q6_K: 16}


def finite_fp16_bits(rng, count):
    """Random fp16 bit patterns that are finite (exponent field != 31)."""
    bits = rng.integers(0, 1 << 16, size=count, dtype=np.uint32).astype(np.uint16)
    exp = (bits >> 10) & 0x1F
    bits[exp == 0x1F] &= np.uint16(0xBFFF)  # clear the top exponent bit -> finite
    return bits


def scale_bits(rng, count):
    """Half moderate (|d| in [1e-3, 1e-1], random sign), half any finite fp16;
    the first few are fixed edge cases."""
    mag = (1e-3 * 100.0 ** rng.random(count)).astype(np.float32)
    sign = np.where(rng.integers(0, 2, size=count) == 1, -1.0, 1.0).astype(np.float32)
    moderate = (mag * sign).astype(np.float16).view(np.uint16)
    wild = finite_fp16_bits(rng, count)
    pick = rng.integers(0, 2, size=count) == 1
    bits = np.where(pick, wild, moderate).astype(np.uint16)
    edge = [0x0001, 0x03FF, 0x8000, 0x0000, 0x7BFF, 0xFBFF, 0x3C00, 0x0400]
    k = min(len(edge), count)
    bits[:k] = edge[:k]
    return bits


def write(path, magic, tid, n, first, second):
    with open(path, "wb") as f:
        f.write(magic)
        f.write(struct.pack("<III", int(tid), n, len(first) if magic == b"KDQ1" else len(second)))
        f.write(first)
        f.write(second)


def quant_type_golden(rng, t):
    blk, size = GGML_QUANT_SIZES[t]
    nb = N_BLOCKS[t]
    data = rng.integers(0, 256, size=(nb, size), dtype=np.uint16).astype(np.uint8)
    fields = FP16_FIELDS[t]
    sb = scale_bits(rng, nb * len(fields)).reshape(nb, len(fields))
    # Shuffle the edge cases across fields so each field sees some of them.
    for j, off in enumerate(fields):
        col = np.roll(sb[:, j], j * 3)
        data[:, off] = (col & 0xFF).astype(np.uint8)
        data[:, off + 1] = (col >> 8).astype(np.uint8)
    out = quants.dequantize(data, t).astype(np.float32).reshape(-1)
    assert out.size == nb * blk and not np.isnan(out).any(), t.name
    return data.tobytes(), out


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    total = 0

    def emit(name, magic, tid, n, first, second):
        nonlocal total
        path = os.path.join(OUT, name)
        write(path, magic, tid, n, first, second)
        total += os.path.getsize(path)
        print(f"{name}: {n} elements, {os.path.getsize(path)} bytes")

    for t in FP16_FIELDS:
        raw, out = quant_type_golden(rng, t)
        emit(f"{t.name.lower()}.bin", b"KDQ1", t, out.size, raw, out.astype("<f4").tobytes())

    # F16: random non-NaN bit patterns (incl. inf, subnormals, zeros).
    h = rng.integers(0, 1 << 16, size=4096, dtype=np.uint32).astype(np.uint16)
    h = h[~np.isnan(h.view(np.float16))]
    out = quants.dequantize(h.view(np.uint8), T.F16).astype(np.float32)
    emit("f16.bin", b"KDQ1", T.F16, h.size, h.astype("<u2").tobytes(), out.astype("<f4").tobytes())

    # BF16: random non-NaN bit patterns.
    b = rng.integers(0, 1 << 16, size=4096, dtype=np.uint32).astype(np.uint16)
    b = b[~(((b & 0x7F80) == 0x7F80) & ((b & 0x7F) != 0))]
    out = quants.dequantize(b.view(np.uint8), T.BF16).astype(np.float32).reshape(-1)
    emit("bf16.bin", b"KDQ1", T.BF16, b.size, b.astype("<u2").tobytes(), out.astype("<f4").tobytes())

    # F32: identity.
    f = rng.standard_normal(256).astype(np.float32)
    out = quants.dequantize(f.view(np.uint8), T.F32).astype(np.float32)
    emit("f32.bin", b"KDQ1", T.F32, f.size, f.astype("<f4").tobytes(), out.astype("<f4").tobytes())

    # Reference quantisers: inputs -> gguf's quantised bytes.
    for t in (T.Q8_0, T.Q4_0):
        x = (rng.standard_normal((64, 32)) * rng.random((64, 1)) * 4).astype(np.float32)
        x[0] = 0.0                       # all-zero block: d = 0
        x[1] = 0.25                      # constant block
        x[2] = np.linspace(-1, 1, 32)    # evenly spread
        x[3] = -x[2]
        x = x.reshape(-1)
        q = quants.quantize(x, t)
        emit(f"quant_{t.name.lower()}.bin", b"KQT1", t, x.size,
             x.astype("<f4").tobytes(), q.tobytes())

    print(f"total {total} bytes")
    if total > 300_000:
        print("golden data too large", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
