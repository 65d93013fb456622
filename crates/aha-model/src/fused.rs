//! f32 CPU kernels for training, each with its own backward pass. Composed of candle ops,
//! softmax, RMSNorm, RoPE and SwiGLU leave a chain of full-size intermediates whose
//! gradients candle's backprop allocates, zeroes and accumulates one by one: measured as
//! more of an SFT step than the matrix products. Here each is one node, forward and back.
//! Callers check [`supported`] and fall back to composed ops elsewhere. The forward passes
//! reuse the inference kernels' rows (`ops::softmax_row`, `ops::silu_mul`), so a rollout and
//! the training pass over it compute softmax and SwiGLU the same way.

use crate::ops::{exp_nonpositive, silu_mul, softmax_row};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
};
use rayon::prelude::*;

/// Rows per rayon task: enough work per task that scheduling stays negligible.
const MIN_ROWS: usize = 16;

pub(crate) fn supported(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && t.device().is_cpu()
}

pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: f32 expected");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: input not contiguous");
    };
    Ok(&v[a..b])
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1).max(1)
}

/// Softmax over the last dimension (inference applies [`Softmax`] without the graph).
pub(crate) fn softmax(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

pub(crate) struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "aha-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let d = last_dim(l);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, x)| softmax_row(x, o));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    /// dx = y * (dy - sum(dy * y)), row by row.
    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&dy.contiguous()?, &SoftmaxGrad)?))
    }
}

fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "aha-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, self.name())?;
        let dy = contiguous_f32(s2, l2, self.name())?;
        let d = last_dim(l1);
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(d)
            .zip(y.par_chunks(d).zip(dy.par_chunks(d)))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, (y, g))| {
                let s = dot8(y, g);
                for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                    *o = y * (g - s);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps) * weight.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps: eps as f32 })
}

struct RmsNorm {
    eps: f32,
}

fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (dot8(x, x) / x.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "aha-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let d = last_dim(l1);
        if w.len() != d {
            candle_core::bail!("rms_norm: weight of {} for rows of {d}", w.len());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, x)| {
                let r = inv_rms(x, self.eps);
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = x * r * w;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = x.elem_count();
        let both = x.apply_op3_no_bwd(w, &dy.contiguous()?, &RmsNormGrad { eps: self.eps })?;
        let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = both.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// With r = 1/rms(x) and gw = dy * w: dx = r * (gw - x r^2 mean(gw * x)),
/// dw = sum over rows of dy * x * r. Output: dx then dw, flat.
struct RmsNormGrad {
    eps: f32,
}

impl CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "aha-rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let dy = contiguous_f32(s3, l3, self.name())?;
        let d = w.len();
        let n = x.len();
        let mut out = vec![0f32; n + d];
        let (dx, dw) = out.split_at_mut(n);
        let block = d * MIN_ROWS;
        let partial = dx
            .par_chunks_mut(block)
            .zip(x.par_chunks(block).zip(dy.par_chunks(block)))
            .map(|(dx, (x, dy))| {
                let mut dw = vec![0f32; d];
                let mut gw = vec![0f32; d];
                for ((dx, x), dy) in dx.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)) {
                    let r = inv_rms(x, self.eps);
                    for ((g, &dy), &w) in gw.iter_mut().zip(dy).zip(w) {
                        *g = dy * w;
                    }
                    let c = r * r * dot8(&gw, x) / d as f32;
                    for (((dx, &g), &x), (dw, &dy)) in
                        dx.iter_mut().zip(&gw).zip(x).zip(dw.iter_mut().zip(dy))
                    {
                        *dx = r * (g - x * c);
                        *dw += dy * x * r;
                    }
                }
                dw
            })
            .collect::<Vec<_>>();
        // The blocks' sums added in block order: rayon's `reduce` pairs them as its work
        // stealing split them, so the weight's gradient would change bits from run to run.
        for p in &partial {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        Ok((CpuStorage::F32(out), Shape::from(n + d)))
    }
}

/// Rotary embedding of x [b, heads, t, head_dim] in any layout (half-split, as HF's
/// `rotate_half`), with cos and sin [b, t, head_dim / 2] or [t, head_dim / 2].
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, _, t, d) = x.dims4()?;
    let half = d / 2;
    let ok = |c: &Tensor| match c.dims() {
        [cb, ct, ch] => (*cb, *ct, *ch) == (b, t, half),
        [ct, ch] => (*ct, *ch) == (t, half),
        _ => false,
    };
    if d % 2 != 0 || !ok(cos) || !ok(sin) {
        candle_core::bail!(
            "rope: x {:?} with cos {:?} and sin {:?}",
            x.dims(),
            cos.dims(),
            sin.dims()
        );
    }
    x.apply_op1(Rope {
        cos: cos.contiguous()?,
        sin: sin.contiguous()?,
        inverse: false,
    })
}

struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// Rotate by -angle: the transpose, which is the backward pass.
    inverse: bool,
}

fn cpu_f32(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<Vec<f32>>) -> Result<Vec<f32>> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(s) = &*storage else {
        candle_core::bail!("rope: cos/sin must be on the CPU");
    };
    f(contiguous_f32(s, layout, "rope")?)
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "aha-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(x) = s else {
            candle_core::bail!("rope: f32 expected");
        };
        let &[b, h, t, d] = l.dims() else {
            candle_core::bail!("rope: x must be [b, heads, t, head_dim]");
        };
        let [sb, sh, st, sd] = [l.stride()[0], l.stride()[1], l.stride()[2], l.stride()[3]];
        let start = l.start_offset();
        let half = d / 2;
        let per_batch = self.cos.rank() == 3;
        let sign = if self.inverse { -1f32 } else { 1f32 };
        let out = cpu_f32(&self.cos, |cos| {
            cpu_f32(&self.sin, |sin| {
                let mut out = vec![0f32; b * h * t * d];
                out.par_chunks_mut(d)
                    .enumerate()
                    .with_min_len(MIN_ROWS)
                    .for_each(|(row, o)| {
                        let (bi, hi, ti) = (row / (h * t), row / t % h, row % t);
                        let src = start + bi * sb + hi * sh + ti * st;
                        let c0 = ((if per_batch { bi * t } else { 0 }) + ti) * half;
                        let (c, s) = (&cos[c0..c0 + half], &sin[c0..c0 + half]);
                        for j in 0..half {
                            let x1 = x[src + j * sd];
                            let x2 = x[src + (j + half) * sd];
                            let sj = sign * s[j];
                            o[j] = x1 * c[j] - x2 * sj;
                            o[j + half] = x2 * c[j] + x1 * sj;
                        }
                    });
                Ok(out)
            })
        })?;
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            inverse: !self.inverse,
        };
        Ok(Some(dy.apply_op1_no_bwd(&inverse)?))
    }
}

/// SwiGLU's gating: silu(gate) * up, for two tensors of one shape.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    check_swiglu(gate, up)?;
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

/// [`swiglu`] outside the graph (inference).
pub(crate) fn swiglu_no_grad(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    check_swiglu(gate, up)?;
    gate.contiguous()?
        .apply_op2_no_bwd(&up.contiguous()?, &SwiGlu)
}

fn check_swiglu(gate: &Tensor, up: &Tensor) -> Result<()> {
    if gate.shape() != up.shape() {
        candle_core::bail!("swiglu: gate {:?} vs up {:?}", gate.dims(), up.dims());
    }
    Ok(())
}

struct SwiGlu;

fn sigmoid(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "aha-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(s1, l1, self.name())?;
        let u = contiguous_f32(s2, l2, self.name())?;
        let d = last_dim(l1);
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(d)
            .zip(g.par_chunks(d).zip(u.par_chunks(d)))
            .with_min_len(MIN_ROWS)
            .for_each(|(o, (g, u))| silu_mul(g, u, o));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = g.elem_count();
        let both = g.apply_op3_no_bwd(u, &dy.contiguous()?, &SwiGluGrad)?;
        let dg = both.narrow(0, 0, n)?.reshape(g.shape())?;
        let du = both.narrow(0, n, n)?.reshape(u.shape())?;
        Ok((Some(dg), Some(du)))
    }
}

/// With s = sigmoid(g): d gate = dy * u * s * (1 + g (1 - s)), d up = dy * g * s.
/// Output: d gate then d up, flat.
struct SwiGluGrad;

