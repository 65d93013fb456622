//! Quantized matmul `y[m, n] = x[m, k] · Wᵀ` for the GGUF block types that candle 0.11 only
//! runs with scalar code (Q4_1, Q5_0, Q5_1).
//!
//! At load the weight blocks are split into a kernel-friendly layout: per 32-weight block an
//! f32 scale `d` and offset `m` (a weight is `d * q + m`, with `q` the unsigned 4- or 5-bit
//! code; Q5_0's implicit `-16` becomes `m = -16 d`), the 16 bytes of packed nibbles, and for
//! the 5-bit types the 32 high bits. Each call quantizes every activation row once to 8-bit
//! blocks of 32 (an f32 scale, 32 i8 codes and `scale * Σ codes` for the offset term), then
//! takes integer dot products: AVX2 (`maddubs`: unsigned weight codes times signed
//! activations) when the CPU has it, a portable scalar loop otherwise. Work is split over
//! the rows of W with rayon (the CLI's `--threads` sets `RAYON_NUM_THREADS`); for several
//! activation rows each unpacked weight block is used for up to four rows at once.
//!
//! [`QMat`] wraps this next to candle's `QMatMul` (used for every other type, and for all
//! types when `AHA_QKERNELS=0`).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use half::f16;
use rayon::prelude::*;
use std::sync::Arc;

const QK: usize = 32;

/// The block types handled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Q4_1,
    Q5_0,
    Q5_1,
}

impl Kind {
    pub fn from_dtype(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_1 => Some(Self::Q4_1),
            GgmlDType::Q5_0 => Some(Self::Q5_0),
            GgmlDType::Q5_1 => Some(Self::Q5_1),
            _ => None,
        }
    }

    /// Bytes of one GGUF block of 32 weights.
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
        }
    }

    fn has_high_bits(self) -> bool {
        self != Self::Q4_1
    }
}

