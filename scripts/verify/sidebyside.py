#!/usr/bin/env python3
"""Side by side: math-verify (PyPI) against aha's verifier on the dev set.

Runs, on every case of crates/aha-reward/tests/data/devset.jsonl (plus a few
generated megabyte-size responses):
  * math-verify, default settings: verify(parse(gold), parse(prediction));
  * math-verify the way open-r1's accuracy reward calls it (gold parsed with
    first_match; prediction with a LatexExtractionConfig that has boxed
    priority, equations and units normalisation, no anchor-less extraction;
    an unparseable gold means "skip", counted here as verdict false);
  * aha (release build of the `bench` example: the exact per-line code of
    `aha verify --jsonl`, one thread, timed per case).
Golds are given to math-verify wrapped in $...$ (as lighteval does), since
its LaTeX extractor needs delimiters. Reports accuracy against the labels by
category, throughput, and the slowest case of each.

Run by hand (not in CI), from the repository root:
  pip install math-verify
  cargo build --release -p aha-reward --example bench
  python3 scripts/verify/sidebyside.py [--bench PATH] [--limit N]
"""
import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def big_cases():
    filler = "We keep reasoning about 17 and 23. " * 30000
    return [
        {"category": "adversarial", "kind": "response", "gold": "41",
         "prediction": f"<think>{filler}</think><answer>\\boxed{{41}}</answer>", "expected": True},
        {"category": "adversarial", "kind": "response", "gold": "40",
         "prediction": f"<think>{filler}</think><answer>\\boxed{{41}}</answer>", "expected": False},
        {"category": "adversarial", "kind": "response", "gold": "1",
         "prediction": "\\boxed{" * 100000, "expected": False},
    ]


