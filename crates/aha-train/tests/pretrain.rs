//! Tiny-base pretraining: the tokenizer, a few steps lower the loss, the saved model reloads
//! and generates, the cache is reused.

use aha_model::{LoadOptions, Model};
use aha_text::Tokenizer;
use aha_train::corpus::DocKind;
use aha_train::eval::greedy::{self, EvalOptions};
use aha_train::pretrain::{self, ensure_base, PretrainConfig};
use aha_train::sft::{self, Example, SftConfig};
use aha_train::tasks::{r1_zero_prompt, Task};

/// A step's micro-batches run on one worker thread each; the base must not depend on how
/// many threads there were.
#[test]
fn the_base_does_not_depend_on_the_thread_count() {
    for packed in [false, true] {
        base_does_not_depend_on_the_thread_count(packed);
    }
}

/// Padded or packed passes, a step's gradient is summed in pass order on any thread count.
fn base_does_not_depend_on_the_thread_count(packed: bool) {
    let cfg = PretrainConfig {
        steps: 4,
        micro_batch: 3,
        packed,
        ..PretrainConfig::tiny(Task::Arithmetic { difficulty: 2 })
    };
    let other = PretrainConfig {
        packed: !packed,
        ..cfg.clone()
    };
    assert_ne!(cfg.hash(), other.hash(), "packing is in the cache key");
    assert!(
        cfg.batch_size > cfg.micro_batch,
        "the test needs several passes per step"
    );
    let weights = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let dir = tempfile::tempdir().unwrap();
            let (model, tok) = pretrain::prepare(&cfg, dir.path()).unwrap();
            let (model, report) = pretrain::train(model, &tok, &cfg, false).unwrap();
            let w: Vec<(String, Vec<u32>)> = model
                .trainable_params()
                .iter()
                .map(|(name, v)| {
                    let t = v
                        .as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    (name.clone(), t.iter().map(|x| x.to_bits()).collect())
                })
                .collect();
            (w, report.final_loss.to_bits())
        })
    };
    let (one, loss_one) = weights(1);
    let (two, loss_two) = weights(2);
    assert!(!one.is_empty());
    assert_eq!(loss_one, loss_two);
    assert!(
        one == two,
        "the weights after 4 steps differ between 1 and 2 threads (packed: {packed})"
    );
}

#[test]
fn tokenizer_keeps_numbers_apart_and_tags_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PretrainConfig::tiny(Task::Arithmetic { difficulty: 2 });
    let (_model, tok) = pretrain::prepare(&cfg, dir.path()).unwrap();
    let text = " <think> 17 + 5 = 22 </think> <answer> 22 </answer><|endoftext|>";
    let ids = tok.encode(text, false).unwrap();
    let tags: Vec<u32> = ["<think>", "</think>", "<answer>", "</answer>"]
        .iter()
        .map(|t| tok.token_to_id(t).unwrap())
        .collect();
    for t in &tags {
        assert!(ids.contains(t), "tag tokens are single tokens");
    }
    // Numbers never merge with the text around them (byte-level pieces spell a space "Ġ"),
    // and the small numbers of the built-in tasks are whole tokens.
    for id in &ids {
        let piece = tok.id_to_token(*id).unwrap();
        let digits = piece.trim_start_matches('Ġ');
        if digits.chars().any(|c| c.is_ascii_digit()) {
            assert!(
                digits.chars().all(|c| c.is_ascii_digit()),
                "{piece:?} mixes a number with other text"
            );
        }
    }
    for n in ["5", "17", "22"] {
        let pieces = tok.encode(&format!(" {n}"), false).unwrap();
        assert_eq!(pieces.len(), 1, "{n:?} is not a single token: {pieces:?}");
    }
    assert_eq!(
        tok.eos_token_ids(),
        &[tok.token_to_id("<|endoftext|>").unwrap()]
    );
    assert!(tok.is_eos(*ids.last().unwrap()));
    // Decoding keeps the tags (which swallowed their spaces) and drops the special EOS.
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        "<think>17 + 5 = 22</think><answer>22</answer>"
    );
    let prompt = r1_zero_prompt("Compute 1 + 2.");
    assert_eq!(
        tok.decode(&tok.encode(&prompt, false).unwrap(), true)
            .unwrap(),
        prompt
    );
}

