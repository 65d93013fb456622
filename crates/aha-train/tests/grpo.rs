//! GRPO: the loss against hand-computed values, log-probs of padded batches, and trainer
//! steps on a tiny fixture model (learning signal, gradients, exact resume).

use aha_model::{LoadOptions, Mode};
use aha_train::grpo::*;
mod common;
use aha_train::optim::Grads;
use candle_core::{Device, Tensor, Var};
use common::{fixture, low_token_reward, max_abs_diff, two_prompts};

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol
}

fn assert_vec(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(close(*g, *w, tol), "{got:?} vs {want:?}");
    }
}

#[test]
fn advantages_by_hand() {
    let r = [1.0f32, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0];
    // Group 1: mean 0.5, unbiased std sqrt(1/3); group 2: all equal -> 0.
    let s = (1.0f32 / 3.0).sqrt() + 1e-4;
    let a = group_advantages(&r, 4, AdvantageNorm::Group, 1e-4);
    assert_vec(
        &a,
        &[0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0.0, 0.0, 0.0, 0.0],
        1e-5,
    );
    let a = group_advantages(&r, 4, AdvantageNorm::NoStd, 1e-4);
    assert_vec(&a, &[0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0, 0.0], 1e-6);
    // Batch std: mean 1.25, sum of squares 5.5, / 7.
    let bs = (5.5f32 / 7.0).sqrt() + 1e-4;
    let a = group_advantages(&r, 4, AdvantageNorm::Batch, 1e-4);
    assert_vec(
        &a,
        &[0.5 / bs, -0.5 / bs, -0.5 / bs, 0.5 / bs, 0.0, 0.0, 0.0, 0.0],
        1e-5,
    );
    assert_eq!(zero_variance_groups(&r, 4), vec![false, true]);
}

fn t2(v: &[&[f32]]) -> Tensor {
    Tensor::new(
        v.iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        &Device::Cpu,
    )
    .unwrap()
}

