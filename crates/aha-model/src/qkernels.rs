//! Quantized matmul `y[m, n] = x[m, k] · Wᵀ` on the CPU for the common GGUF block types,
//! faster than candle 0.11's kernels (scalar code for Q4_1/Q5_0/Q5_1, and for every type a
//! many-row path that re-reads the weights once per activation row).
//!
//! At load the weight blocks are repacked into layouts of 32-weight blocks that keep the GGUF's
//! scales as they are (f16 `d`, or `d` and `m`; the k-quants' f16 super-block scales with a byte
//! per sub-scale) and expand them to f32 in the kernels: batch-1 decode streams every weight once
//! per token, so bytes are time.
//! - *packed*: unsigned 4- or 5-bit codes `q`, a weight is `d * q + m`: Q4_0, Q4_1, Q5_0, Q5_1
//!   and the 32-weight sub-blocks of Q4_K and Q5_K. The 16 bytes of nibbles hold code j (low)
//!   and code j + 16 (high); the 5-bit types add 32 high bits.
//! - *signed*: i8 codes with a scale per 32 weights (Q8_0) or per 16 (Q6_K, whose 6-bit codes
//!   are widened to bytes: unpacking them in the kernels cost more time than their bytes).
//! - *tiled* (`tiled.rs`, AVX-512 and AVX2): either of the above with sixteen weight rows
//!   interleaved, the layout of every weight whose row count is a multiple of 16 when AVX2 or
//!   AVX-512 is present; the row kernels below serve the rest and the scalar fallback.
//!
//! Each call quantizes every activation row once to 8 bits as llama.cpp does for the weight
//! type (Q8_0, Q8_1 or Q8_K), kept as blocks of 32 (a scale, 32 i8 codes and
//! `scale * Σ codes` for the offset term), then takes integer dot products with the widest
//! instructions the CPU has ([`Isa`], detected at run time): AVX-512 VNNI (`dpbusd` over two
//! blocks at once; signed weights meet activations shifted by 128, less a per-block
//! correction), AVX2 (`maddubs`: unsigned times signed bytes; signed weights go through
//! `sign` first), or a portable scalar loop. Work is split over the threads of the caller's
//! rayon pool (the CLI's `--threads`), on the spinning helpers of `spin.rs` when free: over
//! chunks of W's rows for one activation row, over (tile of activation rows x chunk of W's
//! rows) tasks for several, each unpacked weight block serving a whole tile: eight rows
//! (AVX-512) or four.
//!
//! [`QMat`] wraps this next to candle's `QMatMul` (used for every other type, and for all
//! types with [`Kernels::Candle`]).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor, TensorId};
use half::f16;
use rayon::prelude::*;
use std::sync::Arc;

const QK: usize = 32;

mod tiled;

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

/// Per-block scales at the GGUF's precision ([`Scales::block`] expands them).
enum Scales {
    /// An f16 `d` per block and `m = c * d` (Q4_0: c = -8, Q5_0: -16; Q8_0: no `m`).
    D { d: Vec<f16>, c: f32 },
    /// An f16 `d` and `m` per block (Q4_1, Q5_1).
    Dm(Vec<[f16; 2]>),
    /// Q4_K, Q5_K: an f16 `d` and `dmin` per 8 blocks, a 6-bit scale and min per block:
    /// `d * sc` and `-dmin * mn`.
    K {
        sup: Vec<[f16; 2]>,
        sm: Vec<[u8; 2]>,
    },
    /// Q6_K: an f16 `d` per 8 blocks, an i8 scale per 16 weights: `d * sc`.
    K6 { sup: Vec<f16>, sc: Vec<[i8; 2]> },
}

impl Scales {
    /// Block `b`'s two scales in f32: `d` and `m` (packed), `d` (Q8_0), the two halves' `d`
    /// (Q6_K). The SIMD kernels compute the same products from the same operands.
    #[inline]
    fn block(&self, b: usize) -> [f32; 2] {
        match self {
            Self::D { d, c } => {
                let d = d[b].to_f32();
                [d, c * d]
            }
            Self::Dm(dm) => [dm[b][0].to_f32(), dm[b][1].to_f32()],
            Self::K { sup, sm } => {
                let ([d, dmin], [sc, mn]) = (sup[b / 8], sm[b]);
                [d.to_f32() * sc as f32, -dmin.to_f32() * mn as f32]
            }
            Self::K6 { sup, sc } => {
                let d = sup[b / 8].to_f32();
                [d * sc[b][0] as f32, d * sc[b][1] as f32]
            }
        }
    }

    fn blocks(&self) -> usize {
        match self {
            Self::D { d, .. } => d.len(),
            Self::Dm(dm) => dm.len(),
            Self::K { sm, .. } => sm.len(),
            Self::K6 { sc, .. } => sc.len(),
        }
    }

    fn bytes(&self) -> usize {
        use std::mem::size_of_val;
        match self {
            Self::D { d, .. } => size_of_val(&d[..]),
            Self::Dm(dm) => size_of_val(&dm[..]),
            Self::K { sup, sm } => size_of_val(&sup[..]) + size_of_val(&sm[..]),
            Self::K6 { sup, sc } => size_of_val(&sup[..]) + size_of_val(&sc[..]),
        }
    }
}

/// `Scales` as raw pointers, for SIMD inner loops that neither match nor reload: the variant
/// is a const parameter of the kernels (`D`, `DM`, `K`, `K6`).
#[cfg(target_arch = "x86_64")]
mod raw {
    use super::Scales;

    #[derive(Clone, Copy)]
    pub(super) struct RawScales {
        pub a: *const u8,
        pub b: *const u8,
        pub c: f32,
    }

    pub(super) const D: u8 = 0;
    pub(super) const DM: u8 = 1;
    pub(super) const K: u8 = 2;
    pub(super) const K6: u8 = 3;

    impl RawScales {
        pub(super) fn new(s: &Scales) -> Self {
            let none = std::ptr::null();
            let (a, b, c) = match s {
                Scales::D { d, c } => (d.as_ptr() as *const u8, none, *c),
                Scales::Dm(dm) => (dm.as_ptr() as *const u8, none, 0.0),
                Scales::K { sup, sm } => (sup.as_ptr() as *const u8, sm.as_ptr() as *const u8, 0.0),
                Scales::K6 { sup, sc } => {
                    (sup.as_ptr() as *const u8, sc.as_ptr() as *const u8, 0.0)
                }
            };
            Self { a, b, c }
        }

        pub(super) fn form(s: &Scales) -> u8 {
            match s {
                Scales::D { .. } => D,
                Scales::Dm(_) => DM,
                Scales::K { .. } => K,
                Scales::K6 { .. } => K6,
            }
        }
    }
}

