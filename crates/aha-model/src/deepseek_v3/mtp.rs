//! The multi-token-prediction module: from the main model's hidden state at i and the token
//! at i+1, predict the token at i+2.

use super::*;

/// One multi-token-prediction module (DeepSeek-V3 `model.layers.{L + k}`): from the main
/// model's hidden state at position i and the embedding of token i+1, predict token i+2.
pub(super) struct Mtp {
    pub(super) enorm: Tensor,
    pub(super) hnorm: Tensor,
    pub(super) eh_proj: Linear,
    pub(super) layer: Layer,
    pub(super) head_norm: Tensor,
    /// `shared_head.head.weight`; None: the main lm_head.
    pub(super) head: Option<Tensor>,
    /// `embed_tokens.weight` of the module; None: the main embedding.
    pub(super) embed: Option<Tensor>,
}

impl DeepseekV3 {
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
