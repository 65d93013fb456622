//! `aha eval`: the R1 paper's evaluation protocol (k samples per problem; pass@1, cons@k,
//! pass@k with standard errors) on a built-in task's held-out set or a dataset file, and
//! `aha eval --rescore DIR` to recompute results.json from samples.jsonl.

use super::common;
use aha_reward::Script;
use aha_train::eval::{self, EvalConfig, GenConfig, ProblemSet, PromptStyle, Results};
use aha_train::tasks::Task;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TemplateArg {
    /// DeepSeek-R1-Zero's plain-text template, as in the paper (as `aha grpo` and `aha sft`
    /// use it).
    R1Zero,
    /// Its first sentence only, as the built-in tasks' tiny models are trained with
    /// (`aha zero`, `aha pipeline`).
    R1ZeroShort,
    /// The model's own chat template, the question as one user message (as `aha chat`).
    Chat,
}

/// Where the problems come from: shared by `aha eval` and `aha sample`.
#[derive(Args)]
pub struct ProblemArgs {
    /// Model directory (config.json, safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A PEFT LoRA adapter directory to apply to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// A built-in task, e.g. arithmetic:2, countdown:3, json:2 (answers in JSON) or tool:2
    /// (answers by calling an `answer` tool).
    #[arg(long, conflicts_with = "dataset")]
    pub task: Option<Task>,
    /// A JSONL or Parquet file with question/answer (GSM8K: gold after ####), problem/answer
    /// or problem/solution (gold in \boxed{}); checked with aha's verifier.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Problems: the first N of the dataset or of the task's set.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Prompt template (default: r1-zero-short for --task, chat for --dataset).
    #[arg(long, value_enum)]
    pub template: Option<TemplateArg>,
    /// Samples per problem (k).
    #[arg(long, default_value_t = 4)]
    pub samples: usize,
    /// Sampling temperature (the paper: 0.6; 0 with --samples 1 is greedy evaluation).
    #[arg(long, default_value_t = 0.6, value_parser = super::common::range::temperature)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95, value_parser = super::common::range::top_p)]
    pub top_p: f32,
    /// Maximum completion length in tokens (default: the task's, or 512 for a dataset).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Problems per generation batch (each with --samples rows). Samples depend on
    /// (seed, batch size).
    #[arg(long, default_value_t = 8, value_parser = super::common::range::count::<usize>)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Target language or script of the language-consistency score (en, zh, ru, latin, ...).
    #[arg(long, default_value = "en")]
    pub language: String,
    /// Constrain the answer of a task that answers in JSON or with a call (--task json,
    /// --task tool): free reasoning, then after `</think>` only schema-valid JSON or one valid
    /// call.
    #[arg(long, requires = "task")]
    pub constrained: bool,
    /// Sample on this OpenAI-compatible server (`aha serve`, vLLM; repeat for several: each
    /// problem's k samples go to the least busy live one) instead of in-process. --model still
    /// gives the tokenizer and template; the servers must serve the same model.
    #[arg(long = "url", value_name = "URL", conflicts_with = "constrained")]
    pub urls: Vec<String>,
}

/// A loaded model with its prompts, ready for the library.
pub struct Prepared {
    pub loaded: common::Loaded,
    pub chat: Option<aha_text::ChatTemplate>,
    pub template: TemplateArg,
    pub set: ProblemSet,
    pub gen: GenConfig,
    pub script: Script,
}

impl Prepared {
    pub fn style(&self) -> PromptStyle<'_> {
        match (&self.chat, self.template) {
            (Some(t), _) => PromptStyle::Chat(t),
            (None, TemplateArg::R1ZeroShort) => PromptStyle::R1Zero,
            (None, _) => PromptStyle::Template(aha_train::tasks::R1_ZERO_TEMPLATE),
        }
    }

    pub fn tokenizer(&self) -> Result<&aha_text::Tokenizer> {
        self.loaded.tokenizer()
    }
}

