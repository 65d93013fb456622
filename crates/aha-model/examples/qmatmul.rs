//! Quantized matmul throughput on SmolLM2-135M's shapes, AVX2 against AVX-512 kernels in one run,
//! and their largest difference: `RAYON_NUM_THREADS=2 cargo run --release -p aha-model --example qmatmul`.
use aha_model::qkernels::{Isa, QWeight};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
fn main() {
    let dev = Device::Cpu;
    for (dt, n, k) in [
        (GgmlDType::Q4_1, 1536usize, 576usize),
        (GgmlDType::Q4_1, 576, 1536),
        (GgmlDType::Q8_0, 49152, 576),
    ] {
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect();
        let q = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), dt).unwrap();
        for m in [1usize, 32, 40, 512] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 31 % 97) as f32 / 50.0) - 1.0)
                .collect();
            let mut y = vec![0f32; m * n];
            let mut prev: Vec<f32> = Vec::new();
            for isa in [Isa::Avx2, Isa::Avx512] {
                let qw = QWeight::from_qtensor(&q).unwrap().unwrap().with_isa(isa);
                let reps = (if m == 1 { 2000 } else { 3200 / m }) * 576 * 1536 / (n * k) + 1;
                qw.matmul(&x, m, &mut y);
                if !prev.is_empty() {
                    let e = y
                        .iter()
                        .zip(&prev)
                        .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
                    let s = prev.iter().fold(0f32, |a, p| a.max(p.abs()));
                    println!("  max abs diff {e} of max {s}");
                }
                prev = y.clone();
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    qw.matmul(&x, m, &mut y);
                }
                let s = t.elapsed().as_secs_f64() / reps as f64;
                println!(
                    "{dt:?} n={n} k={k} m={m} {isa:?}: {:.1} us, {:.1} GOP/s",
                    s * 1e6,
                    2.0 * (m * n * k) as f64 / s / 1e9
                );
            }
        }
    }
}
