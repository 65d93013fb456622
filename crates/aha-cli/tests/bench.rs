//! `aha bench sft --roofline` and `aha bench generate --roofline`: the FLOPs and bytes they count.

use crate::common::{ok, stdout};

#[test]
fn sft_roofline_counts_every_product_of_the_step() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../aha-model/tests/fixtures/qwen2_tied");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.json");
    // 4 examples of 10 tokens, the first 3 labels masked: batch 2 in micro-batches of 1.
    let rows: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            let ids: Vec<u32> = (0..10).map(|j| (i * 10 + j) % 256).collect();
            let labels: Vec<i64> = ids
                .iter()
                .enumerate()
                .map(|(j, &t)| if j < 3 { -100 } else { t as i64 })
                .collect();
            serde_json::json!({"input_ids": ids, "labels": labels})
        })
        .collect();
    std::fs::write(&data, serde_json::to_string(&rows).unwrap()).unwrap();
    let out = ok(&[
        "--threads",
        "1",
        "bench",
        "sft",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--batch-size",
        "2",
        "--micro-batch",
        "1",
        "--steps",
        "1",
        "--roofline",
    ]);
    let row: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // The fixture: hidden 48, intermediate 96, 4 heads of 12, 2 kv heads, 2 layers, vocab 256
    // tied. Per layer q, k, v, o, gate, up, down (out x in); the head over positions 3..9.
    let layer: usize = [
        48 * 48,
        24 * 48,
        24 * 48,
        48 * 48,
        96 * 48,
        96 * 48,
        48 * 96,
    ]
    .iter()
    .sum();
    let (t, head_t, micro) = (10, 7, 2);
    let per_micro = 6 * (t * 2 * layer + head_t * 256 * 48) + 2 * 12 * 4 * t * t * 12;
    let want = (micro * per_micro) as f64 / 1e9;
    let got = row["gemm_gflop_per_step"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    let share = row["share_of_roofline"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{row}");
    assert!(row["roofline_trained_tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn generate_roofline_takes_the_larger_of_its_two_bounds() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../aha-model/tests/fixtures/qwen2_tied");
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.json");
    std::fs::write(&prompts, "[[1, 2, 3], [4, 5, 6]]").unwrap();
    let out = ok(&[
        "--threads",
        "1",
        "bench",
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--batch",
        "2",
        "--new-tokens",
        "3",
        "--roofline",
    ]);
    let row: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let f = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{k} in {row}"));
    // The fixture (as above): per layer q, k, v, o, gate, up, down, and the tied head.
    let layer = 48 * 48 + 2 * 24 * 48 + 48 * 48 + 3 * 96 * 48;
    let weights = 2 * layer + 256 * 48;
    assert!((f("gflop_per_step") - (2 * 2 * weights) as f64 / 1e9).abs() < 1e-12);
    assert!((f("weight_gb") - (4 * weights) as f64 / 1e9).abs() < 1e-12);
    let (compute, memory) = (
        f("compute_bound_tokens_per_s"),
        f("memory_bound_tokens_per_s"),
    );
    assert!(compute > 0.0 && memory > 0.0, "{row}");
    assert_eq!(f("roofline_tokens_per_s"), compute.min(memory));
    let share = f("share_of_roofline");
    assert!((share - f("tokens_per_s") / compute.min(memory)).abs() < 1e-9 * share.max(1.0));
    assert!(share > 0.0 && share < 1.0, "{row}");
}
