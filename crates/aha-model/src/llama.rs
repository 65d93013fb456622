//! The dense decoder of Llama and Qwen2, the architectures of the R1-Distill models
//! (Qwen2 = Llama with biases on the q, k and v projections).
//!
//! x = embed(ids)
//! for each layer:  x = x + o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x))))
//!                  x = x + down(silu(gate(n2(x))) * up(n2(x)))
//! logits = lm_head(norm(x))

use crate::config::{parse_rope, RopeConfig};
use crate::error::{ModelError, Result};
use crate::fused;
use crate::kv_cache::KvCache;
use crate::lora::{self, Adapter, LoraConfig};
use crate::ops::{self, Embedding, Linear, Mlp, Mode, Weight};
use crate::rope::Rope;
use crate::weights::{Checkpoint, Params};
use crate::ForwardInput;
use candle_core::{Device, Tensor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Per-frequency rope divisors (llama.cpp's GGUF form of Llama 3.1 rope scaling).
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// `config.json` of `LlamaForCausalLM` / `Qwen2ForCausalLM`; field names as HF's.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's switch for q/k/v/o biases; Qwen2 always has q/k/v biases.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(skip)]
    pub rope: Option<RopeConfig>,
}

fn default_act() -> String {
    "silu".into()
}

impl LlamaConfig {
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
            cfg.head_dim.is_some() || cfg.hidden_size.is_multiple_of(cfg.num_attention_heads),
            "hidden_size must be divisible by num_attention_heads",
        )?;
        check(
            cfg.num_attention_heads.is_multiple_of(cfg.kv_heads()),
            "num_attention_heads must be a multiple of num_key_value_heads",
        )?;
        check(
            cfg.head_dim().is_multiple_of(2),
            "head_dim must be even for rope",
        )?;
        Ok(cfg)
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads
            .unwrap_or(self.num_attention_heads)
            .max(1)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }
}

#[derive(Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// Which keys each query sees.
enum Keys {
    /// An additive bias [b, 1, 1, t, T].
    Bias(Tensor),
    /// Sequences packed into one row, each causal within itself (training on f32 CPU only:
    /// [`fused::attention_packed`]).
    Packed(fused::Packed),
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        keys: &Keys,
        mode: Mode,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let split = |y: Tensor, h: usize| y.reshape((b, t, h, self.head_dim))?.transpose(1, 2);
        let [q, k, v] = Linear::forward_all([&self.q, &self.k, &self.v], x, mode)?;
        let q = split(q, self.heads)?;
        let k = split(k, self.kv_heads)?;
        let v = split(v, self.kv_heads)?.contiguous()?;
        let q = Rope::apply(&q, cos, sin, mode)?;
        let k = Rope::apply(&k, cos, sin, mode)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?,
            None => (k, v),
        };
        let out = match keys {
            Keys::Packed(packed) => fused::attention_packed(&q, &k, &v, packed, self.kv_heads)?,
            Keys::Bias(bias)
                if mode == Mode::Train && [&q, &k, &v, bias].into_iter().all(fused::supported) =>
            {
                // The same products as below, in one training node.
                fused::attention(&q, &k, &v, bias, self.kv_heads)?
            }
            Keys::Bias(bias) => attend(&q, &k, &v, bias, self.kv_heads, mode)?
                .transpose(1, 2)?
                .reshape((b, t, self.heads * self.head_dim))?,
        };
        Ok(self.o.forward(&out, mode)?)
    }
}

