//! Quantized matmul `y[m, n] = x[m, k] · Wᵀ` on the CPU for the common GGUF block types,
//! faster than candle 0.11's kernels (scalar code for Q4_1/Q5_0/Q5_1, and for every type a
//! many-row path that re-reads the weights once per activation row).
//!
//! At load the weight blocks are repacked into one of two layouts of 32-weight blocks:
//! - *packed*: unsigned 4- or 5-bit codes `q` with an f32 scale `d` and offset `m` per block
//!   (a weight is `d * q + m`): Q4_0, Q4_1, Q5_0, Q5_1 and the 32-weight sub-blocks of Q4_K
//!   and Q5_K (their 6-bit sub-scales and mins folded into `d` and `m`). The 16 bytes of
//!   nibbles hold code j (low) and code j + 16 (high); the 5-bit types add 32 high bits.
//! - *signed*: i8 codes with an f32 scale per 32 weights (Q8_0) or per 16 (Q6_K).
//!
//! Each call quantizes every activation row once to 8 bits as llama.cpp does for the weight
//! type (Q8_0, Q8_1 or Q8_K), kept as blocks of 32 (a scale, 32 i8 codes and
//! `scale * Σ codes` for the offset term), then takes integer dot products: AVX2
//! (`maddubs`: unsigned times signed bytes; signed weights go through `sign` first) when
//! the CPU has it, a portable scalar loop otherwise. Work is split with rayon (the CLI's
//! `--threads` sets the pool): over chunks of W's rows for one activation row, over (tile of
//! 32 activation rows x chunk of W's rows) tasks for several, each unpacked weight block
//! then serving up to four activation rows at once.
//!
//! [`QMat`] wraps this next to candle's `QMatMul` (used for every other type, and for all
//! types with [`Kernels::Candle`]).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use half::f16;
use rayon::prelude::*;
use std::sync::Arc;

const QK: usize = 32;

/// The block types handled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl Kind {
    pub fn from_dtype(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_0 => Some(Self::Q4_0),
            GgmlDType::Q4_1 => Some(Self::Q4_1),
            GgmlDType::Q5_0 => Some(Self::Q5_0),
            GgmlDType::Q5_1 => Some(Self::Q5_1),
            GgmlDType::Q8_0 => Some(Self::Q8_0),
            GgmlDType::Q4K => Some(Self::Q4K),
            GgmlDType::Q5K => Some(Self::Q5K),
            GgmlDType::Q6K => Some(Self::Q6K),
            _ => None,
        }
    }

    /// Weights per GGUF block, and the block's bytes.
    fn block(self) -> (usize, usize) {
        match self {
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
        }
    }
}

/// Repacked blocks of 32 weights, row-major (`k / 32` per row).
enum Layout {
    Packed {
        /// Scale and offset.
        dm: Vec<[f32; 2]>,
        /// Byte j: code j (low nibble) and code j + 16 (high nibble).
        qs: Vec<[u8; 16]>,
        /// 5-bit types only: bit j is bit 4 of code j.
        qh: Vec<u32>,
    },
    Signed {
        /// `halves` scales per block: weights 0..16 and 16..32 (or one for all 32).
        d: Vec<f32>,
        halves: bool,
        qs: Vec<[i8; 32]>,
    },
}

/// A `[n, k]` quantized weight matrix, repacked for [`QWeight::matmul`].
pub struct QWeight {
    kind: Kind,
    n: usize,
    k: usize,
    layout: Layout,
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Packed nibbles and high bits of 32 codes (< 32).
fn pack(codes: &[u8; 32]) -> ([u8; 16], u32) {
    let mut qs = [0u8; 16];
    let mut qh = 0u32;
    for j in 0..16 {
        qs[j] = (codes[j] & 0x0F) | ((codes[j + 16] & 0x0F) << 4);
    }
    for (j, c) in codes.iter().enumerate() {
        qh |= (((c >> 4) & 1) as u32) << j;
    }
    (qs, qh)
}

/// Scale and min of sub-block `j` from a k-quant's 12 packed 6-bit scale bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Collects 32-weight blocks into a layout.
#[derive(Default)]
struct Packer {
    dm: Vec<[f32; 2]>,
    qs: Vec<[u8; 16]>,
    qh: Vec<u32>,
    sd: Vec<f32>,
    sq: Vec<[i8; 32]>,
}

impl Packer {
    fn packed(&mut self, d: f32, m: f32, codes: &[u8; 32], high: bool) {
        let (qs, qh) = pack(codes);
        self.dm.push([d, m]);
        self.qs.push(qs);
        if high {
            self.qh.push(qh);
        }
    }

