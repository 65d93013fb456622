#!/usr/bin/env python3
"""Build tiny random-weight DeepseekV3ForCausalLM models (MLA + DeepSeekMoE) and record
reference outputs for the Rust parity tests (crates/aha-model/tests/deepseek_v3.rs).

Run by hand (not in CI). Deterministic given --seed (same torch/transformers versions,
CPU, float32).

    python3 scripts/ref/make_deepseek_fixtures.py                        # all fixtures
    python3 scripts/ref/make_deepseek_fixtures.py --only deepseek_v3_yarn
    python3 scripts/ref/make_deepseek_fixtures.py --out /tmp/fx --seed 7 --hidden 64 --layers 4

Each fixture directory <out>/<name>/ holds config.json, generation_config.json,
model.safetensors (official DeepSeek names: per-expert mlp.experts.E.{gate,up,down}_proj.weight,
mlp.gate.weight, mlp.gate.e_score_correction_bias), reference.safetensors and reference.json.

REFERENCE TENSORS: as scripts/ref/make_model_fixtures.py (single_ids, single_logits, batch_*,
greedy_prompt, greedy_tokens, lp_prompt, lp_completion, lp_logprobs, loss, grad.<name>), plus
  experts.<layer>     int64 [T, K]   the routed experts chosen for each token of single_ids in
                                     MoE layer <layer>, sorted ascending per token
  router_margin       f32   []       smallest selection margin over those choices (a near-tie
                                     there would make "chosen experts exact" ill-posed)
Gradients are for every trainable tensor, under the checkpoint names: HF's fused
experts.gate_up_proj / experts.down_proj gradients are split per expert. An expert no token
chose has an all-zero gradient. e_score_correction_bias is a buffer (no gradient).

The fp8 fixture stores every linear weight of the decoder layers (attention, dense MLP,
experts, shared experts; not embeddings, lm_head, norms or the router) as float8_e4m3fn with a
float32 `<name>_scale_inv` per weight_block_size block (DeepSeek's block FP8 format, with
quantization_config in config.json). References come from an f32 model holding the dequantized
weights w = fp8 * scale_inv[i // bs0, j // bs1] (what "dequantize on load" must give).
"""
import argparse
import json
import math
import os
import sys
import zlib

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import (  # noqa: E402
    BATCH_LENS, C_LP, INIT_STD, MIN_GREEDY_MARGIN, N_GREEDY, P_GREEDY, P_LP, PAD_ID, T_SINGLE,
    greedy_with_margin, rand_ids,
)

FIXTURES = ["deepseek_v3_default", "deepseek_v3_yarn", "deepseek_v3_bf16", "deepseek_v3_fp8", "deepseek_v3_mtp"]
MIN_ROUTER_MARGIN = 1e-4


def name_seed(seed, name, salt):
    return (seed * 1_000_003 + zlib.crc32(f"{name}/{salt}".encode())) % (2**63)


def build(name, args):
    s = dict(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
        moe_intermediate_size=args.hidden // 2, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads,
        n_shared_experts=1, n_routed_experts=16, num_experts_per_tok=4, routed_scaling_factor=2.5,
        kv_lora_rank=24, q_lora_rank=32, qk_nope_head_dim=12, qk_rope_head_dim=8, v_head_dim=12,
        n_group=4, topk_group=2, first_k_dense_replace=1, norm_topk_prob=True,
        max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, num_nextn_predict_layers=0,
        rope_interleave=True,
    )
    desc = ""
    if name == "deepseek_v3_default":
        desc = ("default rope (theta 1e4), interleaved rope layout, q_lora_rank 32, 16 routed experts in 4 groups "
                "(topk_group 2, 4 per token), 1 shared, first layer dense")
    elif name == "deepseek_v3_yarn":
        s.update(q_lora_rank=None, qk_rope_head_dim=16, n_group=8, topk_group=3, num_experts_per_tok=3,
                 rope_interleave=False, max_position_embeddings=256, n_shared_experts=2)
        s["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
                                "mscale": 0.707, "mscale_all_dim": 1.0}
        desc = ("YaRN rope (factor 4, original 64, mscale 0.707, mscale_all_dim 1: both the cos/sin attention factor "
                "and the softmax scale differ from 1), rope_interleave false, q_lora_rank null (plain q_proj), "
                "16 experts in 8 groups (topk_group 3, 3 per token), 2 shared experts; Hub-style config.json")
    elif name == "deepseek_v3_bf16":
        s.update(n_group=2, topk_group=1, num_experts_per_tok=2, first_k_dense_replace=2)
        s["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                                "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
                                "mscale": 1.0, "mscale_all_dim": 1.0}
        desc = ("weights stored bfloat16 (references in f32 from the rounded weights), YaRN as DeepSeek-V3 "
                "(mscale = mscale_all_dim = 1), 2 groups (topk_group 1), 2 experts per token, two dense layers")
    elif name == "deepseek_v3_fp8":
        s.update(intermediate_size=160)
        desc = ("block FP8 (float8_e4m3fn + float32 weight_scale_inv per 128x128 block, quantization_config as "
                "DeepSeek-V3's); dense MLP intermediate 160 so that some weights span several blocks")
    else:
        raise SystemExit(f"unknown fixture {name}")
    s["num_hidden_layers"] = max(s["num_hidden_layers"], s["first_k_dense_replace"] + 1)
    cfg = DeepseekV3Config(**s)
    cfg._attn_implementation = "eager"
    return cfg, desc