fn t1(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn row(t: &Tensor, i: usize) -> Vec<f32> {
    t.get(i).unwrap().to_vec1().unwrap()
}

#[test]
fn clipped_ratio_loss_both_sides_by_hand() {
    // Ratios 1.5, 0.5, 1.1 against old log-probs 0; eps_low 0.2, eps_high 0.28 (clip-higher).
    let lp = [1.5f32.ln(), 0.5f32.ln(), 1.1f32.ln()];
    let logp = Var::from_tensor(&t2(&[&lp, &lp])).unwrap();
    let old = t2(&[&[0.0; 3], &[0.0; 3]]);
    let mask = t2(&[&[1.0; 3], &[1.0; 3]]);
    let adv = t1(&[1.0, -1.0]);
    let cfg = LossConfig {
        eps_low: 0.2,
        eps_high: 0.28,
        beta: 0.0,
    };
    let w = t1(&[1.0, 1.0]);
    let out = grpo_loss(logp.as_tensor(), &old, None, &adv, &mask, &w, &cfg).unwrap();
    // A = +1: -min(r, clip(r, 0.8, 1.28)) = -[1.28, 0.5, 1.1].
    assert_vec(&row(&out.per_token, 0), &[-1.28, -0.5, -1.1], 1e-5);
    // A = -1: -min(-r, -clip(r)) = [1.5, 0.8, 1.1].
    assert_vec(&row(&out.per_token, 1), &[1.5, 0.8, 1.1], 1e-5);
    assert!(close(
        out.loss.to_scalar::<f32>().unwrap(),
        -1.28 - 0.5 - 1.1 + 1.5 + 0.8 + 1.1,
        1e-5
    ));
    assert_eq!(
        (out.clipped_low, out.clipped_high, out.tokens),
        (1.0, 1.0, 6.0)
    );
    // Gradients: clipped tokens get none; unclipped d/dlogp = -A r.
    let grads = out.loss.backward().unwrap();
    let g = grads.get(logp.as_tensor()).unwrap();
    assert_vec(&row(g, 0), &[0.0, -0.5, -1.1], 1e-5);
    assert_vec(&row(g, 1), &[1.5, 0.0, 1.1], 1e-5);
}

#[test]
fn k3_kl_by_hand() {
    // ref - logp = [0, ln 2, -ln 2] -> k3 = [0, 1 - ln 2, ln 2 - 0.5].
    let logp = Var::from_tensor(&t2(&[&[-1.0, -1.0, -1.0]])).unwrap();
    let l2 = 2f32.ln();
    let reference = t2(&[&[-1.0, -1.0 + l2, -1.0 - l2]]);
    let old = logp.as_tensor().detach();
    let mask = t2(&[&[1.0, 1.0, 1.0]]);
    let beta = 0.1;
    let cfg = LossConfig {
        eps_low: 0.2,
        eps_high: 0.2,
        beta,
    };
    // A = 0: only the KL term remains.
    let out = grpo_loss(
        logp.as_tensor(),
        &old,
        Some(&reference),
        &t1(&[0.0]),
        &mask,
        &t1(&[1.0]),
        &cfg,
    )
    .unwrap();
    let k3 = [0.0, 1.0 - l2, l2 - 0.5];
    assert_vec(
        &row(&out.per_token, 0),
        &[0.0, 0.1 * k3[1], 0.1 * k3[2]],
        1e-6,
    );
    assert!(close(out.kl_sum as f32, k3[1] + k3[2], 1e-6));
    // d k3 / d logp = 1 - exp(ref - logp).
    let g = out.loss.backward().unwrap();
    assert_vec(
        &row(g.get(logp.as_tensor()).unwrap(), 0),
        &[0.0, 0.1 * (1.0 - 2.0), 0.1 * (1.0 - 0.5)],
        1e-6,
    );
}

#[test]
fn aggregation_modes_by_hand() {
    // Row 0 has 2 real tokens, row 1 has 4; per-token losses -A r with r = 1 and A = [1, 2].
    let lens = [2usize, 4];
    let mask = t2(&[&[1.0, 1.0, 0.0, 0.0], &[1.0, 1.0, 1.0, 1.0]]);
    let zeros = t2(&[&[0.0; 4], &[0.0; 4]]);
    let adv = t1(&[1.0, 2.0]);
    let cfg = LossConfig {
        eps_low: 0.2,
        eps_high: 0.2,
        beta: 0.0,
    };
    let norm = LossNorm::of(&lens, 5);
    let loss = |agg: LossAgg| {
        let w = t1(&token_weights(&lens, agg, &norm));
        grpo_loss(&zeros, &zeros, None, &adv, &mask, &w, &cfg)
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap()
    };
    // Sums: row 0 = -2, row 1 = -8.
    assert!(close(
        loss(LossAgg::Sequence),
        (-2.0 / 2.0 + -8.0 / 4.0) / 2.0,
        1e-6
    ));
    assert!(close(loss(LossAgg::Token), -10.0 / 6.0, 1e-6));
    assert!(close(loss(LossAgg::Constant), -10.0 / (2.0 * 5.0), 1e-6));
    // Micro-batches with whole-batch normalisers sum to the batch loss.
    for agg in [LossAgg::Sequence, LossAgg::Token, LossAgg::Constant] {
        let w = token_weights(&lens, agg, &norm);
        let mut sum = 0.0;
        for i in 0..2 {
            let m = mask.narrow(0, i, 1).unwrap();
            let z = zeros.narrow(0, i, 1).unwrap();
            let out = grpo_loss(
                &z,
                &z,
                None,
                &adv.narrow(0, i, 1).unwrap(),
                &m,
                &t1(&[w[i]]),
                &cfg,
            )
            .unwrap();
            sum += out.loss.to_scalar::<f32>().unwrap();
        }
        assert!(close(sum, loss(agg), 1e-6), "{agg:?}");
    }
}

#[test]
fn batched_completion_logprobs_match_single_sequences() {
    let model = fixture("qwen2_tied");
    let prompts: Vec<Vec<u32>> = vec![vec![5, 6, 7], vec![9], vec![1, 2, 3, 4, 5]];
    let completions: Vec<Vec<u32>> = vec![vec![10, 11], vec![12, 13, 14, 15], vec![16]];
    let p: Vec<&[u32]> = prompts.iter().map(|v| v.as_slice()).collect();
    let c: Vec<&[u32]> = completions.iter().map(|v| v.as_slice()).collect();
    let batch = completion_logprobs(&model, &p, &c, Mode::Train).unwrap();
    let inf = completion_logprobs(&model, &p, &c, Mode::Inference).unwrap();
    for i in 0..3 {
        // Reference: the engine's scorer on the unpadded sequence.
        let full: Vec<u32> = prompts[i].iter().chain(&completions[i]).copied().collect();
        let scored = aha_engine::score(&model, &[full]).unwrap().remove(0);
        let want = &scored[prompts[i].len() - 1..];
        let got = row(&batch.logprobs, i);
        assert_vec(&got[..completions[i].len()], want, 1e-4);
        assert_vec(&row(&inf.logprobs, i)[..completions[i].len()], want, 1e-4);
        assert!(got[completions[i].len()..].iter().all(|&x| x == 0.0));
        let ent = row(&batch.entropy, i);
        assert!(ent[..completions[i].len()]
            .iter()
            .all(|&e| e > 0.0 && e <= (256f32).ln() + 1e-4));
    }
}

#[test]
fn loss_gradients_are_finite_and_reach_every_parameter() {
    let model = fixture("qwen2_tied");
    let p: Vec<&[u32]> = vec![&[1, 2, 3], &[4, 5]];
    let c: Vec<&[u32]> = vec![&[7, 8, 9], &[10]];
    let out = completion_logprobs(&model, &p, &c, Mode::Train).unwrap();
    let reference = completion_logprobs(&model, &p, &c, Mode::Inference)
        .unwrap()
        .logprobs;
    let cfg = LossConfig {
        eps_low: 0.2,
        eps_high: 0.28,
        beta: 0.04,
    };
    let lens = [3usize, 1];
    let w = t1(&token_weights(
        &lens,
        LossAgg::Sequence,
        &LossNorm::of(&lens, 4),
    ));
    let lo = grpo_loss(
        &out.logprobs,
        &out.logprobs.detach(),
        Some(&reference),
        &t1(&[1.0, -1.0]),
        &out.mask,
        &w,
        &cfg,
    )
    .unwrap();
    assert!(lo.loss.to_scalar::<f32>().unwrap().is_finite());
    let store = lo.loss.backward().unwrap();
    let grads = Grads::from_store(model.params(), &store).unwrap();
    assert_eq!(
        grads.len(),
        model.params().len(),
        "every parameter gets a gradient"
    );
    assert!(grads.all_finite().unwrap());
    assert!(grads.global_norm().unwrap() > 0.0);
}

fn tiny_config() -> GrpoConfig {
    GrpoConfig {
        group_size: 8,
        max_tokens: 6,
        lr: 1e-3,
        beta: 0.0,
        micro_batch: 5,
        seed: 7,
        ..Default::default()
    }
}

#[test]
fn one_step_raises_logprob_of_rewarded_completion() {
    let model = fixture("qwen2_tied");
    let mut trainer = GrpoTrainer::new(model, None, low_token_reward(), tiny_config()).unwrap();
    let prompts = two_prompts();
    let ro = trainer.sample(&prompts).unwrap();
    assert_eq!(ro.completions.len(), 16);
    let best = (0..16)
        .max_by(|&a, &b| ro.advantages[a].total_cmp(&ro.advantages[b]))
        .unwrap();
    let worst = (0..16)
        .min_by(|&a, &b| ro.advantages[a].total_cmp(&ro.advantages[b]))
        .unwrap();
    assert!(ro.advantages[best] > 0.0 && ro.advantages[worst] < 0.0);
    let lp = |t: &GrpoTrainer, i: usize| {
        sequence_logprob(&t.model, &ro.prompt_ids[i], &ro.completions[i].token_ids).unwrap()
    };
    let (best0, worst0) = (lp(&trainer, best), lp(&trainer, worst));
    let m = trainer.train(&ro).unwrap();
    let (best1, worst1) = (lp(&trainer, best), lp(&trainer, worst));
    eprintln!("best {best0} -> {best1}, worst {worst0} -> {worst1}; metrics {m:?}");
    assert!(best1 > best0, "rewarded completion: {best0} -> {best1}");
    assert!(
        worst1 < worst0,
        "penalised completion: {worst0} -> {worst1}"
    );
    assert!(m.grad_norm > 0.0 && m.grad_norm.is_finite());
    assert!(m.entropy > 0.0);
    assert_eq!(m.step, 1);
    assert_eq!(m.completion_len_max, 6);
    assert_eq!(m.truncated_rate, 1.0);
    assert_eq!(m.rewards.len(), 1);
}

#[test]
fn several_passes_clip_and_kl_is_reported() {
    let model = fixture("qwen2_tied");
    let cfg = GrpoConfig {
        num_iterations: 3,
        beta: 0.04,
        lr: 3e-3,
        eps_high: 0.28,
        loss_agg: LossAgg::Token,
        ..tiny_config()
    };
    let mut trainer = GrpoTrainer::new(model, None, low_token_reward(), cfg).unwrap();
    assert!(trainer.reference.is_some());
    let prompts = vec![Prompt {
        ids: vec![1, 2, 3],
        gold: None,
    }];
    let m1 = trainer.step(&prompts).unwrap();
    assert!(
        m1.kl.abs() < 1e-5,
        "the first step's policy is the reference: {m1:?}"
    );
    assert!(
        m1.clip_frac > 0.0,
        "three passes at a high lr move ratios out of the clip range: {m1:?}"
    );
    let m2 = trainer.step(&prompts).unwrap();
    assert!(m2.kl > 0.0 && m2.kl.is_finite(), "{m2:?}");
    assert_eq!(trainer.opt.step, 6);
}

#[test]
fn resume_continues_exactly() {
    let cfg = GrpoConfig {
        beta: 0.04,
        ref_reset_every: 2,
        num_iterations: 2,
        ..tiny_config()
    };
    let prompts = two_prompts();
    // Straight through: 3 steps.
    let mut a =
        GrpoTrainer::new(fixture("qwen2_tied"), None, low_token_reward(), cfg.clone()).unwrap();
    let ma: Vec<StepMetrics> = (0..3)
        .map(|_| a.step(&prompts).unwrap().without_times())
        .collect();
    // Killed after step 1, resumed from its checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint");
    let mut b = GrpoTrainer::new(fixture("qwen2_tied"), None, low_token_reward(), cfg).unwrap();
    let mb1 = b.step(&prompts).unwrap().without_times();
    b.save_checkpoint(&ckpt).unwrap();
    drop(b);
    assert!(ckpt.join("config.json").is_file() && ckpt.join("model.safetensors").is_file());
    let mut c = GrpoTrainer::resume(
        &ckpt,
        None,
        low_token_reward(),
        None,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(c.step, 1);
    let mc: Vec<StepMetrics> = (0..2)
        .map(|_| c.step(&prompts).unwrap().without_times())
        .collect();
    assert_eq!(ma[0], mb1);
    assert_eq!(ma[1], mc[0]);
    assert_eq!(ma[2], mc[1]);
    for (name, v) in a.model.params().iter() {
        let w = c.model.params().get(name).unwrap();
        let d = max_abs_diff(v.as_tensor(), w.as_tensor());
        assert_eq!(d, 0.0, "{name}");
    }
}
