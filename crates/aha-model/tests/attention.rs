//! The inference attention kernels (`ops::attend_few` for few queries per sequence,
//! `ops::attend_prefill` and `llama::attend_blocks` for long prompts) against the composed
//! ops of training mode, on strided cache views with a causal and padding mask.

use crate::common::max_abs_diff;
use aha_model::llama::{attend, attend_blocks};
use aha_model::{attention_bias, KvCache, Mode};
use candle_core::{DType, Device, Tensor};

#[test]
fn few_query_attention_matches_the_composed_ops() {
    let dev = Device::Cpu;
    let (kv, n_rep, d) = (2usize, 3usize, 64usize);
    // One sequence: a task per query head; five: a task per kv head (on up to 2 threads).
    // Sequence 2 alone against the batch checks that the split does not change its result.
    for (b, past, t) in [
        (5, 0, 1),
        (5, 5, 1),
        (5, 37, 1),
        (5, 20, 4),
        (5, 9, 16),
        (1, 37, 1),
        (1, 9, 16),
    ] {
        // Keys and values as the cache returns them: views into larger buffers.
        let mut cache = KvCache::new(1);
        let total = past + t;
        let k_all = Tensor::randn(0f32, 1.0, (b, kv, total, d), &dev).unwrap();
        let v_all = Tensor::randn(0f32, 1.0, (b, kv, total, d), &dev).unwrap();
        if past > 0 {
            cache
                .append(
                    0,
                    &k_all.narrow(2, 0, past).unwrap(),
                    &v_all.narrow(2, 0, past).unwrap(),
                )
                .unwrap();
        }
        let (k, v) = cache
            .append(
                0,
                &k_all.narrow(2, past, t).unwrap(),
                &v_all.narrow(2, past, t).unwrap(),
            )
            .unwrap();
        assert!(!k.is_contiguous(), "the test should see a strided view");
        let q = Tensor::randn(0f32, 1.0, (b, kv * n_rep, t, d), &dev).unwrap();
        // Row 1 has two padding positions at the front (left-padded), row 2 none.
        let mut mask = vec![1u8; b * total];
        if total > 2 && b > 1 {
            mask[total] = 0;
            mask[total + 1] = 0;
        }
        let mask = Tensor::from_vec(mask, (b, total), &dev).unwrap();
        let bias = attention_bias(Some(&mask), b, t, past, &dev).unwrap();

        let fast = attend(&q, &k, &v, &bias, kv, Mode::Inference).unwrap();
        let composed = attend(&q, &k, &v, &bias, kv, Mode::Train).unwrap();
        assert_eq!(fast.dims(), composed.dims());
        let err = max_abs_diff(&fast, &composed);
        assert!(
            err < 1e-5,
            "b {b} past {past} t {t}: max |fast - composed| = {err}"
        );
        if b == 1 {
            continue;
        }

        // A sequence's result does not depend on the rest of the batch.
        let one = attend(
            &q.narrow(0, 2, 1).unwrap(),
            &k.narrow(0, 2, 1).unwrap(),
            &v.narrow(0, 2, 1).unwrap(),
            &bias.narrow(0, 2, 1).unwrap(),
            kv,
            Mode::Inference,
        )
        .unwrap();
        assert_eq!(max_abs_diff(&one, &fast.narrow(0, 2, 1).unwrap()), 0.0);
    }
}

#[test]
fn few_query_attention_leaves_other_inputs_to_the_composed_path() {
    // f64 inputs are not the kernel's: the composed path answers, and agrees with f32.
    let dev = Device::Cpu;
    let q = Tensor::randn(0f32, 1.0, (1, 2, 1, 8), &dev).unwrap();
    let k = Tensor::randn(0f32, 1.0, (1, 1, 5, 8), &dev).unwrap();
    let v = Tensor::randn(0f32, 1.0, (1, 1, 5, 8), &dev).unwrap();
    let bias = attention_bias(None, 1, 1, 4, &dev).unwrap();
    let f32_out = attend(&q, &k, &v, &bias, 1, Mode::Inference).unwrap();
    let as64 = |x: &Tensor| x.to_dtype(DType::F64).unwrap();
    let f64_out = attend(
        &as64(&q),
        &as64(&k),
        &as64(&v),
        &as64(&bias),
        1,
        Mode::Inference,
    )
    .unwrap()
    .to_dtype(DType::F32)
    .unwrap();
    assert!(max_abs_diff(&f32_out, &f64_out) < 1e-5);
}

