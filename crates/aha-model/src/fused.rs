//! f32 CPU kernels for training, each with its own backward pass. Composed of candle ops,
//! softmax, RMSNorm, RoPE and SwiGLU leave a chain of full-size intermediates whose
//! gradients candle's backprop allocates, zeroes and accumulates one by one: measured as
//! more of an SFT step than the matrix products. Here each is one node, forward and back.
//! Callers check [`supported`] and fall back to composed ops elsewhere. The forward passes
//! reuse the inference kernels' rows (`ops::softmax_row`, `ops::silu_mul`), so a rollout and
//! the training pass over it compute softmax and SwiGLU the same way. The linear layer and
//! attention nodes make the composed paths' own storage calls and backward products, so they
//! give the same bits with fewer graph edges.

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

/// An RMSNorm's rows x, its weight w and the row width d.
fn norm_inputs<'a>(
    x: (&'a CpuStorage, &Layout),
    w: (&'a CpuStorage, &Layout),
    op: &str,
) -> Result<(&'a [f32], &'a [f32], usize)> {
    let (xs, ws) = (contiguous_f32(x.0, x.1, op)?, contiguous_f32(w.0, w.1, op)?);
    let d = last_dim(x.1);
    if ws.len() != d {
        candle_core::bail!("rms_norm: weight of {} for rows of {d}", ws.len());
    }
    Ok((xs, ws, d))
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
        let (x, w, d) = norm_inputs((s1, l1), (s2, l2), self.name())?;
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

/// candle's RMSNorm forward bit for bit (the inference path, which rollouts sample from):
/// each row's squares summed in order, then x / rms * w. Rows go eight side by side (eight
/// independent chains instead of one latency-bound one) and a step's rows across the threads:
/// candle's runs up to 32 rows on one thread, ~2% of a batch-32 decode step with the other
/// thread waiting.
pub(crate) fn rms_norm_no_grad(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&weight.contiguous()?, &RmsNormNoGrad { eps: eps as f32 })
}

struct RmsNormNoGrad {
    eps: f32,
}

/// Rows per task of [`RmsNormNoGrad`] (and of the eight-chain groups within one).
const NORM_ROWS: usize = 8;

impl CustomOp2 for RmsNormNoGrad {
    fn name(&self) -> &'static str {
        "aha-rms-norm-no-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, d) = norm_inputs((s1, l1), (s2, l2), self.name())?;
        let mut out = vec![0f32; x.len()];
        // Task c: rows NORM_ROWS c.. (the last task may have fewer).
        let task = |c: usize, o: &mut [f32]| {
            let x = &x[c * NORM_ROWS * d..][..o.len()];
            let mut sums = [0f32; NORM_ROWS];
            if o.len() == NORM_ROWS * d {
                sums = squares_in_order::<NORM_ROWS>(x, d);
            } else {
                for (sum, x) in sums.iter_mut().zip(x.chunks_exact(d)) {
                    [*sum] = squares_in_order::<1>(x, d);
                }
            }
            for ((x, o), sum) in x.chunks_exact(d).zip(o.chunks_exact_mut(d)).zip(sums) {
                let m = (sum / d as f32 + self.eps).sqrt();
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = x / m * w;
                }
            }
        };
        crate::spin::for_chunks(&mut out, NORM_ROWS * d, task);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Σ x_j² of each of the G rows of `x` ([G, d]), each summed from j = 0 up as
/// `Iterator::sum` sums it.
#[inline(always)]
fn squares_in_order<const G: usize>(x: &[f32], d: usize) -> [f32; G] {
    let rows: [&[f32]; G] = std::array::from_fn(|r| &x[r * d..(r + 1) * d]);
    let mut acc = [0f32; G];
    for j in 0..d {
        for (a, r) in acc.iter_mut().zip(&rows) {
            let v = r[j];
            *a += v * v;
        }
    }
    acc
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
                        if sd == 1 {
                            return rope_row(&x[src..src + d], c, s, sign, o);
                        }
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

simd_variants! {
    /// One contiguous row of [`Rope`]'s output (the strided loop's operations, so its bits).
    fn rope_row(x: &[f32], c: &[f32], s: &[f32], sign: f32, o: &mut [f32])
        = rope_row_any for {
            rope_row_avx512: "avx512f,avx2",
            rope_row_avx2: "avx2",
        }
}

#[inline(always)]
fn rope_row_any(x: &[f32], c: &[f32], s: &[f32], sign: f32, o: &mut [f32]) {
    let half = c.len();
    let (x1, x2) = (&x[..half], &x[half..2 * half]);
    let (o1, o2) = o.split_at_mut(half);
    let (s, o2) = (&s[..half], &mut o2[..half]);
    for j in 0..half {
        let sj = sign * s[j];
        o1[j] = x1[j] * c[j] - x2[j] * sj;
        o2[j] = x2[j] * c[j] + x1[j] * sj;
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

/// x Wᵀ (+ b) for x [.., in], W [out, in], b [out]: the matrix product and the bias in one
/// node. Composed, a training linear is five nodes (reshape, Wᵀ, product, broadcast bias,
/// reshape), each backward edge a zeroed and accumulated gradient. Same storage calls and
/// backward products as the composed path, so the same bits (tested).
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, LinearOp),
        None => x.apply_op2(&w, LinearOp),
    }
}

struct LinearOp;

impl LinearOp {
    fn forward(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[out, inp], dims) = (w.1.dims(), x.1.dims()) else {
            candle_core::bail!("linear: weight must be [out, in], got {:?}", w.1.dims());
        };
        if dims.last() != Some(&inp) || !x.1.is_contiguous() || !w.1.is_contiguous() {
            candle_core::bail!("linear: x {dims:?} against weight [{out}, {inp}]");
        }
        let rows = x.1.shape().elem_count() / inp.max(1);
        let xs = contiguous_f32(x.0, x.1, "linear")?;
        let ws = contiguous_f32(w.0, w.1, "linear")?;
        // x [rows, inp] times the view Wᵀ [inp, out] (row stride 1, column stride inp).
        let mut y = matmul_f32((rows, out, inp), (xs, inp, 1), (ws, 1, inp))?;
        if let Some((b, bl)) = b {
            if bl.dims() != [out] {
                candle_core::bail!("linear: bias {:?} for {out} outputs", bl.dims());
            }
            let bs = contiguous_f32(b, bl, "linear")?;
            for row in y.chunks_exact_mut(out.max(1)) {
                for (y, &b) in row.iter_mut().zip(bs) {
                    *y += b;
                }
            }
        }
        let y = CpuStorage::F32(y);
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out;
        }
        Ok((y, shape.into()))
    }

    /// The products candle's backward takes for x Wᵀ (rhs the view Wᵀ), and the bias's row
    /// sum as its broadcast's backward takes it.
    fn backward(
        x: &Tensor,
        w: &Tensor,
        bias: bool,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let (out, inp) = w.dims2()?;
        let rows = x.elem_count() / inp.max(1);
        let dy = dy.reshape((rows, out))?.contiguous()?;
        let (dx, dw) = {
            let (xs, xl) = x.storage_and_layout();
            let (ws, wl) = w.storage_and_layout();
            let (gs, gl) = dy.storage_and_layout();
            let (Storage::Cpu(xs), Storage::Cpu(ws), Storage::Cpu(gs)) = (&*xs, &*ws, &*gs) else {
                candle_core::bail!("linear: backward on the CPU only");
            };
            let xs = contiguous_f32(xs, xl, "linear")?;
            let ws = contiguous_f32(ws, wl, "linear")?;
            let gs = contiguous_f32(gs, gl, "linear")?;
            // dy [rows, out] W [out, inp]; xᵀ (the view [inp, rows]) dy, whose transpose is
            // dW, left as a view.
            let dx = matmul_f32((rows, inp, out), (gs, out, 1), (ws, inp, 1))?;
            let dwt = matmul_f32((inp, out, rows), (xs, 1, inp), (gs, out, 1))?;
            (dx, dwt)
        };
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = Tensor::from_vec(dw, (inp, out), x.device())?.t()?;
        let db = if bias { Some(column_sums(&dy)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// The product of lhs [m, k] and rhs [k, n], each given as (elements, row stride, column
/// stride), into a new row-major [m, n]: the call candle's CPU matmul makes, without first
/// zeroing the output it overwrites, and on one thread in a one-thread pool (a training
/// worker's), where candle would split the product among threads that are not there. The
/// same bits either way (tested).
fn matmul_f32(
    (m, n, k): (usize, usize, usize),
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
) -> Result<Vec<f32>> {
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| {
        (rows.saturating_sub(1) * rs + cols.saturating_sub(1) * cs) + 1
    };
    if m * n * k > 0
        && (lhs.len() < last(m, lhs_rs, k, lhs_cs) || rhs.len() < last(k, rhs_rs, n, rhs_cs))
    {
        candle_core::bail!("matmul: [{m}, {k}] x [{k}, {n}] out of its operands' bounds");
    }
    if k == 0 {
        return Ok(vec![0.0; m * n]);
    }
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    let parallelism = match candle_core::utils::get_num_threads().min(rayon::current_num_threads())
    {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    // SAFETY: the operands hold every element the strides reach (checked above); gemm
    // writes all m * n outputs without reading them (read_dst false, alpha 0).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        dst.set_len(m * n);
    }
    Ok(dst)
}

/// The sums over rows of a contiguous [rows, n] matrix: each column summed from 0 in row
/// order, as candle's `sum_keepdim(0)` sums it (same bits), a row at a time.
fn column_sums(m: &Tensor) -> Result<Tensor> {
    let (rows, n) = m.dims2()?;
    let m = m.contiguous()?;
    let sums = {
        let (storage, layout) = m.storage_and_layout();
        let Storage::Cpu(s) = &*storage else {
            candle_core::bail!("linear: gradient not on the CPU");
        };
        let v = contiguous_f32(s, layout, "linear")?;
        let mut sums = vec![0f32; n];
        for row in v.chunks_exact(n.max(1)).take(rows) {
            for (acc, &x) in sums.iter_mut().zip(row) {
                *acc += x;
            }
        }
        sums
    };
    Tensor::from_vec(sums, n, m.device())
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "aha-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = Self::backward(x, w, false, dy)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "aha-linear-bias"
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
        self.forward((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = Self::backward(x, w, true, dy)?;
        Ok((Some(dx), Some(dw), db))
    }
}

/// Causal attention for training, heads merged: q [b, h, t, d], k/v [b, kv, T, d] (the
/// `n_rep = h / kv` query heads of a group stacked along the query axis, as
/// [`crate::llama::attend`] does), bias additive [b or 1, 1, 1, t, T]; returns [b, t, h d].
/// One node for scale, q kᵀ, bias, softmax, p v and the head merge, with the same storage
/// calls and backward products as the composed path: the same bits (tested).
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    kv_heads: usize,
) -> Result<Tensor> {
    let (b, h, t, _) = check_attention(q, k, v, kv_heads)?;
    let total = k.dim(2)?;
    let bias = bias.broadcast_as((b, kv_heads, h / kv_heads, t, total))?;
    let parts = vec![Part {
        start: 0,
        len: t,
        bias,
    }];
    apply_attention(q, k, v, kv_heads, parts)
}

/// Sequences packed back to back into one row: their lengths and each one's causal bias
/// [1, 1, 1, len, len], made once per forward pass for every layer.
pub(crate) struct Packed {
    lens: Vec<usize>,
    biases: Vec<Tensor>,
}

impl Packed {
    pub(crate) fn new(lens: &[usize], device: &candle_core::Device) -> Result<Self> {
        let lens: Vec<usize> = lens.iter().copied().filter(|&n| n > 0).collect();
        let mut biases: Vec<Tensor> = Vec::with_capacity(lens.len());
        for (i, &len) in lens.iter().enumerate() {
            let bias = match lens[..i].iter().position(|&l| l == len) {
                Some(j) => biases[j].clone(),
                None => crate::attention_bias(None, 1, len, 0, device)?,
            };
            biases.push(bias);
        }
        Ok(Self { lens, biases })
    }
}

/// [`attention`] over sequences packed back to back along t (q [1, h, t, d], k/v [1, kv, t,
/// d], the lengths summing to t), each causal within itself: no padding and no [t, t] mask,
/// each sequence's products as [`attention`] computes them for that sequence alone.
pub(crate) fn attention_packed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    packed: &Packed,
    kv_heads: usize,
) -> Result<Tensor> {
    let (b, h, t, _) = check_attention(q, k, v, kv_heads)?;
    let lens = &packed.lens;
    if b != 1 || k.dim(2)? != t || lens.iter().sum::<usize>() != t {
        candle_core::bail!(
            "packed attention: q {:?}, k {:?} for sequences of {lens:?}",
            q.dims(),
            k.dims()
        );
    }
    let mut parts = Vec::with_capacity(lens.len());
    let mut start = 0;
    for (&len, bias) in lens.iter().zip(&packed.biases) {
        let bias = bias.broadcast_as((1, kv_heads, h / kv_heads, len, len))?;
        parts.push(Part { start, len, bias });
        start += len;
    }
    apply_attention(q, k, v, kv_heads, parts)
}

fn check_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kv_heads: usize,
) -> Result<(usize, usize, usize, usize)> {
    let (b, h, t, d) = q.dims4()?;
    let (kb, kvh, _, kd) = k.dims4()?;
    if kb != b || kvh != kv_heads || kd != d || kv_heads == 0 || h % kv_heads != 0 {
        candle_core::bail!("attention: q {:?} against k {:?}", q.dims(), k.dims());
    }
    if v.dims() != k.dims() {
        candle_core::bail!("attention: k {:?} against v {:?}", k.dims(), v.dims());
    }
    Ok((b, h, t, d))
}

fn apply_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kv_heads: usize,
    parts: Vec<Part>,
) -> Result<Tensor> {
    let op = Attention {
        probs: std::sync::Mutex::new(vec![None; parts.len()]),
        parts,
        kv_heads,
        scale: 1.0 / (q.dim(3)? as f64).sqrt(),
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// Queries `start .. start + len` of the attention (all keys but a packed sequence's own
/// are left out), with their bias broadcast to [b, kv, n_rep, len, T].
struct Part {
    start: usize,
    len: usize,
    bias: Tensor,
}

struct Attention {
    /// One part, or one per packed sequence.
    parts: Vec<Part>,
    kv_heads: usize,
    scale: f64,
    /// Each part's softmax from the forward pass, taken by the backward pass.
    probs: std::sync::Mutex<Vec<Option<Vec<f32>>>>,
}

impl Attention {
    /// (b, kv, n_rep, t, T, d) from q's and k's shapes.
    fn dims(&self, q: &[usize], k: &[usize]) -> Result<[usize; 6]> {
        let (&[b, h, t, d], &[_, _, total, _]) = (q, k) else {
            candle_core::bail!("attention: q {q:?}, k {k:?}");
        };
        Ok([b, self.kv_heads, h / self.kv_heads, t, total, d])
    }

    /// Whether the one part covers every query and key: not packed.
    fn whole(&self) -> bool {
        self.parts.len() == 1 && self.parts[0].start == 0
    }

    /// softmax(scale q kᵀ + bias) as [b, kv, n_rep t, T], from detached tensors (the
    /// backward pass's fallback when the forward's is gone).
    fn probs(&self, q: &Tensor, k: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let [b, kv, rep, t, total, d] = self.dims(q.dims(), k.dims())?;
        let q = (q.reshape((b, kv, rep * t, d))? * self.scale)?;
        let scores = q.matmul(&k.t()?)?.reshape((b, kv, rep, t, total))?;
        let scores = scores.broadcast_add(bias)?.contiguous()?;
        scores
            .apply_op1_no_bwd(&Softmax)?
            .reshape((b, kv, rep * t, total))
    }

    /// One part's output [b, t, h d] and softmax from contiguous q, k, v.
    fn forward_part(
        &self,
        (sq, lq): (&CpuStorage, &Layout),
        (sk, lk): (&CpuStorage, &Layout),
        (sv, lv): (&CpuStorage, &Layout),
        bias: &Tensor,
    ) -> Result<(CpuStorage, Option<Vec<f32>>)> {
        use candle_core::backend::BackendStorage;
        let [b, kv, rep, t, total, d] = self.dims(lq.dims(), lk.dims())?;
        if !(lq.is_contiguous() && lk.is_contiguous() && lv.is_contiguous()) {
            candle_core::bail!("attention: inputs not contiguous");
        }
        let (bias, bias_layout) = bias.storage_and_layout();
        let Storage::Cpu(bias) = &*bias else {
            candle_core::bail!("attention: bias not on the CPU");
        };
        let lq = Layout::contiguous_with_offset((b, kv, rep * t, d), lq.start_offset());
        let q = sq.affine(&lq, self.scale, 0.0)?;
        let lq = Layout::contiguous((b, kv, rep * t, d));
        let scores = q.matmul(sk, (b * kv, rep * t, total, d), &lq, &lk.transpose(2, 3)?)?;
        let l5 = Layout::contiguous((b, kv, rep, t, total));
        let scores = scores.binary_impl::<candle_core::op::Add>(bias, &l5, bias_layout)?;
        let (probs, _) = Softmax.cpu_fwd(&scores, &l5)?;
        let lp = Layout::contiguous((b, kv, rep * t, total));
        let out = probs.matmul(sv, (b * kv, rep * t, d, total), &lp, lv)?;
        // [b, h, t, d] to [b, t, h, d].
        let mut merged = CpuStorage::F32(vec![0f32; b * kv * rep * t * d]);
        let heads_first = Layout::contiguous((b, kv * rep, t, d)).transpose(1, 2)?;
        out.copy_strided_src(&mut merged, 0, &heads_first)?;
        let kept = match probs {
            CpuStorage::F32(p) => Some(p),
            _ => None,
        };
        Ok((merged, kept))
    }

    /// The composed path's backward for one part, product for product: the head merge's
    /// transpose, p v, the softmax, q kᵀ and the scale. q, k, v detached and contiguous.
    fn backward_part(
        &self,
        part: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        dout: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let [b, kv, rep, t, total, d] = self.dims(q.dims(), k.dims())?;
        let kept = self
            .probs
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(part).and_then(Option::take));
        let probs = match kept {
            Some(p) => Tensor::from_vec(p, (b, kv, rep * t, total), q.device())?,
            None => self.probs(q, k, &self.parts[part].bias)?,
        };
        let dout = dout
            .reshape((b, t, kv * rep, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, kv, rep * t, d))?;
        let dv = probs.t()?.matmul(&dout)?;
        let dprobs = dout
            .matmul(&v.t()?)?
            .reshape((b, kv, rep, t, total))?
            .contiguous()?;
        let probs = probs.reshape((b, kv, rep, t, total))?;
        let dscores =
            probs
                .apply_op2_no_bwd(&dprobs, &SoftmaxGrad)?
                .reshape((b, kv, rep * t, total))?;
        let qs = (q.reshape((b, kv, rep * t, d))? * self.scale)?;
        let dq = (dscores.matmul(k)? * self.scale)?.reshape((b, kv * rep, t, d))?;
        let dk = qs.t()?.matmul(&dscores)?.t()?;
        Ok((dq, dk, dv))
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "aha-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let [b, kv, rep, t, _, d] = self.dims(lq.dims(), lk.dims())?;
        let mut kept = Vec::with_capacity(self.parts.len());
        let out = if self.whole() {
            let bias = &self.parts[0].bias;
            let (out, probs) = self.forward_part((sq, lq), (sk, lk), (sv, lv), bias)?;
            kept.push(probs);
            out
        } else {
            // Each packed sequence's q, k, v copied out, its rows of the output written.
            let width = kv * rep * d;
            let mut out = vec![0f32; t * width];
            for part in &self.parts {
                let slice = |s: &CpuStorage, l: &Layout| -> Result<(CpuStorage, Layout)> {
                    let view = l.narrow(2, part.start, part.len)?;
                    let mut dst = CpuStorage::F32(vec![0f32; view.shape().elem_count()]);
                    s.copy_strided_src(&mut dst, 0, &view)?;
                    Ok((dst, Layout::contiguous(view.shape())))
                };
                let ((q, lq), (k, lk), (v, lv)) = (slice(sq, lq)?, slice(sk, lk)?, slice(sv, lv)?);
                let (merged, probs) =
                    self.forward_part((&q, &lq), (&k, &lk), (&v, &lv), &part.bias)?;
                let CpuStorage::F32(merged) = merged else {
                    candle_core::bail!("attention: f32 expected");
                };
                out[part.start * width..][..merged.len()].copy_from_slice(&merged);
                kept.push(probs);
            }
            CpuStorage::F32(out)
        };
        if let Ok(mut slot) = self.probs.lock() {
            *slot = kept;
        }
        Ok((out, (b, t, kv * rep * d).into()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v) = (q.detach(), k.detach(), v.detach());
        if self.whole() {
            let (dq, dk, dv) = self.backward_part(0, &q, &k, &v, dout)?;
            return Ok((Some(dq), Some(dk), Some(dv)));
        }
        let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
        for (i, part) in self.parts.iter().enumerate() {
            let rows = |x: &Tensor| x.narrow(2, part.start, part.len)?.contiguous();
            let dout = dout.narrow(1, part.start, part.len)?;
            let (a, b, c) = self.backward_part(i, &rows(&q)?, &rows(&k)?, &rows(&v)?, &dout)?;
            dq.push(a);
            dk.push(b);
            dv.push(c);
        }
        Ok((
            Some(Tensor::cat(&dq, 2)?),
            Some(Tensor::cat(&dk, 2)?),
            Some(Tensor::cat(&dv, 2)?),
        ))
    }
}

struct SwiGlu;

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
        // On the spin pool: on rayon, a decode step's 32 rows ran on the calling thread alone
        // while the pool's helper spun (the worker woke too late for its half).
        let chunk = MIN_ROWS * d;
        crate::spin::for_chunks(&mut out, chunk, |c, o| {
            let (g, u) = (&g[c * chunk..][..o.len()], &u[c * chunk..][..o.len()]);
            silu_mul(g, u, o)
        });
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

simd_variants! {
    /// SwiGLU's backward over one row: dg and du from g, u and dy.
    fn swiglu_grad(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32])
        = swiglu_grad_any for {
            swiglu_grad_avx512: "avx512f,avx2",
            swiglu_grad_avx2: "avx2",
        }
}

/// sigmoid(x) from e^-|x| (no overflow): 1 / (1 + e) for x >= 0, e / (1 + e) below.
#[inline(always)]
fn swiglu_grad_any(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
    let n = g.len();
    let (u, dy, dg, du) = (&u[..n], &dy[..n], &mut dg[..n], &mut du[..n]);
    for i in 0..n {
        let x = g[i];
        let e = exp_nonpositive(-x.abs());
        let s = if x >= 0.0 { 1.0 } else { e } / (1.0 + e);
        du[i] = dy[i] * x * s;
        dg[i] = dy[i] * u[i] * s * (1.0 + x * (1.0 - s));
    }
}

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
            .for_each(|((dg, du), ((g, u), dy))| swiglu_grad(g, u, dy, dg, du));
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

    fn bits(t: &Tensor) -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.into_iter().map(f32::to_bits).collect()
    }

    /// SwiGLU's backward and RoPE's rows: the AVX-512 and AVX2 copies give the baseline
    /// copy's bits (the training runs' bits do not depend on the CPU), on rows that need the
    /// vector loops' tails, and on gates from deep negatives to large positives.
    #[test]
    fn row_kernels_give_the_same_bits_on_every_isa() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |scale: f32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        };
        let b = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        #[cfg(target_arch = "x86_64")]
        let isa = crate::qkernels::Isa::detected();
        for n in [1usize, 7, 16, 33, 100, 1408] {
            let [g, u, dy]: [Vec<f32>; 3] =
                [60.0, 4.0, 2.0].map(|s| (0..n).map(|_| next(s)).collect());
            let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
            swiglu_grad_any(&g, &u, &dy, &mut dg, &mut du);
            assert!(dg.iter().chain(&du).all(|v| v.is_finite()));
            let half = n.div_ceil(2);
            let x: Vec<f32> = (0..2 * half).map(|_| next(4.0)).collect();
            let [c, s]: [Vec<f32>; 2] = [2.0, 2.0].map(|k| (0..half).map(|_| next(k)).collect());
            let mut o = vec![0f32; 2 * half];
            rope_row_any(&x, &c, &s, -1.0, &mut o);
            #[cfg(target_arch = "x86_64")]
            for wide in [crate::qkernels::Isa::Avx2, crate::qkernels::Isa::Avx512] {
                if isa < wide {
                    continue;
                }
                let (mut dg2, mut du2) = (vec![0f32; n], vec![0f32; n]);
                let mut o2 = vec![0f32; 2 * half];
                // SAFETY: the CPU has the set (checked above).
                unsafe {
                    if wide == crate::qkernels::Isa::Avx512 {
                        swiglu_grad_avx512(&g, &u, &dy, &mut dg2, &mut du2);
                        rope_row_avx512(&x, &c, &s, -1.0, &mut o2);
                    } else {
                        swiglu_grad_avx2(&g, &u, &dy, &mut dg2, &mut du2);
                        rope_row_avx2(&x, &c, &s, -1.0, &mut o2);
                    }
                }
                assert_eq!(b(&dg2), b(&dg), "{wide:?}, n = {n}");
                assert_eq!(b(&du2), b(&du), "{wide:?}, n = {n}");
                assert_eq!(b(&o2), b(&o), "{wide:?}, n = {n}");
            }
        }
    }

    /// The gradients of `inputs` in two backward passes: the same shape and bits, not zero.
    fn assert_same_gradients(
        fused: &candle_core::backprop::GradStore,
        composed: &candle_core::backprop::GradStore,
        inputs: &[(&str, &Tensor)],
        case: &str,
    ) {
        for &(name, x) in inputs {
            let (a, c) = (fused.get(x).unwrap(), composed.get(x).unwrap());
            assert_eq!(a.dims(), c.dims(), "{name}, {case}");
            assert_eq!(bits(a), bits(c), "gradient of {name}, {case}");
            let zero = a.zeros_like().unwrap();
            assert!(max_diff(a, &zero) > 0.0, "{name}: zero gradient, {case}");
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

    /// The inference RMSNorm gives candle's bits: row counts around the groups of eight and
    /// the serial bound, widths with vector tails, one thread and several.
    #[test]
    fn rms_norm_no_grad_gives_candles_bits() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for (rows, d) in [(1, 24), (7, 33), (8, 512), (9, 64), (32, 512), (45, 100)] {
                    let x = var(&[rows, d], rows as u64, 3.0).as_tensor().clone();
                    let w = var(&[d], 7, 2.0).as_tensor().clone();
                    let ours = rms_norm_no_grad(&x, &w, 1e-6).unwrap();
                    let candle = candle_nn::ops::rms_norm(&x, &w, 1e-6).unwrap();
                    assert_eq!(
                        bits(&ours),
                        bits(&candle),
                        "{rows} x {d}, {threads} threads"
                    );
                }
            });
        }
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

    /// The fused linear gives the composed path's bits: output and every gradient, with and
    /// without a bias, 2-D and 3-D inputs, k past the GEMM's 512 block, and an upstream
    /// gradient that arrives as a transposed (non-contiguous) view; on the caller's threads
    /// and in a one-thread pool (a training worker's, where its products run unsplit).
    #[test]
    fn linear_gives_the_composed_paths_bits() {
        linear_cases();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        one.install(linear_cases);
    }

    fn linear_cases() {
        for (dims, out, bias, seed) in [
            (vec![2usize, 7, 48], 33usize, true, 20u64),
            (vec![2, 7, 48], 33, false, 21),
            (vec![5, 16], 64, true, 22),
            (vec![3, 4, 600], 40, true, 23),
            (vec![150, 64], 192, false, 24),
            (vec![96, 700], 130, true, 25),
        ] {
            let inp = *dims.last().unwrap();
            let rows = dims.iter().product::<usize>() / inp;
            let x = var(&dims, seed, 2.0);
            let w = var(&[out, inp], seed + 100, 0.5);
            let b = var(&[out], seed + 200, 1.0);
            let fused = linear(x.as_tensor(), w.as_tensor(), bias.then(|| b.as_tensor())).unwrap();
            let mut composed = x
                .as_tensor()
                .reshape((rows, inp))
                .unwrap()
                .matmul(&w.as_tensor().t().unwrap())
                .unwrap();
            if bias {
                composed = composed.broadcast_add(b.as_tensor()).unwrap();
            }
            let mut shape = dims.clone();
            *shape.last_mut().unwrap() = out;
            let composed = composed.reshape(shape.as_slice()).unwrap();
            assert_eq!(fused.dims(), composed.dims());
            assert_eq!(bits(&fused), bits(&composed), "output of {dims:?}");
            // A loss through a transpose: the gradient reaches the node as a strided view.
            let weights = var(&[out, rows], seed + 300, 2.0).as_tensor().clone();
            let loss = |y: &Tensor| {
                let y = y.reshape((rows, out)).unwrap().t().unwrap();
                (y * &weights).unwrap().sum_all().unwrap()
            };
            let (gf, gc) = (
                loss(&fused).backward().unwrap(),
                loss(&composed).backward().unwrap(),
            );
            let mut inputs = vec![("x", x.as_tensor()), ("w", w.as_tensor())];
            if bias {
                inputs.push(("b", b.as_tensor()));
            }
            assert_same_gradients(&gf, &gc, &inputs, &format!("{dims:?}"));
        }
    }

    /// Training attention in one node against `llama::attend` and the head merge: the same
    /// bits for the output and the gradients of q, k and v, with and without grouped heads,
    /// a per-sequence padding bias and a bias shared by the batch.
    #[test]
    fn attention_gives_the_composed_paths_bits() {
        use crate::llama::attend;
        use crate::ops::Mode;
        for (b, h, kv, t, d, per_row, seed) in [
            (3usize, 4usize, 2usize, 9usize, 8usize, true, 40u64),
            (2, 2, 1, 13, 32, true, 41),
            (2, 3, 3, 5, 16, false, 42),
        ] {
            // Causal, and in per-row biases the first `row` keys are padding.
            let rows = if per_row { b } else { 1 };
            let mut mask = vec![0f32; rows * t * t];
            for r in 0..rows {
                for i in 0..t {
                    for j in 0..t {
                        if j > i || (per_row && j < r && i >= r) {
                            mask[(r * t + i) * t + j] = -1e9;
                        }
                    }
                }
            }
            let bias =
                Tensor::from_vec(mask, (rows, 1, 1, t, t), &candle_core::Device::Cpu).unwrap();
            let (q, k, v) = (
                var(&[b, h, t, d], seed, 2.0),
                var(&[b, kv, t, d], seed + 1, 2.0),
                var(&[b, kv, t, d], seed + 2, 2.0),
            );
            let (qt, kt, vt) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let fused = attention(qt, kt, vt, &bias, kv).unwrap();
            let composed = attend(qt, kt, vt, &bias, kv, Mode::Train)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .reshape((b, t, h * d))
                .unwrap();
            assert_eq!(fused.dims(), composed.dims());
            assert_eq!(bits(&fused), bits(&composed), "output, h {h} kv {kv}");
            let weights = var(&[b, t, h * d], seed + 3, 2.0).as_tensor().clone();
            let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
            let (gf, gc) = (
                loss(&fused).backward().unwrap(),
                loss(&composed).backward().unwrap(),
            );
            let inputs = [("q", qt), ("k", kt), ("v", vt)];
            assert_same_gradients(&gf, &gc, &inputs, &format!("h {h} kv {kv}"));
        }
    }

    /// Packed sequences give, bit for bit, what each sequence gives alone (outputs and the
    /// gradients of q, k and v), with grouped heads and a one-token sequence.
    #[test]
    fn packed_attention_gives_each_sequence_alone_bits() {
        let dev = candle_core::Device::Cpu;
        for (h, kv, d, lens, seed) in [
            (4usize, 2usize, 8usize, vec![5usize, 9, 1, 7], 50u64),
            (2, 1, 32, vec![16, 3], 51),
        ] {
            let t: usize = lens.iter().sum();
            let (q, k, v) = (
                var(&[1, h, t, d], seed, 2.0),
                var(&[1, kv, t, d], seed + 1, 2.0),
                var(&[1, kv, t, d], seed + 2, 2.0),
            );
            let (qt, kt, vt) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let masks = Packed::new(&lens, &dev).unwrap();
            let packed = attention_packed(qt, kt, vt, &masks, kv).unwrap();
            let mut alone = Vec::new();
            let mut start = 0;
            for &len in &lens {
                let bias = crate::attention_bias(None, 1, len, 0, &dev).unwrap();
                let part = |x: &Tensor| x.narrow(2, start, len).unwrap();
                alone.push(attention(&part(qt), &part(kt), &part(vt), &bias, kv).unwrap());
                start += len;
            }
            let alone = Tensor::cat(&alone, 1).unwrap();
            assert_eq!(packed.dims(), alone.dims());
            assert_eq!(bits(&packed), bits(&alone), "output, lens {lens:?}");
            let weights = var(&[1, t, h * d], seed + 3, 2.0).as_tensor().clone();
            let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
            let (gp, ga) = (
                loss(&packed).backward().unwrap(),
                loss(&alone).backward().unwrap(),
            );
            let inputs = [("q", qt), ("k", kt), ("v", vt)];
            assert_same_gradients(&gp, &ga, &inputs, &format!("lens {lens:?}"));
        }
        // Lengths that do not cover the row are refused.
        let (q, k) = (var(&[1, 2, 6, 8], 1, 1.0), var(&[1, 1, 6, 8], 2, 1.0));
        let (qt, kt) = (q.as_tensor(), k.as_tensor());
        let short = Packed::new(&[2, 3], &candle_core::Device::Cpu).unwrap();
        assert!(attention_packed(qt, kt, kt, &short, 1).is_err());
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