#[test]
fn a_few_steps_lower_the_loss_and_the_model_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("base");
    let cfg = PretrainConfig {
        steps: 16,
        ..PretrainConfig::tiny(Task::Arithmetic { difficulty: 2 })
    };
    let report = pretrain::pretrain(&cfg, &out, false).unwrap();
    assert!(
        report.final_loss < report.first_loss - 0.5,
        "loss {} -> {}",
        report.first_loss,
        report.final_loss
    );
    assert!(report.tokens > 0 && report.params > 0);

    let model = Model::load(&out, &LoadOptions::default()).unwrap();
    let tok = Tokenizer::from_dir(&out).unwrap();
    assert_eq!(model.vocab_size(), tok.vocab_size());
    let cfg_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_json["model_type"], "qwen2");
    // The loss on a fresh batch with the reloaded weights is the trained one, not a random init's.
    let docs: Vec<Example> = aha_train::corpus::corpus(cfg.task, cfg.mix, 99)
        .take(4)
        .map(|d| {
            let input_ids = tok.encode(&d, false).unwrap();
            let labels = input_ids.iter().map(|&t| t as i64).collect();
            Example { input_ids, labels }
        })
        .collect();
    let loss = sft::evaluate(&model, &docs, &SftConfig::default()).unwrap();
    assert!(
        loss < report.first_loss as f64 - 0.5,
        "reloaded loss {loss}"
    );

    let r = greedy::evaluate(&model, &tok, &cfg.task, 6, 0).unwrap();
    assert_eq!(r.n, 6);
    assert!(r.mean_length > 0.0);
    assert!((0.0..=1.0).contains(&r.accuracy) && (0.0..=1.0).contains(&r.format_rate));

    // Forced openings: every completion is scored with the opening it was made to start with.
    let problems = cfg.task.test_set(6);
    for kind in [DocKind::StepByStep, DocKind::Direct] {
        let opts = EvalOptions {
            forced: Some(kind),
            ..EvalOptions::new(&cfg.task, 6, 0)
        };
        let r = greedy::evaluate_with(&model, &tok, &cfg.task, &opts).unwrap();
        for (s, p) in r.samples.iter().zip(&problems) {
            let opening = aha_train::corpus::forced_opening(&cfg.task, p, kind).unwrap();
            assert!(s.completion.starts_with(&opening), "{:?}", s.completion);
        }
    }
    let expr_opening =
        aha_train::corpus::forced_opening(&cfg.task, &problems[0], DocKind::StepByStep).unwrap();
    let expr = problems[0]
        .prompt
        .trim_start_matches("Compute ")
        .trim_end_matches('.');
    assert_eq!(expr_opening, format!(" <think> {expr} is"));
    let countdown = Task::Countdown { difficulty: 2 };
    assert!(aha_train::corpus::forced_opening(
        &countdown,
        &countdown.test_set(1)[0],
        DocKind::Direct
    )
    .is_none());
    assert!(greedy::mode_accuracies(&model, &tok, &countdown, 2, 0)
        .unwrap()
        .is_none());
}

#[test]
fn ensure_base_reuses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PretrainConfig {
        steps: 2,
        ..PretrainConfig::tiny(Task::Countdown { difficulty: 2 })
    };
    let a = ensure_base(dir.path(), &cfg).unwrap();
    let stamp = std::fs::metadata(a.join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let b = ensure_base(dir.path(), &cfg).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        stamp,
        std::fs::metadata(b.join("model.safetensors"))
            .unwrap()
            .modified()
            .unwrap(),
        "not retrained"
    );
    let other = ensure_base(
        dir.path(),
        &PretrainConfig {
            seed: 1,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(a, other, "another config, another base");
    assert!(Model::load(&other, &LoadOptions::default()).is_ok());
}

/// A model shape that cannot be built is refused naming the setting (as `aha pipeline
/// --config` gives them), before anything is written.
#[test]
fn a_bad_model_shape_is_refused_by_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("base");
    let tiny = PretrainConfig::tiny(Task::Arithmetic { difficulty: 1 });
    for (cfg, said) in [
        (
            PretrainConfig {
                hidden_size: 0,
                ..tiny.clone()
            },
            "hidden_size must be at least 1",
        ),
        (
            PretrainConfig {
                num_layers: 0,
                ..tiny.clone()
            },
            "num_layers must be at least 1",
        ),
        (
            PretrainConfig {
                num_heads: 3,
                ..tiny.clone()
            },
            "hidden_size 32 must be a multiple of num_heads 3",
        ),
        (
            PretrainConfig {
                num_kv_heads: 3,
                ..tiny.clone()
            },
            "num_heads 2 must be a multiple of num_kv_heads 3",
        ),
    ] {
        let err = pretrain::pretrain(&cfg, &out, false)
            .err()
            .map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains(said)), "{err:?}");
    }
    assert!(!out.exists());
}