    fn packed_raw(&mut self, d: f32, m: f32, nibbles: &[u8], qh: Option<u32>) {
        self.dm.push([d, m]);
        self.qs
            .push(nibbles.try_into().expect("16 bytes of nibbles"));
        if let Some(h) = qh {
            self.qh.push(h);
        }
    }

    fn signed(&mut self, d: &[f32], codes: [i8; 32]) {
        self.sd.extend_from_slice(d);
        self.sq.push(codes);
    }

    /// One GGUF block of `kind`.
    fn block(&mut self, kind: Kind, b: &[u8]) {
        match kind {
            Kind::Q4_0 => {
                let d = f16_at(b, 0);
                self.packed_raw(d, -8.0 * d, &b[2..18], None);
            }
            Kind::Q4_1 => self.packed_raw(f16_at(b, 0), f16_at(b, 2), &b[4..20], None),
            Kind::Q5_0 => {
                let d = f16_at(b, 0);
                let h = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                self.packed_raw(d, -16.0 * d, &b[6..22], Some(h));
            }
            Kind::Q5_1 => {
                let h = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                self.packed_raw(f16_at(b, 0), f16_at(b, 2), &b[8..24], Some(h));
            }
            Kind::Q8_0 => {
                let codes = std::array::from_fn(|j| b[2 + j] as i8);
                self.signed(&[f16_at(b, 0)], codes);
            }
            Kind::Q4K | Kind::Q5K => {
                // d, dmin, 12 scale bytes, (Q5_K: 32 bytes of high bits), 128 bytes of
                // nibbles: each 32 bytes hold sub-block 2c (low nibbles) and 2c + 1 (high).
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let five = kind == Kind::Q5K;
                let (qh, ql) = if five {
                    (&b[16..48], &b[48..176])
                } else {
                    (&b[0..0], &b[16..144])
                };
                for s in 0..8 {
                    let (sc, mn) = scale_min_k4(s, scales);
                    let bytes = &ql[(s / 2) * 32..(s / 2) * 32 + 32];
                    let codes: [u8; 32] = std::array::from_fn(|l| {
                        let lo = if s % 2 == 0 {
                            bytes[l] & 0x0F
                        } else {
                            bytes[l] >> 4
                        };
                        let hi = if five { (qh[l] >> s) & 1 } else { 0 };
                        lo | (hi << 4)
                    });
                    self.packed(d * sc as f32, -dmin * mn as f32, &codes, five);
                }
            }
            Kind::Q6K => {
                // 128 bytes of low nibbles, 64 of 2-bit highs, 16 i8 scales (one per 16
                // weights), d. Halves of 128: ql[l] / ql[l + 32] low and high nibbles, qh[l]
                // bits 0-1, 2-3, 4-5, 6-7 for weights l, l + 32, l + 64, l + 96.
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = f16_at(b, 208);
                for half in 0..2 {
                    let (ql, qh, sc) = (&ql[half * 64..], &qh[half * 32..], &sc[half * 8..]);
                    for part in 0..4 {
                        let codes = std::array::from_fn(|l| {
                            let lo = match part {
                                0 => ql[l] & 0x0F,
                                1 => ql[l + 32] & 0x0F,
                                2 => ql[l] >> 4,
                                _ => ql[l + 32] >> 4,
                            };
                            let hi = (qh[l] >> (2 * part)) & 3;
                            ((lo | (hi << 4)) as i8) - 32
                        });
                        let s = |i: usize| d * (sc[2 * part + i] as i8) as f32;
                        self.signed(&[s(0), s(1)], codes);
                    }
                }
            }
        }
    }

