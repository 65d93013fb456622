//! Inference attention for long prompts with AVX-512: one task per block of queries, each
//! kv head's keys transposed once for the block, scores in register tiles of four query rows
//! by 64 keys, an exact softmax per row over the keys the block may see, and the value
//! products in tiles of four rows by 64 lanes. No score tensor for the whole prompt, no copies
//! of the cache, and the output comes out in [b, t, h, d], the order the output projection
//! reads.

use super::{visible_end, with_attention_inputs, with_scratch, AttentionInputs, MASK_VALUE};
use candle_core::{Result, Tensor, D};

/// Queries per task.
const QUERY_BLOCK: usize = 16;

/// `attend` for inference on f32 CPU tensors: q [b, h, t, d], k/v [b, kv, T, d] (any strides,
/// last contiguous), bias [b, 1, 1, t, T] additive (0 or MASK_VALUE); the result as
/// [b, h, t, d] (a transposed view of [b, t, h, d]). `None` without AVX-512, or when the
/// inputs are not of that form (d a multiple of 16).
pub fn attend_prefill(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    kv_heads: usize,
) -> Result<Option<Tensor>> {
    #[cfg(target_arch = "x86_64")]
    if crate::qkernels::Isa::detected() >= crate::qkernels::Isa::Avx512 {
        return run(q, k, v, bias, kv_heads);
    }
    let _ = (q, k, v, bias, kv_heads);
    Ok(None)
}

#[cfg(target_arch = "x86_64")]
fn run(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    kv_heads: usize,
) -> Result<Option<Tensor>> {
    if !q.dim(D::Minus1)?.is_multiple_of(16) {
        return Ok(None);
    }
    let out = with_attention_inputs(q, k, v, bias, kv_heads, |a| {
        let AttentionInputs {
            b, h, t, d, total, ..
        } = *a;
        let width = total.next_multiple_of(16);
        let mut kt = vec![0f32; kv_heads * d * width];
        let mut out = vec![0f32; b * t * h * d];
        for (bi, out) in out.chunks_mut(t * h * d).enumerate() {
            let bias = &a.bias[bi * t * total..][..t * total];
            // Past the last key each query may see (at least 1: a query that sees nothing
            // gets the composed softmax's uniform average over its block's keys, never read).
            let ends: Vec<usize> = bias.chunks(total).map(|r| visible_end(r).max(1)).collect();
            // Every kv head's keys transposed once ([kv, d, width], zero past `total`) for
            // the score tiles, which broadcast one lane of a query against that lane of 16
            // keys.
            for (g, kt) in kt.chunks_mut(d * width).enumerate() {
                let k0 = a.k.head(bi, g);
                for j in 0..total {
                    let row = &a.k.buf[k0 + j * a.k.row..][..d];
                    for (i, &x) in row.iter().enumerate() {
                        kt[i * width + j] = x;
                    }
                }
            }
            let seq = Seq {
                q: &a.q[bi * h * t * d..][..h * t * d],
                bias,
                ends: &ends,
                kt: &kt,
                width,
                v: (a.v.buf, a.v.head(bi, 0), a.v.head, a.v.row),
                t,
                total,
                h,
                kv_heads,
                d,
            };
            let rows = h / kv_heads * QUERY_BLOCK;
            let scratch = rows * (d + width + 1);
            crate::spin::for_chunks(out, QUERY_BLOCK * h * d, |c, o| {
                with_scratch(scratch, |scratch| {
                    // SAFETY: AVX-512 F was detected (`Isa::detected`); `block` checks its
                    // lengths.
                    unsafe { avx512::block(&seq, c * QUERY_BLOCK, o, scratch) }
                })
            });
        }
        Tensor::from_vec(out, (b, t, h, d), q.device())
    })?;
    out.map(|o| o.transpose(1, 2)).transpose()
}

