#!/usr/bin/env python3
"""Check `aha generate` and `aha logprobs` on model directories aha has never seen:
build fresh models with transformers (other seeds and sizes), then compare aha's
greedy tokens, batched output, log-probs and dumped logits with transformers'.

    python3 scripts/ref/check_cli.py --aha target/release/aha --seed 11 --hidden 64 --layers 3
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))


def aha(binary, *args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True)
    return out.stdout


def ids_arg(xs):
    return ",".join(str(int(x)) for x in xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aha", default="target/release/aha")
    ap.add_argument("--resave", default="target/release/examples/resave", help="built by: cargo build --release -p aha-model --example resave")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=300)
    ap.add_argument("--deepseek", action="store_true", help="DeepSeek-V3 models (make_deepseek_fixtures.py) instead of Llama/Qwen2")
    a = ap.parse_args()
    out = tempfile.mkdtemp(prefix="aha-check-")
    script = "make_deepseek_fixtures.py" if a.deepseek else "make_model_fixtures.py"
    subprocess.run([sys.executable, os.path.join(HERE, script), "--out", out, "--seed", str(a.seed),
                    "--hidden", str(a.hidden), "--layers", str(a.layers), "--vocab", str(a.vocab)], check=True)
    failures = 0
    checked = 0
    for name in sorted(os.listdir(out)):
        d = os.path.join(out, name)
        if name.endswith("_resaved") or not os.path.isfile(os.path.join(d, "reference.safetensors")):
            continue
        r = load_file(os.path.join(d, "reference.safetensors"))
        if "single_ids" not in r:  # e.g. the MTP fixture records only the MTP head
            continue
        # Greedy tokens, alone and in a batch with another prompt.
        prompt = r["greedy_prompt"]
        want = [int(x) for x in r["greedy_tokens"]]
        lines = aha(a.aha, "generate", "--model", d, "--ids", ids_arg(prompt), "--ids", ids_arg(r["single_ids"]),
                    "--max-tokens", str(len(want)), "--ignore-eos", "--json").strip().splitlines()
        got = json.loads(lines[0])["token_ids"]
        ok_greedy = got == want
        alone = json.loads(aha(a.aha, "generate", "--model", d, "--ids", ids_arg(r["single_ids"]), "--max-tokens", "20",
                               "--ignore-eos", "--json"))["token_ids"]
        ok_batch = alone == json.loads(lines[1])["token_ids"]
        # Log-probs and dumped logits.
        seq = np.concatenate([r["lp_prompt"], r["lp_completion"]])
        dump = os.path.join(d, "aha_logits.safetensors")
        lp = json.loads(aha(a.aha, "logprobs", "--model", d, "--ids", ids_arg(seq), "--json", "--dump-logits", dump))
        got_lp = np.array(lp["logprobs"][len(r["lp_prompt"]):], dtype=np.float32)
        lp_diff = float(np.abs(got_lp - r["lp_logprobs"]).max())
        aha(a.aha, "logprobs", "--model", d, "--ids", ids_arg(r["single_ids"]), "--dump-logits", dump)
        logit_diff = float(np.abs(load_file(dump)["logits"] - r["single_logits"]).max())
        # What aha saves, transformers loads to the same logits.
        resaved = os.path.join(out, name + "_resaved")
        subprocess.run([a.resave, d, resaved], check=True, capture_output=True)
        import torch
        from transformers import AutoModelForCausalLM
        hf = AutoModelForCausalLM.from_pretrained(resaved, dtype=torch.float32)
        with torch.no_grad():
            hf_logits = hf(torch.tensor(r["single_ids"]).unsqueeze(0)).logits[0].numpy()
        resave_diff = float(np.abs(hf_logits - r["single_logits"]).max())
        ok = ok_greedy and ok_batch and lp_diff < 1e-4 and logit_diff < 1e-4 and resave_diff < 1e-4
        failures += not ok
        checked += 1
        print(json.dumps({"model": name, "greedy_exact": ok_greedy, "batched_equals_single": ok_batch,
                          "max_logprob_diff": lp_diff, "max_logit_diff": logit_diff, "transformers_loads_aha_save_diff": resave_diff, "ok": ok}))
    print(f"checked {checked} models: {checked - failures} ok, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
