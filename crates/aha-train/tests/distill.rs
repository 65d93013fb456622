//! Logit-level distillation: the generalized JSD against closed-form values computed in f64,
//! its gradient, a DeepSeek-V3 MoE teacher distilled into a dense Qwen2 student, and the
//! on-policy fraction.

use crate::common;
use aha_model::{LoadOptions, Model};
use aha_train::distill::*;
use aha_train::optim::{AdamW, AdamWConfig, Grads};
use candle_core::{Device, Tensor, Var};
use common::fixture;
use rand::{rngs::StdRng, SeedableRng};

fn softmax64(z: &[f64], t: f64) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|x| ((x - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

fn kl64(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a * (a / b).ln()).sum()
}

/// The formula of the doc comment, in f64: β = 0 / 1 the KLs, else β KL(p_T||m) + (1-β) KL(p_S||m).
fn jsd64(student: &[f64], teacher: &[f64], beta: f64, t: f64) -> f64 {
    let (ps, pt) = (softmax64(student, t), softmax64(teacher, t));
    if beta == 0.0 {
        return kl64(&pt, &ps);
    }
    if beta == 1.0 {
        return kl64(&ps, &pt);
    }
    let m: Vec<f64> = pt
        .iter()
        .zip(&ps)
        .map(|(a, b)| beta * a + (1.0 - beta) * b)
        .collect();
    beta * kl64(&pt, &m) + (1.0 - beta) * kl64(&ps, &m)
}

/// Rows of logits over a 3-token vocabulary (and one over 2 tokens below).
const STUDENT: [[f64; 3]; 3] = [[0.3, -1.2, 2.0], [1.0, 1.0, 1.0], [-3.0, 0.5, 0.1]];
const TEACHER: [[f64; 3]; 3] = [[1.5, 0.2, -0.7], [2.0, -1.0, 0.0], [-2.5, 0.4, 0.3]];

fn tensor(rows: &[[f64; 3]]) -> Tensor {
    let v: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_vec(v, (1, rows.len(), 3), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn matches_the_closed_form() {
    let (s, t) = (tensor(&STUDENT), tensor(&TEACHER));
    for temp in [1.0, 2.0, 0.7] {
        for beta in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let got = values(&generalized_jsd(&s, &t, beta, temp).unwrap());
            for (r, g) in got.iter().enumerate() {
                let want = jsd64(&STUDENT[r], &TEACHER[r], beta, temp);
                assert!(
                    (*g as f64 - want).abs() < 1e-5,
                    "beta {beta} T {temp} row {r}: {g} vs {want}"
                );
            }
        }
    }
    // A two-token case by hand: p_T = (1/2, 1/2), p_S = (1/(1+e), e/(1+e)) from logits (0, 1).
    let s2 = Tensor::new(&[[0.0f32, 1.0]], &Device::Cpu).unwrap();
    let t2 = Tensor::new(&[[0.0f32, 0.0]], &Device::Cpu).unwrap();
    let e = std::f64::consts::E;
    let (q0, q1) = (1.0 / (1.0 + e), e / (1.0 + e));
    let fwd = 0.5 * (0.5 / q0).ln() + 0.5 * (0.5 / q1).ln();
    let rev = q0 * (q0 / 0.5).ln() + q1 * (q1 / 0.5).ln();
    let (m0, m1) = ((0.5 + q0) / 2.0, (0.5 + q1) / 2.0);
    let js = 0.5 * (0.5 * (0.5 / m0).ln() + 0.5 * (0.5 / m1).ln())
        + 0.5 * (q0 * (q0 / m0).ln() + q1 * (q1 / m1).ln());
    for (beta, want) in [(0.0, fwd), (1.0, rev), (0.5, js)] {
        let got = values(&generalized_jsd(&s2, &t2, beta, 1.0).unwrap())[0] as f64;
        assert!((got - want).abs() < 1e-6, "beta {beta}: {got} vs {want}");
    }
    assert!(fwd != rev, "the example separates forward from reverse KL");
}

#[test]
fn ends_are_the_kls_and_the_middle_is_symmetric() {
    let (s, t) = (tensor(&STUDENT), tensor(&TEACHER));
    let jsd =
        |a: &Tensor, b: &Tensor, beta: f64| values(&generalized_jsd(a, b, beta, 1.0).unwrap());
    for r in 0..3 {
        let (ps, pt) = (softmax64(&STUDENT[r], 1.0), softmax64(&TEACHER[r], 1.0));
        assert!((jsd(&s, &t, 0.0)[r] as f64 - kl64(&pt, &ps)).abs() < 1e-5);
        assert!((jsd(&s, &t, 1.0)[r] as f64 - kl64(&ps, &pt)).abs() < 1e-5);
    }
    // β = 0.5 is symmetric; swapping the roles maps β to 1 - β.
    let (a, b) = (jsd(&s, &t, 0.5), jsd(&t, &s, 0.5));
    for r in 0..3 {
        assert!((a[r] - b[r]).abs() < 1e-6, "{a:?} vs {b:?}");
        assert!(a[r] > 0.0 && (a[r] as f64) <= 2f64.ln());
    }
    let (a, b) = (jsd(&s, &t, 0.2), jsd(&t, &s, 0.8));
    for r in 0..3 {
        assert!((a[r] - b[r]).abs() < 1e-6);
    }
    // Zero when the distributions are equal, for every β (shifted logits are equal too).
    let shifted = (&s + 3.0).unwrap();
    for beta in [0.0, 0.3, 0.5, 1.0] {
        assert!(jsd(&s, &shifted, beta).iter().all(|x| x.abs() < 1e-6));
    }
    // Bad β or temperature is an error, not a NaN.
    assert!(generalized_jsd(&s, &t, 1.5, 1.0).is_err());
    assert!(generalized_jsd(&s, &t, 0.5, 0.0).is_err());
}

#[test]
fn gradient_is_finite_and_descends() {
    let mask = Tensor::new(&[[1.0f32, 1.0, 0.0]], &Device::Cpu).unwrap();
    for beta in [0.0, 0.5, 1.0] {
        let student = Var::from_tensor(&tensor(&STUDENT)).unwrap();
        let teacher = tensor(&TEACHER);
        let loss_of = |s: &Tensor| {
            masked_mean(&generalized_jsd(s, &teacher, beta, 1.5).unwrap(), &mask).unwrap()
        };
        let loss = loss_of(student.as_tensor());
        let l0 = loss.to_scalar::<f32>().unwrap();
        // The masked-out row does not count.
        let rows = values(&generalized_jsd(student.as_tensor(), &teacher, beta, 1.5).unwrap());
        assert!((l0 - (rows[0] + rows[1]) / 2.0).abs() < 1e-6);
        let grads = loss.backward().unwrap();
        let g = grads.get(student.as_tensor()).unwrap();
        let gv = values(g);
        assert!(gv.iter().all(|x| x.is_finite()), "{gv:?}");
        assert!(gv[..6].iter().any(|x| x.abs() > 1e-4), "{gv:?}");
        assert!(
            gv[6..].iter().all(|&x| x == 0.0),
            "masked row gets no gradient"
        );
        if beta == 0.0 {
            // d KL(p_T || p_S) / d z_S = (p_S - p_T) / T, halved by the mean over 2 rows.
            for r in 0..2 {
                let (ps, pt) = (softmax64(&STUDENT[r], 1.5), softmax64(&TEACHER[r], 1.5));
                for k in 0..3 {
                    let want = (ps[k] - pt[k]) / 1.5 / 2.0;
                    assert!((gv[r * 3 + k] as f64 - want).abs() < 1e-6);
                }
            }
        }
        let stepped = (student.as_tensor() - (g * 0.1).unwrap()).unwrap();
        let l1 = loss_of(&stepped).to_scalar::<f32>().unwrap();
        assert!(l1 < l0, "beta {beta}: {l0} -> {l1}");
    }
}

fn teacher() -> Model {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../aha-model/tests/fixtures/deepseek_v3_default");
    Model::load(&dir, &LoadOptions::default()).unwrap()
}

fn batch() -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    (
        vec![vec![1, 2, 3], vec![40, 41], vec![7]],
        vec![vec![10, 11, 12, 13], vec![20, 21], vec![30, 31, 32]],
    )
}

#[test]
fn moe_teacher_scores_the_same_positions_as_the_dense_student() {
    let (teacher, student) = (teacher(), fixture("qwen2_tied"));
    assert!(teacher.as_deepseek_v3().is_some() && student.as_deepseek_v3().is_none());
    let (p, c) = batch();
    let pr: Vec<&[u32]> = p.iter().map(|v| v.as_slice()).collect();
    let cr: Vec<&[u32]> = c.iter().map(|v| v.as_slice()).collect();
    let cfg = DistillConfig {
        beta: 0.0,
        temperature: 1.0,
    };
    let out = distill_loss(&student, &teacher, &pr, &cr, &cfg).unwrap();
    assert_eq!(out.tokens, 9);
    // Reference: each unpadded sequence through each model, forward KL per completion token.
    let (mut sum, mut n) = (0f64, 0usize);
    for i in 0..p.len() {
        let full: Vec<u32> = p[i].iter().chain(&c[i]).copied().collect();
        let lt: Vec<Vec<f32>> = aha_engine::full_logits(&teacher, &full)
            .unwrap()
            .to_vec2()
            .unwrap();
        let ls: Vec<Vec<f32>> = aha_engine::full_logits(&student, &full)
            .unwrap()
            .to_vec2()
            .unwrap();
        let per_token: Vec<f32> = out.per_token.get(i).unwrap().to_vec1().unwrap();
        for (k, &got) in per_token.iter().enumerate().take(c[i].len()) {
            let pos = p[i].len() - 1 + k;
            let zs: Vec<f64> = ls[pos].iter().map(|&x| x as f64).collect();
            let zt: Vec<f64> = lt[pos].iter().map(|&x| x as f64).collect();
            let want = jsd64(&zs, &zt, 0.0, 1.0);
            assert!(
                (got as f64 - want).abs() < 1e-4,
                "row {i} token {k}: {got} vs {want}"
            );
            sum += want;
            n += 1;
        }
        assert!(per_token[c[i].len()..].iter().all(|&x| x == 0.0));
    }
    let loss = out.loss.to_scalar::<f32>().unwrap() as f64;
    assert!((loss - sum / n as f64).abs() < 1e-4);
}

#[test]
fn adamw_on_the_student_lowers_the_loss() {
    let (teacher, student) = (teacher(), fixture("qwen2_tied"));
    let (p, c) = batch();
    let pr: Vec<&[u32]> = p.iter().map(|v| v.as_slice()).collect();
    let cr: Vec<&[u32]> = c.iter().map(|v| v.as_slice()).collect();
    let cfg = DistillConfig::default();
    let teacher_before: std::collections::BTreeMap<String, Tensor> = teacher
        .params()
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.copy().unwrap()))
        .collect();
    let mut opt = AdamW::new(student.trainable_params(), AdamWConfig::default()).unwrap();
    let mut losses = Vec::new();
    for _ in 0..6 {
        let out = distill_loss(&student, &teacher, &pr, &cr, &cfg).unwrap();
        losses.push(out.loss.to_scalar::<f32>().unwrap());
        let store = out.loss.backward().unwrap();
        let grads = Grads::from_store(student.trainable_params(), &store).unwrap();
        assert_eq!(grads.len(), student.trainable_params().len());
        assert!(grads.all_finite().unwrap());
        // The teacher is frozen: none of its weights get a gradient.
        assert!(Grads::from_store(teacher.params(), &store)
            .unwrap()
            .is_empty());
        opt.step(&grads, 1e-2).unwrap();
    }
    eprintln!("distillation losses: {losses:?}");
    assert!(losses[0] > 0.0);
    assert!(
        losses[5] < 0.5 * losses[0],
        "six steps should at least halve the divergence: {losses:?}"
    );
    for (name, t) in teacher.params().tensors() {
        let before = &teacher_before[&name];
        assert_eq!(common::max_abs_diff(&t, before), 0.0, "{name}");
    }
}

