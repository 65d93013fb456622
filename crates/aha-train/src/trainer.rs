//! The training loop every objective shares: an optimizer step over micro-batches with exact
//! gradient accumulation, global-norm clipping, the learning-rate schedule, atomic
//! checkpoints with exact resume, a metrics sink and the data order.
//!
//! An [`Objective`] says what one micro-batch's loss is, already normalised for the whole
//! optimizer step (e.g. NLL summed over the micro-batch's trained tokens divided by the
//! trained tokens of the step), so the micro-batch gradients simply add up to the gradient
//! of the full batch whatever the micro-batching. [`Trainer::step`] does the rest.
//!
//! A checkpoint directory holds the trainable weights (a Hugging Face model directory, or
//! with LoRA the adapter in the PEFT format), the optimizer state (`optimizer.*`), f32 master
//! weights when the model is stored in a lower precision (`master.safetensors`, so that
//! resuming never rounds them), and `trainer.json`: the step and the objective's own state
//! (its config, its data position). It is written to `DIR.tmp` and renamed into place, so a
//! crash never leaves a half-written checkpoint.

use crate::optim::{AdamW, AdamWConfig, Grads, LrSchedule};
use aha_model::{DType, Model};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub(crate) use crate::error::file_err;
pub use crate::error::{Result, TrainError};

/// A progress bar over training steps with ETA (hidden when stderr is not a terminal).
pub fn progress_bar(steps: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Statistics of a step by name; each objective's values add up over micro-batches (sums
/// and counts, not means).
pub type Stats = BTreeMap<String, f64>;

/// What one micro-batch contributes to a step.
pub struct MicroLoss {
    /// Scalar loss, normalised for the whole step: the micro-batch losses of a step sum to
    /// the step's loss.
    pub loss: Tensor,
    pub stats: Stats,
}

/// A training objective: the loss of one micro-batch. `Sync`, so that a trainer with
/// several workers can compute micro-batches at once.
pub trait Objective: Sync {
    type Batch: Sync;
    fn micro_loss(&self, model: &Model, batch: &Self::Batch) -> Result<MicroLoss>;

    /// What a micro-batch costs relative to the others (its tokens, say). Workers take the
    /// costliest first, so that a step does not end waiting on a long pass taken last; the
    /// gradients are added in batch order whatever the cost.
    fn cost(&self, _batch: &Self::Batch) -> usize {
        0
    }
}

/// Optimizer, schedule and clipping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct OptimConfig {
    pub lr: f64,
    pub warmup_steps: u64,
    /// Total optimizer steps of the cosine decay (0: constant after warmup).
    pub total_steps: u64,
    /// Floor of the cosine decay as a fraction of `lr`.
    pub min_lr_ratio: f64,
    pub adam: AdamWConfig,
    /// Global gradient-norm bound (0: no clipping).
    pub max_grad_norm: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            warmup_steps: 0,
            total_steps: 0,
            min_lr_ratio: 0.0,
            adam: AdamWConfig::default(),
            max_grad_norm: 1.0,
        }
    }
}

impl OptimConfig {
    /// Rejects settings that would train nothing or turn the weights into NaN (a NaN
    /// learning rate trained to the end and saved a NaN model).
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, v: f64| Err(TrainError::Invalid(format!("{what}, not {v}")));
        let a = &self.adam;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "the learning rate must be a positive finite number",
                self.lr,
            );
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio must be in [0, 1]", self.min_lr_ratio);
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad(
                "max_grad_norm must be finite and at least 0 (0: no clipping)",
                self.max_grad_norm,
            );
        }
        if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
            return bad("weight_decay must be finite and at least 0", a.weight_decay);
        }
        for (name, beta) in [("beta1", a.beta1), ("beta2", a.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return bad(&format!("AdamW's {name} must be in [0, 1)"), beta);
            }
        }
        if !(a.eps.is_finite() && a.eps > 0.0) {
            return bad("AdamW's eps must be a positive finite number", a.eps);
        }
        Ok(())
    }

    /// AdamW over `total_steps` with a linear warmup over `warmup_ratio` of them, then cosine
    /// decay to `min_lr_ratio * lr` (the SFT and distillation runs' schedule).
    pub fn cosine(
        lr: f64,
        total_steps: u64,
        warmup_ratio: f64,
        min_lr_ratio: f64,
        weight_decay: f64,
        max_grad_norm: f64,
    ) -> Self {
        Self {
            lr,
            warmup_steps: (total_steps as f64 * warmup_ratio).round() as u64,
            total_steps,
            min_lr_ratio,
            adam: AdamWConfig {
                weight_decay,
                ..Default::default()
            },
            max_grad_norm,
        }
    }

    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.total_steps,
            min_lr_ratio: self.min_lr_ratio,
        }
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepOutput {
    /// Steps done after this one.
    pub step: u64,
    /// The step's loss (sum of the micro-batch losses).
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    pub lr: f64,
    pub stats: Stats,
    pub time_s: f64,
}

