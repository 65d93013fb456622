//! What several commands share: loading a model with its tokenizer, parsing id lists.

use aha_model::{LoadOptions, Model};
use aha_text::Tokenizer;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub struct Loaded {
    pub model: Model,
    /// Present when the model directory has a tokenizer.json, or the .gguf file a
    /// tokenizer aha can build.
    pub tokenizer: Option<Tokenizer>,
    /// Why a .gguf file's tokenizer could not be built: token ids still run without one.
    tokenizer_error: Option<String>,
}

/// `--quant-kernels`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum QuantKernels {
    /// aha's own, with the widest instructions the CPU has (AVX-512 VNNI, AVX2).
    Aha,
    /// aha's own, AVX2 at most.
    AhaAvx2,
    /// candle's for every type.
    Candle,
}

static QUANT_KERNELS: std::sync::OnceLock<aha_model::qkernels::Kernels> =
    std::sync::OnceLock::new();

/// Set once from the command line, before any model loads.
pub fn set_quant_kernels(k: QuantKernels) {
    let _ = QUANT_KERNELS.set(match k {
        QuantKernels::Aha => aha_model::qkernels::Kernels::Aha,
        QuantKernels::AhaAvx2 => aha_model::qkernels::Kernels::AhaAvx2,
        QuantKernels::Candle => aha_model::qkernels::Kernels::Candle,
    });
}

/// How every command loads models.
pub fn load_options() -> LoadOptions {
    LoadOptions {
        quant_kernels: QUANT_KERNELS.get().copied().unwrap_or_default(),
        ..LoadOptions::default()
    }
}

pub fn load(path: &Path) -> Result<Loaded> {
    load_with(path, None, false)
}

/// Load a model with a PEFT LoRA adapter attached (`adapter`), or dense (`dense`: a .gguf
/// file dequantized to a trainable f32 model, as an adapter needs too).
pub fn load_with(path: &Path, adapter: Option<&Path>, dense: bool) -> Result<Loaded> {
    if !path.exists() {
        anyhow::bail!("{}: no such model directory", path.display());
    }
    let opts = load_options();
    let mut model = if dense || adapter.is_some() {
        Model::load_dense(path, &opts)
    } else {
        Model::load(path, &opts)
    }
    .with_context(|| format!("loading model {}", path.display()))?;
    if let Some(dir) = adapter {
        model
            .load_adapter(dir)
            .with_context(|| format!("loading the LoRA adapter {}", dir.display()))?;
    }
    let (tokenizer, tokenizer_error) = read_tokenizer(path)?;
    Ok(Loaded {
        model,
        tokenizer,
        tokenizer_error,
    })
}

/// The tokenizer of a model directory or .gguf file, if it has one, else why not. A .gguf
/// file carries its tokenizer (and chat template) in its metadata; one aha cannot build is
/// an error only when text is needed (--ids runs without it).
fn read_tokenizer(path: &Path) -> Result<(Option<Tokenizer>, Option<String>)> {
    if aha_text::gguf::is_gguf_path(path) {
        return Ok(match aha_text::gguf::tokenizer(path) {
            Ok(t) => (Some(t), None),
            Err(e) => (
                None,
                Some(format!(
                    "cannot build the tokenizer of {}: {e}",
                    path.display()
                )),
            ),
        });
    }
    if !path.join("tokenizer.json").is_file() {
        return Ok((None, None));
    }
    let t = Tokenizer::from_dir(path)
        .with_context(|| format!("loading tokenizer from {}", path.display()))?;
    Ok((Some(t), None))
}

/// The tokenizer of a model, read without its weights: for checks that need it before a
/// long load.
pub fn tokenizer(path: &Path) -> Result<Tokenizer> {
    let (t, error) = read_tokenizer(path)?;
    found(t, error.as_deref(), || {
        format!("{}: no tokenizer.json", path.display())
    })
}