    fn finish(self, kind: Kind) -> Layout {
        match kind {
            Kind::Q8_0 | Kind::Q6K => Layout::Signed {
                d: self.sd,
                halves: kind == Kind::Q6K,
                qs: self.sq,
            },
            _ => Layout::Packed {
                dm: self.dm,
                qs: self.qs,
                qh: self.qh,
            },
        }
    }
}

impl QWeight {
    /// Repack raw GGUF blocks of a row-major `[n, k]` matrix (`k` a multiple of the
    /// type's block size).
    pub fn from_raw(kind: Kind, bytes: &[u8], n: usize, k: usize) -> Result<Self> {
        let (bw, bb) = kind.block();
        if !k.is_multiple_of(bw) {
            candle_core::bail!("qkernels: row length {k} is not a multiple of {bw} ({kind:?})");
        }
        let nblocks = n * (k / bw);
        if bytes.len() != nblocks * bb {
            candle_core::bail!(
                "qkernels: {kind:?} [{n}, {k}] needs {} bytes, got {}",
                nblocks * bb,
                bytes.len()
            );
        }
        let mut p = Packer::default();
        for blk in bytes.chunks_exact(bb) {
            p.block(kind, blk);
        }
        Ok(Self {
            kind,
            n,
            k,
            layout: p.finish(kind),
        })
    }

