#!/usr/bin/env python3
"""PyTorch SFT throughput baseline: a plain training loop (forward, backward, AdamW).

    python3 scripts/ref/bench_sft_torch.py --model-dir .cache/bench_qwen2_40m [--make-data]

The model is the random ~40M Qwen2 of bench_generate_hf.py (created there if absent). With
--make-data (or when <model-dir>/sft_data.json is missing) it writes the data both sides
train on: --examples rows of --seq-len random ids, the first --prompt-len of them labelled
-100 (no loss), the rest trained, as a JSON list of {"input_ids", "labels"}.

Each optimizer step takes --batch-size examples in micro-batches of --micro-batch, the loss
being the NLL summed over the step's trained tokens divided by their count (as aha's Nll),
gradients clipped at 1, AdamW (lr 1e-5, no weight decay), f32. One warm-up step, then
--steps timed ones. Prints one JSON line: trained tokens/s and peak RSS.
"""
import argparse
import json
import os
import random
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_generate_hf import make_model  # noqa: E402


def make_data(path, n, seq_len, prompt_len, vocab, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        ids = [rng.randrange(1, vocab) for _ in range(seq_len)]
        labels = [-100] * prompt_len + ids[prompt_len:]
        rows.append({"input_ids": ids, "labels": labels})
    with open(path, "w") as f:
        json.dump(rows, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--make-data", action="store_true")
    ap.add_argument("--examples", type=int, default=40)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not os.path.exists(os.path.join(a.model_dir, "model.safetensors")):
        make_model(a.model_dir, 0)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a.model_dir, torch_dtype=torch.float32, attn_implementation="sdpa")
    data_path = os.path.join(a.model_dir, "sft_data.json")
    if a.make_data or not os.path.exists(data_path):
        make_data(data_path, a.examples, a.seq_len, a.prompt_len, model.config.vocab_size, 0)
        print(f"wrote {data_path}", file=sys.stderr)
    rows = json.load(open(data_path))
    need = a.batch_size * (a.steps + 1)
    assert len(rows) >= need, f"{len(rows)} examples, need {need}"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    times, trained = [], 0
    for step in range(a.steps + 1):
        batch = rows[step * a.batch_size:(step + 1) * a.batch_size]
        # Labels shifted as the model predicts: position i predicts token i + 1.
        n_tok = sum(sum(1 for l in r["labels"][1:] if l != -100) for r in batch)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for m in range(0, len(batch), a.micro_batch):
            mb = batch[m:m + a.micro_batch]
            ids = torch.tensor([r["input_ids"] for r in mb])
            labels = torch.tensor([r["labels"] for r in mb])
            logits = model(input_ids=ids).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                ignore_index=-100, reduction="sum") / n_tok
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t
        if step > 0:
            times.append(dt)
            trained += n_tok
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "batch_size": a.batch_size,
        "micro_batch": a.micro_batch, "seq_len": a.seq_len, "steps": a.steps,
        "step_seconds": times, "trained_tokens_per_s": trained / sum(times) if times else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": a.threads,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
    }))


if __name__ == "__main__":
    main()
