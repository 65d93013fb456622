//! GRPO with LoRA adapters on the tiny qwen2_tied model: only the adapters move, the step
//! still learns, checkpoints are PEFT adapters, and resume continues exactly.

use crate::common;
use aha_model::{lora, LoadOptions, LoraConfig, Model};
use aha_train::grpo::*;
use common::{fixture, low_token_reward, max_abs_diff, two_prompts};

fn lora_model() -> Model {
    let mut m = fixture("qwen2_tied");
    m.add_lora(&LoraConfig::new(4, 8.0, &lora::LLAMA_TARGETS), 3)
        .unwrap();
    m
}

fn cfg() -> GrpoConfig {
    GrpoConfig {
        group_size: 8,
        max_tokens: 6,
        lr: 1e-2,
        beta: 0.04,
        num_iterations: 2,
        ref_reset_every: 2,
        micro_batch: 5,
        seed: 7,
        ..Default::default()
    }
}

#[test]
fn lora_step_trains_only_the_adapters_and_learns() {
    let mut t = GrpoTrainer::new(lora_model(), None, low_token_reward(), cfg()).unwrap();
    let base: Vec<(String, candle_core::Tensor)> = t
        .model()
        .params()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    let adapters0 = t.model().trainable_params().tensors();
    let adapters0: Vec<(String, candle_core::Tensor)> = adapters0
        .into_iter()
        .map(|(n, v)| (n, v.copy().unwrap()))
        .collect();
    let ro = t.sample(&two_prompts()).unwrap();
    let best = (0..16)
        .max_by(|&a, &b| ro.advantages[a].total_cmp(&ro.advantages[b]))
        .unwrap();
    let lp = |t: &GrpoTrainer| {
        sequence_logprob(
            t.model(),
            &ro.prompt_ids[best],
            &ro.completions[best].token_ids,
        )
        .unwrap()
    };
    let before = lp(&t);
    let m = t.train(&ro).unwrap();
    assert!(
        lp(&t) > before,
        "rewarded completion: {before} -> {}",
        lp(&t)
    );
    assert!(m.grad_norm > 0.0 && m.grad_norm.is_finite(), "{m:?}");
    for (name, w) in &base {
        let now = t.model().params().get(name).unwrap();
        assert_eq!(
            max_abs_diff(now.as_tensor(), w),
            0.0,
            "base weight {name} moved"
        );
    }
    let mut moved = 0;
    for (name, w) in &adapters0 {
        let now = t.model().trainable_params().get(name).unwrap();
        if max_abs_diff(now.as_tensor(), w) > 0.0 {
            moved += 1;
        }
    }
    assert_eq!(moved, adapters0.len(), "every A and B moves");
    // The optimizer holds moments for the adapters only.
    assert_eq!(t.model().trainable_params().len(), 2 * 7 * 2);
}

#[test]
fn lora_checkpoint_is_a_peft_adapter_and_resume_is_exact() {
    let prompts = two_prompts();
    let mut a = GrpoTrainer::new(lora_model(), None, low_token_reward(), cfg()).unwrap();
    let ma: Vec<StepMetrics> = (0..3)
        .map(|_| a.step(&prompts).unwrap().without_times())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint");
    let mut b = GrpoTrainer::new(lora_model(), None, low_token_reward(), cfg()).unwrap();
    let mb1 = b.step(&prompts).unwrap().without_times();
    b.save_checkpoint(&ckpt).unwrap();
    drop(b);
    assert!(ckpt.join(lora::CONFIG_FILE).is_file());
    assert!(ckpt.join(lora::WEIGHTS_FILE).is_file());
    assert!(
        !ckpt.join("model.safetensors").exists(),
        "a LoRA checkpoint holds the adapter, not the model"
    );
    // The base named in the adapter config, plus the adapter.
    let mut c = GrpoTrainer::resume(
        &ckpt,
        None,
        low_token_reward(),
        None,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(c.step, 1);
    assert!(c.model().adapter().is_some());
    let mc: Vec<StepMetrics> = (0..2)
        .map(|_| c.step(&prompts).unwrap().without_times())
        .collect();
    assert_eq!(ma[0], mb1);
    assert_eq!(ma[1], mc[0]);
    assert_eq!(ma[2], mc[1]);
    for (name, v) in a.model().trainable_params().iter() {
        let w = c.model().trainable_params().get(name).unwrap();
        assert_eq!(max_abs_diff(v.as_tensor(), w.as_tensor()), 0.0, "{name}");
    }
    // The same through resume_with and an explicitly loaded base.
    let mut d =
        GrpoTrainer::resume_with(&ckpt, fixture("qwen2_tied"), None, low_token_reward(), None)
            .unwrap();
    assert_eq!(d.step(&prompts).unwrap().without_times(), ma[1]);
}
