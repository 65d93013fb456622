//! The R1 recipe end to end on a tiny budget: every stage runs, is evaluated and leaves its
//! files; the same seed gives the same summary.

use aha_train::pipeline::{self, DataConfig, PipelineConfig, Quiet, RlConfig, Summary};
use aha_train::pretrain::PretrainConfig;
use aha_train::sft::SftConfig;
use aha_train::tasks::Task;

fn tiny() -> PipelineConfig {
    let task = Task::Arithmetic { difficulty: 1 };
    let base = PretrainConfig {
        steps: 40,
        ..PretrainConfig::tiny(task)
    };
    let student = PretrainConfig {
        hidden_size: 16,
        intermediate_size: 32,
        num_layers: 1,
        num_heads: 1,
        ..base.clone()
    };
    let rl = RlConfig {
        steps: 2,
        batch_prompts: 2,
        group_size: 2,
        max_tokens: Some(12),
        ..RlConfig::default()
    };
    let data = DataConfig {
        prompts: 4,
        samples: 2,
        temperature: 1.0,
        per_prompt: 1,
        min_reasoning_words: None,
    };
    let sft = SftConfig {
        epochs: 1,
        batch_size: 4,
        micro_batch: 4,
        max_len: 128,
        lr: Some(1e-3),
        eval_every: 0,
        ..SftConfig::default()
    };
    PipelineConfig {
        task,
        seed: 3,
        base,
        student,
        eval_n: 4,
        eval_k: 2,
        zero: rl.clone(),
        cold_start_data: data.clone(),
        cold_start_sft: sft.clone(),
        reasoning_rl: RlConfig {
            language_weight: 0.5,
            ..rl.clone()
        },
        rejection_data: data.clone(),
        non_reasoning: 4,
        rejection_sft: sft.clone(),
        r1: rl.clone(),
        distill_data: data,
        distill_sft: sft,
        student_rl: rl,
    }
}

fn without_times(mut s: Summary) -> Summary {
    s.wall_seconds = 0.0;
    for st in &mut s.stages {
        st.wall_seconds = 0.0;
    }
    s
}

#[test]
fn every_stage_runs_is_evaluated_and_repeats_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cfg = tiny();
    let a = pipeline::run(&cfg, &dir.path().join("a"), &cache, &mut Quiet).unwrap();
    let names: Vec<&str> = a.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "base",
            "zero",
            "cold_start",
            "reasoning_rl",
            "rejection_sft",
            "r1",
            "student_distilled",
            "student_rl"
        ]
    );
    for s in &a.stages {
        assert_eq!(s.k, 2);
        for v in [s.pass1, s.cons, s.format_rate, s.language_consistency] {
            assert!((0.0..=1.0).contains(&v), "{s:?}");
        }
        assert!(s.mean_length > 0.0 && s.params > 0, "{s:?}");
        let stage = dir.path().join("a").join(&s.name);
        assert!(stage.join("eval/results.json").is_file(), "{}", s.name);
        assert!(stage.join("eval/samples.jsonl").is_file(), "{}", s.name);
        // Every stage's model is a complete HF directory: weights, config and tokenizer.
        if s.name != "base" {
            let m = stage.join("model");
            aha_model::Model::load(&m, &aha_model::LoadOptions::default()).unwrap();
            aha_text::Tokenizer::from_dir(&m).unwrap();
        }
    }
    // The student is the smaller model.
    let params = |n: &str| a.stage(n).unwrap().params;
    assert!(params("student_rl") < params("r1"));
    assert_eq!(params("student_rl"), params("student_distilled"));
    for rl in ["zero", "reasoning_rl", "r1", "student_rl"] {
        let stage = dir.path().join("a").join(rl);
        assert!(stage.join("metrics.jsonl").is_file() && stage.join("model/config.json").is_file());
    }
    let written = std::fs::read_to_string(dir.path().join("a/summary.json")).unwrap();
    assert_eq!(written, serde_json::to_string_pretty(&a).unwrap());
    // findings.json: the findings of this summary, with each RL stage's lengths as its
    // metrics.jsonl recorded them.
    let lengths: Vec<(String, Vec<f64>)> = ["zero", "reasoning_rl", "r1", "student_rl"]
        .iter()
        .map(|rl| {
            let text = std::fs::read_to_string(dir.path().join("a").join(rl).join("metrics.jsonl"))
                .unwrap();
            let lens = text
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["completion_len_mean"].as_f64().unwrap()
                })
                .collect();
            (rl.to_string(), lens)
        })
        .collect();
    let found: Vec<pipeline::Finding> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("a/findings.json")).unwrap())
            .unwrap();
    assert_eq!(found, pipeline::findings(&a, &lengths));
    assert_eq!(found.len(), 6 + 4, "{found:?}");

    // Bases come from the cache the second time; everything else is recomputed.
    let b = pipeline::run(&cfg, &dir.path().join("b"), &cache, &mut Quiet).unwrap();
    assert_eq!(without_times(a), without_times(b));
}
