//! aha's quantized matmul kernels (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) against candle: its `QMatMul` on the same blocks
//! (tight: both quantize the activations to 8 bits) and the f32 matmul of the dequantized
//! weights (looser); the scalar fallback against the SIMD path.

use aha_model::qkernels::{Isa, Kernels, QMat, QWeight};
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

const TYPES: [GgmlDType; 8] = [
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

/// (k, n) shapes: rows a multiple of the type's block.
fn shapes(dtype: GgmlDType) -> Vec<(usize, usize)> {
    if dtype.block_size() == 256 {
        vec![
            (512, 67),
            (1536, 130),
            (256, 5),
            (256, 1),
            (256, 96),
            (256, 512),
            (512, 256),
        ]
    } else {
        // 96: an odd number of blocks per row (the AVX-512 row kernels take them in pairs).
        // Row counts that are multiples of 16 take the tiled kernels (Q4_0, Q4_1,
        // Q8_0; Q4_K above), the others the row kernels.
        vec![
            (576, 67),
            (1536, 130),
            (64, 5),
            (576, 1),
            (96, 9),
            (576, 64),
            (96, 48),
        ]
    }
}

/// The repacked blocks hold exactly the weights candle decodes from the GGUF blocks.
#[test]
fn repacking_keeps_every_weight() {
    let dev = Device::Cpu;
    for (t, dtype) in TYPES.into_iter().enumerate() {
        let (k, n) = shapes(dtype)[1];
        let w: Vec<f32> = rand_vec(n * k, 50 + t as u64)
            .iter()
            .map(|v| v * 2.0 + 0.3)
            .collect();
        let q = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), dtype).unwrap();
        let want = q
            .dequantize(&dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = QWeight::from_qtensor(&q)
            .unwrap()
            .expect("handled type")
            .dequantize();
        let err = rel_err(&got, &want);
        assert!(err < 1e-6, "{dtype:?}: repacked weights differ by {err}");
    }
}

/// Batch-1 decode reads every weight once per token: the repacked weights keep the GGUF's bytes
/// (f16 scales) but for a byte per k-quant 6-bit scale and, except in AVX2's tiles, Q6_K's codes
/// widened to bytes.
#[test]
fn repacked_weights_take_about_the_gguf_bytes() {
    let dev = Device::Cpu;
    // Bytes per 256 weights: GGUF, repacked.
    let sizes = [144, 160, 176, 192, 272, 144, 176, 210];
    let q6k = if Isa::detected() == Isa::Avx2 {
        210
    } else {
        274
    };
    let repacked = [144, 160, 176, 192, 272, 148, 180, q6k];
    for ((dtype, gguf), want) in TYPES.into_iter().zip(sizes).zip(repacked) {
        let (n, k) = (64, 1024);
        let wt = Tensor::from_vec(rand_vec(n * k, 3), (n, k), &dev).unwrap();
        let q = QTensor::quantize(&wt, dtype).unwrap();
        assert_eq!(
            n * k / dtype.block_size() * dtype.type_size(),
            n * k / 256 * gguf
        );
        let got = QWeight::from_qtensor(&q).unwrap().unwrap().bytes();
        assert_eq!(got, n * k / 256 * want, "{dtype:?}: repacked bytes");
    }
}