def run_aha(rows, bench):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "in.jsonl")
        with open(p, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        t = time.perf_counter()
        out = subprocess.run([bench, p, "3"], check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t
    res = [json.loads(l) for l in out.stdout.splitlines()]
    verdicts = [r["verdict"] for r in res]
    times = [r["us"] / 1e6 for r in res]
    return verdicts, times, out.stderr.strip(), wall


def run_math_verify(rows, mode):
    from math_verify import parse, verify, LatexExtractionConfig
    from latex2sympy2_extended import NormalizationConfig

    pred_cfg = [LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            nits=False, malformed_operators=False, basic_latex=True,
            equations=True, boxed="all", units=True),
        boxed_match_priority=0, try_extract_without_anchor=False)]
    import contextlib
    import io
    import logging
    logging.disable(logging.CRITICAL)  # its timeout messages would flood the report
    verdicts, times = [], []
    sink = io.StringIO()
    for r in rows:
        sink.seek(0)
        sink.truncate()
        gold = r["gold"]
        if "####" in gold:
            # A GSM8K reference solution: math-verify gets its final number.
            gold = gold.rsplit("####", 1)[1].strip().replace(",", "")
        gold = "$" + gold + "$"
        t = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                # A row's `precision` (math-verify's own test rows carry it) is
                # math-verify's float_rounding, which aha also honours.
                fr = r.get("precision", 6)
                if mode == "default":
                    v = bool(verify(parse(gold), parse(r["prediction"]), float_rounding=fr))
                else:
                    g = parse(gold, extraction_mode="first_match")
                    if len(g) == 0:
                        v = False
                    else:
                        a = parse(r["prediction"], extraction_config=pred_cfg, extraction_mode="first_match")
                        v = bool(verify(g, a, float_rounding=fr))
        except Exception:  # math-verify raising counts as a wrong verdict
            v = False
        times.append(time.perf_counter() - t)
        verdicts.append(v)
    return verdicts, times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devset", default="crates/aha-reward/tests/data/devset.jsonl")
    ap.add_argument("--bench", default=os.environ.get("AHA_BENCH", "target/release/examples/bench"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--no-big", action="store_true", help="skip the megabyte responses")
    ap.add_argument("--mv-cache", default="",
                    help="JSON file keeping math-verify's verdicts and times for this set (reused when present)")
    ap.add_argument("--misses", type=int, default=20, help="aha misses to print")
    args = ap.parse_args()
    rows = [json.loads(l) for l in open(args.devset) if l.strip()]
    if not args.no_big:
        rows += big_cases()
    if args.limit:
        rows = rows[: args.limit]

    aha_v, aha_t, aha_summary, _ = run_aha(rows, args.bench)
    if args.mv_cache and os.path.exists(args.mv_cache):
        c = json.load(open(args.mv_cache))
        mv_v, mv_t, or_v, or_t = c["mv_v"], c["mv_t"], c["or_v"], c["or_t"]
        assert len(mv_v) == len(rows), "stale --mv-cache"
    else:
        mv_v, mv_t = run_math_verify(rows, "default")
        or_v, or_t = run_math_verify(rows, "open-r1")
        if args.mv_cache:
            json.dump({"mv_v": mv_v, "mv_t": mv_t, "or_v": or_v, "or_t": or_t}, open(args.mv_cache, "w"))

    systems = [("aha", aha_v, aha_t), ("math-verify default", mv_v, mv_t), ("math-verify open-r1", or_v, or_t)]
    cats = collections.OrderedDict()
    for r in rows:
        cats.setdefault(r["category"], 0)
        cats[r["category"]] += 1

    from importlib.metadata import version
    print(f"date: {time.strftime('%Y-%m-%d')}, machine: {platform.machine()} {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, math-verify {version('math-verify')}")
    print(f"cases: {len(rows)}")
    print()
    print("| category | n | " + " | ".join(s[0] for s in systems) + " |")
    print("|---|---|" + "---|" * len(systems))
    for c, n in list(cats.items()) + [("all", len(rows))]:
        idx = [i for i, r in enumerate(rows) if c == "all" or r["category"] == c]
        cells = []
        for _, v, _ in systems:
            acc = sum(v[i] == rows[i]["expected"] for i in idx) / len(idx)
            cells.append(f"{acc:.3f}")
        print(f"| {c} | {len(idx)} | " + " | ".join(cells) + " |")
    for kind in ("answer", "response"):
        idx = [i for i, r in enumerate(rows) if r.get("kind") == kind]
        if idx:
            cells = [f"{sum(v[i] == rows[i]['expected'] for i in idx) / len(idx):.3f}" for _, v, _ in systems]
            print(f"| kind={kind} | {len(idx)} | " + " | ".join(cells) + " |")
    neg = [i for i, r in enumerate(rows) if not r["expected"]]
    pos = [i for i, r in enumerate(rows) if r["expected"]]
    cells = [f"{sum(v[i] for i in neg) / max(len(neg), 1):.3f}" for _, v, _ in systems]
    print(f"| false accepts (of {len(neg)} wrong) | | " + " | ".join(cells) + " |")
    cells = [f"{sum(not v[i] for i in pos) / max(len(pos), 1):.3f}" for _, v, _ in systems]
    print(f"| false rejects (of {len(pos)} right) | | " + " | ".join(cells) + " |")
    print()
    print("| system | total s (1 thread) | cases/s | slowest case ms | cases > 50 ms |")
    print("|---|---|---|---|---|")
    for name, _, t in systems:
        tot = sum(t)
        print(f"| {name} | {tot:.3f} | {len(t) / tot:.0f} | {max(t) * 1000:.1f} | {sum(x > 0.05 for x in t)} |")
    print()
    print(f"throughput ratio aha / math-verify default: {sum(mv_t) / sum(aha_t):.0f}x; "
          f"aha / math-verify open-r1: {sum(or_t) / sum(aha_t):.0f}x")
    print(f"aha bench: {aha_summary}")
    wrong = [(rows[i]["category"], rows[i]["gold"][:40], rows[i]["prediction"][-60:], rows[i]["expected"])
             for i in range(len(rows)) if aha_v[i] != rows[i]["expected"]]
    print(f"aha misses: {len(wrong)}")
    for w in wrong[:args.misses]:
        print("aha miss:", w)


if __name__ == "__main__":
    sys.exit(main())
