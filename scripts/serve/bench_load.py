#!/usr/bin/env python3
"""Throughput and latency of a running OpenAI-compatible server under load: for each
concurrency C, C client threads send streaming chat requests (fixed prompts, `max_tokens`
tokens each, EOS ignored) until 2*C requests (at least 8) are done. Reports requests/s,
output tokens/s, p50/p99 time to first token and inter-token latency per level.
Standard library only; works against `aha serve` and llama.cpp's `llama-server` alike.
Prints one JSON object.

    python3 scripts/serve/bench_load.py --url http://127.0.0.1:8080 --levels 1,8,32,64
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain what a hash map is in two sentences.",
    "List three uses of copper.",
    "Give me a recipe idea with rice and beans.",
    "Why is the sky blue?",
    "What does a compiler do?",
]


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def one(url, prompt, max_tokens, model="default", key=None):
    """One streamed greedy chat request of `max_tokens` (EOS ignored): time to first token,
    the gaps between content chunks, total latency and the completion's token count."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=3600)
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True},
    })
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    stamps, tokens = [], None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        j = json.loads(data)
        if j.get("usage"):
            tokens = j["usage"]["completion_tokens"]
        for c in j.get("choices", []):
            d = c.get("delta", {})
            if d.get("content") or d.get("reasoning_content"):
                stamps.append(time.perf_counter() - t0)
    conn.close()
    return {
        "ttft": stamps[0] if stamps else None,
        "itl": [b - a for a, b in zip(stamps, stamps[1:])],
        "latency": time.perf_counter() - t0,
        "tokens": tokens if tokens is not None else len(stamps),
    }


def level(url, c, max_tokens, model):
    n = max(8, 2 * c)
    results, lock, next_i = [], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n:
                return
            r = one(url, PROMPTS[i % len(PROMPTS)], max_tokens, model)
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = [r["ttft"] for r in results if r["ttft"] is not None]
    itl = [x for r in results for x in r["itl"]]
    tokens = sum(r["tokens"] for r in results)
    ms = lambda x: None if x is None else round(1000 * x, 1)
    return {
        "concurrency": c, "requests": n, "wall_s": round(wall, 2),
        "requests_per_s": round(n / wall, 3), "output_tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_ms": ms(pct(ttft, 0.5)), "ttft_p99_ms": ms(pct(ttft, 0.99)),
        "itl_p50_ms": ms(pct(itl, 0.5)), "itl_p99_ms": ms(pct(itl, 0.99)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--levels", default="1,8,32,64")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--model", default="default")
    a = ap.parse_args()
    one(a.url, "warm up", 4, a.model)
    out = [level(a.url, int(c), a.max_tokens, a.model) for c in a.levels.split(",")]
    print(json.dumps({"url": a.url, "max_tokens": a.max_tokens, "levels": out}, indent=1))


if __name__ == "__main__":
    main()