/// What [`read_tokenizer`] gave: the tokenizer, else why it could not be built, else that
/// there is none (`missing`).
fn found<T>(t: Option<T>, error: Option<&str>, missing: impl FnOnce() -> String) -> Result<T> {
    match (t, error) {
        (Some(t), _) => Ok(t),
        (None, Some(e)) => anyhow::bail!("{e}"),
        (None, None) => anyhow::bail!("{}", missing()),
    }
}

/// Write `model` as a Hugging Face directory (merged, if it carries an adapter); a model
/// loaded from a .gguf file gets the file's tokenizer and chat template as
/// tokenizer.json / tokenizer_config.json.
pub fn save_hf(model: &Model, source: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if aha_text::gguf::is_gguf_path(source) {
        // Before Model::save, which writes the full config.json over the one this writes.
        aha_text::gguf::GgufVocab::read(source)
            .and_then(|v| v.write_hf_files(dir))
            .with_context(|| format!("writing the tokenizer of {}", source.display()))?;
    }
    model
        .save(dir)
        .with_context(|| format!("saving the model to {}", dir.display()))
}

/// The chat template of a model directory or of a .gguf file's metadata.
pub fn chat_template(path: &Path) -> Result<aha_text::ChatTemplate> {
    if aha_text::gguf::is_gguf_path(path) {
        return aha_text::gguf::chat_template(path)
            .with_context(|| format!("reading the chat template of {}", path.display()));
    }
    aha_text::ChatTemplate::from_dir(path)
        .with_context(|| format!("reading the chat template of {}", path.display()))
}

impl Loaded {
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        found(
            self.tokenizer.as_ref(),
            self.tokenizer_error.as_deref(),
            || "this model directory has no tokenizer.json".into(),
        )
    }

    /// [`Loaded::tokenizer`] for the commands that also take token ids (`--ids`).
    pub fn tokenizer_or_ids(&self) -> Result<&Tokenizer> {
        self.tokenizer()
            .map_err(|e| anyhow::anyhow!("{e}: pass token ids with --ids instead"))
    }

    /// EOS ids: the tokenizer's (generation_config, config, tokenizer_config) or else config.json's.
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.tokenizer {
            Some(t) if !t.eos_token_ids().is_empty() => t.eos_token_ids().to_vec(),
            _ => self.model.eos_token_ids(),
        }
    }
}

/// A comma-separated list of token ids as one argument value.
#[derive(Debug, Clone)]
pub struct Ids(pub Vec<u32>);

/// "1,2,3" -> [1, 2, 3].
pub fn parse_ids(s: &str) -> Result<Ids, String> {
    let ids: Result<Vec<u32>, _> = s
        .split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(str::parse::<u32>)
        .collect();
    match ids {
        Ok(v) if v.is_empty() => Err("expected comma-separated token ids, got none".into()),
        Ok(v) => Ok(Ids(v)),
        Err(e) => Err(format!("expected comma-separated token ids ({e})")),
    }
}

/// Value parsers for numeric flags with a range (clap then names the flag and the value):
/// a NaN temperature or a top-p of 2 used to run and print garbage.
pub mod range {
    fn number<T: std::str::FromStr>(s: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        s.trim()
            .parse::<T>()
            .map_err(|e| format!("not a number ({e})"))
    }

    fn check<T: Copy>(v: T, ok: bool, what: &str) -> Result<T, String> {
        if ok {
            Ok(v)
        } else {
            Err(format!("must be {what}"))
        }
    }

    /// A sampling temperature: finite, at least 0 (0: greedy).
    pub fn temperature(s: &str) -> Result<f32, String> {
        let v: f32 = number(s)?;
        check(
            v,
            v.is_finite() && v >= 0.0,
            "a finite number at least 0 (0: greedy)",
        )
    }

    /// Top-p: in (0, 1] (1: off).
    pub fn top_p(s: &str) -> Result<f32, String> {
        let v: f32 = number(s)?;
        check(v, v > 0.0 && v <= 1.0, "in (0, 1] (1: off)")
    }

    /// A fraction in [0, 1].
    pub fn unit(s: &str) -> Result<f64, String> {
        let v: f64 = number(s)?;
        check(v, (0.0..=1.0).contains(&v), "in [0, 1]")
    }