#[test]
fn on_policy_fraction() {
    let draws = |lambda: f64, seed: u64| -> Vec<Source> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..2000).map(|_| choose_source(lambda, &mut rng)).collect()
    };
    assert!(draws(0.0, 1).iter().all(|&s| s == Source::Dataset));
    assert!(draws(1.0, 1).iter().all(|&s| s == Source::Student));
    let d = draws(0.25, 1);
    let share = d.iter().filter(|&&s| s == Source::Student).count() as f64 / d.len() as f64;
    // 4 standard deviations of a binomial share over 2000 draws: sqrt(0.25 * 0.75 / 2000) ≈ 0.0097.
    assert!((share - 0.25).abs() < 0.04, "{share}");
    assert_eq!(d, draws(0.25, 1), "the same seed gives the same batches");
    assert_ne!(d, draws(0.25, 2));

    let student = fixture("qwen2_tied");
    let (p, c) = batch();
    let opts = aha_engine::GenerateOptions {
        max_tokens: 5,
        seed: 3,
        ..Default::default()
    };
    let mut rng = StdRng::seed_from_u64(0);
    let (src, got) = batch_completions(0.0, &mut rng, &student, None, &p, &c, &opts).unwrap();
    assert_eq!((src, &got), (Source::Dataset, &c));
    let (src, got) = batch_completions(1.0, &mut rng, &student, None, &p, &c, &opts).unwrap();
    assert_eq!(src, Source::Student);
    let want: Vec<Vec<u32>> = aha_engine::generate(&student, None, &p, &opts, |_| {})
        .unwrap()
        .into_iter()
        .map(|x| x.token_ids)
        .collect();
    assert_eq!(got, want);
    assert!(got.iter().all(|g| !g.is_empty() && g.len() <= 5));
    assert!(batch_completions(0.0, &mut rng, &student, None, &p, &c[..1], &opts).is_err());
}