/// Calls SIMD module `$isa`'s row kernel (`avx512` or `avx2`) for a row layout: the scales
/// as raw pointers with their form a constant parameter; `$act`: the module's activation
/// arguments. Unsafe: the module's instruction sets must be present.
#[cfg(target_arch = "x86_64")]
macro_rules! row_kernel {
    ($isa:ident, $layout:expr, $r:ident, $f:ident, $nb:expr, $rows:expr, $emit:expr,
     $($act:expr),+) => {{
        use raw::{RawScales, D, DM, K, K6};
        match $layout {
            Layout::Packed { scales, qs, qh } => {
                let (raw, n) = (RawScales::new(scales), scales.blocks());
                let (nb, rows, emit) = ($nb, $rows, $emit);
                // (no fifth bits, form) -> the kernel's `H` and `S`.
                match (qh.is_empty(), RawScales::form(scales)) {
                    (true, D) => $isa::packed_dot::<$r, false, D, $f>(
                        raw, n, qs, qh, nb, rows, $($act),+, emit,
                    ),
                    (true, DM) => $isa::packed_dot::<$r, false, DM, $f>(
                        raw, n, qs, qh, nb, rows, $($act),+, emit,
                    ),
                    (true, _) => $isa::packed_dot::<$r, false, K, $f>(
                        raw, n, qs, qh, nb, rows, $($act),+, emit,
                    ),
                    (false, D) => $isa::packed_dot::<$r, true, D, $f>(
                        raw, n, qs, qh, nb, rows, $($act),+, emit,
                    ),
                    (false, DM) => $isa::packed_dot::<$r, true, DM, $f>(
                        raw, n, qs, qh, nb, rows, $($act),+, emit,
                    ),
                    (false, _) => $isa::packed_dot::<$r, true, K, $f>(
                        raw, n, qs, qh, nb, rows, $($act),+, emit,
                    ),
                }
            }
            Layout::Signed { scales, qs } => {
                let (raw, n) = (RawScales::new(scales), scales.blocks());
                if RawScales::form(scales) == K6 {
                    $isa::signed_dot::<$r, true, $f>(raw, n, qs, $nb, $rows, $($act),+, $emit)
                } else {
                    $isa::signed_dot::<$r, false, $f>(raw, n, qs, $nb, $rows, $($act),+, $emit)
                }
            }
            Layout::Tiled(_) => unreachable!("tiled weights take tiled_matmul"),
        }
    }};
}

/// Repacked blocks of 32 weights, row-major (`k / 32` per row).
enum Layout {
    Packed {
        scales: Scales,
        /// Byte j: code j (low nibble) and code j + 16 (high nibble).
        qs: Vec<[u8; 16]>,
        /// 5-bit types only: bit j is bit 4 of code j.
        qh: Vec<u32>,
    },
    /// A scale per 16 weights with `Scales::K6`, else per block.
    Signed { scales: Scales, qs: Vec<[i8; 32]> },
    /// Sixteen rows interleaved, for the AVX-512 and AVX2 kernels (`tiled.rs`): made from a
    /// row layout when the weight may use either, turned back when it may not.
    Tiled(tiled::Tiled),
}

impl Layout {
    /// The scales of a row layout.
    fn scales(&self) -> Option<&Scales> {
        match self {
            Self::Packed { scales, .. } | Self::Signed { scales, .. } => Some(scales),
            Self::Tiled(_) => None,
        }
    }
}

/// A `[n, k]` quantized weight matrix, repacked for [`QWeight::matmul`].
pub struct QWeight {
    kind: Kind,
    n: usize,
    k: usize,
    layout: Layout,
    /// The widest instruction set the kernels may use for this weight.
    isa: Isa,
}

/// Instruction sets the kernels are written for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    /// AVX2 and FMA: `maddubs` on 32 bytes.
    Avx2,
    /// AVX-512 F/BW and VNNI: `dpbusd` on two 32-weight blocks at once.
    Avx512,
}

impl Isa {
    /// The widest set this CPU has.
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static HAS: OnceLock<Isa> = OnceLock::new();
            *HAS.get_or_init(|| {
                let avx2 = is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c");
                let avx512 = is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni");
                match (avx2, avx512) {
                    (true, true) => Isa::Avx512,
                    (true, false) => Isa::Avx2,
                    _ => Isa::Scalar,
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Isa::Scalar
        }
    }
}

fn f16_at(b: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
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
    d: Vec<f16>,
    dm: Vec<[f16; 2]>,
    sup: Vec<[f16; 2]>,
    sm: Vec<[u8; 2]>,
    sup6: Vec<f16>,
    sc6: Vec<[i8; 2]>,
    qs: Vec<[u8; 16]>,
    qh: Vec<u32>,
    q8: Vec<[i8; 32]>,
}

impl Packer {
    fn nibbles(&mut self, b: &[u8]) {
        self.qs.push(b.try_into().expect("16 bytes of nibbles"));
    }

