#!/usr/bin/env python3
"""Side-by-side load benchmark of several OpenAI-compatible servers, alternated: for each
run, each server in turn is started alone, warmed up, measured with bench_load.py's levels,
and stopped (A B C A B C ...). Reports per server and level the median and range of output
tokens/s and of p50/p99 time to first token, and each server's median ratio to the first.
Records the load average before every measurement and refuses to start one while it is above
--max-load (other work on the machine would skew the ratio). Standard library only.

    python3 scripts/serve/bench_load_ab.py --runs 3 --levels 1,8,32 \\
        --server "new=target/release/aha --threads 2 serve --model M.gguf --port {port}" \\
        --server "llama=llama-server -m M.gguf --threads 2 --port {port} --parallel 64 -c 16384"
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_load import level, one  # noqa: E402


def wait_ready(url, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready in time")


def wait_quiet(max_load, log):
    """Waits (up to 5 minutes) for the 1-minute load average to fall to max_load."""
    for _ in range(60):
        load = os.getloadavg()[0]
        if load <= max_load:
            return load
        log(f"load average {load:.2f} above {max_load}: waiting")
        time.sleep(5)
    raise SystemExit(f"load average stayed above {max_load}: not measuring")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", action="append", required=True,
                    help="NAME=COMMAND, {port} replaced by the port")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--port", type=int, default=8191)
    ap.add_argument("--max-load", type=float, default=2.5,
                    help="refuse to measure above this 1-minute load average (the servers' own "
                         "threads linger in it for a minute after each stops)")
    a = ap.parse_args()
    servers = [s.split("=", 1) for s in a.server]
    levels = [int(c) for c in a.levels.split(",")]
    url = f"http://127.0.0.1:{a.port}"
    log = lambda m: print(m, file=sys.stderr, flush=True)
    results = {name: [] for name, _ in servers}
    for run in range(a.runs):
        for name, cmd in servers:
            load = wait_quiet(a.max_load, log)
            argv = shlex.split(cmd.replace("{port}", str(a.port)))
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_ready(url, proc)
                one(url, "warm up", 4)
                out = [level(url, c, a.max_tokens, "default") for c in levels]
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            results[name].append({"run": run, "load_before": round(load, 2), "levels": out})
            tps = ", ".join(f"{l['concurrency']}: {l['output_tokens_per_s']}" for l in out)
            log(f"run {run} {name} (load {load:.2f}): tok/s {tps}")

    def stat(name, c, key):
        xs = [l[key] for r in results[name] for l in r["levels"] if l["concurrency"] == c]
        xs = [x for x in xs if x is not None]
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else None

    first = servers[0][0]
    summary = []
    for c in levels:
        row = {"concurrency": c}
        for name, _ in servers:
            row[name] = {k: stat(name, c, k)
                         for k in ("output_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms")}
            if name != first:
                row[name]["tok_s_ratio_to_" + first] = round(
                    row[name]["output_tokens_per_s"]["median"]
                    / row[first]["output_tokens_per_s"]["median"], 3)
        summary.append(row)
    print(json.dumps({"servers": dict(servers), "runs": a.runs, "max_tokens": a.max_tokens,
                      "summary": summary, "raw": results}, indent=1))


if __name__ == "__main__":
    main()