fn objective_grads(
    student: Model,
    teacher: &Model,
    micro_batch: usize,
) -> (aha_train::optim::Grads, f64, f64) {
    use aha_train::trainer::{OptimConfig, Trainer};
    let (p, c) = batch();
    let t = Trainer::new(student, OptimConfig::default()).unwrap();
    let obj = LogitObjective {
        teacher,
        cfg: DistillConfig::default(),
    };
    let micro = LogitBatch::split(&p, &c, micro_batch);
    assert_eq!(micro.len(), p.len().div_ceil(micro_batch));
    let (g, loss, stats) = t.gradients(&obj, &micro).unwrap();
    (g, loss, stats["tokens"])
}

#[test]
fn logit_objective_accumulates_exactly() {
    let teacher = teacher();
    let (full, loss_full, tokens) = objective_grads(fixture("qwen2_tied"), &teacher, 3);
    assert_eq!(tokens, 9.0);
    // The step loss is the mean divergence over all completion tokens, as distill_loss has it.
    let (p, c) = batch();
    let pr: Vec<&[u32]> = p.iter().map(|v| v.as_slice()).collect();
    let cr: Vec<&[u32]> = c.iter().map(|v| v.as_slice()).collect();
    let student = fixture("qwen2_tied");
    let reference = distill_loss(&student, &teacher, &pr, &cr, &DistillConfig::default())
        .unwrap()
        .loss
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!(
        (loss_full - reference).abs() < 1e-5,
        "{loss_full} vs {reference}"
    );
    let scale = full.global_norm().unwrap() as f32;
    assert!(scale > 1e-4, "the gradient is not trivially zero");
    for mb in [1, 2] {
        let (g, loss, _) = objective_grads(fixture("qwen2_tied"), &teacher, mb);
        assert!(
            (loss - loss_full).abs() < 1e-5,
            "micro-batch {mb}: {loss} vs {loss_full}"
        );
        assert_eq!(g.len(), full.len());
        let d = g
            .grads
            .iter()
            .map(|(k, x)| common::max_abs_diff(x, &full.grads[k]))
            .fold(0.0, f32::max);
        assert!(d < 1e-5 * scale.max(1.0), "micro-batch {mb}: {d}");
    }
    // Rows of unequal length: a mean of per-micro-batch means would differ from the
    // per-token mean, so the check above separates the two.
    let per_row: Vec<f64> = (0..3)
        .map(|i| {
            distill_loss(
                &student,
                &teacher,
                &pr[i..=i],
                &cr[i..=i],
                &DistillConfig::default(),
            )
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap() as f64
        })
        .collect();
    let row_mean = per_row.iter().sum::<f64>() / 3.0;
    assert!(
        (row_mean - loss_full).abs() > 1e-4,
        "{row_mean} vs {loss_full}"
    );
}