/// Grouped-query attention without copying keys: the n_rep query heads that share a
/// kv head are stacked along the query axis. q [b, h, t, d], k/v [b, kv, T, d],
/// bias [b, 1, 1, t, T] additive (0 or MASK_VALUE).
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    kv_heads: usize,
    mode: Mode,
) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    // Few queries per sequence (decoding): one pass over the cache, no copies.
    if mode == Mode::Inference && t <= 16 {
        if let Some(out) = ops::attend_few(q, k, v, bias, kv_heads)? {
            return Ok(out);
        }
    }
    let total = k.dim(2)?;
    let n_rep = h / kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    // Long prompts: blocks of queries, each against the keys up to the last one the bias lets
    // it see (a causal prompt of 512 skips 37% of the products).
    if mode == Mode::Inference && t >= 2 * QUERY_BLOCK && bias.dims() == [b, 1, 1, t, total] {
        if let Some(out) = ops::attend_prefill(q, k, v, bias, kv_heads)? {
            return Ok(out);
        }
        return attend_blocks(q, k, v, bias, kv_heads, scale, mode);
    }
    let q = (q.contiguous()?.reshape((b, kv_heads, n_rep * t, d))? * scale)?;
    let scores = q.matmul(&k.t()?)?.reshape((b, kv_heads, n_rep, t, total))?;
    let scores = scores.broadcast_add(bias)?;
    let probs = ops::softmax(&scores, mode)?.reshape((b, kv_heads, n_rep * t, total))?;
    probs.matmul(&v.contiguous()?)?.reshape((b, h, t, d))
}

/// Queries per block of `attend_blocks`.
const QUERY_BLOCK: usize = 128;

/// `attend` by blocks of `QUERY_BLOCK` queries, each block against keys `0 .. end`, `end` past
/// the last key the bias leaves visible to any of its queries (the rest add exact zeros):
/// long prompts on CPUs without the AVX-512 prefill kernel. Public for its test.
#[doc(hidden)]
pub fn attend_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    kv_heads: usize,
    scale: f64,
    mode: Mode,
) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let total = k.dim(2)?;
    let n_rep = h / kv_heads;
    let bias_rows = bias.flatten_all()?.to_vec1::<f32>()?;
    let visible_end = |q0: usize, q1: usize| {
        (0..b)
            .flat_map(|bi| (q0..q1).map(move |qi| (bi * t + qi) * total))
            .map(|row| ops::visible_end(&bias_rows[row..][..total]))
            .fold(1, usize::max)
    };
    let q = (q.contiguous()?.reshape((b, kv_heads, n_rep, t, d))? * scale)?;
    let mut outs = Vec::with_capacity(t.div_ceil(QUERY_BLOCK));
    for q0 in (0..t).step_by(QUERY_BLOCK) {
        let tb = QUERY_BLOCK.min(t - q0);
        let end = visible_end(q0, q0 + tb);
        let qb = q
            .narrow(3, q0, tb)?
            .contiguous()?
            .reshape((b, kv_heads, n_rep * tb, d))?;
        let scores = qb.matmul(&k.narrow(2, 0, end)?.t()?)?;
        let scores = scores.reshape((b, kv_heads, n_rep, tb, end))?;
        let scores = scores.broadcast_add(&bias.narrow(3, q0, tb)?.narrow(4, 0, end)?)?;
        let probs = ops::softmax(&scores, mode)?.reshape((b, kv_heads, n_rep * tb, end))?;
        let out = probs.matmul(&v.narrow(2, 0, end)?.contiguous()?)?;
        outs.push(out.reshape((b, kv_heads, n_rep, tb, d))?);
    }
    Tensor::cat(&outs, 3)?.reshape((b, h, t, d))
}

