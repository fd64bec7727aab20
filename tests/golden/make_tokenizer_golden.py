#!/usr/bin/env python3
"""Writes tokenizer golden data for kiln's tokenizer tests.

Reference implementation: llama.cpp's tokenizer through llama-cpp-python
(`Llama(model_path, vocab_only=True)`), independent of kiln's code. For every
test string it records the ids llama.cpp produces (add_special and
parse_special as given) and whether llama.cpp's detokenizer round-trips it.
Chat templates are rendered with jinja2 from the template text: SmolLM2's from
its GGUF (tokenizer.chat_template), Llama 3 and Gemma 3 from the upstream
template text copied below (no GGUF of those with a template is available here).

Usage: python3 tests/golden/make_tokenizer_golden.py [--models DIR]
Writes tests/golden/tokenizer/<model>.json and chat_templates.json.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "tokenizer")

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}

STRINGS = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n \n",
    "Hello",
    " Hello",
    "  Hello",
    "Hello world",
    "Hello, world!",
    "hello world   ",
    "   leading spaces and trailing   ",
    "tabs\tbetween\twords\t\t",
    "line one\nline two\n\nline four",
    "mixed \t \n whitespace \r\n runs",
    "1",
    "12",
    "123",
    "1234",
    "12345678901234567890",
    "3.14159 2.71828 -42 +7 1e-9",
    "Version 1.2.3-rc4, build #5678.",
    "I'm sure it's fine, we're here, they've gone, I'll go, he'd say.",
    "IT'S LOUD, WE'RE HERE, THEY'VE GONE",
    "Don't won't can't shouldn't",
    "!!!???...,,,;;;:::",
    "(parens) [brackets] {braces} <angles>",
    "a+b=c; x^2 | y & z ~ w $100 @user #tag %pct *star",
    "email@example.com https://example.com/path?q=1&r=2#frag",
    "The quick brown fox jumps over the lazy dog.",
    "Привет, мир! Как дела?",
    "Ελληνικά γράμματα",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "你好，世界！今天天气很好。",
    "日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트입니다",
    "ไทย ภาษา",
    "Ünïcödé àccénts çà et là, naïve café",
    "emoji 😀 😃 😄 🎉",
    "family 👨‍👩‍👧‍👦 and flag 🇺🇸 and skin 👍🏽",
    "heart ❤️ and keycap 1️⃣",
    "zero\u200bwidth\u200dspace",
    "nbsp\u00a0here and ideographic\u3000space",
    "def foo(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "#include <stdio.h>\nint main() { printf(\"hi\\n\"); }",
    "    indented four\n        indented eight",
    "SELECT * FROM users WHERE id = 42;",
    '{"key": "value", "list": [1, 2, 3]}',
    "<html><body><p>Hi</p></body></html>",
    "camelCaseIdentifier snake_case_name SCREAMING_CASE",
    "a",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ab" * 40,
    "\u2581 literal lower one eighth block",
    "<0x41> is not a byte token in text",
    "Mixed: English, Русский, 中文, العربية, हिन्दी, 😀.",
]

SPECIAL_STRINGS = {
    "smollm2": [
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "text<|endoftext|>more text",
        "<|im_start|><|im_end|>",
        "no special <|im_start here",
        " <|im_start|> spaced <|im_end|> ",
    ],
    "gemma3": [
        "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
        "text<eos>more text",
        "<bos>already a bos",
        "no special <start_of_turn here",
        " <start_of_turn> spaced <end_of_turn> ",
    ],
}

# Upstream chat template texts (Jinja), used when no GGUF carrying them is at hand.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "  Tell me a joke.\n"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Q1"},
     {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
]


def model_golden(name, path):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    cases = []

    def add(text, add_special, parse_special):
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
        plain = llm.tokenize(text.encode("utf-8"), add_bos=False, special=parse_special)
        back = llm.detokenize(plain, special=True)
        cases.append({
            "text": text,
            "add_special": add_special,
            "parse_special": parse_special,
            "ids": ids,
            "roundtrip": back == text.encode("utf-8"),
        })

    for s in STRINGS:
        add(s, True, True)
    for s in SPECIAL_STRINGS[name]:
        add(s, True, True)
        add(s, False, False)
    for s in STRINGS[9:20]:
        add(s, False, True)

    n_vocab = llm.n_vocab()
    eog = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    # 1 KB of mixed text for the speed smoke test (ids checked too).
    long_text = (" ".join(STRINGS[9:60]) * 3)[:1024]
    add(long_text, True, True)
    return {"model_file": os.path.basename(path), "n_vocab": n_vocab, "eog_ids": eog, "cases": cases}


# The other BPE pre-tokenizers, checked on SmolLM2's vocabulary: a vocab-only
# GGUF copy with tokenizer.ggml.pre replaced (llama.cpp picks its regexes by it).
PRE_VARIANTS = ["llama-bpe", "qwen2", "gpt-2", "default"]


def write_pre_variant(src, pre, dst):
    import gguf
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        val = pre if k == "tokenizer.ggml.pre" else f.contents()
        vtype = gguf.GGUFValueType(f.types[0])
        sub = gguf.GGUFValueType(f.types[1]) if len(f.types) > 1 else None
        w.add_key_value(k, val, vtype, sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def chat_golden(models_dir):
    import jinja2
    from gguf import GGUFReader
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)
    env.globals["raise_exception"] = raise_exception

    templates = []
    smol = os.path.join(models_dir, MODELS["smollm2"])
    r = GGUFReader(smol)
    smol_tmpl = r.fields["tokenizer.chat_template"].contents()
    templates.append(("smollm2", smol_tmpl, "<|im_start|>"))
    templates.append(("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>"))
    templates.append(("gemma3", GEMMA3_TEMPLATE, "<bos>"))

    out = []
    for name, text, bos in templates:
        t = env.from_string(text)
        renders = []
        for conv in CONVERSATIONS:
            for gen in (True, False):
                try:
                    s = t.render(messages=conv, add_generation_prompt=gen, bos_token=bos)
                except jinja2.exceptions.TemplateError:
                    s = None  # template rejects this conversation
                renders.append({"messages": conv, "add_generation_prompt": gen, "expected": s})
        out.append({"name": name, "template": text, "bos_token": bos, "renders": renders})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.environ.get("KILN_MODEL_DIR", os.path.join(ROOT, ".cache", "models")))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    for name, fname in MODELS.items():
        path = os.path.join(args.models, fname)
        if not os.path.exists(path):
            print(f"skip {name}: {path} missing (run fetch_models.sh)", file=sys.stderr)
            continue
        g = model_golden(name, path)
        with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(g, f, ensure_ascii=False, indent=1)
        print(f"{name}: {len(g['cases'])} cases, eog={g['eog_ids'][:8]}")
    smol = os.path.join(args.models, MODELS["smollm2"])
    if os.path.exists(smol):
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            for pre in PRE_VARIANTS:
                dst = os.path.join(tmp, f"smollm2-{pre}.gguf")
                write_pre_variant(smol, pre, dst)
                g = model_golden("smollm2", dst)
                g["model_file"] = MODELS["smollm2"]
                g["pre_override"] = pre
                with open(os.path.join(OUT, f"smollm2-pre-{pre}.json"), "w", encoding="utf-8") as f:
                    json.dump(g, f, ensure_ascii=False, indent=1)
                print(f"smollm2 with pre={pre}: {len(g['cases'])} cases")
    with open(os.path.join(OUT, "chat_templates.json"), "w", encoding="utf-8") as f:
        json.dump(chat_golden(args.models), f, ensure_ascii=False, indent=1)
    print("chat_templates.json written")


if __name__ == "__main__":
    main()
