//! `aha distill`: a teacher model into a (smaller) student that shares its tokenizer.
//! Sequence level: the teacher samples k completions per prompt, the kept ones (correct and
//! well formatted) are the student's SFT data. Logit level: the student learns the teacher's
//! next-token distributions (generalized JSD) on the dataset's completions or the teacher's
//! samples, optionally on its own samples (on-policy fraction λ).

use super::common;
use super::eval::{prepare, ProblemArgs, TemplateArg};
use aha_train::distill::{self, DistillConfig, LogitConfig};
use aha_train::sample::{rejection_sample, Filters, SampleConfig};
use aha_train::sft::{self, SftConfig, Template};
use aha_train::tasks::Task;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The teacher's kept samples are the student's SFT data.
    Sequence,
    /// The student matches the teacher's next-token distributions (generalized JSD).
    Logit,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Keep {
    /// Only verified-correct completions with well-formed <think>/<answer> tags.
    Correct,
    /// Every completion (a weak teacher, or distilling its style whatever the answer).
    All,
}

#[derive(Args)]
pub struct DistillArgs {
    /// Teacher: model directory or .gguf file (any supported architecture, e.g. a
    /// DeepSeek-V3-style MoE).
    #[arg(long)]
    teacher: PathBuf,
    /// Student: model directory or .gguf file (loaded dense), with the teacher's tokenizer.
    #[arg(long)]
    student: PathBuf,
    /// Output directory: teacher_samples.jsonl (+ .stats.json), config.json, metrics.jsonl,
    /// loss.png, report.json, checkpoint/, final/ (the student as a complete HF directory).
    #[arg(long)]
    out: PathBuf,
    /// A built-in task (its training problems; prompts in the R1-Zero template).
    #[arg(long, conflicts_with = "dataset")]
    task: Option<Task>,
    /// A JSONL or Parquet dataset, prompts rendered with the student's chat template. Sequence
    /// mode: question/answer (or problem/answer|solution) rows the teacher answers. Logit
    /// mode: its completions (messages, prompt/completion or question/answer rows) are scored
    /// by the teacher as they are.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Prompts: the first N of the dataset or of the task's training problems.
    #[arg(long, default_value_t = 100)]
    n: usize,
    #[arg(long, value_enum, default_value = "sequence")]
    mode: Mode,
    /// Teacher samples per prompt (k), when the teacher generates.
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Which teacher samples to keep.
    #[arg(long, value_enum, default_value = "correct")]
    keep: Keep,
    /// Sampling temperature of the teacher (and of the student on on-policy steps).
    #[arg(long, default_value_t = 0.6, value_parser = super::common::range::temperature)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95, value_parser = super::common::range::top_p)]
    top_p: f32,
    /// Longest sample in tokens (default: the task's, or 512 for a dataset).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Logit mode: β of the generalized JSD (0 forward KL, 1 reverse KL, 0.5 symmetric JSD).
    #[arg(long, default_value_t = 0.5)]
    beta: f64,
    /// Logit mode: on-policy fraction λ, the share of steps whose completions the student
    /// generates (then scored by the teacher).
    #[arg(long, default_value_t = 0.0)]
    lambda: f64,
    /// Logit mode: temperature of both distributions in the divergence.
    #[arg(long, default_value_t = 1.0)]
    distill_temperature: f64,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Peak learning rate. Default: 2e-4 with LoRA; full training 1e-3 below 50M
    /// parameters, 1e-4 below 1B, else 4e-5.
    #[arg(long, value_parser = super::common::range::positive)]
    lr: Option<f64>,
    /// Warmup, as a fraction of all steps (cosine decay after it).
    #[arg(long, default_value_t = 0.1, value_parser = super::common::range::unit)]
    warmup_ratio: f64,
    /// Sequences per optimizer step.
    #[arg(long, default_value_t = 16, value_parser = super::common::range::count::<usize>)]
    batch_size: usize,
    /// Rows per forward/backward pass (gradients accumulate exactly over them).
    #[arg(long, default_value_t = 4)]
    micro_batch: usize,
    /// Longest training sequence in tokens; longer ones are cut.
    #[arg(long, default_value_t = 1024)]
    max_len: usize,
    /// Checkpoint every N steps (and at the end; 0: never).
    #[arg(long, default_value_t = 50)]
    save_every: u64,
    #[command(flatten)]
    lora: common::LoraArgs,
    /// Continue a killed run from OUT/checkpoint (the teacher's samples resume from
    /// OUT/teacher_samples.jsonl); the result equals a run that never stopped. Same flags.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Target language or script of the teacher samples' language score.
    #[arg(long, default_value = "en")]
    language: String,
}

