#!/usr/bin/env python3
"""Score `aha verify` (and optionally math-verify) on the blind set.

Usage:
    target/release/aha verify --jsonl crates/aha-reward/tests/data/blind.jsonl \
        --output /tmp/blind_out.jsonl
    python3 scripts/verify/score_blind.py [--cases crates/aha-reward/tests/data/blind.jsonl]
        [--aha /tmp/blind_out.jsonl] [--no-mathverify] [--wrong-report /tmp/blind_wrong.md]

Reads the cases file (labels decided by hand rules, see make_blind.py) and the
aha output file (one JSON object per line, matched by "id" when present,
otherwise by line order; the verdict is read from the first of the keys
"correct", "verdict", "accepted", "reward", "score", "equal", "result").
math-verify, if importable, is run as
    verify(parse(gold_wrapped), parse(prediction))
where gold_wrapped is "$gold$" for a bare gold, the number after "####"
(wrapped in $..$) for GSM8K gold, and the gold text itself when it holds a
\\boxed{}.  For kind "answer" predictions without $ or \\boxed the prediction
is also wrapped in $..$ (math-verify's own convention for bare answers).
Stdlib only apart from the optional math_verify import.
"""

import argparse
import json
from collections import defaultdict

VERDICT_KEYS = ["correct", "verdict", "accepted", "reward", "score", "equal", "result"]
EXTRACT_KEYS = ["extracted", "extracted_answer", "pred_extracted", "prediction_extracted",
                "answer", "pred_answer", "parsed"]


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def verdict_of(rec):
    for k in VERDICT_KEYS:
        if k in rec:
            v = rec[k]
            if isinstance(v, bool):
                return v
            if isinstance(v, (int, float)):
                return v > 0.5
            if isinstance(v, str):
                return v.lower() in ("true", "correct", "accept", "accepted", "equal", "yes")
    raise KeyError(f"no verdict key in {sorted(rec)}")


def extracted_of(rec):
    for k in EXTRACT_KEYS:
        if k in rec:
            return rec[k]
    return None


def gold_for_mv(gold):
    if "####" in gold:
        return "$" + gold.split("####")[-1].strip().replace(",", "") + "$"
    if "\\boxed" in gold:
        return gold
    return f"${gold}$"


def pred_for_mv(case):
    p = case["prediction"]
    if case["kind"] == "answer" and "$" not in p and "\\boxed" not in p:
        return f"${p}$"
    return p


def run_mathverify(cases):
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    out = {}
    for c in cases:
        try:
            g = parse(gold_for_mv(c["gold"]))
            p = parse(pred_for_mv(c))
            out[c["id"]] = bool(verify(g, p))
        except Exception:
            out[c["id"]] = False
    return out


def summarize(name, cases, verdicts):
    tot = len(cases)
    ok = sum(verdicts[c["id"]] == c["expected"] for c in cases)
    neg = [c for c in cases if not c["expected"]]
    pos = [c for c in cases if c["expected"]]
    fa = sum(verdicts[c["id"]] for c in neg)
    fr = sum(not verdicts[c["id"]] for c in pos)
    print(f"{name:12s} accuracy {ok}/{tot} = {ok / tot:.1%}   "
          f"false-accept {fa}/{len(neg)} = {fa / max(1, len(neg)):.1%}   "
          f"false-reject {fr}/{len(pos)} = {fr / max(1, len(pos)):.1%}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="crates/aha-reward/tests/data/blind.jsonl")
    ap.add_argument("--aha", default="/tmp/blind_out.jsonl")
    ap.add_argument("--no-mathverify", action="store_true")
    ap.add_argument("--wrong-report", default=None)
    args = ap.parse_args()

    cases = load(args.cases)
    outs = load(args.aha)
    if outs and all("id" in o for o in outs):
        by_id = {o["id"]: o for o in outs}
    else:
        assert len(outs) == len(cases), (len(outs), len(cases))
        by_id = {c["id"]: o for c, o in zip(cases, outs)}
    aha = {c["id"]: verdict_of(by_id[c["id"]]) for c in cases}
    mv = None if args.no_mathverify else run_mathverify(cases)

    print(f"{len(cases)} cases, {sum(not c['expected'] for c in cases)} expected=false\n")
    summarize("aha", cases, aha)
    if mv is not None:
        summarize("math-verify", cases, mv)
    else:
        print("math-verify: not importable, skipped")

    cats = defaultdict(list)
    for c in cases:
        cats[c["category"]].append(c)
    print(f"\n{'category':20s} {'n':>4s} {'aha':>7s} {'aha FA':>7s} {'aha FR':>7s}"
          + (f" {'mv':>7s} {'mv FA':>6s} {'mv FR':>6s}" if mv else ""))
    for cat, cs in cats.items():
        n = len(cs)
        a = sum(aha[c["id"]] == c["expected"] for c in cs)
        afa = sum(aha[c["id"]] and not c["expected"] for c in cs)
        afr = sum(not aha[c["id"]] and c["expected"] for c in cs)
        line = f"{cat:20s} {n:4d} {a / n:7.1%} {afa:7d} {afr:7d}"
        if mv:
            m = sum(mv[c["id"]] == c["expected"] for c in cs)
            mfa = sum(mv[c["id"]] and not c["expected"] for c in cs)
            mfr = sum(not mv[c["id"]] and c["expected"] for c in cs)
            line += f" {m / n:7.1%} {mfa:6d} {mfr:6d}"
        print(line)

    wrong = [c for c in cases if aha[c["id"]] != c["expected"]]
    print(f"\naha wrong on {len(wrong)} cases")
    lines = []
    for c in wrong:
        o = by_id[c["id"]]
        tail = c["prediction"][-200:].replace("\n", "\\n")
        lines.append(f"- id {c['id']} [{c['category']}/{c['style']}/{c['kind']}] "
                     f"expected={c['expected']} aha={aha[c['id']]} "
                     f"mv={None if mv is None else mv[c['id']]}\n"
                     f"  gold: {c['gold'][-120:]!r}\n  pred tail: {tail!r}\n"
                     f"  aha extracted: {extracted_of(o)!r}")
    text = "\n".join(lines)
    if args.wrong_report:
        with open(args.wrong_report, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