/// A `[n, k]` weight matrix of Q4_1/Q5_0/Q5_1 blocks, repacked for [`QWeight::matmul`].
pub struct QWeight {
    kind: Kind,
    n: usize,
    k: usize,
    /// Per block (row-major, `k / 32` per row): scale and offset.
    dm: Vec<[f32; 2]>,
    /// Per block: byte j holds code j (low nibble) and code j + 16 (high nibble).
    qs: Vec<[u8; 16]>,
    /// Per block (5-bit types only): bit j is bit 4 of code j.
    qh: Vec<u32>,
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

impl QWeight {
    /// Repack raw GGUF blocks of a row-major `[n, k]` matrix (`k` a multiple of 32).
    pub fn from_raw(kind: Kind, bytes: &[u8], n: usize, k: usize) -> Result<Self> {
        if !k.is_multiple_of(QK) {
            candle_core::bail!("qkernels: row length {k} is not a multiple of {QK}");
        }
        let nblocks = n * (k / QK);
        let bb = kind.block_bytes();
        if bytes.len() != nblocks * bb {
            candle_core::bail!(
                "qkernels: {kind:?} [{n}, {k}] needs {} bytes, got {}",
                nblocks * bb,
                bytes.len()
            );
        }
        let mut dm = Vec::with_capacity(nblocks);
        let mut qs = Vec::with_capacity(nblocks);
        let mut qh = Vec::with_capacity(if kind.has_high_bits() { nblocks } else { 0 });
        for blk in bytes.chunks_exact(bb) {
            let d = f16_at(blk, 0);
            let (m, rest) = match kind {
                Kind::Q4_1 => (f16_at(blk, 2), &blk[4..]),
                Kind::Q5_0 => (-16.0 * d, &blk[2..]),
                Kind::Q5_1 => (f16_at(blk, 2), &blk[4..]),
            };
            let rest = if kind.has_high_bits() {
                qh.push(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
                &rest[4..]
            } else {
                rest
            };
            dm.push([d, m]);
            qs.push(rest.try_into().expect("16 bytes of codes"));
        }
        Ok(Self {
            kind,
            n,
            k,
            dm,
            qs,
            qh,
        })
    }

    /// Repack a rank-2 CPU `QTensor` of a handled type; `None` for anything else.
    pub fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        let Some(kind) = Kind::from_dtype(t.dtype()) else {
            return Ok(None);
        };
        let dims = t.shape().dims();
        if dims.len() != 2 || !dims[1].is_multiple_of(QK) || !t.device().is_cpu() {
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
        let act = Q8Rows::quantize(x, m, k);
        let threads = rayon::current_num_threads().max(1);
        // Enough chunks to balance the threads, none so small that scheduling dominates.
        let min_rows = if m == 1 { 32 } else { 8 };
        let chunk = n.div_ceil(threads * 4).max(min_rows).min(n);
        if m == 1 {
            for_chunks(y, chunk, threads, |c, out| {
                let j0 = c * chunk;
                for (jj, o) in out.iter_mut().enumerate() {
                    let mut r = [0f32; 1];
                    self.row_dot::<1>(j0 + jj, &act, 0, &mut r, simd);
                    *o = r[0];
                }
            });
            return;
        }
        // Transposed output: chunk c of W's rows writes yt[j * m + i] for its rows j.
        let mut yt = vec![0f32; n * m];
        for_chunks(&mut yt, chunk * m, threads, |c, out| {
            let j0 = c * chunk;
            let rows = out.len() / m;
            // Activation tiles that stay in cache while the chunk's weight rows pass.
            const MT: usize = 32;
            for i0 in (0..m).step_by(MT) {
                let i1 = (i0 + MT).min(m);
                for jj in 0..rows {
                    let o = &mut out[jj * m..(jj + 1) * m];
                    let mut i = i0;
                    while i < i1 {
                        let left = i1 - i;
                        let j = j0 + jj;
                        match left {
                            1 => {
                                let mut r = [0f32; 1];
                                self.row_dot::<1>(j, &act, i, &mut r, simd);
                                o[i..i + 1].copy_from_slice(&r);
                                i += 1;
                            }
                            2 => {
                                let mut r = [0f32; 2];
                                self.row_dot::<2>(j, &act, i, &mut r, simd);
                                o[i..i + 2].copy_from_slice(&r);
                                i += 2;
                            }
                            3 => {
                                let mut r = [0f32; 3];
                                self.row_dot::<3>(j, &act, i, &mut r, simd);
                                o[i..i + 3].copy_from_slice(&r);
                                i += 3;
                            }
                            _ => {
                                let mut r = [0f32; 4];
                                self.row_dot::<4>(j, &act, i, &mut r, simd);
                                o[i..i + 4].copy_from_slice(&r);
                                i += 4;
                            }
                        }
                    }
                }
            }
        });
        for (j, col) in yt.chunks_exact(m).enumerate() {
            for (i, v) in col.iter().enumerate() {
                y[i * n + j] = *v;
            }
        }
    }

    /// Dot products of weight row `j` with activation rows `i .. i + R`.
    #[inline]
    fn row_dot<const R: usize>(
        &self,
        j: usize,
        act: &Q8Rows,
        i: usize,
        out: &mut [f32; R],
        simd: bool,
    ) {
        let nb = self.k / QK;
        let blocks = j * nb..(j + 1) * nb;
        let dm = &self.dm[blocks.clone()];
        let qs = &self.qs[blocks.clone()];
        let qh: &[u32] = if self.kind.has_high_bits() {
            &self.qh[blocks]
        } else {
            &[]
        };
        let xq: [&[i8]; R] = std::array::from_fn(|r| act.codes(i + r));
        let xd: [&[[f32; 2]]; R] = std::array::from_fn(|r| act.scales(i + r));
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is only true when AVX2 and FMA were detected at run time; the
            // slices all hold `nb` blocks (checked by the asserts in the kernel).
            unsafe {
                if self.kind.has_high_bits() {
                    avx2::row_dot::<R, true>(dm, qs, qh, &xq, &xd, out);
                } else {
                    avx2::row_dot::<R, false>(dm, qs, qh, &xq, &xd, out);
                }
            }
            return;
        }
        let _ = simd;
        scalar_row_dot(dm, qs, qh, &xq, &xd, out);
    }
}

/// Activation rows quantized to 8-bit blocks of 32.
struct Q8Rows {
    k: usize,
    codes: Vec<i8>,
    /// Per block: scale and scale * Σ codes.
    scales: Vec<[f32; 2]>,
}

impl Q8Rows {
    fn quantize(x: &[f32], m: usize, k: usize) -> Self {
        let nb = k / QK;
        let mut codes = vec![0i8; m * k];
        let mut scales = vec![[0f32; 2]; m * nb];
        let one = |(xr, (cr, sr)): (&[f32], (&mut [i8], &mut [[f32; 2]]))| {
            quantize_row(xr, cr, sr);
        };
        if m >= 8 && rayon::current_num_threads() > 1 {
            x.par_chunks(k)
                .zip(codes.par_chunks_mut(k).zip(scales.par_chunks_mut(nb)))
                .for_each(one);
        } else {
            x.chunks(k)
                .zip(codes.chunks_mut(k).zip(scales.chunks_mut(nb)))
                .for_each(one);
        }
        Self { k, codes, scales }
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

fn quantize_row(x: &[f32], codes: &mut [i8], scales: &mut [[f32; 2]]) {
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
            let q = (v * inv).round_ties_even() as i32;
            sum += q;
            *c = q as i8;
        }
        // Stored at f16 precision, as GGUF's Q8_1 activation blocks are (so that results
        // track llama.cpp's, not only the exact product).
        let r = |v: f32| f16::from_f32(v).to_f32();
        *s = [r(d), r(d * sum as f32)];
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

fn scalar_row_dot<const R: usize>(
    dm: &[[f32; 2]],
    qs: &[[u8; 16]],
    qh: &[u32],
    xq: &[&[i8]; R],
    xd: &[&[[f32; 2]]; R],
    out: &mut [f32; R],
) {
    let high = !qh.is_empty();
    let mut acc = [0f32; R];
    let mut w = [0u8; QK];
    for (b, (&[d, m], q)) in dm.iter().zip(qs).enumerate() {
        let h = if high { qh[b] } else { 0 };
        for jj in 0..16 {
            w[jj] = (q[jj] & 0x0F) | ((((h >> jj) & 1) as u8) << 4);
            w[jj + 16] = (q[jj] >> 4) | ((((h >> (jj + 16)) & 1) as u8) << 4);
        }
        for r in 0..R {
            let xb = &xq[r][b * QK..(b + 1) * QK];
            let dot: i32 = w.iter().zip(xb).map(|(&a, &c)| a as i32 * c as i32).sum();
            let [sd, ss] = xd[r][b];
            acc[r] += d * sd * dot as f32 + m * ss;
        }
    }
    *out = acc;
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

    /// See `super::scalar_row_dot`; `H`: the blocks carry high bits.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_dot<const R: usize, const H: bool>(
        dm: &[[f32; 2]],
        qs: &[[u8; 16]],
        qh: &[u32],
        xq: &[&[i8]; R],
        xd: &[&[[f32; 2]]; R],
        out: &mut [f32; R],
    ) {
        let nb = dm.len();
        assert!(qs.len() == nb && (!H || qh.len() == nb));
        for r in 0..R {
            assert!(xq[r].len() == nb * 32 && xd[r].len() == nb);
        }
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut offs = [0f32; R];
        for b in 0..nb {
            let raw = _mm_loadu_si128(qs.as_ptr().add(b) as *const __m128i);
            // Codes 0..15 from the low nibbles, 16..31 from the high ones.
            let mut w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
            if H {
                w = _mm256_or_si256(w, high_bits(*qh.get_unchecked(b)));
            }
            let [d, m] = *dm.get_unchecked(b);
            for r in 0..R {
                let x = _mm256_loadu_si256(xq[r].as_ptr().add(b * 32) as *const __m256i);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
                let [sd, ss] = *xd[r].get_unchecked(b);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * sd), acc[r]);
                offs[r] += m * ss;
            }
        }
        for r in 0..R {
            out[r] = hsum(acc[r]) + offs[r];
        }
    }
}

/// A quantized linear weight: this module's kernels for Q4_1/Q5_0/Q5_1 on the CPU, candle's
/// `QMatMul` for everything else (or for everything when `AHA_QKERNELS=0`).
pub enum QMat {
    Candle(QMatMul),
    Fast(QWeight),
}

fn fast_enabled() -> bool {
    std::env::var("AHA_QKERNELS").map_or(true, |v| v != "0")
}

impl QMat {
    pub fn from_qtensor(t: QTensor) -> Result<Self> {
        if fast_enabled() {
            if let Some(w) = QWeight::from_qtensor(&t)? {
                return Ok(Self::Fast(w));
            }
        }
        Ok(Self::Candle(QMatMul::from_qtensor(t)?))
    }

    pub fn from_arc(t: Arc<QTensor>) -> Result<Self> {
        if fast_enabled() {
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
