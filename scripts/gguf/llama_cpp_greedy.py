#!/usr/bin/env python3
"""Greedy tokens and per-token log-probs from llama.cpp (llama-cpp-python) for fixed prompts.

usage: llama_cpp_greedy.py MODEL.gguf OUT.json [N_NEW]
The prompts are rendered with the model's chat template and tokenized by llama.cpp; the
ids are stored so aha's test feeds exactly the same tokens.
"""
import json, sys
import numpy as np
import llama_cpp

PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that reverses a string.",
    "Explain in two sentences why the sky is blue.",
]


def main():
    path, out = sys.argv[1], sys.argv[2]
    n_new = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, logits_all=True, verbose=False, n_threads=2, seed=0)
    tmpl = llm.metadata.get("tokenizer.chat_template")
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    res = {"model": path.split("/")[-1], "cases": []}
    for p in PROMPTS:
        text = env.from_string(tmpl).render(messages=[{"role": "user", "content": p}], add_generation_prompt=True) if tmpl else p
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        toks, lps = [], []
        for _ in range(n_new):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            lse = np.log(np.exp(logits - logits.max()).sum()) + logits.max()
            t = int(logits.argmax())
            toks.append(t)
            lps.append(float(logits[t] - lse))
            llm.eval([t])
        res["cases"].append({"prompt": p, "prompt_ids": ids, "greedy": toks, "logprobs": lps,
                             "text": llm.detokenize(toks).decode("utf-8", "replace")})
        print(p, "->", repr(res["cases"][-1]["text"]))
    json.dump(res, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
