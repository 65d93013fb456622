//! Sixteen weight rows interleaved, for AVX-512 VNNI and (as two halves of eight rows) AVX2.
//! Per 32-weight block, each `dpbusd` takes four codes of all sixteen rows (one i32 lane per
//! row) against four activation codes broadcast to every lane: the lanes need no horizontal
//! sums, a block's scales apply to sixteen rows in one multiply, the sixteen outputs are stored
//! at once, and one unpacked block serves up to eight activation rows (four with AVX2). The row
//! layout's per-row kernel spent about three times the instructions per weight (with AVX2,
//! 512-token prompts ran 2.0-2.6x faster tiled than on rows: `docs/benchmarks.md`).
//!
//! Every type of the row layout is tiled: Q4_0, Q4_1, Q4_K (chunk c of a block holds codes
//! 4c..4c+4 of each row in its low nibbles and codes 16+4c..20+4c in its high ones, as the row
//! layout's bytes 4c..4c+4); Q5_0, Q5_1, Q5_K the same plus, per group of four codes, a 64-bit
//! mask of their fifth bits (one masked byte add; for AVX2 transposed into byte planes, bit q
//! of a byte for chunk q, put at bit 4 by an and and a shift); Q8_0 as codes + 128 in unsigned
//! bytes, the 128 taken back through the offset term `m = -128 d` against the activations'
//! `d Σx`; Q6_K as codes + 32 with a scale per 16 weights, the 32 taken back against the
//! activations' sums per 16: in bytes for AVX-512, for AVX2 as the 4-bit nibbles plus the two
//! high bits in byte planes (the GGUF's 6.6 bits per weight rather than 8.6: decode reads every
//! weight once per token). Weights whose row count is not a multiple of sixteen keep the row
//! layout.

use super::{Kind, Layout, Q8Rows, Scales, QK};
use half::f16;
use std::ops::Range;

/// Weight rows per tile.
pub(super) const ROWS: usize = 16;

/// How many blocks ahead decode prefetches the codes (4 KiB of Q4_0, 8 KiB of Q8_0 with 16
/// rows a tile). Decode waits on the weights: the hardware prefetchers stop at each 4 KiB
/// page. In-process A/Bs of 128-token decodes, 10-40 alternations, medians: AVX2 (AMD EPYC)
/// Q4_0 1.21x, Q4_K 1.10x, Q6_K 1.06x, Q8_0 1.03-1.08x; AVX-512 (Intel Xeon) Q4_0 1.15x,
/// Q4_K 1.15x, Q6_K 1.27x, Q8_0 1.27x; 8, 16 and 32 blocks ahead alike.
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 16;

/// Prefetches tile `t + PREFETCH`'s codes, `lines` cache lines a tile. Wrapping address
/// arithmetic: a prefetch never faults, so past the weight's end it touches nothing.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_codes(codes: *const [u8; 64], t: usize, lines: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let ahead = codes.wrapping_add((t + PREFETCH) * lines) as *const i8;
    for line in 0..lines {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line));
    }
}

pub(super) struct Tiled {
    /// Per (group of 16 rows, block), group-major: 4 chunks of 64 bytes (4- and 5-bit codes,
    /// Q6_K's low nibbles with `avx2`) or 8 (Q8_0, Q6_K: `eight`), lane r (4 bytes) for row r.
    codes: Vec<[u8; 64]>,
    /// 5-bit types: per (group, block), for codes 4q .. 4q + 4 (q = 0..8), bit 4r + i set
    /// when code 4q + i of row r has its fifth bit (AVX-512's masks); with `avx2`, the same
    /// bits transposed: bit q of byte 4r + i (AVX2 moves each to bit 4 in two operations
    /// where expanding a mask took six). Q6_K with `avx2`: two entries per (group, block),
    /// see `q6_high_planes`.
    highs: Vec<[u64; 8]>,
    /// Laid out for the AVX2 kernel (else AVX-512's): the Q5 and Q6_K forms above.
    avx2: bool,
    scales: TScales,
    nb: usize,
    eight: bool,
}

/// Per (group, block): the sixteen rows' scales.
enum TScales {
    /// An f16 `d` per row, `m = c * d`.
    D { d: Vec<[f16; ROWS]>, c: f32 },
    Dm {
        d: Vec<[f16; ROWS]>,
        m: Vec<[f16; ROWS]>,
    },
    /// Q4_K, Q5_K: per (group, 8 blocks) the rows' f16 `d` and `dmin`, per (group, block)
    /// their 6-bit scales and mins: `d * sc`, `-dmin * mn`.
    K {
        sup: Vec<[[f16; ROWS]; 2]>,
        sm: Vec<[[u8; ROWS]; 2]>,
    },
    /// Q6_K: per (group, 8 blocks) the rows' f16 `d`, per (group, block) their i8 scales of
    /// the two 16-weight halves: `d * sc` (and `m = -32 d * sc` for each).
    K6 {
        sup: Vec<[f16; ROWS]>,
        sc: Vec<[[i8; ROWS]; 2]>,
    },
}

