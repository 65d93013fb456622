//! The optimizer side of training: AdamW over a model's [`Params`], a warmup + cosine
//! learning-rate schedule, global-norm gradient clipping, gradient accumulation, and
//! optimizer state that is saved and loaded for `--resume`.
//!
//! Gradients are handled as [`Grads`]: gradients by parameter name, taken out of a
//! candle `GradStore` after `backward`. Accumulation sums them; clipping scales them.

use aha_model::Params;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Model(#[from] aha_model::ModelError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, OptimError>;

fn io_err(path: &Path, source: std::io::Error) -> OptimError {
    OptimError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Gradients by parameter name (f32, the parameter's shape).
#[derive(Debug, Clone, Default)]
pub struct Grads {
    pub grads: BTreeMap<String, Tensor>,
}

impl Grads {
    /// Take the gradient of every parameter out of a `GradStore` (parameters that got no
    /// gradient are left out).
    pub fn from_store(params: &Params, store: &GradStore) -> Result<Self> {
        let mut grads = BTreeMap::new();
        for (name, var) in params.iter() {
            if let Some(g) = store.get(var.as_tensor()) {
                grads.insert(name.clone(), g.detach());
            }
        }
        Ok(Self { grads })
    }

    /// Gradient accumulation: add `other` into `self`.
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        for (name, g) in other.grads {
            let sum = match self.grads.remove(&name) {
                Some(prev) => (prev + g)?,
                None => g,
            };
            self.grads.insert(name, sum);
        }
        Ok(())
    }

    /// Multiply every gradient by `factor` (e.g. 1/accumulation steps).
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for g in self.grads.values_mut() {
            *g = (&*g * factor)?;
        }
        Ok(())
    }

    /// The global L2 norm over all gradients.
    pub fn global_norm(&self) -> Result<f64> {
        let mut sq = 0f64;
        for g in self.grads.values() {
            sq += g
                .to_dtype(DType::F32)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f32>()? as f64;
        }
        Ok(sq.sqrt())
    }

    /// Scale the gradients so that their global norm is at most `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_`: factor max_norm / (norm + 1e-6) when above).
    /// Returns the norm before clipping. `max_norm <= 0` only measures.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.global_norm()?;
        if max_norm > 0.0 && norm > max_norm {
            self.scale(max_norm / (norm + 1e-6))?;
        }
        Ok(norm)
    }

    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether every gradient is finite.
    pub fn all_finite(&self) -> Result<bool> {
        for g in self.grads.values() {
            let s = g
                .to_dtype(DType::F32)?
                .abs()?
                .sum_all()?
                .to_scalar::<f32>()?;
            if !s.is_finite() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (p -= lr * wd * p).
    pub weight_decay: f64,
    /// Apply weight decay to 1-D parameters (biases, norm weights) too. Off as in the
    /// Hugging Face Trainer.
    pub decay_1d: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decay_1d: false,
        }
    }
}

