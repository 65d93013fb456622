#!/usr/bin/env python3
"""Reference encodings and chat-template renderings for a GGUF file's tokenizer, from
transformers' GGUF loader (and llama.cpp's tokenizer when llama-cpp-python is installed).

usage: tokenizer_reference.py MODEL.gguf OUT.json

Only the header is needed: a header-only copy (no tensors) is written to a temp dir, so the
first part of a split download works too. Needs `pip install gguf transformers`.
"""
import json, os, struct, sys, tempfile

TEXTS = [
    "Hello, world!",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "The year 2025 has 365 days; 3.14159 * 1234567 = 3878509.0",
    "深度求索 (DeepSeek) 的推理模型：こんにちは、世界！안녕하세요",
    "emoji: 🤗🚀👍🏽 ❤️ and symbols ∑∫√ ≠ ≤",
    "  leading spaces,\ttabs\n\n\nand newlines   ",
    "I'm sure they've said it's fine, we'll see; you'd know.",
    "<think>\nLet me check: 12 + 30 = 42.\n</think>\nThe answer is \\boxed{42}.",
    "",
]
CONVERSATION = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "2+2 = 4."},
    {"role": "user", "content": "And 3*7? Answer briefly."},
]


def header_only(src, dst):
    """Copy the GGUF header with the tensor count set to 0 (metadata only)."""
    with open(src, "rb") as f:
        data = f.read(64 << 20)
    magic, version, n_tensors, n_kv = struct.unpack_from("<IIQQ", data, 0)
    assert magic == 0x46554747, "not a GGUF file"
    pos = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(ty, pos):
        if ty in sizes:
            return pos + sizes[ty]
        if ty == 8:
            (n,) = struct.unpack_from("<Q", data, pos)
            return pos + 8 + n
        if ty == 9:
            et, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if et in sizes:
                return pos + n * sizes[et]
            for _ in range(n):
                pos = skip(et, pos)
            return pos
        raise ValueError(f"type {ty}")

    for _ in range(n_kv):
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        (ty,) = struct.unpack_from("<I", data, pos)
        pos = skip(ty, pos + 4)
    with open(dst, "wb") as f:
        f.write(struct.pack("<IIQQ", magic, version, 0, n_kv))
        f.write(data[24:pos])
        f.write(b"\0" * ((32 - pos % 32) % 32))


def main():
    src, out = sys.argv[1], sys.argv[2]
    from transformers import AutoTokenizer

    tmp = tempfile.mkdtemp()
    header_only(src, os.path.join(tmp, "h.gguf"))
    tok = AutoTokenizer.from_pretrained(tmp, gguf_file="h.gguf")
    specials = [t for t in tok.all_special_tokens]
    texts = TEXTS + ["".join(specials[:4]) + " between " + " ".join(specials[:2])]
    res = {"source": os.path.basename(src), "texts": [], "special_tokens": specials}
    llama = None
    try:
        import llama_cpp

        llama = llama_cpp.Llama(model_path=os.path.join(tmp, "h.gguf"), vocab_only=True, verbose=False)
    except Exception as e:  # not installed, or header-only file refused
        print(f"llama.cpp tokenizer unavailable: {e}", file=sys.stderr)
    for t in texts:
        entry = {"text": t, "hf": tok.encode(t, add_special_tokens=False), "hf_special": tok.encode(t, add_special_tokens=True)}
        if llama is not None:
            entry["llama_cpp"] = llama.tokenize(t.encode(), add_bos=False, special=True)
        res["texts"].append(entry)
    tmpl = getattr(tok, "chat_template", None)
    if tmpl:
        res["conversation"] = CONVERSATION
        res["rendered"] = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
        res["rendered_no_gen"] = tok.apply_chat_template(CONVERSATION[:3], tokenize=False)
    with open(out, "w") as f:
        json.dump(res, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