    /// Repack a rank-2 CPU `QTensor` of a handled type; `None` for anything else.
    pub fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        let Some(kind) = Kind::from_dtype(t.dtype()) else {
            return Ok(None);
        };
        let dims = t.shape().dims();
        if dims.len() != 2 || !dims[1].is_multiple_of(kind.block().0) || !t.device().is_cpu() {
            return Ok(None);
        }
        let data = t.data()?;
        Ok(Some(Self::from_raw(kind, &data, dims[0], dims[1])?))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// (n, k): output features and input features.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The weights as f32 `[n, k]`, row-major, from the repacked blocks (for tests).
    #[doc(hidden)]
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n * self.k);
        match &self.layout {
            Layout::Packed { dm, qs, qh } => {
                for (b, (&[d, m], q)) in dm.iter().zip(qs).enumerate() {
                    let h = qh.get(b).copied().unwrap_or(0);
                    for j in 0..32 {
                        let nib = if j < 16 { q[j] & 0x0F } else { q[j - 16] >> 4 };
                        let code = nib | ((((h >> j) & 1) as u8) << 4);
                        out.push(d * code as f32 + m);
                    }
                }
            }
            Layout::Signed { d, halves, qs } => {
                let per = if *halves { 2 } else { 1 };
                for (b, q) in qs.iter().enumerate() {
                    for (j, c) in q.iter().enumerate() {
                        let s = d[b * per + if *halves { j / 16 } else { 0 }];
                        out.push(s * *c as f32);
                    }
                }
            }
        }
        out
    }

    /// `y[m, n] = x[m, k] · Wᵀ` (row-major slices).
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        self.matmul_impl(x, m, y, simd_available())
    }

    /// [`QWeight::matmul`] with the portable scalar kernel only (for tests).
    #[doc(hidden)]
    pub fn matmul_scalar(&self, x: &[f32], m: usize, y: &mut [f32]) {
        self.matmul_impl(x, m, y, false)
    }

    fn matmul_impl(&self, x: &[f32], m: usize, y: &mut [f32], simd: bool) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "qkernels: x is not [m, k]");
        assert_eq!(y.len(), m * n, "qkernels: y is not [m, n]");
        if m == 0 || n == 0 {
            return;
        }
        let act = Q8Rows::quantize(x, m, k, self.kind.flavor());
        let threads = rayon::current_num_threads().max(1);
        // Enough chunks to balance the threads, none so small that scheduling dominates.
        let min_rows = if m == 1 { 32 } else { 8 };
        let chunk = n.div_ceil(threads * 4).max(min_rows).min(n);
        if m == 1 {
            for_chunks(y, chunk, threads, |c, out| {
                let j0 = c * chunk;
                self.rows_dot::<1, _>(j0..j0 + out.len(), &act, 0, simd, |j, r| out[j - j0] = r[0]);
            });
            return;
        }
        // Tasks: a tile of activation rows times a chunk of W's rows, each writing its own
        // block of y.
        const MT: usize = 32;
        let tiles = m.div_ceil(MT);
        let chunks = n.div_ceil(chunk);
        let y = SyncPtr(y.as_mut_ptr());
        let task = |t: usize| {
            let (i0, c) = (t / chunks * MT, t % chunks);
            let (i1, j0) = ((i0 + MT).min(m), c * chunk);
            let rows = j0..(j0 + chunk).min(n);
            let mut i = i0;
            while i < i1 {
                // SAFETY (all four): (i + r, j) lies in this task's block of the [m, n]
                // output, and the tasks' blocks are disjoint.
                let put = |i: usize| {
                    let y = &y;
                    move |j: usize, r: &[f32]| {
                        for (k, v) in r.iter().enumerate() {
                            unsafe { *y.at((i + k) * n + j) = *v };
                        }
                    }
                };
                let left = i1 - i;
                let w = rows.clone();
                match left {
                    1 => self.rows_dot::<1, _>(w, &act, i, simd, |j, r| put(i)(j, r)),
                    2 => self.rows_dot::<2, _>(w, &act, i, simd, |j, r| put(i)(j, r)),
                    3 => self.rows_dot::<3, _>(w, &act, i, simd, |j, r| put(i)(j, r)),
                    _ => self.rows_dot::<4, _>(w, &act, i, simd, |j, r| put(i)(j, r)),
                }
                i += left.min(4);
            }
        };
        if threads <= 1 {
            (0..tiles * chunks).for_each(task);
        } else {
            (0..tiles * chunks).into_par_iter().for_each(task);
        }
    }

    /// Dot products of weight rows `rows` with activation rows `i .. i + R`: `emit(j, dots)`.
    #[inline]
    fn rows_dot<const R: usize, F: FnMut(usize, &[f32; R])>(
        &self,
        rows: std::ops::Range<usize>,
        act: &Q8Rows,
        i: usize,
        simd: bool,
        emit: F,
    ) {
        let nb = self.k / QK;
        assert!(
            rows.end <= self.n && i + R <= act.m,
            "qkernels: rows out of range"
        );
        let xq: [&[i8]; R] = std::array::from_fn(|r| act.codes(i + r));
        let xd: [&[[f32; 2]]; R] = std::array::from_fn(|r| act.scales(i + r));
        let _ = simd;
        match &self.layout {
            Layout::Packed { dm, qs, qh } => {
                let high = !qh.is_empty();
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: `simd` is only true when AVX2 and FMA were detected at run
                    // time; the slice lengths are checked by the asserts in the kernel.
                    unsafe {
                        if high {
                            avx2::packed_dot::<R, true, F>(dm, qs, qh, nb, rows, &xq, &xd, emit);
                        } else {
                            avx2::packed_dot::<R, false, F>(dm, qs, qh, nb, rows, &xq, &xd, emit);
                        }
                    }
                    return;
                }
                scalar_packed_dot(dm, qs, qh, nb, rows, &xq, &xd, emit);
            }
            Layout::Signed { d, halves, qs } => {
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: as above.
                    unsafe {
                        if *halves {
                            avx2::signed_dot::<R, true, F>(d, qs, nb, rows, &xq, &xd, emit);
                        } else {
                            avx2::signed_dot::<R, false, F>(d, qs, nb, rows, &xq, &xd, emit);
                        }
                    }
                    return;
                }
                scalar_signed_dot(d, *halves, qs, nb, rows, &xq, &xd, emit);
            }
        }
    }
}

/// The output pointer shared by tasks that write disjoint elements.
struct SyncPtr(*mut f32);
// SAFETY: only used to write disjoint elements from different tasks (see `matmul_impl`).
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// # Safety
    /// `i` must be in bounds and written by one task only.
    unsafe fn at(&self, i: usize) -> *mut f32 {
        self.0.add(i)
    }
}

/// Activation rows quantized to 8-bit blocks of 32.
struct Q8Rows {
    m: usize,
    k: usize,
    codes: Vec<i8>,
    /// Per block: scale and scale * Σ codes.
    scales: Vec<[f32; 2]>,
}

