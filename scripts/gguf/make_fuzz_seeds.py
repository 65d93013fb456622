#!/usr/bin/env python3
"""Seed corpus for crates/aha-gguf/fuzz (gguf_header): small valid and broken GGUF files."""
import os, struct, sys

out = sys.argv[1] if len(sys.argv) > 1 else "crates/aha-gguf/fuzz/corpus/gguf_header"
os.makedirs(out, exist_ok=True)

def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b

def kv(k, ty, payload):
    return s(k) + struct.pack("<I", ty) + payload

def gguf(version=3, kvs=(), tensors=(), data=b""):
    h = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(kvs)) + b"".join(kvs)
    for name, dims, ty, off in tensors:
        h += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ty, off)
    h += b"\0" * ((32 - len(h) % 32) % 32)
    return h + data

kvs = [
    kv("general.architecture", 8, s("llama")),
    kv("llama.block_count", 4, struct.pack("<I", 1)),
    kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + s("a") + s("b") + s("ab")),
    kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, 3) + struct.pack("<3i", 1, 1, 3)),
    kv("general.alignment", 4, struct.pack("<I", 32)),
    kv("x.f", 6, struct.pack("<f", 1.5)),
    kv("x.b", 7, b"\1"),
]
f32 = struct.pack("<8f", *range(8))
q80 = struct.pack("<e", 0.5) + bytes(range(32))  # one Q8_0 block
data = f32 + b"\0" * 0 + q80 + b"\0" * 30
seeds = {
    "valid_v3": gguf(3, kvs, [("a", [8], 0, 0), ("b", [32], 8, 32)], data),
    "valid_v2": gguf(2, kvs[:2], [("a", [8], 0, 0)], f32),
    "no_tensors": gguf(3, kvs),
    "wrong_magic": b"GGUX" + gguf(3, kvs)[4:],
    "v1": gguf(1, kvs),
    "unknown_type": gguf(3, kvs[:1], [("a", [8], 16, 0)], f32),
    "too_big": gguf(3, kvs[:1], [("a", [8, 1 << 20], 0, 0)], f32),
    "huge_count": struct.pack("<IIQQ", 0x46554747, 3, 1 << 62, 1 << 62),
    "huge_string": struct.pack("<IIQQ", 0x46554747, 3, 0, 1) + struct.pack("<Q", 1 << 60),
    "nested": gguf(3, [kv("n", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 1) + b"\1\0\0\0")]),
}
seeds["truncated"] = seeds["valid_v3"][: len(seeds["valid_v3"]) // 2]
for k, v in seeds.items():
    open(os.path.join(out, k), "wb").write(v)
print(f"wrote {len(seeds)} seeds to {out}")