def init_weights(model, gen):
    with torch.no_grad():
        for pname, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * INIT_STD
            if p.ndim == 1 and "norm" in pname:
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)
        for bname, b in model.named_buffers():
            if bname.endswith("e_score_correction_bias"):
                b.copy_(torch.randn(b.shape, generator=gen, dtype=torch.float32) * 0.05)


def fp8_quantize(w, block):
    """DeepSeek block FP8: per-block scale so the block max maps to 448."""
    out_f, in_f = w.shape
    b0, b1 = block
    nb0, nb1 = math.ceil(out_f / b0), math.ceil(in_f / b1)
    scale = torch.zeros(nb0, nb1, dtype=torch.float32)
    q = torch.zeros(out_f, in_f, dtype=torch.float8_e4m3fn)
    for i in range(nb0):
        for j in range(nb1):
            blk = w[i * b0:(i + 1) * b0, j * b1:(j + 1) * b1].float()
            s = blk.abs().max().clamp(min=1e-12) / 448.0
            scale[i, j] = s
            q[i * b0:(i + 1) * b0, j * b1:(j + 1) * b1] = (blk / s).to(torch.float8_e4m3fn)
    return q, scale


def fp8_dequantize(q, scale, block):
    out_f, in_f = q.shape
    s = scale.repeat_interleave(block[0], 0)[:out_f].repeat_interleave(block[1], 1)[:, :in_f]
    return q.float() * s


def is_fp8_target(name):
    return (name.startswith("model.layers.") and name.endswith(".weight") and "norm" not in name
            and not name.endswith("mlp.gate.weight"))


def hub_style_config(path):
    """Rewrite a transformers-5 config.json into the Hub (DeepSeek-V3 release) style."""
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") == "default":
        c["rope_scaling"] = None
    else:
        rp["type"] = rp.pop("rope_type")
        c["rope_scaling"] = rp
    c["torch_dtype"] = c.pop("dtype")
    c.pop("head_dim", None)
    c.pop("qk_head_dim", None)
    c["topk_method"] = "noaux_tc"
    c["scoring_func"] = "sigmoid"
    c["moe_layer_freq"] = 1
    c["transformers_version"] = "4.46.3"
    with open(path, "w") as f:
        json.dump(dict(sorted(c.items())), f, indent=2)
        f.write("\n")