    /// [`unit()`] as an f32 (min-p).
    pub fn unit_f32(s: &str) -> Result<f32, String> {
        unit(s).map(|v| v as f32)
    }

    /// A fraction in [0, 1).
    pub fn below_one(s: &str) -> Result<f64, String> {
        let v: f64 = number(s)?;
        check(v, (0.0..1.0).contains(&v), "in [0, 1)")
    }

    /// Finite and at least 0.
    pub fn non_negative(s: &str) -> Result<f64, String> {
        let v: f64 = number(s)?;
        check(v, v.is_finite() && v >= 0.0, "a finite number at least 0")
    }

    /// Finite and above 0.
    pub fn positive(s: &str) -> Result<f64, String> {
        let v: f64 = number(s)?;
        check(v, v.is_finite() && v > 0.0, "a finite number above 0")
    }

    /// A count (of items, steps, tokens) of at least 1.
    pub fn count<T>(s: &str) -> Result<T, String>
    where
        T: std::str::FromStr + PartialOrd + From<u8> + Copy,
        T::Err: std::fmt::Display,
    {
        let v: T = number(s)?;
        check(v, v >= T::from(1), "at least 1")
    }

    /// A thread count, 1 to 1024 (100,000 threads took minutes to start, and gigabytes).
    pub fn threads(s: &str) -> Result<usize, String> {
        let v: usize = number(s)?;
        check(v, (1..=1024).contains(&v), "from 1 to 1024")
    }
}

/// The LoRA flags of the training commands.
#[derive(clap::Args, Debug, Clone)]
pub struct LoraArgs {
    /// LoRA rank: train low-rank adapters on the linear layers instead of every weight (the
    /// base model stays frozen; optimizer state only for the adapters). 0: full fine-tuning.
    #[arg(long, default_value_t = 0)]
    pub lora_r: usize,
    /// LoRA alpha: the adapters' output is scaled by alpha / r. Default: 2 x r.
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Linear layers that get LoRA adapters (comma-separated; of q_proj, k_proj, v_proj,
    /// o_proj, gate_proj, up_proj, down_proj).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    pub lora_targets: Vec<String>,
}

impl LoraArgs {
    pub fn enabled(&self) -> bool {
        self.lora_r > 0
    }

    pub fn config(&self) -> aha_model::LoraConfig {
        let targets: Vec<&str> = self.lora_targets.iter().map(|s| s.trim()).collect();
        let alpha = self.lora_alpha.unwrap_or(2.0 * self.lora_r as f64);
        aha_model::LoraConfig::new(self.lora_r, alpha, &targets)
    }

    /// Attach fresh adapters to `model` (seeded) and say what trains.
    pub fn add_to(&self, model: &mut Model, seed: u64) -> Result<()> {
        model
            .add_lora(&self.config(), seed)
            .context("adding LoRA adapters")?;
        if let Some(a) = model.adapter() {
            eprintln!(
                "LoRA r={} alpha={} on {} layers: {} trainable parameters, base model ({}) frozen",
                a.config.r,
                a.config.lora_alpha,
                a.modules().len(),
                a.params().count(),
                model.params().count()
            );
        }
        Ok(())
    }
}

/// The user's cache directory for aha (pretrained bases): `$XDG_CACHE_HOME/aha`, else
/// `$HOME/.cache/aha`, else `.cache/aha` under the current directory.
pub fn default_cache_dir() -> PathBuf {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("aha");
    }
    if let Some(h) = nonempty("HOME") {
        return PathBuf::from(h).join(".cache").join("aha");
    }
    PathBuf::from(".cache").join("aha")
}

/// Whether the model reasons before answering (the constraint then starts after `</think>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReasoningMode {
    /// When the tokenizer has a `</think>` token (R1 and its distills).
    Auto,
    On,
    Off,
}

