//! The op set by mode: fused kernels for inference; for training, f32 CPU kernels with their
//! own backward (`crate::fused`) or differentiable compositions elsewhere (candle's fused
//! rms_norm, softmax_last_dim and rope have no backward pass).

use crate::fused::{self, contiguous_f32};
use crate::qkernels::{Kernels, QMat};
use candle_core::quantized::QTensor;
use candle_core::{DType, Result, Tensor, D};
use std::sync::Arc;

mod few_rows;
mod prefill;
pub use prefill::attend_prefill;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fused ops, weights detached from the autograd graph.
    Inference,
    /// Differentiable ops; gradients reach every parameter.
    Train,
}

/// A large finite negative: -inf turns fully masked rows into NaN.
pub const MASK_VALUE: f64 = -1e9;

/// Past the last key an additive bias row (0 or `MASK_VALUE`) leaves visible; 0 when none is.
pub fn visible_end(bias_row: &[f32]) -> usize {
    let masked = (MASK_VALUE / 2.0) as f32;
    bias_row
        .iter()
        .rposition(|&x| x > masked)
        .map_or(0, |j| j + 1)
}

pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference if fused::supported(x) && fused::supported(weight) => {
            fused::rms_norm_no_grad(x, weight, eps)
        }
        Mode::Inference => candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32),
        Mode::Train if fused::supported(x) => fused::rms_norm(x, weight, eps),
        Mode::Train => {
            let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
            x.broadcast_mul(&inv)?.broadcast_mul(weight)
        }
    }
}

pub fn softmax(x: &Tensor, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference if fused::supported(x) => x.contiguous()?.apply_op1_no_bwd(&fused::Softmax),
        Mode::Inference => candle_nn::ops::softmax_last_dim(&x.contiguous()?),
        Mode::Train if fused::supported(x) => fused::softmax(x),
        Mode::Train => {
            let max = x.max_keepdim(D::Minus1)?.detach();
            let e = x.broadcast_sub(&max)?.exp()?;
            e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
        }
    }
}

/// Inference attention for a few queries per sequence (decode, fast-forward), straight from
/// the strided cache buffers: the composed path copies every key and value per layer and
/// step and runs many tiny matmuls. q [b, h, t, d], k/v [b, kv, T, d] (any strides, last
/// contiguous), bias [b, 1, 1, t, T]; `None` when the inputs are not f32 CPU tensors of
/// that form. Each query row is computed on its own, so a row's result does not depend
/// on the rest of the batch.
pub fn attend_few(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    kv_heads: usize,
) -> Result<Option<Tensor>> {
    with_attention_inputs(q, k, v, bias, kv_heads, |a| {
        let AttentionInputs {
            b, h, t, d, total, ..
        } = *a;
        let n_rep = h / kv_heads;
        let scale = 1.0 / (d as f32).sqrt();
        // One task per (sequence, kv head): its n_rep query heads are adjacent in q and in
        // the output, and each key and value row is read once for all of them. With fewer
        // such tasks than a few per thread (a lone sequence), one per query head instead, so
        // that the threads share the work evenly (keys and values are then read n_rep times).
        let per_kv = b * kv_heads >= 4 * rayon::current_num_threads();
        let heads_per_task = if per_kv { n_rep } else { 1 };
        let rows = heads_per_task * t;
        let mut out = vec![0f32; b * h * t * d];
        let task = |c: usize, o: &mut [f32]| {
            let tasks_per_seq = h / heads_per_task;
            let (bi, first) = (c / tasks_per_seq, c % tasks_per_seq * heads_per_task);
            let g = first / n_rep;
            let head = AttendHead {
                q: &a.q[(bi * h + first) * t * d..][..rows * d],
                bias: &a.bias[bi * t * total..][..t * total],
                k: (a.k.buf, a.k.head(bi, g), a.k.row),
                v: (a.v.buf, a.v.head(bi, g), a.v.row),
                t,
                total,
                d,
                scale,
            };
            simd::attend_head(&head, o);
        };
        crate::spin::for_chunks(&mut out, rows * d, task);
        Tensor::from_vec(out, (b, h, t, d), q.device())
    })
}

/// An inference attention call's f32 CPU buffers, in the form the attention kernels take:
/// q [b, h, t, d] and bias [b, 1, 1, t, total] as slices of exactly their elements, keys and
/// values [b, kv, total, d] strided with contiguous rows.
#[derive(Clone, Copy)]
struct AttentionInputs<'a> {
    b: usize,
    h: usize,
    t: usize,
    d: usize,
    total: usize,
    q: &'a [f32],
    bias: &'a [f32],
    k: Strided<'a>,
    v: Strided<'a>,
}

/// A [b, kv, rows, d] buffer: element [0, 0, 0, 0] at `start`, strides per sequence, head
/// and row.
#[derive(Clone, Copy)]
struct Strided<'a> {
    buf: &'a [f32],
    start: usize,
    seq: usize,
    head: usize,
    row: usize,
}

impl Strided<'_> {
    /// The offset of row 0 of sequence `b`, head `g`.
    fn head(&self, b: usize, g: usize) -> usize {
        self.start + b * self.seq + g * self.head
    }
}

/// `f` on the buffers of q [b, h, t, d], k/v [b, kv, total, d] (any strides, last
/// contiguous) and bias [b, 1, 1, t, total]; `None` when they are not non-empty f32 CPU
/// tensors of that form (the composed ops take them).
fn with_attention_inputs(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    kv_heads: usize,
    f: impl FnOnce(&AttentionInputs) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    use candle_core::{CpuStorage, Storage};
    if ![q, k, v, bias].into_iter().all(crate::fused::supported) {
        return Ok(None);
    }
    let (b, h, t, d) = q.dims4()?;
    let (kb, kvh, total, kd) = k.dims4()?;
    if (kb, kvh, kd) != (b, kv_heads, d) || v.dims4()? != (b, kv_heads, total, d) {
        return Ok(None);
    }
    let empty = b * h * t * d * total == 0;
    if empty || kv_heads == 0 || h % kv_heads != 0 || bias.dims() != [b, 1, 1, t, total] {
        return Ok(None);
    }
    let (kl, vl) = (k.layout(), v.layout());
    if kl.stride()[3] != 1 || vl.stride()[3] != 1 {
        return Ok(None);
    }
    let (q, bias) = (q.contiguous()?, bias.contiguous()?);
    let (qs, _) = q.storage_and_layout();
    let (bs, _) = bias.storage_and_layout();
    let (ks, _) = k.storage_and_layout();
    let (vs, _) = v.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(qs)), Storage::Cpu(CpuStorage::F32(bs))) = (&*qs, &*bs)
    else {
        return Ok(None);
    };
    let (Storage::Cpu(CpuStorage::F32(ks)), Storage::Cpu(CpuStorage::F32(vs))) = (&*ks, &*vs)
    else {
        return Ok(None);
    };
    let strided = |buf, l: &candle_core::Layout| Strided {
        buf,
        start: l.start_offset(),
        seq: l.stride()[0],
        head: l.stride()[1],
        row: l.stride()[2],
    };
    let inputs = AttentionInputs {
        b,
        h,
        t,
        d,
        total,
        q: &qs[q.layout().start_offset()..][..b * h * t * d],
        bias: &bs[bias.layout().start_offset()..][..b * t * total],
        k: strided(ks, kl),
        v: strided(vs, vl),
    };
    f(&inputs).map(Some)
}