/// Load the model and the problems: a task's held-out set, or with `train` its training
/// problems (rejection sampling must not see the held-out set).
pub fn prepare(a: &ProblemArgs, train: bool) -> Result<Prepared> {
    let model = a.model.as_deref().context("--model is required")?;
    let script = Script::from_code(&a.language)
        .with_context(|| format!("unknown language or script {:?}", a.language))?;
    let (set, default_template, default_max) = match (&a.task, &a.dataset) {
        (Some(task), None) => (
            if train {
                ProblemSet::task_problems(*task, task.train_problems(a.seed).take(a.n))
            } else {
                ProblemSet::task_test(*task, a.n)
            },
            TemplateArg::R1ZeroShort,
            aha_train::tasks::default_max_tokens(task),
        ),
        (None, Some(path)) => {
            // Tool-call references are judged in the call syntax of the template that
            // renders the prompts. A template that cannot be read is reported below, after
            // the dataset's own checks.
            let tool_format = match a.template.unwrap_or(TemplateArg::Chat) {
                TemplateArg::Chat => common::chat_template(model)
                    .ok()
                    .and_then(|t| t.tool_call_format()),
                TemplateArg::R1Zero | TemplateArg::R1ZeroShort => None,
            };
            (
                ProblemSet::from_file(path, Some(a.n), tool_format)?,
                TemplateArg::Chat,
                512,
            )
        }
        _ => anyhow::bail!("give one of --task or --dataset"),
    };
    let template = a.template.unwrap_or(default_template);
    let loaded = common::load_with(model, a.adapter.as_deref(), false)?;
    loaded.tokenizer()?;
    let constraint = match (&a.task, a.constrained) {
        (Some(task), true) => Some(
            eval::task_constraint(
                task,
                loaded.tokenizer()?,
                a.max_tokens.unwrap_or(default_max),
            )?
            .with_context(|| format!("--constrained: task {task} has no answer schema"))?,
        ),
        _ => None,
    };
    let chat = match template {
        TemplateArg::Chat => Some(common::chat_template(model)?),
        TemplateArg::R1Zero | TemplateArg::R1ZeroShort => None,
    };
    Ok(Prepared {
        loaded,
        chat,
        template,
        set,
        gen: GenConfig {
            samples: a.samples,
            temperature: a.temperature,
            top_p: a.top_p,
            max_tokens: a.max_tokens.unwrap_or(default_max),
            seed: a.seed,
            batch_size: a.batch_size,
            constraint,
            sampler: remote_sampler(&a.urls)?,
        },
        script,
    })
}

/// The `--url` servers as a sampler (None: sample in-process).
fn remote_sampler(urls: &[String]) -> Result<Option<eval::Sampler>> {
    if urls.is_empty() {
        return Ok(None);
    }
    let remote = aha_train::rollout::Remote::new(aha_train::rollout::RemoteConfig {
        urls: urls.to_vec(),
        api_key: std::env::var("AHA_ROLLOUT_API_KEY").ok(),
        sync: aha_train::rollout::WeightSync::None,
        ..Default::default()
    })?;
    Ok(Some(eval::Sampler(std::sync::Arc::new(remote))))
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    problems: ProblemArgs,
    /// Write config.json, samples.jsonl (one line per completion) and results.json here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Recompute DIR/results.json from DIR/samples.jsonl (and DIR/config.json) alone.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["model", "task", "dataset", "out"])]
    rescore: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(dir) = &args.rescore {
        let r = eval::rescore(dir).with_context(|| format!("rescoring {}", dir.display()))?;
        print_results(&r);
        println!("wrote {}", dir.join(eval::RESULTS_FILE).display());
        return Ok(());
    }
    let p = prepare(&args.problems, false)?;
    let model_path = args.problems.model.as_deref().unwrap_or(Path::new(""));
    let cfg = EvalConfig {
        gen: p.gen.clone(),
        script: p.script,
        progress: true,
    };
    let extra = serde_json::json!({
        "model": model_path.display().to_string(),
        "adapter": args.problems.adapter.as_ref().map(|a| a.display().to_string()),
        "constrained": args.problems.constrained,
    });
    let report = eval::evaluate(
        &p.loaded.model,
        p.tokenizer()?,
        &p.set,
        &p.style(),
        &cfg,
        extra,
        args.out.as_deref(),
    )?;
    print_results(&report.results);
    if let Some(dir) = &args.out {
        println!("wrote {}", dir.display());
    }
    Ok(())
}

fn print_results(r: &Results) {
    println!("{:<22} {:>8} {:>8}", "metric", "value", "stderr");
    println!("{:<22} {:>8.4} {:>8.4}", "pass@1", r.pass1, r.stderr_pass1);
    println!(
        "{:<22} {:>8.4} {:>8.4}",
        format!("cons@{}", r.k),
        r.cons,
        r.stderr_cons
    );
    for (i, v) in r.pass_at.iter().enumerate().skip(1) {
        println!("{:<22} {:>8.4}", format!("pass@{}", i + 1), v);
    }
    println!("{:<22} {:>8.4}", "format rate", r.format_rate);
    println!(
        "{:<22} {:>8.4}",
        "language consistency", r.language_consistency
    );
    println!("{:<22} {:>8.1}", "mean length (tokens)", r.mean_length);
    println!("{:<22} {:>8}", "problems", r.n_problems);
}
