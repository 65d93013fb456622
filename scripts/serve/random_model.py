#!/usr/bin/env python3
"""A random one-layer Qwen2 model around a real tokenizer, for exercising `aha serve` with that
tokenizer's chat template (e.g. DeepSeek-R1's tool-call tokens) without real weights.

    pip install numpy safetensors
    python3 scripts/serve/random_model.py --tokenizer .cache/assets/deepseek-r1-tokenizer --out /tmp/r1-random
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="dir with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    src, out = Path(a.tokenizer), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(src / f, out / f)
    tok = json.loads((src / "tokenizer.json").read_text())
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    vocab = max(ids) + 1
    tcfg = json.loads((src / "tokenizer_config.json").read_text())

    def token_id(t):
        content = t["content"] if isinstance(t, dict) else t
        return next((x["id"] for x in tok.get("added_tokens", []) if x["content"] == content), None)

    bos, eos = token_id(tcfg.get("bos_token")), token_id(tcfg.get("eos_token"))
    h, inter = a.hidden, 2 * a.hidden
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": h,
        "intermediate_size": inter, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": vocab, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True,
        "torch_dtype": "float32", "bos_token_id": bos, "eos_token_id": eos,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(a.seed)
    w = lambda *s: (rng.standard_normal(s) * 0.02).astype(np.float32)
    kv = h // 2
    t = {
        "model.embed_tokens.weight": w(vocab, h),
        "model.norm.weight": np.ones(h, np.float32),
        "model.layers.0.input_layernorm.weight": np.ones(h, np.float32),
        "model.layers.0.post_attention_layernorm.weight": np.ones(h, np.float32),
        "model.layers.0.self_attn.q_proj.weight": w(h, h),
        "model.layers.0.self_attn.q_proj.bias": np.zeros(h, np.float32),
        "model.layers.0.self_attn.k_proj.weight": w(kv, h),
        "model.layers.0.self_attn.k_proj.bias": np.zeros(kv, np.float32),
        "model.layers.0.self_attn.v_proj.weight": w(kv, h),
        "model.layers.0.self_attn.v_proj.bias": np.zeros(kv, np.float32),
        "model.layers.0.self_attn.o_proj.weight": w(h, h),
        "model.layers.0.mlp.gate_proj.weight": w(inter, h),
        "model.layers.0.mlp.up_proj.weight": w(inter, h),
        "model.layers.0.mlp.down_proj.weight": w(h, inter),
    }
    save_file(t, str(out / "model.safetensors"))
    print(f"wrote {out}: vocab {vocab}, hidden {h}")


if __name__ == "__main__":
    main()