/// One (sequence, kv head) of [`attend_few`]: `rows = n_rep * t` query rows of `q`, the
/// bias rows of its t queries, keys and values as (buffer, offset of row 0, row stride).
struct AttendHead<'a> {
    q: &'a [f32],
    bias: &'a [f32],
    k: (&'a [f32], usize, usize),
    v: (&'a [f32], usize, usize),
    t: usize,
    total: usize,
    d: usize,
    scale: f32,
}

impl AttendHead<'_> {
    /// The body, with the row kernels of `K` (inlined into each instruction-set entry).
    #[inline(always)]
    fn run<K: simd::Rows>(&self, o: &mut [f32], scratch: &mut [f32]) {
        let (total, d) = (self.total, self.d);
        let rows = self.q.len() / d;
        let (ks, kt, ktj) = self.k;
        let (vs, vt, vtj) = self.v;
        // Every element of p and inv is written before it is read.
        let (p, inv) = scratch.split_at_mut(rows * total);
        let inv = &mut inv[..rows];
        let masked = (MASK_VALUE / 2.0) as f32;
        // Keys no query may see (padding of shorter sequences in a batch): not read.
        let seen = |j: usize| (0..self.t).any(|ti| self.bias[ti * total + j] >= masked);
        let key = |j: usize| &ks[kt + j * ktj..][..d];
        let mut j = 0;
        while j < total {
            if j + 8 <= total && (j..j + 8).all(seen) {
                // Eight keys against each query row: the row is read once for all eight.
                let keys: [&[f32]; 8] = std::array::from_fn(|i| key(j + i));
                // Two blocks ahead (farther was no faster: 40 and 64 keys tried).
                for i in (j + 16..total).take(8) {
                    K::prefetch(key(i));
                }
                for r in 0..rows {
                    let dots = K::dot8(&self.q[r * d..][..d], keys);
                    let b = &self.bias[(r % self.t) * total + j..][..8];
                    let pr = &mut p[r * total + j..][..8];
                    for ((p, dot), b) in pr.iter_mut().zip(dots).zip(b) {
                        *p = dot * self.scale + b;
                    }
                }
                j += 8;
                continue;
            }
            if !seen(j) {
                (0..rows).for_each(|r| p[r * total + j] = MASK_VALUE as f32);
            } else {
                for r in 0..rows {
                    let b = self.bias[(r % self.t) * total + j];
                    p[r * total + j] = K::dot(&self.q[r * d..][..d], key(j)) * self.scale + b;
                }
            }
            j += 1;
        }
        for (pr, inv) in p.chunks_mut(total).zip(inv.iter_mut()) {
            let max = pr.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            // The exponentials vectorize on their own; the sum keeps its order.
            pr.iter_mut().for_each(|x| *x = exp_nonpositive(*x - max));
            *inv = 1.0 / pr.iter().fold(0f32, |s, &x| s + x);
        }
        for ((or, pr), inv) in o.chunks_mut(d).zip(p.chunks(total)).zip(inv) {
            K::mix(or, pr, |j| &vs[vt + j * vtj..][..d]);
            or.iter_mut().for_each(|x| *x *= *inv);
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on this thread's scratch buffer of at least `n` floats (contents unspecified): the
/// attention tasks run on both threads at once, and allocating per task made them contend
/// for the allocator's one arena (a futex wake per allocation in batch-1 decode).
fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with_borrow_mut(|v| {
        if v.len() < n {
            v.resize(n, 0.0);
        }
        f(&mut v[..n])
    })
}

/// Row kernels (dot product, `y += a x`) for [`AttendHead`]: AVX2/FMA when the CPU has
/// them (the crate is built for baseline x86-64), portable loops otherwise.
mod simd {
    use super::AttendHead;

    pub trait Rows {
        fn dot(a: &[f32], b: &[f32]) -> f32;
        /// `dot(a, b[i])` for eight rows, each summed exactly as `dot` sums it.
        #[inline(always)]
        fn dot8(a: &[f32], b: [&[f32]; 8]) -> [f32; 8] {
            b.map(|b| Self::dot(a, b))
        }
        /// `y = Σ_j w[j] x(j)` over the nonzero `w[j]`, each element summed in `j` order
        /// with one multiply-add per term.
        fn mix<'v>(y: &mut [f32], w: &[f32], x: impl Fn(usize) -> &'v [f32]);
        /// A hint that `x` is read soon.
        #[inline(always)]
        fn prefetch(_x: &[f32]) {}
    }

    struct Portable;

    impl Rows for Portable {
        #[inline(always)]
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            a.iter().zip(b).map(|(x, y)| x * y).sum()
        }
        #[inline(always)]
        fn mix<'v>(y: &mut [f32], w: &[f32], x: impl Fn(usize) -> &'v [f32]) {
            y.fill(0.0);
            for (j, &w) in w.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                y.iter_mut().zip(x(j)).for_each(|(y, x)| *y += w * x);
            }
        }
    }

    pub fn attend_head(head: &AttendHead, o: &mut [f32]) {
        let rows = head.q.len() / head.d;
        super::with_scratch(rows * (head.total + 1), |scratch| {
            attend_head_in(head, o, scratch)
        })
    }

    fn attend_head_in(head: &AttendHead, o: &mut [f32], scratch: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if head.d.is_multiple_of(8)
            && crate::qkernels::Isa::detected() >= crate::qkernels::Isa::Avx2
        {
            // SAFETY: AVX2 and FMA were detected (one detection for every kernel); rows are a
            // multiple of 8 long.
            return unsafe { fma::attend_head(head, o, scratch) };
        }
        head.run::<Portable>(o, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    mod fma {
        use super::{AttendHead, Rows};
        use std::arch::x86_64::*;

        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn attend_head(head: &AttendHead, o: &mut [f32], scratch: &mut [f32]) {
            head.run::<Fma>(o, scratch)
        }

        /// Only reached through `attend_head` above (rows a multiple of 8, features there).
        struct Fma;

        impl Rows for Fma {
            #[inline(always)]
            fn dot(a: &[f32], b: &[f32]) -> f32 {
                assert!(a.len() == b.len() && a.len().is_multiple_of(8));
                // SAFETY: in bounds (asserted); AVX2/FMA checked by the caller.
                unsafe {
                    let mut acc = _mm256_setzero_ps();
                    for i in (0..a.len()).step_by(8) {
                        let x = _mm256_loadu_ps(a.as_ptr().add(i));
                        acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(b.as_ptr().add(i)), acc);
                    }
                    let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
                    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
                }
            }

            #[inline(always)]
            fn prefetch(x: &[f32]) {
                for line in (0..x.len().min(64)).step_by(16) {
                    // SAFETY: in bounds; a prefetch has no other effect.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().add(line) as *const i8) };
                }
            }

            #[inline(always)]
            fn dot8(a: &[f32], b: [&[f32]; 8]) -> [f32; 8] {
                assert!(a.len().is_multiple_of(8) && b.iter().all(|b| b.len() == a.len()));
                // SAFETY: in bounds (asserted); AVX2/FMA checked by the caller.
                unsafe {
                    let mut acc = [_mm256_setzero_ps(); 8];
                    for i in (0..a.len()).step_by(8) {
                        let x = _mm256_loadu_ps(a.as_ptr().add(i));
                        for (acc, b) in acc.iter_mut().zip(b) {
                            *acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(b.as_ptr().add(i)), *acc);
                        }
                    }
                    // `dot`'s sums for all eight at once: lanes l + (l + 4), then lanes
                    // 0 + 2 and 1 + 3, then those two (keys i and i + 4 share a register).
                    let half = |i: usize| {
                        let lo = _mm256_permute2f128_ps::<0x20>(acc[i], acc[i + 4]);
                        let hi = _mm256_permute2f128_ps::<0x31>(acc[i], acc[i + 4]);
                        _mm256_castps_pd(_mm256_add_ps(lo, hi))
                    };
                    let pairs = |x: __m256d, y: __m256d| {
                        let lo = _mm256_castpd_ps(_mm256_unpacklo_pd(x, y));
                        _mm256_add_ps(lo, _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)))
                    };
                    let s = _mm256_hadd_ps(pairs(half(0), half(1)), pairs(half(2), half(3)));
                    std::mem::transmute::<__m256, [f32; 8]>(s)
                }
            }

            #[inline(always)]
            fn mix<'v>(y: &mut [f32], w: &[f32], x: impl Fn(usize) -> &'v [f32]) {
                assert!(y.len().is_multiple_of(8));
                // Up to eight registers of y at a time, kept in registers across all j: each
                // is a chain of multiply-adds, and eight chains keep both FMA units busy.
                for c in (0..y.len()).step_by(64) {
                    let n = (y.len() - c).min(64) / 8;
                    // SAFETY: lanes c .. c + 8n of y and of each x(j) (asserted lengths).
                    unsafe {
                        let mut acc = [_mm256_setzero_ps(); 8];
                        for (j, &wj) in w.iter().enumerate() {
                            if wj == 0.0 {
                                continue;
                            }
                            if w.get(j + 8).is_some_and(|&w| w != 0.0) {
                                Self::prefetch(&x(j + 8)[c..]);
                            }
                            let x = x(j);
                            assert_eq!(x.len(), y.len());
                            let (wv, x) = (_mm256_set1_ps(wj), x.as_ptr().add(c));
                            for (r, acc) in acc.iter_mut().enumerate().take(n) {
                                *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(8 * r)), *acc);
                            }
                        }
                        for (r, acc) in acc.iter().enumerate().take(n) {
                            _mm256_storeu_ps(y.as_mut_ptr().add(c + 8 * r), *acc);
                        }
                    }
                }
            }
        }
    }
}

simd_variants! {
    /// Softmax of one row, with a branch-free exp the compiler vectorizes (libm's `expf` takes
    /// a slow error-reporting path for every masked score that underflows); exact zeros below
    /// e^-87. Both copies are AVX2, as before the macro: an AVX-512 copy was never measured.
    pub(crate) fn softmax_row(x: &[f32], out: &mut [f32])
        = softmax_row_any for {
            softmax_row_avx512: "avx2",
            softmax_row_avx2: "avx2",
        }
}

#[inline(always)]
fn softmax_row_any(x: &[f32], out: &mut [f32]) {
    let max = max_lanes(x);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp_nonpositive(v - max);
    }
    // Eight running sums, so that the loop vectorizes.
    let mut lanes = [0f32; 8];
    let mut chunks = out.chunks_exact(8);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    let sum = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// e^z for z <= 0 (0 below -87, NaN stays NaN), within a few ulp: z = n ln2 + r with