impl CustomOp3 for SwiGluGrad {
    fn name(&self) -> &'static str {
        "aha-swiglu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(s1, l1, self.name())?;
        let u = contiguous_f32(s2, l2, self.name())?;
        let dy = contiguous_f32(s3, l3, self.name())?;
        let n = g.len();
        let d = last_dim(l1);
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        dg.par_chunks_mut(d)
            .zip(du.par_chunks_mut(d))
            .zip(g.par_chunks(d).zip(u.par_chunks(d)).zip(dy.par_chunks(d)))
            .with_min_len(MIN_ROWS)
            .for_each(|((dg, du), ((g, u), dy))| {
                for i in 0..g.len() {
                    let s = sigmoid(g[i]);
                    du[i] = dy[i] * g[i] * s;
                    dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests::{diff as max_diff, random_var as var};
    use candle_core::{Var, D};

    /// The fused op and the composed one give the same output and the same gradients for
    /// every input, under a loss that weights each output element differently.
    fn check(
        inputs: &[&Var],
        fused: impl Fn(&[Tensor]) -> Tensor,
        composed: impl Fn(&[Tensor]) -> Tensor,
        tol: f32,
    ) {
        let xs: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (fused(&xs), composed(&xs));
        assert!(
            max_diff(&a, &b) < tol,
            "outputs differ by {}",
            max_diff(&a, &b)
        );
        let w = var(a.dims(), 99, 2.0).as_tensor().clone();
        let ga = (&a * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, x) in xs.iter().enumerate() {
            let (da, db) = (ga.get(x).unwrap(), gb.get(x).unwrap());
            let d = max_diff(da, db);
            assert!(d < tol, "gradient of input {i} differs by {d}");
            let norm = da
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "gradient of input {i}: {norm}"
            );
        }
    }

    #[test]
    fn softmax_matches_composed_ops() {
        let x = var(&[3, 5, 37], 1, 8.0);
        check(
            &[&x],
            |x| softmax(&x[0]).unwrap(),
            |x| {
                let e = x[0]
                    .broadcast_sub(&x[0].max_keepdim(D::Minus1).unwrap())
                    .unwrap();
                let e = e.exp().unwrap();
                e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap()
            },
            1e-5,
        );
    }

    #[test]
    fn rms_norm_matches_composed_ops() {
        // More rows than one rayon block, so that the weight gradient sums across blocks.
        let (x, w) = (var(&[2, 40, 24], 2, 3.0), var(&[24], 3, 2.0));
        check(
            &[&x, &w],
            |t| rms_norm(&t[0], &t[1], 1e-6).unwrap(),
            |t| {
                let inv = ((t[0].sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-6)
                    .unwrap()
                    .sqrt()
                    .unwrap()
                    .recip())
                .unwrap();
                t[0].broadcast_mul(&inv)
                    .unwrap()
                    .broadcast_mul(&t[1])
                    .unwrap()
            },
            1e-4,
        );
    }

    /// The weight's gradient sums over rows: the same bits on one thread and on several.
    #[test]
    fn rms_norm_weight_gradient_does_not_depend_on_the_threads() {
        let (x, w) = (var(&[64, 40, 24], 8, 3.0), var(&[24], 9, 2.0));
        let dy = var(&[64, 40, 24], 10, 2.0).as_tensor().clone();
        let grad = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
                let g = (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
                g.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
            })
        };
        let one = grad(1);
        for threads in [2, 3, 8] {
            for _ in 0..3 {
                assert_eq!(grad(threads), one, "{threads} threads");
            }
        }
    }

    fn rope_composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let cos = Tensor::cat(&[cos, cos], D::Minus1)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        let sin = Tensor::cat(&[sin, sin], D::Minus1)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        let half = x.dim(D::Minus1).unwrap() / 2;
        let x1 = x.narrow(D::Minus1, 0, half).unwrap();
        let x2 = x.narrow(D::Minus1, half, half).unwrap();
        let rotated = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
        (x.broadcast_mul(&cos).unwrap() + rotated.broadcast_mul(&sin).unwrap()).unwrap()
    }

    #[test]
    fn rope_matches_composed_ops_on_a_transposed_view() {
        // [b, t, h, d] transposed to [b, h, t, d], as attention splits its heads.
        let x = var(&[2, 7, 3, 8], 4, 2.0);
        let angles = var(&[2, 7, 4], 5, 6.0).as_tensor().clone();
        let (cos, sin) = (
            (angles.cos().unwrap() * 1.3).unwrap(),
            angles.sin().unwrap(),
        );
        check(
            &[&x],
            |t| rope(&t[0].transpose(1, 2).unwrap(), &cos, &sin).unwrap(),
            |t| rope_composed(&t[0].transpose(1, 2).unwrap(), &cos, &sin),
            1e-5,
        );
    }

    #[test]
    fn swiglu_matches_composed_ops() {
        let (g, u) = (var(&[4, 33], 6, 12.0), var(&[4, 33], 7, 2.0));
        check(
            &[&g, &u],
            |t| swiglu(&t[0], &t[1]).unwrap(),
            |t| (candle_nn::ops::silu(&t[0]).unwrap() * &t[1]).unwrap(),
            1e-5,
        );
    }
}