/// `out[(g, b)][r] = f(row 16 g + r, block b)`, group-major.
fn gather<T: Copy>(groups: usize, nb: usize, f: impl Fn(usize, usize) -> T) -> Vec<[T; ROWS]> {
    let mut out = Vec::with_capacity(groups * nb);
    for g in 0..groups {
        for b in 0..nb {
            out.push(std::array::from_fn(|r| f(ROWS * g + r, b)));
        }
    }
    out
}

/// Fifth-bit masks (bit j of mask q) as byte planes (bit q of byte j).
fn transpose(masks: [u64; 8]) -> [u64; 8] {
    let mut bytes = [0u8; 64];
    for (q, mask) in masks.iter().enumerate() {
        for (j, byte) in bytes.iter_mut().enumerate() {
            *byte |= (((mask >> j) & 1) as u8) << q;
        }
    }
    words(bytes)
}

/// 64 bytes as the little-endian words `highs` holds.
fn words(bytes: [u8; 64]) -> [u64; 8] {
    std::array::from_fn(|w| u64::from_le_bytes(std::array::from_fn(|i| bytes[8 * w + i])))
}

/// Q6_K's codes + 32 as the 4-bit types' bytes: byte l holds code l's low four bits and
/// code 16 + l's in its high nibble.
fn q6_nibbles(qs: &[[i8; QK]]) -> Vec<[u8; 16]> {
    let u = |v: i8| (v + 32) as u8;
    qs.iter()
        .map(|q| std::array::from_fn(|l| u(q[l]) & 0xF | (u(q[16 + l]) & 0xF) << 4))
        .collect()
}

/// Q6_K's two high bits (of codes + 32) per (group, block), two entries: bits 2c, 2c + 1 of
/// byte 4r + i of the first hold code 4c + i of row r's bits 4 and 5, the second's code
/// 16 + 4c + i's (c = 0..4), so that a mask and a shift put them in place.
fn q6_high_planes(groups: usize, nb: usize, qs: &[[i8; QK]]) -> Vec<[u64; 8]> {
    use rayon::prelude::*;
    (0..2 * groups * nb)
        .into_par_iter()
        .map(|x| {
            let (g, b, part) = (x / (2 * nb), x / 2 % nb, x % 2);
            let mut bytes = [0u8; 64];
            for (j, byte) in bytes.iter_mut().enumerate() {
                let (r, i) = (j / 4, j % 4);
                let q = &qs[(ROWS * g + r) * nb + b];
                for c in 0..4 {
                    let high = ((q[16 * part + 4 * c + i] + 32) as u8) >> 4;
                    *byte |= high << (2 * c);
                }
            }
            words(bytes)
        })
        .collect()
}

/// [`transpose`] undone.
fn untranspose(planes: [u64; 8]) -> [u64; 8] {
    let bytes: Vec<u8> = planes.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::array::from_fn(|q| {
        (0..64).fold(0u64, |mask, j| mask | ((((bytes[j] >> q) & 1) as u64) << j))
    })
}

/// The code bytes of row-major blocks (`N` bytes each, `map`ped), sixteen rows interleaved:
/// chunk c of (group, block) holds bytes 4c .. 4c + 4 of each of the rows' blocks, lane by lane.
fn interleave<T: Copy + Sync, const N: usize>(
    groups: usize,
    nb: usize,
    blocks: &[[T; N]],
    map: impl Fn(T) -> u8 + Sync,
) -> Vec<[u8; 64]> {
    use rayon::prelude::*;
    let per = N / 4;
    let mut codes = vec![[0u8; 64]; groups * nb * per];
    codes
        .par_chunks_mut(nb * per)
        .enumerate()
        .for_each(|(g, out)| {
            for (b, chunks) in out.chunks_exact_mut(per).enumerate() {
                for r in 0..ROWS {
                    let src = &blocks[(ROWS * g + r) * nb + b];
                    for (c, chunk) in chunks.iter_mut().enumerate() {
                        for i in 0..4 {
                            chunk[4 * r + i] = map(src[4 * c + i]);
                        }
                    }
                }
            }
        });
    codes
}

impl Tiled {
    /// No rows (a placeholder while a layout is swapped).
    pub(super) fn empty() -> Self {
        Self {
            codes: Vec::new(),
            highs: Vec::new(),
            avx2: false,
            scales: TScales::D {
                d: Vec::new(),
                c: 0.0,
            },
            nb: 1,
            eight: false,
        }
    }

