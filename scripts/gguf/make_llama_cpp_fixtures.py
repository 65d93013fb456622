#!/usr/bin/env python3
"""Tiny llama GGUF fixtures quantized by llama.cpp's own quantizer, one file per type, for
crates/aha-model/tests/gguf.rs (`llama_cpp_quantized_fixtures_match_their_dequantized_reference`),
and `dequantized.json`: per file and tensor, gguf-py's own dequantization summarised (sum, sum
of squares, the first 8 values), an independent check of how aha decodes llama.cpp's blocks.

A random 1-layer llama (hidden 256, 4 heads / 2 KV heads of 64, MLP 256, vocab 96; every
2-D row a multiple of 256 so that the k-quants apply) is written in f32 with gguf-py, then
`llama_model_quantize` (llama-cpp-python) writes it in each type with `pure` set, so that
every 2-D tensor gets that type (norms stay f32).

usage: make_llama_cpp_fixtures.py OUT_DIR     (needs: pip install gguf llama-cpp-python numpy)
"""
import json, os, sys, tempfile
import numpy as np
import gguf
import llama_cpp

H, HEADS, KV, HD, FF, VOCAB, LAYERS = 256, 4, 2, 64, 256, 96, 1
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K"]

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)


def rand(shape, scale):
    return (rng.uniform(-1, 1, size=shape) * scale).astype(np.float32)


src = os.path.join(tempfile.mkdtemp(), "tiny-f32.gguf")
w = gguf.GGUFWriter(src, "llama")
w.add_block_count(LAYERS)
w.add_context_length(256)
w.add_embedding_length(H)
w.add_feed_forward_length(FF)
w.add_head_count(HEADS)
w.add_head_count_kv(KV)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_freq_base(10000.0)
w.add_file_type(0)  # all f32
# numpy (rows, cols) is GGUF's [cols, rows], as llama.cpp's converter writes them.
w.add_tensor("token_embd.weight", rand((VOCAB, H), 1.0))
for i in range(LAYERS):
    p = f"blk.{i}"
    w.add_tensor(f"{p}.attn_norm.weight", 1.0 + rand((H,), 0.1))
    w.add_tensor(f"{p}.ffn_norm.weight", 1.0 + rand((H,), 0.1))
    w.add_tensor(f"{p}.attn_q.weight", rand((HEADS * HD, H), 0.1))
    w.add_tensor(f"{p}.attn_k.weight", rand((KV * HD, H), 0.1))
    w.add_tensor(f"{p}.attn_v.weight", rand((KV * HD, H), 0.1))
    w.add_tensor(f"{p}.attn_output.weight", rand((H, HEADS * HD), 0.1))
    w.add_tensor(f"{p}.ffn_gate.weight", rand((FF, H), 0.1))
    w.add_tensor(f"{p}.ffn_up.weight", rand((FF, H), 0.1))
    w.add_tensor(f"{p}.ffn_down.weight", rand((H, FF), 0.07))
w.add_tensor("output_norm.weight", 1.0 + rand((H,), 0.1))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

stats = {}
for t in TYPES:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{t}")
    params.pure = True
    params.nthread = 2
    dst = os.path.join(out, f"tiny-{t}.gguf")
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize {t} failed: {rc}")
    reader = gguf.GGUFReader(dst)
    kinds = sorted({gguf.GGMLQuantizationType(x.tensor_type).name for x in reader.tensors})
    per = {}
    for x in reader.tensors:
        v = gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float64).ravel()
        per[x.name] = {"sum": float(v.sum()), "sum_sq": float((v * v).sum()), "first": [float(a) for a in v[:8]]}
    stats[os.path.basename(dst)] = per
    print(f"wrote {dst} ({os.path.getsize(dst)} bytes; tensor types {kinds})")

with open(os.path.join(out, "dequantized.json"), "w") as f:
    json.dump(stats, f, indent=1, sort_keys=True)
print(f"wrote {os.path.join(out, 'dequantized.json')}")
