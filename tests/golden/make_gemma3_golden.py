#!/usr/bin/env python3
"""Records llama.cpp's reference generation for Gemma 3 270M (Q4_K_M).

Writes tests/golden/gemma3/gemma3.json with, per prompt: the text, the prompt
token ids llama.cpp produced (BOS included), its greedy continuation (ids,
text, top-1/top-2 margins) and the first-step logits (after the whole prompt)
in compact form: the 256 largest of llama.cpp's logits (ids and values), the
same ids' logits from an independent numpy float32 forward pass (weights
dequantised by gguf.quants, no activation quantisation), and the L2 norm and
mean of both full vectors, and the full vectors' relative L2 difference
between the f32 reference and llama.cpp, on the Q4_K_M model and on an f32
copy of it (every tensor dequantised, f32 KV cache). The vocabulary is 262144
tokens, so full logit vectors (1 MiB each) are not stored.

Run (needs llama-cpp-python, the `gguf` package and the model):
  python3 tests/golden/make_gemma3_golden.py [--model PATH] [--tokens 24]

Greedy decoding is argmax over llama.cpp's logits, one eval() per token.
The "long" prompt is longer than Gemma 3's 512-token sliding window, so its
logits depend on the local layers seeing only the last 512 positions.
"""
import argparse
import json
import os
import re
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
TOP = 256


