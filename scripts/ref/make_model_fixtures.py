#!/usr/bin/env python3
"""Build tiny random-weight HF models and record reference outputs for the
Rust (candle) model implementation parity tests.

Run by hand (not in CI). Deterministic given --seed (same torch/transformers
versions, CPU, float32).

    python3 scripts/ref/make_model_fixtures.py                      # all fixtures
    python3 scripts/ref/make_model_fixtures.py --out /tmp/fx --seed 7 --hidden 64 --layers 3
    python3 scripts/ref/make_model_fixtures.py --only llama3_rope

Each fixture directory <out>/<name>/ contains:
  config.json, generation_config.json, model.safetensors   (save_pretrained)
  reference.safetensors   (see REFERENCE TENSORS below)
  reference.json          (versions, seed, pad_id, description, config style)

REFERENCE TENSORS (all computed in float32, eval mode, attn_implementation="eager",
from the model *reloaded from disk* with dtype=float32):
  single_ids          int64 [T]        T=11, ids in [1, vocab)
  single_logits       f32   [T, V]
  batch_ids           int64 [B, T]     B=3, lengths 11,7,4 left-padded with pad id 0;
                                       row 0 == single_ids
  batch_mask          int64 [B, T]     1 = real token
  batch_position_ids  int64 [B, T]     cumsum(mask)-1 clamped at 0 on pads
  batch_logits        f32   [B, T, V]  forward(ids, attention_mask, position_ids);
                                       values at pad positions are NOT meaningful
  greedy_prompt       int64 [5]
  greedy_tokens       int64 [20]       generate(do_sample=False, 20 new tokens), new tokens only
  lp_prompt           int64 [6]
  lp_completion       int64 [8]
  lp_logprobs         f32   [8]        log p(completion[i] | prompt + completion[:i])
  loss                f32   []         mean(-lp_logprobs)
  grad.<param name>   f32              d loss / d param for every model.named_parameters()
                                       (tied models: only model.embed_tokens.weight)
"""
import argparse
import json
import os
import zlib

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

PAD_ID = 0
T_SINGLE = 11
BATCH_LENS = [11, 7, 4]
P_GREEDY = 5
N_GREEDY = 20
P_LP = 6
C_LP = 8
INIT_STD = 0.1
MIN_GREEDY_MARGIN = 1e-3  # top1 - top2 logit margin required at every greedy step

FIXTURES = ["qwen2_tied", "qwen2_untied", "llama3_rope", "qwen2_bf16"]


def sizes(args):
    return dict(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate if args.intermediate else 2 * args.hidden,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=None,  # generation can never stop early
        pad_token_id=None,  # no nn.Embedding padding_idx semantics
    )


def build(name, args):
    s = sizes(args)
    if name in ("qwen2_tied", "qwen2_untied", "qwen2_bf16"):
        # qwen2_untied uses a non-default theta (like DeepSeek-R1-Distill-Qwen) so that a loader
        # ignoring the Hub-style top-level "rope_theta" fails the test
        theta = 1000000.0 if name == "qwen2_untied" else 10000.0
        cfg = Qwen2Config(**s, tie_word_embeddings=(name == "qwen2_tied"), rope_theta=theta)
        cls = Qwen2ForCausalLM
        desc = {
            "qwen2_tied": "Qwen2ForCausalLM, tie_word_embeddings=True, q/k/v biases, GQA",
            "qwen2_untied": "Qwen2ForCausalLM, tie_word_embeddings=False, q/k/v biases, GQA, rope_theta 1e6. "
            "config.json rewritten by hand into Hub (transformers 4.x) style: rope_theta, rope_scaling=null, torch_dtype",
            "qwen2_bf16": "Qwen2ForCausalLM, untied, weights stored as bfloat16; references computed in float32 "
            "from the bf16-rounded weights",
        }[name]
    elif name == "llama3_rope":
        cfg = LlamaConfig(
            **s,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        )
        cls = LlamaForCausalLM
        desc = ("LlamaForCausalLM, untied, no attention bias, GQA, rope_theta 500000, llama3 rope scaling "
                "(factor 8, low 1, high 4, original_max_position_embeddings 64): with these sizes some "
                "frequencies are unchanged, some smoothed, some divided by 8")
    else:
        raise SystemExit(f"unknown fixture {name}")
    cfg._attn_implementation = "eager"
    return cfg, cls, desc


def name_seed(seed, name, salt):
    return (seed * 1_000_003 + zlib.crc32(f"{name}/{salt}".encode())) % (2**63)


def init_weights(model, gen):
    with torch.no_grad():
        for pname, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * INIT_STD
            if p.ndim == 1 and "norm" in pname:
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)


