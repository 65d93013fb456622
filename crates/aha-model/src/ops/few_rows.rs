//! x Wᵀ for a few rows of x (a decoding step of up to 32 sequences) and a dense f32 weight
//! W [n, k], with AVX-512 or AVX2: the rows of x transposed so that lane j of a few
//! registers holds row j's value at one k, each weight value broadcast against them, several
//! weight rows in flight. W is read once, in place (the GEMM packed all of it at every call),
//! and the result is written as [rows, n] directly.
//!
//! Each output is summed as candle's GEMM sums it: k cut into equal blocks of at most 512,
//! a chain fma(w, x, ..fma(w, x, 0)) over each block, the blocks' sums added in order. The
//! same bits (tested against the GEMM on every shape class this path takes, with each
//! instruction set the CPU has; below a few hundred outputs the GEMM takes other kernels, so
//! small products keep it).

use crate::qkernels::Isa;
use crate::spin::Disjoint;

/// At most this many rows of x.
pub const MAX_ROWS: usize = 32;

/// Fewest weight rows.
pub const MIN_N: usize = 256;

/// The GEMM's largest block of k: gemm-common 0.19 takes max(512, a value from the L1
/// cache's geometry that stays below 512 unless the L1 is more than 32-way), so 512 on
/// realistic x86 caches; the test fails if a machine or a gemm update differs.
const KC: usize = 512;

/// Weight rows per task.
const TASK_ROWS: usize = 256;

/// One weight of [`matmul_t_many`]: W [n, k], and a bias [n] added to its products.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub w: &'a [f32],
    pub n: usize,
    pub bias: Option<&'a [f32]>,
}

/// x [rows, k] times W [n, k] transposed, as [rows, n]; `None` without AVX2 or outside
/// 2..=MAX_ROWS rows and n >= MIN_N.
pub fn matmul_t(x: &[f32], rows: usize, w: &[f32], n: usize, k: usize) -> Option<Vec<f32>> {
    let part = Part { w, n, bias: None };
    matmul_t_many(x, rows, &[part], k).and_then(|mut ys| ys.pop())
}

/// x times each weight (W_i [n_i, k]) transposed, plus its bias, one [rows, n_i] each, in one
/// hand-off to the threads and with x transposed once (q, k and v; gate and up); each product
/// exactly as [`matmul_t`] computes it alone, the bias added to it as one f32 addition (as
/// candle's `broadcast_add` after the product). `None` unless every weight takes the kernel.
pub fn matmul_t_many(x: &[f32], rows: usize, ws: &[Part], k: usize) -> Option<Vec<Vec<f32>>> {
    matmul_t_with(Isa::detected(), x, rows, ws, k)
}

/// [`matmul_t_many`] with the kernels of `isa` (at most the detected set).
fn matmul_t_with(isa: Isa, x: &[f32], rows: usize, ws: &[Part], k: usize) -> Option<Vec<Vec<f32>>> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa >= Isa::Avx2
            && isa <= Isa::detected()
            && (2..=MAX_ROWS).contains(&rows)
            && k > 0
            && x.len() == rows * k
            && !ws.is_empty()
            && ws.iter().all(|p| {
                p.n >= MIN_N && p.w.len() == p.n * k && p.bias.is_none_or(|b| b.len() == p.n)
            })
        {
            return Some(run(isa, x, rows, ws, k));
        }
    }
    let _ = (isa, x, rows, ws, k);
    None
}

