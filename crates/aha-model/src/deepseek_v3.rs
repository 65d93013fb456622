//! DeepSeek-V3 / R1 (`DeepseekV3ForCausalLM`): multi-head latent attention (MLA),
//! DeepSeekMoE with auxiliary-loss-free (bias-corrected, group-limited) routing, YaRN rope,
//! block-FP8 checkpoints and the multi-token-prediction (MTP) module.
//!
//! x = embed(ids)
//! for each layer:  x = x + o(mla(n1(x)))
//!                  x = x + (dense MLP | shared experts + sum_k w_k expert_k)(n2(x))
//! logits = lm_head(norm(x))
//!
//! MLA: q = q_b(norm(q_a(x))) (or q_proj(x)), split per head into a no-rope and a rope part;
//! [c, k_rope] = kv_a_proj_with_mqa(x), c = norm(c) is the compressed latent (kv_lora_rank
//! values per token), k_rope one rope key shared by every head. Keys and values of head h are
//! kv_b(c) split into k_nope_h and v_h. The KV cache holds only c and k_rope; decoding can use
//! the weight-absorbed form (q_nope_h W_uk_h against c, then W_uv_h after attending over c), so
//! keys and values are never expanded per head.

use crate::config::{parse_rope, RopeConfig, RopeScaling};
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::ops::{self, Linear, Mlp, Mode};
use crate::rope::{yarn_mscale, Rope};
use crate::weights::{Checkpoint, Params};
use crate::ForwardInput;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// `config.json` of `DeepseekV3ForCausalLM` (Hub and transformers-5 spellings).
#[derive(Debug, Clone, Deserialize)]
pub struct DeepseekV3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub moe_intermediate_size: Option<usize>,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub n_shared_experts: Option<usize>,
    /// None or 0: no MoE layers at all.
    pub n_routed_experts: Option<usize>,
    pub routed_scaling_factor: Option<f64>,
    pub kv_lora_rank: usize,
    /// None: a plain `q_proj` instead of the low-rank q path.
    pub q_lora_rank: Option<usize>,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    pub qk_nope_head_dim: usize,
    pub n_group: Option<usize>,
    pub topk_group: Option<usize>,
    pub num_experts_per_tok: Option<usize>,
    pub first_k_dense_replace: Option<usize>,
    pub moe_layer_freq: Option<usize>,
    pub norm_topk_prob: Option<bool>,
    /// `noaux_tc` (V3, default), `group_limited_greedy` (V2.5), `greedy` (V2).
    pub topk_method: Option<String>,
    /// `sigmoid` (V3, default) or `softmax` (V2).
    pub scoring_func: Option<String>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    /// DeepSeek's rope layout: rotary pairs (x0, x1), (x2, x3), ... (default true).
    pub rope_interleave: Option<bool>,
    /// MTP modules (transformers 5 also reads `num_mtp_layers`).
    #[serde(alias = "num_mtp_layers")]
    pub num_nextn_predict_layers: Option<usize>,
    pub quantization_config: Option<serde_json::Value>,
    #[serde(skip)]
    pub rope: Option<RopeConfig>,
}