pub fn run(args: DistillArgs) -> Result<()> {
    let ckpt = args.out.join("checkpoint");
    if args.resume && !ckpt.join("trainer.json").is_file() {
        anyhow::bail!("--resume: no checkpoint at {}", ckpt.display());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let student_loaded = common::load_with(&args.student, None, true)?;
    let tok = student_loaded
        .tokenizer
        .clone()
        .context("the student needs a tokenizer (tokenizer.json in its directory)")?;
    let eos = student_loaded.eos_ids();
    // The teacher generates unless logit mode has a dataset's completions to score.
    let teacher_samples = args.mode == Mode::Sequence || args.dataset.is_none();
    let (teacher, records, sample_stats) = if teacher_samples {
        let pa = ProblemArgs {
            model: Some(args.teacher.clone()),
            adapter: None,
            task: args.task,
            dataset: args.dataset.clone(),
            n: args.n,
            template: Some(if args.task.is_some() {
                TemplateArg::R1ZeroShort
            } else {
                TemplateArg::Chat
            }),
            samples: args.samples,
            temperature: args.temperature,
            top_p: args.top_p,
            max_tokens: args.max_tokens,
            batch_size: 8,
            seed: args.seed,
            language: args.language.clone(),
            constrained: false,
            urls: Vec::new(),
        };
        let p = prepare(&pa, true)?;
        let teacher_tok = p.tokenizer()?;
        distill::check_same_tokenizer(teacher_tok, &tok)?;
        let cfg = SampleConfig {
            gen: p.gen.clone(),
            script: p.script,
            filters: Filters {
                keep_correct: args.keep == Keep::Correct,
                require_format: args.keep == Keep::Correct,
                ..Default::default()
            },
            write_dropped: false,
            progress: true,
        };
        let path = args.out.join("teacher_samples.jsonl");
        let report = rejection_sample(
            &p.loaded.model,
            teacher_tok,
            &p.set,
            &p.style(),
            &cfg,
            Some(&path),
        )?;
        let s = &report.stats;
        eprintln!(
            "teacher: {} prompts, {} completions, {} correct, {} kept ({})",
            s.prompts,
            s.completions,
            s.correct,
            s.kept,
            path.display()
        );
        if report.kept.is_empty() {
            anyhow::bail!(
                "the teacher kept no completions ({} of {} correct): try more --samples, a \
                 stronger teacher, or --keep all",
                s.correct,
                s.completions
            );
        }
        let records: Vec<aha_train::data::Record> = report
            .kept
            .iter()
            .map(|l| {
                let mut r = aha_train::data::Record::new();
                r.insert("prompt".into(), l.prompt.clone().into());
                r.insert("completion".into(), l.completion.clone().into());
                r
            })
            .collect();
        (p.loaded.model, records, Some(report.stats))
    } else {
        let dataset = args
            .dataset
            .as_deref()
            .context("give --task or --dataset")?;
        let t = common::load_with(&args.teacher, None, false)?;
        distill::check_same_tokenizer(t.tokenizer()?, &tok)?;
        let records = aha_train::data::read_records(dataset, Some(args.n))?;
        (t.model, records, None)
    };
    let template = if args.task.is_some() {
        Template::r1_zero_short()
    } else {
        Template::Chat(Box::new(common::chat_template(&args.student)?))
    };
    let (examples, build) =
        sft::examples_from_records(&records, &template, &tok, &eos, args.max_len)
            .context("rendering the distillation data")?;
    eprintln!(
        "{} rows -> {} training sequences ({} cut at {} tokens)",
        build.rows, build.examples, build.truncated, args.max_len
    );
    let mut student = student_loaded.model;
    // A resumed LoRA run gets the checkpoint's adapter instead.
    if args.lora.enabled() && !args.resume {
        args.lora.add_to(&mut student, args.seed)?;
    }
    let (model, report) = match args.mode {
        Mode::Sequence => {
            drop(teacher);
            let cfg = SftConfig {
                epochs: args.epochs,
                batch_size: args.batch_size,
                micro_batch: args.micro_batch,
                max_len: args.max_len,
                lr: args.lr,
                warmup_ratio: args.warmup_ratio,
                seed: args.seed,
                save_every: args.save_every,
                progress: true,
                ..Default::default()
            };
            let (m, r) = sft::train(student, &examples, &[], &cfg, &args.out, args.resume)?;
            eprintln!(
                "SFT on the teacher's samples: loss {:.4}, {} steps, {:.0} s",
                r.final_loss.unwrap_or(f64::NAN),
                r.steps,
                r.wall_s
            );
            (m, serde_json::to_value(&r)?)
        }
        Mode::Logit => {
            let pairs: Vec<(Vec<u32>, Vec<u32>)> = examples
                .iter()
                .filter_map(distill::pair_from_example)
                .collect();
            let cfg = LogitConfig {
                distill: DistillConfig {
                    beta: args.beta,
                    temperature: args.distill_temperature,
                },
                lambda: args.lambda,
                epochs: args.epochs,
                batch_size: args.batch_size,
                micro_batch: args.micro_batch,
                lr: args.lr,
                warmup_ratio: args.warmup_ratio,
                seed: args.seed,
                max_tokens: args.max_tokens.unwrap_or(match &args.task {
                    Some(t) => aha_train::tasks::default_max_tokens(t),
                    None => 512,
                }),
                gen_temperature: args.temperature,
                top_p: args.top_p,
                save_every: args.save_every,
                progress: true,
                resume: args.resume,
                ..Default::default()
            };
            let (m, r) =
                distill::train_logit(student, &teacher, Some(&tok), &pairs, &cfg, &args.out)?;
            eprintln!(
                "logit distillation: divergence {:.4} -> {:.4}, {} steps ({} on-policy), {:.0} s",
                r.first_loss.unwrap_or(f64::NAN),
                r.final_loss.unwrap_or(f64::NAN),
                r.steps,
                r.on_policy_steps,
                r.wall_s
            );
            (m, serde_json::to_value(&r)?)
        }
    };
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "mode": args.mode,
            "teacher": args.teacher.display().to_string(),
            "student": args.student.display().to_string(),
            "teacher_samples": sample_stats,
            "data": build,
            "report": report,
        }))?,
    )?;
    let (title, y) = match args.mode {
        Mode::Sequence => ("Distillation (SFT on teacher samples)", "NLL per token"),
        Mode::Logit => ("Logit distillation", "divergence per token"),
    };
    if let Err(e) = super::sft::plot_loss(&args.out, title, y) {
        eprintln!("no loss.png: {e:#}");
    }
    let fin = args.out.join("final");
    common::save_hf(&model, &args.student, &fin)?;
    eprintln!("done: student in {}", fin.display());
    Ok(())
}
