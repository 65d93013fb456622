#!/usr/bin/env bash
# GGUF files of every common type for the side-by-side speed benchmark against llama.cpp.
# SmolLM2-135M's widths (576) are not multiples of 256, so in its k-quant files most rows fall
# back to other types; this makes a random Llama of about the same size whose widths are
# (hidden 768, intermediate 2048, 12 layers, 12 heads / 4 kv heads, SmolLM2's tokenizer),
# then one file per type, every tensor of that type (`aha quantize`).
#   scripts/gguf/make_bench_models.sh AHA_BIN [OUT_DIR]     (default .cache/bench_gguf)
set -euo pipefail
cd "$(dirname "$0")/../.."
aha="$1"
out="${2:-.cache/bench_gguf}"
smol="${AHA_ASSETS:-.cache/assets}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$out"
[ -f "$out/smol-hf/tokenizer.json" ] || "$aha" convert --model "$smol" --out "$out/smol-hf" >&2
python3 - "$out/smol-hf" "$out/random-768" <<'EOF'
import json, shutil, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for f in ["tokenizer.json", "tokenizer_config.json"]:
    if (src / f).exists():
        shutil.copy(src / f, dst / f)
cfg = json.loads((src / "config.json").read_text())
h, inter, layers, heads, kv = 768, 2048, 12, 12, 4
cfg.update(hidden_size=h, intermediate_size=inter, num_hidden_layers=layers,
           num_attention_heads=heads, num_key_value_heads=kv, head_dim=h // heads,
           tie_word_embeddings=True, torch_dtype="float32")
(dst / "config.json").write_text(json.dumps(cfg, indent=1))
rng = np.random.default_rng(0)
v, d = cfg["vocab_size"], h // heads
def w(*shape):
    return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
t = {"model.embed_tokens.weight": w(v, h), "model.norm.weight": np.ones(h, np.float32)}
for i in range(layers):
    p = f"model.layers.{i}."
    t |= {p + "self_attn.q_proj.weight": w(heads * d, h), p + "self_attn.k_proj.weight": w(kv * d, h),
          p + "self_attn.v_proj.weight": w(kv * d, h), p + "self_attn.o_proj.weight": w(h, heads * d),
          p + "mlp.gate_proj.weight": w(inter, h), p + "mlp.up_proj.weight": w(inter, h),
          p + "mlp.down_proj.weight": w(h, inter),
          p + "input_layernorm.weight": np.ones(h, np.float32),
          p + "post_attention_layernorm.weight": np.ones(h, np.float32)}
save_file(t, str(dst / "model.safetensors"))
EOF
for t in q4_0 q4_1 q8_0 q4_k q5_k q6_k; do
  [ -f "$out/random-768-$t.gguf" ] || "$aha" quantize --model "$out/random-768" --type "$t" --out "$out/random-768-$t.gguf" >&2
done
ls "$out"/*.gguf
