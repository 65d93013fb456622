#!/usr/bin/env python3
"""Greedy tokens and per-token log-probs from llama.cpp (llama-cpp-python) for fixed prompts.

usage: llama_cpp_greedy.py MODEL.gguf OUT.json [N_NEW] [--f16-cache] [--prompts=FILE.json]
FILE.json: a list of user messages (default: three chat prompts).
The KV cache is f32 (as aha's) unless --f16-cache (llama.cpp's default, which rounds keys,
values and queries to f16 in attention). The prompts are rendered with the model's chat template and tokenized by llama.cpp; the
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
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    f16_cache = "--f16-cache" in sys.argv
    prompts = PROMPTS
    for a in sys.argv[1:]:
        if a.startswith("--prompts="):
            prompts = json.load(open(a.split("=", 1)[1]))
    path, out = args[0], args[1]
    n_new = int(args[2]) if len(args) > 2 else 32
    kv = llama_cpp.GGML_TYPE_F16 if f16_cache else llama_cpp.GGML_TYPE_F32
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, logits_all=True, verbose=False, n_threads=2, seed=0,
                          type_k=kv, type_v=kv)
    tmpl = llm.metadata.get("tokenizer.chat_template")
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    res = {"model": path.split("/")[-1], "kv_cache": "f16" if f16_cache else "f32", "cases": []}
    for p in prompts:
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
