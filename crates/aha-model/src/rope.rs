//! Rotary position embeddings, computed from per-token position ids so that
//! left-padded batches and KV-cached decoding need no position table.

use crate::config::{RopeConfig, RopeScaling};
use crate::ops::Mode;
use candle_core::{DType, Device, Result, Tensor, D};

#[derive(Debug, Clone)]
pub struct Rope {
    /// [head_dim / 2] inverse frequencies, after any long-context scaling.
    inv_freq: Tensor,
    /// The same in f64, as computed.
    freqs: Vec<f64>,
    /// YaRN's attention-magnitude correction, applied to cos and sin (1 otherwise).
    mscale: f64,
}

impl Rope {
    pub fn new(cfg: &RopeConfig, head_dim: usize, device: &Device) -> Result<Self> {
        let base: Vec<f64> = (0..head_dim / 2)
            .map(|i| 1.0 / cfg.theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        let (freqs, mscale) = match cfg.scaling {
            RopeScaling::None => (base, 1.0),
            RopeScaling::Linear { factor } => (base.iter().map(|f| f / factor).collect(), 1.0),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let f = base
                    .iter()
                    .map(|&freq| {
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        if wavelen < high_wavelen {
                            freq
                        } else if wavelen > low_wavelen {
                            freq / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * freq / factor + smooth * freq
                        }
                    })
                    .collect();
                (f, 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                attention_factor,
                truncate,
            } => {
                // As transformers' `_compute_yarn_parameters`.
                let dim = head_dim as f64;
                let old = original_max_position_embeddings as f64;
                // The dimension index whose wavelength completes `rotations` turns over the old context.
                let correction_dim = |rotations: f64| {
                    dim * (old / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * cfg.theta.ln())
                };
                let (low, high) = (correction_dim(beta_fast), correction_dim(beta_slow));
                let (low, high) = if truncate {
                    (low.floor(), high.ceil())
                } else {
                    (low, high)
                };
                let (low, high) = (low.max(0.0), high.min(dim - 1.0));
                let high = if low == high { high + 0.001 } else { high };
                let f = base
                    .iter()
                    .enumerate()
                    .map(|(i, &freq)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let extrapolate = 1.0 - ramp;
                        freq / factor * (1.0 - extrapolate) + freq * extrapolate
                    })
                    .collect();
                let m = attention_factor.unwrap_or(if mscale != 0.0 && mscale_all_dim != 0.0 {
                    yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
                } else {
                    yarn_mscale(factor, 1.0)
                });
                (f, m)
            }
        };
        let inv_freq = Tensor::new(freqs.iter().map(|&f| f as f32).collect::<Vec<_>>(), device)?;
        Ok(Self {
            inv_freq,
            freqs,
            mscale,
        })
    }

    /// The frequencies divided one by one by `divisors` [head_dim / 2] (llama.cpp stores Llama
    /// 3.1's scaling this way, as a `rope_freqs` tensor).
    pub fn divided_by(self, divisors: &Tensor) -> Result<Self> {
        let d: Vec<f32> = divisors.to_dtype(DType::F32)?.to_vec1()?;
        if d.len() != self.freqs.len() {
            let n = self.freqs.len();
            candle_core::bail!("rope_freqs has {} values, expected {n}", d.len());
        }
        // In f64 as the frequencies are computed, rounded to f32 once.
        let freqs: Vec<f64> = self
            .freqs
            .iter()
            .zip(&d)
            .map(|(&a, &b)| a / b as f64)
            .collect();
        let f32s: Vec<f32> = freqs.iter().map(|&f| f as f32).collect();
        let inv_freq = Tensor::from_vec(f32s, freqs.len(), self.inv_freq.device())?;
        Ok(Self {
            inv_freq,
            freqs,
            mscale: self.mscale,
        })
    }

    /// cos and sin, each [b, t, head_dim / 2], for position ids [b, t].
    pub fn cos_sin(&self, position_ids: &Tensor) -> Result<(Tensor, Tensor)> {
        let pos = position_ids.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let angles = pos.broadcast_mul(&self.inv_freq.reshape((1, 1, ()))?)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        if self.mscale != 1.0 {
            return Ok(((cos * self.mscale)?, (sin * self.mscale)?));
        }
        Ok((cos, sin))
    }

    /// Rotate x [b, heads, t, head_dim] (half-split layout, as HF's `rotate_half`).
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor, mode: Mode) -> Result<Tensor> {
        match mode {
            Mode::Inference => candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin),
            Mode::Train if crate::fused::supported(x) => crate::fused::rope(x, cos, sin),
            Mode::Train => {
                let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
                let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
                let half = x.dim(D::Minus1)? / 2;
                let x1 = x.narrow(D::Minus1, 0, half)?;
                let x2 = x.narrow(D::Minus1, half, half)?;
                let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
                x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
            }
        }
    }
}

/// YaRN's magnitude scale for a context extension `factor`.
pub fn yarn_mscale(factor: f64, mscale: f64) -> f64 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * mscale * factor.ln() + 1.0
    }
}