/// AdamW (Loshchilov & Hutter) with bias correction, as `torch.optim.AdamW`:
/// p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
/// p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
pub struct AdamW {
    pub cfg: AdamWConfig,
    /// Optimizer steps taken.
    pub step: u64,
    vars: BTreeMap<String, Var>,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

/// One step's AdamW constants.
struct Hyper {
    b1: f64,
    b2: f64,
    bc1: f64,
    bc2: f64,
    eps: f64,
    lr: f64,
    /// Weight decay, when this tensor decays.
    decay: Option<f64>,
}

/// Elements per rayon task of [`update_f32`].
const UPDATE_CHUNK: usize = 1 << 15;

/// AdamW on one f32 tensor in one pass: (p, m, v) new. Each element takes the f32 operations
/// candle's ops take in the composed step, in the same order (`x * c` is candle's affine
/// `x * c + 0`, its constants rounded from f64 to f32), so the bits are the same.
fn update_f32(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    h: &Hyper,
) -> Result<(Tensor, Tensor, Tensor)> {
    let f = |x: f64| x as f32;
    let (b1, nb1, b2, nb2) = (f(h.b1), f(1.0 - h.b1), f(h.b2), f(1.0 - h.b2));
    let (ibc1, ibc2, eps, lr) = (f(1.0 / h.bc1), f(1.0 / h.bc2), f(h.eps), f(h.lr));
    let keep = h.decay.map(|wd| f(1.0 - h.lr * wd));
    let n = p.elem_count();
    if g.elem_count() != n || m.elem_count() != n || v.elem_count() != n {
        return Err(OptimError::Invalid(format!(
            "AdamW: gradient {:?} for a parameter {:?}",
            g.dims(),
            p.dims()
        )));
    }
    let one = |p: &mut f32, g: f32, m: &mut f32, v: &mut f32| {
        *m = (*m * b1 + 0.0) + (g * nb1 + 0.0);
        *v = (*v * b2 + 0.0) + ((g * g) * nb2 + 0.0);
        let mut x = *p;
        if let Some(keep) = keep {
            x = x * keep + 0.0;
        }
        let denom = (*v * ibc2 + 0.0).sqrt() * 1.0 + eps;
        let update = (*m * ibc1 + 0.0) / denom;
        *p = x - (update * lr + 0.0);
    };
    // Read in place, written once into the new tensors' buffers.
    let (mut p1, mut m1, mut v1) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    {
        let (p0, g0, m0, v0) = (
            p.storage_and_layout(),
            g.storage_and_layout(),
            m.storage_and_layout(),
            v.storage_and_layout(),
        );
        let inputs = (f32_elems(&p0.0, p0.1)?.par_chunks(UPDATE_CHUNK))
            .zip(f32_elems(&g0.0, g0.1)?.par_chunks(UPDATE_CHUNK))
            .zip(f32_elems(&m0.0, m0.1)?.par_chunks(UPDATE_CHUNK))
            .zip(f32_elems(&v0.0, v0.1)?.par_chunks(UPDATE_CHUNK));
        let outputs = p1
            .par_chunks_mut(UPDATE_CHUNK)
            .zip(m1.par_chunks_mut(UPDATE_CHUNK))
            .zip(v1.par_chunks_mut(UPDATE_CHUNK));
        inputs
            .zip(outputs)
            .for_each(|((((p, g), m), v), ((p1, m1), v1))| {
                p1.copy_from_slice(p);
                m1.copy_from_slice(m);
                v1.copy_from_slice(v);
                for (((p, &g), m), v) in p1.iter_mut().zip(g).zip(m1.iter_mut()).zip(v1.iter_mut())
                {
                    one(p, g, m, v);
                }
            });
    }
    let (shape, dev) = (p.shape(), p.device());
    Ok((
        Tensor::from_vec(p1, shape, dev)?,
        Tensor::from_vec(m1, shape, dev)?,
        Tensor::from_vec(v1, shape, dev)?,
    ))
}

/// A contiguous f32 CPU tensor's elements, from its storage.
fn f32_elems<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Result<&'a [f32]> {
    aha_model::ops::f32_elems(storage, layout)
        .ok_or_else(|| OptimError::Invalid("AdamW: contiguous f32 CPU tensor expected".into()))
}

#[derive(Serialize, Deserialize)]
struct AdamWMeta {
    step: u64,
    cfg: AdamWConfig,
}