    /// The tiled form of an `[n, k]` weight's row `layout`, if its type and shape have one;
    /// `avx2`: laid out for the AVX2 kernel, else for AVX-512's.
    pub(super) fn tile(
        kind: Kind,
        layout: &Layout,
        n: usize,
        k: usize,
        avx2: bool,
    ) -> Option<Self> {
        let nb = k / QK;
        if !n.is_multiple_of(ROWS) || n == 0 || nb == 0 {
            return None;
        }
        let groups = n / ROWS;
        match (kind, layout) {
            (_, Layout::Packed { scales, qs, qh }) => {
                let scales = match scales {
                    Scales::D { d, c } => TScales::D {
                        d: gather(groups, nb, |j, b| d[j * nb + b]),
                        c: *c,
                    },
                    Scales::Dm(dm) => TScales::Dm {
                        d: gather(groups, nb, |j, b| dm[j * nb + b][0]),
                        m: gather(groups, nb, |j, b| dm[j * nb + b][1]),
                    },
                    Scales::K { sup, sm } => {
                        let (sb, per) = (nb / 8, |i| {
                            move |j: usize, b: usize| sup[j * (nb / 8) + b][i]
                        });
                        let (d, dmin) = (gather(groups, sb, per(0)), gather(groups, sb, per(1)));
                        let sc = gather(groups, nb, |j, b| sm[j * nb + b][0]);
                        let mn = gather(groups, nb, |j, b| sm[j * nb + b][1]);
                        TScales::K {
                            sup: d.into_iter().zip(dmin).map(|(a, b)| [a, b]).collect(),
                            sm: sc.into_iter().zip(mn).map(|(a, b)| [a, b]).collect(),
                        }
                    }
                    Scales::K6 { .. } => return None,
                };
                let mut highs = Vec::new();
                if !qh.is_empty() {
                    use rayon::prelude::*;
                    highs = (0..groups * nb)
                        .into_par_iter()
                        .map(|t| {
                            let (g, b) = (t / nb, t % nb);
                            let masks = std::array::from_fn(|q| {
                                let mut mask = 0u64;
                                for r in 0..ROWS {
                                    let h = qh[(ROWS * g + r) * nb + b];
                                    mask |= (((h >> (4 * q)) & 0xF) as u64) << (4 * r);
                                }
                                mask
                            });
                            if avx2 {
                                transpose(masks)
                            } else {
                                masks
                            }
                        })
                        .collect();
                }
                Some(Self {
                    codes: interleave(groups, nb, qs, |v| v),
                    highs,
                    avx2,
                    scales,
                    nb,
                    eight: false,
                })
            }
            (
                Kind::Q8_0,
                Layout::Signed {
                    scales: Scales::D { d, .. },
                    qs,
                },
            ) => Some(Self {
                codes: interleave(groups, nb, qs, |v| (v as u8) ^ 0x80),
                highs: Vec::new(),
                avx2,
                scales: TScales::D {
                    d: gather(groups, nb, |j, b| d[j * nb + b]),
                    c: -128.0,
                },
                nb,
                eight: true,
            }),
            (
                Kind::Q6K,
                Layout::Signed {
                    scales: Scales::K6 { sup, sc },
                    qs,
                },
            ) => Some(Self {
                codes: match avx2 {
                    true => interleave(groups, nb, &q6_nibbles(qs), |v| v),
                    false => interleave(groups, nb, qs, |v| (v + 32) as u8),
                },
                highs: match avx2 {
                    true => q6_high_planes(groups, nb, qs),
                    false => Vec::new(),
                },
                avx2,
                scales: TScales::K6 {
                    sup: gather(groups, nb / 8, |j, s| sup[j * (nb / 8) + s]),
                    sc: gather(groups, nb, |j, b| sc[j * nb + b][0])
                        .into_iter()
                        .zip(gather(groups, nb, |j, b| sc[j * nb + b][1]))
                        .map(|(a, b)| [a, b])
                        .collect(),
                },
                nb,
                eight: !avx2,
            }),
            _ => None,
        }
    }

