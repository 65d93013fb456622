#!/usr/bin/env python3
"""Record the LoRA parity fixture: a PEFT adapter on the tiny qwen2_tied model, and the
logits / loss gradients PEFT computes with it, for crates/aha-model/tests/lora.rs.

Run by hand (not in CI), from the repository root, with torch, transformers and peft:

    python3 scripts/ref/make_lora_fixture.py            # writes crates/aha-model/tests/fixtures/qwen2_tied_lora

Deterministic given --seed (same torch/peft versions, CPU, float32).

The adapter: peft.get_peft_model(qwen2_tied, LoraConfig(r=4, lora_alpha=8,
target_modules=[q_proj, v_proj, down_proj])); lora_A keeps PEFT's Kaiming-uniform init,
lora_B (zero at init) is set to N(0, 0.1) so that the adapter changes the outputs and A gets a
gradient. Saved with save_pretrained (adapter_config.json + adapter_model.safetensors; the
generated README.md model card is removed; base_model_name_or_path is made repo-relative).

reference.safetensors, computed from the adapter *reloaded from disk* (PeftModel.from_pretrained):
  ids                 int64 [T]      T=7 token ids in [1, vocab)
  logits              f32   [T, V]   eval mode (no dropout; lora_dropout is 0 anyway)
  loss                f32   []       mean over t of -log p(ids[t+1] | ids[..=t])
  grad.<PEFT name>    f32            d loss / d every lora_A / lora_B tensor, named as in
                                     adapter_model.safetensors
"""
import argparse
import json
import os

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

BASE = "crates/aha-model/tests/fixtures/qwen2_tied"
T = 7
TARGETS = ["q_proj", "v_proj", "down_proj"]


def load_base():
    m = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def peft_file_name(param_name):
    # named_parameters: ...q_proj.lora_A.default.weight; the file drops the adapter name.
    return param_name.replace(".default.", ".")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="crates/aha-model/tests/fixtures/qwen2_tied_lora")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)

    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(load_base(), cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    readme = os.path.join(args.out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    cfg_path = os.path.join(args.out, "adapter_config.json")
    with open(cfg_path) as f:
        c = json.load(f)
    c["base_model_name_or_path"] = BASE
    with open(cfg_path, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    mem = {peft_file_name(k): v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}
    del model

    # Reload from disk; it must be the adapter we built.
    model = PeftModel.from_pretrained(load_base(), args.out, is_trainable=True)
    saved = load_file(os.path.join(args.out, "adapter_model.safetensors"))
    assert set(saved) == set(mem), (sorted(saved), sorted(mem))
    for k, v in saved.items():
        assert torch.equal(v, mem[k]), k
    vocab = model.config.vocab_size
    ids = torch.randint(1, vocab, (T,), generator=gen)
    ref = {"ids": ids}
    model.eval()
    with torch.no_grad():
        ref["logits"] = model(ids[None]).logits[0].float()

    model.zero_grad(set_to_none=True)
    logits = model(ids[None]).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[1:, None])[:, 0]
    loss = (-logp).mean()
    loss.backward()
    ref["loss"] = loss.detach().reshape(())
    n_grads = 0
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            ref["grad." + peft_file_name(name)] = p.grad.detach().clone()
            n_grads += 1
        else:
            assert p.grad is None, f"base parameter {name} got a gradient"

    merged = model.merge_and_unload()  # checked here, not recorded: the Rust test merges itself
    with torch.no_grad():
        d = (merged(ids[None]).logits[0].float() - ref["logits"]).abs().max().item()
    assert d < 1e-5, f"merged vs adapter logits differ by {d}"
    base = load_base()
    with torch.no_grad():
        d_base = (base(ids[None]).logits[0] - ref["logits"]).abs().max().item()
    assert d_base > 1e-3, f"the adapter barely changes the logits ({d_base})"

    ref = {k: v.contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(args.out, "reference.safetensors"))
    meta = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "seed": args.seed,
        "base": BASE,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": TARGETS},
        "init": "lora_A: PEFT's kaiming_uniform init; lora_B: N(0, 0.1)",
        "n_grad_tensors": n_grads,
        "max_abs_diff_merged_vs_adapter": d,
        "max_abs_diff_base_vs_adapter": d_base,
    }
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out}: {len(saved)} adapter tensors, {n_grads} grads, {size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