def rand_ids(rng, n, vocab):
    return torch.tensor(rng.integers(1, vocab, size=n), dtype=torch.int64)


def greedy_with_margin(model, prompt):
    out = model.generate(
        prompt[None],
        attention_mask=torch.ones_like(prompt)[None],
        do_sample=False,
        max_new_tokens=N_GREEDY,
        min_new_tokens=N_GREEDY,
        eos_token_id=None,
        pad_token_id=PAD_ID,
        output_scores=True,
        return_dict_in_generate=True,
    )
    new = out.sequences[0, prompt.numel():]
    assert new.numel() == N_GREEDY, new.shape
    margins = []
    for sc in out.scores:
        top2 = torch.topk(sc[0].float(), 2).values
        margins.append(float(top2[0] - top2[1]))
    return new.clone(), min(margins)


def hub_style_config(path):
    """Rewrite a transformers-5 config.json into the Hub (transformers 4.x) style."""
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") == "default":
        c["rope_scaling"] = None
    else:
        c["rope_scaling"] = rp
    c["torch_dtype"] = c.pop("dtype")
    c.pop("layer_types", None)
    c["transformers_version"] = "4.44.0"
    with open(path, "w") as f:
        json.dump(dict(sorted(c.items())), f, indent=2)
        f.write("\n")


def make(name, args):
    out = os.path.join(args.out, name)
    os.makedirs(out, exist_ok=True)
    cfg, cls, desc = build(name, args)
    torch.manual_seed(name_seed(args.seed, name, "torch"))
    gen = torch.Generator().manual_seed(name_seed(args.seed, name, "init"))
    rng = np.random.default_rng(name_seed(args.seed, name, "ids"))

    model = cls(cfg)
    init_weights(model, gen)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = PAD_ID
    if name == "qwen2_bf16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    config_style = "transformers5 (rope_parameters, dtype)"
    if name == "qwen2_untied":
        hub_style_config(os.path.join(out, "config.json"))
        config_style = "hub/transformers4 (rope_theta, rope_scaling, torch_dtype)"
    ref_from_mem = model  # kept for a consistency check below
    del model

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    for _, p in model.named_parameters():
        assert p.dtype == torch.float32
    # the model loaded from disk must be exactly the one we built (bf16-rounded for qwen2_bf16)
    mem = {k: v.float() for k, v in ref_from_mem.state_dict().items()}
    for k, v in model.state_dict().items():
        assert torch.equal(v, mem[k]), k
    V = cfg.vocab_size
    ref = {}
    # the reloaded config (possibly the hand-written Hub style) must describe the same model
    assert model.config.rope_parameters == cfg.rope_parameters, (model.config.rope_parameters, cfg.rope_parameters)
    probe = torch.arange(1, 14)[None] % V
    mem_f32 = cls(cfg).eval()  # fresh f32 model (fresh f32 rope buffers) with the built weights
    mem_f32.load_state_dict(mem)
    with torch.no_grad():
        d = (mem_f32(probe).logits - model(probe).logits).abs().max().item()
    assert d == 0.0, f"{name}: reloaded model differs from built model: {d}"
    del mem_f32, ref_from_mem

    with torch.no_grad():
        # ---- single sequence ----
        single = rand_ids(rng, T_SINGLE, V)
        ref["single_ids"] = single
        ref["single_logits"] = model(single[None]).logits[0].float()

        # ---- left-padded batch ----
        B, T = len(BATCH_LENS), max(BATCH_LENS)
        ids = torch.full((B, T), PAD_ID, dtype=torch.int64)
        mask = torch.zeros((B, T), dtype=torch.int64)
        rows = [single] + [rand_ids(rng, L, V) for L in BATCH_LENS[1:]]
        for b, r in enumerate(rows):
            ids[b, T - r.numel():] = r
            mask[b, T - r.numel():] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        blog = model(ids, attention_mask=mask, position_ids=pos).logits.float()
        ref["batch_ids"], ref["batch_mask"], ref["batch_position_ids"], ref["batch_logits"] = ids, mask, pos, blog
        max_pad_diff = 0.0
        for b, r in enumerate(rows):
            solo = model(r[None]).logits[0].float()
            d = (blog[b, T - r.numel():] - solo).abs().max().item()
            max_pad_diff = max(max_pad_diff, d)
        assert max_pad_diff < 1e-5, f"{name}: padded batch vs single mismatch {max_pad_diff}"

        # ---- greedy generation (resample prompt until no near-ties) ----
        for attempt in range(50):
            gp = rand_ids(rng, P_GREEDY, V)
            gt, margin = greedy_with_margin(model, gp)
            if margin >= MIN_GREEDY_MARGIN:
                break
        else:
            raise SystemExit(f"{name}: could not find a greedy prompt without near-ties")
        # greedy must equal argmax of a no-cache forward over the full sequence
        full = torch.cat([gp, gt])
        nc = model(full[None], use_cache=False).logits[0]
        assert torch.equal(nc[P_GREEDY - 1:-1].argmax(-1), gt), f"{name}: cache vs no-cache greedy mismatch"
        ref["greedy_prompt"], ref["greedy_tokens"] = gp, gt

    # ---- log-probs + gradient of mean NLL ----
    lp_prompt = rand_ids(rng, P_LP, V)
    lp_comp = rand_ids(rng, C_LP, V)
    seq = torch.cat([lp_prompt, lp_comp])[None]
    model.zero_grad(set_to_none=True)
    logits = model(seq, use_cache=False).logits[0].float()
    logp = torch.log_softmax(logits[P_LP - 1:-1], dim=-1)
    lps = logp.gather(-1, lp_comp[:, None])[:, 0]
    loss = (-lps).mean()
    loss.backward()
    ref["lp_prompt"], ref["lp_completion"] = lp_prompt, lp_comp
    ref["lp_logprobs"] = lps.detach().float()
    ref["loss"] = loss.detach().float().reshape(())
    n_grads = 0
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        ref[f"grad.{pname}"] = p.grad.detach().float().clone()
        n_grads += 1

    ref = {k: v.contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(out, "reference.safetensors"))
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": args.seed,
        "pad_id": PAD_ID,
        "name": name,
        "description": desc,
        "config_style": config_style,
        "init": f"every parameter ~ N(0, {INIT_STD}); RMSNorm weights 1 + N(0, {INIT_STD})",
        "greedy_min_top1_top2_margin": margin,
        "max_abs_diff_padded_batch_vs_single": max_pad_diff,
        "n_grad_tensors": n_grads,
        "notes": "batch_logits at pad positions (batch_mask==0) are not meaningful; compare only real positions. "
        "eos_token_id is null in config and generation_config so generation never stops early.",
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return out, meta


