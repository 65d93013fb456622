//! DeepSeek-V2/V3/R1 GGUF files (llama.cpp's `deepseek2` architecture) as a DeepSeek-V3
//! checkpoint: an HF `config.json` and the weights under the names [`crate::deepseek_v3`]
//! loads. [`crate::Model::load_dense`] dequantizes every weight to f32
//! ([`dense_checkpoint`]); [`crate::Model::load`] keeps the block-quantized projections
//! (attention, dense MLP, experts) quantized and runs them with [`crate::qkernels`]
//! ([`quantized_checkpoint`]), everything else dense.
//!
//! What llama.cpp's converter (`convert_hf_to_gguf.py`, `DeepseekV2Model`) writes, and how it
//! maps back:
//!
//! * no q/k row permutation (unlike `llama`): llama.cpp ropes deepseek2 on adjacent pairs
//!   (`LLAMA_ROPE_TYPE_NORM`), which is DeepSeek's own interleaved layout, so the HF config
//!   gets `rope_interleave: true` and the weights are taken as stored;
//! * `kv_b_proj` is split per head into `attn_k_b` (ggml `[nope, rank, heads]`, i.e. each head's
//!   k part transposed) and `attn_v_b` (`[rank, v, heads]`), with `attention.key_length_mla` /
//!   `value_length_mla` giving the per-head sizes (`key_length` / `value_length` then describe
//!   the latent: `kv_lora_rank + rope` / `kv_lora_rank`). Older files have one `attn_kv_b` and
//!   no `_mla` keys; both load;
//! * the routed experts are stacked in 3-D `ffn_{gate,up,down}_exps` tensors (or a fused
//!   `ffn_gate_up_exps`, gate rows first) and are split back into `mlp.experts.N.*`;
//! * routing: `expert_gating_func` 1 softmax / 2 sigmoid (absent: softmax, llama.cpp's default
//!   for old V2 files), `exp_probs_b` is the `e_score_correction_bias` (its presence means
//!   `topk_method: noaux_tc`; without it, `group_limited_greedy` with groups, else `greedy`),
//!   `expert_group_count` / `expert_group_used_count` are `n_group` / `topk_group`;
//! * YaRN: the converter keeps only `yarn_log_multiplier = 0.1 * mscale_all_dim`; llama.cpp
//!   then takes `mscale = mscale_all_dim` for deepseek2, and so does this mapping;
//! * MTP (`nextn_predict_layers`, `blk.N.nextn.*`) is mapped when the file has it (the current
//!   converter drops it for DeepSeek-V3).

use crate::error::{ModelError, Result};
use crate::gguf::{qtensor_from_bytes, GgufFile};
use crate::gguf_llama::checked_qtensor;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

const ARCH: &str = "deepseek2";
/// Bound for every size read from the metadata, so products of them cannot overflow.
const MAX_DIM: usize = 1 << 24;

/// Whether the file's `general.architecture` is `deepseek2`.
pub fn is_deepseek2(g: &GgufFile) -> Result<bool> {
    Ok(g.get_str("general.architecture")? == Some(ARCH))
}

/// Hyper-parameters read from `deepseek2.*` metadata.
#[derive(Debug, Clone)]
struct Hp {
    vocab: usize,
    hidden: usize,
    /// Dense MLP width (leading dense layers); 0 when there are none.
    inter: usize,
    /// Layers in the file, MTP blocks included.
    blocks: usize,
    /// MTP blocks, after the trunk.
    nextn: usize,
    heads: usize,
    q_rank: usize,
    kv_rank: usize,
    rope: usize,
    nope: usize,
    v: usize,
    /// Split `attn_k_b` / `attn_v_b` (the `_mla` keys are present), else one `attn_kv_b`.
    split_kv_b: bool,
    experts: usize,
    used: usize,
    shared: usize,
    moe_inter: usize,
    dense_lead: usize,
    groups: usize,
    topk_group: usize,
}

fn meta_err(g: &GgufFile, msg: impl ToString) -> ModelError {
    ModelError::file(&g.path, msg)
}