fn default_act() -> String {
    "silu".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    Sigmoid,
    Softmax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopkMethod {
    /// Bias-corrected scores, groups ranked by the sum of their top-2 (DeepSeek-V3).
    NoauxTc,
    /// Groups ranked by their best score (DeepSeek-V2.5).
    GroupLimitedGreedy,
    /// Plain top-k over all experts (DeepSeek-V2).
    Greedy,
}

impl DeepseekV3Config {
    pub fn from_json(raw: &serde_json::Value, path: &Path) -> Result<Self> {
        let mut cfg: Self = crate::config::parse_fields(raw, path)?;
        cfg.rope = Some(parse_rope(raw, 10000.0).map_err(|e| ModelError::config(path, e))?);
        let check = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(ModelError::config(path, msg))
            }
        };
        check(
            cfg.hidden_act == "silu",
            "only hidden_act \"silu\" is supported",
        )?;
        check(
            cfg.num_attention_heads > 0 && cfg.num_hidden_layers > 0 && cfg.vocab_size > 0,
            "sizes must be positive",
        )?;
        check(
            cfg.qk_rope_head_dim.is_multiple_of(2) && cfg.qk_rope_head_dim > 0,
            "qk_rope_head_dim must be even and positive",
        )?;
        check(
            cfg.num_key_value_heads.unwrap_or(cfg.num_attention_heads) == cfg.num_attention_heads,
            "MLA needs num_key_value_heads == num_attention_heads",
        )?;
        let e = cfg.n_experts();
        if e > 0 {
            let (g, tg, k) = (
                cfg.groups(),
                cfg.topk_group.unwrap_or(1).max(1),
                cfg.top_k(),
            );
            check(
                cfg.moe_intermediate_size.unwrap_or(0) > 0,
                "moe_intermediate_size is needed with routed experts",
            )?;
            check(
                k > 0 && k <= e,
                "num_experts_per_tok must be in 1..=n_routed_experts",
            )?;
            check(
                e.is_multiple_of(g),
                "n_routed_experts must be a multiple of n_group",
            )?;
            check(tg <= g, "topk_group must be at most n_group")?;
            check(
                k <= tg * (e / g) || cfg.topk_method() == TopkMethod::Greedy,
                "num_experts_per_tok exceeds the experts of topk_group groups",
            )?;
        }
        if let Some(q) = &cfg.quantization_config {
            let method = q.get("quant_method").and_then(|v| v.as_str()).unwrap_or("");
            check(method == "fp8", "only quantization_config with quant_method \"fp8\" (DeepSeek block FP8) is supported")?;
        }
        match cfg.scoring_func.as_deref() {
            None | Some("sigmoid") | Some("softmax") => {}
            Some(other) => {
                return Err(ModelError::config(
                    path,
                    format!("unsupported scoring_func {other:?}"),
                ))
            }
        }
        match cfg.topk_method.as_deref() {
            None | Some("noaux_tc") | Some("greedy") | Some("group_limited_greedy") => {}
            Some(other) => {
                return Err(ModelError::config(
                    path,
                    format!("unsupported topk_method {other:?}"),
                ))
            }
        }
        Ok(cfg)
    }

    pub fn n_experts(&self) -> usize {
        self.n_routed_experts.unwrap_or(0)
    }

    pub fn groups(&self) -> usize {
        self.n_group.unwrap_or(1).max(1)
    }

    pub fn top_k(&self) -> usize {
        self.num_experts_per_tok.unwrap_or(1)
    }

    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    pub fn scoring(&self) -> Scoring {
        if self.scoring_func.as_deref() == Some("softmax") {
            Scoring::Softmax
        } else {
            Scoring::Sigmoid
        }
    }

    pub fn topk_method(&self) -> TopkMethod {
        match self.topk_method.as_deref() {
            Some("greedy") => TopkMethod::Greedy,
            Some("group_limited_greedy") => TopkMethod::GroupLimitedGreedy,
            _ => TopkMethod::NoauxTc,
        }
    }

    /// Whether decoder layer `i` has a MoE block (else a dense MLP).
    pub fn is_moe_layer(&self, i: usize) -> bool {
        self.n_experts() > 0
            && i >= self.first_k_dense_replace.unwrap_or(0)
            && i.is_multiple_of(self.moe_layer_freq.unwrap_or(1).max(1))
    }

    /// The block size of FP8 weights, when the checkpoint is block-quantized.
    pub fn fp8_block(&self) -> Option<(usize, usize)> {
        let q = self.quantization_config.as_ref()?;
        let b = q.get("weight_block_size").and_then(|v| v.as_array());
        match b.map(|a| a.iter().filter_map(|x| x.as_u64()).collect::<Vec<_>>()) {
            Some(v) if v.len() == 2 => Some((v[0] as usize, v[1] as usize)),
            _ => Some((128, 128)),
        }
    }

    /// The softmax scale: 1/sqrt(qk_head_dim), times mscale(factor, mscale_all_dim)^2 under YaRN.
    pub fn softmax_scale(&self) -> f64 {
        let base = 1.0 / (self.qk_head_dim() as f64).sqrt();
        match self.rope.as_ref().map(|r| &r.scaling) {
            Some(RopeScaling::Yarn {
                factor,
                mscale_all_dim,
                ..
            }) if *mscale_all_dim != 0.0 => {
                let m = yarn_mscale(*factor, *mscale_all_dim);
                base * m * m
            }
            _ => base,
        }
    }
}

/// Which MLA form a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlaForm {
    /// Absorbed for short inference steps (decoding), plain otherwise.
    Auto,
    /// Keys and values expanded per head from the latent (prefill, training).
    Plain,
    /// Attention computed against the latent itself (W_uk folded into q, W_uv after).
    Absorbed,
}

enum QProj {
    Plain(Linear),
    LowRank { a: Linear, norm: Tensor, b: Linear },
}

struct Mla {
    q: QProj,
    kv_a: Linear,
    kv_norm: Tensor,
    kv_b: Linear,
    o: Linear,
    heads: usize,
    nope: usize,
    rope_dim: usize,
    v_dim: usize,
    rank: usize,
    scale: f64,
    interleave: bool,
    eps: f64,
}

/// Rope on x [b, h, t, d]. With the interleaved layout the pairs (x0, x1), (x2, x3) ... are
/// first gathered to [x0, x2, ..., x1, x3, ...] (as HF's `apply_rotary_pos_emb_interleave`,
/// whose output is in that de-interleaved order too), then rotated half-split.
fn apply_rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    interleave: bool,
    mode: Mode,
) -> candle_core::Result<Tensor> {
    let x = if interleave {
        let (b, h, t, d) = x.dims4()?;
        x.reshape((b, h, t, d / 2, 2))?
            .transpose(3, 4)?
            .reshape((b, h, t, d))?
    } else {
        x.clone()
    };
    Rope::apply(&x.contiguous()?, cos, sin, mode)
}

