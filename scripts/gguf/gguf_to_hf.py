#!/usr/bin/env python3
"""Dequantize a GGUF model into a Hugging Face directory with transformers' GGUF loader
(model + tokenizer + chat template), e.g. to re-quantize it with `aha quantize`.

usage: gguf_to_hf.py MODEL.gguf OUT_DIR
"""
import os, sys
from transformers import AutoModelForCausalLM, AutoTokenizer

src, out = sys.argv[1], sys.argv[2]
d, f = os.path.split(os.path.abspath(src))
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype="float32")
# transformers refuses save_pretrained on a GGUF-loaded model; the weights are plain f32 now.
from safetensors.torch import save_file
os.makedirs(out, exist_ok=True)
sd = {k: v.contiguous() for k, v in model.state_dict().items() if not (model.config.tie_word_embeddings and k == "lm_head.weight")}
save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.config.save_pretrained(out)
tok.save_pretrained(out)
print("wrote", out, sorted(os.listdir(out)))