/// Constrained answers: at most one of the grammar flags, and a thinking budget.
#[derive(clap::Args, Clone, Debug)]
pub struct ConstraintArgs {
    /// The answer is JSON valid under this JSON Schema file (an unsupported keyword is an
    /// error).
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub json_schema: Option<PathBuf>,
    /// The answer is a JSON object (any).
    #[arg(long, group = "constraint")]
    pub json_object: bool,
    /// The answer matches this regular expression.
    #[arg(long, value_name = "REGEX", group = "constraint")]
    pub regex: Option<String>,
    /// The answer is one of these strings (repeat the flag).
    #[arg(long, value_name = "TEXT", group = "constraint")]
    pub choice: Vec<String>,
    /// The answer follows this Lark grammar file (llguidance's dialect).
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub grammar: Option<PathBuf>,
    /// At most this many reasoning tokens; then `</think>` is forced and the answer follows.
    #[arg(long, value_name = "N")]
    pub thinking_budget: Option<usize>,
    /// Whether the model thinks first; the constraint applies after `</think>`.
    #[arg(long, value_enum, default_value = "auto")]
    pub reasoning: ReasoningMode,
}

impl ConstraintArgs {
    fn grammar(&self) -> Result<Option<aha_engine::Grammar>> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        Ok(if let Some(p) = &self.json_schema {
            let schema = serde_json::from_str(&read(p)?)
                .with_context(|| format!("{} is not JSON", p.display()))?;
            Some(aha_engine::Grammar::JsonSchema(schema))
        } else if self.json_object {
            Some(aha_engine::Grammar::JsonObject)
        } else if let Some(r) = &self.regex {
            Some(aha_engine::Grammar::Regex(r.clone()))
        } else if !self.choice.is_empty() {
            Some(aha_engine::Grammar::Choice(self.choice.clone()))
        } else if let Some(p) = &self.grammar {
            Some(aha_engine::Grammar::Lark(read(p)?))
        } else {
            None
        })
    }

    /// Whether any flag asks for a constraint or a budget.
    pub fn wants_constraint(&self) -> bool {
        self.json_schema.is_some()
            || self.json_object
            || self.regex.is_some()
            || !self.choice.is_empty()
            || self.grammar.is_some()
            || self.thinking_budget.is_some()
    }

    /// Whether a reasoning phase comes first for this tokenizer.
    pub fn reasons(&self, tokenizer: &Tokenizer) -> bool {
        match self.reasoning {
            ReasoningMode::On => true,
            ReasoningMode::Off => false,
            ReasoningMode::Auto => tokenizer.token_to_id(aha_text::THINK_END).is_some(),
        }
    }

    /// The compiled constraint, or None when no flag asks for one. `prompt_opened`: the
    /// prompt already opened the think block.
    pub fn build(
        &self,
        tokenizer: &Tokenizer,
        prompt_opened: bool,
    ) -> Result<Option<std::sync::Arc<aha_engine::Constraint>>> {
        self.build_for(tokenizer, prompt_opened, self.grammar()?)
    }

    /// [`ConstraintArgs::build`] with `grammar` in place of the flags' (e.g. forced tool
    /// calls); the reasoning settings still come from the flags.
    pub fn build_for(
        &self,
        tokenizer: &Tokenizer,
        prompt_opened: bool,
        grammar: Option<aha_engine::Grammar>,
    ) -> Result<Option<std::sync::Arc<aha_engine::Constraint>>> {
        if grammar.is_none() && self.thinking_budget.is_none() {
            return Ok(None);
        }
        let reasoning = if self.reasons(tokenizer) {
            Some(aha_engine::Reasoning::think(
                tokenizer,
                self.thinking_budget,
                prompt_opened,
            )?)
        } else if self.thinking_budget.is_some() {
            anyhow::bail!("--thinking-budget needs a reasoning model (or --reasoning on)");
        } else {
            None
        };
        let constrainer = aha_engine::Constrainer::new(tokenizer)?;
        Ok(Some(std::sync::Arc::new(
            constrainer.compile(grammar.as_ref(), reasoning)?,
        )))
    }
}
