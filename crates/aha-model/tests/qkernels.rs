//! aha's Q4_1/Q5_0/Q5_1 matmul kernels against candle: its `QMatMul` on the same blocks
//! (tight: both quantize the activations to 8 bits) and the f32 matmul of the dequantized
//! weights (looser); the scalar fallback against the SIMD path.

use aha_model::qkernels::{QMat, QWeight};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// max |a - b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

const TYPES: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

#[test]
fn matches_candle_on_all_types_and_shapes() {
    let dev = Device::Cpu;
    let mut seed = 1;
    for dtype in TYPES {
        for (k, n) in [(576, 67), (1536, 130), (64, 5), (576, 1)] {
            for m in [1usize, 7, 33] {
                seed += 1;
                // Weights with an offset, so the min/offset term matters.
                let w: Vec<f32> = rand_vec(n * k, seed).iter().map(|v| v + 0.3).collect();
                let wt = Tensor::from_vec(w, (n, k), &dev).unwrap();
                let q = QTensor::quantize(&wt, dtype).unwrap();
                let x = Tensor::from_vec(rand_vec(m * k, seed + 1000), (m, k), &dev).unwrap();

                let candle = QMatMul::from_qtensor(QTensor::quantize(&wt, dtype).unwrap())
                    .unwrap()
                    .forward(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let deq = q.dequantize(&dev).unwrap();
                let exact = x
                    .matmul(&deq.t().unwrap())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();

                let qw = QWeight::from_qtensor(&q).unwrap().expect("handled type");
                let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let mut y = vec![0f32; m * n];
                qw.matmul(&xs, m, &mut y);
                let mut ys = vec![0f32; m * n];
                qw.matmul_scalar(&xs, m, &mut ys);

                let what = format!("{dtype:?} m={m} n={n} k={k}");
                let e_candle = rel_err(&y, &candle);
                let e_exact = rel_err(&y, &exact);
                let e_candle_exact = rel_err(&candle, &exact);
                let e_scalar = rel_err(&ys, &y);
                eprintln!("{what}: vs candle {e_candle:.2e}, vs f32 {e_exact:.2e} (candle {e_candle_exact:.2e})");
                assert!(e_candle < 5e-3, "{what}: vs candle QMatMul {e_candle}");
                assert!(
                    e_exact < 1e-2,
                    "{what}: vs dequantized f32 {e_exact} (candle's own: {e_candle_exact})"
                );
                assert!(e_scalar < 1e-5, "{what}: scalar vs simd {e_scalar}");

                // The wrapper, with a leading batch dimension.
                let qm = QMat::from_qtensor(q).unwrap();
                assert!(matches!(qm, QMat::Fast(_)));
                let y3 = qm.forward(&x.reshape((1, m, k)).unwrap()).unwrap();
                assert_eq!(y3.dims(), &[1, m, n]);
                let y3 = y3.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(rel_err(&y3, &y) < 1e-6, "{what}: QMat forward");
            }
        }
    }
}

#[test]
fn other_types_stay_with_candle() {
    let dev = Device::Cpu;
    let wt = Tensor::from_vec(rand_vec(64 * 8, 7), (8, 64), &dev).unwrap();
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0, GgmlDType::F32] {
        let q = QTensor::quantize(&wt, dtype).unwrap();
        assert!(QWeight::from_qtensor(&q).unwrap().is_none());
        assert!(matches!(QMat::from_qtensor(q).unwrap(), QMat::Candle(_)));
    }
}

#[test]
fn zero_rows_give_zero() {
    let dev = Device::Cpu;
    let wt = Tensor::from_vec(rand_vec(64 * 9, 3), (9, 64), &dev).unwrap();
    for dtype in TYPES {
        let qw = QWeight::from_qtensor(&QTensor::quantize(&wt, dtype).unwrap())
            .unwrap()
            .unwrap();
        let mut y = vec![1f32; 2 * 9];
        qw.matmul(&[0f32; 128], 2, &mut y);
        assert!(y.iter().all(|v| *v == 0.0), "{dtype:?}: {y:?}");
    }
}