impl AdamW {
    pub fn new(params: &Params, cfg: AdamWConfig) -> Result<Self> {
        let mut vars = BTreeMap::new();
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, var) in params.iter() {
            let t = var.as_tensor();
            m.insert(
                name.clone(),
                Tensor::zeros(t.shape(), DType::F32, t.device())?,
            );
            v.insert(
                name.clone(),
                Tensor::zeros(t.shape(), DType::F32, t.device())?,
            );
            vars.insert(name.clone(), var.clone());
        }
        Ok(Self {
            cfg,
            step: 0,
            vars,
            m,
            v,
        })
    }

    /// One update with learning rate `lr`. Parameters without a gradient are left alone
    /// (their moments too).
    pub fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        self.step_with(grads, lr, true)
    }

    /// `fused`: f32 CPU parameters in one pass per tensor ([`update_f32`]), the others (and
    /// all of them when false) through candle's ops. The same bits either way (tested).
    fn step_with(&mut self, grads: &Grads, lr: f64, fused: bool) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let cpu_f32 = |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu();
        let hyper = |var: &Var| Hyper {
            b1,
            b2,
            bc1,
            bc2,
            eps: self.cfg.eps,
            lr,
            decay: (self.cfg.weight_decay > 0.0 && (self.cfg.decay_1d || var.rank() >= 2))
                .then_some(self.cfg.weight_decay),
        };
        // Fused tensors side by side (each update stands alone: the same bits in any order),
        // then the others one by one.
        let (m_all, v_all) = (&self.m, &self.v);
        let fused_tensor = |name: &String, var: &Var| {
            let g = grads.grads.get(name)?;
            let all = [var.as_tensor(), g, &m_all[name], &v_all[name]];
            (fused && all.into_iter().all(cpu_f32)).then_some(g)
        };
        let updated: Vec<(String, Tensor, Tensor)> = self
            .vars
            .par_iter()
            .filter_map(|(name, var)| {
                let g = fused_tensor(name, var)?;
                let update = || -> Result<(String, Tensor, Tensor)> {
                    let (p, m, v) =
                        update_f32(var.as_tensor(), g, &m_all[name], &v_all[name], &hyper(var))?;
                    var.set(&p)?;
                    Ok((name.clone(), m, v))
                };
                Some(update())
            })
            .collect::<Result<_>>()?;
        let done: std::collections::BTreeSet<String> =
            updated.iter().map(|(name, ..)| name.clone()).collect();
        for (name, m, v) in updated {
            self.m.insert(name.clone(), m);
            self.v.insert(name, v);
        }
        for (name, var) in &self.vars {
            let Some(g) = grads.grads.get(name) else {
                continue;
            };
            if done.contains(name) {
                continue;
            }
            let g = g.to_dtype(DType::F32)?;
            let p_dtype = var.dtype();
            let mut p = var.as_tensor().detach().to_dtype(DType::F32)?;
            let m = ((&self.m[name] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[name] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            if let Some(wd) = hyper(var).decay {
                p = (&p * (1.0 - lr * wd))?;
            }
            let denom = ((&v / bc2)?.sqrt()? + self.cfg.eps)?;
            let update = ((&m / bc1)? / denom)?;
            let p = (p - (update * lr)?)?;
            var.set(&p.to_dtype(p_dtype)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// `optimizer.safetensors` (moments) + `optimizer.json` (step, config), each atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (k, t) in &self.m {
            tensors.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            tensors.insert(format!("v.{k}"), t.clone());
        }
        let path = dir.join("optimizer.safetensors");
        let tmp = dir.join("optimizer.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        let meta = serde_json::to_string_pretty(&AdamWMeta {
            step: self.step,
            cfg: self.cfg.clone(),
        })
        .map_err(|e| OptimError::Invalid(e.to_string()))?;
        Ok(aha_model::write_atomic(
            &dir.join("optimizer.json"),
            meta.as_bytes(),
        )?)
    }

    /// Restore moments and step saved by [`AdamW::save`] for the same parameters.
    pub fn load(&mut self, dir: &Path, device: &Device) -> Result<()> {
        let meta_path = dir.join("optimizer.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|e| io_err(&meta_path, e))?;
        let meta: AdamWMeta = serde_json::from_str(&text)
            .map_err(|e| OptimError::Invalid(format!("{}: {e}", meta_path.display())))?;
        let mut tensors =
            candle_core::safetensors::load(dir.join("optimizer.safetensors"), device)?;
        for name in self.vars.keys() {
            let m = tensors.remove(&format!("m.{name}")).ok_or_else(|| {
                OptimError::Invalid(format!("optimizer state has no moments for {name}"))
            })?;
            let v = tensors.remove(&format!("v.{name}")).ok_or_else(|| {
                OptimError::Invalid(format!("optimizer state has no moments for {name}"))
            })?;
            if m.dims() != self.m[name].dims() {
                return Err(OptimError::Invalid(format!(
                    "optimizer state for {name} has shape {:?}, expected {:?}",
                    m.dims(),
                    self.m[name].dims()
                )));
            }
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        self.step = meta.step;
        self.cfg = meta.cfg;
        Ok(())
    }
}

/// Linear warmup from 0 to `lr` over `warmup_steps`, then cosine decay to
/// `lr * min_lr_ratio` at `total_steps` (constant after).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LrSchedule {
    pub lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    pub fn constant(lr: f64) -> Self {
        Self {
            lr,
            warmup_steps: 0,
            total_steps: 0,
            min_lr_ratio: 1.0,
        }
    }

    /// The learning rate of optimizer step `step` (1-based: the first update is step 1).
    pub fn at(&self, step: u64) -> f64 {
        if self.warmup_steps > 0 && step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        let min = self.lr * self.min_lr_ratio;
        if self.total_steps <= self.warmup_steps {
            return self.lr;
        }
        let progress = ((step - self.warmup_steps) as f64
            / (self.total_steps - self.warmup_steps) as f64)
            .min(1.0);
        min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(values: &[(&str, Vec<f32>)]) -> Params {
        let mut p = Params::default();
        for (name, v) in values {
            let n = v.len();
            p.insert(
                name,
                Tensor::from_vec(v.clone(), (1, n), &Device::Cpu).unwrap(),
            )
            .unwrap();
        }
        p
    }

    fn grads(values: &[(&str, Vec<f32>)]) -> Grads {
        let mut g = Grads::default();
        for (name, v) in values {
            let n = v.len();
            g.grads.insert(
                name.to_string(),
                Tensor::from_vec(v.clone(), (1, n), &Device::Cpu).unwrap(),
            );
        }
        g
    }

    fn get(p: &Params, name: &str) -> Vec<f32> {
        p.get(name)
            .unwrap()
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn adamw_matches_hand_computation() {
        let p = params(&[("w", vec![1.0, -2.0])]);
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
            decay_1d: false,
        };
        let mut opt = AdamW::new(&p, cfg).unwrap();
        let lr = 0.01;
        // Step 1, g = [0.5, -1]: m = 0.1 g, v = 0.01 g^2, mhat = g, vhat = g^2 -> update = sign(g).
        opt.step(&grads(&[("w", vec![0.5, -1.0])]), lr).unwrap();
        let mut want = [1.0f64, -2.0];
        let g1 = [0.5f64, -1.0];
        let mut m = [0.0f64; 2];
        let mut v = [0.0f64; 2];
        for i in 0..2 {
            want[i] *= 1.0 - lr * 0.1;
            m[i] = 0.1 * g1[i];
            v[i] = 0.01 * g1[i] * g1[i];
            want[i] -= lr * (m[i] / 0.1) / ((v[i] / 0.01).sqrt() + 1e-8);
        }
        let got = get(&p, "w");
        for i in 0..2 {
            assert!(
                (got[i] as f64 - want[i]).abs() < 1e-6,
                "step 1: {got:?} vs {want:?}"
            );
        }
        // Step 2, g = [0.2, 0.3].
        opt.step(&grads(&[("w", vec![0.2, 0.3])]), lr).unwrap();
        let g2 = [0.2f64, 0.3];
        for i in 0..2 {
            want[i] *= 1.0 - lr * 0.1;
            m[i] = 0.9 * m[i] + 0.1 * g2[i];
            v[i] = 0.99 * v[i] + 0.01 * g2[i] * g2[i];
            let mhat = m[i] / (1.0 - 0.9f64.powi(2));
            let vhat = v[i] / (1.0 - 0.99f64.powi(2));
            want[i] -= lr * mhat / (vhat.sqrt() + 1e-8);
        }
        let got = get(&p, "w");
        for i in 0..2 {
            assert!(
                (got[i] as f64 - want[i]).abs() < 1e-6,
                "step 2: {got:?} vs {want:?}"
            );
        }
        assert_eq!(opt.step, 2);
    }

    /// The one-pass f32 update gives candle's composed step's bits: parameters and moments
    /// over several steps, with and without decay, a 1-D and a large 2-D tensor (several
    /// rayon chunks), gradients spanning many magnitudes, zeros and negative zeros.
    #[test]
    fn fused_update_gives_the_composed_steps_bits() {
        let noise = |n: usize, seed: u64| -> Vec<f32> {
            let mut z = seed;
            (0..n)
                .map(|i| {
                    z = z
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = ((z >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                    match i % 7 {
                        0 => 0.0,
                        1 => -0.0,
                        k => u * 10f32.powi(k as i32 - 6),
                    }
                })
                .collect()
        };
        let big = UPDATE_CHUNK + 1000;
        for (wd, decay_1d) in [(0.0, false), (0.05, true), (0.1, false)] {
            let cfg = AdamWConfig {
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: wd,
                decay_1d,
            };
            let make = || {
                let mut p = Params::default();
                p.insert(
                    "a",
                    Tensor::from_vec(noise(big, 1), (big / 8, 8), &Device::Cpu).unwrap(),
                )
                .unwrap();
                p.insert(
                    "b",
                    Tensor::from_vec(noise(37, 2), 37, &Device::Cpu).unwrap(),
                )
                .unwrap();
                p
            };
            let (pf, pc) = (make(), make());
            let (mut of, mut oc) = (
                AdamW::new(&pf, cfg.clone()).unwrap(),
                AdamW::new(&pc, cfg.clone()).unwrap(),
            );
            for step in 0..4u64 {
                let mut g = Grads::default();
                g.grads.insert(
                    "a".into(),
                    Tensor::from_vec(noise(big, 10 + step), (big / 8, 8), &Device::Cpu).unwrap(),
                );
                g.grads.insert(
                    "b".into(),
                    Tensor::from_vec(noise(37, 20 + step), 37, &Device::Cpu).unwrap(),
                );
                let lr = 1e-3 / (step + 1) as f64;
                of.step_with(&g, lr, true).unwrap();
                oc.step_with(&g, lr, false).unwrap();
                let bits = |t: &Tensor| -> Vec<u32> {
                    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                    v.into_iter().map(f32::to_bits).collect()
                };
                for name in ["a", "b"] {
                    let (a, c) = (pf.get(name).unwrap(), pc.get(name).unwrap());
                    assert_eq!(
                        bits(a.as_tensor()),
                        bits(c.as_tensor()),
                        "{name} step {step}"
                    );
                    assert_eq!(bits(&of.m[name]), bits(&oc.m[name]), "m of {name}");
                    assert_eq!(bits(&of.v[name]), bits(&oc.v[name]), "v of {name}");
                }
            }
            assert_ne!(
                pf.get("a").unwrap().as_tensor().to_vec2::<f32>().unwrap(),
                make()
                    .get("a")
                    .unwrap()
                    .as_tensor()
                    .to_vec2::<f32>()
                    .unwrap(),
                "the parameters moved"
            );
        }
    }

    #[test]
    fn no_decay_for_1d_params_by_default() {
        let mut p = Params::default();
        p.insert("b", Tensor::new(&[1.0f32, 1.0], &Device::Cpu).unwrap())
            .unwrap();
        let mut opt = AdamW::new(
            &p,
            AdamWConfig {
                weight_decay: 0.5,
                ..Default::default()
            },
        )
        .unwrap();
        let mut g = Grads::default();
        g.grads.insert(
            "b".into(),
            Tensor::new(&[0.0f32, 0.0], &Device::Cpu).unwrap(),
        );
        opt.step(&g, 0.1).unwrap();
        assert_eq!(get(&p, "b"), vec![1.0, 1.0]);
    }

    #[test]
    fn clipping_scales_to_max_norm_and_returns_pre_clip_norm() {
        let mut g = grads(&[("a", vec![3.0]), ("b", vec![4.0])]);
        let norm = g.clip_global_norm(1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let after = g.global_norm().unwrap();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        let a: Vec<f32> = g.grads["a"].flatten_all().unwrap().to_vec1().unwrap();
        assert!((a[0] - 0.6).abs() < 1e-5);
        // Below the bound: unchanged.
        let mut g = grads(&[("a", vec![0.3]), ("b", vec![0.4])]);
        assert!((g.clip_global_norm(1.0).unwrap() - 0.5).abs() < 1e-6);
        assert!((g.global_norm().unwrap() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn accumulation_sums() {
        let mut g = grads(&[("a", vec![1.0, 2.0])]);
        g.accumulate(grads(&[("a", vec![0.5, 0.5]), ("b", vec![1.0])]))
            .unwrap();
        g.scale(2.0).unwrap();
        let a: Vec<f32> = g.grads["a"].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, vec![3.0, 5.0]);
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn schedule_warmup_then_cosine_to_floor() {
        let s = LrSchedule {
            lr: 1.0,
            warmup_steps: 4,
            total_steps: 14,
            min_lr_ratio: 0.1,
        };
        assert!((s.at(1) - 0.25).abs() < 1e-12);
        assert!((s.at(4) - 1.0).abs() < 1e-12);
        assert!((s.at(9) - 0.55).abs() < 1e-12); // halfway: floor + (1 - floor) / 2
        assert!((s.at(14) - 0.1).abs() < 1e-12);
        assert!((s.at(100) - 0.1).abs() < 1e-12);
        assert_eq!(LrSchedule::constant(0.3).at(7), 0.3);
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = params(&[("w", vec![1.0, -2.0])]);
        let mut opt = AdamW::new(&p, AdamWConfig::default()).unwrap();
        opt.step(&grads(&[("w", vec![0.5, -1.0])]), 0.01).unwrap();
        opt.save(dir.path()).unwrap();
        let p2 = params(&[("w", get(&p, "w"))]);
        let mut opt2 = AdamW::new(&p2, AdamWConfig::default()).unwrap();
        opt2.load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(opt2.step, 1);
        let g = grads(&[("w", vec![0.2, 0.3])]);
        opt.step(&g, 0.01).unwrap();
        opt2.step(&g, 0.01).unwrap();
        assert_eq!(get(&p, "w"), get(&p2, "w"));
    }
}