/// |r| <= ln2 / 2, a degree-6 polynomial for e^r, and 2^n put into the exponent bits.
#[inline(always)]
pub(crate) fn exp_nonpositive(z: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: x + ROUND - ROUND rounds to an integer
    let zc = z.max(-87.0);
    let t = zc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (zc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n (in -126..=0) read from t's low mantissa bits: `n as i32` would not vectorize.
    let n_int = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    let e = p * scale;
    if z >= -87.0 {
        e
    } else if z.is_nan() {
        z
    } else {
        0.0
    }
}

/// Log-softmax over the last dimension, composed of differentiable ops (max detached).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// For logits `[.., V]` and targets `[..]` (u32): `log p(target)` under `softmax(scale * x)`,
/// and the entropy of that distribution (detached: it carries no gradient). On f32 CPU
/// tensors one fused kernel with its own backward, so that no `[.., V]` intermediate (the
/// log-softmax, its exp, their gradients) is ever stored; elsewhere composed ops.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor, scale: f64) -> Result<(Tensor, Tensor)> {
    if !(scale > 0.0 && scale.is_finite()) {
        candle_core::bail!("token_logprobs: scale must be positive, got {scale}");
    }
    let v = logits.dim(D::Minus1)?;
    if logits.dims()[..logits.rank() - 1] != *targets.dims() {
        candle_core::bail!(
            "token_logprobs: logits {:?} and targets {:?} do not match",
            logits.dims(),
            targets.dims()
        );
    }
    let shape = targets.shape().clone();
    if !(logits.dtype() == DType::F32 && logits.device().is_cpu()) {
        let x = if scale == 1.0 {
            logits.clone()
        } else {
            (logits * scale)?
        };
        let lsm = log_softmax(&x)?;
        let logp = lsm.gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?;
        let lsm = lsm.detach();
        let entropy = (lsm.exp()? * &lsm)?.sum(D::Minus1)?.neg()?;
        return Ok((logp.squeeze(D::Minus1)?, entropy));
    }
    let n = shape.elem_count();
    let x = logits.contiguous()?.reshape((n, v))?;
    let t = targets.to_dtype(DType::U32)?.contiguous()?.reshape(n)?;
    let both = x.apply_op2(
        &t,
        TokenLogprobs {
            scale: scale as f32,
        },
    )?;
    let logp = both.narrow(1, 0, 1)?.reshape(&shape)?;
    let entropy = both.narrow(1, 1, 1)?.detach().reshape(&shape)?;
    Ok((logp, entropy))
}

/// The fused kernel of [`token_logprobs`]: [n, V] f32 and [n] u32 in, [n, 2] (log p, entropy) out.
struct TokenLogprobs {
    scale: f32,
}

simd_variants! {
    /// Row `x` scaled by `s`: (max of s*x, sum of e^(s*x - max), sum of e^(s*x - max) * s*x).
    fn row_moments(x: &[f32], s: f32) -> (f32, f32, f32)
        = row_moments_any for {
            row_moments_avx512: "avx512f",
            row_moments_avx2: "avx2",
        }
}

/// The largest value (NaNs ignored; -inf for none), in 8 lanes so that it vectorizes: the
/// value of `fold(-inf, f32::max)` (of equal zeros it may keep the other sign, which changes
/// nothing after `x - max`).
#[inline(always)]
pub fn max_lanes(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    let tail = chunks.remainder().iter().copied();
    lanes
        .into_iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, v| if v > m { v } else { m })
}

/// The sums run in 8 lanes (element i into lane i % 8, in order, then the lanes and the
/// tail); the exponentials of 16 elements are computed together so that AVX-512 takes them in
/// one register, then added low half first: the same sums in the same order at any width.
#[inline(always)]
fn row_moments_any(x: &[f32], s: f32) -> (f32, f32, f32) {
    let max = s * max_lanes(x);
    let (mut se, mut sez) = ([0f32; 8], [0f32; 8]);
    let mut pairs = x.chunks_exact(16);
    for c in &mut pairs {
        let (mut z, mut e) = ([0f32; 16], [0f32; 16]);
        for k in 0..16 {
            z[k] = s * c[k];
            e[k] = exp_nonpositive(z[k] - max);
        }
        for half in [0, 8] {
            for k in 0..8 {
                se[k] += e[half + k];
                sez[k] += e[half + k] * z[half + k];
            }
        }
    }
    let mut chunks = pairs.remainder().chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            let z = s * c[k];
            let e = exp_nonpositive(z - max);
            se[k] += e;
            sez[k] += e * z;
        }
    }
    let (mut sum, mut sum_z) = (se.iter().sum::<f32>(), sez.iter().sum::<f32>());
    for &v in chunks.remainder() {
        let z = s * v;
        let e = exp_nonpositive(z - max);
        sum += e;
        sum_z += e * z;
    }
    (max, sum, sum_z)
}

/// (log p(target), entropy) of one row of logits x under softmax(s x), and the row's
/// (max, sum) for [`grad_row`].
fn score_row(x: &[f32], target: usize, s: f32) -> ([f32; 2], (f32, f32)) {
    let (max, sum, sum_z) = row_moments(x, s);
    let lse = max + sum.ln();
    ([s * x[target] - lse, lse - sum_z / sum], (max, sum))
}

/// `o` (zeroed) = g * d log p(target) / dx = g s (onehot(target) - softmax(s x)); `moments`:
/// the row's (max, sum) from [`score_row`] if kept (else computed again).
fn grad_row(o: &mut [f32], x: &[f32], target: usize, g: f32, s: f32, moments: Option<(f32, f32)>) {
    let gk = g * s;
    if gk == 0.0 {
        return; // padding: the row stays zero
    }
    let (max, sum) = moments.unwrap_or_else(|| {
        let (max, sum, _) = row_moments(x, s);
        (max, sum)
    });
    let c = -gk / sum;
    scaled_softmax_into(o, x, s, max, c);
    o[target] += gk;
}

simd_variants! {
    /// o_j = c e^(s x_j - max).
    fn scaled_softmax_into(o: &mut [f32], x: &[f32], s: f32, max: f32, c: f32)
        = scaled_softmax_any for {
            scaled_softmax_avx512: "avx512f",
            scaled_softmax_avx2: "avx2",
        }
}

#[inline(always)]
fn scaled_softmax_any(o: &mut [f32], x: &[f32], s: f32, max: f32, c: f32) {
    for (oj, &xj) in o.iter_mut().zip(x) {
        *oj = c * exp_nonpositive(s * xj - max);
    }
}

fn checked_targets<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    n: usize,
    v: usize,
) -> Result<&'a [u32]> {
    let candle_core::CpuStorage::U32(t) = s else {
        candle_core::bail!("token_logprobs: u32 targets expected");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("token_logprobs: targets not contiguous");
    };
    let t = &t[a..b];
    if t.len() != n {
        candle_core::bail!("token_logprobs: {} targets for {n} rows", t.len());
    }
    if let Some(bad) = t.iter().find(|&&k| k as usize >= v) {
        candle_core::bail!("token_logprobs: target {bad} outside the vocabulary (0..{v})");
    }
    Ok(t)
}