/// Every type and shape against candle, the dequantized f32 product and the scalar kernel,
/// with the detected kernels and with AVX2: 1 row, 2 (the 2-row path), 7 (4 rows then 3) and
/// 33 (4- or 8-row steps and a 1-row tail).
#[test]
fn matches_candle_on_all_types_and_shapes() {
    let dev = Device::Cpu;
    let mut seed = 1;
    for dtype in TYPES {
        for (k, n) in shapes(dtype) {
            for m in [1usize, 2, 7, 33] {
                seed += 1;
                // Weights with an offset, so the min/offset term matters.
                let w: Vec<f32> = rand_vec(n * k, seed).iter().map(|v| v + 0.3).collect();
                let wt = Tensor::from_vec(w, (n, k), &dev).unwrap();
                let q = QTensor::quantize(&wt, dtype).unwrap();
                let x = Tensor::from_vec(rand_vec(m * k, seed + 1000), (m, k), &dev).unwrap();

                // candle's Q4_1/Q5_1 kernels need an even number of blocks per row (a debug
                // assertion): the odd shape is checked against the f32 product only.
                let candle = (k / 32 % 2 == 0).then(|| {
                    QMatMul::from_qtensor(QTensor::quantize(&wt, dtype).unwrap())
                        .unwrap()
                        .forward(&x)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                });
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
                let qw = qw.with_isa(Isa::Avx2);
                let mut y2 = vec![0f32; m * n];
                qw.matmul(&xs, m, &mut y2);

                let what = format!("{dtype:?} m={m} n={n} k={k}");
                let e_exact = rel_err(&y, &exact);
                let e_scalar = rel_err(&ys, &y);
                let e_avx2 = rel_err(&y2, &ys);
                if m == 1 && k == 576 {
                    eprintln!(
                        "kernels: {:?} (AVX2 path: {:?})",
                        QWeight::from_qtensor(&q).unwrap().unwrap().isa(),
                        qw.isa()
                    );
                }
                let mut e_candle_exact = 0.0;
                if let Some(candle) = &candle {
                    let e_candle = rel_err(&y, candle);
                    e_candle_exact = rel_err(candle, &exact);
                    eprintln!("{what}: vs candle {e_candle:.2e}, vs f32 {e_exact:.2e} (candle {e_candle_exact:.2e})");
                    // candle quantizes activations for the k-quants in blocks of 256 (Q8_K),
                    // aha in blocks of 32 for all types: further apart, both near the f32 result.
                    let tol_candle = if dtype.block_size() == 256 {
                        2e-2
                    } else {
                        5e-3
                    };
                    assert!(
                        e_candle < tol_candle,
                        "{what}: vs candle QMatMul {e_candle}"
                    );
                }
                // (A single output can be a near-cancelling sum: then no worse than candle.)
                assert!(
                    e_exact < 1e-2f32.max(1.5 * e_candle_exact),
                    "{what}: vs dequantized f32 {e_exact} (candle's own: {e_candle_exact})"
                );
                assert!(e_scalar < 1e-5, "{what}: scalar vs simd {e_scalar}");
                assert!(e_avx2 < 1e-5, "{what}: scalar vs AVX2 {e_avx2}");

                // The wrapper, with a leading batch dimension.
                let qm = QMat::new(std::sync::Arc::new(q), Kernels::Aha).unwrap();
                assert!(matches!(qm, QMat::Fast(_)));
                let y3 = qm.forward(&x.reshape((1, m, k)).unwrap()).unwrap();
                assert_eq!(y3.dims(), &[1, m, n]);
                let y3 = y3.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(rel_err(&y3, &y) < 1e-6, "{what}: QMat forward");
            }
        }
    }
}

/// Weights of 16-row multiples take the tiled kernels where AVX2 or AVX-512 is present (every
/// type); the same weight limited to the scalar kernels is turned back into rows, and both
/// agree.
#[test]
fn tiled_weights_turn_back_into_rows() {
    let dev = Device::Cpu;
    for dtype in TYPES {
        let (n, k, m) = (48, 512, 5);
        let wt = Tensor::from_vec(rand_vec(n * k, 11), (n, k), &dev).unwrap();
        let q = QTensor::quantize(&wt, dtype).unwrap();
        let x = rand_vec(m * k, 12);
        let qw = QWeight::from_qtensor(&q).unwrap().unwrap();
        assert_eq!(qw.tiled(), qw.isa() >= Isa::Avx2, "{dtype:?}");
        let deq = qw.dequantize();
        let (mut y, mut y2) = (vec![0f32; m * n], vec![0f32; m * n]);
        qw.matmul(&x, m, &mut y);
        let rows = qw.with_isa(Isa::Scalar);
        assert!(!rows.tiled());
        assert_eq!(rows.dequantize(), deq, "{dtype:?}: untiled weights differ");
        rows.matmul(&x, m, &mut y2);
        assert!(
            rel_err(&y, &y2) < 1e-5,
            "{dtype:?}: tiled vs rows {}",
            rel_err(&y, &y2)
        );
        // And tiled again, to the same weights.
        assert_eq!(rows.with_isa(Isa::Avx512).dequantize(), deq);
    }
}