#[test]
fn few_query_attention_takes_no_queries() {
    // No new positions (t = 0): the composed path answers, with an empty result.
    let dev = Device::Cpu;
    let q = Tensor::zeros((2, 4, 0, 8), DType::F32, &dev).unwrap();
    let k = Tensor::randn(0f32, 1.0, (2, 2, 3, 8), &dev).unwrap();
    let v = Tensor::randn(0f32, 1.0, (2, 2, 3, 8), &dev).unwrap();
    let bias = Tensor::zeros((2, 1, 1, 0, 3), DType::F32, &dev).unwrap();
    let out = attend(&q, &k, &v, &bias, 2, Mode::Inference).unwrap();
    assert_eq!(out.dims(), &[2, 4, 0, 8]);
}

/// Long prompts (the AVX-512 prefill kernel where the CPU has it, else blocks of queries
/// against the keys they may see), and the blocks on their own: the same as the composed ops
/// over the full square for every real query, with left padding, a cache before the prompt,
/// strided cache views, last blocks shorter than the rest, and head sizes that take the
/// kernel's 64-lane and 16-lane tiles.
#[test]
fn long_prompt_attention_matches_the_composed_ops() {
    let dev = Device::Cpu;
    for (b, past, t, kv, n_rep, d) in [
        (1, 0, 256, 2, 2, 16),
        (2, 0, 300, 2, 2, 16),
        (2, 7, 260, 2, 2, 16),
        (1, 0, 270, 4, 3, 64),
        (2, 5, 257, 1, 1, 80),
        (1, 3, 256, 2, 4, 128),
    ] {
        let total = past + t;
        let k_all = Tensor::randn(0f32, 1.0, (b, kv, total, d), &dev).unwrap();
        let v_all = Tensor::randn(0f32, 1.0, (b, kv, total, d), &dev).unwrap();
        let mut cache = KvCache::new(1);
        if past > 0 {
            let (k, v) = (
                k_all.narrow(2, 0, past).unwrap(),
                v_all.narrow(2, 0, past).unwrap(),
            );
            cache.append(0, &k, &v).unwrap();
        }
        let (k, v) = cache
            .append(
                0,
                &k_all.narrow(2, past, t).unwrap(),
                &v_all.narrow(2, past, t).unwrap(),
            )
            .unwrap();
        let q = Tensor::randn(0f32, 1.0, (b, kv * n_rep, t, d), &dev).unwrap();
        let mut mask = vec![1u8; b * total];
        if b > 1 {
            // Row 1 left-padded by 40.
            mask[total..total + 40].fill(0);
        }
        let mask = Tensor::from_vec(mask, (b, total), &dev).unwrap();
        let bias = attention_bias(Some(&mask), b, t, past, &dev).unwrap();
        let composed = attend(&q, &k, &v, &bias, kv, Mode::Train).unwrap();
        let fast = attend(&q, &k, &v, &bias, kv, Mode::Inference).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let blocks = attend_blocks(&q, &k, &v, &bias, kv, scale, Mode::Inference).unwrap();
        for (name, out) in [("attend", &fast), ("attend_blocks", &blocks)] {
            assert_eq!(out.dims(), composed.dims());
            // Padding queries (row 1's first 40 positions) see no key at all: their outputs
            // are never read, and the composed ops average every key for them where the
            // fast paths average fewer. Every real query must agree.
            let real = |x: &Tensor, r: usize, from: usize| {
                x.narrow(0, r, 1)
                    .unwrap()
                    .narrow(2, from, t - from)
                    .unwrap()
            };
            let mut err = max_abs_diff(&real(out, 0, 0), &real(&composed, 0, 0));
            if b > 1 {
                let from = 40usize.saturating_sub(past);
                err = err.max(max_abs_diff(&real(out, 1, from), &real(&composed, 1, from)));
            }
            assert!(
                err < 1e-5,
                "{name}: b {b} past {past} t {t} kv {kv} n_rep {n_rep} d {d}: \
                 max |fast - composed| over real queries = {err}"
            );
        }
        if b > 1 {
            // A sequence's result does not depend on the rest of the batch.
            let one = |x: &Tensor| x.narrow(0, 1, 1).unwrap();
            let alone = attend(
                &one(&q),
                &one(&k),
                &one(&v),
                &one(&bias),
                kv,
                Mode::Inference,
            );
            assert_eq!(max_abs_diff(&alone.unwrap(), &one(&fast)), 0.0);
        }
    }
}