impl candle_core::CustomOp2 for TokenLogprobs {
    fn name(&self) -> &'static str {
        "aha-token-logprobs"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let x = contiguous_f32(s1, l1, "token_logprobs")?;
        let v = l1.dims().last().copied().unwrap_or(1).max(1);
        let n = x.len() / v;
        let t = checked_targets(s2, l2, n, v)?;
        let s = self.scale;
        let mut out = vec![0f32; 2 * n];
        out.par_chunks_mut(2)
            .zip(x.par_chunks(v))
            .zip(t.par_iter())
            .with_min_len(8)
            .for_each(|((o, row), &k)| o.copy_from_slice(&score_row(row, k as usize, s).0));
        Ok((candle_core::CpuStorage::F32(out), (n, 2).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let gx = x.apply_op3_no_bwd(t, &g, &TokenLogprobsGrad { scale: self.scale })?;
        Ok((Some(gx), None))
    }
}

/// d log p(target) / dx = s * (onehot(target) - softmax(s x)), times the incoming gradient
/// (column 0 of [n, 2]; the entropy column carries none).
struct TokenLogprobsGrad {
    scale: f32,
}

impl candle_core::CustomOp3 for TokenLogprobsGrad {
    fn name(&self) -> &'static str {
        "aha-token-logprobs-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
        s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let x = contiguous_f32(s1, l1, "token_logprobs")?;
        let v = l1.dims().last().copied().unwrap_or(1).max(1);
        let n = x.len() / v;
        let t = checked_targets(s2, l2, n, v)?;
        let g = contiguous_f32(s3, l3, "token_logprobs")?;
        if g.len() != 2 * n {
            candle_core::bail!(
                "token_logprobs: gradient of {} values for {n} rows",
                g.len()
            );
        }
        let s = self.scale;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(v)
            .zip(x.par_chunks(v))
            .zip(t.par_iter().zip(g.par_chunks(2)))
            .with_min_len(8)
            .for_each(|((o, row), (&k, gr))| grad_row(o, row, k as usize, gr[0], s, None));
        Ok((candle_core::CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// [`token_logprobs`] of the output head's logits: for hidden states `x` [b, t, h] and
/// `targets` [b, n] (n <= t), target k of row r is scored at position k of row r, under
/// softmax(scale · head(x)). A dense f32 head on the CPU (no adapter, no bias) takes one
/// node from the hidden states to the log-probs: the logits are kept for the backward pass,
/// but none of the views and copies between them (each a zeroed and accumulated gradient
/// of the logits' size) exists. Same products, same bits as the composed path (tested).
pub fn head_logprobs(
    x: &Tensor,
    head: &Linear,
    targets: &Tensor,
    scale: f64,
    mode: Mode,
) -> Result<(Tensor, Tensor)> {
    let (b, t, h) = x.dims3()?;
    let (tb, n) = targets.dims2()?;
    if tb != b || n > t {
        candle_core::bail!(
            "head_logprobs: targets {:?} for hidden states {:?}",
            targets.dims(),
            x.dims()
        );
    }
    let dense = match (&head.weight, &head.lora, &head.bias) {
        (Weight::Dense(w), None, None) => Some(w),
        _ => None,
    };
    let fused = dense.filter(|w| {
        w.dtype() == DType::F32
            && x.dtype() == DType::F32
            && w.device().is_cpu()
            && scale > 0.0
            && scale.is_finite()
    });
    let Some(w) = fused else {
        let logits = head
            .forward(x, mode)?
            .to_dtype(DType::F32)?
            .narrow(1, 0, n)?;
        return token_logprobs(&logits, targets, scale);
    };
    let rows = b * t;
    let x2 = x.reshape((rows, h))?;
    let logits = head.forward(&x2.detach(), Mode::Inference)?.contiguous()?;
    let v = logits.dim(1)?;
    let targets: Vec<u32> = targets.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
    if let Some(bad) = targets.iter().find(|&&k| k as usize >= v) {
        candle_core::bail!("head_logprobs: target {bad} outside the vocabulary (0..{v})");
    }
    let w_grad = mode == Mode::Train && !head.frozen;
    let w = if w_grad { w.clone() } else { w.detach() };
    let op = HeadLogprobs {
        logits,
        targets,
        positions: t,
        scored: n,
        scale: scale as f32,
        w_grad,
        moments: Default::default(),
    };
    let both = x2.apply_op2(&w, op)?;
    let logp = both.narrow(1, 0, 1)?.reshape((b, n))?;
    let entropy = both.narrow(1, 1, 1)?.detach().reshape((b, n))?;
    Ok((logp, entropy))
}

/// The node of [`head_logprobs`]: inputs x [b t, h] and W [V, h], output [b n, 2]
/// (log p, entropy). It holds the logits x Wᵀ (computed outside, detached) and the targets.
struct HeadLogprobs {
    /// [b t, V] contiguous.
    logits: Tensor,
    /// [b n].
    targets: Vec<u32>,
    positions: usize,
    scored: usize,
    scale: f32,
    w_grad: bool,
    /// Each scored row's (max, sum) from the forward pass, for the backward pass.
    moments: std::sync::Mutex<Vec<(f32, f32)>>,
}

impl HeadLogprobs {
    /// The logits' storage and where they start in it.
    fn logits(
        &self,
    ) -> Result<(
        impl std::ops::Deref<Target = candle_core::Storage> + '_,
        usize,
    )> {
        let (st, l) = self.logits.storage_and_layout();
        if !matches!(
            &*st,
            candle_core::Storage::Cpu(candle_core::CpuStorage::F32(_))
        ) {
            candle_core::bail!("head_logprobs: f32 CPU logits expected");
        }
        Ok((st, l.start_offset()))
    }

    /// The row of logits that scores target i.
    fn row_of(&self, i: usize) -> usize {
        (i / self.scored) * self.positions + i % self.scored
    }
}

/// A contiguous f32 CPU tensor's elements, read in place from what `storage_and_layout`
/// returns; `None` for any other storage or a strided layout.
pub fn f32_elems<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Option<&'a [f32]> {
    match storage {
        candle_core::Storage::Cpu(s) => fused::contiguous_f32(s, layout, "").ok(),
        _ => None,
    }
}

fn f32_slice(st: &candle_core::Storage) -> &[f32] {
    match st {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => v,
        _ => &[],
    }
}

impl candle_core::CustomOp2 for HeadLogprobs {
    fn name(&self) -> &'static str {
        "aha-head-logprobs"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let v = self.logits.dim(1)?;
        let (st, start) = self.logits()?;
        let all = &f32_slice(&st)[start..];
        let s = self.scale;
        let n = self.targets.len();
        let mut out = vec![0f32; 2 * n];
        let mut moments = vec![(0f32, 0f32); n];
        out.par_chunks_mut(2)
            .zip(moments.par_iter_mut())
            .enumerate()
            .with_min_len(8)
            .for_each(|(i, (o, m))| {
                let r = self.row_of(i);
                let row = &all[r * v..(r + 1) * v];
                let (scores, row_moments) = score_row(row, self.targets[i] as usize, s);
                o.copy_from_slice(&scores);
                *m = row_moments;
            });
        if let Ok(mut kept) = self.moments.lock() {
            *kept = moments;
        }
        Ok((candle_core::CpuStorage::F32(out), (n, 2).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        use rayon::prelude::*;
        let (rows, v) = self.logits.dims2()?;
        let g: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let mut dlogits = vec![0f32; rows * v];
        let kept = self.moments.lock().ok();
        let moments: &[(f32, f32)] = kept.as_deref().map_or(&[], |m| m.as_slice());
        {
            let (st, start) = self.logits()?;
            let all = &f32_slice(&st)[start..];
            let s = self.scale;
            dlogits
                .par_chunks_mut(v)
                .enumerate()
                .with_min_len(8)
                .for_each(|(r, o)| {
                    let (seq, pos) = (r / self.positions, r % self.positions);
                    if pos >= self.scored {
                        return;
                    }
                    let i = seq * self.scored + pos;
                    let row = &all[r * v..(r + 1) * v];
                    let m = moments.get(i).copied();
                    grad_row(o, row, self.targets[i] as usize, g[2 * i], s, m);
                });
        }
        let dlogits = Tensor::from_vec(dlogits, (rows, v), x.device())?;
        // The products candle's matmul backward takes for x Wᵀ (lhs x, rhs the view Wᵀ).
        let dx = dlogits.matmul(w)?;
        let dw = if self.w_grad {
            Some(x.t()?.matmul(&dlogits)?.t()?)
        } else {
            None
        };
        Ok((Some(dx), dw))
    }
}

/// A weight as the mode wants it: detached for inference, so that sampling with
/// trainable weights builds no autograd graph.
pub fn param(w: &Tensor, mode: Mode) -> Tensor {
    match mode {
        Mode::Inference => w.detach(),
        Mode::Train => w.clone(),
    }
}

/// A low-rank adapter (LoRA) on a [`Linear`]: adds `scale * (x A^T) B^T` to its output,
/// with `a` [r, in] and `b` [out, r].
#[derive(Debug, Clone)]
pub struct LoraWeights {
    pub a: Tensor,
    pub b: Tensor,
    /// lora_alpha / r (or / sqrt(r) with rsLoRA).
    pub scale: f64,
}

fn needs_dense(what: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "{what} needs dense weights, and this layer holds GGUF blocks: load the GGUF file \
         dense (Model::load_dense) instead"
    ))
}

/// How a linear layer's [out, in] weight is stored.
#[derive(Debug, Clone)]
pub enum Weight {
    /// A tensor in the compute dtype: trainable, and able to carry a LoRA adapter.
    Dense(Tensor),
    /// GGUF blocks, multiplied without dequantizing by [`QMat`]: inference only.
    Quantized {
        mat: Arc<QMat>,
        dims: (usize, usize),
    },
}

/// y = x W^T (+ b) (+ scale (x A^T) B^T with an adapter) for x [.., in], as one matmul over
/// the flattened leading dims. One type for every weight format: dense (f32/bf16/f16, FP8
/// dequantized on load) or GGUF blocks ([`Weight`]).
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    /// A LoRA adapter added to the output (dense weights only).
    pub lora: Option<LoraWeights>,
    /// The weight and bias get no gradient even in `Mode::Train` (the frozen base model of
    /// LoRA training): the backward pass computes only the input's gradient.
    pub frozen: bool,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Dense(weight),
            bias,
            lora: None,
            frozen: false,
        }
    }

    /// A linear layer on a quantized [out, in] weight (inference only).
    pub fn quantized(mat: Arc<QMat>, dims: (usize, usize), bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Quantized { mat, dims },
            bias,
            lora: None,
            frozen: false,
        }
    }

    /// (out, in).
    pub fn dims(&self) -> Result<(usize, usize)> {
        match &self.weight {
            Weight::Dense(w) => w.dims2(),
            Weight::Quantized { dims, .. } => Ok(*dims),
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, Weight::Quantized { .. })
    }

    /// The dense weight, or an error naming `what` needs it (training, adapters, merging).
    pub fn dense_weight(&self, what: &str) -> Result<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Ok(w),
            Weight::Quantized { .. } => Err(needs_dense(what)),
        }
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if let (Weight::Dense(w), None, Mode::Train, false) =
            (&self.weight, &self.lora, mode, self.frozen)
        {
            if fused::supported(x)
                && fused::supported(w)
                && self.bias.as_ref().is_none_or(fused::supported)
            {
                return fused::linear(x, w, self.bias.as_ref());
            }
        }
        let dims = x.dims().to_vec();
        let (lead, in_dim) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, in_dim[0]))?;
        let base_mode = if self.frozen { Mode::Inference } else { mode };
        let mut y = match (&self.weight, &self.lora) {
            (Weight::Quantized { mat, .. }, None) if mode == Mode::Inference => {
                mat.forward_from(&x2, Some(x.id()))?
            }
            (Weight::Quantized { .. }, _) => return Err(needs_dense("training or a LoRA adapter")),
            (Weight::Dense(w), lora) => {
                self.dense_forward(w, &x2, lora.as_ref(), mode, base_mode)?
            }
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&param(b, base_mode))?;
        }
        let mut out = lead.to_vec();
        out.push(y.dim(1)?);
        y.reshape(out)
    }

    /// Each layer on the same x, as `[l.forward(x, mode) for l in layers]`. Decoding a few rows
    /// with dense f32 weights and no adapters, one few-row pass computes them all (x
    /// transposed once, one hand-off to the threads), with the same bits.
    pub fn forward_all<const N: usize>(
        layers: [&Linear; N],
        x: &Tensor,
        mode: Mode,
    ) -> Result<[Tensor; N]> {
        if mode == Mode::Inference {
            if let Some(ys) = few_rows_all(&layers, x)? {
                return Ok(ys);
            }
            if let Some(ys) = quantized_all(&layers, x)? {
                return Ok(ys);
            }
        }
        let ys = layers
            .iter()
            .map(|l| l.forward(x, mode))
            .collect::<Result<Vec<_>>>()?;
        ys.try_into()
            .map_err(|_| candle_core::Error::Msg("forward_all: a layer's output is missing".into()))
    }

    fn dense_forward(
        &self,
        w: &Tensor,
        x2: &Tensor,
        lora: Option<&LoraWeights>,
        mode: Mode,
        base_mode: Mode,
    ) -> Result<Tensor> {
        Ok(match lora {
            Some(l) if self.frozen && fused_lora_ok(x2, w, l) => lora_matmul_t(x2, w, l, mode)?,
            lora => {
                let y = if self.frozen && mode == Mode::Train {
                    frozen_matmul_t(x2, w)?
                } else if mode == Mode::Inference && x2.dim(0)? == 1 {
                    one_row_matmul_t(x2, w)?
                } else if mode == Mode::Inference && (2..=few_rows::MAX_ROWS).contains(&x2.dim(0)?)
                {
                    few_rows_matmul_t(x2, w)?
                } else {
                    x2.matmul(&param(w, base_mode).t()?)?
                };
                match lora {
                    Some(l) => (y + lora_delta(x2, l, mode)?)?,
                    None => y,
                }
            }
        })
    }
}