    fn high(&mut self, b: &[u8]) {
        self.qh.push(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    }

    /// One GGUF block of `kind`.
    fn block(&mut self, kind: Kind, b: &[u8]) {
        match kind {
            Kind::Q4_0 => {
                self.d.push(f16_at(b, 0));
                self.nibbles(&b[2..18]);
            }
            Kind::Q4_1 => {
                self.dm.push([f16_at(b, 0), f16_at(b, 2)]);
                self.nibbles(&b[4..20]);
            }
            Kind::Q5_0 => {
                self.d.push(f16_at(b, 0));
                self.high(&b[2..6]);
                self.nibbles(&b[6..22]);
            }
            Kind::Q5_1 => {
                self.dm.push([f16_at(b, 0), f16_at(b, 2)]);
                self.high(&b[4..8]);
                self.nibbles(&b[8..24]);
            }
            Kind::Q8_0 => {
                self.d.push(f16_at(b, 0));
                self.q8.push(std::array::from_fn(|j| b[2 + j] as i8));
            }
            Kind::Q4K | Kind::Q5K => {
                // d, dmin, 12 scale bytes, (Q5_K: 32 bytes of high bits), 128 bytes of
                // nibbles: each 32 bytes hold sub-block 2c (low nibbles) and 2c + 1 (high).
                self.sup.push([f16_at(b, 0), f16_at(b, 2)]);
                let scales = &b[4..16];
                let five = kind == Kind::Q5K;
                let (qh, ql) = if five {
                    (&b[16..48], &b[48..176])
                } else {
                    (&b[0..0], &b[16..144])
                };
                for s in 0..8 {
                    let (sc, mn) = scale_min_k4(s, scales);
                    self.sm.push([sc, mn]);
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
                    let (qs, qh) = pack(&codes);
                    self.qs.push(qs);
                    if five {
                        self.qh.push(qh);
                    }
                }
            }
            Kind::Q6K => {
                // 128 bytes of low nibbles, 64 of 2-bit highs, 16 i8 scales (one per 16
                // weights), d. Halves of 128: ql[l] / ql[l + 32] low and high nibbles, qh[l]
                // bits 0-1, 2-3, 4-5, 6-7 for weights l, l + 32, l + 64, l + 96.
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                self.sup6.push(f16_at(b, 208));
                for half in 0..2 {
                    let (ql, qh, sc) = (&ql[half * 64..], &qh[half * 32..], &sc[half * 8..]);
                    for part in 0..4 {
                        let codes: [i8; 32] = std::array::from_fn(|l| {
                            let lo = match part {
                                0 => ql[l] & 0x0F,
                                1 => ql[l + 32] & 0x0F,
                                2 => ql[l] >> 4,
                                _ => ql[l + 32] >> 4,
                            };
                            ((lo | (((qh[l] >> (2 * part)) & 3) << 4)) as i8) - 32
                        });
                        self.q8.push(codes);
                        self.sc6.push([sc[2 * part] as i8, sc[2 * part + 1] as i8]);
                    }
                }
            }
        }
    }

    fn finish(self, kind: Kind) -> Layout {
        let d = |c| Scales::D { d: self.d, c };
        match kind {
            Kind::Q8_0 => Layout::Signed {
                scales: d(0.0),
                qs: self.q8,
            },
            Kind::Q6K => Layout::Signed {
                scales: Scales::K6 {
                    sup: self.sup6,
                    sc: self.sc6,
                },
                qs: self.q8,
            },
            _ => Layout::Packed {
                scales: match kind {
                    Kind::Q4_0 => d(-8.0),
                    Kind::Q5_0 => d(-16.0),
                    Kind::Q4_1 | Kind::Q5_1 => Scales::Dm(self.dm),
                    _ => Scales::K {
                        sup: self.sup,
                        sm: self.sm,
                    },
                },
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
            isa: Isa::Scalar,
        }
        .with_isa(Isa::detected()))
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
        if let Layout::Tiled(t) = &self.layout {
            return self.with_layout(t.untile()).dequantize();
        }
        let mut out = Vec::with_capacity(self.n * self.k);
        let Some(scales) = self.layout.scales() else {
            return out;
        };
        for b in 0..scales.blocks() {
            let [d, m] = scales.block(b);
            for j in 0..QK {
                out.push(match &self.layout {
                    Layout::Tiled(_) => 0.0,
                    Layout::Packed { qs, qh, .. } => {
                        let q = &qs[b];
                        let nib = if j < 16 { q[j] & 0x0F } else { q[j - 16] >> 4 };
                        let h = qh.get(b).map_or(0, |h| ((h >> j) & 1) as u8);
                        d * (nib | (h << 4)) as f32 + m
                    }
                    Layout::Signed { qs, .. } => {
                        // Q6_K: `m` is the second half's scale.
                        let halves = matches!(scales, Scales::K6 { .. });
                        (if halves && j >= 16 { m } else { d }) * qs[b][j] as f32
                    }
                });
            }
        }
        out
    }

    /// The bytes the repacked weight holds (the GGUF blocks took `n * k / 256 * 144` for
    /// Q4_K, say).
    pub fn bytes(&self) -> usize {
        use std::mem::size_of_val;
        self.layout.scales().map_or(0, |s| s.bytes())
            + match &self.layout {
                Layout::Packed { qs, qh, .. } => size_of_val(&qs[..]) + size_of_val(&qh[..]),
                Layout::Signed { qs, .. } => size_of_val(&qs[..]),
                Layout::Tiled(t) => t.bytes(),
            }
    }

    /// The same weight, its kernels limited to `isa` (or what the CPU has, if narrower).
    pub fn with_isa(mut self, isa: Isa) -> Self {
        self.isa = isa.min(Isa::detected());
        let avx2 = self.isa < Isa::Avx512;
        let layout = std::mem::replace(&mut self.layout, Layout::Tiled(tiled::Tiled::empty()));
        self.layout = match layout {
            Layout::Tiled(t) if self.isa < Isa::Avx2 => t.untile(),
            // Laid out for the other ISA's kernel: tiled again.
            Layout::Tiled(t) if t.fits(avx2) => Layout::Tiled(t),
            Layout::Tiled(t) => {
                let rows = t.untile();
                match tiled::Tiled::tile(self.kind, &rows, self.n, self.k, avx2) {
                    Some(t) => Layout::Tiled(t),
                    None => rows,
                }
            }
            rows if self.isa >= Isa::Avx2 => {
                match tiled::Tiled::tile(self.kind, &rows, self.n, self.k, avx2) {
                    Some(t) => Layout::Tiled(t),
                    None => rows,
                }
            }
            rows => rows,
        };
        self
    }

    /// Whether the weight is in the tiled layout (for tests).
    #[doc(hidden)]
    pub fn tiled(&self) -> bool {
        matches!(self.layout, Layout::Tiled(_))
    }

    /// The same weight on another layout (tests and conversions).
    fn with_layout(&self, layout: Layout) -> Self {
        Self {
            kind: self.kind,
            n: self.n,
            k: self.k,
            layout,
            isa: self.isa,
        }
    }

    /// The instruction set [`QWeight::matmul`] uses.
    pub fn isa(&self) -> Isa {
        // The two-block AVX-512 kernel needs an even number of blocks per row (the tiled
        // one takes blocks one by one).
        if self.isa == Isa::Avx512
            && !(self.k / QK).is_multiple_of(2)
            && !matches!(self.layout, Layout::Tiled(_))
        {
            Isa::Avx2
        } else {
            self.isa
        }
    }

    /// `y[m, n] = x[m, k] · Wᵀ` (row-major slices).
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        self.matmul_impl(x, m, y, self.isa(), None)
    }

    /// [`QWeight::matmul`] with the portable scalar kernel only (for tests).
    #[doc(hidden)]
    pub fn matmul_scalar(&self, x: &[f32], m: usize, y: &mut [f32]) {
        if let Layout::Tiled(t) = &self.layout {
            return self
                .with_layout(t.untile())
                .matmul_impl(x, m, y, Isa::Scalar, None);
        }
        self.matmul_impl(x, m, y, Isa::Scalar, None)
    }

