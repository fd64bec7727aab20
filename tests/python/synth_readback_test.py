#!/usr/bin/env python3
"""`kiln synth` output read back by the format's reference reader (gguf-py).

Generates the tiny model in every weight type and the SmolLM2-135M geometry
in Q8_0 and Q4_K_M, then checks with gguf.GGUFReader: llama metadata, the
tokenizer, the tensor table (names, types, shapes) against the geometry, all
weights dequantised by gguf.quants are finite with the intended magnitude,
a numpy forward pass of the tiny models gives finite logits, and the output
is deterministic for a seed. Run by ctest as
  python3 tests/python/synth_readback_test.py --kiln <kiln exe> --build <builddir>
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as QT
from gguf.quants import dequantize

ARGS = None
TINY_TYPES = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
              "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]

# Geometries as the task / model cards state them (not read from kiln's code).
TINY = dict(hidden=256, layers=2, heads=4, kv=2, head_dim=64, ffn=512, vocab=512,
            tied=False, theta=10000.0)
SMOLLM2 = dict(hidden=576, layers=30, heads=9, kv=3, head_dim=64, ffn=1536, vocab=49152,
               tied=True, theta=100000.0)


def field(r, key):
    f = r.fields.get(key)
    assert f is not None, f"missing metadata key {key}"
    return f.contents()


def synth(out, geometry, typ, seed=0, extra=()):
    cmd = [ARGS.kiln, "synth", "--geometry", geometry, "--type", typ, "--seed", str(seed),
           "-o", out, "-q", *extra]
    subprocess.run(cmd, check=True)
    return out


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def use_more_bits(i, n):  # llama.cpp llama-quant.cpp
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


K_FALLBACK = {QT.Q4_K: QT.Q5_0, QT.Q5_K: QT.Q5_1, QT.Q6_K: QT.Q8_0,
              QT.Q2_K: QT.Q4_0, QT.Q3_K: QT.Q4_0}


def expected_tensors(g, typ):
    """name -> (type, ggml-order shape) for a llama of geometry g."""
    h, qd, kvd = g["hidden"], g["heads"] * g["head_dim"], g["kv"] * g["head_dim"]
    single = None if typ == "q4_k_m" else QT[typ.upper()]

    def wt(role, layer, row):
        if single is not None:
            t = single
        else:
            t = QT.Q4_K
            if role == "output" or (role == "token_embd" and g["tied"]):
                t = QT.Q6_K
            if role in ("attn_v", "ffn_down") and use_more_bits(layer, g["layers"]):
                t = QT.Q6_K
        if t in K_FALLBACK and row % 256:
            t = K_FALLBACK[t]
        return t

    out = {"token_embd.weight": (wt("token_embd", -1, h), [h, g["vocab"]]),
           "output_norm.weight": (QT.F32, [h])}
    if not g["tied"]:
        out["output.weight"] = (wt("output", -1, h), [h, g["vocab"]])
    for i in range(g["layers"]):
        p = f"blk.{i}."
        out[p + "attn_norm.weight"] = (QT.F32, [h])
        out[p + "ffn_norm.weight"] = (QT.F32, [h])
        out[p + "attn_q.weight"] = (wt("attn_q", i, h), [h, qd])
        out[p + "attn_k.weight"] = (wt("attn_k", i, h), [h, kvd])
        out[p + "attn_v.weight"] = (wt("attn_v", i, h), [h, kvd])
        out[p + "attn_output.weight"] = (wt("attn_output", i, qd), [qd, h])
        out[p + "ffn_gate.weight"] = (wt("ffn_gate", i, h), [h, g["ffn"]])
        out[p + "ffn_up.weight"] = (wt("ffn_up", i, h), [h, g["ffn"]])
        out[p + "ffn_down.weight"] = (wt("ffn_down", i, g["ffn"]), [g["ffn"], h])
    return out


def check_model(tc, r, g, typ):
    tc.assertEqual(field(r, "general.architecture"), "llama")
    tc.assertEqual(field(r, "llama.embedding_length"), g["hidden"])
    tc.assertEqual(field(r, "llama.block_count"), g["layers"])
    tc.assertEqual(field(r, "llama.attention.head_count"), g["heads"])
    tc.assertEqual(field(r, "llama.attention.head_count_kv"), g["kv"])
    tc.assertEqual(field(r, "llama.feed_forward_length"), g["ffn"])
    tc.assertEqual(field(r, "llama.rope.dimension_count"), g["head_dim"])
    tc.assertEqual(field(r, "llama.vocab_size"), g["vocab"])
    tc.assertAlmostEqual(field(r, "llama.rope.freq_base"), g["theta"], places=1)
    tc.assertAlmostEqual(field(r, "llama.attention.layer_norm_rms_epsilon"), 1e-5, places=9)
    tc.assertEqual(field(r, "general.quantization_version"), 2)
    # Tokenizer: byte-level BPE, every byte a token, merges consistent, ChatML specials.
    tc.assertEqual(field(r, "tokenizer.ggml.model"), "gpt2")
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    tc.assertEqual(len(tokens), g["vocab"])
    tc.assertEqual(len(types), g["vocab"])
    tc.assertEqual(len(set(tokens)), len(tokens), "token strings must be unique")
    ids = {t: i for i, t in enumerate(tokens)}
    for ch in "abcXYZ019!~":
        tc.assertIn(ch, ids)
    tc.assertIn("\u0120", ids)  # GPT-2's spelling of the space byte
    tc.assertIn("\u010a", ids)  # newline byte
    merges = field(r, "tokenizer.ggml.merges")
    tc.assertGreater(len(merges), 100)
    for m in merges:
        a, b = m.split(" ")
        tc.assertIn(a, ids, m)
        tc.assertIn(b, ids, m)
        tc.assertIn(a + b, ids, m)
    bos, eos = field(r, "tokenizer.ggml.bos_token_id"), field(r, "tokenizer.ggml.eos_token_id")
    tc.assertEqual(tokens[bos], "<|im_start|>")
    tc.assertEqual(tokens[eos], "<|im_end|>")
    tc.assertEqual(types[bos], 3)
    tmpl = field(r, "tokenizer.chat_template")
    tc.assertIn("<|im_start|>", tmpl)
    tc.assertIn("add_generation_prompt", tmpl)
    # Tensor table.
    want = expected_tensors(g, typ)
    got = {t.name: (t.tensor_type, [int(x) for x in t.shape]) for t in r.tensors}
    tc.assertEqual(set(got), set(want))
    for name, (t, shape) in want.items():
        tc.assertEqual(got[name], (t, shape), name)


def check_values(tc, t):
    x = dequantize(t.data, t.tensor_type)
    tc.assertTrue(np.isfinite(x).all(), t.name)
    if "norm" in t.name:
        tc.assertAlmostEqual(float(x.mean()), 1.0, delta=0.05, msg=t.name)
    else:
        # sigma 0.02 by design; allow for the per-block scale jitter.
        tc.assertGreater(float(x.std()), 0.01, t.name)
        tc.assertLess(float(x.std()), 0.04, t.name)
        tc.assertLess(abs(float(x.mean())), 0.002, t.name)
    return x


def forward(r, g, ids):
    """Reference llama forward pass (numpy, fp32): logits of the last token."""
    W = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32) for t in r.tensors}
    hd, nh, nkv = g["head_dim"], g["heads"], g["kv"]

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w

    def rope(x, pos):  # x: [T, heads, hd], NORMAL (llama) rope on adjacent pairs
        inv = g["theta"] ** (-np.arange(0, hd, 2) / hd)
        ang = pos[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = x0 * c - x1 * s, x0 * s + x1 * c
        return out

    T = len(ids)
    x = W["token_embd.weight"][ids]
    pos = np.arange(T, dtype=np.float64)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(g["layers"]):
        p = f"blk.{i}."
        a = rms(x, W[p + "attn_norm.weight"])
        q = rope((a @ W[p + "attn_q.weight"].T).reshape(T, nh, hd), pos)
        k = rope((a @ W[p + "attn_k.weight"].T).reshape(T, nkv, hd), pos)
        v = (a @ W[p + "attn_v.weight"].T).reshape(T, nkv, hd)
        k, v = np.repeat(k, nh // nkv, 1), np.repeat(v, nh // nkv, 1)
        sc = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", sc, v).reshape(T, nh * hd)
        x = x + o @ W[p + "attn_output.weight"].T
        f = rms(x, W[p + "ffn_norm.weight"])
        gate, up = f @ W[p + "ffn_gate.weight"].T, f @ W[p + "ffn_up.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ W[p + "ffn_down.weight"].T
    head = W.get("output.weight", W["token_embd.weight"])
    return rms(x, W["output_norm.weight"])[-1] @ head.T


class SynthReadback(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(dir=ARGS.build)
        cls.dir = cls.tmp.name

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_tiny_every_type(self):
        for typ in TINY_TYPES + ["q4_k_m"]:
            with self.subTest(type=typ):
                r = GGUFReader(synth(self.path(f"tiny_{typ}.gguf"), "tiny", typ, seed=7))
                check_model(self, r, TINY, typ)
                for t in r.tensors:
                    check_values(self, t)
                logits = forward(r, TINY, [1, 72, 101, 108, 108, 111])
                self.assertEqual(logits.shape, (TINY["vocab"],))
                self.assertTrue(np.isfinite(logits).all(), typ)
                self.assertGreater(float(logits.std()), 1e-3, typ)

    def test_deterministic(self):
        a = sha(synth(self.path("d1.gguf"), "tiny", "q4_k", seed=42))
        b = sha(synth(self.path("d2.gguf"), "tiny", "q4_k", seed=42))
        c = sha(synth(self.path("d3.gguf"), "tiny", "q4_k", seed=43))
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_alignment_option(self):
        r = GGUFReader(synth(self.path("al.gguf"), "tiny", "q8_0", extra=["--alignment", "64"]))
        self.assertEqual(field(r, "general.alignment"), 64)
        self.assertEqual(r.alignment, 64)
        for t in r.tensors:
            self.assertEqual(t.data_offset % 64, 0, t.name)
        check_model(self, r, TINY, "q8_0")

    def test_bad_type_leaves_no_file(self):
        out = self.path("bad.gguf")
        p = subprocess.run([ARGS.kiln, "synth", "--type", "iq2_xxs", "-o", out],
                           capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertFalse(os.path.exists(out))
        self.assertEqual([f for f in os.listdir(self.dir) if ".tmp" in f], [])

    def test_smollm2_geometry(self):
        for typ in ["q8_0", "q4_k_m"]:
            with self.subTest(type=typ):
                t0 = time.time()
                out = synth(self.path(f"smol_{typ}.gguf"), "smollm2-135m", typ, seed=1)
                r = GGUFReader(out)
                check_model(self, r, SMOLLM2, typ)
                self.assertEqual(len(r.tensors), 272)  # as in the real SmolLM2-135M GGUF
                self.assertEqual(field(r, "llama.context_length"), 8192)
                by_name = {t.name: t for t in r.tensors}
                for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_v.weight",
                             "blk.3.attn_v.weight", "blk.29.ffn_down.weight",
                             "blk.15.ffn_down.weight", "blk.15.ffn_gate.weight",
                             "output_norm.weight"]:
                    check_values(self, by_name[name])
                print(f"  smollm2-135m {typ}: {os.path.getsize(out) / 1e6:.1f} MB, "
                      f"{time.time() - t0:.1f} s", file=sys.stderr)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--build", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
