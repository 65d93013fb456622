#!/usr/bin/env python3
"""transformers `generate` throughput baseline (CPU, float32, 2 threads).

    python3 scripts/ref/bench_generate_hf.py --model-dir /tmp/bench_qwen2_40m [--batch 1 --batch 32]

If --model-dir has no model.safetensors, a random Qwen2 (~40M params: vocab 32000,
hidden 512, 8 layers, 8 heads, 4 kv heads, intermediate 1408, tied embeddings) is
created with --seed and saved there with save_pretrained, so the Rust side can
load the very same weights. Prompts (max batch size x 16 random ids in [1, vocab))
are saved as <model-dir>/prompts.json (list of lists of ids) and reused if present;
(at least 32 prompts)
batch size B uses the first B prompts.

Greedy decoding, min_new_tokens = max_new_tokens = 128, no EOS. One warm-up
generate per batch size, then one timed run. Prints one JSON line per batch size:
  {"impl":"transformers","batch":B,"new_tokens":128,"seconds":s,"tokens_per_s":x}
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_model(model_dir, seed):
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=32000,
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        intermediate_size=1408,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = Qwen2ForCausalLM(cfg)  # default HF init (normal std 0.02), seeded
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    model.save_pretrained(model_dir, safe_serialization=True)
    log(f"created random Qwen2 in {model_dir} (seed {seed})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, action="append", help="repeatable; default 1 and 32")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa | eager)")
    ap.add_argument("--warmup-tokens", type=int, default=0, help="new tokens in warm-up run (default: --new-tokens)")
    args = ap.parse_args()
    batches = args.batch or [1, 32]
    torch.set_num_threads(args.threads)
    os.makedirs(args.model_dir, exist_ok=True)
    if not os.path.exists(os.path.join(args.model_dir, "model.safetensors")):
        make_model(args.model_dir, args.seed)

    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32, attn_implementation=args.attn)
    model.eval()
    vocab = model.config.vocab_size
    n_params = sum(p.numel() for p in model.parameters())  # tied lm_head counted once

    ppath = os.path.join(args.model_dir, "prompts.json")
    need = max(max(batches), 32)
    prompts = None
    if os.path.exists(ppath):
        with open(ppath) as f:
            prompts = json.load(f)
        if len(prompts) < need or any(len(p) != args.prompt_len for p in prompts):
            prompts = None
    if prompts is None:
        rng = np.random.default_rng(args.seed)
        prompts = rng.integers(1, vocab, size=(need, args.prompt_len)).tolist()
        with open(ppath, "w") as f:
            json.dump(prompts, f)
        log(f"wrote {ppath}")

    log(f"transformers {transformers.__version__}, torch {torch.__version__}, params {n_params}, "
        f"threads {torch.get_num_threads()}, attn {args.attn}")

    def gen(ids, n):
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=n,
            min_new_tokens=n,
            eos_token_id=None,
            pad_token_id=0,
        )

    with torch.inference_mode():
        for b in batches:
            ids = torch.tensor(prompts[:b], dtype=torch.int64)
            gen(ids, args.warmup_tokens or args.new_tokens)  # warm-up
            t0 = time.perf_counter()
            out = gen(ids, args.new_tokens)
            dt = time.perf_counter() - t0
            assert out.shape == (b, args.prompt_len + args.new_tokens), out.shape
            print(json.dumps({
                "impl": "transformers",
                "batch": b,
                "new_tokens": args.new_tokens,
                "seconds": round(dt, 4),
                "tokens_per_s": round(b * args.new_tokens / dt, 2),
                "params": n_params,
                "threads": torch.get_num_threads(),
                "attn": args.attn,
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "first_new_tokens_row0": out[0, args.prompt_len:args.prompt_len + 8].tolist(),
            }), flush=True)


if __name__ == "__main__":
    main()