#[test]
fn other_types_stay_with_candle() {
    let dev = Device::Cpu;
    let wt = Tensor::from_vec(rand_vec(256 * 8, 7), (8, 256), &dev).unwrap();
    for dtype in [
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::F16,
        GgmlDType::F32,
    ] {
        let q = QTensor::quantize(&wt, dtype).unwrap();
        assert!(QWeight::from_qtensor(&q).unwrap().is_none());
        assert!(matches!(
            QMat::new(std::sync::Arc::new(q), Kernels::Aha).unwrap(),
            QMat::Candle(_)
        ));
    }
}

#[test]
fn zero_rows_give_zero() {
    let dev = Device::Cpu;
    let wt = Tensor::from_vec(rand_vec(256 * 9, 3), (9, 256), &dev).unwrap();
    for dtype in TYPES {
        let qw = QWeight::from_qtensor(&QTensor::quantize(&wt, dtype).unwrap())
            .unwrap()
            .unwrap();
        let mut y = vec![1f32; 2 * 9];
        qw.matmul(&[0f32; 512], 2, &mut y);
        assert!(y.iter().all(|v| *v == 0.0), "{dtype:?}: {y:?}");
    }
}

/// A row's result does not depend on the other rows in the call (prefill = cached decode).
#[test]
fn rows_are_independent_of_the_batch() {
    let dev = Device::Cpu;
    for (t, dtype) in TYPES.into_iter().enumerate() {
        for (k, n) in shapes(dtype) {
            let w = rand_vec(n * k, 90 + t as u64);
            let q = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), dtype).unwrap();
            let qw = QWeight::from_qtensor(&q).unwrap().unwrap();
            let m = 24;
            let x = rand_vec(m * k, 7 + t as u64);
            let mut all = vec![0f32; m * n];
            qw.matmul(&x, m, &mut all);
            for i in 0..m {
                let mut one = vec![0f32; n];
                qw.matmul(&x[i * k..(i + 1) * k], 1, &mut one);
                assert_eq!(
                    one,
                    all[i * n..(i + 1) * n],
                    "{dtype:?} k={k} n={n} row {i}"
                );
            }
        }
    }
}