def number_words(n):
    ones = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
           "sixteen seventeen eighteen nineteen".split()
    tens = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
    if n < 20:
        return ones[n]
    if n < 100:
        return tens[n // 10] + ("" if n % 10 == 0 else "-" + ones[n % 10])
    return ones[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + number_words(n % 100))


# (name, text, parse special tokens)
# Chosen so that llama.cpp's greedy path has a clear winner (top-1 minus
# top-2 logit, "greedy_margins") at each of the first 16 steps: kiln computes
# in f32 while llama.cpp quantises activations, so a near-tie could flip.
# Dropped for that reason: "The quick brown fox ... in a small village," (0.046)
# and "<chat> What is the capital of France?" (0.013). gemma-3-270m is the base
# model (not -it), so its chat answers are poor; the chat prompt still checks
# the turn format and the special tokens.
PROMPTS = [
    ("raw", "Water boils at 100 degrees Celsius. Water freezes at", False),
    ("chat", "<start_of_turn>user\nHello! How are you today?<end_of_turn>\n<start_of_turn>model\n", True),
    ("code", "def fibonacci(n):\n    # return the n-th Fibonacci number, e.g. fibonacci(10) == 55\n", False),
    ("long", "Counting in words: " + ", ".join(number_words(i) for i in range(1, 141)) + ",", False),
]


def f32_reference_logits(model_path, ids):
    """Plain numpy Gemma 3 forward (f32): logits of the last prompt token.
    Norm weights are used as stored (the converter folded Gemma's 1 + w in),
    rope is the neox layout, local layers (i % 6 != 5) see the last
    `sliding_window` positions with rope base 10000, global ones rope base
    rope.freq_base; GeGLU with tanh-approximated GELU; embeddings times
    sqrt(hidden); q scaled by head_dim^-0.5; LM head = token_embd."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(model_path)
    f = {k: v.contents() for k, v in r.fields.items() if k.startswith("gemma3.")}
    tensors = {t.name: t for t in r.tensors}

    def w(name):
        t = tensors[name]
        return dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])

    L, nh, nkv = f["gemma3.block_count"], f["gemma3.attention.head_count"], f["gemma3.attention.head_count_kv"]
    H, hd = f["gemma3.embedding_length"], f["gemma3.attention.key_length"]
    eps, win = np.float32(f["gemma3.attention.layer_norm_rms_epsilon"]), f["gemma3.attention.sliding_window"]
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)

    def rope_tables(theta):
        ang = pos[:, None] * theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)[None, :]
        return np.cos(ang).astype(np.float32)[:, None, :], np.sin(ang).astype(np.float32)[:, None, :]

    tables = {True: rope_tables(10000.0), False: rope_tables(f["gemma3.rope.freq_base"])}

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x, cs):
        cos, sin = cs
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], -1)

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.float32(0.7978845608028654) * x * (1 + np.float32(0.044715) * x * x)))

    t = tensors["token_embd.weight"]
    rows = np.array(ids)
    x = np.stack([dequantize(t.data[i], t.tensor_type).astype(np.float32).reshape(-1) for i in rows])
    x = x * np.float32(np.sqrt(H))
    causal = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
    band = causal + np.tril(np.full((n, n), -np.inf, dtype=np.float32), -win)
    for l in range(L):
        b = "blk.%d." % l
        local = l % 6 != 5
        h = rms(x, w(b + "attn_norm.weight"))
        q = rms((h @ w(b + "attn_q.weight").T).reshape(n, nh, hd), w(b + "attn_q_norm.weight"))
        k = rms((h @ w(b + "attn_k.weight").T).reshape(n, nkv, hd), w(b + "attn_k_norm.weight"))
        v = (h @ w(b + "attn_v.weight").T).reshape(n, nkv, hd)
        q, k = rope(q, tables[local]), rope(k, tables[local])
        mask = band if local else causal
        out = np.zeros((n, nh, hd), np.float32)
        for i in range(nh):
            g = i // (nh // nkv)
            s = q[:, i] @ k[:, g].T / np.float32(np.sqrt(hd)) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            out[:, i] = (s / s.sum(-1, keepdims=True)) @ v[:, g]
        x = x + rms(out.reshape(n, nh * hd) @ w(b + "attn_output.weight").T, w(b + "post_attention_norm.weight"))
        h = rms(x, w(b + "ffn_norm.weight"))
        gate, up = h @ w(b + "ffn_gate.weight").T, h @ w(b + "ffn_up.weight").T
        x = x + rms((gelu(gate) * up) @ w(b + "ffn_down.weight").T, w(b + "post_ffw_norm.weight"))
    last = rms(x, w("output_norm.weight"))[-1]
    V = int(t.shape[1])
    logits = np.empty(V, np.float32)
    for r0 in range(0, V, 16384):  # the 262144 x 640 table, a slice at a time
        emb = dequantize(t.data[r0:r0 + 16384], t.tensor_type).astype(np.float32).reshape(-1, H)
        logits[r0:r0 + emb.shape[0]] = emb @ last
    return logits


def write_f32_copy(model_path, out_path):
    """The model with every tensor dequantised to f32 (same metadata): llama.cpp
    then computes without quantising activations, which isolates how much of
    its difference from the f32 reference is quantised arithmetic."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(model_path)
    w = gguf.GGUFWriter(out_path, arch="gemma3")
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        val = field.contents()
        if key == "general.file_type":
            val = 0  # all f32
        w.add_key_value(key, val, vtype, sub_type=sub)
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])
        w.add_tensor(t.name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(
        os.environ.get("KILN_MODEL_DIR", os.path.join(SRC, ".cache", "models")), "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--tokens", type=int, default=24, help="greedy tokens per prompt")
    ap.add_argument("--out", default=os.path.join(HERE, "gemma3"))
    ap.add_argument("--f32-copy", default=os.path.join(tempfile.gettempdir(), "kiln-gemma3-f32.gguf"),
                    help="where to write the dequantised f32 copy of the model (about 1 GiB; removed after)")
    args = ap.parse_args()

    from llama_cpp import Llama
    import llama_cpp

    write_f32_copy(args.model, args.f32_copy)
    llm32 = Llama(model_path=args.f32_copy, n_ctx=1024, n_threads=2, seed=0, logits_all=True, verbose=False,
                  type_k=0, type_v=0)  # f32 weights and f32 KV cache: no quantised arithmetic
    llm = Llama(model_path=args.model, n_ctx=1024, n_threads=2, seed=0, logits_all=True, verbose=False)
    os.makedirs(args.out, exist_ok=True)
    manifest = {
        "model": os.path.basename(args.model),
        "reference": "llama-cpp-python %s (llama.cpp CPU backend), n_ctx=1024, n_threads=2, greedy argmax; "
                     "f32ref: numpy float32 forward in tests/golden/make_gemma3_golden.py" % llama_cpp.__version__,
        "vocab": llm.n_vocab(),
        "top": TOP,
        "prompts": [],
    }
    for name, text, special in PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)
        llm.reset()
        llm.eval(ids)
        first = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        assert first.shape == (llm.n_vocab(),)
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
        llm32.reset()
        llm32.eval(ids)
        first32 = np.array(llm32.scores[llm32.n_tokens - 1], dtype=np.float32)
        rel32 = float(np.linalg.norm(f32ref - first32) / np.linalg.norm(first32))
        top = np.argsort(-first, kind="stable")[:TOP]
        text_out = llm.detokenize(gen).decode("utf-8", errors="replace")
        rel = float(np.linalg.norm(f32ref - first) / np.linalg.norm(first))
        manifest["prompts"].append({
            "name": name, "text": text, "parse_special": special,
            "prompt_ids": [int(t) for t in ids], "greedy_ids": gen, "greedy_text": text_out,
            "greedy_margins": margins,
            "top_ids": [int(i) for i in top],
            "top_logits": [round(float(first[i]), 5) for i in top],
            "f32ref_top_logits": [round(float(f32ref[i]), 5) for i in top],
            "logits_l2": round(float(np.linalg.norm(first)), 4), "logits_mean": round(float(first.mean()), 5),
            "f32ref_logits_l2": round(float(np.linalg.norm(f32ref)), 4),
            "f32ref_logits_mean": round(float(f32ref.mean()), 5),
            "f32ref_vs_llama_rel_l2": round(rel, 6),
            "f32ref_vs_llama_f32_weights_rel_l2": float("%.3e" % rel32),
        })
        print("%-5s %3d prompt tokens, min margin (16 steps) %.3f, f32ref vs llama.cpp rel L2 %.3e "
              "(vs llama.cpp on f32 weights %.3e) -> %r"
              % (name, len(ids), min(margins[:16]), rel, rel32, text_out), file=sys.stderr)
    os.remove(args.f32_copy)
    with open(os.path.join(args.out, "gemma3.json"), "w") as f:
        text = json.dumps(manifest, indent=1, ensure_ascii=False)
        text = re.sub(r"\[\s*([-0-9.,\s]*?)\s*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
        f.write(text)
        f.write("\n")


if __name__ == "__main__":
    main()