fn read_hp(g: &GgufFile) -> Result<Hp> {
    let key = |k: &str| format!("{ARCH}.{k}");
    let opt = |k: &str| -> Result<Option<usize>> {
        match g.get_uint(&key(k))? {
            None => Ok(None),
            Some(v) if v as u128 > MAX_DIM as u128 => {
                Err(meta_err(g, format!("metadata {} = {v} is absurd", key(k))))
            }
            Some(v) => Ok(Some(v as usize)),
        }
    };
    let need = |k: &str| -> Result<usize> {
        opt(k)?.ok_or_else(|| meta_err(g, format!("missing metadata {}", key(k))))
    };
    let hidden = need("embedding_length")?;
    let blocks = need("block_count")?;
    let nextn = opt("nextn_predict_layers")?.unwrap_or(0);
    let heads = need("attention.head_count")?;
    let kv_rank = need("attention.kv_lora_rank")?;
    let q_rank = opt("attention.q_lora_rank")?.unwrap_or(0);
    let rope = need("rope.dimension_count")?;
    let (k_mla, v_mla) = (
        opt("attention.key_length_mla")?,
        opt("attention.value_length_mla")?,
    );
    let (key_len, value_len) = (opt("attention.key_length")?, opt("attention.value_length")?);
    let (split_kv_b, head_k, v) = match (k_mla, v_mla) {
        (Some(k), Some(v)) if k > 0 && v > 0 => {
            // The latent's sizes, as llama.cpp's absorbed attention sees them.
            if key_len.is_some_and(|l| l != kv_rank + rope)
                || value_len.is_some_and(|l| l != kv_rank)
            {
                return Err(meta_err(
                    g,
                    format!(
                        "attention.key_length {key_len:?} / value_length {value_len:?} do not match \
                         kv_lora_rank {kv_rank} + rope {rope} / kv_lora_rank (MLA layout)"
                    ),
                ));
            }
            (true, k, v)
        }
        (None, None) => (
            false,
            key_len.ok_or_else(|| meta_err(g, format!("missing metadata {}", key("attention.key_length"))))?,
            value_len.ok_or_else(|| meta_err(g, format!("missing metadata {}", key("attention.value_length"))))?,
        ),
        _ => {
            return Err(meta_err(
                g,
                "attention.key_length_mla and value_length_mla must both be present (and positive) or both absent",
            ))
        }
    };
    if head_k <= rope {
        return Err(meta_err(
            g,
            format!(
                "key length {head_k} leaves no non-rope part next to rope.dimension_count {rope}"
            ),
        ));
    }
    let experts = opt("expert_count")?.unwrap_or(0);
    let used = opt("expert_used_count")?.unwrap_or(0);
    let groups = opt("expert_group_count")?.unwrap_or(0).max(1);
    let topk_group = opt("expert_group_used_count")?.unwrap_or(groups).max(1);
    let dense_lead = opt("leading_dense_block_count")?.unwrap_or(0);
    let hp = Hp {
        vocab: match opt("vocab_size")? {
            Some(v) => v,
            None => g
                .tensor_info("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| meta_err(g, "no deepseek2.vocab_size and no token_embd.weight"))?,
        },
        hidden,
        inter: if dense_lead > 0 {
            need("feed_forward_length")?
        } else {
            opt("feed_forward_length")?.unwrap_or(0)
        },
        blocks,
        nextn,
        heads,
        q_rank,
        kv_rank,
        rope,
        nope: head_k - rope,
        v,
        split_kv_b,
        experts,
        used,
        shared: opt("expert_shared_count")?.unwrap_or(0),
        moe_inter: if experts > 0 {
            need("expert_feed_forward_length")?
        } else {
            0
        },
        dense_lead,
        groups,
        topk_group,
    };
    let ok = hp.hidden > 0
        && hp.heads > 0
        && hp.kv_rank > 0
        && hp.rope > 0
        && hp.rope.is_multiple_of(2)
        && hp.vocab > 0
        && hp.nextn < hp.blocks
        && hp.blocks <= 1024
        && (hp.experts == 0
            || (hp.used > 0
                && hp.used <= hp.experts
                && hp.moe_inter > 0
                && hp.experts.is_multiple_of(hp.groups)
                && hp.topk_group <= hp.groups))
        && (hp.dense_lead >= hp.blocks - hp.nextn || hp.experts > 0);
    if !ok {
        return Err(meta_err(
            g,
            format!("inconsistent deepseek2 hyper-parameters {hp:?}"),
        ));
    }
    Ok(hp)
}

/// f32 from the file's float, printed as the f32 it is (1e-6, not 9.999999974752427e-7).
fn short(v: f64) -> f64 {
    format!("{}", v as f32).parse::<f64>().unwrap_or(v)
}

/// HF `rope_scaling` from `deepseek2.rope.scaling.*`.
fn rope_scaling(g: &GgufFile) -> Result<serde_json::Value> {
    let key = |k: &str| format!("{ARCH}.rope.scaling.{k}");
    let float = |k: &str| g.get_float(&key(k));
    if let Some(a) = float("attn_factor")? {
        if a != 1.0 {
            return Err(meta_err(
                g,
                format!("{} = {a} is not supported", key("attn_factor")),
            ));
        }
    }
    if let Some(t) = g.get_float(&format!("{ARCH}.attention.temperature_scale"))? {
        if t != 0.0 {
            return Err(meta_err(
                g,
                "attention temperature scaling (attention.temperature_scale) is not supported",
            ));
        }
    }
    let factor = || {
        float("factor")?
            .filter(|f| f.is_finite() && *f > 0.0)
            .ok_or_else(|| meta_err(g, format!("{} is missing or not positive", key("factor"))))
    };
    Ok(match g.get_str(&key("type"))? {
        None | Some("none") => serde_json::Value::Null,
        Some("linear") => serde_json::json!({"rope_type": "linear", "factor": short(factor()?)}),
        Some("yarn") => {
            if float("yarn_ext_factor")?.is_some_and(|e| e != 1.0) {
                return Err(meta_err(
                    g,
                    format!("{} is not supported", key("yarn_ext_factor")),
                ));
            }
            let orig = g
                .get_uint(&key("original_context_length"))?
                .ok_or_else(|| {
                    meta_err(g, format!("yarn needs {}", key("original_context_length")))
                })?;
            let mut r = serde_json::json!({
                "rope_type": "yarn",
                "factor": short(factor()?),
                "original_max_position_embeddings": orig,
            });
            let o = r.as_object_mut().expect("a JSON object");
            if let Some(b) = float("yarn_beta_fast")? {
                o.insert("beta_fast".into(), short(b).into());
            }
            if let Some(b) = float("yarn_beta_slow")? {
                o.insert("beta_slow".into(), short(b).into());
            }
            if let Some(a) = float("yarn_attn_factor")? {
                o.insert("attention_factor".into(), short(a).into());
            }
            // The converter stores 0.1 * mscale_all_dim; llama.cpp takes mscale = mscale_all_dim.
            if let Some(m) = float("yarn_log_multiplier")? {
                let m = short(((m as f32) / 0.1f32) as f64);
                o.insert("mscale".into(), m.into());
                o.insert("mscale_all_dim".into(), m.into());
            }
            r
        }
        Some(other) => {
            return Err(meta_err(
                g,
                format!("rope scaling {other:?} is not supported for deepseek2 GGUF files"),
            ))
        }
    })
}

/// A `deepseek2` GGUF model as a dense f32 DeepSeek-V3 checkpoint: the HF `config.json` and
/// every weight dequantized under its HF name, each shape checked against the metadata.
pub fn dense_checkpoint(
    g: &GgufFile,
    device: &Device,
) -> Result<(serde_json::Value, HashMap<String, Tensor>)> {
    let (config, dense, _) = checkpoint(g, device, false)?;
    Ok((config, dense))
}

/// Weights kept in their GGUF blocks, by HF name.
pub type QuantizedTensors = HashMap<String, QTensor>;

/// As [`dense_checkpoint`], but the projections that run as plain matmuls (q / q_a / q_b,
/// kv_a, o, the dense MLP, every routed and shared expert, the MTP eh_proj) stay quantized
/// when the file stores them in a block type (anything but F32 / F16 / BF16) whose block
/// size divides their rows; they come in the second map (an expert cut out of its stacked
/// `ffn_*_exps` tensor), everything else dequantized in the first. Tensors that are rebuilt
/// (kv_b from `attn_k_b` / `attn_v_b`), norms, the router, embeddings and heads are dense.
pub fn quantized_checkpoint(
    g: &GgufFile,
    device: &Device,
) -> Result<(serde_json::Value, HashMap<String, Tensor>, QuantizedTensors)> {
    checkpoint(g, device, true)
}

/// Whether a weight of this type and row length can run as a quantized matmul.
fn keeps_quantized(dtype: GgmlDType, row: usize) -> bool {
    !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
        && row.is_multiple_of(dtype.block_size())
}

fn checkpoint(
    g: &GgufFile,
    device: &Device,
    keep_quantized: bool,
) -> Result<(serde_json::Value, HashMap<String, Tensor>, QuantizedTensors)> {
    if !is_deepseek2(g)? {
        return Err(meta_err(g, "not a deepseek2 GGUF file"));
    }
    let hp = read_hp(g)?;
    let rope_scaling = rope_scaling(g)?;
    let scoring = match g.get_uint(&format!("{ARCH}.expert_gating_func"))? {
        None | Some(1) => "softmax",
        Some(2) => "sigmoid",
        Some(other) => {
            return Err(meta_err(
                g,
                format!(
                    "expert_gating_func {other} is not supported (1 softmax and 2 sigmoid are)"
                ),
            ))
        }
    };
    let trunk = hp.blocks - hp.nextn;
    let (h, nh) = (hp.hidden, hp.heads);
    let qk = hp.nope + hp.rope;
    let moe = hp.experts > 0;
    let mut out: HashMap<String, Tensor> = HashMap::new();
    let mut quant: QuantizedTensors = HashMap::new();
    let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let q = checked_qtensor(g, name, shape, None, device)?;
        Ok(q.dequantize(device)?.to_dtype(DType::F32)?)
    };
    // A 2-D projection weight: kept quantized when it can be, else dequantized.
    let lin = |out: &mut HashMap<String, Tensor>,
               quant: &mut QuantizedTensors,
               name: &str,
               hf_name: String,
               shape: &[usize]|
     -> Result<()> {
        let q = checked_qtensor(g, name, shape, None, device)?;
        if keep_quantized && keeps_quantized(q.dtype(), shape[1]) {
            quant.insert(hf_name, q);
        } else {
            out.insert(hf_name, q.dequantize(device)?.to_dtype(DType::F32)?);
        }
        Ok(())
    };
    // Stacked experts [e, rows, cols] (`rows_from..+rows` of each): per-expert QTensors cut
    // from the raw blocks (each expert's slab is contiguous), or None to dequantize.
    let experts_q = |name: &str,
                     shape: &[usize],
                     rows_from: usize,
                     rows: usize|
     -> Result<Option<Vec<QTensor>>> {
        let (e, all_rows, cols) = (shape[0], shape[1], shape[2]);
        let dtype = match g
            .tensor_info(name)
            .and_then(|t| Some((t, crate::gguf::candle_dtype(t.dtype)?)))
        {
            Some((t, d)) if keep_quantized && t.shape() == shape && keeps_quantized(d, cols) => d,
            // Dense, or an error from the dense path.
            _ => return Ok(None),
        };
        let data = g.tensor_data(name)?;
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        let slab = all_rows * row_bytes;
        (0..e)
            .map(|x| {
                let start = x * slab + rows_from * row_bytes;
                let bytes = &data.as_ref()[start..start + rows * row_bytes];
                qtensor_from_bytes(dtype, bytes, &[rows, cols], device)
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    };
    out.insert(
        "model.embed_tokens.weight".into(),
        get("token_embd.weight", &[hp.vocab, h])?,
    );
    let norm = get("output_norm.weight", &[h])?;
    out.insert("model.norm.weight".into(), norm.clone());
    let tied = g.tensor_info("output.weight").is_none();
    if !tied {
        out.insert(
            "lm_head.weight".into(),
            get("output.weight", &[hp.vocab, h])?,
        );
    }
    // MTP blocks are mapped only when the file has them (llama.cpp: "trunk only" otherwise).
    let has_mtp = hp.nextn > 0
        && g.tensor_info(&format!("blk.{trunk}.nextn.eh_proj.weight"))
            .is_some();
    let n_layers = if has_mtp { hp.blocks } else { trunk };
    // Which routing: exp_probs_b present means DeepSeek-V3's bias-corrected top-k.
    let first_moe = (hp.dense_lead..n_layers).next();
    let has_bias = first_moe.is_some_and(|i| {
        g.tensor_info(&format!("blk.{i}.exp_probs_b.bias"))
            .is_some()
    });
    for i in 0..n_layers {
        let (p, hf) = (format!("blk.{i}"), format!("model.layers.{i}"));
        let put = |out: &mut HashMap<String, Tensor>,
                   suffix: &str,
                   hf_suffix: &str,
                   shape: &[usize]|
         -> Result<()> {
            out.insert(
                format!("{hf}.{hf_suffix}"),
                get(&format!("{p}.{suffix}"), shape)?,
            );
            Ok(())
        };
        let putq = |out: &mut HashMap<String, Tensor>,
                    quant: &mut QuantizedTensors,
                    suffix: &str,
                    hf_suffix: &str,
                    shape: &[usize]|
         -> Result<()> {
            lin(
                out,
                quant,
                &format!("{p}.{suffix}"),
                format!("{hf}.{hf_suffix}"),
                shape,
            )
        };
        put(&mut out, "attn_norm.weight", "input_layernorm.weight", &[h])?;
        if hp.q_rank > 0 {
            putq(
                &mut out,
                &mut quant,
                "attn_q_a.weight",
                "self_attn.q_a_proj.weight",
                &[hp.q_rank, h],
            )?;
            put(
                &mut out,
                "attn_q_a_norm.weight",
                "self_attn.q_a_layernorm.weight",
                &[hp.q_rank],
            )?;
            putq(
                &mut out,
                &mut quant,
                "attn_q_b.weight",
                "self_attn.q_b_proj.weight",
                &[nh * qk, hp.q_rank],
            )?;
        } else {
            putq(
                &mut out,
                &mut quant,
                "attn_q.weight",
                "self_attn.q_proj.weight",
                &[nh * qk, h],
            )?;
        }
        putq(
            &mut out,
            &mut quant,
            "attn_kv_a_mqa.weight",
            "self_attn.kv_a_proj_with_mqa.weight",
            &[hp.kv_rank + hp.rope, h],
        )?;
        put(
            &mut out,
            "attn_kv_a_norm.weight",
            "self_attn.kv_a_layernorm.weight",
            &[hp.kv_rank],
        )?;
        if hp.split_kv_b {
            // k_b [heads, rank, nope] (each head's k part transposed), v_b [heads, v, rank]:
            // HF's kv_b is [heads, nope + v, rank] flattened.
            let kb = get(&format!("{p}.attn_k_b.weight"), &[nh, hp.kv_rank, hp.nope])?;
            let vb = get(&format!("{p}.attn_v_b.weight"), &[nh, hp.v, hp.kv_rank])?;
            let kv_b = Tensor::cat(&[&kb.transpose(1, 2)?, &vb], 1)?
                .reshape((nh * (hp.nope + hp.v), hp.kv_rank))?
                .contiguous()?;
            out.insert(format!("{hf}.self_attn.kv_b_proj.weight"), kv_b);
        } else {
            put(
                &mut out,
                "attn_kv_b.weight",
                "self_attn.kv_b_proj.weight",
                &[nh * (hp.nope + hp.v), hp.kv_rank],
            )?;
        }
        putq(
            &mut out,
            &mut quant,
            "attn_output.weight",
            "self_attn.o_proj.weight",
            &[h, nh * hp.v],
        )?;
        put(
            &mut out,
            "ffn_norm.weight",
            "post_attention_layernorm.weight",
            &[h],
        )?;
        if !moe || (i < hp.dense_lead && i < trunk) {
            putq(
                &mut out,
                &mut quant,
                "ffn_gate.weight",
                "mlp.gate_proj.weight",
                &[hp.inter, h],
            )?;
            putq(
                &mut out,
                &mut quant,
                "ffn_up.weight",
                "mlp.up_proj.weight",
                &[hp.inter, h],
            )?;
            putq(
                &mut out,
                &mut quant,
                "ffn_down.weight",
                "mlp.down_proj.weight",
                &[h, hp.inter],
            )?;
        } else {
            let (e, mi) = (hp.experts, hp.moe_inter);
            put(&mut out, "ffn_gate_inp.weight", "mlp.gate.weight", &[e, h])?;
            if has_bias {
                put(
                    &mut out,
                    "exp_probs_b.bias",
                    "mlp.gate.e_score_correction_bias",
                    &[e],
                )?;
            }
            let fused = g
                .tensor_info(&format!("{p}.ffn_gate_up_exps.weight"))
                .is_some();
            let (gate_name, up_name, down_name) = (
                format!("{p}.ffn_gate_exps.weight"),
                format!("{p}.ffn_up_exps.weight"),
                format!("{p}.ffn_down_exps.weight"),
            );
            let gu_name = format!("{p}.ffn_gate_up_exps.weight");
            let q = if fused {
                (
                    experts_q(&gu_name, &[e, 2 * mi, h], 0, mi)?,
                    experts_q(&gu_name, &[e, 2 * mi, h], mi, mi)?,
                )
            } else {
                (
                    experts_q(&gate_name, &[e, mi, h], 0, mi)?,
                    experts_q(&up_name, &[e, mi, h], 0, mi)?,
                )
            };
            let q_down = experts_q(&down_name, &[e, h, mi], 0, h)?;
            let quantized = [q.0, q.1, q_down];
            let (gate, up) = if quantized[0].is_some() && quantized[1].is_some() {
                (None, None)
            } else if fused {
                let gu = get(&gu_name, &[e, 2 * mi, h])?;
                (Some(gu.narrow(1, 0, mi)?), Some(gu.narrow(1, mi, mi)?))
            } else {
                (
                    Some(get(&gate_name, &[e, mi, h])?),
                    Some(get(&up_name, &[e, mi, h])?),
                )
            };
            let down = match &quantized[2] {
                Some(_) => None,
                None => Some(get(&down_name, &[e, h, mi])?),
            };
            let dense = [gate, up, down];
            let mut quantized = quantized.map(|q| q.map(|v| v.into_iter()));
            for x in 0..e {
                let pre = format!("{hf}.mlp.experts.{x}");
                for (k, proj) in ["gate_proj", "up_proj", "down_proj"].iter().enumerate() {
                    let name = format!("{pre}.{proj}.weight");
                    match (&mut quantized[k], &dense[k]) {
                        (Some(it), _) => {
                            let q = it.next().expect("one QTensor per expert");
                            quant.insert(name, q);
                        }
                        (None, Some(t)) => {
                            out.insert(name, t.get(x)?.contiguous()?);
                        }
                        (None, None) => unreachable!("gate/up/down are dense when not quantized"),
                    }
                }
            }
            if hp.shared > 0 {
                let si = mi * hp.shared;
                putq(
                    &mut out,
                    &mut quant,
                    "ffn_gate_shexp.weight",
                    "mlp.shared_experts.gate_proj.weight",
                    &[si, h],
                )?;
                putq(
                    &mut out,
                    &mut quant,
                    "ffn_up_shexp.weight",
                    "mlp.shared_experts.up_proj.weight",
                    &[si, h],
                )?;
                putq(
                    &mut out,
                    &mut quant,
                    "ffn_down_shexp.weight",
                    "mlp.shared_experts.down_proj.weight",
                    &[h, si],
                )?;
            }
        }
        if i >= trunk {
            putq(
                &mut out,
                &mut quant,
                "nextn.eh_proj.weight",
                "eh_proj.weight",
                &[h, 2 * h],
            )?;
            put(&mut out, "nextn.enorm.weight", "enorm.weight", &[h])?;
            put(&mut out, "nextn.hnorm.weight", "hnorm.weight", &[h])?;
            let optional = [
                (
                    "nextn.embed_tokens.weight",
                    "embed_tokens.weight",
                    vec![hp.vocab, h],
                ),
                (
                    "nextn.shared_head_head.weight",
                    "shared_head.head.weight",
                    vec![hp.vocab, h],
                ),
                (
                    "nextn.shared_head_norm.weight",
                    "shared_head.norm.weight",
                    vec![h],
                ),
            ];
            for (name, hf_name, shape) in optional {
                if g.tensor_info(&format!("{p}.{name}")).is_some() {
                    put(&mut out, name, hf_name, &shape)?;
                }
            }
        }
    }
    if has_mtp {
        // llama.cpp falls back to the final norm when an MTP block has no head norm of its own.
        for i in trunk..hp.blocks {
            out.entry(format!("model.layers.{i}.shared_head.norm.weight"))
                .or_insert_with(|| norm.clone());
        }
    }
    let topk_method = if has_bias {
        "noaux_tc"
    } else if hp.groups > 1 {
        "group_limited_greedy"
    } else {
        "greedy"
    };
    let special = g.special_ids();
    let eos = &special.eos;
    let f = |k: &str| g.get_float(&format!("{ARCH}.{k}"));
    let config = serde_json::json!({
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": hp.vocab,
        "hidden_size": h,
        "intermediate_size": hp.inter,
        "moe_intermediate_size": if moe { Some(hp.moe_inter) } else { None },
        "num_hidden_layers": trunk,
        "num_attention_heads": nh,
        "num_key_value_heads": nh,
        "n_shared_experts": if moe { Some(hp.shared) } else { None },
        "n_routed_experts": if moe { Some(hp.experts) } else { None },
        "num_experts_per_tok": if moe { Some(hp.used) } else { None },
        "routed_scaling_factor": match f("expert_weights_scale")? {
            Some(s) if s != 0.0 => short(s),
            _ => 1.0,
        },
        "norm_topk_prob": g.get_bool(&format!("{ARCH}.expert_weights_norm"))?.unwrap_or(false),
        "scoring_func": scoring,
        "topk_method": topk_method,
        "n_group": hp.groups,
        "topk_group": hp.topk_group,
        "first_k_dense_replace": hp.dense_lead.min(trunk),
        "moe_layer_freq": 1,
        "kv_lora_rank": hp.kv_rank,
        "q_lora_rank": if hp.q_rank > 0 { Some(hp.q_rank) } else { None },
        "qk_rope_head_dim": hp.rope,
        "qk_nope_head_dim": hp.nope,
        "v_head_dim": hp.v,
        "hidden_act": "silu",
        "max_position_embeddings": g.get_uint(&format!("{ARCH}.context_length"))?.unwrap_or(4096),
        "rms_norm_eps": short(f("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6)),
        "rope_theta": short(f("rope.freq_base")?.unwrap_or(10000.0)),
        "rope_scaling": rope_scaling,
        "rope_interleave": true,
        "tie_word_embeddings": tied,
        "attention_bias": false,
        "num_nextn_predict_layers": if has_mtp { hp.nextn } else { 0 },
        "bos_token_id": special.bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    });
    Ok((config, out, quant))
}