    /// The row layout back, exactly.
    pub(super) fn untile(&self) -> Layout {
        let nb = self.nb;
        let per = if self.eight { 8 } else { 4 };
        let groups = self.codes.len() / (nb * per);
        let n = groups * ROWS;
        // (row j, block b), row-major, from (group, block) and lane.
        let at = |j: usize, b: usize| ((j / ROWS) * nb + b, j % ROWS);
        let byte = |j: usize, b: usize, c: usize, i: usize| {
            let (t, r) = at(j, b);
            self.codes[t * per + c][4 * r + i]
        };
        let lanes = |x: usize| at(x / nb, x % nb);
        let d16 = |v: &[[f16; ROWS]]| -> Vec<f16> {
            (0..n * nb).map(&lanes).map(|(t, r)| v[t][r]).collect()
        };
        let scales = match (&self.scales, self.eight) {
            (TScales::K6 { sup, sc }, _) => {
                return Layout::Signed {
                    scales: Scales::K6 {
                        sup: (0..n * (nb / 8))
                            .map(|x| {
                                let (j, s) = (x / (nb / 8), x % (nb / 8));
                                sup[(j / ROWS) * (nb / 8) + s][j % ROWS]
                            })
                            .collect(),
                        sc: (0..n * nb)
                            .map(&lanes)
                            .map(|(t, r)| [sc[t][0][r], sc[t][1][r]])
                            .collect(),
                    },
                    qs: (0..n * nb)
                        .map(|x| {
                            let (j, b) = (x / nb, x % nb);
                            std::array::from_fn(|l| {
                                let u = match self.avx2 {
                                    false => byte(j, b, l / 4, l % 4),
                                    true => {
                                        let (part, c, i) = (l / 16, l % 16 / 4, l % 4);
                                        let (t, r) = at(j, b);
                                        let high = self.highs[2 * t + part][r / 2]
                                            >> (8 * (4 * (r % 2) + i) + 2 * c)
                                            & 3;
                                        byte(j, b, c, i) >> (4 * part) & 0xF | (high as u8) << 4
                                    }
                                };
                                u as i8 - 32
                            })
                        })
                        .collect(),
                }
            }
            (TScales::D { d, .. }, true) => {
                return Layout::Signed {
                    scales: Scales::D { d: d16(d), c: 0.0 },
                    qs: (0..n * nb)
                        .map(|x| {
                            std::array::from_fn(|l| {
                                (byte(x / nb, x % nb, l / 4, l % 4) ^ 0x80) as i8
                            })
                        })
                        .collect(),
                }
            }
            (TScales::D { d, c }, false) => Scales::D { d: d16(d), c: *c },
            (TScales::Dm { d, m }, _) => Scales::Dm(
                d16(d)
                    .into_iter()
                    .zip(d16(m))
                    .map(|(d, m)| [d, m])
                    .collect(),
            ),
            (TScales::K { sup, sm }, _) => Scales::K {
                // Row j's super-block s: group j / 16's super-block s, lane j % 16.
                sup: (0..n * (nb / 8))
                    .map(|x| {
                        let (j, s) = (x / (nb / 8), x % (nb / 8));
                        let v = &sup[(j / ROWS) * (nb / 8) + s];
                        [v[0][j % ROWS], v[1][j % ROWS]]
                    })
                    .collect(),
                sm: (0..n * nb)
                    .map(|x| {
                        let (t, r) = lanes(x);
                        [sm[t][0][r], sm[t][1][r]]
                    })
                    .collect(),
            },
        };
        Layout::Packed {
            scales,
            qs: (0..n * nb)
                .map(|x| std::array::from_fn(|l| byte(x / nb, x % nb, l / 4, l % 4)))
                .collect(),
            qh: if self.highs.is_empty() {
                Vec::new()
            } else {
                let masks: Vec<[u64; 8]> = match self.avx2 {
                    true => self.highs.iter().map(|&p| untranspose(p)).collect(),
                    false => self.highs.clone(),
                };
                (0..n * nb)
                    .map(|x| {
                        let (t, r) = lanes(x);
                        (0..8).fold(0u32, |h, q| {
                            h | ((((masks[t][q] >> (4 * r)) & 0xF) as u32) << (4 * q))
                        })
                    })
                    .collect()
            },
        }
    }

    pub(super) fn bytes(&self) -> usize {
        use std::mem::size_of_val;
        size_of_val(&self.codes[..])
            + match &self.scales {
                TScales::D { d, .. } => size_of_val(&d[..]),
                TScales::Dm { d, m } => size_of_val(&d[..]) + size_of_val(&m[..]),
                TScales::K { sup, sm } => size_of_val(&sup[..]) + size_of_val(&sm[..]),
                TScales::K6 { sup, sc } => size_of_val(&sup[..]) + size_of_val(&sc[..]),
            }
            + size_of_val(&self.highs[..])
    }

    /// Rows `16 g .. 16 g + 16` for `g` in `groups` of `y[i + r, ..]` (row stride `n`), for
    /// activation rows `i .. i + R`.
    ///
    /// `wide`: the AVX-512 kernel, else the AVX2 one (at most 4 rows at a time there).
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be present, and with `wide` AVX-512 F/BW/VNNI; `y` must be
    /// valid for those writes, and nothing else may touch them meanwhile.
    #[cfg(target_arch = "x86_64")]
    pub(super) unsafe fn dot<const R: usize>(
        &self,
        groups: Range<usize>,
        act: &Q8Rows,
        i: usize,
        y: *mut f32,
        n: usize,
        wide: bool,
    ) {
        assert!(groups.end * ROWS <= n && i + R <= act.m && act.k == self.nb * QK);
        let per = if self.eight { 8 } else { 4 };
        assert!(self.codes.len() >= groups.end * self.nb * per);
        let xq: [*const i8; R] = std::array::from_fn(|r| act.codes(i + r).as_ptr());
        let xd: [*const [f32; 2]; R] = std::array::from_fn(|r| act.scales(i + r).as_ptr());
        let y: [*mut f32; R] = std::array::from_fn(|r| y.add((i + r) * n));
        let c = self.codes.as_ptr();
        let h = self.highs.as_ptr();
        let nb = self.nb;
        // Q6_K's AVX2 form holds two entries per (group, block).
        let highs_per = 1 + matches!(self.scales, TScales::K6 { .. }) as usize;
        assert!(self.highs.is_empty() || self.highs.len() >= highs_per * groups.end * nb);
        assert!(self.avx2 != wide, "tiles laid out for the other ISA");
        let half_sums: [*const [i32; 2]; R] = match self.scales {
            TScales::K6 { .. } => std::array::from_fn(|r| act.half_sums(i + r).as_ptr()),
            _ => [std::ptr::null(); R],
        };
        let x = Rows {
            xq,
            xd,
            half_sums,
            y,
        };
        let none = std::ptr::null::<u8>();
        let (form, d, m, off) = match &self.scales {
            TScales::D { d, c } => (D, d.as_ptr() as *const u8, none, *c),
            TScales::Dm { d, m } => (DM, d.as_ptr() as _, m.as_ptr() as _, 0.0),
            TScales::K { sup, sm } => (K, sup.as_ptr() as _, sm.as_ptr() as _, 0.0),
            TScales::K6 { sup, sc } => (K6, sup.as_ptr() as _, sc.as_ptr() as _, 0.0),
        };
        let raw = Raw::new(d, m, h, off);
        macro_rules! go {
            ($eight:literal, $five:literal, $s:ident) => {
                if wide {
                    avx512::dot::<R, $eight, $five, $s>(c, raw, nb, groups, x)
                } else {
                    avx2::dot::<R, $eight, $five, $s>(c, raw, nb, groups, x)
                }
            };
        }
        match (form, self.eight, !self.highs.is_empty()) {
            (D, true, _) => go!(true, false, D),
            (K6, false, _) => go!(false, true, K6),
            (K6, ..) => go!(true, false, K6),
            (D, false, false) => go!(false, false, D),
            (D, false, true) => go!(false, true, D),
            (DM, _, false) => go!(false, false, DM),
            (DM, _, true) => go!(false, true, DM),
            (_, _, false) => go!(false, false, K),
            (_, _, true) => go!(false, true, K),
        }
    }