impl Q8Rows {
    fn quantize(x: &[f32], m: usize, k: usize, flavor: Flavor) -> Self {
        let nb = k / QK;
        let mut codes = vec![0i8; m * k];
        let mut scales = vec![[0f32; 2]; m * nb];
        if m >= 8 && rayon::current_num_threads() > 1 {
            x.par_chunks(k)
                .zip(codes.par_chunks_mut(k).zip(scales.par_chunks_mut(nb)))
                .for_each(|(xr, (cr, sr))| quantize_row(xr, cr, sr, flavor));
        } else {
            x.chunks(k)
                .zip(codes.chunks_mut(k).zip(scales.chunks_mut(nb)))
                .for_each(|(xr, (cr, sr))| quantize_row(xr, cr, sr, flavor));
        }
        Self {
            m,
            k,
            codes,
            scales,
        }
    }

    fn codes(&self, i: usize) -> &[i8] {
        &self.codes[i * self.k..(i + 1) * self.k]
    }

    fn scales(&self, i: usize) -> &[[f32; 2]] {
        let nb = self.k / QK;
        &self.scales[i * nb..(i + 1) * nb]
    }
}

/// `f(chunk index, chunk)` over `y` in chunks of `chunk`: on rayon's threads, or in the
/// calling thread when there is one thread (handing each matmul to a pool thread and
/// waiting for it cost ~40% of single-threaded decode in context switches).
fn for_chunks<F>(y: &mut [f32], chunk: usize, threads: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if threads <= 1 {
        y.chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, out)| f(c, out));
    } else {
        y.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, out)| f(c, out));
    }
}

/// How activations are quantized: as llama.cpp quantizes them for the weight type, so that
/// results track llama.cpp's and not only the exact product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// Q8_0 (for Q4_0, Q5_0, Q8_0): an f16 scale per 32, integer sums exact.
    Q8_0,
    /// Q8_1 (for Q4_1, Q5_1): an f16 scale and an f16 `scale * Σ codes` per 32.
    Q8_1,
    /// Q8_K (for the k-quants): an f32 scale per 256, integer sums exact.
    Q8K,
}

impl Kind {
    fn flavor(self) -> Flavor {
        match self {
            Self::Q4_0 | Self::Q5_0 | Self::Q8_0 => Flavor::Q8_0,
            Self::Q4_1 | Self::Q5_1 => Flavor::Q8_1,
            Self::Q4K | Self::Q5K | Self::Q6K => Flavor::Q8K,
        }
    }
}

/// Adding and subtracting 1.5 * 2^23 rounds to nearest, ties to even, as `round_ties_even`
/// does (and llama.cpp), without a libm call per element (for |v| < 2^22).
#[inline(always)]
fn round(v: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    (v + ROUND) - ROUND
}