#[cfg(target_arch = "x86_64")]
fn run(isa: Isa, x: &[f32], rows: usize, ws: &[Part], k: usize) -> Vec<Vec<f32>> {
    use rayon::prelude::*;
    let width = if isa >= Isa::Avx512 { 16 } else { 8 };
    let lanes = rows.div_ceil(width) * width;
    // xt[kk * lanes + j] = x[j, kk]; lanes past `rows` zero.
    let mut xt: Vec<f32> = Vec::with_capacity(k * lanes);
    // SAFETY: AVX is part of `isa`; x is [rows, k] and xt has room for [k, lanes]; each of
    // its k * lanes values is written (rows by the transpose, the rest by the fill) before
    // the length is set.
    unsafe {
        transpose(x.as_ptr(), k, rows, k, xt.as_mut_ptr(), lanes, None);
        if rows < lanes {
            for kk in 0..k {
                // All-zero bits: 0.0.
                xt.as_mut_ptr()
                    .add(kk * lanes + rows)
                    .write_bytes(0, lanes - rows);
            }
        }
        xt.set_len(k * lanes);
    }
    // The tile kernel (R registers of rows, G weight rows at once) and its G. Each fills at
    // most the 32 (AVX-512) or 16 (AVX2) vector registers with its R x G accumulators and
    // either the R rows of x and a broadcast, or the G broadcasts and one register of x (AVX2
    // at 32 rows: twelve chains in flight; the 4 x 2 tile's eight sat at the FMA latency's
    // edge, 53 against 64 GFLOP/s on one thread).
    type Kernel = unsafe fn(&[f32], &[f32], usize, &mut [f32]);
    let (kernel, group): (Kernel, usize) = match (width, lanes) {
        (16, 32) => (tile_avx512::<2, 12, false>, 12),
        (16, _) => (tile_avx512::<1, 16, false>, 16),
        (_, 8) => (tile_avx2::<1, 14, false>, 14),
        (_, 16) => (tile_avx2::<2, 6, false>, 6),
        (_, 24) => (tile_avx2::<3, 4, false>, 4),
        _ => (tile_avx2::<4, 3, true>, 3),
    };
    // Each weight's tasks: at most TASK_ROWS rows, at least one per thread, in whole groups
    // (a [256, k] weight, an MoE expert's or k and v, was one task, leaving the other threads
    // waiting). Task t is weight i's task t - first[i].
    let threads = rayon::current_num_threads().max(1);
    let per: Vec<usize> = ws
        .iter()
        .map(|&Part { n, .. }| {
            let rounds = n.div_ceil(threads * TASK_ROWS);
            n.div_ceil(rounds * threads)
                .next_multiple_of(group)
                .min(TASK_ROWS)
        })
        .collect();
    let mut first = vec![0];
    for (&Part { n, .. }, &per) in ws.iter().zip(&per) {
        first.push(first[first.len() - 1] + n.div_ceil(per));
    }
    // Every element is written by exactly one task below; not zero-filled first.
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|p| Vec::with_capacity(rows * p.n)).collect();
    let dsts: Vec<Disjoint> = outs.iter_mut().map(|o| Disjoint(o.as_mut_ptr())).collect();
    let task = |t: usize| {
        let i = first.partition_point(|&f| f <= t) - 1;
        let (Part { w, n, bias }, per, t) = (ws[i], per[i], t - first[i]);
        let (v0, v1) = (t * per, ((t + 1) * per).min(n));
        let w = &w[v0 * k..v1 * k];
        let bias = bias.map(|b| b[v0..v1].as_ptr());
        // The kernel writes every value of the tile before it reads one: a reused buffer,
        // not a zeroed one per task (32 KiB, ~2% of a batch-32 decode step).
        super::with_scratch((v1 - v0) * lanes, |tile| {
            // SAFETY: `matmul_t_with` checked that the CPU has `isa` (AVX among it); the
            // slices have the checked sizes. Task t alone writes columns v0..v1 of each row
            // of its weight's output (all in bounds).
            unsafe {
                kernel(&xt, w, k, tile);
                transpose(tile.as_ptr(), lanes, v1 - v0, rows, dsts[i].at(v0), n, bias);
            }
        });
    };
    let tasks = first[ws.len()];
    if !crate::spin::run(tasks, &task) {
        (0..tasks).into_par_iter().for_each(task);
    }
    for (out, &Part { n, .. }) in outs.iter_mut().zip(ws) {
        // SAFETY: the tasks (all run, each to completion) wrote all rows * n elements.
        unsafe { out.set_len(rows * n) };
    }
    outs
}

