//! DeepSeekMoE: shared experts plus routed experts chosen by bias-corrected, group-limited
//! top-k routing; the routing record the trainer balances with.

use super::*;

pub(super) struct Moe {
    pub(super) layer: usize,
    pub(super) gate: Tensor,
    /// None unless topk_method is noaux_tc.
    pub(super) bias: Option<Tensor>,
    pub(super) bias_name: String,
    pub(super) experts: Vec<Mlp>,
    pub(super) shared: Option<Mlp>,
    pub(super) top_k: usize,
    pub(super) groups: usize,
    pub(super) topk_group: usize,
    pub(super) scoring: Scoring,
    pub(super) method: TopkMethod,
    pub(super) norm_topk: bool,
    pub(super) scaling: f64,
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

pub(super) fn sigmoid(x: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
    match mode {
        Mode::Inference => candle_nn::ops::sigmoid(x),
        Mode::Train => (x.neg()?.exp()? + 1.0)?.recip(),
    }
}

/// Indices of the `k` largest values (ties: lower index first).
pub(super) fn top_indices(v: &[f32], k: usize) -> Vec<usize> {
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
    pub(super) fn select(
        &self,
        scores: &[f32],
        bias: Option<&[f32]>,
        n: usize,
        e: usize,
    ) -> Vec<u32> {
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

    pub(super) fn forward(
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
            let expert = |(ei, slots): (usize, Vec<u32>)| -> Result<(Tensor, Vec<u32>)> {
                let toks: Vec<u32> = slots.iter().map(|s| s / k as u32).collect();
                let m = toks.len();
                let tok_t = Tensor::from_vec(toks.clone(), m, x.device())?;
                let slot_t = Tensor::from_vec(slots, m, x.device())?;
                let xs = x2.index_select(&tok_t, 0)?;
                let ys = self.experts[ei].forward(&xs, mode)?;
                let ws = w_flat.index_select(&slot_t, 0)?.unsqueeze(1)?;
                Ok((ys.broadcast_mul(&ws)?, toks))
            };
            let active: Vec<(usize, Vec<u32>)> = per_expert
                .into_iter()
                .enumerate()
                .filter(|(_, slots)| !slots.is_empty())
                .collect();
            // Decoding, each thread takes whole experts (each sees a few rows: split across
            // the threads, their products and glue left a thread waiting for ~10% of a
            // batch-32 step); a task's products run on its thread alone, with the same bits.
            let done: Vec<Result<(Tensor, Vec<u32>)>> = match mode {
                Mode::Inference => crate::spin::map(active, expert),
                Mode::Train => active.into_iter().map(expert).collect(),
            };
            let mut outs = Vec::with_capacity(done.len());
            let mut rows = Vec::new();
            for r in done {
                let (ys, toks) = r?;
                outs.push(ys);
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