    /// `key`: the id of the tensor `x` was read from. Weights that read the same input
    /// (q, k and v; gate and up) then quantize it once: the last quantized input is kept.
    fn matmul_impl(&self, x: &[f32], m: usize, y: &mut [f32], isa: Isa, key: Option<TensorId>) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "qkernels: x is not [m, k]");
        assert_eq!(y.len(), m * n, "qkernels: y is not [m, n]");
        if m == 0 || n == 0 {
            return;
        }
        let act = quantized_input(x, m, k, self.kind.flavor(), isa, key);
        let act: &Q8Rows = &act;
        // The row kernels' pair layout, made here rather than by the first task.
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && !matches!(self.layout, Layout::Tiled(_)) {
            act.pairs();
        }
        if let Layout::Tiled(t) = &self.layout {
            let job = TiledJob::new(t, m, n, y);
            return run_tiled(&[job], act, m, isa == Isa::Avx512);
        }
        let chunk = chunk_rows(m, n);
        if m == 1 {
            crate::spin::for_chunks(y, chunk, |c, out| {
                let j0 = c * chunk;
                self.rows_dot::<1, _>(j0..j0 + out.len(), act, 0, isa, |j, r| out[j - j0] = r[0]);
            });
            return;
        }
        // Tasks: a tile of activation rows times a chunk of W's rows, each writing its own
        // block of y. Tiles as tall as one kernel call, so that tasks are equal (32-row tiles
        // left a light last tile: 40 rows ran at 75% of 32's speed); chunk-major, so that
        // the split of the task range hands each thread whole chunks and their weights stay
        // in its cache across the tiles.
        // Rows per tile = per unpacked weight block: as many as the registers hold.
        let mt = if isa == Isa::Avx512 { 8 } else { 4 };
        let tiles = m.div_ceil(mt);
        let chunks = n.div_ceil(chunk);
        let y = SyncPtr(y.as_mut_ptr());
        let task = |t: usize| {
            let (i0, c) = (t % tiles * mt, t / tiles);
            let (i1, j0) = ((i0 + mt).min(m), c * chunk);
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
                let step = i1 - i;
                let w = rows.clone();
                match step {
                    1 => self.rows_dot::<1, _>(w, act, i, isa, |j, r| put(i)(j, r)),
                    2 => self.rows_dot::<2, _>(w, act, i, isa, |j, r| put(i)(j, r)),
                    3 => self.rows_dot::<3, _>(w, act, i, isa, |j, r| put(i)(j, r)),
                    4..=7 => {
                        self.rows_dot::<4, _>(w, act, i, isa, |j, r| put(i)(j, r));
                        i += 4;
                        continue;
                    }
                    _ => self.rows_dot::<8, _>(w, act, i, isa, |j, r| put(i)(j, r)),
                }
                i += step;
            }
        };
        if rayon::current_num_threads() <= 1 {
            (0..tiles * chunks).for_each(task);
        } else if !crate::spin::run(tiles * chunks, &task) {
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
        isa: Isa,
        emit: F,
    ) {
        let nb = self.k / QK;
        assert!(
            rows.end <= self.n && i + R <= act.m,
            "qkernels: rows out of range"
        );
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            let xt = (act.pairs(), act.m, i);
            // SAFETY: `isa` is Avx512 only when AVX-512 F/BW/VNNI (and AVX2, F16C) were
            // detected at run time and the rows have an even number of blocks; the kernels
            // assert the slice lengths.
            unsafe { row_kernel!(avx512, &self.layout, R, F, nb, rows, emit, xt) }
            return;
        }
        let xq: [&[i8]; R] = std::array::from_fn(|r| act.codes(i + r));
        let xd: [&[[f32; 2]]; R] = std::array::from_fn(|r| act.scales(i + r));
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx2 {
            // SAFETY: AVX2, FMA and F16C were detected at run time (`Isa::detected`); the
            // kernels assert the slice lengths, and the scales' form matches their pointers.
            unsafe { row_kernel!(avx2, &self.layout, R, F, nb, rows, emit, &xq, &xd) }
            return;
        }
        match &self.layout {
            Layout::Packed { scales, qs, qh } => {
                scalar_packed_dot(scales, qs, qh, nb, rows, &xq, &xd, emit)
            }
            Layout::Signed { scales, qs } => {
                let halves = matches!(scales, Scales::K6 { .. });
                scalar_signed_dot(scales, halves, qs, nb, rows, &xq, &xd, emit)
            }
            Layout::Tiled(_) => unreachable!("tiled weights take tiled_matmul"),
        }
    }
}

/// One tiled weight's share of a run (`run_tiled`): tasks of up to 8 activation rows times
/// `chunk` (a multiple of 16) weight rows, chunk-major as in `matmul_impl`, writing `y` [m, n].
struct TiledJob<'a> {
    t: &'a tiled::Tiled,
    n: usize,
    chunk: usize,
    y: SyncPtr,
}

impl<'a> TiledJob<'a> {
    const MT: usize = 8;

    /// `t` [n, k] times m activation rows into `y` [m, n], in chunks of [`chunk_rows`].
    fn new(t: &'a tiled::Tiled, m: usize, n: usize, y: &mut [f32]) -> Self {
        Self {
            t,
            n,
            chunk: chunk_rows(m, n).next_multiple_of(tiled::ROWS).min(n),
            y: SyncPtr(y.as_mut_ptr()),
        }
    }

    fn tasks(&self, m: usize) -> usize {
        m.div_ceil(Self::MT) * self.n.div_ceil(self.chunk)
    }

    /// `wide`: AVX-512 kernels.
    fn run(&self, task: usize, act: &Q8Rows, m: usize, wide: bool) {
        let tiles = m.div_ceil(Self::MT);
        let (i0, c) = (task % tiles * Self::MT, task / tiles);
        let i1 = (i0 + Self::MT).min(m);
        let (n, chunk) = (self.n, self.chunk);
        let groups = c * chunk / tiled::ROWS..((c + 1) * chunk).min(n) / tiled::ROWS;
        let mut i = i0;
        while i < i1 {
            // AVX2 has half the registers: 4 rows at a time at most.
            let step = match i1 - i {
                s @ 1..=3 => s,
                s if s < 8 || !wide => 4,
                _ => 8,
            };
            let g = groups.clone();
            // SAFETY: a weight is tiled only when its ISA is AVX2 or AVX-512
            // (`QWeight::with_isa`), which `Isa::detected` grants with AVX2, FMA and F16C
            // present (and F/BW/VNNI for AVX-512, the only ISA that sets `wide`); rows
            // i .. i + step of the groups' columns are this task's block of y, disjoint from
            // every other task's.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                let (t, y) = (self.t, self.y.at(0));
                match step {
                    1 => t.dot::<1>(g, act, i, y, n, wide),
                    2 => t.dot::<2>(g, act, i, y, n, wide),
                    3 => t.dot::<3>(g, act, i, y, n, wide),
                    4 => t.dot::<4>(g, act, i, y, n, wide),
                    _ => t.dot::<8>(g, act, i, y, n, wide),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (g, act, wide);
            i += step;
        }
    }
}

/// The tasks of every job on the same quantized input, in one hand-off to the threads (q, k
/// and v; gate and up): one wait for the last task instead of one per weight. Which thread
/// runs a task never changes what it writes.
fn run_tiled(jobs: &[TiledJob], act: &Q8Rows, m: usize, wide: bool) {
    if jobs.iter().any(|j| j.t.needs_half_sums()) {
        act.half_sums(0);
    }
    let counts: Vec<usize> = jobs.iter().map(|j| j.tasks(m)).collect();
    let total = counts.iter().sum();
    let task = |mut task: usize| {
        for (job, &count) in jobs.iter().zip(&counts) {
            if task < count {
                return job.run(task, act, m, wide);
            }
            task -= count;
        }
    };
    let threads = rayon::current_num_threads().max(1);
    if threads <= 1 || total == 1 {
        (0..total).for_each(task);
    } else if !crate::spin::run(total, &task) {
        (0..total).into_par_iter().for_each(task);
    }
}

/// Weight rows per task of an [m, k] x [n, k]ᵀ product: enough chunks to balance the
/// threads, none so small that scheduling dominates.
fn chunk_rows(m: usize, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let min_rows = if m == 1 { 32 } else { 8 };
    n.div_ceil(threads * 4).max(min_rows).min(n)
}

/// The last input quantized on this thread: the id of the tensor it came from, its values'
/// bits, and its quantized rows.
type LastInput = (TensorId, Flavor, Isa, Vec<u32>, Arc<Q8Rows>);

/// The bits of `x` (compared as integers, a `memcmp`: f32 equality goes element by element).
fn bits(x: &[f32]) -> &[u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is a u32.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u32>(), x.len()) }
}

