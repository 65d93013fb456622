#!/usr/bin/env python3
"""Tiny llama-SentencePiece GGUF files and llama.cpp's encodings of a few texts.

usage: make_spm_fixture.py [OUT_DIR]   (default crates/aha-text/tests/fixtures/gguf_spm)

Trains a small SentencePiece BPE model (byte fallback, two user-defined symbols), writes it
with llama.cpp's own Python writer (gguf-py) as `tokenizer.ggml.model = "llama"` (tokens,
scores, token types as llama.cpp's converter sets them) next to a 1-layer random Llama, in
two variants of the tokenizer flags, and records what llama.cpp (llama-cpp-python,
vocab_only) encodes. Needs `pip install gguf sentencepiece numpy llama-cpp-python`.
"""
import io, json, os, sys

import numpy as np
import sentencepiece as spm
import gguf
from llama_cpp import Llama

OUT = sys.argv[1] if len(sys.argv) > 1 else "crates/aha-text/tests/fixtures/gguf_spm"

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Compute 12 + 30 and put the answer in a box: the answer is 42.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "I'm sure they've said it's fine, we'll see; you'd know.",
    "Let me think step by step. First, 7 * 6 = 42. Then 42 - 2 = 40.",
    "深度求索的推理模型 こんにちは 안녕하세요 héllo wörld café",
    "<think>reasoning goes here</think> and then the final answer.",
    "Mistral, Llama and TinyLlama use SentencePiece tokenizers with byte fallback.",
]
# Several variations so BPE has pairs to merge.
SENTENCES = [f"{s} {i}" if i % 3 else s for i in range(40) for s in CORPUS]

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "The year 2025 has 365 days; 3.14159 * 1234567 = 3878509.0",
    "深度求索 (DeepSeek) 的推理模型：こんにちは、世界！안녕하세요",
    "emoji: 🤗🚀👍🏽 ❤️ and symbols ∑∫√ ≠ ≤",
    "  leading spaces,\ttabs\n\n\nand newlines   ",
    "I'm sure they've said it's fine, we'll see; you'd know.",
    "<think>\nLet me check: 12 + 30 = 42.\n</think>\nThe answer is \\boxed{42}.",
    "<s>[INST] What is 2+2? [/INST] 4</s>",
    "a<unk>b</s>c<s>",
    "▁already▁escaped and <0x41> byte names",
    " ",
    "",
]


def train():
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_writer=buf,
        model_type="bpe",
        vocab_size=420,
        byte_fallback=True,
        character_coverage=1.0,
        user_defined_symbols=["<think>", "</think>"],
        split_digits=True,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=buf.getvalue())


def vocab(sp):
    tokens, scores, types = [], [], []
    T = gguf.TokenType
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            t = T.UNKNOWN
        elif sp.is_control(i):
            t = T.CONTROL
        elif sp.is_unused(i):
            t = T.UNUSED
        elif sp.is_byte(i):
            t = T.BYTE
        elif tokens[-1] in ("<think>", "</think>"):
            t = T.USER_DEFINED
        else:
            t = T.NORMAL
        types.append(int(t))
    return tokens, scores, types


def write(path, sp, flags):
    tokens, scores, types = vocab(sp)
    n, h, ff, heads = len(tokens), 32, 64, 4
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny-spm")
    w.add_context_length(256)
    w.add_embedding_length(h)
    w.add_block_count(1)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(h // heads)
    w.add_vocab_size(n)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    for k, v in flags.items():
        getattr(w, f"add_{k}")(v)
    rng = np.random.default_rng(0)
    r = lambda *s: (rng.standard_normal(s) * 0.2).astype(np.float32)
    w.add_tensor("token_embd.weight", r(n, h))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(h, np.float32))
    for x in ["q", "k", "v", "output"]:
        w.add_tensor(f"blk.0.attn_{x}.weight", r(h, h))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(h, np.float32))
    w.add_tensor("blk.0.ffn_gate.weight", r(ff, h))
    w.add_tensor("blk.0.ffn_up.weight", r(ff, h))
    w.add_tensor("blk.0.ffn_down.weight", r(h, ff))
    w.add_tensor("output_norm.weight", np.ones(h, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    sp = train()
    variants = {
        # llama.cpp's defaults for SentencePiece: add BOS, a space prefix.
        "tiny-spm.gguf": {"add_bos_token": True, "add_eos_token": False},
        "tiny-spm-noprefix-eos.gguf": {
            "add_bos_token": False,
            "add_eos_token": True,
            "add_space_prefix": False,
        },
    }
    out = {"texts": TEXTS, "files": {}}
    for name, flags in variants.items():
        path = os.path.join(OUT, name)
        write(path, sp, flags)
        llm = Llama(model_path=path, vocab_only=True, verbose=False)
        enc = lambda t, add, special: llm.tokenize(t.encode(), add_bos=add, special=special)
        out["files"][name] = [
            {
                "plain": enc(t, False, False),
                "special": enc(t, False, True),
                "add_special": enc(t, True, True),
            }
            for t in TEXTS
        ]
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    ref = os.path.join(OUT, "llama_cpp_encodings.json")
    with open(ref, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(f"wrote {ref}")


if __name__ == "__main__":
    main()