impl Mla {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bias: &Tensor,
        mode: Mode,
        cache: Option<(&mut KvCache, usize)>,
        absorbed: bool,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, nope, rd) = (self.heads, self.nope, self.rope_dim);
        let q = match &self.q {
            QProj::Plain(l) => l.forward(x, mode)?,
            QProj::LowRank { a, norm, b: qb } => {
                let qa = ops::rms_norm(
                    &a.forward(x, mode)?,
                    &ops::param(norm, mode),
                    self.eps,
                    mode,
                )?;
                qb.forward(&qa, mode)?
            }
        };
        let q = q.reshape((b, t, h, nope + rd))?.transpose(1, 2)?;
        let q_nope = q.narrow(3, 0, nope)?;
        let q_rot = apply_rope(&q.narrow(3, nope, rd)?, cos, sin, self.interleave, mode)?;
        let ckv = self.kv_a.forward(x, mode)?;
        let c = ops::rms_norm(
            &ckv.narrow(2, 0, self.rank)?.contiguous()?,
            &ops::param(&self.kv_norm, mode),
            self.eps,
            mode,
        )?
        .unsqueeze(1)?;
        let k_rot = apply_rope(
            &ckv.narrow(2, self.rank, rd)?.unsqueeze(1)?,
            cos,
            sin,
            self.interleave,
            mode,
        )?;
        let (c, k_rot) = match cache {
            Some((cache, layer)) => cache.append(layer, &c, &k_rot)?,
            None => (c, k_rot),
        };
        let total = c.dim(2)?;
        let bias = bias.squeeze(1)?; // [b, 1, t, T]
        let out = if absorbed {
            // q_nope_h W_uk_h: [h, b*t, nope] x [h, nope, rank]
            let w = ops::param(self.kv_b.dense_weight("the absorbed MLA form")?, mode)
                .reshape((h, nope + self.v_dim, self.rank))?;
            let w_uk = w.narrow(1, 0, nope)?.contiguous()?;
            let w_uv_t = w
                .narrow(1, nope, self.v_dim)?
                .transpose(1, 2)?
                .contiguous()?; // [h, rank, v]
            let q_abs = q_nope
                .transpose(0, 1)?
                .contiguous()?
                .reshape((h, b * t, nope))?
                .matmul(&w_uk)?;
            let q_abs = q_abs
                .reshape((h, b, t, self.rank))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((b, h * t, self.rank))?;
            let c2 = c.squeeze(1)?.contiguous()?; // [b, T, rank]
            let kr = k_rot.squeeze(1)?.contiguous()?; // [b, T, rope]
            let s_nope = q_abs.matmul(&c2.t()?)?;
            let s_rot = q_rot
                .contiguous()?
                .reshape((b, h * t, rd))?
                .matmul(&kr.t()?)?;
            let scores = ((s_nope + s_rot)? * self.scale)?
                .reshape((b, h, t, total))?
                .broadcast_add(&bias)?;
            let probs = ops::softmax(&scores, mode)?.reshape((b, h * t, total))?;
            let o_lat = probs.matmul(&c2)?; // [b, h*t, rank]
            let o_lat = o_lat
                .reshape((b, h, t, self.rank))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((h, b * t, self.rank))?;
            let o = o_lat.matmul(&w_uv_t)?; // [h, b*t, v]
            o.reshape((h, b, t, self.v_dim))?
                .permute((1, 2, 0, 3))?
                .contiguous()?
                .reshape((b, t, h * self.v_dim))?
        } else {
            let kv = self.kv_b.forward(&c, mode)?; // [b, 1, T, h*(nope+v)]
            let kv = kv
                .reshape((b, total, h, nope + self.v_dim))?
                .transpose(1, 2)?;
            let k_nope = kv.narrow(3, 0, nope)?;
            let v = kv.narrow(3, nope, self.v_dim)?.contiguous()?;
            let k = Tensor::cat(&[&k_nope, &k_rot.broadcast_as((b, h, total, rd))?], 3)?;
            let q = Tensor::cat(&[&q_nope, &q_rot], 3)?.contiguous()?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * self.scale)?.broadcast_add(&bias)?;
            let probs = ops::softmax(&scores, mode)?;
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, h * self.v_dim))?
        };
        Ok(self.o.forward(&out, mode)?)
    }
}

struct Moe {
    layer: usize,
    gate: Tensor,
    /// None unless topk_method is noaux_tc.
    bias: Option<Tensor>,
    bias_name: String,
    experts: Vec<Mlp>,
    shared: Option<Mlp>,
    top_k: usize,
    groups: usize,
    topk_group: usize,
    scoring: Scoring,
    method: TopkMethod,
    norm_topk: bool,
    scaling: f64,
}

/// The routing decisions of one MoE layer in one forward pass.
#[derive(Debug, Clone)]
pub struct Routing {
    /// Decoder layer index.
    pub layer: usize,
    /// [b, t]: rows of `experts` are tokens in batch-major order.
    pub batch: usize,
    pub seq: usize,
    pub top_k: usize,
    pub n_experts: usize,
    /// The chosen experts, `top_k` per token (in selection order).
    pub experts: Vec<u32>,
    /// [b*t, n_experts] routing affinities (sigmoid / softmax scores), differentiable in training.
    pub scores: Tensor,
}

impl Routing {
    /// Chosen experts of token `n`, sorted ascending.
    pub fn sorted(&self, n: usize) -> Vec<u32> {
        let mut v = self.experts[n * self.top_k..(n + 1) * self.top_k].to_vec();
        v.sort_unstable();
        v
    }

    /// Tokens routed to each expert, counting only tokens where `token_mask` (len b*t) is set.
    pub fn load(&self, token_mask: Option<&[bool]>) -> Vec<f32> {
        let mut load = vec![0f32; self.n_experts];
        for (n, chunk) in self.experts.chunks(self.top_k).enumerate() {
            if token_mask.is_none_or(|m| m[n]) {
                for &e in chunk {
                    load[e as usize] += 1.0;
                }
            }
        }
        load
    }
}