thread_local! {
    static LAST_INPUT: std::cell::RefCell<Option<LastInput>> =
        const { std::cell::RefCell::new(None) };
}

/// `x` [m, k] quantized for `flavor` (and laid out for `isa`), reused when `key` names the
/// tensor quantized last on this thread and the values are the same (a candle tensor can
/// change in place under its id: `Var::set`, `slice_set`).
fn quantized_input(
    x: &[f32],
    m: usize,
    k: usize,
    flavor: Flavor,
    isa: Isa,
    key: Option<TensorId>,
) -> Arc<Q8Rows> {
    if let Some(id) = key {
        let hit = LAST_INPUT.with_borrow(|last| match last {
            Some((i, f, a, xs, rows)) if *i == id && *f == flavor && *a == isa && xs == bits(x) => {
                Some(rows.clone())
            }
            _ => None,
        });
        if let Some(rows) = hit {
            if rows.m == m && rows.k == k {
                return rows;
            }
        }
    }
    let act = Arc::new(Q8Rows::quantize(x, m, k, flavor));
    if let Some(id) = key {
        LAST_INPUT
            .with_borrow_mut(|last| *last = Some((id, flavor, isa, bits(x).to_vec(), act.clone())));
    }
    act
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
    /// For the AVX-512 row kernels (`Q8Rows::pairs`), made on first use.
    #[cfg(target_arch = "x86_64")]
    pairs: std::sync::OnceLock<Vec<avx512::Pair>>,
    /// Per block: Σ codes over codes 0..16 and 16..32 (for the tiled Q6_K kernel), made on
    /// first use.
    half_sums: std::sync::OnceLock<Vec<[i32; 2]>>,
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
            #[cfg(target_arch = "x86_64")]
            pairs: std::sync::OnceLock::new(),
            half_sums: std::sync::OnceLock::new(),
        }
    }

    /// The rows as the AVX-512 kernels read them: pair of blocks by pair, each pair's rows
    /// side by side (so one pointer reaches a group of rows).
    #[cfg(target_arch = "x86_64")]
    fn pairs(&self) -> &[avx512::Pair] {
        self.pairs.get_or_init(|| self.to_pairs())
    }

    #[cfg(target_arch = "x86_64")]
    fn to_pairs(&self) -> Vec<avx512::Pair> {
        let np = self.k / QK / 2;
        let mut out = Vec::with_capacity(np * self.m);
        for p in 0..np {
            for r in 0..self.m {
                let (x, s) = (self.codes(r), self.scales(r));
                let ([d0, s0], [d1, s1]) = (s[2 * p], s[2 * p + 1]);
                out.push(avx512::Pair {
                    codes: x[p * 64..p * 64 + 64].try_into().expect("64 codes"),
                    scales: std::array::from_fn(|l| if l < 8 { d0 } else { d1 }),
                    sums: [0.0, s0, 0.0, s1],
                });
            }
        }
        out
    }

    /// Row `i`'s `half_sums`.
    fn half_sums(&self, i: usize) -> &[[i32; 2]] {
        let all = self.half_sums.get_or_init(|| {
            self.codes
                .chunks_exact(QK)
                .map(|c| {
                    let sum = |h: &[i8]| h.iter().map(|&v| v as i32).sum::<i32>();
                    [sum(&c[..16]), sum(&c[16..])]
                })
                .collect()
        });
        let nb = self.k / QK;
        &all[i * nb..(i + 1) * nb]
    }

    fn codes(&self, i: usize) -> &[i8] {
        &self.codes[i * self.k..(i + 1) * self.k]
    }

    fn scales(&self, i: usize) -> &[[f32; 2]] {
        let nb = self.k / QK;
        &self.scales[i * nb..(i + 1) * nb]
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

/// Rounds to nearest, ties to even, as `round_ties_even` does (and llama.cpp), then to i32,
/// for |v| < 2^22 (the quantizers' codes): adding 1.5 * 2^23 leaves the integer in the low
/// bits of the sum. No libm call, and unlike the saturating `as` conversion it vectorizes.
#[inline(always)]
fn round_to_i32(v: f32) -> i32 {
    const ROUND: f32 = 12_582_912.0;
    (v + ROUND).to_bits() as i32 - ROUND.to_bits() as i32
}

/// The largest |v| (0 for none; NaNs ignored), 16 lanes at a time so that it vectorizes.
#[inline(always)]
fn abs_max(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            let a = v.abs();
            *l = if a > *l { a } else { *l };
        }
    }
    let tail = chunks.remainder().iter().map(|v| v.abs());
    lanes
        .into_iter()
        .chain(tail)
        .fold(0f32, |m, a| if a > m { a } else { m })
}

simd_variants! {
    fn quantize_row(x: &[f32], codes: &mut [i8], scales: &mut [[f32; 2]], flavor: Flavor)
        = quantize_row_any for {
            quantize_row_avx512: "avx512f,avx512bw,avx2,f16c",
            quantize_row_avx2: "avx2,f16c",
        }
}