#[derive(Clone)]
struct Layer {
    input_norm: Tensor,
    attn: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

#[derive(Clone)]
pub struct Llama {
    pub cfg: LlamaConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    /// The embedding's own weight when tied.
    lm_head: Linear,
    rope: Rope,
    params: Params,
    /// LoRA adapters on some of the linear layers; the base weights are frozen while present.
    adapter: Option<Adapter>,
}

impl Llama {
    /// Build from a checkpoint: dense weights become parameters; weights the checkpoint holds
    /// quantized (a GGUF file loaded by [`crate::Model::load`]) stay in their blocks, for
    /// inference. A `rope_freqs.weight` tensor (GGUF Llama 3.1) divides the rope frequencies.
    pub fn load(cfg: LlamaConfig, ckpt: &mut Checkpoint, device: &Device) -> Result<Self> {
        let mut p = Params::default();
        let (h, hd, nh, kvh) = (
            cfg.hidden_size,
            cfg.head_dim(),
            cfg.num_attention_heads,
            cfg.kv_heads(),
        );
        let linear = |p: &mut Params,
                      ckpt: &mut Checkpoint,
                      name: &str,
                      out: usize,
                      inp: usize,
                      bias: bool|
         -> Result<Linear> {
            let wname = format!("{name}.weight");
            let bias = if bias {
                Some(p.take(ckpt, &format!("{name}.bias"), out)?)
            } else {
                None
            };
            Ok(match ckpt.take_qmat(&wname, (out, inp))? {
                Some(q) => Linear::quantized(Arc::new(q), (out, inp), bias),
                None => Linear::new(p.take(ckpt, &wname, (out, inp))?, bias),
            })
        };
        let embed_name = "model.embed_tokens.weight";
        let embed = match ckpt.take_quantized(embed_name, (cfg.vocab_size, h))? {
            Some(q) => Embedding::Quantized(Arc::new(q)),
            None => Embedding::Dense(p.take(ckpt, embed_name, (cfg.vocab_size, h))?),
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let pre = format!("model.layers.{i}");
            let qkv_bias = cfg.qkv_bias();
            let attn = Attention {
                q: linear(
                    &mut p,
                    ckpt,
                    &format!("{pre}.self_attn.q_proj"),
                    nh * hd,
                    h,
                    qkv_bias,
                )?,
                k: linear(
                    &mut p,
                    ckpt,
                    &format!("{pre}.self_attn.k_proj"),
                    kvh * hd,
                    h,
                    qkv_bias,
                )?,
                v: linear(
                    &mut p,
                    ckpt,
                    &format!("{pre}.self_attn.v_proj"),
                    kvh * hd,
                    h,
                    qkv_bias,
                )?,
                o: linear(
                    &mut p,
                    ckpt,
                    &format!("{pre}.self_attn.o_proj"),
                    h,
                    nh * hd,
                    cfg.attention_bias,
                )?,
                heads: nh,
                kv_heads: kvh,
                head_dim: hd,
            };
            let mlp = Mlp {
                gate: linear(
                    &mut p,
                    ckpt,
                    &format!("{pre}.mlp.gate_proj"),
                    cfg.intermediate_size,
                    h,
                    cfg.mlp_bias,
                )?,
                up: linear(
                    &mut p,
                    ckpt,
                    &format!("{pre}.mlp.up_proj"),
                    cfg.intermediate_size,
                    h,
                    cfg.mlp_bias,
                )?,
                down: linear(
                    &mut p,
                    ckpt,
                    &format!("{pre}.mlp.down_proj"),
                    h,
                    cfg.intermediate_size,
                    cfg.mlp_bias,
                )?,
            };
            layers.push(Layer {
                input_norm: p.take(ckpt, &format!("{pre}.input_layernorm.weight"), h)?,
                attn,
                post_norm: p.take(ckpt, &format!("{pre}.post_attention_layernorm.weight"), h)?,
                mlp,
            });
        }
        let norm = p.take(ckpt, "model.norm.weight", h)?;
        // Some tied checkpoints still store lm_head; an untied one must.
        let lm_head = if cfg.tie_word_embeddings {
            embed.as_head(ckpt.kernels())?
        } else {
            linear(&mut p, ckpt, "lm_head", cfg.vocab_size, h, false)?
        };
        let rope_cfg = cfg.rope.clone().unwrap_or(RopeConfig {
            theta: 10000.0,
            scaling: crate::config::RopeScaling::None,
        });
        let mut rope = Rope::new(&rope_cfg, hd, device)?;
        if ckpt.contains(ROPE_FREQS) {
            rope = rope.divided_by(&ckpt.take(ROPE_FREQS, hd / 2)?)?;
        }
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            rope,
            params: p,
            adapter: None,
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn forward(&self, input: &ForwardInput, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let x = self.hidden(input, cache)?;
        Ok(self.lm_head.forward(&x, input.mode)?)
    }

    /// The final norm's output [b, t', hidden] at the positions `input.logits` keeps: what
    /// the output head reads.
    pub fn hidden(&self, input: &ForwardInput, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let mode = input.mode;
        // With an adapter the base weights are constants (no gradient) even when training.
        let frozen = self.adapter.is_some();
        let base = if frozen { Mode::Inference } else { mode };
        let (b, t) = input.input_ids.dims2()?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        let keys = match input.segments {
            Some(lens) if mode == Mode::Train && fused::supported(&self.norm) => {
                crate::check_segments(input, past)?;
                Keys::Packed(fused::Packed::new(lens, input.input_ids.device())?)
            }
            _ => Keys::Bias(crate::input_bias(input, past)?),
        };
        let (cos, sin) = self.rope.cos_sin(input.position_ids)?;
        let ids = input.input_ids.flatten_all()?;
        let mut x = self
            .embed
            .forward(&ids, base)?
            .reshape((b, t, self.cfg.hidden_size))?;
        let eps = self.cfg.rms_norm_eps;
        for (i, layer) in self.layers.iter().enumerate() {
            let n = ops::rms_norm(&x, &ops::param(&layer.input_norm, base), eps, mode)?;
            let c = cache.as_deref_mut().map(|c| (c, i));
            x = (x + layer.attn.forward(&n, &cos, &sin, &keys, mode, c)?)?;
            let n = ops::rms_norm(&x, &ops::param(&layer.post_norm, base), eps, mode)?;
            x = (x + layer.mlp.forward(&n, mode)?)?;
        }
        let x = input.logits.select(&x)?;
        Ok(ops::rms_norm(&x, &ops::param(&self.norm, base), eps, mode)?)
    }

    pub fn lm_head(&self) -> &Linear {
        &self.lm_head
    }

    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// Linear layers (output head included) that hold GGUF blocks: inference only.
    pub fn quantized_linears(&self) -> usize {
        let head = self.lm_head.is_quantized() as usize;
        head + self
            .linears()
            .iter()
            .filter(|(_, l)| l.is_quantized())
            .count()
    }

    pub fn num_layers(&self) -> usize {
        self.cfg.num_hidden_layers
    }

    /// Every adaptable linear layer with its module path (`model.layers.0.self_attn.q_proj`).
    fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::with_capacity(self.layers.len() * 7);
        for (i, l) in self.layers.iter_mut().enumerate() {
            let pre = format!("model.layers.{i}");
            let a = &mut l.attn;
            out.push((format!("{pre}.self_attn.q_proj"), &mut a.q));
            out.push((format!("{pre}.self_attn.k_proj"), &mut a.k));
            out.push((format!("{pre}.self_attn.v_proj"), &mut a.v));
            out.push((format!("{pre}.self_attn.o_proj"), &mut a.o));
            let m = &mut l.mlp;
            out.push((format!("{pre}.mlp.gate_proj"), &mut m.gate));
            out.push((format!("{pre}.mlp.up_proj"), &mut m.up));
            out.push((format!("{pre}.mlp.down_proj"), &mut m.down));
        }
        out
    }