fn sigmoid(x: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
    match mode {
        Mode::Inference => candle_nn::ops::sigmoid(x),
        Mode::Train => (x.neg()?.exp()? + 1.0)?.recip(),
    }
}

/// Indices of the `k` largest values (ties: lower index first).
fn top_indices(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| {
        v[b].partial_cmp(&v[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

impl Moe {
    /// Choose `top_k` experts per token from scores [n, e] (plain values, no gradient).
    fn select(&self, scores: &[f32], bias: Option<&[f32]>, n: usize, e: usize) -> Vec<u32> {
        let per_group = e / self.groups;
        let mut out = Vec::with_capacity(n * self.top_k);
        for row in scores.chunks(e).take(n) {
            let choice: Vec<f32> = match (self.method, bias) {
                (TopkMethod::NoauxTc, Some(b)) => row.iter().zip(b).map(|(s, b)| s + b).collect(),
                _ => row.to_vec(),
            };
            let chosen = if self.method == TopkMethod::Greedy || self.groups == 1 {
                top_indices(&choice, self.top_k)
            } else {
                let group_score: Vec<f32> = choice
                    .chunks(per_group)
                    .map(|g| match self.method {
                        TopkMethod::NoauxTc => {
                            let top = top_indices(g, 2.min(per_group));
                            top.iter().map(|&i| g[i]).sum()
                        }
                        _ => g.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
                    })
                    .collect();
                let keep = top_indices(&group_score, self.topk_group);
                let mut masked = vec![f32::NEG_INFINITY; e];
                for gi in keep {
                    masked[gi * per_group..(gi + 1) * per_group]
                        .copy_from_slice(&choice[gi * per_group..(gi + 1) * per_group]);
                }
                top_indices(&masked, self.top_k)
            };
            out.extend(chosen.into_iter().map(|i| i as u32));
        }
        out
    }

    fn forward(
        &self,
        x: &Tensor,
        mode: Mode,
        all_experts: bool,
        trace: Option<&mut Vec<Routing>>,
    ) -> Result<Tensor> {
        let (b, t, hd) = x.dims3()?;
        let n = b * t;
        let e = self.experts.len();
        let x2 = x.reshape((n, hd))?;
        let logits = x2
            .to_dtype(DType::F32)?
            .matmul(&ops::param(&self.gate, mode).to_dtype(DType::F32)?.t()?)?;
        let scores = match self.scoring {
            Scoring::Sigmoid => sigmoid(&logits, mode)?,
            Scoring::Softmax => ops::softmax(&logits, mode)?,
        };
        let score_v: Vec<f32> = scores.detach().flatten_all()?.to_vec1()?;
        let bias_v: Option<Vec<f32>> = match &self.bias {
            Some(bt) => Some(bt.detach().to_dtype(DType::F32)?.to_vec1()?),
            None => None,
        };
        let chosen = self.select(&score_v, bias_v.as_deref(), n, e);
        let k = self.top_k;
        let idx = Tensor::from_vec(chosen.clone(), (n, k), x.device())?;
        let mut w = scores.gather(&idx, 1)?; // [n, k]
        if self.norm_topk {
            w = w.broadcast_div(&(w.sum_keepdim(1)? + 1e-20)?)?;
        }
        let w = (w * self.scaling)?.to_dtype(x.dtype())?;
        let w_flat = w.flatten_all()?;
        let mut routed = if all_experts {
            // Every expert over every token, weighted 0 where not chosen (benchmark baseline).
            let mut dense = vec![0f32; n * e];
            let wv: Vec<f32> = w_flat.detach().to_dtype(DType::F32)?.to_vec1()?;
            for (slot, &ex) in chosen.iter().enumerate() {
                dense[(slot / k) * e + ex as usize] = wv[slot];
            }
            let dense = Tensor::from_vec(dense, (n, e), x.device())?.to_dtype(x.dtype())?;
            let mut acc = Tensor::zeros((n, hd), x.dtype(), x.device())?;
            for (ei, expert) in self.experts.iter().enumerate() {
                acc = (acc
                    + expert
                        .forward(&x2, mode)?
                        .broadcast_mul(&dense.narrow(1, ei, 1)?)?)?;
            }
            acc
        } else {
            // Group tokens by expert; run only the experts some token chose.
            let mut per_expert: Vec<Vec<u32>> = vec![Vec::new(); e];
            for (slot, &ex) in chosen.iter().enumerate() {
                per_expert[ex as usize].push(slot as u32);
            }
            let mut outs = Vec::new();
            let mut rows = Vec::new();
            for (ei, slots) in per_expert.iter().enumerate() {
                if slots.is_empty() {
                    continue;
                }
                let toks: Vec<u32> = slots.iter().map(|s| s / k as u32).collect();
                let m = toks.len();
                let tok_t = Tensor::from_vec(toks.clone(), m, x.device())?;
                let slot_t = Tensor::from_vec(slots.clone(), m, x.device())?;
                let xs = x2.index_select(&tok_t, 0)?;
                let ys = self.experts[ei].forward(&xs, mode)?;
                let ws = w_flat.index_select(&slot_t, 0)?.unsqueeze(1)?;
                outs.push(ys.broadcast_mul(&ws)?);
                rows.extend(toks);
            }
            let zeros = Tensor::zeros((n, hd), x.dtype(), x.device())?;
            if outs.is_empty() {
                zeros
            } else {
                let ys = Tensor::cat(&outs, 0)?;
                let rows_n = rows.len();
                zeros.index_add(&Tensor::from_vec(rows, rows_n, x.device())?, &ys, 0)?
            }
        };
        if let Some(shared) = &self.shared {
            routed = (routed + shared.forward(&x2, mode)?)?;
        }
        if let Some(tr) = trace {
            tr.push(Routing {
                layer: self.layer,
                batch: b,
                seq: t,
                top_k: k,
                n_experts: e,
                experts: chosen,
                scores,
            });
        }
        Ok(routed.reshape((b, t, hd))?)
    }
}

enum Ffn {
    Dense(Mlp),
    Moe(Moe),
}

struct Layer {
    input_norm: Tensor,
    attn: Mla,
    post_norm: Tensor,
    ffn: Ffn,
}

impl Layer {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bias: &Tensor,
        mode: Mode,
        cache: Option<(&mut KvCache, usize)>,
        absorbed: bool,
        all_experts: bool,
        trace: Option<&mut Vec<Routing>>,
    ) -> Result<Tensor> {
        let eps = self.attn.eps;
        let n = ops::rms_norm(x, &ops::param(&self.input_norm, mode), eps, mode)?;
        let x = (x + self
            .attn
            .forward(&n, cos, sin, bias, mode, cache, absorbed)?)?;
        let n = ops::rms_norm(&x, &ops::param(&self.post_norm, mode), eps, mode)?;
        let y = match &self.ffn {
            Ffn::Dense(m) => m.forward(&n, mode)?,
            Ffn::Moe(m) => m.forward(&n, mode, all_experts, trace)?,
        };
        Ok((x + y)?)
    }
}

/// One multi-token-prediction module (DeepSeek-V3 `model.layers.{L + k}`): from the main
/// model's hidden state at position i and the embedding of token i+1, predict token i+2.
struct Mtp {
    enorm: Tensor,
    hnorm: Tensor,
    eh_proj: Linear,
    layer: Layer,
    head_norm: Tensor,
    /// `shared_head.head.weight`; None: the main lm_head.
    head: Option<Tensor>,
    /// `embed_tokens.weight` of the module; None: the main embedding.
    embed: Option<Tensor>,
}

pub struct DeepseekV3 {
    pub cfg: DeepseekV3Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    mtp: Vec<Mtp>,
    rope: Rope,
    /// The dense weights (quantized ones are not parameters).
    params: Params,
    /// Linear layers that run on a quantized weight (a GGUF file's blocks).
    quantized_linears: usize,
    run: RunOptions,
}

/// How forward passes compute (the same function either way): see
/// [`DeepseekV3::set_run_options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Which MLA form forward passes use.
    pub mla_form: MlaForm,
    /// Run every routed expert on every token (weights 0 where not chosen): the dense baseline
    /// for benchmarks. Same outputs, cost of all parameters.
    pub compute_all_experts: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            mla_form: MlaForm::Auto,
            compute_all_experts: false,
        }
    }
}