#[inline(always)]
fn quantize_row_any(x: &[f32], codes: &mut [i8], scales: &mut [[f32; 2]], flavor: Flavor) {
    let r16 = |v: f32| f16::from_f32(v).to_f32();
    if flavor == Flavor::Q8K {
        // Per 256: the scale from the largest-magnitude value with its sign, codes <= 127.
        for ((xb, cb), sb) in x
            .chunks_exact(256)
            .zip(codes.chunks_exact_mut(256))
            .zip(scales.chunks_exact_mut(256 / QK))
        {
            // The first value of the largest magnitude (llama.cpp's choice), found after a
            // vectorizable pass for the magnitude.
            let amax = abs_max(xb);
            // Sixteen at a time without an early exit (vectorizes), then the one chunk.
            let max = xb
                .chunks_exact(16)
                .find(|c| c.iter().fold(false, |hit, v| hit | (v.abs() == amax)))
                .and_then(|c| c.iter().copied().find(|v| v.abs() == amax))
                .unwrap_or(0.0);
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
                    let q = round_to_i32(iscale * v).min(127);
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
        let amax = abs_max(xb);
        let d = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (c, v) in cb.iter_mut().zip(xb) {
            let q = round_to_i32(v * inv);
            sum += q;
            *c = q as i8;
        }
        *s = match flavor {
            Flavor::Q8_1 => [r16(d), r16(d * sum as f32)],
            _ => [r16(d), r16(d) * sum as f32],
        };
    }
}

#[allow(clippy::too_many_arguments)]
fn scalar_packed_dot<const R: usize, F: FnMut(usize, &[f32; R])>(
    scales: &Scales,
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
            let ([d, m], q) = (scales.block(b), qs[b]);
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

/// `halves`: a scale per 16 weights (`Scales::block`'s two), else one per block.
#[allow(clippy::too_many_arguments)]
fn scalar_signed_dot<const R: usize, F: FnMut(usize, &[f32; R])>(
    scales: &Scales,
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
        for (xb, q) in qs[j * nb..(j + 1) * nb].iter().enumerate() {
            let [d0, d1] = scales.block(j * nb + xb);
            for r in 0..R {
                let x = &xq[r][xb * QK..(xb + 1) * QK];
                let dot = |lo: usize, hi: usize| -> f32 {
                    let s: i32 = (lo..hi).map(|t| q[t] as i32 * x[t] as i32).sum();
                    s as f32
                };
                let w = if halves {
                    d0 * dot(0, 16) + d1 * dot(16, 32)
                } else {
                    d0 * dot(0, 32)
                };
                acc[r] += xd[r][xb][0] * w;
            }
        }
        emit(j, &acc);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! One weight row at a time against up to four activation rows (each unpacked block
    //! serves them all), `maddubs` on 32 bytes. Each row's blocks go to two accumulators,
    //! even and odd blocks, so that consecutive blocks' FMAs do not wait on each other.
    use super::raw::{RawScales, D, DM, K};
    use std::arch::x86_64::*;

    /// One f16 (as bits) in f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn h2f(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// Block `b`'s two scales of form `S`, the same products of the same operands as
    /// `Scales::block`: `[d, m]` (packed forms), the two halves' `d` (`K6`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block_scales<const S: u8>(s: RawScales, b: usize) -> [f32; 2] {
        let half = |p: *const u16, i: usize| h2f(p.add(i).read_unaligned());
        match S {
            D => {
                let d = half(s.a as *const u16, b);
                [d, s.c * d]
            }
            DM => [
                half(s.a as *const u16, 2 * b),
                half(s.a as *const u16, 2 * b + 1),
            ],
            K => {
                let (d, dmin) = (
                    half(s.a as *const u16, b / 8 * 2),
                    half(s.a as *const u16, b / 8 * 2 + 1),
                );
                let [sc, mn] = (s.b as *const [u8; 2]).add(b).read();
                [d * sc as f32, -dmin * mn as f32]
            }
            _ => {
                let d = half(s.a as *const u16, b / 8);
                let [s0, s1] = (s.b as *const [i8; 2]).add(b).read();
                [d * s0 as f32, d * s1 as f32]
            }
        }
    }

    /// The 32 bytes `0x10 * bit j of h` (bit 4 of code j for the 5-bit types).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn high_bits(h: u32) -> __m256i {
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

    /// See `super::scalar_packed_dot`; `H`: the blocks carry high bits; `S`: the scales'
    /// form (`n_scales` of them).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn packed_dot<
        const R: usize,
        const H: bool,
        const S: u8,
        F: FnMut(usize, &[f32; R]),
    >(
        scales: RawScales,
        n_scales: usize,
        qs: &[[u8; 16]],
        qh: &[u32],
        nb: usize,
        rows: std::ops::Range<usize>,
        xq: &[&[i8]; R],
        xd: &[&[[f32; 2]]; R],
        mut emit: F,
    ) {
        assert!(n_scales >= rows.end * nb && qs.len() >= rows.end * nb);
        assert!(!H || qh.len() >= rows.end * nb);
        for r in 0..R {
            assert!(xq[r].len() == nb * 32 && xd[r].len() == nb);
        }
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        for j in rows {
            let (mut even, mut odd) = ([_mm256_setzero_ps(); R], [_mm256_setzero_ps(); R]);
            let mut offs = [0f32; R];
            // One block into `acc` (a macro: the accumulators must stay in registers).
            macro_rules! block {
                ($xb:expr, $acc:ident) => {{
                    let xb = $xb;
                    let b = j * nb + xb;
                    let raw = _mm_loadu_si128(qs.as_ptr().add(b) as *const __m128i);
                    // Codes 0..15 from the low nibbles, 16..31 from the high ones.
                    let mut w =
                        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
                    if H {
                        w = _mm256_or_si256(w, high_bits(*qh.get_unchecked(b)));
                    }
                    let [d, m] = block_scales::<S>(scales, b);
                    for r in 0..R {
                        let x = _mm256_loadu_si256(xq[r].as_ptr().add(xb * 32) as *const __m256i);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
                        let [sd, ss] = *xd[r].get_unchecked(xb);
                        $acc[r] =
                            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * sd), $acc[r]);
                        offs[r] += m * ss;
                    }
                }};
            }
            for pair in 0..nb / 2 {
                block!(2 * pair, even);
                block!(2 * pair + 1, odd);
            }
            if nb % 2 == 1 {
                block!(nb - 1, even);
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = hsum(_mm256_add_ps(even[r], odd[r])) + offs[r];
            }
            emit(j, &out);
        }
    }

    /// See `super::scalar_signed_dot`; `HALVES`: a scale per 16 weights (`K6`), else `D`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn signed_dot<
        const R: usize,
        const HALVES: bool,
        F: FnMut(usize, &[f32; R]),
    >(
        scales: RawScales,
        n_scales: usize,
        qs: &[[i8; 32]],
        nb: usize,
        rows: std::ops::Range<usize>,
        xq: &[&[i8]; R],
        xd: &[&[[f32; 2]]; R],
        mut emit: F,
    ) {
        assert!(n_scales >= rows.end * nb && qs.len() >= rows.end * nb);
        for r in 0..R {
            assert!(xq[r].len() == nb * 32 && xd[r].len() == nb);
        }
        let ones = _mm256_set1_epi16(1);
        for j in rows {
            let (mut even, mut odd) = ([_mm256_setzero_ps(); R], [_mm256_setzero_ps(); R]);
            macro_rules! block {
                ($xb:expr, $acc:ident) => {{
                    let xb = $xb;
                    let b = j * nb + xb;
                    let w = _mm256_loadu_si256(qs.as_ptr().add(b) as *const __m256i);
                    // maddubs wants unsigned × signed: |w| times x with w's sign.
                    let aw = _mm256_sign_epi8(w, w);
                    // Lanes 0-3 of the 32-bit sums cover weights 0..16, lanes 4-7 16..32.
                    let scale = if HALVES {
                        let [d0, d1] = block_scales::<{ super::raw::K6 }>(scales, b);
                        _mm256_set_m128(_mm_set1_ps(d1), _mm_set1_ps(d0))
                    } else {
                        _mm256_set1_ps(block_scales::<D>(scales, b)[0])
                    };
                    for r in 0..R {
                        let x = _mm256_loadu_si256(xq[r].as_ptr().add(xb * 32) as *const __m256i);
                        let p = _mm256_madd_epi16(
                            _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)),
                            ones,
                        );
                        let s = _mm256_mul_ps(scale, _mm256_set1_ps(xd[r].get_unchecked(xb)[0]));
                        $acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, $acc[r]);
                    }
                }};
            }
            for pair in 0..nb / 2 {
                block!(2 * pair, even);
                block!(2 * pair + 1, odd);
            }
            if nb % 2 == 1 {
                block!(nb - 1, even);
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = hsum(_mm256_add_ps(even[r], odd[r]));
            }
            emit(j, &out);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! Two 32-weight blocks per instruction: `dpbusd` sums 4 byte products into each of 16
    //! i32 lanes, lanes 0..8 for the first block and 8..16 for the second, which then take
    //! their block's scales as f32.
    use super::raw::{RawScales, D, DM, K, K6};
    use half::f16;
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// Two blocks of one activation row: 64 codes, the two scales spread over the 16 lanes
    /// of the blocks' sums, and `[0, Σ-term 0, 0, Σ-term 1]` to meet a packed weight pair's
    /// `[d0, m0, d1, m1]`.
    #[repr(C, align(64))]
    pub(super) struct Pair {
        pub codes: [i8; 64],
        pub scales: [f32; 16],
        pub sums: [f32; 4],
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    unsafe fn hsum4(v: __m128) -> f32 {
        let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// The f32 scales of blocks `b` and `b + 1` (`b` even) of form `S`: `[d0, m0, d1, m1]`
    /// (`D`, `DM`, `K`), the four halves' scales (`K6`). The same products of the same
    /// operands as `Scales::block`. `b + 1` must be in bounds.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn pair_scales<const S: u8>(s: RawScales, b: usize) -> __m128 {
        match S {
            D => {
                let d = half2((s.a as *const f16).add(b));
                _mm_mul_ps(_mm_unpacklo_ps(d, d), _mm_set_ps(s.c, 1.0, s.c, 1.0))
            }
            DM => _mm_cvtph_ps(_mm_loadl_epi64(
                (s.a as *const [f16; 2]).add(b) as *const __m128i
            )),
            K => {
                let sd = half2((s.a as *const [f16; 2]).add(b / 8) as *const f16);
                let sd = _mm_xor_ps(_mm_movelh_ps(sd, sd), _mm_set_ps(-0.0, 0.0, -0.0, 0.0));
                let bytes = ((s.b as *const [u8; 2]).add(b) as *const i32).read_unaligned();
                _mm_mul_ps(
                    sd,
                    _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(bytes))),
                )
            }
            _ => {
                let d = _mm_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                    (*(s.a as *const u16).add(b / 8)) as i32,
                ))));
                let bytes = ((s.b as *const [i8; 2]).add(b) as *const i32).read_unaligned();
                _mm_mul_ps(
                    d,
                    _mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(bytes))),
                )
            }
        }
    }

    /// Two f16 values at `p` as f32: `[p[0], p[1], 0, 0]`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn half2(p: *const f16) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()))
    }

    /// The 64 nibbles of blocks `b` and `b + 1`, in code order.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn nibbles(qs: &[[u8; 16]], b: usize) -> __m512i {
        let low = _mm256_set1_epi8(0x0F);
        let raw = _mm256_loadu_si256(qs.as_ptr().add(b) as *const __m256i);
        let lo = _mm256_and_si256(raw, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
        // 128-bit lanes [b codes 0..16, b+1 0..16, b 16..32, b+1 16..32], put in order.
        let w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        _mm512_shuffle_i64x2(w, w, 0b11_01_10_00)
    }

    /// See `super::scalar_packed_dot`; `H`: the blocks carry high bits. `xt`: all activation
    /// rows from `Q8Rows::to_pairs`, `stride` of them, of which `i .. i + R` are taken.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn packed_dot<
        const R: usize,
        const H: bool,
        const S: u8,
        F: FnMut(usize, &[f32; R]),
    >(
        scales: RawScales,
        blocks: usize,
        qs: &[[u8; 16]],
        qh: &[u32],
        nb: usize,
        rows: Range<usize>,
        (xt, stride, i): (&[Pair], usize, usize),
        mut emit: F,
    ) {
        assert!(nb.is_multiple_of(2) && xt.len() == nb / 2 * stride && i + R <= stride);
        assert!(blocks >= rows.end * nb && qs.len() >= rows.end * nb);
        assert!(!H || qh.len() >= rows.end * nb);
        let bit4 = _mm512_set1_epi8(0x10);
        // From a pair's [d0, m0, d1, m1]: d0 into lanes 0..8, d1 into lanes 8..16.
        let pick_d = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
        for j in rows {
            let mut acc = [_mm512_setzero_ps(); R];
            let mut off = [_mm_setzero_ps(); R];
            for p in 0..nb / 2 {
                let b = j * nb + 2 * p;
                let mut w = nibbles(qs, b);
                if H {
                    let bits =
                        *qh.get_unchecked(b) as u64 | (*qh.get_unchecked(b + 1) as u64) << 32;
                    w = _mm512_mask_add_epi8(w, bits, w, bit4);
                }
                let dmv = pair_scales::<S>(scales, b);
                let dw = _mm512_permutexvar_ps(pick_d, _mm512_castps128_ps512(dmv));
                let xp = xt.as_ptr().add(p * stride + i);
                for r in 0..R {
                    let x = &*xp.add(r);
                    let xv = _mm512_load_si512(x.codes.as_ptr() as *const __m512i);
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xv);
                    let s = _mm512_mul_ps(dw, _mm512_load_ps(x.scales.as_ptr()));
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc[r]);
                    off[r] = _mm_fmadd_ps(dmv, _mm_load_ps(x.sums.as_ptr()), off[r]);
                }
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = _mm512_reduce_add_ps(acc[r]) + hsum4(off[r]);
            }
            emit(j, &out);
        }
    }

    /// See `super::scalar_signed_dot`; `HALVES`: a scale per 16 weights (`K6`, else
    /// `D`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn signed_dot<
        const R: usize,
        const HALVES: bool,
        F: FnMut(usize, &[f32; R]),
    >(
        scales: RawScales,
        blocks: usize,
        qs: &[[i8; 32]],
        nb: usize,
        rows: Range<usize>,
        (xt, stride, i): (&[Pair], usize, usize),
        mut emit: F,
    ) {
        assert!(nb.is_multiple_of(2) && xt.len() == nb / 2 * stride && i + R <= stride);
        assert!(blocks >= rows.end * nb && qs.len() >= rows.end * nb);
        let bias = _mm512_set1_epi8(-128);
        let pick = if HALVES {
            _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0)
        } else {
            // `pair_scales` gives [d0, 0, d1, 0] for Q8_0.
            _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0)
        };
        for j in rows {
            let mut acc = [_mm512_setzero_ps(); R];
            for p in 0..nb / 2 {
                let b = j * nb + 2 * p;
                let w = _mm512_loadu_si512(qs.as_ptr().add(b) as *const __m512i);
                // dpbusd wants unsigned × signed bytes: (x + 128) · w, less 128 Σ w.
                let zero = _mm512_setzero_si512();
                let corr = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias, w));
                let dw = _mm512_permutexvar_ps(
                    pick,
                    _mm512_castps128_ps512(if HALVES {
                        pair_scales::<K6>(scales, b)
                    } else {
                        pair_scales::<D>(scales, b)
                    }),
                );
                let xs = &xt[p * stride + i..][..R];
                for (acc, x) in acc.iter_mut().zip(xs) {
                    let xv = _mm512_load_si512(x.codes.as_ptr() as *const __m512i);
                    let dot = _mm512_dpbusd_epi32(corr, _mm512_xor_si512(xv, bias), w);
                    let s = _mm512_mul_ps(dw, _mm512_load_ps(x.scales.as_ptr()));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, *acc);
                }
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = _mm512_reduce_add_ps(acc[r]);
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
    /// This module's without AVX-512 (the baseline of the AVX-512 kernels' benchmarks).
    AhaAvx2,
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
        if kernels != Kernels::Candle {
            if let Some(w) = QWeight::from_qtensor(&t)? {
                let cap = if kernels == Kernels::AhaAvx2 {
                    Isa::Avx2
                } else {
                    Isa::Avx512
                };
                return Ok(Self::Fast(w.with_isa(cap)));
            }
        }
        Ok(Self::Candle(QMatMul::from_arc(t)?))
    }
}