/// A model, its optimizer and the step count.
pub struct Trainer {
    pub model: Model,
    pub opt: AdamW,
    pub cfg: OptimConfig,
    /// Optimizer steps done.
    pub step: u64,
    /// One single-threaded pool per data-parallel worker (none: micro-batches one after
    /// the other on the caller's threads). See [`Trainer::with_workers`].
    workers: Vec<rayon::ThreadPool>,
}

#[derive(Serialize, Deserialize)]
struct TrainerFile {
    step: u64,
    /// The objective's state: its config, its data position.
    state: serde_json::Value,
}

/// `f` of every item, handed to `each` in item order. With workers, each takes the next item
/// of `order` not yet taken (a long micro-batch holds up no one but its own worker), and
/// result i is handed over as soon as results 0..i have been; without, the items run one
/// after the other on the caller's threads.
fn on_workers<T: Sync, R: Send>(
    workers: &[rayon::ThreadPool],
    items: &[T],
    order: &[usize],
    f: &(dyn Fn(&T) -> R + Sync),
    each: &mut dyn FnMut(R),
) {
    if workers.is_empty() {
        items.iter().map(f).for_each(each);
        return;
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter()
            .take(items.len())
            .map(|pool| {
                let (tx, next) = (tx.clone(), &next);
                s.spawn(move || {
                    pool.install(|| {
                        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let Some(item) = items.get(i) else { break };
                            if tx.send((i, f(item))).is_err() {
                                break;
                            }
                        }
                    })
                })
            })
            .collect();
        drop(tx);
        let (mut pending, mut due) = (BTreeMap::new(), 0);
        for (i, r) in rx {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&due) {
                each(r);
                due += 1;
            }
        }
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    })
}

/// The file of f32 master weights, written when the model's stored dtype is not f32.
pub const MASTER_FILE: &str = "master.safetensors";
const STATE_FILE: &str = "trainer.json";

impl Trainer {
    /// Optimizer over the model's trainable parameters (the adapters, with LoRA).
    pub fn new(model: Model, cfg: OptimConfig) -> Result<Self> {
        cfg.check()?;
        let opt = AdamW::new(model.trainable_params(), cfg.adam.clone())?;
        Ok(Self {
            model,
            opt,
            cfg,
            step: 0,
            workers: Vec::new(),
        })
    }