/// Dequantize a block-FP8 weight [o, i] with its scale_inv [ceil(o/b0), ceil(i/b1)].
pub fn dequantize_fp8(
    w: &Tensor,
    scale_inv: &Tensor,
    block: (usize, usize),
    dtype: DType,
) -> candle_core::Result<Tensor> {
    let (o, i) = w.dims2()?;
    let (no, ni) = scale_inv.dims2()?;
    let (b0, b1) = block;
    if no != o.div_ceil(b0) || ni != i.div_ceil(b1) {
        candle_core::bail!("scale_inv is [{no}, {ni}], expected [{}, {}] for a [{o}, {i}] weight in {b0}x{b1} blocks",
            o.div_ceil(b0), i.div_ceil(b1));
    }
    let s = scale_inv
        .to_dtype(DType::F32)?
        .reshape((no, 1, ni, 1))?
        .broadcast_as((no, b0, ni, b1))?
        .reshape((no * b0, ni * b1))?
        .narrow(0, 0, o)?
        .narrow(1, 0, i)?;
    (w.to_dtype(DType::F32)? * s)?.to_dtype(dtype)
}

struct Loader<'a> {
    p: Params,
    ckpt: &'a mut Checkpoint,
    dtype: DType,
    block: Option<(usize, usize)>,
    /// Linear layers built on a quantized weight.
    quantized: usize,
}