fn quantize_row(x: &[f32], codes: &mut [i8], scales: &mut [[f32; 2]], flavor: Flavor) {
    let r16 = |v: f32| f16::from_f32(v).to_f32();
    if flavor == Flavor::Q8K {
        // Per 256: the scale from the largest-magnitude value with its sign, codes <= 127.
        for ((xb, cb), sb) in x
            .chunks_exact(256)
            .zip(codes.chunks_exact_mut(256))
            .zip(scales.chunks_exact_mut(256 / QK))
        {
            let max = xb
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            if max == 0.0 {
                cb.fill(0);
                sb.fill([0.0; 2]);
                continue;
            }
            let iscale = -127.0 / max;
            let d = 1.0 / iscale;
            for ((xs, cs), s) in xb.chunks_exact(QK).zip(cb.chunks_exact_mut(QK)).zip(sb) {
                let mut sum = 0i32;
                for (c, v) in cs.iter_mut().zip(xs) {
                    let q = (round(iscale * v) as i32).min(127);
                    sum += q;
                    *c = q as i8;
                }
                *s = [d, d * sum as f32];
            }
        }
        return;
    }
    for ((xb, cb), s) in x
        .chunks_exact(QK)
        .zip(codes.chunks_exact_mut(QK))
        .zip(scales.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (c, v) in cb.iter_mut().zip(xb) {
            let q = round(v * inv) as i32;
            sum += q;
            *c = q as i8;
        }
        *s = match flavor {
            Flavor::Q8_1 => [r16(d), r16(d * sum as f32)],
            _ => [r16(d), r16(d) * sum as f32],
        };
    }
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[allow(clippy::too_many_arguments)]
fn scalar_packed_dot<const R: usize, F: FnMut(usize, &[f32; R])>(
    dm: &[[f32; 2]],
    qs: &[[u8; 16]],
    qh: &[u32],
    nb: usize,
    rows: std::ops::Range<usize>,
    xq: &[&[i8]; R],
    xd: &[&[[f32; 2]]; R],
    mut emit: F,
) {
    let high = !qh.is_empty();
    let mut w = [0u8; QK];
    for j in rows {
        let mut acc = [0f32; R];
        for b in j * nb..(j + 1) * nb {
            let ([d, m], q) = (dm[b], qs[b]);
            let h = if high { qh[b] } else { 0 };
            for jj in 0..16 {
                w[jj] = (q[jj] & 0x0F) | ((((h >> jj) & 1) as u8) << 4);
                w[jj + 16] = (q[jj] >> 4) | ((((h >> (jj + 16)) & 1) as u8) << 4);
            }
            let xb = b - j * nb;
            for r in 0..R {
                let x = &xq[r][xb * QK..(xb + 1) * QK];
                let dot: i32 = w.iter().zip(x).map(|(&a, &c)| a as i32 * c as i32).sum();
                let [sd, ss] = xd[r][xb];
                acc[r] += d * sd * dot as f32 + m * ss;
            }
        }
        emit(j, &acc);
    }
}

#[allow(clippy::too_many_arguments)]
fn scalar_signed_dot<const R: usize, F: FnMut(usize, &[f32; R])>(
    d: &[f32],
    halves: bool,
    qs: &[[i8; 32]],
    nb: usize,
    rows: std::ops::Range<usize>,
    xq: &[&[i8]; R],
    xd: &[&[[f32; 2]]; R],
    mut emit: F,
) {
    for j in rows {
        let mut acc = [0f32; R];
        for b in j * nb..(j + 1) * nb {
            let (q, xb) = (&qs[b], b - j * nb);
            for r in 0..R {
                let x = &xq[r][xb * QK..(xb + 1) * QK];
                let dot = |lo: usize, hi: usize| -> f32 {
                    let s: i32 = (lo..hi).map(|t| q[t] as i32 * x[t] as i32).sum();
                    s as f32
                };
                let w = if halves {
                    d[2 * b] * dot(0, 16) + d[2 * b + 1] * dot(16, 32)
                } else {
                    d[b] * dot(0, 32)
                };
                acc[r] += xd[r][xb][0] * w;
            }
        }
        emit(j, &acc);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// The 32 bytes `0x10 * bit j of h` (bit 4 of code j for the 5-bit types).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn high_bits(h: u32) -> __m256i {
        let v = _mm256_set1_epi32(h as i32);
        // Byte j takes byte j / 8 of h (each 128-bit lane holds all of h).
        let pick = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(v, pick);
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// See `super::scalar_packed_dot`; `H`: the blocks carry high bits.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn packed_dot<const R: usize, const H: bool, F: FnMut(usize, &[f32; R])>(
        dm: &[[f32; 2]],
        qs: &[[u8; 16]],
        qh: &[u32],
        nb: usize,
        rows: std::ops::Range<usize>,
        xq: &[&[i8]; R],
        xd: &[&[[f32; 2]]; R],
        mut emit: F,
    ) {
        assert!(dm.len() >= rows.end * nb && qs.len() >= rows.end * nb);
        assert!(!H || qh.len() >= rows.end * nb);
        for r in 0..R {
            assert!(xq[r].len() == nb * 32 && xd[r].len() == nb);
        }
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        for j in rows {
            let mut acc = [_mm256_setzero_ps(); R];
            let mut offs = [0f32; R];
            for xb in 0..nb {
                let b = j * nb + xb;
                let raw = _mm_loadu_si128(qs.as_ptr().add(b) as *const __m128i);
                // Codes 0..15 from the low nibbles, 16..31 from the high ones.
                let mut w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
                if H {
                    w = _mm256_or_si256(w, high_bits(*qh.get_unchecked(b)));
                }
                let [d, m] = *dm.get_unchecked(b);
                for r in 0..R {
                    let x = _mm256_loadu_si256(xq[r].as_ptr().add(xb * 32) as *const __m256i);
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
                    let [sd, ss] = *xd[r].get_unchecked(xb);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * sd), acc[r]);
                    offs[r] += m * ss;
                }
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = hsum(acc[r]) + offs[r];
            }
            emit(j, &out);
        }
    }

    /// See `super::scalar_signed_dot`; `HALVES`: a scale per 16 weights.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn signed_dot<
        const R: usize,
        const HALVES: bool,
        F: FnMut(usize, &[f32; R]),
    >(
        d: &[f32],
        qs: &[[i8; 32]],
        nb: usize,
        rows: std::ops::Range<usize>,
        xq: &[&[i8]; R],
        xd: &[&[[f32; 2]]; R],
        mut emit: F,
    ) {
        let per = if HALVES { 2 } else { 1 };
        assert!(d.len() >= rows.end * nb * per && qs.len() >= rows.end * nb);
        for r in 0..R {
            assert!(xq[r].len() == nb * 32 && xd[r].len() == nb);
        }
        let ones = _mm256_set1_epi16(1);
        for j in rows {
            let mut acc = [_mm256_setzero_ps(); R];
            for xb in 0..nb {
                let b = j * nb + xb;
                let w = _mm256_loadu_si256(qs.as_ptr().add(b) as *const __m256i);
                // maddubs wants unsigned × signed: |w| times x with w's sign.
                let aw = _mm256_sign_epi8(w, w);
                // Lanes 0-3 of the 32-bit sums cover weights 0..16, lanes 4-7 16..32.
                let scale = if HALVES {
                    _mm256_set_m128(
                        _mm_set1_ps(*d.get_unchecked(2 * b + 1)),
                        _mm_set1_ps(*d.get_unchecked(2 * b)),
                    )
                } else {
                    _mm256_set1_ps(*d.get_unchecked(b))
                };
                for r in 0..R {
                    let x = _mm256_loadu_si256(xq[r].as_ptr().add(xb * 32) as *const __m256i);
                    let p =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), ones);
                    let s = _mm256_mul_ps(scale, _mm256_set1_ps(xd[r].get_unchecked(xb)[0]));
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[r]);
                }
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = hsum(acc[r]);
            }
            emit(j, &out);
        }
    }
}