    /// Compute up to `n` micro-batches of a step at once, each on its own thread (data
    /// parallelism, for models too small to keep several threads busy inside one forward
    /// pass). The gradients are still added in micro-batch order, so a step's result is the
    /// same bit for bit whatever `n`; only memory (one gradient set per worker) and speed
    /// change. `n <= 1`: one micro-batch at a time on the caller's threads.
    pub fn with_workers(mut self, n: usize) -> Result<Self> {
        self.workers = if n <= 1 {
            Vec::new()
        } else {
            (0..n)
                .map(|i| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .thread_name(move |_| format!("aha-train-{i}"))
                        .build()
                        .map_err(|e| TrainError::Invalid(format!("worker threads: {e}")))
                })
                .collect::<Result<_>>()?
        };
        Ok(self)
    }

    /// The summed gradients of the micro-batches of one step, the step's loss and stats.
    pub fn gradients<O: Objective>(
        &self,
        objective: &O,
        micro: &[O::Batch],
    ) -> Result<(Grads, f64, Stats)> {
        let one = |batch: &O::Batch| -> Result<(f64, Stats, Grads)> {
            let out = objective.micro_loss(&self.model, batch)?;
            let loss = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let store = out.loss.backward()?;
            let grads = Grads::from_store(self.model.trainable_params(), &store)?;
            Ok((loss, out.stats, grads))
        };
        let mut grads = Grads::default();
        let mut loss = 0f64;
        let mut stats = Stats::new();
        let mut failed = None;
        // Costliest first (a stable sort: equal costs keep their order).
        let mut order: Vec<usize> = (0..micro.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(objective.cost(&micro[i])));
        on_workers(&self.workers, micro, &order, &one, &mut |out| {
            if failed.is_some() {
                return;
            }
            let added = out.and_then(|(l, s, g)| {
                loss += l;
                for (k, v) in s {
                    *stats.entry(k).or_insert(0.0) += v;
                }
                Ok(grads.accumulate(g)?)
            });
            failed = added.err();
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok((grads, loss, stats))
    }

    /// Clip `grads`, take the scheduled learning rate and update: returns (pre-clip norm, lr).
    pub fn apply(&mut self, grads: Grads) -> Result<(f64, f64)> {
        let lr = self.cfg.schedule().at(self.opt.step + 1);
        Ok((self.apply_at(grads, lr)?, lr))
    }

    /// Clip `grads` and update at learning rate `lr` (for objectives whose schedule is not
    /// indexed by optimizer step, as GRPO's several passes per batch); returns the pre-clip
    /// norm.
    pub fn apply_at(&mut self, mut grads: Grads, lr: f64) -> Result<f64> {
        let norm = grads.clip_global_norm(self.cfg.max_grad_norm)?;
        self.opt.step(&grads, lr)?;
        self.step += 1;
        Ok(norm)
    }

    /// One optimizer step over the micro-batches.
    pub fn step<O: Objective>(&mut self, objective: &O, micro: &[O::Batch]) -> Result<StepOutput> {
        let t0 = Instant::now();
        let (grads, loss, stats) = self.gradients(objective, micro)?;
        let (grad_norm, lr) = self.apply(grads)?;
        Ok(StepOutput {
            step: self.step,
            loss,
            grad_norm,
            lr,
            stats,
            time_s: t0.elapsed().as_secs_f64(),
        })
    }

    /// Write a checkpoint (see the module doc) with the objective's `state`.
    pub fn save_checkpoint(&self, dir: &Path, state: &serde_json::Value) -> Result<()> {
        self.save_checkpoint_with(dir, state, |_| Ok(()))
    }

    /// [`Trainer::save_checkpoint`], with `extra` writing the objective's own files (GRPO's
    /// reference model) into the directory before it is put in place.
    pub fn save_checkpoint_with(
        &self,
        dir: &Path,
        state: &serde_json::Value,
        extra: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let tmp = dir.with_extension("tmp");
        write_weights(&self.model, &self.opt, &tmp)?;
        extra(&tmp)?;
        let text = serde_json::to_string_pretty(&TrainerFile {
            step: self.step,
            state: state.clone(),
        })
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
        std::fs::write(tmp.join(STATE_FILE), text).map_err(|e| file_err(&tmp, e))?;
        replace_dir(&tmp, dir)
    }

    /// Continue from a checkpoint written by [`Trainer::save_checkpoint`]. `model` is the
    /// model as the run started it: for LoRA the base model *without* an adapter (the
    /// checkpoint's adapter is attached), else the model whose trainable weights the
    /// checkpoint's overwrite. Returns the trainer (step and optimizer restored) and the
    /// objective's saved state.
    pub fn resume(
        dir: &Path,
        mut model: Model,
        cfg: OptimConfig,
    ) -> Result<(Self, serde_json::Value)> {
        let (step, state) = read_state(dir)?;
        let has_adapter = dir.join(aha_model::lora::CONFIG_FILE).is_file();
        if has_adapter {
            if model.adapter().is_some() {
                return Err(TrainError::Invalid(
                    "resume: pass the base model without an adapter; the checkpoint's adapter \
                     is attached"
                        .into(),
                ));
            }
            model.load_adapter(dir)?;
        } else {
            if model.adapter().is_some() {
                return Err(file_err(
                    dir,
                    "the checkpoint holds a whole model, not a LoRA adapter",
                ));
            }
            let master = dir.join(MASTER_FILE);
            let path = if master.is_file() {
                master
            } else {
                dir.join("model.safetensors")
            };
            load_params(model.trainable_params(), &path)?;
        }
        let mut t = Self::new(model, cfg)?;
        let device = t.model.device().clone();
        t.opt.load(dir, &device)?;
        t.opt.cfg = t.cfg.adam.clone();
        t.step = step;
        Ok((t, state))
    }
}

/// Set every parameter of `params` from the tensor of the same name and shape in the
/// safetensors file `path` (converted to the parameter's dtype).
pub(crate) fn load_params(params: &aha_model::Params, path: &Path) -> Result<()> {
    let device = match params.iter().next() {
        Some((_, v)) => v.device().clone(),
        None => return Ok(()),
    };
    let saved: BTreeMap<String, Tensor> = aha_model::weights::read_file(path, DType::F32, &device)?
        .into_iter()
        .collect();
    for (name, var) in params.iter() {
        let t = saved
            .get(name)
            .ok_or_else(|| file_err(path, format!("no tensor {name}")))?;
        if t.dims() != var.dims() {
            return Err(file_err(
                path,
                format!("{name} has shape {:?}, expected {:?}", t.dims(), var.dims()),
            ));
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The step and objective state of a checkpoint's `trainer.json`.
pub fn read_state(dir: &Path) -> Result<(u64, serde_json::Value)> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
    let f: TrainerFile = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
    Ok((f.step, f.state))
}

/// Into a fresh `tmp`: the model (an HF directory, or with LoRA the PEFT adapter), its f32
/// masters when the config stores a lower precision ([`MASTER_FILE`]: `save` rounds to the
/// stored dtype, and resume must be exact), and the optimizer state. Every trainer's
/// checkpoint starts with this; [`replace_dir`] then puts it in place.
pub(crate) fn write_weights(model: &Model, opt: &AdamW, tmp: &Path) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(|e| file_err(tmp, e))?;
    }
    if model.adapter().is_some() {
        model.save_adapter(tmp)?;
    } else {
        model.save(tmp)?;
        let stored = aha_model::config::stored_dtype(model.config())
            .as_deref()
            .and_then(aha_model::weights::parse_dtype)
            .unwrap_or(DType::F32);
        if stored != DType::F32 {
            aha_model::weights::write_file(
                &tmp.join(MASTER_FILE),
                &model.trainable_params().tensors(),
                DType::F32,
            )?;
        }
    }
    opt.save(tmp)?;
    Ok(())
}

/// Put the complete directory `tmp` at `dir`, replacing what was there.
pub(crate) fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        let old = dir.with_extension("old");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| file_err(&old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| file_err(dir, e))?;
        std::fs::rename(tmp, dir).map_err(|e| file_err(dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| file_err(&old, e))?;
    } else {
        std::fs::rename(tmp, dir).map_err(|e| file_err(dir, e))?;
    }
    Ok(())
}

