//! A per-query key mask ([b, t, t]) lets several sequences share one row (packing): each
//! token sees only the earlier tokens of its own sequence, so the logits equal those of the
//! sequences run alone.

use crate::common;

use aha_model::{ForwardInput, LoadOptions, LogitsFor, Mode, Model, Tensor};
use common::max_abs_diff;
use std::path::Path;

fn model() -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2_tied");
    Model::load(&dir, &LoadOptions::default()).unwrap()
}

fn logits(m: &Model, ids: &[u32], pos: &[u32], mask: Option<&Tensor>, mode: Mode) -> Tensor {
    segment_logits(m, ids, pos, mask, None, mode).unwrap()
}

fn segment_logits(
    m: &Model,
    ids: &[u32],
    pos: &[u32],
    mask: Option<&Tensor>,
    segments: Option<&[usize]>,
    mode: Mode,
) -> aha_model::Result<Tensor> {
    let dev = m.device();
    let t = ids.len();
    let input_ids = Tensor::from_vec(ids.to_vec(), (1, t), dev).unwrap();
    let position_ids = Tensor::from_vec(pos.to_vec(), (1, t), dev).unwrap();
    m.forward(
        &ForwardInput {
            input_ids: &input_ids,
            position_ids: &position_ids,
            key_mask: mask,
            segments,
            mode,
            logits: LogitsFor::All,
        },
        None,
    )
}

/// [1, t, t]: 1 where query and key belong to the same sequence.
fn block_mask(seg: &[u32], m: &Model) -> Tensor {
    let t = seg.len();
    let allowed: Vec<f32> = seg
        .iter()
        .flat_map(|q| seg.iter().map(move |k| (q == k) as u8 as f32))
        .collect();
    Tensor::from_vec(allowed, (1, t, t), m.device()).unwrap()
}

#[test]
fn block_diagonal_mask_matches_separate_sequences() {
    let m = model();
    let a = [5u32, 17, 99, 3];
    let b = [42u32, 7, 200];
    let seg = [0u32, 0, 0, 0, 1, 1, 1];
    let mask = block_mask(&seg, &m);
    let packed_ids: Vec<u32> = a.iter().chain(&b).copied().collect();
    for mode in [Mode::Inference, Mode::Train] {
        let packed = logits(&m, &packed_ids, &[0, 1, 2, 3, 0, 1, 2], Some(&mask), mode);
        let la = logits(&m, &a, &[0, 1, 2, 3], None, mode);
        let lb = logits(&m, &b, &[0, 1, 2], None, mode);
        let pa = packed.narrow(1, 0, 4).unwrap();
        let pb = packed.narrow(1, 4, 3).unwrap();
        assert!(max_abs_diff(&pa, &la) < 1e-5, "{mode:?}");
        assert!(max_abs_diff(&pb, &lb) < 1e-5, "{mode:?}");
        // Without the mask the second sequence sees the first: the logits differ.
        let unmasked = logits(&m, &packed_ids, &[0, 1, 2, 3, 0, 1, 2], None, mode);
        assert!(max_abs_diff(&unmasked.narrow(1, 4, 3).unwrap(), &lb) > 1e-3);
    }
}

/// Sequence lengths instead of a mask: the same logits in every mode (training takes them
/// sequence by sequence), and gradients that reach the weights; lengths that do not cover
/// the row, or come with a second row, are errors.
#[test]
fn packed_segments_match_the_block_diagonal_mask() {
    let m = model();
    let ids = [5u32, 17, 99, 3, 42, 7, 200, 11];
    let pos = [0u32, 1, 2, 3, 0, 1, 2, 0];
    let seg = [0u32, 0, 0, 0, 1, 1, 1, 2];
    let mask = block_mask(&seg, &m);
    let lens = [4usize, 3, 1];
    for mode in [Mode::Inference, Mode::Train] {
        let want = logits(&m, &ids, &pos, Some(&mask), mode);
        let got = segment_logits(&m, &ids, &pos, None, Some(&lens), mode).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-5, "{mode:?}");
    }
    let got = segment_logits(&m, &ids, &pos, None, Some(&lens), Mode::Train).unwrap();
    let grads = got.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for (name, p) in m.params().iter() {
        let g = grads
            .get(p.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "{name}");
        assert!(g.iter().any(|&x| x != 0.0), "{name}: zero gradient");
    }
    for bad in [&[4usize, 3][..], &[4, 3, 2]] {
        assert!(segment_logits(&m, &ids, &pos, None, Some(bad), Mode::Train).is_err());
    }
    assert!(segment_logits(&m, &ids, &pos, Some(&mask), Some(&lens), Mode::Train).is_err());
}

#[test]
fn key_mask_of_the_wrong_shape_is_an_error() {
    let m = model();
    let dev = m.device();
    let ids = Tensor::from_vec(vec![1u32, 2, 3], (1, 3), dev).unwrap();
    let pos = Tensor::from_vec(vec![0u32, 1, 2], (1, 3), dev).unwrap();
    let bad = Tensor::ones((1, 2, 3), candle_core::DType::F32, dev).unwrap();
    let err = m
        .forward(
            &ForwardInput {
                input_ids: &ids,
                position_ids: &pos,
                key_mask: Some(&bad),
                segments: None,
                mode: Mode::Inference,
                logits: LogitsFor::All,
            },
            None,
        )
        .expect_err("a [1, 2, 3] mask for 3 tokens is rejected");
    assert!(err.to_string().contains("key mask"), "{err}");
}
