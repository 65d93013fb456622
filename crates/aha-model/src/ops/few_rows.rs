//! x Wᵀ for a few rows of x (a decoding step of up to 16 sequences) and a dense f32 weight
//! W [n, k] with AVX-512: the rows of x transposed so that lane j of one register holds row
//! j's value at one k, each weight value broadcast against that register, eight weight rows
//! in flight. W is read once, in place (the GEMM packed all of it at every call), and the
//! result is written as [rows, n] directly.
//!
//! Each output is the chain fma(w[k-1], x[k-1], ... fma(w[0], x[0], 0)), the order in which
//! candle's GEMM sums a product whose k fits one of its blocks: the same bits (tested against
//! the GEMM for every k this path takes).

use crate::spin::Disjoint;

/// At most this many rows of x.
pub const MAX_ROWS: usize = 16;

/// The GEMM sums a product in one chain when k fits its block (512 here) and the product is
/// not tiny (it takes other kernels below a few hundred outputs); the path is taken only
/// inside those bounds, where the test checks the bits.
pub const MAX_K: usize = 512;

/// Fewest weight rows.
pub const MIN_N: usize = 1024;

/// Weight rows per task.
const TASK_ROWS: usize = 256;

/// x [rows, k] times W [n, k] transposed, as [rows, n]; `None` without AVX-512 or outside
/// 2..=MAX_ROWS rows, k <= MAX_K and n >= MIN_N.
pub fn matmul_t(x: &[f32], rows: usize, w: &[f32], n: usize, k: usize) -> Option<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    if crate::qkernels::Isa::detected() >= crate::qkernels::Isa::Avx512
        && (2..=MAX_ROWS).contains(&rows)
        && (1..=MAX_K).contains(&k)
        && n >= MIN_N
        && x.len() == rows * k
        && w.len() == n * k
    {
        return Some(run(x, rows, w, n, k));
    }
    let _ = (x, rows, w, n, k);
    None
}

#[cfg(target_arch = "x86_64")]
fn run(x: &[f32], rows: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    use rayon::prelude::*;
    // xt[kk * 16 + j] = x[j, kk]; lanes past `rows` stay zero.
    let mut xt = vec![0f32; k * MAX_ROWS];
    for (j, row) in x.chunks_exact(k).enumerate() {
        for (kk, &v) in row.iter().enumerate() {
            xt[kk * MAX_ROWS + j] = v;
        }
    }
    let mut out = vec![0f32; rows * n];
    let dst = Disjoint(out.as_mut_ptr());
    let tasks = n.div_ceil(TASK_ROWS);
    let task = |t: usize| {
        let (v0, v1) = (t * TASK_ROWS, ((t + 1) * TASK_ROWS).min(n));
        let mut tile = [0f32; TASK_ROWS * MAX_ROWS];
        // SAFETY: AVX-512 was detected by `matmul_t`; the slices have the checked sizes.
        unsafe { tile_avx512(&xt, &w[v0 * k..v1 * k], k, &mut tile) };
        for j in 0..rows {
            for (i, v) in (v0..v1).enumerate() {
                // SAFETY: task t alone writes columns v0..v1 of each row; j * n + v < rows * n.
                unsafe { *dst.at(j * n + v) = tile[i * MAX_ROWS + j] };
            }
        }
    };
    if !crate::spin::run(tasks, &task) {
        (0..tasks).into_par_iter().for_each(task);
    }
    out
}

/// tile[i * 16 + j] = Σ_kk w[i, kk] x[j, kk] for the weight rows in `w` (at most TASK_ROWS).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(xt: &[f32], w: &[f32], k: usize, tile: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = w.len() / k;
    let xp = xt.as_ptr();
    let mut i = 0;
    while i + 8 <= n {
        let wp = w.as_ptr().add(i * k);
        let mut acc = [_mm512_setzero_ps(); 8];
        for kk in 0..k {
            let xv = _mm512_loadu_ps(xp.add(kk * MAX_ROWS));
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*wp.add(r * k + kk)), xv, *a);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(tile.as_mut_ptr().add((i + r) * MAX_ROWS), *a);
        }
        i += 8;
    }
    while i < n {
        let wp = w.as_ptr().add(i * k);
        let mut a = _mm512_setzero_ps();
        for kk in 0..k {
            let xv = _mm512_loadu_ps(xp.add(kk * MAX_ROWS));
            a = _mm512_fmadd_ps(_mm512_set1_ps(*wp.add(kk)), xv, a);
        }
        _mm512_storeu_ps(tile.as_mut_ptr().add(i * MAX_ROWS), a);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The same bits as candle's matmul (its GEMM) wherever the path is taken, and outside
    /// its bounds it is not.
    #[test]
    fn few_rows_product_gives_the_gemms_bits() {
        if crate::qkernels::Isa::detected() < crate::qkernels::Isa::Avx512 {
            return;
        }
        let dev = Device::Cpu;
        let mut cases = vec![(1, 64, 2000), (17, 64, 2000), (4, 513, 2000), (4, 64, 1000)];
        for rows in [2usize, 3, 7, 8, 16] {
            for k in [1usize, 16, 64, 100, 128, 129, 256, 384, 500, 512] {
                for n in [1024usize, 1031, 4099] {
                    cases.push((rows, k, n));
                }
            }
        }
        for (rows, k, n) in cases {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let ws: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
            let want: Vec<f32> = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let got = matmul_t(&xs, rows, &ws, n, k);
            if !(2..=MAX_ROWS).contains(&rows) || k > MAX_K || n < MIN_N {
                assert!(got.is_none(), "rows={rows} k={k} n={n}");
                continue;
            }
            let got = got.unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "rows={rows} k={k} n={n}");
        }
    }
}
