//! GRPO: the loss against hand-computed values, log-probs of padded batches, and trainer
//! steps on a tiny fixture model (learning signal, gradients, exact resume).

use crate::common;
use aha_model::{LoadOptions, Mode};
use aha_train::grpo::*;
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
        for (i, &wi) in w.iter().enumerate() {
            let m = mask.narrow(0, i, 1).unwrap();
            let z = zeros.narrow(0, i, 1).unwrap();
            let out = grpo_loss(
                &z,
                &z,
                None,
                &adv.narrow(0, i, 1).unwrap(),
                &m,
                &t1(&[wi]),
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
        sequence_logprob(t.model(), &ro.prompt_ids[i], &ro.completions[i].token_ids).unwrap()
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
    assert_eq!(trainer.trainer.opt.step, 6);
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
    for (name, v) in a.model().params().iter() {
        let w = c.model().params().get(name).unwrap();
        let d = max_abs_diff(v.as_tensor(), w.as_tensor());
        assert_eq!(d, 0.0, "{name}");
    }
}

#[test]
fn lr_schedule_follows_grpo_steps_whatever_the_passes() {
    // Warmup 1 step, cosine over 4 GRPO steps: every pass of a step uses that step's lr, so
    // the schedule is the same with 1 or 3 passes and reaches its floor at the last step.
    let lrs = |passes: usize| {
        let cfg = GrpoConfig {
            num_iterations: passes,
            warmup_steps: 1,
            total_steps: 4,
            min_lr_ratio: 0.1,
            ..tiny_config()
        };
        let sched = cfg.schedule();
        let mut t = GrpoTrainer::new(fixture("qwen2_tied"), None, low_token_reward(), cfg).unwrap();
        let got: Vec<f64> = (0..4).map(|_| t.step(&two_prompts()).unwrap().lr).collect();
        assert_eq!(t.trainer.opt.step, 4 * passes as u64);
        (got, sched)
    };
    let (one, sched) = lrs(1);
    let (three, _) = lrs(3);
    let want: Vec<f64> = (1..=4).map(|s| sched.at(s)).collect();
    assert_eq!(one, want);
    assert_eq!(three, want, "the lr of each GRPO step, not of each pass");
    assert!((three[3] - 1e-3 * 0.1).abs() < 1e-15, "ends at the floor");
    assert!(
        three[2] > 1e-3 * 0.1 + 1e-6,
        "not at the floor before the end"
    );
}

/// Per-token log-probs and entropies of `completion` after `prompt` under softmax(logits / T),
/// computed in f64 from the engine's unpadded logits.
fn tempered_reference(
    model: &aha_model::Model,
    prompt: &[u32],
    completion: &[u32],
    t: f64,
) -> (Vec<f64>, Vec<f64>) {
    let full: Vec<u32> = prompt.iter().chain(completion).copied().collect();
    let logits: Vec<Vec<f32>> = aha_engine::full_logits(model, &full)
        .unwrap()
        .to_vec2()
        .unwrap();
    let (mut lps, mut ents) = (Vec::new(), Vec::new());
    for (k, &tok) in completion.iter().enumerate() {
        let z: Vec<f64> = logits[prompt.len() - 1 + k]
            .iter()
            .map(|&x| x as f64 / t)
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        lps.push(z[tok as usize] - lse);
        ents.push(-z.iter().map(|x| (x - lse).exp() * (x - lse)).sum::<f64>());
    }
    (lps, ents)
}

#[test]
fn logprobs_use_the_sampling_temperature() {
    let cfg = GrpoConfig {
        sampling: aha_engine::SamplingParams {
            temperature: 0.7,
            ..Default::default()
        },
        ..tiny_config()
    };
    let mut trainer =
        GrpoTrainer::new(fixture("qwen2_tied"), None, low_token_reward(), cfg).unwrap();
    let ro = trainer.sample(&two_prompts()).unwrap();
    // The trainer's log-probs (policy, old policy and reference all go through this).
    let p: Vec<&[u32]> = ro.prompt_ids.iter().map(|v| v.as_slice()).collect();
    let c: Vec<&[u32]> = ro
        .completions
        .iter()
        .map(|c| c.token_ids.as_slice())
        .collect();
    let old = trainer
        .logprobs(trainer.model(), &p, &c, Mode::Inference)
        .unwrap();
    let (mut ent_sum, mut toks) = (0f64, 0usize);
    for i in 0..p.len() {
        let (want_lp, want_ent) = tempered_reference(trainer.model(), p[i], c[i], 0.7);
        let got = row(&old.logprobs, i);
        for (g, w) in got.iter().zip(&want_lp) {
            assert!(
                (*g as f64 - w).abs() < 1e-4,
                "row {i}: {got:?} vs {want_lp:?}"
            );
        }
        ent_sum += want_ent.iter().sum::<f64>();
        toks += want_ent.len();
    }
    // The entropy the step reports is the tempered one too.
    let m = trainer.train(&ro).unwrap();
    let want = ent_sum / toks as f64;
    assert!(
        (m.entropy as f64 - want).abs() < 1e-4,
        "entropy {} vs softmax(logits / 0.7): {want}",
        m.entropy
    );
    // Greedy sampling (T = 0) scores at T = 1.
    trainer.cfg.sampling.temperature = 0.0;
    let greedy = trainer
        .logprobs(trainer.model(), &p[..1], &c[..1], Mode::Inference)
        .unwrap();
    let (want_lp, _) = tempered_reference(trainer.model(), p[0], c[0], 1.0);
    for (g, w) in row(&greedy.logprobs, 0).iter().zip(&want_lp) {
        assert!((*g as f64 - w).abs() < 1e-4);
    }
}

#[test]
fn resume_is_exact_for_a_bf16_stored_model() {
    // qwen2_bf16 stores its weights in bf16; training runs on f32 masters, which the
    // checkpoint must keep (the exported model.safetensors stays bf16).
    let cfg = GrpoConfig {
        beta: 0.04,
        num_iterations: 2,
        ..tiny_config()
    };
    let prompts = two_prompts();
    let mut a =
        GrpoTrainer::new(fixture("qwen2_bf16"), None, low_token_reward(), cfg.clone()).unwrap();
    let ma: Vec<StepMetrics> = (0..2)
        .map(|_| a.step(&prompts).unwrap().without_times())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint");
    let mut b = GrpoTrainer::new(fixture("qwen2_bf16"), None, low_token_reward(), cfg).unwrap();
    assert_eq!(b.step(&prompts).unwrap().without_times(), ma[0]);
    b.save_checkpoint(&ckpt).unwrap();
    drop(b);
    let stored =
        candle_core::safetensors::load(ckpt.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(stored
        .values()
        .all(|t| t.dtype() == candle_core::DType::BF16));
    let mut c = GrpoTrainer::resume(
        &ckpt,
        None,
        low_token_reward(),
        None,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(c.step(&prompts).unwrap().without_times(), ma[1]);
    for (name, v) in a.model().params().iter() {
        let w = c.model().params().get(name).unwrap();
        assert_eq!(max_abs_diff(v.as_tensor(), w.as_tensor()), 0.0, "{name}");
    }
}

fn handmade_rollout(second: &[f32], second_truncated: bool) -> Rollout {
    use aha_engine::{Completion, FinishReason};
    let done = |ids: &[u32], truncated: bool| Completion {
        token_ids: ids.to_vec(),
        text: None,
        finish_reason: if truncated {
            FinishReason::Length
        } else {
            FinishReason::Stop
        },
    };
    let rewards = vec![1.0, 0.0, second[0], second[1]];
    Rollout {
        prompt_ids: vec![vec![1, 2, 3], vec![1, 2, 3], vec![40, 41], vec![40, 41]],
        completions: vec![
            done(&[10, 11], false),
            done(&[12, 13, 14, 15], false),
            done(&[20, 21, 22], second_truncated),
            done(&[23, 24, 25], second_truncated),
        ],
        terms: rewards.iter().map(|&r| vec![r]).collect(),
        advantages: group_advantages(&rewards, 2, AdvantageNorm::Group, 1e-4),
        rewards,
        versions: vec![0; 4],
        sampler_logprobs: vec![None; 4],
        time_sample_s: 0.0,
        time_score_s: 0.0,
    }
}

#[test]
fn masked_and_dropped_rows_stay_in_the_normaliser() {
    // A batch of two groups of 2; the second group gives no signal: all-equal rewards (zero
    // advantages), masked as truncated, or dropped. In every case the first group's update
    // must be the same: rows leaving the loss do not raise the weight of the others.
    for agg in [LossAgg::Sequence, LossAgg::Token, LossAgg::Constant] {
        let run = |ro: &Rollout, mask_truncated: bool, drop: bool| {
            let cfg = GrpoConfig {
                group_size: 2,
                loss_agg: agg,
                mask_truncated,
                drop_zero_std_groups: drop,
                max_grad_norm: 0.0,
                ..tiny_config()
            };
            let mut t =
                GrpoTrainer::new(fixture("qwen2_tied"), None, low_token_reward(), cfg).unwrap();
            t.train(ro).unwrap()
        };
        let base = run(&handmade_rollout(&[0.5, 0.5], false), false, false);
        let masked = run(&handmade_rollout(&[0.2, 0.9], true), true, false);
        let dropped = run(&handmade_rollout(&[0.5, 0.5], false), false, true);
        assert!(base.grad_norm > 0.0);
        for (what, m) in [("masked", &masked), ("dropped", &dropped)] {
            assert!(
                (m.grad_norm - base.grad_norm).abs() <= 1e-5 * base.grad_norm,
                "{agg:?} {what}: grad norm {} vs {}",
                m.grad_norm,
                base.grad_norm
            );
            assert!((m.loss - base.loss).abs() <= 1e-6, "{agg:?} {what}");
        }
        assert_eq!(dropped.groups_dropped, 1);
    }
}

#[test]
fn tool_call_reward_compares_calls_with_the_reference() {
    use aha_text::ToolCallFormat;
    let ds = |name: &str, args: &str| {
        format!(
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{args}\n```<｜tool▁call▁end｜>"
        )
    };
    let ds_answer = |calls: &[String]| {
        format!(
            "Add them.\n</think>\n\n<｜tool▁calls▁begin｜>{}<｜tool▁calls▁end｜>",
            calls.concat()
        )
    };
    let one = ds_answer(&[ds("add", r#"{"b": 2, "a": 1}"#)]);
    let f = ToolCallFormat::DeepSeek;
    let gold = r#"{"name": "add", "arguments": {"a": 1, "b": 2}}"#;
    assert!(tool_calls_match(f, &one, gold), "key order does not matter");
    assert!(tool_calls_match(
        f,
        &one,
        r#"{"name": "add", "arguments": "{\"a\":1,\"b\":2}"}"#
    ));
    assert!(tool_calls_match(
        f,
        &one,
        r#"[{"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]"#
    ));
    assert!(!tool_calls_match(
        f,
        &one,
        r#"{"name": "add", "arguments": {"a": 1, "b": 3}}"#
    ));
    assert!(!tool_calls_match(
        f,
        &one,
        r#"{"name": "sub", "arguments": {"a": 1, "b": 2}}"#
    ));
    let two = ds_answer(&[
        ds("add", r#"{"a": 1, "b": 2}"#),
        ds("add", r#"{"a": 1, "b": 2}"#),
    ]);
    assert!(!tool_calls_match(f, &two, gold), "one call too many");
    assert!(
        !tool_calls_match(f, "Add them.\n</think>\n\n3", gold),
        "no call"
    );
    assert!(!tool_calls_match(f, &one, "not json"));
    let hermes = "<think>add</think>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>";
    assert!(tool_calls_match(ToolCallFormat::Hermes, hermes, gold));

    // In a reward spec, next to aha-reward's terms; without a tool format it is an error.
    let r = SpecReward::parse_with("tool_call:2,format:0.5", Some(f)).unwrap();
    assert_eq!(r.names, vec!["tool_call", "format"]);
    assert_eq!(r.weights(), vec![2.0, 0.5]);
    let prompt = Prompt {
        ids: vec![],
        gold: Some(gold.into()),
    };
    for (text, want) in [(&one, 1.0), (&two, 0.0)] {
        let s = Sample {
            prompt: &prompt,
            token_ids: &[],
            text,
            truncated: false,
        };
        assert_eq!(r.score(&s)[0], want, "{text}");
    }
    assert!(SpecReward::parse("tool_call").is_err());
    assert!(SpecReward::parse_with("tool_call:x", Some(f)).is_err());
}

/// `handmade_rollout` with the sampler's log-probs: the policy's own plus `shift` nats.
fn with_sampler(t: &GrpoTrainer, mut ro: Rollout, shift: f32) -> Rollout {
    for (i, c) in ro.completions.iter().enumerate() {
        let lp = t
            .logprobs(
                t.model(),
                &[&ro.prompt_ids[i]],
                &[&c.token_ids],
                Mode::Inference,
            )
            .unwrap()
            .logprobs;
        let lp: Vec<f32> = lp.get(0).unwrap().to_vec1().unwrap();
        ro.sampler_logprobs[i] = Some(lp.iter().map(|x| x + shift).collect());
    }
    ro
}

#[test]
fn truncated_importance_weights_scale_the_update_up_to_the_cap() {
    // A sampler that put p_policy / k on every token it sampled: each token's
    // policy-gradient term is weighted by min(k, cap). With beta = 0 the loss (at ratio 1,
    // one pass) is linear in the weights, so it scales by exactly that factor.
    let cfg = || GrpoConfig {
        group_size: 2,
        beta: 0.0,
        max_grad_norm: 0.0,
        tis_cap: 2.0,
        ..tiny_config()
    };
    let run = |shift: Option<f32>| {
        let mut t =
            GrpoTrainer::new(fixture("qwen2_tied"), None, low_token_reward(), cfg()).unwrap();
        let ro = handmade_rollout(&[0.2, 0.9], false);
        let ro = match shift {
            Some(s) => with_sampler(&t, ro, s),
            None => ro,
        };
        t.train(&ro).unwrap()
    };
    // The sequence-mean loss is 0 at ratio 1 (advantages sum to 0 per group), its gradient is
    // not: compare gradient norms (no clipping).
    let base = run(None);
    let g0 = base.grad_norm;
    assert!(g0 > 1e-4, "a gradient to scale: {g0}");
    assert_eq!(base.logprob_mismatch, None);
    let same = run(Some(0.0));
    assert!((same.grad_norm - g0).abs() <= 1e-5 * g0);
    assert!(same.logprob_mismatch.unwrap() < 1e-5);
    let k = 1.5f32;
    let under = run(Some(-k.ln()));
    assert!(
        (under.grad_norm - k * g0).abs() <= 1e-4 * g0,
        "{} vs {}",
        under.grad_norm,
        k * g0
    );
    assert!((under.logprob_mismatch.unwrap() - k.ln()).abs() < 1e-4);
    let capped = run(Some(-(4.0f32).ln()));
    assert!(
        (capped.grad_norm - 2.0 * g0).abs() <= 1e-4 * g0,
        "{} vs {}",
        capped.grad_norm,
        2.0 * g0
    );
    // tis_cap 0: the sampler's log-probs only feed the mismatch metric.
    let mut t = GrpoTrainer::new(
        fixture("qwen2_tied"),
        None,
        low_token_reward(),
        GrpoConfig {
            tis_cap: 0.0,
            ..cfg()
        },
    )
    .unwrap();
    let ro = with_sampler(&t, handmade_rollout(&[0.2, 0.9], false), -(4.0f32).ln());
    let off = t.train(&ro).unwrap();
    assert!((off.grad_norm - g0).abs() <= 1e-5 * g0);
    assert!((off.logprob_mismatch.unwrap() - 4.0f32.ln()).abs() < 1e-4);
}

#[test]
fn rollouts_older_than_max_staleness_are_dropped() {
    let run = |versions: [u64; 4], max_staleness: u64| {
        let cfg = GrpoConfig {
            group_size: 2,
            max_staleness,
            ..tiny_config()
        };
        let mut t = GrpoTrainer::new(fixture("qwen2_tied"), None, low_token_reward(), cfg).unwrap();
        t.step = 3;
        let before: std::collections::HashMap<String, Tensor> = t
            .model()
            .params()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().copy().unwrap()))
            .collect();
        let mut ro = handmade_rollout(&[0.2, 0.9], false);
        ro.versions = versions.to_vec();
        let m = t.train(&ro).unwrap();
        let moved = t
            .model()
            .params()
            .iter()
            .any(|(n, v)| max_abs_diff(v.as_tensor(), &before[n]) > 0.0);
        (m, moved)
    };
    // Versions 1 and 2 against a policy at step 3: ages 2 and 1.
    let (m, moved) = run([1, 1, 2, 2], 1);
    assert_eq!((m.stale_dropped, m.staleness_max), (2, 2));
    assert!(moved, "the fresh group still trains");
    let (m, moved) = run([1, 1, 1, 1], 1);
    assert_eq!(m.stale_dropped, 4);
    assert!(!moved, "nothing fresh enough: no update");
    let (m, _) = run([1, 1, 1, 1], 2);
    assert_eq!(m.stale_dropped, 0);
}
