//! Helpers shared by the GRPO tests.
#![allow(dead_code)]

use aha_model::{LoadOptions, Model};
use aha_train::grpo::{FnReward, Prompt, Rewarder, Sample};
use std::path::PathBuf;

/// A tiny model from aha-model's test fixtures.
pub fn fixture(name: &str) -> Model {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../aha-model/tests/fixtures")
        .join(name);
    Model::load(&dir, &LoadOptions::default()).unwrap()
}

/// Reward: share of completion tokens below 128.
pub fn low_token_reward() -> Box<dyn Rewarder> {
    Box::new(FnReward {
        name: "low".into(),
        f: |s: &Sample| {
            s.token_ids.iter().filter(|&&t| t < 128).count() as f32
                / s.token_ids.len().max(1) as f32
        },
    })
}

/// Two short prompts without gold answers.
pub fn two_prompts() -> Vec<Prompt> {
    [vec![1, 2, 3], vec![40, 41]]
        .into_iter()
        .map(|ids| Prompt { ids, gold: None })
        .collect()
}

/// Largest absolute elementwise difference.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