#[test]
fn train_logit_moe_teacher_into_dense_student() {
    let teacher = teacher();
    let (p, c) = batch();
    let data: Vec<(Vec<u32>, Vec<u32>)> = p.into_iter().zip(c).collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogitConfig {
        epochs: 8,
        batch_size: 3,
        micro_batch: 2,
        lr: Some(1e-2),
        warmup_ratio: 0.0,
        save_every: 4,
        ..Default::default()
    };
    let (_, report) = train_logit(
        fixture("qwen2_tied"),
        &teacher,
        None,
        &data,
        &cfg,
        dir.path(),
    )
    .unwrap();
    assert_eq!(report.steps, 8);
    assert_eq!(report.on_policy_steps, 0);
    let (first, last) = (report.first_loss.unwrap(), report.final_loss.unwrap());
    assert!(
        last < 0.5 * first,
        "the divergence should fall: {first} -> {last}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert!(lines
        .iter()
        .all(|l| l["source"] == "dataset" && l["tokens"] == 9.0));
    assert!(dir.path().join("config.json").is_file());
    let (step, _) = aha_train::trainer::read_state(&dir.path().join("checkpoint")).unwrap();
    assert_eq!(step, 8);

    // On-policy: every step's completions come from the student, scored by the teacher.
    let on = LogitConfig {
        lambda: 1.0,
        epochs: 2,
        max_tokens: 4,
        ..cfg.clone()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let (_, r) = train_logit(
        fixture("qwen2_tied"),
        &teacher,
        None,
        &data,
        &on,
        dir2.path(),
    )
    .unwrap();
    assert_eq!(r.on_policy_steps, 2);
    assert!(r.final_loss.unwrap().is_finite() && r.trained_tokens > 0.0);
    // Bad settings are errors.
    let bad = LogitConfig { lambda: 1.5, ..cfg };
    assert!(train_logit(
        fixture("qwen2_tied"),
        &teacher,
        None,
        &data,
        &bad,
        dir2.path()
    )
    .is_err());
}

#[test]
fn pairs_from_sft_examples() {
    use aha_train::sft::{Example, IGNORE};
    let ex = Example {
        input_ids: vec![5, 6, 7, 8, 9, 10],
        labels: vec![IGNORE, IGNORE, 7, 8, 9, IGNORE],
    };
    assert_eq!(pair_from_example(&ex), Some((vec![5, 6], vec![7, 8, 9])));
    let none = Example {
        input_ids: vec![5, 6],
        labels: vec![IGNORE, IGNORE],
    };
    assert_eq!(pair_from_example(&none), None);
}

#[test]
fn train_logit_resumes_exactly() {
    let teacher = teacher();
    let (p, c) = batch();
    let data: Vec<(Vec<u32>, Vec<u32>)> = p.into_iter().zip(c).collect();
    // Batches of 2 over 3 sequences, half the steps on-policy: data order, draws and the
    // student's samples all have to line up after the restart.
    let cfg = LogitConfig {
        epochs: 3,
        batch_size: 2,
        micro_batch: 1,
        lr: Some(1e-2),
        lambda: 0.5,
        max_tokens: 3,
        save_every: 3,
        ..Default::default()
    };
    let whole = tempfile::tempdir().unwrap();
    let (a, ra) = train_logit(
        fixture("qwen2_tied"),
        &teacher,
        None,
        &data,
        &cfg,
        whole.path(),
    )
    .unwrap();
    assert_eq!(ra.steps, 6);
    assert!(ra.on_policy_steps > 0 && ra.on_policy_steps < 6, "{ra:?}");
    let split = tempfile::tempdir().unwrap();
    let first = LogitConfig {
        stop_after: Some(3),
        ..cfg.clone()
    };
    train_logit(
        fixture("qwen2_tied"),
        &teacher,
        None,
        &data,
        &first,
        split.path(),
    )
    .unwrap();
    let again = LogitConfig {
        resume: true,
        ..cfg
    };
    let (b, rb) = train_logit(
        fixture("qwen2_tied"),
        &teacher,
        None,
        &data,
        &again,
        split.path(),
    )
    .unwrap();
    assert_eq!(rb.resumed_from, Some(3));
    for (name, t) in a.params().tensors() {
        let u = &b.params().tensors()[&name];
        assert_eq!(common::max_abs_diff(&t, u), 0.0, "{name}");
    }
    let read = |d: &std::path::Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    let strip = |s: String| -> Vec<(u64, String, String)> {
        s.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["step"].as_u64().unwrap(),
                    v["loss"].to_string(),
                    v["source"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(strip(read(whole.path())), strip(read(split.path())));
}
