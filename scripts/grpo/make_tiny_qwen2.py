"""A small random Qwen2 model with the DeepSeek-R1 tokenizer, for `aha grpo` smoke runs and
the aha-vs-TRL GRPO benchmark. Usage: make_tiny_qwen2.py OUT_DIR [--hidden 128 --layers 4]"""
import argparse, shutil, pathlib, torch
from transformers import Qwen2Config, Qwen2ForCausalLM, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--tokenizer", default=str(pathlib.Path(__file__).resolve().parents[2] / ".cache/assets/deepseek-r1-tokenizer"))
ap.add_argument("--hidden", type=int, default=128)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--kv-heads", type=int, default=2)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
tok = AutoTokenizer.from_pretrained(a.tokenizer)
torch.manual_seed(a.seed)
cfg = Qwen2Config(vocab_size=len(tok), hidden_size=a.hidden, intermediate_size=a.hidden * 3, num_hidden_layers=a.layers,
                  num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=4096,
                  tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
model = Qwen2ForCausalLM(cfg).to(torch.float32)
model.save_pretrained(a.out, safe_serialization=True)
tok.save_pretrained(a.out)
print(a.out, sum(p.numel() for p in model.parameters()), "parameters, vocab", len(tok))