/// `dst[j * dst_stride + i] = src[i * src_stride + j] (+ bias[i])` for i < ni and j < nj, in
/// 8 x 8 blocks through registers (a scalar copy, a strided read and a store per element, was
/// 5% of a batch-32 decode step for the tiles alone).
///
/// # Safety
/// AVX present; `src` readable and `dst` writable at every such index, `bias` readable at
/// every i.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose(
    src: *const f32,
    src_stride: usize,
    ni: usize,
    nj: usize,
    dst: *mut f32,
    dst_stride: usize,
    bias: Option<*const f32>,
) {
    use std::arch::x86_64::*;
    let (whole_i, whole_j) = (ni / 8 * 8, nj / 8 * 8);
    for i0 in (0..whole_i).step_by(8) {
        for j0 in (0..whole_j).step_by(8) {
            let r = |i: usize| _mm256_loadu_ps(src.add((i0 + i) * src_stride + j0));
            let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
            let (r4, r5, r6, r7) = (r(4), r(5), r(6), r(7));
            // Pairs of rows interleaved, then pairs of pairs: s_c holds column c of rows 0-3
            // (low half) and column c + 4 (high half), s_{c+4} the same for rows 4-7.
            let unpack = |a, b| (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            let shuffle = |a, b| {
                (
                    _mm256_shuffle_ps::<0x44>(a, b),
                    _mm256_shuffle_ps::<0xEE>(a, b),
                )
            };
            let ((t0, t1), (t2, t3)) = (unpack(r0, r1), unpack(r2, r3));
            let ((t4, t5), (t6, t7)) = (unpack(r4, r5), unpack(r6, r7));
            let ((s0, s1), (s2, s3)) = (shuffle(t0, t2), shuffle(t1, t3));
            let ((s4, s5), (s6, s7)) = (shuffle(t4, t6), shuffle(t5, t7));
            let columns = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            let add = bias.map(|b| _mm256_loadu_ps(b.add(i0)));
            for (c, &v) in columns.iter().enumerate() {
                let v = add.map_or(v, |b| _mm256_add_ps(v, b));
                _mm256_storeu_ps(dst.add((j0 + c) * dst_stride + i0), v);
            }
        }
    }
    let scalar = |i: usize, j: usize| {
        let v = *src.add(i * src_stride + j);
        *dst.add(j * dst_stride + i) = bias.map_or(v, |b| v + *b.add(i));
    };
    for i in 0..whole_i {
        (whole_j..nj).for_each(|j| scalar(i, j));
    }
    for i in whole_i..ni {
        (0..nj).for_each(|j| scalar(i, j));
    }
}

/// One tile kernel per instruction set, from one body: `$w` lanes per register of type `$v`.
macro_rules! tile_kernel {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $w:literal, $v:ty,
     $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident, $add:ident) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name<const R: usize, const G: usize, const HOLD_W: bool>(
            xt: &[f32],
            w: &[f32],
            k: usize,
            tile: &mut [f32],
        ) {
            use std::arch::x86_64::*;
            let n = w.len() / k;
            let lanes = $w * R;
            let xp = xt.as_ptr();
            let tp = tile.as_mut_ptr();
            let kc = k.div_ceil(k.div_ceil(KC));
            let mut i = 0;
            while i < n {
                let group = (n - i).min(G);
                let wp = w.as_ptr().add(i * k);
                // The next group's rows (contiguous) are fetched into L1 a line per step of
                // k while this group runs: the hardware prefetchers, following G row streams
                // a row apart, left the kernel waiting on memory (1.5-2x slower on weights
                // from DRAM).
                let next = wp.wrapping_add(G * k);
                let next_len = (n - i - group).min(G) * k;
                let mut k0 = 0;
                while k0 < k {
                    let k1 = (k0 + kc).min(k);
                    let mut acc: [[$v; R]; G] = [[$zero(); R]; G];
                    for kk in k0..k1 {
                        if kk * 16 < next_len {
                            _mm_prefetch::<_MM_HINT_T0>(next.add(kk * 16) as *const i8);
                        }
                        let x = |h: usize| $load(xp.add(kk * lanes + $w * h));
                        if group == G && HOLD_W {
                            let mut wv: [$v; G] = [$zero(); G];
                            for (r, v) in wv.iter_mut().enumerate() {
                                *v = $set1(*wp.add(r * k + kk));
                            }
                            for h in 0..R {
                                let xv = x(h);
                                for (a, &wv) in acc.iter_mut().zip(&wv) {
                                    a[h] = $fma(wv, xv, a[h]);
                                }
                            }
                            continue;
                        }
                        let mut xv: [$v; R] = [$zero(); R];
                        for (h, v) in xv.iter_mut().enumerate() {
                            *v = x(h);
                        }
                        if group == G {
                            for (r, a) in acc.iter_mut().enumerate() {
                                let wv = $set1(*wp.add(r * k + kk));
                                for h in 0..R {
                                    a[h] = $fma(wv, xv[h], a[h]);
                                }
                            }
                        } else {
                            for (r, a) in acc.iter_mut().enumerate().take(group) {
                                let wv = $set1(*wp.add(r * k + kk));
                                for h in 0..R {
                                    a[h] = $fma(wv, xv[h], a[h]);
                                }
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate().take(group) {
                        for (h, a) in a.iter().enumerate() {
                            let at = tp.add((i + r) * lanes + $w * h);
                            let sum = if k0 == 0 { *a } else { $add($load(at), *a) };
                            $store(at, sum);
                        }
                    }
                    k0 = k1;
                }
                i += group;
            }
        }
    };
}

tile_kernel!(
    /// tile[i * 16 R + j] = Σ_kk w[i, kk] x[j, kk] for the weight rows in `w` (at most
    /// TASK_ROWS) and the 16 R rows of x in `xt` ([k, 16 R]): a chain per block of k (the
    /// GEMM's equal blocks of at most KC), the blocks' sums added in order.
    tile_avx512, "avx512f", 16, __m512,
    _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,
    _mm512_add_ps
);

tile_kernel!(
    /// [`tile_avx512`] with 8-lane registers: the 8 R rows of x in `xt` ([k, 8 R]).
    tile_avx2, "avx2,fma", 8, __m256,
    _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
    _mm256_add_ps
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests::slice_bits;
    use candle_core::{Device, Tensor};

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Random W [n, k] for x, and x Wᵀ by candle's matmul (its GEMM).
    fn weight_and_product(x: &Tensor, n: usize) -> (Vec<f32>, Vec<f32>) {
        let w = Tensor::randn(0f32, 1.0, (n, x.dim(1).unwrap()), &Device::Cpu).unwrap();
        (flat(&w), flat(&x.matmul(&w.t().unwrap()).unwrap()))
    }

    /// Random x [rows, k] and W [n, k], and x Wᵀ by candle's matmul (its GEMM).
    fn case(rows: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = Tensor::randn(0f32, 1.0, (rows, k), &Device::Cpu).unwrap();
        let (w, want) = weight_and_product(&x, n);
        (flat(&x), w, want)
    }

    /// The same bits as candle's matmul (its GEMM) wherever the path is taken (one and two
    /// registers of rows, one and several blocks of k, odd sizes), and outside its bounds it
    /// is not taken.
    #[test]
    fn few_rows_product_gives_the_gemms_bits() {
        let isas: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Isa::detected())
            .collect();
        let mut cases = vec![(1, 64, 2000), (33, 64, 2000), (4, 64, 255)];
        for rows in [2usize, 3, 7, 8, 16, 17, 24, 25, 32] {
            for k in [
                1usize, 16, 100, 129, 512, 513, 576, 896, 1024, 1408, 2048, 4864,
            ] {
                for n in [256usize, 300, 512, 1031, 4099] {
                    cases.push((rows, k, n));
                }
            }
        }
        for (rows, k, n) in cases {
            let (xs, ws, want) = case(rows, k, n);
            for &isa in &isas {
                let got = matmul_t_with(
                    isa,
                    &xs,
                    rows,
                    &[Part {
                        w: &ws,
                        n,
                        bias: None,
                    }],
                    k,
                )
                .and_then(|mut y| y.pop());
                if !(2..=MAX_ROWS).contains(&rows) || n < MIN_N {
                    assert!(got.is_none(), "{isa:?} rows={rows} k={k} n={n}");
                    continue;
                }
                let got = got.unwrap();
                assert_eq!(
                    slice_bits(&got),
                    slice_bits(&want),
                    "{isa:?} rows={rows} k={k} n={n}"
                );
            }
        }
        assert!(
            matmul_t_with(
                Isa::Scalar,
                &[0.0; 2],
                2,
                &[Part {
                    w: &[0.0; 256],
                    n: 256,
                    bias: None
                }],
                1
            )
            .is_none(),
            "no kernel without AVX2"
        );
    }

    /// Several weights in one call: each product has the GEMM's bits, plus its bias as
    /// candle's `broadcast_add` adds it (q, k and v of different sizes, with and without a
    /// bias; gate and up), and a weight the kernel does not take, or a bias of the wrong
    /// length, sends the whole call back (`None`).
    #[test]
    fn many_weights_give_each_products_bits() {
        for (rows, k, ns) in [
            (32, 512, vec![512, 256, 256]),
            (8, 512, vec![256, 256]),
            (20, 129, vec![1031, 300, 4099]),
        ] {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &Device::Cpu).unwrap();
            // Every other weight has a bias; the expected output is candle's product + bias.
            // (weight, bias, expected output) of each part.
            type Case = (Vec<f32>, Option<Vec<f32>>, Vec<f32>);
            let cases: Vec<Case> = ns
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let (w, y) = weight_and_product(&x, n);
                    if i % 2 == 1 {
                        return (w, None, y);
                    }
                    let b = Tensor::randn(0f32, 1.0, n, &Device::Cpu).unwrap();
                    let y = Tensor::from_vec(y, (rows, n), &Device::Cpu).unwrap();
                    (w, Some(flat(&b)), flat(&y.broadcast_add(&b).unwrap()))
                })
                .collect();
            let parts: Vec<Part> = cases
                .iter()
                .zip(&ns)
                .map(|((w, b, _), &n)| Part {
                    w,
                    n,
                    bias: b.as_deref(),
                })
                .collect();
            let x = flat(&x);
            let Some(got) = matmul_t_many(&x, rows, &parts, k) else {
                continue;
            };
            assert_eq!(got.len(), ns.len());
            for (y, ((_, _, want), n)) in got.iter().zip(cases.iter().zip(&ns)) {
                assert_eq!(slice_bits(y), slice_bits(want), "rows={rows} k={k} n={n}");
            }
            let mut small = parts.clone();
            small.push(Part {
                w: &cases[0].0[..255 * k],
                n: 255,
                bias: None,
            });
            assert!(matmul_t_many(&x, rows, &small, k).is_none());
            let mut short_bias = parts.clone();
            short_bias[0].bias = Some(&cases[0].2[..ns[0] - 1]);
            assert!(matmul_t_many(&x, rows, &short_bias, k).is_none());
        }
    }

    /// The tasks depend on the thread count; whatever it is, they cover every output (which
    /// is not zero-filled first).
    #[test]
    fn every_output_is_written_at_any_thread_count() {
        for threads in [1, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (rows, n) in [
                (8, 256),
                (17, 256),
                (32, 256),
                (32, 300),
                (9, 1031),
                (32, 4099),
            ] {
                let k = 64;
                let (xs, ws, want) = case(rows, k, n);
                let Some(got) = pool.install(|| matmul_t(&xs, rows, &ws, n, k)) else {
                    continue;
                };
                assert_eq!(
                    slice_bits(&got),
                    slice_bits(&want),
                    "threads={threads} rows={rows} n={n}"
                );
            }
        }
    }
}
