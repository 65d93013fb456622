#!/usr/bin/env python3
"""Greedy tokens of aha vs llama.cpp on the same GGUF file (three fixed chat prompts).

usage: compare_greedy.py AHA_BIN MODEL.gguf [N_NEW] [--prompts=FILE.json]
Prints, per prompt, how many leading greedy tokens agree.
"""
import json, subprocess, sys, tempfile, os

flags = [a for a in sys.argv[1:] if a.startswith("--")]
args = [a for a in sys.argv[1:] if not a.startswith("--")]
aha, model = args[0], args[1]
n = args[2] if len(args) > 2 else "32"
here = os.path.dirname(os.path.abspath(__file__))
ref = tempfile.mktemp(suffix=".json")
subprocess.run([sys.executable, os.path.join(here, "llama_cpp_greedy.py"), model, ref, n, *flags], check=True, capture_output=True)
cases = json.load(open(ref))["cases"]
args = [aha, "generate", "--model", model, "--max-tokens", n, "--ignore-eos", "--json"]
for c in cases:
    args += ["--ids", ",".join(map(str, c["prompt_ids"]))]
out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()
ok = True
for c, line in zip(cases, out):
    got = json.loads(line)["token_ids"]
    agree = next((i for i, (a, b) in enumerate(zip(got, c["greedy"])) if a != b), min(len(got), len(c["greedy"])))
    ok &= agree >= 16
    print(json.dumps({"model": os.path.basename(model), "prompt": c["prompt"], "agree": agree, "of": len(c["greedy"]), "llama_cpp": c["text"][:60]}))
sys.exit(0 if ok else 1)
