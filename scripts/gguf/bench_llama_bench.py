#!/usr/bin/env python3
"""aha against llama.cpp's own `llama-bench` on GGUF files, alternated (llama.cpp with flash
attention off, with it on, aha; again; ...), on the same threads: prompt processing
(512 tokens) and batch-1 decode (128 tokens) in tokens/s, median and range over --runs
rounds, the load average before every run (a run waits for it to fall to --threads).

    scripts/gguf/build_llama_cpp.sh           # prints LLAMA_BIN
    python3 scripts/gguf/bench_llama_bench.py --aha target/release/aha --llama-bin LLAMA_BIN \\
        --threads 2 --runs 3 FILE.gguf [FILE.gguf ...]

llama-bench: `-p 512 -n 128 -r 1 -fa 0|1` (it warms up first). aha: `bench generate
--batch 1 --repeat 1` (after its own warm-up): prompt = 512 / time(512-token prompt + 1
token); decode = 128 / (time(16-token prompt + 129 tokens) - time(16-token prompt + 1)).
Prompts are random ids, as llama-bench's. `--aha` may be given several times as NAME=PATH (two
aha builds side by side, say `--aha old=/tmp/aha-old --aha new=target/release/aha`); ratios are
taken against the first aha and, with `--llama-bin`, against llama.cpp.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from ab import alternate, summarize  # noqa: E402

N_PROMPT, N_GEN = 512, 128


def llama_job(bin_dir, model, threads, fa):
    def run():
        out = subprocess.run([os.path.join(bin_dir, "llama-bench"), "-m", model, "-t", str(threads),
                              "-p", str(N_PROMPT), "-n", str(N_GEN), "-r", "1", "-fa", str(fa),
                              "-o", "jsonl"], capture_output=True, text=True, check=True).stdout
        row = {}
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                key = "prompt_tok_s" if r["n_prompt"] else "decode_tok_s"
                row[key] = r["avg_ts"]
        return [row]
    return run


def aha_job(aha, model, threads, vocab, seed=0):
    rng = random.Random(seed)
    prompts = {}
    for name, n in [("long", N_PROMPT), ("short", 16)]:
        f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump([[rng.randrange(100, vocab - 100) for _ in range(n)]], f)
        f.close()
        prompts[name] = f.name

    def seconds(prompt, new_tokens):
        out = subprocess.run([aha, "--threads", str(threads), "bench", "generate", "--model", model,
                              "--prompts", prompts[prompt], "--batch", "1", "--new-tokens",
                              str(new_tokens), "--repeat", "1"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])["seconds"]

    def run():
        t_prompt = seconds("long", 1)
        t1 = seconds("short", 1)
        t129 = seconds("short", N_GEN + 1)
        return [{"prompt_tok_s": N_PROMPT / t_prompt, "decode_tok_s": N_GEN / (t129 - t1)}]
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aha", required=True, action="append", help="PATH or NAME=PATH (repeatable)")
    ap.add_argument("--llama-bin", help="directory with llama-bench (omit to compare aha builds only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=49152, help="prompt ids are drawn below this")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)
    ahas = [x.split("=", 1) if "=" in x else ["aha", x] for x in a.aha]
    if len({n for n, _ in ahas}) != len(ahas):
        ap.error("--aha names must differ (NAME=PATH)")
    flags_file = os.path.join(a.llama_bin, "BUILD_FLAGS") if a.llama_bin else None
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "threads": a.threads, "runs": a.runs,
              "aha": dict(ahas),
              "llama_cpp_build": open(flags_file).read().strip() if flags_file and os.path.exists(flags_file) else None,
              "models": {}}
    for m in a.models:
        jobs = []
        if a.llama_bin:
            jobs += [("llama_fa0", llama_job(a.llama_bin, m, a.threads, 0)),
                     ("llama_fa1", llama_job(a.llama_bin, m, a.threads, 1))]
        jobs += [(name, aha_job(path, m, a.threads, a.vocab)) for name, path in ahas]
        results = alternate(jobs, a.runs, a.threads, log)
        s = summarize(results)
        row = {}
        for what in ("prompt_tok_s", "decode_tok_s"):
            med = {n: s["summary"][n]["0"][what] for n, _ in jobs}
            row[what] = {n: {"median": round(v["median"], 1), "range": [round(v["min"], 1), round(v["max"], 1)]}
                         for n, v in med.items()}
            first = ahas[0][0]
            for name, _ in ahas:
                if a.llama_bin:
                    row[what][f"{name}_vs_fa0"] = round(med[name]["median"] / med["llama_fa0"]["median"], 3)
                    row[what][f"{name}_vs_fa1"] = round(med[name]["median"] / med["llama_fa1"]["median"], 3)
                if name != first:
                    row[what][f"{name}_vs_{first}"] = round(med[name]["median"] / med[first]["median"], 3)
        row["load_before"] = s["load_before"]
        report["models"][os.path.basename(m)] = row
        log(json.dumps({os.path.basename(m): row}))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