impl Loader<'_> {
    fn take(&mut self, name: &str, shape: impl Into<candle_core::Shape>) -> Result<Tensor> {
        let shape = shape.into();
        let t = self.ckpt.take(name, shape.clone())?;
        let t = if t.dtype() == DType::F8E4M3 {
            let block = self.block.ok_or_else(|| ModelError::Tensor {
                path: "checkpoint".into(),
                name: name.into(),
                message: "is FP8 but config.json has no quantization_config".into(),
            })?;
            let scale_name = format!("{}_scale_inv", name);
            let (o, i) = shape.dims2()?;
            let scale = self
                .ckpt
                .take(&scale_name, (o.div_ceil(block.0), i.div_ceil(block.1)))?;
            dequantize_fp8(&t, &scale, block, self.dtype)?
        } else {
            t
        };
        self.p.insert(name, t)
    }

    /// A linear layer: on the checkpoint's quantized weight when it holds one (inference
    /// only; not a parameter), else on a dense one.
    fn linear(&mut self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let wname = format!("{name}.weight");
        let quantized = self.ckpt.take_qmat(&wname, (out, inp))?;
        let bias = if bias {
            Some(self.take(&format!("{name}.bias"), out)?)
        } else {
            None
        };
        match quantized {
            Some(q) => {
                self.quantized += 1;
                Ok(Linear::quantized(Arc::new(q), (out, inp), bias))
            }
            None => Ok(Linear::new(self.take(&wname, (out, inp))?, bias)),
        }
    }

    /// A linear layer whose weight is also used as a matrix (kv_b in the absorbed MLA form):
    /// always dense.
    fn dense_linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear::new(
            self.take(&format!("{name}.weight"), (out, inp))?,
            None,
        ))
    }

    fn mlp(&mut self, pre: &str, h: usize, inter: usize) -> Result<Mlp> {
        Ok(Mlp {
            gate: self.linear(&format!("{pre}.gate_proj"), inter, h, false)?,
            up: self.linear(&format!("{pre}.up_proj"), inter, h, false)?,
            down: self.linear(&format!("{pre}.down_proj"), h, inter, false)?,
        })
    }

    fn layer(&mut self, cfg: &DeepseekV3Config, i: usize, moe: bool, scale: f64) -> Result<Layer> {
        let pre = format!("model.layers.{i}");
        let (h, nh) = (cfg.hidden_size, cfg.num_attention_heads);
        let qk = cfg.qk_head_dim();
        let ab = cfg.attention_bias;
        let q = match cfg.q_lora_rank {
            Some(r) => QProj::LowRank {
                a: self.linear(&format!("{pre}.self_attn.q_a_proj"), r, h, ab)?,
                norm: self.take(&format!("{pre}.self_attn.q_a_layernorm.weight"), r)?,
                b: self.linear(&format!("{pre}.self_attn.q_b_proj"), nh * qk, r, false)?,
            },
            None => {
                QProj::Plain(self.linear(&format!("{pre}.self_attn.q_proj"), nh * qk, h, false)?)
            }
        };
        let r = cfg.kv_lora_rank;
        let attn = Mla {
            q,
            kv_a: self.linear(
                &format!("{pre}.self_attn.kv_a_proj_with_mqa"),
                r + cfg.qk_rope_head_dim,
                h,
                ab,
            )?,
            kv_norm: self.take(&format!("{pre}.self_attn.kv_a_layernorm.weight"), r)?,
            kv_b: self.dense_linear(
                &format!("{pre}.self_attn.kv_b_proj"),
                nh * (cfg.qk_nope_head_dim + cfg.v_head_dim),
                r,
            )?,
            o: self.linear(
                &format!("{pre}.self_attn.o_proj"),
                h,
                nh * cfg.v_head_dim,
                ab,
            )?,
            heads: nh,
            nope: cfg.qk_nope_head_dim,
            rope_dim: cfg.qk_rope_head_dim,
            v_dim: cfg.v_head_dim,
            rank: r,
            scale,
            interleave: cfg.rope_interleave.unwrap_or(true),
            eps: cfg.rms_norm_eps,
        };
        let ffn = if moe {
            let e = cfg.n_experts();
            let mi = cfg.moe_intermediate_size.unwrap_or(0);
            let gate = self.take(&format!("{pre}.mlp.gate.weight"), (e, h))?;
            let bias_name = format!("{pre}.mlp.gate.e_score_correction_bias");
            let bias = if cfg.topk_method() == TopkMethod::NoauxTc {
                Some(self.take(&bias_name, e)?)
            } else {
                None
            };
            let mut experts = Vec::with_capacity(e);
            for ei in 0..e {
                experts.push(self.mlp(&format!("{pre}.mlp.experts.{ei}"), h, mi)?);
            }
            let ns = cfg.n_shared_experts.unwrap_or(0);
            let shared = if ns > 0 {
                Some(self.mlp(&format!("{pre}.mlp.shared_experts"), h, mi * ns)?)
            } else {
                None
            };
            Ffn::Moe(Moe {
                layer: i,
                gate,
                bias,
                bias_name,
                experts,
                shared,
                top_k: cfg.top_k(),
                groups: cfg.groups(),
                topk_group: cfg.topk_group.unwrap_or(1).max(1),
                scoring: cfg.scoring(),
                method: cfg.topk_method(),
                norm_topk: cfg.norm_topk_prob.unwrap_or(false),
                scaling: cfg.routed_scaling_factor.unwrap_or(1.0),
            })
        } else {
            Ffn::Dense(self.mlp(&format!("{pre}.mlp"), h, cfg.intermediate_size)?)
        };
        Ok(Layer {
            input_norm: self.take(&format!("{pre}.input_layernorm.weight"), h)?,
            attn,
            post_norm: self.take(&format!("{pre}.post_attention_layernorm.weight"), h)?,
            ffn,
        })
    }
}

/// Output of [`DeepseekV3::forward_full`].
pub struct ForwardOutput {
    /// [b, t, vocab] (or [b, 1, vocab] for `LogitsFor::Last`).
    pub logits: Tensor,
    /// [b, t, hidden] final hidden states after the final norm: the MTP input (as transformers'
    /// `MtpCandidateGenerator` and vLLM's DeepSeek MTP take it).
    pub hidden: Tensor,
    /// One entry per MoE layer.
    pub routing: Vec<Routing>,
}