    /// Whether the layout is the one `Tiled::tile` gives for `avx2`.
    pub(super) fn fits(&self, avx2: bool) -> bool {
        self.avx2 == avx2
    }

    /// Whether the kernels need the activations' sums per 16 (`Q8Rows::half_sums`).
    pub(super) fn needs_half_sums(&self) -> bool {
        matches!(self.scales, TScales::K6 { .. })
    }
}

#[cfg(target_arch = "x86_64")]
use kernel_args::*;

#[cfg(target_arch = "x86_64")]
mod kernel_args {
    //! What `Tiled::dot` hands its kernels.

    /// The tile scales as raw pointers (`d`, `m` per (group, block), 16 rows each; Q6_K's two
    /// halves' `d` in `d` and `m`), the fifth-bit masks, and the offset factor of the `D` form.
    #[derive(Clone, Copy)]
    pub(super) struct Raw {
        pub(super) d: *const u8,
        pub(super) m: *const u8,
        pub(super) h: *const [u64; 8],
        pub(super) c: f32,
    }

    impl Raw {
        pub(super) fn new(d: *const u8, m: *const u8, h: *const [u64; 8], c: f32) -> Self {
            Self { d, m, h, c }
        }
    }

    /// Per activation row: its codes, block scales, sums per 16 (Q6_K only) and output row.
    pub(super) struct Rows<const R: usize> {
        pub(super) xq: [*const i8; R],
        pub(super) xd: [*const [f32; 2]; R],
        pub(super) half_sums: [*const [i32; 2]; R],
        pub(super) y: [*mut f32; R],
    }