/// Weights that read the same input tensor quantize it once (the last quantized input is
/// kept under the tensor's id): every result equals the product computed on its own, also
/// when types of another activation flavor and other inputs come in between.
#[test]
fn a_shared_input_is_quantized_once_with_the_same_results() {
    use aha_model::qkernels::Kernels;
    use std::sync::Arc;
    let dev = Device::Cpu;
    let (k, m) = (512, 5);
    let mats: Vec<QMat> = [
        GgmlDType::Q4K,
        GgmlDType::Q4K,
        GgmlDType::Q8_0,
        GgmlDType::Q4_1,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, dtype)| {
        let w = Tensor::from_vec(rand_vec(96 * k, 300 + i as u64), (96, k), &dev).unwrap();
        QMat::new(
            Arc::new(QTensor::quantize(&w, dtype).unwrap()),
            Kernels::default(),
        )
        .unwrap()
    })
    .collect();
    let x = Tensor::from_vec(rand_vec(m * k, 400), (m, k), &dev).unwrap();
    let other = Tensor::from_vec(rand_vec(m * k, 401), (m, k), &dev).unwrap();
    let alone: Vec<Vec<f32>> = mats
        .iter()
        .map(|q| {
            q.forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    for order in [[0usize, 1, 2, 3, 0, 1], [2, 0, 3, 1, 1, 2]] {
        for (step, &i) in order.iter().enumerate() {
            if step == 3 {
                // Another input in between replaces the kept one.
                mats[i].forward_from(&other, Some(other.id())).unwrap();
            }
            let y: Vec<f32> = mats[i]
                .forward_from(&x, Some(x.id()))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(y, alone[i], "weight {i} at step {step} of {order:?}");
        }
    }
    // A tensor that changes in place keeps its id: the kept input must not be reused.
    let var = candle_core::Var::from_tensor(&x).unwrap();
    mats[0]
        .forward_from(var.as_tensor(), Some(var.id()))
        .unwrap();
    var.set(&other).unwrap();
    let y: Vec<f32> = mats[0]
        .forward_from(var.as_tensor(), Some(var.id()))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let want: Vec<f32> = mats[0]
        .forward(&other)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(y, want, "an input changed in place under its id");
}

/// `QMat::forward_all` (every weight's tasks in one hand-off, the input quantized once) gives
/// each weight's own `forward` bits: q, k and v of one type, and Q4_K_M's mix of Q4_K and
/// Q6_K, for decode and prompt row counts, on one thread and on two; through
/// `Linear::forward_all` with biases too. Weights it cannot group decline it.
#[test]
fn forward_all_gives_each_weights_bits() {
    use aha_model::ops::{Linear, Mode};
    let dev = Device::Cpu;
    let k = 512;
    let mat = |dtype: GgmlDType, n: usize, seed: u64| {
        let w = Tensor::from_vec(rand_vec(n * k, seed), (n, k), &dev).unwrap();
        let q = std::sync::Arc::new(QTensor::quantize(&w, dtype).unwrap());
        std::sync::Arc::new(QMat::new(q, Kernels::Aha).unwrap())
    };
    let sets = [
        [
            (GgmlDType::Q8_0, 768),
            (GgmlDType::Q8_0, 256),
            (GgmlDType::Q8_0, 256),
        ],
        [
            (GgmlDType::Q4K, 512),
            (GgmlDType::Q4K, 128),
            (GgmlDType::Q6K, 128),
        ],
        [
            (GgmlDType::Q4_0, 1024),
            (GgmlDType::Q4_0, 1024),
            (GgmlDType::Q4_0, 48),
        ],
    ];
    let tiled = Isa::detected() != Isa::Scalar;
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for (s, set) in sets.iter().enumerate() {
                let mats: Vec<_> = set
                    .iter()
                    .enumerate()
                    .map(|(i, &(dtype, n))| mat(dtype, n, 10 * s as u64 + i as u64))
                    .collect();
                for rows in [1usize, 2, 5, 33] {
                    let x = Tensor::from_vec(rand_vec(rows * k, rows as u64), (rows, 1, k), &dev)
                        .unwrap();
                    let refs: Vec<&QMat> = mats.iter().map(|m| &**m).collect();
                    let all = QMat::forward_all(&refs, &x, Some(x.id())).unwrap();
                    assert_eq!(all.is_some(), tiled, "set {s}: grouped only when tiled");
                    for (i, y) in all.into_iter().flatten().enumerate() {
                        let alone = mats[i].forward(&x).unwrap();
                        assert_eq!(y.dims(), alone.dims());
                        assert_eq!(
                            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                            alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                            "threads {threads}, set {s}, weight {i}, rows {rows}"
                        );
                    }
                    // Through the layers, with a bias on the first two.
                    let layers: Vec<Linear> = mats
                        .iter()
                        .zip(set)
                        .enumerate()
                        .map(|(i, (m, &(_, n)))| {
                            let b = (i < 2).then(|| {
                                Tensor::from_vec(rand_vec(n, 99 + i as u64), n, &dev).unwrap()
                            });
                            Linear::quantized(m.clone(), (n, k), b)
                        })
                        .collect();
                    let ys = Linear::forward_all(
                        [&layers[0], &layers[1], &layers[2]],
                        &x,
                        Mode::Inference,
                    )
                    .unwrap();
                    for (y, l) in ys.iter().zip(&layers) {
                        let alone = l.forward(&x, Mode::Inference).unwrap();
                        assert_eq!(y.dims(), alone.dims());
                        assert_eq!(
                            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                            alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                        );
                    }
                }
            }
        });
    }
    // Row counts that are not a multiple of 16 keep the row layout: not grouped.
    let odd = [mat(GgmlDType::Q8_0, 67, 1), mat(GgmlDType::Q8_0, 64, 2)];
    let x = Tensor::from_vec(rand_vec(k, 5), (1, k), &dev).unwrap();
    assert!(QMat::forward_all(&[&*odd[0], &*odd[1]], &x, None)
        .unwrap()
        .is_none());
}