/// `metrics.jsonl`: one JSON object per line, each with a `step` field.
pub struct MetricsSink {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsSink {
    /// Create `path`; with `keep_until` (a resumed run) the lines of steps up to it are kept
    /// and the rest dropped, so the resumed run rewrites them.
    pub fn open(path: &Path, keep_until: Option<u64>) -> Result<Self> {
        let kept: Vec<String> = match keep_until {
            Some(step) if path.is_file() => std::fs::read_to_string(path)
                .map_err(|e| file_err(path, e))?
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= step)
                })
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let mut file = std::fs::File::create(path).map_err(|e| file_err(path, e))?;
        for l in &kept {
            writeln!(file, "{l}").map_err(|e| file_err(path, e))?;
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Append one line (flushed, so a killed run keeps it).
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record).map_err(|e| TrainError::Invalid(e.to_string()))?;
        writeln!(self.file, "{line}").map_err(|e| file_err(&self.path, e))?;
        self.file.flush().map_err(|e| file_err(&self.path, e))
    }
}

/// splitmix64: a fixed mixer, so the data order does not depend on a crate's RNG version.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The order of `n` items in epoch `epoch`: a seeded permutation that depends on nothing
/// else, so a resumed run knows any step's data without replaying the steps before it.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut state = mix(seed ^ mix(epoch));
    for i in (1..n).rev() {
        state = mix(state);
        perm.swap(i, (state % (i as u64 + 1)) as usize);
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_would_train_nothing_or_nan_are_refused() {
        assert!(OptimConfig::default().check().is_ok());
        let with = |f: &dyn Fn(&mut OptimConfig)| {
            let mut c = OptimConfig::default();
            f(&mut c);
            c.check().map_err(|e| e.to_string())
        };
        for lr in [f64::NAN, f64::INFINITY, 0.0, -1e-4] {
            let err = with(&|c| c.lr = lr).unwrap_err();
            assert!(err.contains("learning rate"), "{err}");
        }
        assert!(with(&|c| c.min_lr_ratio = -1.0).is_err());
        assert!(with(&|c| c.min_lr_ratio = f64::NAN).is_err());
        assert!(with(&|c| c.max_grad_norm = -1.0).is_err());
        assert!(
            with(&|c| c.max_grad_norm = 0.0).is_ok(),
            "0 turns clipping off"
        );
        assert!(with(&|c| c.adam.weight_decay = f64::NAN).is_err());
        assert!(with(&|c| c.adam.beta2 = 1.0).is_err());
        assert!(with(&|c| c.adam.eps = 0.0).is_err());
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 7, 0));
        assert_ne!(a, epoch_order(50, 7, 1));
        assert_ne!(a, epoch_order(50, 8, 0));
    }

    #[test]
    fn metrics_sink_keeps_the_steps_before_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let mut m = MetricsSink::open(&p, None).unwrap();
        for step in 1..=4u64 {
            m.write(&serde_json::json!({ "step": step })).unwrap();
        }
        drop(m);
        let mut m = MetricsSink::open(&p, Some(2)).unwrap();
        m.write(&serde_json::json!({ "step": 3, "again": true }))
            .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].contains("again"));
    }
}