    /// Scale forms: f16 `d` with `m = c d`; f16 `d` and `m`; k-quant super-block f16 `d`,
    /// `dmin` and 6-bit sub-scales; Q6_K's super-block f16 `d` and i8 scales per 16 weights.
    pub(super) const D: u8 = 0;
    pub(super) const DM: u8 = 1;
    pub(super) const K: u8 = 2;
    pub(super) const K6: u8 = 3;
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{prefetch_codes, Raw, Rows, D, DM, K, K6, QK, ROWS};
    use std::arch::x86_64::*;
    use std::ops::Range;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn f16x16(p: *const u8, t: usize) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(
            (p as *const [u16; ROWS]).add(t) as *const __m256i
        ))
    }

    /// Sixteen bytes at `p` as f32.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn u8x16(p: *const u8) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i)))
    }

    /// Sixteen signed bytes at `p` as f32.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn i8x16(p: *const u8) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)))
    }

    /// See `Tiled::dot`; `EIGHT`: 8-bit codes (8 chunks a block), else nibbles (4); `H`:
    /// fifth bits.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot<const R: usize, const EIGHT: bool, const H: bool, const S: u8>(
        codes: *const [u8; 64],
        sc: Raw,
        nb: usize,
        groups: Range<usize>,
        x: Rows<R>,
    ) {
        let per = if EIGHT { 8 } else { 4 };
        let low = _mm512_set1_epi8(0x0F);
        let bit4 = _mm512_set1_epi8(0x10);
        assert!(S != K6 || nb.is_multiple_of(8));
        for g in groups {
            let mut acc = [_mm512_setzero_ps(); R];
            // Q6_K: the current super-block's sums, before the activations' scale (one per
            // 256 weights, Q8_K) is applied at its last block.
            let mut sup = [_mm512_setzero_ps(); R];
            // The k-quants' current super-block scales (d, -dmin), loaded every 8 blocks.
            let (mut kd, mut kneg) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for b in 0..nb {
                let t = g * nb + b;
                if R <= 2 {
                    prefetch_codes(codes, t, per);
                }
                let base = codes.add(t * per) as *const __m512i;
                // w[q]: codes 4q .. 4q + 4 of each row (the nibbles' high halves are 16..32).
                let mut w = [_mm512_setzero_si512(); 8];
                if EIGHT {
                    for (q, w) in w.iter_mut().enumerate() {
                        *w = _mm512_loadu_si512(base.add(q));
                    }
                } else {
                    for q in 0..4 {
                        let raw = _mm512_loadu_si512(base.add(q));
                        w[q] = _mm512_and_si512(raw, low);
                        w[q + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
                    }
                }
                if H {
                    let masks = &*sc.h.add(t);
                    for q in 0..8 {
                        w[q] = _mm512_mask_add_epi8(w[q], masks[q], w[q], bit4);
                    }
                }
                // (d, m), or Q6_K's two halves' d.
                let (d, m) = match S {
                    D => {
                        let d = f16x16(sc.d, t);
                        (d, _mm512_mul_ps(d, _mm512_set1_ps(sc.c)))
                    }
                    DM => (f16x16(sc.d, t), f16x16(sc.m, t)),
                    K => {
                        // Block t's 6-bit scales and mins times its super-block's d, -dmin.
                        if b % 8 == 0 {
                            let super_dm = sc.d.add((g * (nb / 8) + b / 8) * 4 * ROWS);
                            kd = f16x16(super_dm, 0);
                            let dmin = _mm512_castps_si512(f16x16(super_dm, 1));
                            let sign = _mm512_set1_epi32(i32::MIN);
                            kneg = _mm512_castsi512_ps(_mm512_xor_si512(dmin, sign));
                        }
                        let sm = sc.m.add(t * 2 * ROWS);
                        (
                            _mm512_mul_ps(kd, u8x16(sm)),
                            _mm512_mul_ps(kneg, u8x16(sm.add(ROWS))),
                        )
                    }
                    _ => {
                        // Q6_K: the halves' i8 scales times the super-block's d.
                        if b % 8 == 0 {
                            kd = f16x16(sc.d, g * (nb / 8) + b / 8);
                        }
                        let s = sc.m.add(t * 2 * ROWS);
                        (
                            _mm512_mul_ps(kd, i8x16(s)),
                            _mm512_mul_ps(kd, i8x16(s.add(ROWS))),
                        )
                    }
                };
                for (r, (acc, sup)) in acc.iter_mut().zip(sup.iter_mut()).enumerate() {
                    let xp = x.xq[r].add(b * QK) as *const i32;
                    // Two chains (codes 0..16 and 16..32), so that a lone row does not wait on
                    // each dpbusd in turn; Q6_K scales them apart.
                    let mut s0 = _mm512_setzero_si512();
                    let mut s1 = _mm512_setzero_si512();
                    for q in 0..4 {
                        let x0 = _mm512_set1_epi32(xp.add(q).read_unaligned());
                        let x1 = _mm512_set1_epi32(xp.add(q + 4).read_unaligned());
                        s0 = _mm512_dpbusd_epi32(s0, w[q], x0);
                        s1 = _mm512_dpbusd_epi32(s1, w[q + 4], x1);
                    }
                    let [dx, sx] = *x.xd[r].add(b);
                    let dx = _mm512_set1_ps(dx);
                    if S == K6 {
                        // Codes + 32: less 32 Σx per half, in integers.
                        let [h0, h1] = *x.half_sums[r].add(b);
                        let s0 = _mm512_sub_epi32(s0, _mm512_set1_epi32(32 * h0));
                        let s1 = _mm512_sub_epi32(s1, _mm512_set1_epi32(32 * h1));
                        *sup = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), d, *sup);
                        *sup = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), m, *sup);
                        if b % 8 == 7 {
                            *acc = _mm512_fmadd_ps(*sup, dx, *acc);
                            *sup = _mm512_setzero_ps();
                        }
                    } else {
                        let s = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
                        *acc = _mm512_fmadd_ps(s, _mm512_mul_ps(d, dx), *acc);
                        *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(sx), *acc);
                    }
                }
            }
            for (y, acc) in x.y.iter().zip(acc) {
                _mm512_storeu_ps(y.add(ROWS * g), acc);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The tiles as two halves of eight rows (bytes 0..32 and 32..64 of every chunk): per
    //! half and block, `maddubs` of four codes of each row against four activation codes
    //! broadcast to every lane, two such products summed in i16 (at most 2 x 2 x 63 x 128,
    //! below 2^15) before `madd` widens them. Q8_0's codes are stored + 128 for VNNI's
    //! unsigned bytes: here they are turned back to signed and meet the activations through
    //! `sign` (a single product can reach 2 x 128 x 127), and the offset term is left out.
    //! (Storing them signed for AVX2 saved the flip but not time: decode 0.99x, 7 rounds.)
    use super::{prefetch_codes, Raw, Rows, D, DM, K, K6, QK, ROWS};
    use std::arch::x86_64::*;
    use std::ops::Range;

    const HALF: usize = ROWS / 2;

    /// Eight f16 (as bits) at `p` as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16x8(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    /// Eight bytes at `p`, unsigned (`SIGNED` false) or signed, as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bytes8<const SIGNED: bool>(p: *const u8) -> __m256 {
        let v = _mm_loadl_epi64(p as *const __m128i);
        _mm256_cvtepi32_ps(if SIGNED {
            _mm256_cvtepi8_epi32(v)
        } else {
            _mm256_cvtepu8_epi32(v)
        })
    }

    /// See `Tiled::dot`, for `R` at most 4.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot<const R: usize, const EIGHT: bool, const H: bool, const S: u8>(
        codes: *const [u8; 64],
        sc: Raw,
        nb: usize,
        groups: Range<usize>,
        x: Rows<R>,
    ) {
        let per = if EIGHT { 8 } else { 4 };
        let signed = EIGHT && S == D;
        let low = _mm256_set1_epi8(0x0F);
        let flip = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi16(1);
        assert!(S != K6 || nb.is_multiple_of(8));
        for g in groups {
            // Decode (one or two activation rows): both halves per block, so that the
            // weights stream through in order; prompts: one half at a time (fewer registers).
            let mut accs = [[_mm256_setzero_ps(); R]; 2];
            let mut sups = [[_mm256_setzero_ps(); R]; 2];
            let (mut kds, mut knegs) = ([_mm256_setzero_ps(); 2], [_mm256_setzero_ps(); 2]);
            macro_rules! half_block {
                ($b:expr, $h:expr) => {{
                    let (b, h) = ($b, $h);
                    let (acc, sup) = (&mut accs[h], &mut sups[h]);
                    let (kd, kneg) = (&mut kds[h], &mut knegs[h]);
                    let t = g * nb + b;
                    let base = (codes.add(t * per) as *const u8).add(HALF * 4 * h);
                    // w[q]: codes 4q .. 4q + 4 of the half's rows.
                    let mut w = [_mm256_setzero_si256(); 8];
                    if EIGHT {
                        for (q, w) in w.iter_mut().enumerate() {
                            *w = _mm256_loadu_si256(base.add(64 * q) as *const __m256i);
                        }
                    } else {
                        for q in 0..4 {
                            let raw = _mm256_loadu_si256(base.add(64 * q) as *const __m256i);
                            w[q] = _mm256_and_si256(raw, low);
                            w[q + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                        }
                    }
                    if H && S == K6 {
                        // Bits 2c, 2c + 1 of each byte: bits 4 and 5 of w[4 part + c]'s code.
                        for part in 0..2 {
                            let p = sc.h.add(2 * t + part) as *const __m256i;
                            let planes = _mm256_loadu_si256(p.add(h));
                            for c in 0..4 {
                                let two = _mm256_and_si256(planes, _mm256_set1_epi8(3 << (2 * c)));
                                let two = match c {
                                    0 => _mm256_slli_epi16::<4>(two),
                                    1 => _mm256_slli_epi16::<2>(two),
                                    2 => two,
                                    _ => _mm256_srli_epi16::<2>(two),
                                };
                                let w = &mut w[4 * part + c];
                                *w = _mm256_or_si256(*w, two);
                            }
                        }
                    } else if H {
                        // Bit q of each byte: the fifth bit of w[q]'s code there.
                        let planes = _mm256_loadu_si256((sc.h.add(t) as *const __m256i).add(h));
                        for (q, w) in w.iter_mut().enumerate() {
                            let bit = _mm256_and_si256(planes, _mm256_set1_epi8(1 << q));
                            let bit = match q {
                                0 => _mm256_slli_epi16::<4>(bit),
                                1 => _mm256_slli_epi16::<3>(bit),
                                2 => _mm256_slli_epi16::<2>(bit),
                                3 => _mm256_slli_epi16::<1>(bit),
                                4 => bit,
                                5 => _mm256_srli_epi16::<1>(bit),
                                6 => _mm256_srli_epi16::<2>(bit),
                                _ => _mm256_srli_epi16::<3>(bit),
                            };
                            *w = _mm256_or_si256(*w, bit);
                        }
                    }
                    let lane = t * ROWS + HALF * h;
                    let (d, m) = match S {
                        D => {
                            let d = f16x8((sc.d as *const u16).add(lane));
                            (d, _mm256_mul_ps(d, _mm256_set1_ps(sc.c)))
                        }
                        DM => (
                            f16x8((sc.d as *const u16).add(lane)),
                            f16x8((sc.m as *const u16).add(lane)),
                        ),
                        K => {
                            if b % 8 == 0 {
                                let super_dm = (sc.d as *const u16)
                                    .add((g * (nb / 8) + b / 8) * 2 * ROWS + HALF * h);
                                *kd = f16x8(super_dm);
                                let sign = _mm256_set1_ps(-0.0);
                                *kneg = _mm256_xor_ps(f16x8(super_dm.add(ROWS)), sign);
                            }
                            let sm = sc.m.add(t * 2 * ROWS + HALF * h);
                            (
                                _mm256_mul_ps(*kd, bytes8::<false>(sm)),
                                _mm256_mul_ps(*kneg, bytes8::<false>(sm.add(ROWS))),
                            )
                        }
                        _ => {
                            if b % 8 == 0 {
                                let at = (g * (nb / 8) + b / 8) * ROWS + HALF * h;
                                *kd = f16x8((sc.d as *const u16).add(at));
                            }
                            let s = sc.m.add(t * 2 * ROWS + HALF * h);
                            (
                                _mm256_mul_ps(*kd, bytes8::<true>(s)),
                                _mm256_mul_ps(*kd, bytes8::<true>(s.add(ROWS))),
                            )
                        }
                    };
                    if signed {
                        for w in w.iter_mut() {
                            *w = _mm256_xor_si256(*w, flip);
                        }
                    }
                    for r in 0..R {
                        let xp = x.xq[r].add(b * QK) as *const i32;
                        let xs = |q: usize| _mm256_set1_epi32(xp.add(q).read_unaligned());
                        // Codes 0..16 (s0) and 16..32 (s1): Q6_K scales them apart. 4-bit
                        // codes: all eight products summed in i16 (at most 8 x 2 x 15 x 128).
                        let mut s = [_mm256_setzero_si256(); 2];
                        if !EIGHT && !H {
                            // As a tree: a lone row's chain of adds stays short.
                            let p: [__m256i; 8] =
                                std::array::from_fn(|q| _mm256_maddubs_epi16(w[q], xs(q)));
                            let add = |a, b| _mm256_add_epi16(a, b);
                            let (p01, p23) = (add(p[0], p[1]), add(p[2], p[3]));
                            let (p45, p67) = (add(p[4], p[5]), add(p[6], p[7]));
                            s[0] = _mm256_madd_epi16(add(add(p01, p23), add(p45, p67)), ones);
                        }
                        if H && S != K6 {
                            // 5-bit codes: four products summed in i16 (at most 4 x 2 x 31 x
                            // 128), one `madd` per half where pairs took two.
                            let p: [__m256i; 8] =
                                std::array::from_fn(|q| _mm256_maddubs_epi16(w[q], xs(q)));
                            let add = |a, b| _mm256_add_epi16(a, b);
                            for (half, s) in s.iter_mut().enumerate() {
                                let q = 4 * half;
                                let sum = add(add(p[q], p[q + 1]), add(p[q + 2], p[q + 3]));
                                *s = _mm256_madd_epi16(sum, ones);
                            }
                        }
                        let pairs = EIGHT || (H && S == K6);
                        for (half, s) in s.iter_mut().enumerate().filter(|_| pairs) {
                            for pair in 0..2 {
                                let q = 4 * half + 2 * pair;
                                let p = if signed {
                                    let prod = |q: usize| {
                                        let (w, xv) = (w[q], xs(q));
                                        let p = _mm256_maddubs_epi16(
                                            _mm256_sign_epi8(w, w),
                                            _mm256_sign_epi8(xv, w),
                                        );
                                        _mm256_madd_epi16(p, ones)
                                    };
                                    _mm256_add_epi32(prod(q), prod(q + 1))
                                } else {
                                    let p = _mm256_add_epi16(
                                        _mm256_maddubs_epi16(w[q], xs(q)),
                                        _mm256_maddubs_epi16(w[q + 1], xs(q + 1)),
                                    );
                                    _mm256_madd_epi16(p, ones)
                                };
                                *s = _mm256_add_epi32(*s, p);
                            }
                        }
                        let [dx, sx] = *x.xd[r].add(b);
                        let dx = _mm256_set1_ps(dx);
                        if S == K6 {
                            let [h0, h1] = *x.half_sums[r].add(b);
                            let s0 = _mm256_sub_epi32(s[0], _mm256_set1_epi32(32 * h0));
                            let s1 = _mm256_sub_epi32(s[1], _mm256_set1_epi32(32 * h1));
                            sup[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), d, sup[r]);
                            sup[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), m, sup[r]);
                            if b % 8 == 7 {
                                acc[r] = _mm256_fmadd_ps(sup[r], dx, acc[r]);
                                sup[r] = _mm256_setzero_ps();
                            }
                        } else {
                            let s = _mm256_cvtepi32_ps(_mm256_add_epi32(s[0], s[1]));
                            acc[r] = _mm256_fmadd_ps(s, _mm256_mul_ps(d, dx), acc[r]);
                            if !signed {
                                acc[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(sx), acc[r]);
                            }
                        }
                    }
                }};
            }
            if R <= 2 {
                for b in 0..nb {
                    prefetch_codes(codes, g * nb + b, per);
                    half_block!(b, 0);
                    half_block!(b, 1);
                }
            } else {
                for h in 0..2 {
                    for b in 0..nb {
                        half_block!(b, h);
                    }
                }
            }
            for (h, acc) in accs.into_iter().enumerate() {
                for (y, acc) in x.y.iter().zip(acc) {
                    _mm256_storeu_ps(y.add(ROWS * g + HALF * h), acc);
                }
            }
        }
    }
}
