#!/usr/bin/env python3
"""Side-by-side CPU throughput of aha and llama.cpp (llama-cpp-python) on GGUF files, same
threads, one run: decode tokens/s (batch 1, 128 new tokens after a short prompt) and prompt
tokens/s (a 512-token prompt).

usage: bench_vs_llama_cpp.py AHA_BIN THREADS MODEL.gguf [MODEL.gguf ...]
"""
import json, os, subprocess, sys, tempfile, time
import numpy as np
import llama_cpp

aha, threads, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
N_NEW, N_PROMPT = 128, 512
rng = np.random.default_rng(0)


def aha_seconds(model, prompt, new_tokens):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([prompt], f)
    out = subprocess.run([aha, "--threads", str(threads), "bench", "generate", "--model", model, "--prompts", f.name,
                          "--batch", "1", "--new-tokens", str(new_tokens), "--repeat", "3"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def llama_seconds(llm, prompt, new_tokens, repeat=3):
    best = float("inf")
    for r in range(repeat + 1):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        for _ in range(new_tokens - 1):
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([tok])
        if r > 0:  # the first run warms up
            best = min(best, time.perf_counter() - t)
    return best


rows = []
for m in models:
    llm = llama_cpp.Llama(model_path=m, n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads,
                          logits_all=False, verbose=False)
    vocab = llm.n_vocab()
    short = [int(x) for x in rng.integers(100, vocab - 1000, 16)]
    long = [int(x) for x in rng.integers(100, vocab - 1000, N_PROMPT)]
    res = {"model": os.path.basename(m), "threads": threads}
    for impl, fn in [("aha", lambda p, n: aha_seconds(m, p, n)), ("llama.cpp", lambda p, n: llama_seconds(llm, p, n))]:
        t_prompt = fn(long, 1)
        t_short1 = fn(short, 1)
        t_decode = fn(short, N_NEW + 1)
        res[impl] = {"prompt_tok_s": N_PROMPT / t_prompt, "decode_tok_s": N_NEW / max(t_decode - t_short1, 1e-9)}
    res["decode_ratio"] = res["aha"]["decode_tok_s"] / res["llama.cpp"]["decode_tok_s"]
    res["prompt_ratio"] = res["aha"]["prompt_tok_s"] / res["llama.cpp"]["prompt_tok_s"]
    print(json.dumps(res), flush=True)
    rows.append(res)
    del llm

print("\n| model | threads | aha decode tok/s | llama.cpp decode tok/s | ratio | aha prompt tok/s | llama.cpp prompt tok/s | ratio |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    a, l = r["aha"], r["llama.cpp"]
    print(f"| {r['model']} | {r['threads']} | {a['decode_tok_s']:.1f} | {l['decode_tok_s']:.1f} | {r['decode_ratio']:.2f}x "
          f"| {a['prompt_tok_s']:.1f} | {l['prompt_tok_s']:.1f} | {r['prompt_ratio']:.2f}x |")
