#!/usr/bin/env python3
"""Continuous-batching gain of a running OpenAI-compatible server: N requests sent one
after another, then the same N at once (streaming, so time to first token is seen).
Standard library only (and bench_load.py beside it). Prints one JSON object.

    python3 scripts/serve/bench_batching.py --url http://127.0.0.1:8080 --n 32 --max-tokens 64
"""
import argparse
import json
import statistics
import threading
import time

from bench_load import one

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain what a hash map is in two sentences.",
    "List three uses of copper.",
    "What is the capital of France? Answer briefly.",
    "Give me a recipe idea with rice and beans.",
    "Why is the sky blue?",
    "Summarize the plot of a heist movie in three lines.",
    "What does a compiler do?",
]


def run(url, n, max_tokens, key, concurrent):
    results = [None] * n
    t0 = time.perf_counter()
    if concurrent:
        def work(i):
            results[i] = one(url, PROMPTS[i % len(PROMPTS)], max_tokens, key=key)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in range(n):
            results[i] = one(url, PROMPTS[i % len(PROMPTS)], max_tokens, key=key)
    wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)
    ttfts = sorted(r["ttft"] for r in results if r["ttft"] is not None)
    return {
        "wall_s": round(wall, 3),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall, 2),
        "ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
        "ttft_max_s": round(ttfts[-1], 3) if ttfts else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--key", default=None)
    a = ap.parse_args()
    one(a.url, "warm up", 4, key=a.key)
    seq = run(a.url, a.n, a.max_tokens, a.key, concurrent=False)
    conc = run(a.url, a.n, a.max_tokens, a.key, concurrent=True)
    print(json.dumps({
        "requests": a.n, "max_tokens": a.max_tokens,
        "sequential": seq, "concurrent": conc,
        "speedup": round(seq["wall_s"] / conc["wall_s"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