def verify(out, name):
    ref = load_file(os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "config.json")) as f:
        c = json.load(f)
    V = c["vocab_size"]
    B, T = len(BATCH_LENS), max(BATCH_LENS)
    exp = {
        "single_ids": ((T_SINGLE,), torch.int64), "single_logits": ((T_SINGLE, V), torch.float32),
        "batch_ids": ((B, T), torch.int64), "batch_mask": ((B, T), torch.int64),
        "batch_position_ids": ((B, T), torch.int64), "batch_logits": ((B, T, V), torch.float32),
        "greedy_prompt": ((P_GREEDY,), torch.int64), "greedy_tokens": ((N_GREEDY,), torch.int64),
        "lp_prompt": ((P_LP,), torch.int64), "lp_completion": ((C_LP,), torch.int64),
        "lp_logprobs": ((C_LP,), torch.float32), "loss": ((), torch.float32),
    }
    for k, (shape, dt) in exp.items():
        assert tuple(ref[k].shape) == shape and ref[k].dtype == dt, (k, ref[k].shape, ref[k].dtype)
    for k, v in ref.items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k
    # padded rows vs single on real positions
    assert torch.equal(ref["batch_ids"][0], ref["single_ids"])
    d = (ref["batch_logits"][0] - ref["single_logits"]).abs().max().item()
    assert d < 1e-5, d
    assert torch.allclose(ref["loss"], -ref["lp_logprobs"].mean())
    m = ref["batch_mask"]
    assert torch.equal(ref["batch_position_ids"], (m.cumsum(-1) - 1).clamp(min=0))
    assert m.sum(-1).tolist() == BATCH_LENS
    weights = load_file(os.path.join(out, "model.safetensors"))
    grads = {k[5:] for k in ref if k.startswith("grad.")}
    if c.get("tie_word_embeddings"):
        assert "lm_head.weight" not in grads
    for g in grads:
        assert g in weights, g
        assert ref["grad." + g].shape == weights[g].shape
    wdt = {v.dtype for v in weights.values()}
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"  {name}: ok; weights dtype {wdt}, {len(weights)} weight tensors, {len(grads)} grads, "
          f"dir size {size / 1024:.0f} KiB")
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="crates/aha-model/tests/fixtures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=FIXTURES, action="append", help="repeatable")
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=0, help="default 2*hidden")
    args = ap.parse_args()
    assert args.hidden % args.heads == 0 and args.heads % args.kv_heads == 0
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    for name in args.only or FIXTURES:
        out, meta = make(name, args)
        verify(out, name)


if __name__ == "__main__":
    main()
