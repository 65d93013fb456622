#!/usr/bin/env python3
"""Held-out check of `aha verify --jsonl` on a set built from GSM8K test.

The set is generated here, never committed: for each GSM8K test problem the
reference solution's reasoning is reused and the final answer is written in
one of many styles, either correct or perturbed; labels follow from the
construction. The verifier never saw these cases while it was written.

Usage:
  python3 scripts/verify/heldout.py [--gsm8k ../shared/data/gsm8k/test.jsonl]
      [--aha target/release/aha] [--per-problem 4] [--seed 0]
Exit status 1 when agreement is below --min-agreement (default 0.99).
"""
import argparse
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time


def fmt_thousands(n):
    return f"{n:,}"


def correct_variants(n, reasoning):
    s = str(n)
    out = [
        ("gsm8k", f"{reasoning}\n#### {s}"),
        ("phrase", f"{reasoning}\nThe answer is {s}."),
        ("boxed", f"{reasoning}\nSo the total is $\\boxed{{{s}}}$."),
        ("tags", f"<think>\n{reasoning}\n</think>\n<answer>{s}</answer>"),
        ("tags_boxed", f"<think>{reasoning}</think>\n<answer>The answer is \\boxed{{{s}}}</answer>"),
        ("dollar", f"{reasoning}\nFinal answer: \\${s}"),
        ("unit", f"{reasoning}\nThe answer is {s} dollars."),
        ("decimal", f"{reasoning}\n\\boxed{{{s}.00}}"),
        ("math_final", f"{reasoning}\n\nFinal Answer: The final answer is ${s}$. I hope it is correct."),
        ("revised", f"{reasoning}\nI first thought \\boxed{{{n + 3}}}, but rechecking gives \\boxed{{{s}}}."),
        ("think_distractor", f"<think>Maybe {n + 7}? {reasoning}</think>\n<answer>{s}</answer>"),
    ]
    if abs(n) >= 1000:
        out.append(("thousands", f"{reasoning}\nThe answer is \\boxed{{{fmt_thousands(n)}}}."))
    if n % 2 == 0:
        out.append(("fraction", f"{reasoning}\n\\boxed{{\\frac{{{2 * n}}}{{2}}}}"))
    return out


def wrong_variants(n, reasoning, rng):
    s = str(n)
    off = rng.choice([1, -1, 2, 10, -10])
    w = n + off
    out = [
        ("off_by", f"{reasoning}\n#### {w}"),
        ("boxed_wrong", f"{reasoning}\nSo the total is $\\boxed{{{w}}}$."),
        ("tags_wrong", f"<think>\n{reasoning} so {s}\n</think>\n<answer>{w}</answer>"),
        ("hedged", f"{reasoning}\nThe answer is \\boxed{{{s}}} or \\boxed{{{w}}}."),
        ("hedged_text", f"{reasoning}\nThe answer is {s} or {w}."),
        ("revised_wrong", f"{reasoning}\nI first thought \\boxed{{{s}}}, but rechecking gives \\boxed{{{w}}}."),
        ("times_ten", f"{reasoning}\nThe answer is {n * 10 if n != 0 else 7}."),
        ("empty_answer", f"<think>{reasoning}</think>\n<answer></answer>"),
        ("half", f"{reasoning}\n\\boxed{{{s}.5}}"),
    ]
    if len(s.lstrip("-")) >= 2 and s[-1] != s[-2]:
        out.append(("swapped", f"{reasoning}\n#### {s[:-2]}{s[-1]}{s[-2]}"))
    return out


def build(gsm8k_path, per_problem, seed):
    rng = random.Random(seed)
    rows = []
    with open(gsm8k_path) as f:
        for line in f:
            ex = json.loads(line)
            sol = ex["answer"]
            reasoning, _, final = sol.rpartition("####")
            final = final.strip().replace(",", "")
            try:
                n = int(final)
            except ValueError:
                continue
            goods = correct_variants(n, reasoning.strip())
            bads = wrong_variants(n, reasoning.strip(), rng)
            for _ in range(per_problem):
                if rng.random() < 0.5:
                    style, pred = rng.choice(goods)
                    ok = True
                else:
                    style, pred = rng.choice(bads)
                    ok = False
                # The gold is the full reference solution, as a trainer has it.
                rows.append({"style": style, "gold": sol, "prediction": pred, "expected": ok})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gsm8k", default="../shared/data/gsm8k/test.jsonl")
    ap.add_argument("--aha", default=os.environ.get("AHA_BIN", "target/release/aha"))
    ap.add_argument("--per-problem", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-agreement", type=float, default=0.99)
    ap.add_argument("--write", help="only write the set (for sidebyside.py --devset) to this path, outside the repo")
    args = ap.parse_args()
    rows = build(args.gsm8k, args.per_problem, args.seed)
    if args.write:
        with open(args.write, "w") as f:
            for r in rows:
                f.write(json.dumps({"category": "gsm8k", "kind": "response", **r}) + "\n")
        return
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "heldout.jsonl")
        outp = os.path.join(d, "out.jsonl")
        with open(inp, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        t = time.perf_counter()
        subprocess.run([args.aha, "verify", "--jsonl", inp, "--output", outp], check=True)
        dt = time.perf_counter() - t
        out = [json.loads(l) for l in open(outp)]
    assert len(out) == len(rows), "line count changed"
    by_style = collections.defaultdict(lambda: [0, 0])
    agree = 0
    misses = []
    for r, o in zip(rows, out):
        assert o["prediction"] == r["prediction"], "order changed"
        ok = o["verdict"] == r["expected"]
        agree += ok
        by_style[(r["style"], r["expected"])][0] += ok
        by_style[(r["style"], r["expected"])][1] += 1
        if not ok and len(misses) < 10:
            misses.append((r["style"], o["extracted"], r["expected"]))
    n = len(rows)
    print(f"held-out GSM8K set: {n} cases (seed {args.seed}), aha verify --jsonl took {dt:.2f}s")
    print(f"agreement with labels: {agree}/{n} = {agree / n:.4f}")
    for (style, exp), (a, m) in sorted(by_style.items()):
        print(f"  {style:18s} expected={str(exp):5s} {a}/{m}")
    for m in misses:
        print("  MISS", m)
    sys.exit(0 if agree / n >= args.min_agreement else 1)


if __name__ == "__main__":
    main()
