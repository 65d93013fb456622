//! Multi-head latent attention: the compressed KV latent, plain and weight-absorbed forms.

use super::*;

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

pub(super) enum QProj {
    Plain(Linear),
    LowRank { a: Linear, norm: Tensor, b: Linear },
}

pub(super) struct Mla {
    pub(super) q: QProj,
    pub(super) kv_a: Linear,
    pub(super) kv_norm: Tensor,
    pub(super) kv_b: Linear,
    pub(super) o: Linear,
    pub(super) heads: usize,
    pub(super) nope: usize,
    pub(super) rope_dim: usize,
    pub(super) v_dim: usize,
    pub(super) rank: usize,
    pub(super) scale: f64,
    pub(super) interleave: bool,
    pub(super) eps: f64,
}

/// Rope on x [b, h, t, d]. With the interleaved layout the pairs (x0, x1), (x2, x3) ... are
/// first gathered to [x0, x2, ..., x1, x3, ...] (as HF's `apply_rotary_pos_emb_interleave`,
/// whose output is in that de-interleaved order too), then rotated half-split.
pub(super) fn apply_rope(
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
    pub(super) fn forward(
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