impl Module for QMat {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_from(x, None)
    }
}

impl QMat {
    /// [`Module::forward`] on `x`, read from the tensor with id `source` (q, k and v are
    /// applied to the same tensor): several weights applied to it quantize it once (see
    /// `quantized_input`; the kept input is only reused when its values are equal too).
    pub fn forward_from(&self, x: &Tensor, source: Option<TensorId>) -> Result<Tensor> {
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
                // Read in place (a copy of the input was 1.5% of a 512-token prompt).
                let xf = x.to_dtype(DType::F32)?.contiguous()?;
                let mut y = vec![0f32; m * w.n];
                {
                    let (storage, layout) = xf.storage_and_layout();
                    let Some(v) = crate::ops::f32_elems(&storage, layout) else {
                        candle_core::bail!(
                            "qkernels: the input is not a contiguous f32 CPU tensor"
                        );
                    };
                    w.matmul_impl(v, m, &mut y, w.isa(), source);
                }
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

    /// `[m.forward_from(x, source) for m in mats]`, the same bits, when every weight is this
    /// module's tiled form on one instruction set and activation format (q, k and v; gate and
    /// up): the input is quantized once and all products go to the threads in one hand-off,
    /// so the threads wait once for the slowest task rather than once per weight. `None`
    /// otherwise.
    pub fn forward_all(
        mats: &[&QMat],
        x: &Tensor,
        source: Option<TensorId>,
    ) -> Result<Option<Vec<Tensor>>> {
        fn tiled(m: &QMat) -> Option<(&QWeight, &tiled::Tiled)> {
            match m {
                QMat::Fast(w) => match &w.layout {
                    Layout::Tiled(t) => Some((w, t)),
                    _ => None,
                },
                QMat::Candle(_) => None,
            }
        }
        let Some(ws) = mats.iter().map(|m| tiled(m)).collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        let Some(&(first, _)) = ws.first() else {
            return Ok(None);
        };
        let (k, isa, flavor) = (first.k, first.isa(), first.kind.flavor());
        let same = |w: &QWeight| w.k == k && w.isa() == isa && w.kind.flavor() == flavor;
        let dims = x.dims();
        if !ws.iter().all(|(w, _)| same(w))
            || dims.last() != Some(&k)
            || x.dtype() != DType::F32
            || !x.device().is_cpu()
        {
            return Ok(None);
        }
        let m = x.elem_count() / k.max(1);
        if m == 0 {
            return Ok(None);
        }
        let xf = x.contiguous()?;
        let mut ys: Vec<Vec<f32>> = ws.iter().map(|(w, _)| vec![0f32; m * w.n]).collect();
        {
            let (storage, layout) = xf.storage_and_layout();
            let Some(v) = crate::ops::f32_elems(&storage, layout) else {
                return Ok(None);
            };
            let act = quantized_input(v, m, k, flavor, isa, source);
            let jobs: Vec<TiledJob> = ws
                .iter()
                .zip(ys.iter_mut())
                .map(|(&(w, t), y)| TiledJob::new(t, m, w.n, y))
                .collect();
            run_tiled(&jobs, &act, m, isa == Isa::Avx512);
        }
        let lead = &dims[..dims.len() - 1];
        ys.into_iter()
            .zip(&ws)
            .map(|(y, (w, _))| Tensor::from_vec(y, [lead, &[w.n]].concat(), &Device::Cpu))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The activation quantizer, as written plainly (libm rounding, the first element of
    /// the largest magnitude found by a scan).
    fn reference(x: &[f32], flavor: Flavor) -> (Vec<i8>, Vec<[f32; 2]>) {
        let r16 = |v: f32| f16::from_f32(v).to_f32();
        let (mut codes, mut scales) = (Vec::new(), Vec::new());
        if flavor == Flavor::Q8K {
            for xb in x.chunks(256) {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
                if max == 0.0 {
                    codes.extend([0i8; 256]);
                    scales.extend([[0f32; 2]; 256 / QK]);
                    continue;
                }
                let iscale = -127.0 / max;
                for xs in xb.chunks(QK) {
                    let q: Vec<i32> = xs
                        .iter()
                        .map(|v| ((iscale * v).round_ties_even() as i32).min(127))
                        .collect();
                    codes.extend(q.iter().map(|&q| q as i8));
                    let sum: i32 = q.iter().sum();
                    let d = 1.0 / iscale;
                    scales.push([d, d * sum as f32]);
                }
            }
            return (codes, scales);
        }
        for xb in x.chunks(QK) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let (d, inv) = (amax / 127.0, if amax > 0.0 { 127.0 / amax } else { 0.0 });
            let q: Vec<i32> = xb
                .iter()
                .map(|v| (v * inv).round_ties_even() as i32)
                .collect();
            codes.extend(q.iter().map(|&q| q as i8));
            let sum: i32 = q.iter().sum();
            scales.push(match flavor {
                Flavor::Q8_1 => [r16(d), r16(d * sum as f32)],
                _ => [r16(d), r16(d) * sum as f32],
            });
        }
        (codes, scales)
    }

    /// The vectorized quantizer (every instruction set this CPU has, and the portable
    /// build) gives the plain one's bits: random rows, rows of exact halves (ties), rows whose
    /// largest magnitude comes twice with both signs, and zero rows.
    #[test]
    fn activation_quantization_matches_the_plain_reference() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let n = 1024;
        let random: Vec<f32> = (0..n).map(|_| uniform() * 3.0).collect();
        // amax 127 makes the scale 1: every x.5 is a tie.
        let halves: Vec<f32> = (0..n)
            .map(|i| {
                if i % 32 == 0 {
                    127.0
                } else {
                    (i % 255) as f32 / 2.0 - 63.5
                }
            })
            .collect();
        let twins: Vec<f32> = (0..n)
            .map(|i| match i % 256 {
                40 => -5.0,
                200 => 5.0,
                _ => uniform() * 4.0,
            })
            .collect();
        let zeros = vec![0f32; n];
        for x in [&random, &halves, &twins, &zeros] {
            for flavor in [Flavor::Q8_0, Flavor::Q8_1, Flavor::Q8K] {
                let (codes, scales) = reference(x, flavor);
                let mut c = vec![0i8; n];
                let mut s = vec![[0f32; 2]; n / QK];
                quantize_row(x, &mut c, &mut s, flavor);
                assert_eq!((&c, &s), (&codes, &scales), "{flavor:?}, detected ISA");
                quantize_row_any(x, &mut c, &mut s, flavor);
                assert_eq!((&c, &s), (&codes, &scales), "{flavor:?}, portable");
            }
        }
    }
}
