//! Balancing a DeepSeek-V3 mixture of experts while training (DeepSeek-V3 §2.1.2): the
//! per-expert loads, the auxiliary-loss-free bias update, and the sequence-wise balance loss.
//! The model records its routing ([`ForwardOutput::routing`]); what to do with it is here.
//!
//! [`ForwardOutput::routing`]: aha_model::deepseek_v3::ForwardOutput

use crate::error::{Result, TrainError};
use aha_model::deepseek_v3::{DeepseekV3, Routing};
use candle_core::{DType, Tensor};

/// Auxiliary-loss-free balancing (DeepSeek-V3 §2.1.2), after an optimizer step: each
/// expert's `e_score_correction_bias` moves by `gamma` against its load error
/// (down if it took more than the mean load, up if less). `loads`: (layer, tokens per
/// expert), e.g. from [`expert_load`] summed over the step's batches.
pub fn update_routing_bias(
    model: &DeepseekV3,
    loads: &[(usize, Vec<f32>)],
    gamma: f64,
) -> Result<()> {
    for (layer, load) in loads {
        let Some((var, experts)) = model.routing_bias(*layer) else {
            continue;
        };
        if load.len() != experts {
            return Err(TrainError::Invalid(format!(
                "layer {layer}: {} loads for {experts} experts",
                load.len()
            )));
        }
        let mean = load.iter().sum::<f32>() / load.len() as f32;
        let step: Vec<f32> = load
            .iter()
            .map(|&l| (mean - l).signum() * if l == mean { 0.0 } else { gamma as f32 })
            .collect();
        let step = Tensor::from_vec(step, load.len(), var.device())?.to_dtype(var.dtype())?;
        var.set(&(var.as_tensor() + step)?)?;
    }
    Ok(())
}

/// Per-expert load (tokens routed to each expert), per MoE layer, counting only real
/// tokens: `key_mask` [b, past + t] as in [`aha_model::ForwardInput`] (its last t columns are used).
pub fn expert_load(
    routing: &[Routing],
    key_mask: Option<&Tensor>,
) -> Result<Vec<(usize, Vec<f32>)>> {
    let mut out = Vec::new();
    for r in routing {
        let mask: Option<Vec<bool>> = match key_mask {
            Some(m) => {
                let total = m.dim(1)?;
                let m: Vec<Vec<f32>> = m
                    .narrow(1, total - r.seq, r.seq)?
                    .to_dtype(DType::F32)?
                    .to_vec2()?;
                Some(m.into_iter().flatten().map(|v| v != 0.0).collect())
            }
            None => None,
        };
        out.push((r.layer, r.load(mask.as_deref())));
    }
    Ok(out)
}

/// The sequence-wise balance loss of DeepSeek-V3 (eq. 17-20), averaged over sequences and
/// MoE layers, times `alpha`: sum_i f_i P_i with f_i = E/(K T) * #tokens choosing i and
/// P_i = mean over tokens of the normalized affinity s_i / sum_j s_j. Differentiable
/// through the affinities (the gate weights). `key_mask` as in [`expert_load`].
pub fn sequence_balance_loss(
    routing: &[Routing],
    key_mask: Option<&Tensor>,
    alpha: f64,
) -> Result<Tensor> {
    let Some(first) = routing.first() else {
        return Err(TrainError::Invalid("no MoE layer routed anything".into()));
    };
    let device = first.scores.device().clone();
    let mut total = Tensor::zeros((), DType::F32, &device)?;
    for r in routing {
        let (b, t, e, k) = (r.batch, r.seq, r.n_experts, r.top_k);
        let mask: Vec<f32> = match key_mask {
            Some(m) => {
                let tot = m.dim(1)?;
                m.narrow(1, tot - t, t)?
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1()?
            }
            None => vec![1.0; b * t],
        };
        let mut f = vec![0f32; b * e];
        for (n, chunk) in r.experts.chunks(k).enumerate() {
            if mask[n] != 0.0 {
                for &ex in chunk {
                    f[(n / t) * e + ex as usize] += 1.0;
                }
            }
        }
        let lens: Vec<f32> = mask
            .chunks(t)
            .map(|c| c.iter().sum::<f32>().max(1.0))
            .collect();
        for (bi, len) in lens.iter().enumerate() {
            for v in &mut f[bi * e..(bi + 1) * e] {
                *v *= e as f32 / (k as f32 * len);
            }
        }
        let f = Tensor::from_vec(f, (b, e), &device)?;
        let s = r.scores.to_dtype(DType::F32)?.reshape((b, t, e))?;
        let s = s.broadcast_div(&s.sum_keepdim(2)?)?;
        let mask_t = Tensor::from_vec(mask, (b, t, 1), &device)?;
        let len_t = Tensor::from_vec(lens, (b, 1), &device)?;
        let p = s.broadcast_mul(&mask_t)?.sum(1)?.broadcast_div(&len_t)?; // [b, e]
        let l = (f * p)?.sum_all()?.affine(1.0 / b as f64, 0.0)?;
        total = (total + l)?;
    }
    Ok((total * (alpha / routing.len() as f64))?)
}
