#!/usr/bin/env python3
"""Records llama.cpp's reference generation for SmolLM2-135M-Instruct Q4_1.

For each prompt in PROMPTS this writes, under tests/golden/generation/:
  <name>.logits.f32   first-step logits (the logits after the whole prompt),
                      the full vocabulary, little-endian float32
  <name>.f32ref.logits.f32
                      the same logits from an independent numpy float32
                      forward pass (weights dequantised by gguf.quants, no
                      activation quantisation): what exact f32 arithmetic
                      gives, to check kiln's interpreter tightly
and one manifest generation.json with, per prompt: the prompt text, the
prompt token ids llama.cpp produced, the greedy continuation ids and its text.

Run (needs llama-cpp-python and the model, see ./fetch_models.sh):
  python3 tests/golden/make_generation_golden.py [--model PATH] [--tokens 24]

Greedy decoding is done here by argmax over llama.cpp's logits (no sampler
in the loop), one eval() per token, so the golden is exactly "argmax of the
reference logits" at every step.
"""
import argparse
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))

CHAT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# (name, text, parse special tokens). Chosen so that llama.cpp's greedy path has
# a clear winner at every one of the first 16 steps (see "greedy_margins" in
# the manifest): kiln computes in f32 while llama.cpp quantises activations, so
# a near-tie (margin < ~0.3 logits) could legitimately flip. "What is the
# capital of France?" was dropped for that reason (first-step margin 0.08 in f32).
PROMPTS = [
    ("raw", "The quick brown fox jumps over the lazy dog. Once upon a time, in a small village,", False),
    ("chat",
     "<|im_start|>system\n" + CHAT_SYSTEM + "<|im_end|>\n"
     "<|im_start|>user\nWhat is 12 + 35?<|im_end|>\n"
     "<|im_start|>assistant\n", True),
    ("code", "def fibonacci(n):\n    # return the n-th Fibonacci number, e.g. fibonacci(10) == 55\n", False),
]


def f32_reference_logits(model_path, ids):
    """Plain numpy llama forward (f32, weights dequantised by gguf.quants):
    logits of the last prompt token. Llama rope is the "normal" (adjacent
    pairs) layout on GGUF's permuted Q/K weights."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(model_path)
    f = {k: v.contents() for k, v in r.fields.items() if k.startswith("llama.")}
    tensors = {t.name: t for t in r.tensors}

    def w(name):
        t = tensors[name]
        return dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])

    L, nh, nkv = f["llama.block_count"], f["llama.attention.head_count"], f["llama.attention.head_count_kv"]
    H = f["llama.embedding_length"]
    hd = H // nh
    eps, theta = np.float32(f["llama.attention.layer_norm_rms_epsilon"]), f["llama.rope.freq_base"]
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    ang = pos[:, None] * theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)[None, :]
    cos, sin = np.cos(ang).astype(np.float32)[:, None, :], np.sin(ang).astype(np.float32)[:, None, :]

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x, heads):
        x = x.reshape(n, heads, hd // 2, 2)
        a, b = x[..., 0], x[..., 1]
        return np.stack([a * cos - b * sin, a * sin + b * cos], -1).reshape(n, heads, hd)

    emb = w("token_embd.weight")
    head = w("output.weight") if "output.weight" in tensors else emb
    x = emb[np.array(ids)]
    mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
    for l in range(L):
        b = "blk.%d." % l
        h = rms(x, w(b + "attn_norm.weight"))
        q = rope(h @ w(b + "attn_q.weight").T, nh)
        k = rope(h @ w(b + "attn_k.weight").T, nkv)
        v = (h @ w(b + "attn_v.weight").T).reshape(n, nkv, hd)
        out = np.zeros((n, nh, hd), np.float32)
        for i in range(nh):
            g = i // (nh // nkv)
            s = q[:, i] @ k[:, g].T / np.float32(np.sqrt(hd)) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            out[:, i] = (s / s.sum(-1, keepdims=True)) @ v[:, g]
        x = x + out.reshape(n, H) @ w(b + "attn_output.weight").T
        h = rms(x, w(b + "ffn_norm.weight"))
        gate, up = h @ w(b + "ffn_gate.weight").T, h @ w(b + "ffn_up.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w(b + "ffn_down.weight").T
    return (rms(x, w("output_norm.weight"))[-1] @ head.T).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(
        os.environ.get("KILN_MODEL_DIR", os.path.join(SRC, ".cache", "models")),
        "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tokens", type=int, default=24, help="greedy tokens per prompt")
    ap.add_argument("--out", default=os.path.join(HERE, "generation"))
    args = ap.parse_args()

    from llama_cpp import Llama
    import llama_cpp

    llm = Llama(model_path=args.model, n_ctx=512, logits_all=True, n_threads=2, seed=0,
                verbose=False)
    os.makedirs(args.out, exist_ok=True)
    manifest = {
        "model": os.path.basename(args.model),
        "reference": "llama-cpp-python %s (llama.cpp CPU backend), n_ctx=512, n_threads=2, greedy argmax"
                     % llama_cpp.__version__,
        "vocab": llm.n_vocab(),
        "prompts": [],
    }
    for name, text, special in PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        llm.reset()
        llm.eval(ids)
        first = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        assert first.shape == (llm.n_vocab(),)
        first.astype("<f4").tofile(os.path.join(args.out, name + ".logits.f32"))
        gen, margins = [], []
        logits = first
        for _ in range(args.tokens):
            tok = int(np.argmax(logits))
            top2 = np.sort(logits)[-2:]
            margins.append(round(float(top2[1] - top2[0]), 4))
            gen.append(tok)
            if tok == llm.token_eos():
                break
            llm.eval([tok])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        f32ref = f32_reference_logits(args.model, ids)
        f32ref.astype("<f4").tofile(os.path.join(args.out, name + ".f32ref.logits.f32"))
        text_out = llm.detokenize(gen).decode("utf-8", errors="replace")
        manifest["prompts"].append({
            "name": name, "text": text, "parse_special": special,
            "prompt_ids": [int(t) for t in ids], "greedy_ids": gen, "greedy_text": text_out,
            "greedy_margins": margins,
            "logits_file": name + ".logits.f32",
            "f32ref_logits_file": name + ".f32ref.logits.f32",
        })
        print("%-5s %3d prompt tokens, min margin (16 steps) %.3f -> %r"
              % (name, len(ids), min(margins[:16]), text_out), file=sys.stderr)
    with open(os.path.join(args.out, "generation.json"), "w") as f:
        # One prompt entry per block, lists on one line: readable diffs.
        text = json.dumps(manifest, indent=1, ensure_ascii=False)
        text = re.sub(r"\[\s*([-0-9.,\s]*?)\s*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
        f.write(text)
        f.write("\n")


if __name__ == "__main__":
    main()
