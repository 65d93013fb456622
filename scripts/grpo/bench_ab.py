#!/usr/bin/env python3
"""GRPO step time and peak memory, aha against TRL's GRPOTrainer as installed and against TRL
with glibc set to keep freed memory (GLIBC_TUNABLES below, what aha set for itself before it
moved to mimalloc, which it also keeps from returning memory), alternated
(aha, TRL, TRL tuned; again; ...) with scripts/bench/ab.py: median and range over --runs
rounds, the load average checked before each run. Same setup as scripts/grpo/bench.sh:
random 17M Qwen2 with the R1 tokenizer, 2 GSM8K prompts x G = 8, 64 completion tokens,
beta 0.001, reference model on both sides, 3 steps of which the last 2 are timed.

    python3 scripts/grpo/bench_ab.py --aha target/release/aha [--runs 3 --micro-batch 4]
                                     [--aha-before OLD/aha]   # a second aha build, first in each round
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "bench"))
from ab import alternate, summarize  # noqa: E402

TUNED = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776:"
         "glibc.malloc.arena_max=1")


def peak_rss_mb(time_v_stderr):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v_stderr)
    return int(m.group(1)) / 1024 if m else None


def aha_job(a, binary, work, model, data):
    def run():
        out = os.path.join(work, "aha-bench")
        shutil.rmtree(out, ignore_errors=True)
        p = subprocess.run(["/usr/bin/time", "-v", binary, "--threads", str(a.threads), "grpo",
                            "--model", model, "--dataset", data, "--reward", "accuracy,format",
                            "--template", "r1-zero", "--group-size", "8", "--batch-prompts", "2",
                            "--max-tokens", str(a.max_tokens), "--steps", "3", "--beta", "0.001",
                            "--lr", "1e-6", "--micro-batch", str(a.micro_batch), "--samples-every", "0",
                            "--save-every", "0", "--out", out], capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"aha grpo failed:\n{p.stderr[-3000:]}")
        steps = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
        warm = [s["time_total_s"] for s in steps[1:]]
        return [{"warm_step_s": sum(warm) / len(warm), "first_step_s": steps[0]["time_total_s"],
                 "peak_rss_mb": peak_rss_mb(p.stderr)}]
    return run


def trl_job(a, model, data, env):
    def run():
        p = subprocess.run(["/usr/bin/time", "-v", sys.executable, os.path.join(here, "bench_trl.py"), model,
                            data, "--max-tokens", str(a.max_tokens), "--steps", "3",
                            "--threads", str(a.threads)],
                           capture_output=True, text=True, env={**os.environ, **env})
        if p.returncode != 0:
            raise SystemExit(f"bench_trl.py failed:\n{p.stderr[-3000:]}")
        s = [json.loads(l) for l in p.stdout.splitlines() if '"summary"' in l][-1]
        return [{"warm_step_s": s["warm_step_s"], "first_step_s": s["first_step_s"],
                 "peak_rss_mb": peak_rss_mb(p.stderr)}]
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aha", default="target/release/aha")
    ap.add_argument("--aha-before", help="another aha binary to run alongside (before/after)")
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "..", "shared", "data", "gsm8k", "train.jsonl"))
    ap.add_argument("--work", default="/tmp/aha-grpo")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    model = os.path.join(a.work, "tiny-qwen2")
    os.makedirs(a.work, exist_ok=True)
    if not os.path.exists(os.path.join(model, "config.json")):
        subprocess.run([sys.executable, os.path.join(here, "make_tiny_qwen2.py"), model], check=True)
    threads = {"RAYON_NUM_THREADS": str(a.threads), "OMP_NUM_THREADS": str(a.threads)}
    os.environ.update(threads)
    before = [("aha_before", aha_job(a, a.aha_before, a.work, model, a.data))] if a.aha_before else []
    jobs = before + [("aha", aha_job(a, a.aha, a.work, model, a.data)),
            ("trl", trl_job(a, model, a.data, {})),
            ("trl_tuned_alloc", trl_job(a, model, a.data, {"GLIBC_TUNABLES": TUNED}))]
    log = lambda m: print(m, file=sys.stderr, flush=True)
    results = alternate(jobs, a.runs, a.threads, log)
    report = summarize(results)
    s = report["summary"]
    report["trl_over_aha_step_time"] = {
        n: round(s[n]["0"]["warm_step_s"]["median"] / s["aha"]["0"]["warm_step_s"]["median"], 3)
        for n in ("trl", "trl_tuned_alloc") + (("aha_before",) if a.aha_before else ())}
    report["aha_over_trl_peak_rss"] = {
        n: round(s["aha"]["0"]["peak_rss_mb"]["median"] / s[n]["0"]["peak_rss_mb"]["median"], 3)
        for n in ("trl", "trl_tuned_alloc")}
    report["raw"] = results
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
