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

mod config;
mod load;
mod mla;
mod moe;
mod mtp;

pub use config::*;
pub use load::dequantize_fp8;
use load::Loader;
pub use mla::MlaForm;
use mla::{Mla, QProj};
use moe::Moe;
pub use moe::Routing;
use mtp::Mtp;

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
    /// `aha_train::moe::update_routing_bias`) and the MTP modules (not in the main loss).
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
        let bias = crate::input_bias(input, past)?;
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

    /// The experts chosen per token in each MoE layer (inference): (layer, `[b*t][top_k]` sorted).
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
}
