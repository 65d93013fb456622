#!/usr/bin/env python3
"""Side-by-side benchmark runner: runs several commands alternately (A B C A B C ...), each
at least --runs times, and reports every metric's median and range per command, and each
command's median ratio to the first. Before every run it waits for the 1-minute load average
to fall to --max-load (default: the benchmark's own thread count) and records it; a run that
could not wait long enough is refused, so no ratio is taken on a busy machine. Standard
library only.

Each command prints JSON objects, one per line (other lines are ignored). Lines are told
apart by --key (for instance "batch"); every numeric field of a line is a metric.

    python3 scripts/bench/ab.py --runs 3 --threads 2 --key batch --metric tokens_per_s \\
        --job "aha=target/release/aha --threads 2 bench generate --model M --batch 1 32" \\
        --job "hf=python3 scripts/ref/bench_generate_hf.py --model-dir M --batch 32"

As a module: `alternate(jobs, runs, max_load, log)` with jobs a list of (name, callable
returning a list of dicts), then `summarize(...)`.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time


def wait_quiet(max_load, log, patience_s=300):
    """Waits for the 1-minute load average to fall to max_load; returns it, or exits."""
    t0 = time.time()
    while True:
        load = os.getloadavg()[0]
        if load <= max_load:
            return load
        if time.time() - t0 > patience_s:
            raise SystemExit(f"load average {load:.2f} stayed above {max_load} for {patience_s} s: "
                             "not measuring (something else runs on this machine)")
        log(f"load average {load:.2f} above {max_load}: waiting")
        time.sleep(10)


def alternate(jobs, runs, max_load, log):
    """Runs every job once per round, in order, for `runs` rounds. Returns
    {name: [{"round", "load_before", "rows"}]}."""
    results = {name: [] for name, _ in jobs}
    for r in range(runs):
        for name, fn in jobs:
            load = wait_quiet(max_load, log)
            t = time.time()
            rows = fn()
            results[name].append({"round": r, "load_before": round(load, 2), "rows": rows,
                                  "wall_s": round(time.time() - t, 2)})
            log(f"round {r} {name} (load {load:.2f}): {json.dumps(rows)}")
    return results


def summarize(results, key=None, metrics=None):
    """Per job and row key, every metric's median/min/max over the rounds (and the command's
    wall time under the key "command"), and each job's ratio of medians to the first job's."""
    def rows_by_key(name):
        out = {}
        for rnd in results[name]:
            for i, row in enumerate(rnd["rows"]):
                k = str(row.get(key, i)) if key else str(i)
                out.setdefault(k, []).append(row)
        return out

    names = list(results)
    summary = {}
    for name in names:
        summary[name] = {}
        for k, rows in rows_by_key(name).items():
            fields = metrics or sorted({f for r in rows for f, v in r.items()
                                        if isinstance(v, (int, float)) and not isinstance(v, bool)
                                        and f != key})
            stats = {}
            for f in fields:
                xs = [r[f] for r in rows if isinstance(r.get(f), (int, float))]
                if xs:
                    stats[f] = {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4),
                                "max": round(max(xs), 4), "n": len(xs)}
            summary[name][k] = stats
        walls = [r["wall_s"] for r in results[name] if "wall_s" in r]
        if walls:
            # The whole command's wall time, for commands that print no metrics of their own.
            summary[name]["command"] = {"wall_s": {
                "median": round(statistics.median(walls), 4), "min": min(walls),
                "max": max(walls), "n": len(walls)}}
    first = names[0]
    for name in names[1:]:
        for k, stats in summary[name].items():
            base = summary[first].get(k, {})
            for f, s in list(stats.items()):
                if f in base and base[f]["median"]:
                    s[f"ratio_to_{first}"] = round(s["median"] / base[f]["median"], 3)
    loads = [r["load_before"] for n in names for r in results[n]]
    return {"summary": summary, "load_before": {"min": min(loads), "max": max(loads)}}


def json_lines(text):
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def command_job(cmd, env=None):
    def run():
        p = subprocess.run(cmd if isinstance(cmd, list) else shlex.split(cmd), capture_output=True,
                           text=True, env=env)
        if p.returncode != 0:
            raise SystemExit(f"{cmd} failed ({p.returncode}):\n{p.stderr[-2000:]}")
        return json_lines(p.stdout)
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", action="append", required=True, help="NAME=COMMAND (shell words)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="the benchmark's own thread count")
    ap.add_argument("--max-load", type=float, help="default: --threads")
    ap.add_argument("--key", help="field that tells a command's output lines apart")
    ap.add_argument("--metric", action="append", help="fields to summarize (default: all numeric)")
    ap.add_argument("--out", help="also write the JSON report here")
    a = ap.parse_args()
    if a.runs < 3:
        print("warning: fewer than 3 runs per command: a first look, not a result", file=sys.stderr)
    jobs = [(n, command_job(c)) for n, c in (j.split("=", 1) for j in a.job)]
    log = lambda m: print(m, file=sys.stderr, flush=True)
    results = alternate(jobs, a.runs, a.max_load if a.max_load is not None else a.threads, log)
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": os.uname().nodename,
              "cpus": os.cpu_count(), "jobs": dict(j.split("=", 1) for j in a.job), "runs": a.runs,
              **summarize(results, a.key, a.metric), "raw": results}
    text = json.dumps(report, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