    fn linears(&self) -> Vec<(String, &Linear)> {
        let mut out = Vec::with_capacity(self.layers.len() * 7);
        for (i, l) in self.layers.iter().enumerate() {
            let pre = format!("model.layers.{i}");
            let a = &l.attn;
            out.push((format!("{pre}.self_attn.q_proj"), &a.q));
            out.push((format!("{pre}.self_attn.k_proj"), &a.k));
            out.push((format!("{pre}.self_attn.v_proj"), &a.v));
            out.push((format!("{pre}.self_attn.o_proj"), &a.o));
            let m = &l.mlp;
            out.push((format!("{pre}.mlp.gate_proj"), &m.gate));
            out.push((format!("{pre}.mlp.up_proj"), &m.up));
            out.push((format!("{pre}.mlp.down_proj"), &m.down));
        }
        out
    }

    /// The LoRA adapter, if one is attached.
    pub fn adapter(&self) -> Option<&Adapter> {
        self.adapter.as_ref()
    }

    /// Attach fresh adapters (A random, B zero: the model computes what it computed before).
    pub fn add_adapter(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        self.check_no_adapter()?;
        let adapter = Adapter::attach_new(self.linears_mut(), cfg, seed)?;
        self.set_adapter(adapter);
        Ok(())
    }