impl DeepseekV3 {
    pub fn load(cfg: DeepseekV3Config, ckpt: &mut Checkpoint, device: &Device) -> Result<Self> {
        let h = cfg.hidden_size;
        // The checkpoint was read in the compute dtype (FP8 weights excepted): the embedding's.
        let embed = ckpt.take("model.embed_tokens.weight", (cfg.vocab_size, h))?;
        let mut l = Loader {
            p: Params::default(),
            ckpt,
            dtype: embed.dtype(),
            block: cfg.fp8_block(),
            quantized: 0,
        };
        let embed = l.p.insert("model.embed_tokens.weight", embed)?;
        let scale = cfg.softmax_scale();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            layers.push(l.layer(&cfg, i, cfg.is_moe_layer(i), scale)?);
        }
        let norm = l.take("model.norm.weight", h)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(l.take("lm_head.weight", (cfg.vocab_size, h))?)
        };
        // MTP modules, when the checkpoint has them (HF's own exports drop them).
        let mut mtp = Vec::new();
        for k in 0..cfg.num_nextn_predict_layers.unwrap_or(0) {
            let i = cfg.num_hidden_layers + k;
            let pre = format!("model.layers.{i}");
            if !l.ckpt.contains(&format!("{pre}.eh_proj.weight")) {
                tracing::warn!("config.json names {} MTP module(s) but the checkpoint has no {pre}.eh_proj.weight; MTP disabled",
                    cfg.num_nextn_predict_layers.unwrap_or(0));
                break;
            }
            let enorm = l.take(&format!("{pre}.enorm.weight"), h)?;
            let hnorm = l.take(&format!("{pre}.hnorm.weight"), h)?;
            let eh_proj = l.linear(&format!("{pre}.eh_proj"), h, 2 * h, false)?;
            let layer = l.layer(&cfg, i, cfg.n_experts() > 0, scale)?;
            let head_norm = l.take(&format!("{pre}.shared_head.norm.weight"), h)?;
            let head_name = format!("{pre}.shared_head.head.weight");
            let head = if l.ckpt.contains(&head_name) {
                Some(l.take(&head_name, (cfg.vocab_size, h))?)
            } else {
                None
            };
            let emb_name = format!("{pre}.embed_tokens.weight");
            let embed = if l.ckpt.contains(&emb_name) {
                Some(l.take(&emb_name, (cfg.vocab_size, h))?)
            } else {
                None
            };
            mtp.push(Mtp {
                enorm,
                hnorm,
                eh_proj,
                layer,
                head_norm,
                head,
                embed,
            });
        }
        let rope_cfg = cfg.rope.clone().unwrap_or(RopeConfig {
            theta: 10000.0,
            scaling: RopeScaling::None,
        });
        let rope = Rope::new(&rope_cfg, cfg.qk_rope_head_dim, device)?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            mtp,
            rope,
            params: l.p,
            quantized_linears: l.quantized,
            run: RunOptions::default(),
        })
    }

    /// Load a model directory directly (as [`crate::Model::load`], keeping the concrete type).
    pub fn load_dir(dir: &Path, opts: &crate::LoadOptions) -> Result<Self> {
        let config_path = dir.join("config.json");
        let raw = crate::config::read_config(&config_path)?;
        let cfg = DeepseekV3Config::from_json(&raw, &config_path)?;
        let mut ckpt = Checkpoint::read_dir(dir, opts.dtype, &opts.device)?;
        Self::load(cfg, &mut ckpt, &opts.device)
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn num_layers(&self) -> usize {
        self.cfg.num_hidden_layers
    }

    /// How many linear layers hold their weight quantized (0 for a dense model): such a
    /// model runs inference only, and its [`Self::params`] lack those weights.
    pub fn run_options(&self) -> RunOptions {
        self.run
    }

    /// Choose how forward passes compute (MLA form, all experts for a dense baseline).
    pub fn set_run_options(&mut self, run: RunOptions) {
        self.run = run;
    }

    pub fn quantized_linears(&self) -> usize {
        self.quantized_linears
    }

    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    pub fn num_mtp(&self) -> usize {
        self.mtp.len()
    }

    /// Names of the parameters that gradients never reach: the routing bias (moved by
    /// [`Self::update_routing_bias`]) and the MTP modules (not in the main loss).
    pub fn is_gradient_free(&self, name: &str) -> bool {
        name.ends_with("e_score_correction_bias")
            || name
                .strip_prefix("model.layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i >= self.cfg.num_hidden_layers)
    }

    /// KV-cache bytes per token with the compressed (MLA) cache, over all layers.
    pub fn cache_bytes_per_token(&self) -> usize {
        let size = self.embed.dtype().size_in_bytes();
        self.cfg.num_hidden_layers * (self.cfg.kv_lora_rank + self.cfg.qk_rope_head_dim) * size
    }

    /// KV-cache bytes per token if full keys and values of every head were cached.
    pub fn naive_cache_bytes_per_token(&self) -> usize {
        let size = self.embed.dtype().size_in_bytes();
        let c = &self.cfg;
        c.num_hidden_layers * c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim) * size
    }

    pub fn forward(&self, input: &ForwardInput, cache: Option<&mut KvCache>) -> Result<Tensor> {
        Ok(self.forward_full(input, cache, false)?.logits)
    }

    fn absorbed(&self, mode: Mode, t: usize) -> bool {
        match self.run.mla_form {
            MlaForm::Plain => false,
            MlaForm::Absorbed => true,
            MlaForm::Auto => mode == Mode::Inference && t <= 8,
        }
    }

    /// Logits, final hidden states and (when `trace`) the routing of every MoE layer.
    pub fn forward_full(
        &self,
        input: &ForwardInput,
        mut cache: Option<&mut KvCache>,
        trace: bool,
    ) -> Result<ForwardOutput> {
        let mode = input.mode;
        let (b, t) = input.input_ids.dims2()?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        let bias = crate::attention_bias(input.key_mask, b, t, past, input.input_ids.device())?;
        let (cos, sin) = self.rope.cos_sin(input.position_ids)?;
        let ids = input.input_ids.flatten_all()?;
        let mut x = ops::param(&self.embed, mode)
            .index_select(&ids, 0)?
            .reshape((b, t, self.cfg.hidden_size))?;
        let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
        let bias = bias.to_dtype(x.dtype())?;
        let absorbed = self.absorbed(mode, t);
        let mut routing = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            let tr = if trace { Some(&mut routing) } else { None };
            x = layer.forward(
                &x,
                &cos,
                &sin,
                &bias,
                mode,
                c,
                absorbed,
                self.run.compute_all_experts,
                tr,
            )?;
        }
        let hidden = ops::rms_norm(
            &x,
            &ops::param(&self.norm, mode),
            self.cfg.rms_norm_eps,
            mode,
        )?;
        let x = input.logits.select(&hidden)?;
        let logits = self.head().forward(&x, mode)?;
        Ok(ForwardOutput {
            logits,
            hidden,
            routing,
        })
    }

    fn head(&self) -> Linear {
        Linear::new(
            self.lm_head.clone().unwrap_or_else(|| self.embed.clone()),
            None,
        )
    }

    /// The experts chosen per token in each MoE layer (inference): (layer, [b*t][top_k] sorted).
    pub fn chosen_experts(&self, input: &ForwardInput) -> Result<Vec<(usize, Vec<Vec<u32>>)>> {
        let out = self.forward_full(input, None, true)?;
        Ok(out
            .routing
            .iter()
            .map(|r| (r.layer, (0..r.batch * r.seq).map(|n| r.sorted(n)).collect()))
            .collect())
    }

    fn moe_layers(&self) -> impl Iterator<Item = &Moe> {
        self.layers.iter().filter_map(|l| match &l.ffn {
            Ffn::Moe(m) => Some(m),
            Ffn::Dense(_) => None,
        })
    }

    /// The `e_score_correction_bias` of MoE layer `layer` (the auxiliary-loss-free balancing
    /// bias, DeepSeek-V3 §2.1.2; see `aha_train::moe`), with its expert count.
    pub fn routing_bias(&self, layer: usize) -> Option<(&candle_core::Var, usize)> {
        let moe = self.moe_layers().find(|m| m.layer == layer)?;
        Some((self.params.get(&moe.bias_name)?, moe.experts.len()))
    }

    /// Logits [b, t, vocab] of MTP module `k` for the token after next, from the main model's
    /// final (normed) hidden states `hidden` [b, t, h] at positions i and the tokens `next_ids`
    /// [b, t] at positions i+1. The module attends causally over its own cache; rope only sees
    /// relative positions, so `position_ids` may be those of i or of i+1 (transformers uses
    /// i+1, vLLM i). Also returns the module's output hidden states (pre head-norm).
    pub fn mtp_forward(
        &self,
        k: usize,
        hidden: &Tensor,
        next_ids: &Tensor,
        position_ids: &Tensor,
        key_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<(Tensor, Tensor)> {
        let m = self
            .mtp
            .get(k)
            .ok_or_else(|| ModelError::Invalid(format!("no MTP module {k}")))?;
        let mode = Mode::Inference;
        let (b, t) = next_ids.dims2()?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        let bias = crate::attention_bias(key_mask, b, t, past, next_ids.device())?;
        let (cos, sin) = self.rope.cos_sin(position_ids)?;
        let emb = m.embed.as_ref().unwrap_or(&self.embed);
        let e =
            emb.index_select(&next_ids.flatten_all()?, 0)?
                .reshape((b, t, self.cfg.hidden_size))?;
        let (cos, sin) = (cos.to_dtype(e.dtype())?, sin.to_dtype(e.dtype())?);
        let bias = bias.to_dtype(e.dtype())?;
        let eps = self.cfg.rms_norm_eps;
        let x = Tensor::cat(
            &[
                &ops::rms_norm(&e, &m.enorm, eps, mode)?,
                &ops::rms_norm(hidden, &m.hnorm, eps, mode)?,
            ],
            2,
        )?;
        let x = m.eh_proj.forward(&x, mode)?;
        let c = cache.map(|c| (c, 0));
        let x = m.layer.forward(
            &x,
            &cos,
            &sin,
            &bias,
            mode,
            c,
            self.absorbed(mode, t),
            false,
            None,
        )?;
        let n = ops::rms_norm(&x, &m.head_norm, eps, mode)?;
        let head = match &m.head {
            Some(w) => Linear::new(w.clone(), None),
            None => self.head(),
        };
        Ok((head.forward(&n, mode)?, x))
    }
}