/// Fewest weight rows in a part of [`one_row_matmul_t`]: the GEMM takes another kernel for
/// products of at most 256 outputs.
const ONE_ROW_PART: usize = 257;

/// x Wᵀ for one row x. candle's GEMM computes it as one dot product per output, all on the
/// calling thread; here W's rows are cut into parts of at least [`ONE_ROW_PART`], each a GEMM
/// call of its own, on every thread. Each output is the same dot product: the same bits.
fn one_row_matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let n = w.dim(0)?;
    let threads = rayon::current_num_threads();
    let parts = (n / ONE_ROW_PART).min(4 * threads);
    if threads < 2 || parts < 2 || !x.device().is_cpu() {
        return x.matmul(&w.t()?);
    }
    let (len, extra) = (n / parts, n % parts);
    let start = |i: usize| i * len + i.min(extra);
    let out: Vec<std::sync::OnceLock<Result<Tensor>>> =
        (0..parts).map(|_| Default::default()).collect();
    let task = |i: usize| {
        let part = w
            .narrow(0, start(i), start(i + 1) - start(i))
            .and_then(|p| x.matmul(&p.t()?));
        let _ = out[i].set(part);
    };
    if !crate::spin::run(parts, &task) {
        use rayon::prelude::*;
        (0..parts).into_par_iter().for_each(task);
    }
    let parts = out
        .into_iter()
        .map(|p| {
            p.into_inner()
                .unwrap_or_else(|| candle_core::bail!("a part was not computed"))
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// [`Linear::forward_all`]'s one pass, where every layer is a dense f32 weight without an
/// adapter (biases added after, as `forward` adds them) and the few-row kernel takes every
/// product; `None` elsewhere.
fn few_rows_all<const N: usize>(layers: &[&Linear; N], x: &Tensor) -> Result<Option<[Tensor; N]>> {
    let dims = x.dims().to_vec();
    let Some((&k, lead)) = dims.split_last() else {
        return Ok(None);
    };
    let rows: usize = lead.iter().product();
    fn dense(l: &Linear) -> Option<&Tensor> {
        match (&l.weight, &l.lora) {
            (Weight::Dense(w), None) if w.dtype() == DType::F32 && w.device().is_cpu() => Some(w),
            _ => None,
        }
    }
    let Some(ws) = layers.iter().map(|l| dense(l)).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    if x.dtype() != DType::F32 || !x.device().is_cpu() || !(2..=few_rows::MAX_ROWS).contains(&rows)
    {
        return Ok(None);
    }
    let x2 = x.reshape((rows, k))?.contiguous()?;
    let (xs, xl) = x2.storage_and_layout();
    let guards: Vec<_> = ws.iter().map(|w| w.storage_and_layout()).collect();
    // The biases go into the kernel's output pass (one addition each, as broadcast_add);
    // one that is not a contiguous f32 CPU vector declines the kernel.
    let bias_guards: Vec<_> = layers
        .iter()
        .map(|l| l.bias.as_ref().map(|b| b.storage_and_layout()))
        .collect();
    let mut parts: Vec<few_rows::Part> = Vec::with_capacity(N);
    for (((st, l), w), b) in guards.iter().zip(&ws).zip(&bias_guards) {
        let bias = match b.as_ref().map(|(bs, bl)| f32_elems(bs, bl)) {
            Some(None) => return Ok(None),
            other => other.flatten(),
        };
        match (f32_elems(st, l), w.dims2()) {
            (Some(w), Ok((n, wk))) if wk == k => parts.push(few_rows::Part { w, n, bias }),
            _ => return Ok(None),
        }
    }
    let Some(xv) = f32_elems(&xs, xl) else {
        return Ok(None);
    };
    let Some(ys) = few_rows::matmul_t_many(xv, rows, &parts, k) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(N);
    for (y, part) in ys.into_iter().zip(&parts) {
        let n = part.n;
        let y = Tensor::from_vec(y, (rows, n), x.device())?;
        let mut shape = lead.to_vec();
        shape.push(n);
        out.push(y.reshape(shape)?);
    }
    Ok(out.try_into().ok())
}

/// [`Linear::forward_all`] on quantized weights without adapters: [`QMat::forward_all`]'s one
/// hand-off, each bias added as [`Linear::forward`] adds it.
fn quantized_all<const N: usize>(layers: &[&Linear; N], x: &Tensor) -> Result<Option<[Tensor; N]>> {
    let mats: Option<Vec<&QMat>> = layers
        .iter()
        .map(|l| match (&l.weight, &l.lora) {
            (Weight::Quantized { mat, .. }, None) => Some(&**mat),
            _ => None,
        })
        .collect();
    let Some(mats) = mats else {
        return Ok(None);
    };
    let Some(ys) = QMat::forward_all(&mats, x, Some(x.id()))? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(N);
    for (y, l) in ys.into_iter().zip(layers) {
        out.push(match &l.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        });
    }
    Ok(out.try_into().ok())
}

/// Up to this many rows, a product the few-row kernel does not take is computed as (W xᵀ)ᵀ.
const FEW_ROWS: usize = 16;

/// x Wᵀ for 2 to 32 rows x (decode, a routed expert's tokens): the few-row kernel (AVX-512, AVX2)
/// where it applies, else for up to 16 rows (W xᵀ)ᵀ (the GEMM then packs the small xᵀ
/// instead of all of W at every call: that packing was 57% of a batch-32 MoE decode step),
/// else the plain product. Each output is the same sum in the same order: the same bits
/// (tested).
fn few_rows_matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.dtype() == DType::F32 && w.dtype() == DType::F32 && x.device().is_cpu() {
        let ((rows, k), (n, _)) = (x.dims2()?, w.dims2()?);
        let x = x.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        if let (Some(xv), Some(wv)) = (f32_elems(&xs, xl), f32_elems(&ws, wl)) {
            if let Some(y) = few_rows::matmul_t(xv, rows, wv, n, k) {
                return Tensor::from_vec(y, (rows, n), x.device());
            }
        }
    }
    if x.dim(0)? > FEW_ROWS {
        return x.matmul(&w.t()?);
    }
    let y = w.matmul(&x.t()?)?;
    if y.dtype() == DType::F32 && y.device().is_cpu() {
        // candle's strided copy walks the [n, m] transpose one element at a time (as long as
        // the product itself for a 128k-row output head).
        return y.apply_op1_no_bwd(&TransposeNarrow);
    }
    y.t()?.contiguous()
}

