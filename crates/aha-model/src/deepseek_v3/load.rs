//! Building the model from a checkpoint: block-FP8 dequantization and the layer loader.

use super::*;

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

pub(super) struct Loader<'a> {
    pub(super) p: Params,
    pub(super) ckpt: &'a mut Checkpoint,
    pub(super) dtype: DType,
    pub(super) block: Option<(usize, usize)>,
    /// Linear layers built on a quantized weight.
    pub(super) quantized: usize,
}

impl Loader<'_> {
    pub(super) fn take(
        &mut self,
        name: &str,
        shape: impl Into<candle_core::Shape>,
    ) -> Result<Tensor> {
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
    pub(super) fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
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
    pub(super) fn dense_linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear::new(
            self.take(&format!("{name}.weight"), (out, inp))?,
            None,
        ))
    }

    pub(super) fn mlp(&mut self, pre: &str, h: usize, inter: usize) -> Result<Mlp> {
        Ok(Mlp {
            gate: self.linear(&format!("{pre}.gate_proj"), inter, h, false)?,
            up: self.linear(&format!("{pre}.up_proj"), inter, h, false)?,
            down: self.linear(&format!("{pre}.down_proj"), h, inter, false)?,
        })
    }

    pub(super) fn layer(
        &mut self,
        cfg: &DeepseekV3Config,
        i: usize,
        moe: bool,
        scale: f64,
    ) -> Result<Layer> {
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
