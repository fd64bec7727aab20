#!/usr/bin/env python3
"""Records llama.cpp's reference generation for SmolLM2-135M-Instruct Q4_1.

For each prompt in PROMPTS this writes, under tests/golden/generation/:
  <name>.logits.f32   first-step logits (the logits after the whole prompt),
                      the full vocabulary, little-endian float32
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
        text_out = llm.detokenize(gen).decode("utf-8", errors="replace")
        manifest["prompts"].append({
            "name": name, "text": text, "parse_special": special,
            "prompt_ids": [int(t) for t in ids], "greedy_ids": gen, "greedy_text": text_out,
            "greedy_margins": margins,
            "logits_file": name + ".logits.f32",
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