/// [n, m] -> [m, n] for a contiguous f32 matrix with few columns m: each input row is read
/// once and scattered to m output rows (a copy: the same bits as `t().contiguous()`).
struct TransposeNarrow;

impl candle_core::CustomOp1 for TransposeNarrow {
    fn name(&self) -> &'static str {
        "transpose-narrow"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (n, m) = layout.shape().dims2()?;
        let candle_core::CpuStorage::F32(v) = storage else {
            candle_core::bail!("transpose: f32 expected");
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("transpose: input not contiguous");
        };
        let x = &v[a..b];
        let mut out = vec![0f32; n * m];
        if m > 0 {
            for (i, row) in x.chunks_exact(m).enumerate() {
                for (j, &val) in row.iter().enumerate() {
                    out[j * n + i] = val;
                }
            }
        }
        Ok((candle_core::CpuStorage::F32(out), (m, n).into()))
    }
}

/// A token embedding table [vocab, hidden]: dense, or GGUF blocks whose rows are
/// dequantized as they are looked up.
#[derive(Debug, Clone)]
pub enum Embedding {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

impl Embedding {
    /// Rows of the flat ids `[n]` -> `[n, hidden]`.
    pub fn forward(&self, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        match self {
            Self::Dense(w) => param(w, mode).index_select(ids, 0),
            Self::Quantized(q) => q.embedding(ids),
        }
    }

    /// The same table as an output head (tied word embeddings): shares the weight.
    pub fn as_head(&self, kernels: Kernels) -> Result<Linear> {
        Ok(match self {
            Self::Dense(w) => Linear::new(w.clone(), None),
            Self::Quantized(q) => {
                let (v, h) = q.shape().dims2()?;
                Linear::quantized(Arc::new(QMat::new(q.clone(), kernels)?), (v, h), None)
            }
        })
    }
}

/// `scale (x A^T) B^T` with plain ops (other dtypes and devices).
fn lora_delta(x: &Tensor, l: &LoraWeights, mode: Mode) -> Result<Tensor> {
    let a = param(&l.a, mode);
    let b = param(&l.b, mode);
    (x.matmul(&a.t()?)? * l.scale)?.matmul(&b.t()?)
}

fn fused_lora_ok(x: &Tensor, w: &Tensor, l: &LoraWeights) -> bool {
    [x, w, &l.a, &l.b].into_iter().all(crate::fused::supported)
}

/// `x W^T + scale (x A^T) B^T` for x [m, k], a frozen W [n, k], A [r, k], B [n, r], as one
/// op: the autograd graph gets one node per adapted layer (not five [m, n] intermediates),
/// and the backward pass computes the gradients of x, A and B only. f32 on CPU.
fn lora_matmul_t(x: &Tensor, w: &Tensor, l: &LoraWeights, mode: Mode) -> Result<Tensor> {
    let op = LoraMatmul {
        w: w.detach(),
        scale: l.scale,
    };
    let (x, a, b) = (x.contiguous()?, l.a.contiguous()?, l.b.contiguous()?);
    match mode {
        Mode::Train => x.apply_op3(&a, &b, op),
        Mode::Inference => x.apply_op3_no_bwd(&a, &b, &op),
    }
}

struct LoraMatmul {
    /// Detached [n, k].
    w: Tensor,
    scale: f64,
}

impl candle_core::CustomOp3 for LoraMatmul {
    fn name(&self) -> &'static str {
        "lora-matmul-t"
    }

    fn cpu_fwd(
        &self,
        xs: &candle_core::CpuStorage,
        xl: &candle_core::Layout,
        a_s: &candle_core::CpuStorage,
        al: &candle_core::Layout,
        b_s: &candle_core::CpuStorage,
        bl: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::CpuStorage;
        let (m, k) = xl.shape().dims2()?;
        let (n, k2) = self.w.dims2()?;
        let (r, k3) = al.shape().dims2()?;
        let (n2, r2) = bl.shape().dims2()?;
        if k != k2 || k != k3 || n != n2 || r != r2 {
            candle_core::bail!(
                "lora matmul: x [{m}, {k}], w [{n}, {k2}], a [{r}, {k3}], b [{n2}, {r2}]"
            );
        }
        let wt = self.w.t()?;
        let (ws, wl) = wt.storage_and_layout();
        let candle_core::Storage::Cpu(wc) = &*ws else {
            candle_core::bail!("lora matmul: weight is not on the CPU");
        };
        let y = xs.matmul(wc, (1, m, n, k), xl, wl)?;
        let xa = xs.matmul(a_s, (1, m, r, k), xl, &al.transpose(0, 1)?)?;
        let d = xa.matmul(
            b_s,
            (1, m, n, r),
            &candle_core::Layout::contiguous((m, r)),
            &bl.transpose(0, 1)?,
        )?;
        let (CpuStorage::F32(mut y), CpuStorage::F32(d)) = (y, d) else {
            candle_core::bail!("lora matmul: f32 only");
        };
        let s = self.scale as f32;
        y.iter_mut().zip(&d).for_each(|(y, d)| *y += s * d);
        Ok((CpuStorage::F32(y), candle_core::Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, a, b, g) = (x.detach(), a.detach(), b.detach(), g.detach());
        // With d = g B [m, r]: dx = g W + s d A, dA = s d^T x, dB = s g^T (x A^T).
        let gb = g.matmul(&b)?;
        let dx = (g.matmul(&self.w)? + (gb.matmul(&a)? * self.scale)?)?;
        let da = (gb.t()?.matmul(&x)? * self.scale)?;
        let xa = x.matmul(&a.t()?)?;
        let db = (g.t()?.matmul(&xa)? * self.scale)?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}

/// x W^T for x [m, k] and a frozen weight W [n, k]: differentiable in x only. candle's
/// matmul backward always computes the gradient of both operands; this op skips the
/// weight's (half the backward matmul work of a frozen layer, and no [n, k] gradient kept
/// in the store). f32 on CPU; other dtypes and devices fall back to a detached matmul.
pub fn frozen_matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let w = w.detach();
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return x.matmul(&w.t()?);
    }
    x.contiguous()?
        .apply_op1_arc(std::sync::Arc::new(Box::new(FrozenMatmul { w })))
}

struct FrozenMatmul {
    /// Detached [n, k].
    w: Tensor,
}

impl candle_core::CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul-t"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        let (m, k) = layout.shape().dims2()?;
        let (n, k2) = self.w.dims2()?;
        if k != k2 {
            candle_core::bail!("frozen matmul: x is [{m}, {k}], w is [{n}, {k2}]");
        }
        let wt = self.w.t()?;
        let (ws, wl) = wt.storage_and_layout();
        let candle_core::Storage::Cpu(wc) = &*ws else {
            candle_core::bail!("frozen matmul: weight is not on the CPU");
        };
        let out = storage.matmul(wc, (1, m, n, k), layout, wl)?;
        Ok((out, candle_core::Shape::from((m, n))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.w)?))
    }
}

/// The SwiGLU feed-forward block: down(silu(gate(x)) * up(x)).
#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let [gate, up] = Linear::forward_all([&self.gate, &self.up], x, mode)?;
        // f32 on the CPU: silu and the product in one vectorized pass (with its own backward
        // when training), the same forward bits in rollouts and in the training pass.
        let hidden = match mode {
            _ if !(fused::supported(&gate) && fused::supported(&up)) => {
                (candle_nn::ops::silu(&gate)? * up)?
            }
            Mode::Train => fused::swiglu(&gate, &up)?,
            Mode::Inference => fused::swiglu_no_grad(&gate, &up)?,
        };
        self.down.forward(&hidden, mode)
    }
}

simd_variants! {
    /// silu(a) * b, element by element.
    pub(crate) fn silu_mul(a: &[f32], b: &[f32], out: &mut [f32])
        = silu_mul_any for {
            silu_mul_avx512: "avx512f,avx2",
            silu_mul_avx2: "avx2",
        }
}