def router_choices(model):
    """Hook every router; return (records dict layer -> list of sorted idx tensors, margins list)."""
    rec, margins, hooks = {}, [], []
    for li, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is None or not hasattr(gate, "e_score_correction_bias"):
            continue

        def hook(mod, inp, out, li=li):
            logits, _, idx = out
            rec.setdefault(li, []).append(idx.sort(dim=-1).values.clone())
            scores = logits.sigmoid() + mod.e_score_correction_bias
            n, e = scores.shape
            g = mod.num_group
            gs = scores.view(n, g, e // g).topk(2, dim=-1)[0].sum(-1)
            top = gs.sort(dim=-1, descending=True).values
            if mod.topk_group < g:
                margins.append(float((top[:, mod.topk_group - 1] - top[:, mod.topk_group]).min()))
            keep = torch.zeros_like(gs).scatter_(1, gs.topk(mod.topk_group, dim=-1)[1], 1.0)
            masked = scores.masked_fill(~keep.repeat_interleave(e // g, 1).bool(), float("-inf"))
            st = masked.sort(dim=-1, descending=True).values
            k = mod.top_k
            if k < e:
                m = st[:, k - 1] - st[:, k]
                margins.append(float(m[torch.isfinite(m)].min()) if torch.isfinite(m).any() else 1.0)

        hooks.append(gate.register_forward_hook(hook))
    return rec, margins, hooks


def split_grads(model):
    """Gradients under checkpoint names (per-expert split of HF's fused expert tensors)."""
    out = {}
    I = model.config.moe_intermediate_size
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        g = p.grad.detach().float()
        if pname.endswith("mlp.experts.gate_up_proj"):
            pre = pname[: -len("gate_up_proj")]
            for e in range(g.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = g[e, :I].clone()
                out[f"{pre}{e}.up_proj.weight"] = g[e, I:].clone()
        elif pname.endswith("mlp.experts.down_proj"):
            pre = pname[: -len("down_proj")]
            for e in range(g.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = g[e].clone()
        else:
            out[pname] = g.clone()
    return out


def make(name, args):
    out = os.path.join(args.out, name)
    os.makedirs(out, exist_ok=True)
    cfg, desc = build(name, args)
    torch.manual_seed(name_seed(args.seed, name, "torch"))
    gen = torch.Generator().manual_seed(name_seed(args.seed, name, "init"))
    rng = np.random.default_rng(name_seed(args.seed, name, "ids"))

    model = DeepseekV3ForCausalLM(cfg)
    init_weights(model, gen)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = PAD_ID
    config_style = "transformers5 (rope_parameters, dtype)"
    if name == "deepseek_v3_bf16":
        model = model.to(torch.bfloat16)
        # the router weight and bias stay f32 in HF (_keep_in_fp32_modules_strict); round them too,
        # so that the stored checkpoint is uniformly bf16
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n.endswith("e_score_correction_bias"):
                    b.copy_(b.to(torch.bfloat16).float())
    model.save_pretrained(out, safe_serialization=True)
    if name == "deepseek_v3_yarn":
        hub_style_config(os.path.join(out, "config.json"))
        config_style = "hub (rope_theta, rope_scaling with type yarn, torch_dtype, topk_method, scoring_func)"

    stored = load_file(os.path.join(out, "model.safetensors"))
    if name == "deepseek_v3_fp8":
        block = [128, 128]
        q_state = {}
        deq = {}
        for k, v in stored.items():
            if is_fp8_target(k):
                q, sc = fp8_quantize(v, block)
                q_state[k] = q
                q_state[k[: -len("weight")] + "weight_scale_inv"] = sc
                deq[k] = fp8_dequantize(q, sc, block)
            else:
                q_state[k] = v
                deq[k] = v
        save_file({k: v.contiguous() for k, v in q_state.items()}, os.path.join(out, "model.safetensors"),
                  metadata={"format": "pt"})
        with open(os.path.join(out, "config.json")) as f:
            c = json.load(f)
        c["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                    "weight_block_size": block}
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
            f.write("\n")
        stored = deq
        config_style += " + quantization_config fp8 128x128 blocks"

    # Reference model: f32, from the stored (rounded / dequantized) weights, via HF's own loader
    # except for fp8 (HF's fp8 path needs a GPU), where the dequantized tensors are loaded directly.
    if name == "deepseek_v3_fp8":
        model = DeepseekV3ForCausalLM(cfg).float().eval()
        missing, unexpected = model.load_state_dict(
            _fuse_experts({k: v.float() for k, v in stored.items()}, cfg), strict=False)
        assert not unexpected, unexpected
        assert all("rotary_emb" in m for m in missing), missing
    else:
        model = DeepseekV3ForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        got_rope = {k: v for k, v in model.config.rope_parameters.items() if k != "type"}
        assert got_rope == cfg.rope_parameters, (got_rope, cfg.rope_parameters)
        assert model.config.rope_interleave == cfg.rope_interleave
        # the reloaded model holds exactly the stored weights
        fused = _fuse_experts({k: v.float() for k, v in stored.items()}, cfg)
        sd = model.state_dict()
        for k, v in fused.items():
            assert torch.equal(sd[k].float(), v), k
    for _, p in model.named_parameters():
        assert p.dtype == torch.float32
    V = cfg.vocab_size
    ref = {}

    # single sequence; resample it until no routing choice is a near-tie
    for attempt in range(50):
        rec, margins, hooks = router_choices(model)
        with torch.no_grad():
            single = rand_ids(rng, T_SINGLE, V)
            single_logits = model(single[None]).logits[0].float()
        for h in hooks:
            h.remove()
        router_margin = min(margins) if margins else 1.0
        if router_margin >= MIN_ROUTER_MARGIN:
            break
    else:
        raise SystemExit(f"{name}: near-ties in routing for every sampled sequence; try another seed")
    assert rec, "no MoE layer"
    ref["single_ids"], ref["single_logits"] = single, single_logits
    for li, lst in rec.items():
        ref[f"experts.{li}"] = lst[0].to(torch.int64)
    ref["router_margin"] = torch.tensor(router_margin, dtype=torch.float32)

    with torch.no_grad():
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

        for attempt in range(50):
            gp = rand_ids(rng, P_GREEDY, V)
            gt, margin = greedy_with_margin(model, gp)
            if margin >= MIN_GREEDY_MARGIN:
                break
        else:
            raise SystemExit(f"{name}: could not find a greedy prompt without near-ties")
        full = torch.cat([gp, gt])
        nc = model(full[None], use_cache=False).logits[0]
        assert torch.equal(nc[P_GREEDY - 1:-1].argmax(-1), gt), f"{name}: cache vs no-cache greedy mismatch"
        ref["greedy_prompt"], ref["greedy_tokens"] = gp, gt

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
    grads = split_grads(model)
    for k, g in grads.items():
        ref[f"grad.{k}"] = g
    n_zero = sum(1 for g in grads.values() if g.abs().max() == 0)

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
        "init": f"every parameter ~ N(0, {INIT_STD}); RMSNorm weights 1 + N(0, {INIT_STD}); "
                "e_score_correction_bias ~ N(0, 0.05)",
        "greedy_min_top1_top2_margin": margin,
        "router_min_margin": router_margin,
        "max_abs_diff_padded_batch_vs_single": max_pad_diff,
        "n_grad_tensors": len(grads),
        "n_zero_grad_tensors (experts no token chose)": n_zero,
        "moe_layers": sorted(rec.keys()),
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"  {name}: ok; {len(grads)} grads ({n_zero} zero), router margin {router_margin:.2e}, "
          f"greedy margin {margin:.2e}, dir {size / 1024:.0f} KiB")


def _fuse_experts(state, cfg):
    """Official per-expert names -> HF's fused gate_up_proj / down_proj parameters."""
    out = {}
    experts = {}
    for k, v in state.items():
        parts = k.split(".")
        if ".mlp.experts." in k:
            li = int(parts[2])
            e = int(parts[5])
            experts.setdefault(li, {}).setdefault(e, {})[parts[6]] = v
        else:
            out[k] = v
    for li, es in experts.items():
        E = cfg.n_routed_experts
        gu = torch.stack([torch.cat([es[e]["gate_proj"], es[e]["up_proj"]], 0) for e in range(E)])
        dn = torch.stack([es[e]["down_proj"] for e in range(E)])
        out[f"model.layers.{li}.mlp.experts.gate_up_proj"] = gu
        out[f"model.layers.{li}.mlp.experts.down_proj"] = dn
    return out


def make_mtp(args):
    """A default-style model plus one MTP module stored as DeepSeek-V3 does (model.layers.{L}.*:
    enorm, hnorm, eh_proj, shared_head.norm, a full MoE decoder layer). transformers' own
    DeepseekV3ForCausalLM drops these weights, so the reference runs transformers' MtpLayer
    directly (the module of its MTP speculative decoding) on the main model's final normed
    hidden states: mtp_logits[i] predicts token i+2 from (h_i, token i+1)."""
    from transformers.modeling_layers import MtpLayer
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer, DeepseekV3RMSNorm

    name = "deepseek_v3_mtp"
    out = os.path.join(args.out, name)
    os.makedirs(out, exist_ok=True)
    cfg, _ = build("deepseek_v3_default", args)
    cfg.num_nextn_predict_layers = 1
    torch.manual_seed(name_seed(args.seed, name, "torch"))
    gen = torch.Generator().manual_seed(name_seed(args.seed, name, "init"))
    rng = np.random.default_rng(name_seed(args.seed, name, "ids"))
    model = DeepseekV3ForCausalLM(cfg)
    init_weights(model, gen)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = PAD_ID
    model.eval()
    L = cfg.num_hidden_layers
    mtp = MtpLayer(cfg, DeepseekV3DecoderLayer, DeepseekV3RMSNorm, L, use_post_norm=True)
    init_weights(mtp, gen)
    mtp.eval()
    model.save_pretrained(out, safe_serialization=True)
    stored = load_file(os.path.join(out, "model.safetensors"))
    I = cfg.moe_intermediate_size
    for k, v in mtp.state_dict().items():
        if k.startswith("post_norm."):
            stored[f"model.layers.{L}.shared_head.norm.{k[len('post_norm.'):]}"] = v.clone()
        elif k.startswith("mtp_block."):
            rest = k[len("mtp_block."):]
            if rest == "mlp.experts.gate_up_proj":
                for e in range(v.shape[0]):
                    stored[f"model.layers.{L}.mlp.experts.{e}.gate_proj.weight"] = v[e, :I].clone()
                    stored[f"model.layers.{L}.mlp.experts.{e}.up_proj.weight"] = v[e, I:].clone()
            elif rest == "mlp.experts.down_proj":
                for e in range(v.shape[0]):
                    stored[f"model.layers.{L}.mlp.experts.{e}.down_proj.weight"] = v[e].clone()
            else:
                stored[f"model.layers.{L}.{rest}"] = v.clone()
        else:
            stored[f"model.layers.{L}.{k}"] = v.clone()
    save_file({k: v.contiguous() for k, v in stored.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    ref = {}
    with torch.no_grad():
        ids = rand_ids(rng, T_SINGLE, cfg.vocab_size)
        h = model.model(ids[None]).last_hidden_state  # after the final norm
        n = T_SINGLE - 1
        nxt = ids[1:][None]
        pos = torch.arange(1, T_SINGLE)[None]
        emb = model.model.embed_tokens(nxt)
        cos_sin = model.model.rotary_emb(emb, pos)
        mask = torch.full((n, n), float("-inf")).triu(1)[None, None]
        y = mtp(inputs_embeds=emb, previous_hidden_state=h[:, :n], position_embeddings=cos_sin,
                attention_mask=mask, position_ids=pos, cache=None)
        ref["mtp_ids"] = ids
        ref["mtp_logits"] = model.lm_head(y)[0].float()
        # the same with positions of h (i instead of i+1): rope sees relative positions only
        pos0 = torch.arange(0, n)[None]
        y0 = mtp(inputs_embeds=emb, previous_hidden_state=h[:, :n],
                 position_embeddings=model.model.rotary_emb(emb, pos0), attention_mask=mask, position_ids=pos0, cache=None)
        shift = (model.lm_head(y0)[0] - ref["mtp_logits"]).abs().max().item()
        for attempt in range(50):
            gp = rand_ids(rng, P_GREEDY, cfg.vocab_size)
            gt, margin = greedy_with_margin(model, gp)
            if margin >= MIN_GREEDY_MARGIN:
                break
        ref["greedy_prompt"], ref["greedy_tokens"] = gp, gt
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out, "reference.safetensors"))
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "seed": args.seed, "name": name,
            "description": make_mtp.__doc__.strip(), "mtp_logits_shift_by_position_convention": shift,
            "greedy_min_top1_top2_margin": margin}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"  {name}: ok; position-convention shift {shift:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="crates/aha-model/tests/fixtures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=FIXTURES, action="append", help="repeatable")
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    for name in args.only or FIXTURES:
        if name == "deepseek_v3_mtp":
            make_mtp(args)
        else:
            make(name, args)


if __name__ == "__main__":
    main()
