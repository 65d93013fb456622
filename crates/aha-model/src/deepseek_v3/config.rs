//! `config.json` of DeepSeek-V3 / R1, with the Hub and transformers-5 spellings.

use super::*;

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