/// sigmoid(x) from e^-|x| (no overflow): 1 / (1 + e) for x >= 0, e / (1 + e) below.
#[inline(always)]
fn silu_mul_any(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let e = exp_nonpositive(-x.abs());
        let num = if x >= 0.0 { 1.0 } else { e };
        *o = x * num / (1.0 + e) * y;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The values' bit patterns: the tests compare paths bit for bit.
    pub(crate) fn slice_bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// [`slice_bits`] of a tensor's values.
    pub(crate) fn bits(t: &Tensor) -> Vec<u32> {
        slice_bits(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
    }

    /// The fused silu(a) * b of GGUF models against candle's silu and product, from deep
    /// negatives (where e^x underflows) to large positives.
    #[test]
    fn silu_mul_matches_candle() {
        let dev = Device::Cpu;
        let a: Vec<f32> = (0..10_000).map(|i| (i as f32 - 5_000.0) * 0.021).collect();
        let b: Vec<f32> = (0..10_000).map(|i| 1.0 + (i % 7) as f32 * 0.5).collect();
        let (a, b) = (
            Tensor::from_vec(a, (100, 100), &dev).unwrap(),
            Tensor::from_vec(b, (100, 100), &dev).unwrap(),
        );
        let fused = fused::swiglu_no_grad(&a, &b).unwrap();
        let plain = (candle_nn::ops::silu(&a).unwrap() * &b).unwrap();
        let fused = fused.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let plain = plain.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
            assert!(
                (f - p).abs() <= 2e-6 * p.abs().max(1e-3),
                "element {i}: fused {f}, candle {p}"
            );
        }
    }

    /// The moments as first written: one 8-lane pass, exponentials 8 at a time.
    fn row_moments_eight(x: &[f32], s: f32) -> (f32, f32, f32) {
        let max = s * max_lanes(x);
        let (mut se, mut sez) = ([0f32; 8], [0f32; 8]);
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for k in 0..8 {
                let z = s * c[k];
                let e = exp_nonpositive(z - max);
                se[k] += e;
                sez[k] += e * z;
            }
        }
        let (mut sum, mut sum_z) = (se.iter().sum::<f32>(), sez.iter().sum::<f32>());
        for &v in chunks.remainder() {
            let z = s * v;
            let e = exp_nonpositive(z - max);
            sum += e;
            sum_z += e * z;
        }
        (max, sum, sum_z)
    }

    /// The AVX2 and AVX-512 builds of the row kernels give the baseline build's bits, and
    /// the moments those of their first 8-wide form (the training log-probs and the
    /// rollouts' softmax must not move with the CPU or with the kernels' speed).
    #[test]
    fn row_kernels_give_the_same_bits_on_every_isa() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 40.0
        };
        for n in [1usize, 7, 8, 9, 16, 24, 100, 4099, 4104] {
            let mut row: Vec<f32> = (0..n).map(|_| next()).collect();
            if n > 50 {
                row[3] = f32::NEG_INFINITY;
                row[11] = -1e9;
            }
            let plain = row_moments_any(&row, 0.7);
            let first = row_moments_eight(&row, 0.7);
            let b3 = |m: (f32, f32, f32)| [m.0.to_bits(), m.1.to_bits(), m.2.to_bits()];
            assert_eq!(b3(plain), b3(first), "n = {n}");
            let (c, max, sum) = (-0.3f32, plain.0, plain.1);
            let mut want = vec![0f32; n];
            scaled_softmax_any(&mut want, &row, 0.7, max, c);
            let mut got = vec![0f32; n];
            scaled_softmax_into(&mut got, &row, 0.7, max, c);
            assert_eq!(slice_bits(&got), slice_bits(&want), "n = {n}");
            #[cfg(target_arch = "x86_64")]
            if crate::qkernels::Isa::detected() >= crate::qkernels::Isa::Avx512 {
                // SAFETY: AVX-512 detected.
                let wide = unsafe { row_moments_avx512(&row, 0.7) };
                assert_eq!(b3(wide), b3(plain), "n = {n}");
                assert!(sum > 0.0);
            }
            let mut a = vec![0f32; n];
            let mut b = vec![0f32; n];
            softmax_row_any(&row, &mut a);
            let max_fold = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            assert_eq!(max_lanes(&row).to_bits(), max_fold.to_bits(), "n = {n}");
            #[cfg(target_arch = "x86_64")]
            if crate::qkernels::Isa::detected() >= crate::qkernels::Isa::Avx2 {
                // SAFETY: AVX2 detected.
                let fast = unsafe { row_moments_avx2(&row, 0.7) };
                assert_eq!(
                    [fast.0.to_bits(), fast.1.to_bits(), fast.2.to_bits()],
                    [plain.0.to_bits(), plain.1.to_bits(), plain.2.to_bits()],
                    "n = {n}"
                );
                unsafe { softmax_row_avx2(&row, &mut b) };
                assert_eq!(slice_bits(&a), slice_bits(&b), "n = {n}");
            }
        }
    }

    /// The few-rows product equals the plain one to the bit (else inference would drift
    /// from the documented runs when a batch shrinks).
    /// One row against W cut into parts on several threads: the plain product's bits.
    #[test]
    fn one_row_product_gives_the_same_bits() {
        let dev = Device::Cpu;
        for (k, n) in [
            (64, 300),
            (512, 513),
            (512, 514),
            (96, 1000),
            (1408, 4099),
            (512, 32000),
        ] {
            let x = Tensor::randn(0f32, 1.0, (1, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let plain = bits(&x.matmul(&w.t().unwrap()).unwrap());
            assert_eq!(
                bits(&one_row_matmul_t(&x, &w).unwrap()),
                plain,
                "k={k} n={n}"
            );
        }
    }

    #[test]
    fn few_rows_product_gives_the_same_bits() {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (1, 512, 1536),
            (3, 512, 256),
            (8, 256, 512),
            (16, 1408, 512),
            (5, 64, 300),
            (2, 96, 3000),
            (4, 64, 100),
            (24, 576, 1000),
            (32, 128, 200),
        ] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let plain = bits(&x.matmul(&w.t().unwrap()).unwrap());
            assert_eq!(
                bits(&few_rows_matmul_t(&x, &w).unwrap()),
                plain,
                "m={m} k={k} n={n}"
            );
        }
    }

    /// `Linear::forward_all` gives each layer's `forward` bits: q, k and v with biases, at the
    /// row counts the one-pass path takes and at those it leaves to `forward` (one row, more
    /// than 32), and with an adapter on one layer.
    #[test]
    fn forward_all_gives_each_layers_bits() {
        let dev = Device::Cpu;
        let layer = |n: usize, bias: bool| {
            let w = Tensor::randn(0f32, 1.0, (n, 512), &dev).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1.0, n, &dev).unwrap());
            Linear::new(w, b)
        };
        let (q, k) = (layer(512, true), layer(256, true));
        let mut v = layer(256, false);
        for rows in [1usize, 2, 17, 32, 33] {
            let x = Tensor::randn(0f32, 1.0, (rows, 1, 512), &dev).unwrap();
            let all = Linear::forward_all([&q, &k, &v], &x, Mode::Inference).unwrap();
            for (y, l) in all.iter().zip([&q, &k, &v]) {
                let alone = l.forward(&x, Mode::Inference).unwrap();
                assert_eq!(y.dims(), alone.dims(), "rows={rows}");
                assert_eq!(bits(y), bits(&alone), "rows={rows}");
            }
        }
        v.lora = Some(LoraWeights {
            a: Tensor::randn(0f32, 1.0, (4, 512), &dev).unwrap(),
            b: Tensor::randn(0f32, 1.0, (256, 4), &dev).unwrap(),
            scale: 0.5,
        });
        let x = Tensor::randn(0f32, 1.0, (32, 512), &dev).unwrap();
        let all = Linear::forward_all([&q, &v], &x, Mode::Inference).unwrap();
        assert_eq!(
            bits(&all[1]),
            bits(&v.forward(&x, Mode::Inference).unwrap())
        );
    }

    #[test]
    fn fast_exp_is_within_a_few_ulp() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let z = -90.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_nonpositive(z), z.exp());
            if z < -87.0 {
                assert_eq!(got, 0.0, "{z}");
            } else {
                worst = worst.max((got - want).abs() / want);
            }
        }
        assert!(worst < 5e-7, "max relative error {worst}");
        assert!(exp_nonpositive(f32::NAN).is_nan());
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    /// Reading 2^n from the rounding constant's bits gives the bits of the first form
    /// (`n as i32`) for every z: a sweep of all floats in [-100, 0] at a stride, and the edges.
    #[test]
    fn exp_gives_the_bits_of_its_first_form() {
        fn first(z: f32) -> f32 {
            let zc = z.max(-87.0);
            let n = (zc * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
            let r = (zc - n * 0.693_145_75) - n * 1.428_606_8e-6;
            let p = 1.0
                + r * (1.0
                    + r * (0.5
                        + r * (1.0 / 6.0
                            + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
            let e = p * f32::from_bits(((n as i32 + 127) as u32) << 23);
            if z >= -87.0 {
                e
            } else if z.is_nan() {
                z
            } else {
                0.0
            }
        }
        let (lo, hi) = ((-100f32).to_bits(), (-0f32).to_bits());
        let mut zs: Vec<f32> = (hi..=lo).step_by(97).map(f32::from_bits).collect();
        zs.extend([
            0.0,
            -0.0,
            -87.0,
            -87.000_01,
            f32::NEG_INFINITY,
            -f32::MIN_POSITIVE,
        ]);
        for z in zs {
            assert_eq!(exp_nonpositive(z).to_bits(), first(z).to_bits(), "z = {z}");
        }
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_matches_candles_with_masked_scores() {
        let dev = Device::Cpu;
        let x = var((37, 129), 3).as_tensor().clone();
        // A causal-style mask: the upper part of each row at MASK_VALUE.
        let mask: Vec<f32> = (0..37 * 129)
            .map(|i| {
                if i % 129 > 60 + i / 129 {
                    MASK_VALUE as f32
                } else {
                    0.0
                }
            })
            .collect();
        let x = (x * 8.0).unwrap() + Tensor::from_vec(mask, (37, 129), &dev).unwrap();
        let x = x.unwrap();
        let got = softmax(&x, Mode::Inference).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }

    fn var(shape: (usize, usize), seed: u64) -> Var {
        random_var(&[shape.0, shape.1], seed, 1.0)
    }

    /// Values in [-scale / 2, scale / 2) from a fixed LCG stream.
    pub(crate) fn random_var(dims: &[usize], seed: u64, scale: f32) -> Var {
        let n: usize = dims.iter().product();
        let mut z = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                z = z
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                scale * (((z >> 40) as f32 / (1u64 << 24) as f32) - 0.5)
            })
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    pub(crate) fn diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The fused LoRA and frozen-weight ops against the same maths in plain candle ops:
    /// outputs and the gradients of x, A and B; the weight gets none.
    #[test]
    fn fused_ops_match_plain_ops_and_their_gradients() {
        let (x, w, a, b) = (
            var((5, 6), 1),
            var((4, 6), 2),
            var((3, 6), 3),
            var((4, 3), 4),
        );
        let l = LoraWeights {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale: 1.5,
        };
        let up = var((4, 1), 5); // a non-uniform loss weighting
        let loss = |y: &Tensor| {
            y.sqr()
                .unwrap()
                .matmul(up.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let fused = lora_matmul_t(x.as_tensor(), w.as_tensor(), &l, Mode::Train).unwrap();
        let plain = (x
            .as_tensor()
            .matmul(&w.as_tensor().detach().t().unwrap())
            .unwrap()
            + lora_delta(x.as_tensor(), &l, Mode::Train).unwrap())
        .unwrap();
        assert!(diff(&fused, &plain) < 1e-6);
        let inf = lora_matmul_t(x.as_tensor(), w.as_tensor(), &l, Mode::Inference).unwrap();
        assert!(diff(&inf, &plain) < 1e-6);
        let (gf, gp) = (
            loss(&fused).backward().unwrap(),
            loss(&plain).backward().unwrap(),
        );
        for (name, v) in [("x", &x), ("a", &a), ("b", &b)] {
            let (f, p) = (
                gf.get(v.as_tensor()).unwrap(),
                gp.get(v.as_tensor()).unwrap(),
            );
            assert!(diff(f, p) < 1e-5, "{name}: {}", diff(f, p));
        }
        assert!(gf.get(w.as_tensor()).is_none());
        let frozen = frozen_matmul_t(x.as_tensor(), w.as_tensor()).unwrap();
        let plain = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        assert!(diff(&frozen, &plain) < 1e-6);
        let (gf, gp) = (
            loss(&frozen).backward().unwrap(),
            loss(&plain).backward().unwrap(),
        );
        let (f, p) = (
            gf.get(x.as_tensor()).unwrap(),
            gp.get(x.as_tensor()).unwrap(),
        );
        assert!(diff(f, p) < 1e-5);
        assert!(gf.get(w.as_tensor()).is_none() && gp.get(w.as_tensor()).is_some());
    }

    /// The head's fused log-probs against the composed path (head, narrow, token_logprobs):
    /// the same bits for the log-probs, the entropies and the gradients of x and W, for a
    /// trainable and a frozen head, few (<= 16) and many rows, all or some positions scored.
    #[test]
    fn head_logprobs_give_the_composed_paths_bits() {
        let dev = Device::Cpu;
        for (b, t, n, h, vocab, frozen, scale) in [
            (3usize, 7usize, 6usize, 32usize, 301usize, false, 1.0),
            (2, 4, 4, 16, 97, false, 1.0 / 0.7),
            (4, 9, 5, 48, 1000, true, 1.0),
            (1, 3, 2, 8, 50, false, 1.0),
        ] {
            let x = var((b * t, h), 11);
            let x = Var::from_tensor(&x.as_tensor().reshape((b, t, h)).unwrap()).unwrap();
            let w = var((vocab, h), 12);
            let mut head = Linear::new(w.as_tensor().clone(), None);
            head.frozen = frozen;
            let targets: Vec<u32> = (0..b * n).map(|i| ((i * 53 + 7) % vocab) as u32).collect();
            let targets = Tensor::from_vec(targets, (b, n), &dev).unwrap();
            let weight: Vec<f32> = (0..b * n)
                .map(|i| {
                    if i % 5 == 4 {
                        0.0
                    } else {
                        0.3 + i as f32 / 7.0
                    }
                })
                .collect();
            let weight = Tensor::from_vec(weight, (b, n), &dev).unwrap();
            let composed = || {
                let logits = head.forward(x.as_tensor(), Mode::Train).unwrap();
                token_logprobs(&logits.narrow(1, 0, n).unwrap(), &targets, scale).unwrap()
            };
            let (lp, ent) =
                head_logprobs(x.as_tensor(), &head, &targets, scale, Mode::Train).unwrap();
            let (want_lp, want_ent) = composed();
            let case = format!("b={b} t={t} n={n} frozen={frozen}");
            assert_eq!(bits(&lp), bits(&want_lp), "log p, {case}");
            assert_eq!(bits(&ent), bits(&want_ent), "entropy, {case}");
            let g = (&lp * &weight)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gw = (&want_lp * &weight)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let dx = g.get(x.as_tensor()).unwrap();
            assert_eq!(bits(dx), bits(gw.get(x.as_tensor()).unwrap()), "dx, {case}");
            assert!(
                dx.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
            );
            match (g.get(w.as_tensor()), gw.get(w.as_tensor())) {
                (Some(f), Some(c)) => assert_eq!(bits(f), bits(c), "dW, {case}"),
                (None, None) => assert!(frozen),
                _ => panic!("W's gradient on one path only, {case}"),
            }
            let (lp, _) =
                head_logprobs(x.as_tensor(), &head, &targets, scale, Mode::Inference).unwrap();
            assert_eq!(bits(&lp), bits(&want_lp), "inference, {case}");
        }
    }

    #[test]
    fn fused_token_logprobs_match_composed_ops_with_gradients() {
        let dev = Device::Cpu;
        let (b, n, v) = (3usize, 5usize, 203usize);
        // Logits with a wide range (x 40) so that the max shift matters.
        let x = Var::from_tensor(
            &(var((b * n, v), 7).as_tensor() * 40.0)
                .unwrap()
                .reshape((b, n, v))
                .unwrap(),
        )
        .unwrap();
        let targets: Vec<u32> = (0..b * n).map(|i| ((i * 37 + 11) % v) as u32).collect();
        let t = Tensor::from_vec(targets, (b, n), &dev).unwrap();
        // A loss weight per position, zero at "padding".
        let w: Vec<f32> = (0..b * n)
            .map(|i| {
                if i % 4 == 3 {
                    0.0
                } else {
                    0.5 + i as f32 / 10.0
                }
            })
            .collect();
        let w = Tensor::from_vec(w, (b, n), &dev).unwrap();
        for scale in [1.0, 1.0 / 0.7] {
            let (lp, ent) = token_logprobs(x.as_tensor(), &t, scale).unwrap();
            let gf = (&lp * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let xs = (x.as_tensor() * scale).unwrap();
            let lsm = log_softmax(&xs).unwrap();
            let want = lsm
                .gather(&t.unsqueeze(2).unwrap(), 2)
                .unwrap()
                .squeeze(2)
                .unwrap();
            let want_ent = (lsm.exp().unwrap() * &lsm)
                .unwrap()
                .sum(2)
                .unwrap()
                .neg()
                .unwrap();
            let gc = (&want * &w).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(diff(&lp, &want) < 1e-4, "log p, scale {scale}");
            assert!(diff(&ent, &want_ent) < 1e-4, "entropy, scale {scale}");
            let (g1, g2) = (
                gf.get(x.as_tensor()).unwrap(),
                gc.get(x.as_tensor()).unwrap(),
            );
            assert!(diff(g1, g2) < 1e-5, "gradient, scale {scale}");
            assert!(
                g1.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.1
            );
        }
        // Out-of-vocabulary targets are an error, not a panic.
        let bad = Tensor::from_vec(vec![v as u32; b * n], (b, n), &dev).unwrap();
        assert!(token_logprobs(x.as_tensor(), &bad, 1.0).is_err());
    }
}