/// Which kernels run quantized matmuls ([`crate::LoadOptions::quant_kernels`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kernels {
    /// This module's, for the types of [`Kind`]; candle's for the rest.
    #[default]
    Aha,
    /// candle's `QMatMul` for every type (the baseline of the kernel benchmarks).
    Candle,
}

/// A quantized linear weight: this module's kernels for the types of [`Kind`] on the CPU, candle's
/// `QMatMul` for everything else (or for everything with [`Kernels::Candle`]).
pub enum QMat {
    Candle(QMatMul),
    Fast(QWeight),
}

impl std::fmt::Debug for QMat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Candle(w) => write!(f, "QMat::Candle({w:?})"),
            Self::Fast(w) => write!(f, "QMat::Fast({:?} [{}, {}])", w.kind, w.n, w.k),
        }
    }
}

impl QMat {
    pub fn new(t: Arc<QTensor>, kernels: Kernels) -> Result<Self> {
        if kernels == Kernels::Aha {
            if let Some(w) = QWeight::from_qtensor(&t)? {
                return Ok(Self::Fast(w));
            }
        }
        Ok(Self::Candle(QMatMul::from_arc(t)?))
    }
}

impl Module for QMat {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(w) => w.forward(x),
            Self::Fast(w) => {
                let dims = x.dims();
                let k = *dims.last().unwrap_or(&0);
                if k != w.k {
                    candle_core::bail!(
                        "qkernels: input has {k} features, the weight [{}, {}]",
                        w.n,
                        w.k
                    );
                }
                let m = x.elem_count() / k.max(1);
                let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let mut y = vec![0f32; m * w.n];
                w.matmul(&xs, m, &mut y);
                let mut out_dims = dims.to_vec();
                *out_dims.last_mut().expect("rank >= 1") = w.n;
                let y = Tensor::from_vec(y, out_dims, &Device::Cpu)?;
                if x.dtype() == DType::F32 {
                    Ok(y)
                } else {
                    y.to_dtype(x.dtype())
                }
            }
        }
    }
}