/// One sequence: its queries [h, t, d], bias rows [t, total], each query's visible end, the
/// transposed keys [kv, d, width], and the values as (buffer, offset of head 0 row 0, head
/// stride, row stride).
struct Seq<'a> {
    q: &'a [f32],
    bias: &'a [f32],
    ends: &'a [usize],
    kt: &'a [f32],
    width: usize,
    v: (&'a [f32], usize, usize, usize),
    t: usize,
    total: usize,
    h: usize,
    kv_heads: usize,
    d: usize,
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Seq, MASK_VALUE};
    use std::arch::x86_64::*;

    /// Queries `q0 ..` (at most `QUERY_BLOCK`, as many as `o` holds) of every head into `o`
    /// ([queries, h, d]); `scratch` holds at least rows x (d + width + 1) floats.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn block(s: &Seq, q0: usize, o: &mut [f32], scratch: &mut [f32]) {
        let (d, h, total) = (s.d, s.h, s.total);
        let tb = o.len() / (h * d);
        assert!(tb > 0 && q0 + tb <= s.t && o.len() == tb * h * d);
        let n_rep = h / s.kv_heads;
        let rows = n_rep * tb;
        let end = s.ends[q0..q0 + tb].iter().copied().max().unwrap_or(1);
        // Scores for keys 0 .. width (16 at a time); those past `end` are masked.
        let width = end.next_multiple_of(16);
        assert!(width <= s.width && s.kt.len() == s.kv_heads * d * s.width);
        let scale = 1.0 / (d as f32).sqrt();
        // Every element is written before it is read.
        let (qr, rest) = scratch.split_at_mut(rows * d);
        let (p, inv) = rest.split_at_mut(rows * width);
        let inv = &mut inv[..rows];
        for g in 0..s.kv_heads {
            // Row r = rep * tb + i: head g * n_rep + rep, query q0 + i; scaled as the
            // composed path scales q before its product.
            for (r, qrow) in qr.chunks_mut(d).enumerate() {
                let (rep, i) = (r / tb, r % tb);
                let src = &s.q[((g * n_rep + rep) * s.t + q0 + i) * d..][..d];
                qrow.iter_mut().zip(src).for_each(|(y, &x)| *y = x * scale);
            }
            let kt = &s.kt[g * d * s.width..][..d * s.width];
            scores(qr, kt, d, s.width, p);
            for (r, (pr, inv)) in p.chunks_mut(width).zip(inv.iter_mut()).enumerate() {
                let qi = q0 + r % tb;
                *inv = softmax_unnormalized(pr, &s.bias[qi * total..][..end]);
            }
            let (vs, v0, vh, vj) = s.v;
            let vbase = v0 + g * vh;
            assert!(vbase + (end - 1) * vj + d <= vs.len());
            values(p, width, end, (vs, vbase, vj), inv, qr);
            for (r, row) in qr.chunks(d).enumerate() {
                let (rep, i) = (r / tb, r % tb);
                o[(i * h + g * n_rep + rep) * d..][..d].copy_from_slice(row);
            }
        }
    }

    /// x + bias (masked past the bias), then e^(x - max) in place; returns 1 / the sum. `x`
    /// is a multiple of 16 long, `bias` at most as long.
    #[inline(always)]
    unsafe fn softmax_unnormalized(x: &mut [f32], bias: &[f32]) -> f32 {
        assert!(x.len().is_multiple_of(16) && bias.len() <= x.len());
        let masked = _mm512_set1_ps(MASK_VALUE as f32);
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for j in (0..x.len()).step_by(16) {
            let lanes = bias.len().saturating_sub(j).min(16);
            let m = ((1u32 << lanes) - 1) as __mmask16;
            let b = _mm512_mask_loadu_ps(masked, m, bias.as_ptr().add(j));
            let y = _mm512_add_ps(_mm512_loadu_ps(x.as_ptr().add(j)), b);
            _mm512_storeu_ps(x.as_mut_ptr().add(j), y);
            max = _mm512_max_ps(max, y);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = _mm512_setzero_ps();
        for j in (0..x.len()).step_by(16) {
            let e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(x.as_ptr().add(j)), max));
            _mm512_storeu_ps(x.as_mut_ptr().add(j), e);
            sum = _mm512_add_ps(sum, e);
        }
        1.0 / _mm512_reduce_add_ps(sum)
    }

    /// e^z for z <= 0 as `ops::exp_nonpositive` computes it (0 below -87), 16 lanes at once:
    /// the polynomial by fused multiply-adds, 2^n by `scalef`.
    #[inline(always)]
    unsafe fn exp_nonpositive(z: __m512) -> __m512 {
        const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let zc = _mm512_max_ps(z, _mm512_set1_ps(-87.0));
        let n = _mm512_roundscale_ps::<ROUND>(_mm512_mul_ps(
            zc,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), zc);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let e = _mm512_scalef_ps(p, n);
        let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(z, _mm512_set1_ps(-87.0));
        _mm512_maskz_mov_ps(keep, e)
    }

    /// p[r][j] = qr[r] . k_j for every row and j below p's width (kt is [d, stride]).
    #[inline(always)]
    unsafe fn scores(qr: &[f32], kt: &[f32], d: usize, stride: usize, p: &mut [f32]) {
        let rows = qr.len() / d;
        let width = p.len() / rows;
        assert!(kt.len() == d * stride && p.len() == rows * width && width <= stride);
        assert!(width.is_multiple_of(16));
        let mut j = 0;
        while j < width {
            let cols = if width - j >= 64 { 4 } else { 1 };
            let mut r = 0;
            while r < rows {
                let at = (r, j);
                match (rows - r >= 4, cols) {
                    (true, 4) => score_tile::<4, 4>(qr, kt, d, stride, width, p, at),
                    (true, _) => score_tile::<4, 1>(qr, kt, d, stride, width, p, at),
                    (false, 4) => score_tile::<1, 4>(qr, kt, d, stride, width, p, at),
                    (false, _) => score_tile::<1, 1>(qr, kt, d, stride, width, p, at),
                }
                r += if rows - r >= 4 { 4 } else { 1 };
            }
            j += 16 * cols;
        }
    }

    /// R rows by 16 C keys of `scores`, from (row r0, key j0), summed over d in registers.
    #[inline(always)]
    unsafe fn score_tile<const R: usize, const C: usize>(
        qr: &[f32],
        kt: &[f32],
        d: usize,
        stride: usize,
        width: usize,
        p: &mut [f32],
        (r0, j0): (usize, usize),
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let (q, k) = (qr.as_ptr().add(r0 * d), kt.as_ptr().add(j0));
        for i in 0..d {
            let mut kv = [_mm512_setzero_ps(); C];
            for (c, kv) in kv.iter_mut().enumerate() {
                *kv = _mm512_loadu_ps(k.add(i * stride + 16 * c));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let qb = _mm512_set1_ps(*q.add(r * d + i));
                for (a, &kv) in acc.iter_mut().zip(&kv) {
                    *a = _mm512_fmadd_ps(qb, kv, *a);
                }
            }
        }
        let out = p.as_mut_ptr().add(r0 * width + j0);
        for (r, acc) in acc.iter().enumerate() {
            for (c, &a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * width + 16 * c), a);
            }
        }
    }

    /// out[r] = inv[r] * sum over j < end of p[r][j] v_j, for every row r (out is [rows, d]).
    #[inline(always)]
    unsafe fn values(
        p: &[f32],
        width: usize,
        end: usize,
        v: (&[f32], usize, usize),
        inv: &[f32],
        out: &mut [f32],
    ) {
        let rows = p.len() / width;
        let d = out.len() / rows;
        assert!(inv.len() == rows && out.len() == rows * d && end <= width);
        let mut dc = 0;
        while dc < d {
            let cols = if d - dc >= 64 { 4 } else { 1 };
            let mut r = 0;
            while r < rows {
                let n = if rows - r >= 4 { 4 } else { 1 };
                let at = (r, dc);
                match (n, cols) {
                    (4, 4) => value_tile::<4, 4>(p, width, end, v, inv, out, at),
                    (4, _) => value_tile::<4, 1>(p, width, end, v, inv, out, at),
                    (_, 4) => value_tile::<1, 4>(p, width, end, v, inv, out, at),
                    _ => value_tile::<1, 1>(p, width, end, v, inv, out, at),
                }
                r += n;
            }
            dc += 16 * cols;
        }
    }

    /// R rows by 16 C lanes of `values`, from (row r0, lane dc), summed over keys in registers.
    #[inline(always)]
    unsafe fn value_tile<const R: usize, const C: usize>(
        p: &[f32],
        width: usize,
        end: usize,
        (vs, v0, vj): (&[f32], usize, usize),
        inv: &[f32],
        out: &mut [f32],
        (r0, dc): (usize, usize),
    ) {
        let d = out.len() / inv.len();
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let pp = p.as_ptr().add(r0 * width);
        let vp = vs.as_ptr().add(v0 + dc);
        for j in 0..end {
            let mut vv = [_mm512_setzero_ps(); C];
            for (c, vv) in vv.iter_mut().enumerate() {
                *vv = _mm512_loadu_ps(vp.add(j * vj + 16 * c));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let pb = _mm512_set1_ps(*pp.add(r * width + j));
                for (a, &vv) in acc.iter_mut().zip(&vv) {
                    *a = _mm512_fmadd_ps(pb, vv, *a);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let s = _mm512_set1_ps(inv[r0 + r]);
            let o = out.as_mut_ptr().add((r0 + r) * d + dc);
            for (c, &a) in acc.iter().enumerate() {
                _mm512_storeu_ps(o.add(16 * c), _mm512_mul_ps(a, s));
            }
        }
    }
}