    /// Attach adapters from tensors by their PEFT names (`path` for error messages).
    pub fn load_adapter(
        &mut self,
        cfg: &LoraConfig,
        tensors: HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<()> {
        self.check_no_adapter()?;
        let adapter = Adapter::attach_loaded(self.linears_mut(), cfg, tensors, path)?;
        self.set_adapter(adapter);
        Ok(())
    }

    /// Attach adapters from tensors, replacing the attached ones; on error the old adapter
    /// stays attached.
    pub fn replace_adapter(
        &mut self,
        cfg: &LoraConfig,
        tensors: HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<()> {
        let old: Vec<Option<ops::LoraWeights>> = self
            .linears_mut()
            .into_iter()
            .map(|(_, l)| l.lora.take())
            .collect();
        match Adapter::attach_loaded(self.linears_mut(), cfg, tensors, path) {
            Ok(adapter) => {
                self.set_adapter(adapter);
                Ok(())
            }
            Err(e) => {
                for ((_, l), w) in self.linears_mut().into_iter().zip(old) {
                    l.lora = w;
                }
                Err(e)
            }
        }
    }

    /// Detach the adapter (not merged); returns whether one was attached.
    pub fn remove_adapter(&mut self) -> bool {
        if self.adapter.take().is_none() {
            return false;
        }
        for (_, l) in self.linears_mut() {
            l.lora = None;
            l.frozen = false;
        }
        self.lm_head.frozen = false;
        true
    }

    fn check_no_adapter(&self) -> Result<()> {
        if self.adapter.is_some() {
            return Err(ModelError::Invalid(
                "the model already has a LoRA adapter (merge it first)".into(),
            ));
        }
        Ok(())
    }

    fn set_adapter(&mut self, adapter: Adapter) {
        for (_, l) in self.linears_mut() {
            l.frozen = true;
        }
        self.lm_head.frozen = true;
        self.adapter = Some(adapter);
    }

    /// Fold the adapter into the base weights (W += scale B A) and drop it.
    pub fn merge_adapter(&mut self) -> Result<()> {
        let Some(_) = self.adapter.take() else {
            return Ok(());
        };
        let merged = lora::merged_weights(&self.linears())?;
        for (name, w) in merged {
            let var = self
                .params
                .get(&name)
                .ok_or_else(|| ModelError::Invalid(format!("merge: no base parameter {name}")))?;
            var.set(&w)?;
        }
        for (_, l) in self.linears_mut() {
            l.lora = None;
            l.frozen = false;
        }
        self.lm_head.frozen = false;
        Ok(())
    }

    /// Base weights with the adapter folded in, by HF name (for saving a merged model); the
    /// model itself is unchanged.
    pub fn merged_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut tensors = self.params.tensors();
        for (name, w) in lora::merged_weights(&self.linears())? {
            tensors.insert(name, w);
        }
        Ok(tensors)
    }

    /// A copy that shares the (frozen) base weights and owns a deep copy of the adapter; a
    /// full deep copy without an adapter.
    pub fn fork(&self) -> Result<Self> {
        let mut m = self.clone();
        match &self.adapter {
            Some(a) => {
                let cfg = a.config.clone();
                m.adapter = Some(Adapter::fork(m.linears_mut(), cfg)?);
            }
            None => {
                let mut p = Params::default();
                let mut copies = HashMap::new();
                for (name, var) in self.params.iter() {
                    let t = p.insert(name, var.as_tensor().detach().copy()?)?;
                    copies.insert(var.as_tensor().id(), t);
                }
                let remap = |t: &mut Tensor| {
                    if let Some(c) = copies.get(&t.id()) {
                        *t = c.clone();
                    }
                };
                if let Embedding::Dense(w) = &mut m.embed {
                    remap(w);
                }
                remap(&mut m.norm);
                if let Weight::Dense(w) = &mut m.lm_head.weight {
                    remap(w);
                }
                for l in m.layers.iter_mut() {
                    remap(&mut l.input_norm);
                    remap(&mut l.post_norm);
                }
                for (_, l) in m.linears_mut() {
                    if let Weight::Dense(w) = &mut l.weight {
                        remap(w);
                    }
                    if let Some(b) = l.bias.as_mut() {
                        remap(b);
                    }
                }
                m.params = p;
            }
        }
        Ok(m)
    }
}
