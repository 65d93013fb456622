//! LoRA adapters (Hu et al. 2021) on the linear layers of Llama/Qwen2, saved and loaded in
//! the PEFT format: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! An adapted layer computes `y = x W^T + b + (alpha / r) (x A^T) B^T` with A [r, in] and
//! B [out, r]. Fresh adapters start as PEFT's: A Kaiming-uniform (bound 1/sqrt(in), seeded),
//! B zero, so the adapted model computes what the base model did. While an adapter is
//! attached the base weights are frozen: only the A and B tensors are trainable
//! ([`Adapter::params`]).
//!
//! Tensor names are PEFT's: `base_model.model.<module path>.lora_A.weight` /
//! `.lora_B.weight`, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.

use crate::error::{ModelError, Result};
use crate::ops::{Linear, LoraWeights};
use crate::weights::Params;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's prefix of every adapter tensor name (`PeftModelForCausalLM.base_model.model`).
pub const PEFT_PREFIX: &str = "base_model.model.";
/// The linear layers of a Llama/Qwen2 decoder layer that can carry an adapter.
pub const LLAMA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];
/// PEFT's default targets for llama and qwen2 when `target_modules` is null.
const DEFAULT_TARGETS: [&str; 2] = ["q_proj", "v_proj"];

/// `target_modules`: a list of module names (matched against the last part of a module's
/// path), or a string: `"all-linear"`, or a regular expression PEFT matched when it saved
/// the adapter (aha then adapts exactly the modules the weights file has tensors for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

/// `layers_to_transform`: one layer index or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerIndices {
    One(usize),
    List(Vec<usize>),
}

/// `adapter_config.json` of a PEFT LoRA adapter. Field names and meanings are PEFT's
/// (`peft.LoraConfig`); fields aha does not use are kept in `other` and written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Always "LORA".
    pub peft_type: String,
    /// "CAUSAL_LM".
    #[serde(default)]
    pub task_type: Option<String>,
    /// The rank.
    pub r: usize,
    /// The adapter output is scaled by lora_alpha / r.
    #[serde(serialize_with = "int_if_whole")]
    pub lora_alpha: f64,
    /// Dropout on the adapter input while training (aha trains without it).
    #[serde(default)]
    pub lora_dropout: f64,
    /// None: PEFT's default for llama/qwen2, q_proj and v_proj.
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Which biases train: only "none" is supported.
    #[serde(default = "bias_none")]
    pub bias: String,
    /// For GPT-2's Conv1D layers (weights stored transposed): must be false.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// rsLoRA: scale by lora_alpha / sqrt(r).
    #[serde(default)]
    pub use_rslora: bool,
    /// DoRA (weight-decomposed LoRA): not supported.
    #[serde(default)]
    pub use_dora: bool,
    /// Only these decoder layers are adapted (None: all).
    #[serde(default)]
    pub layers_to_transform: Option<LayerIndices>,
    /// Fully trained extra modules (not supported).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Per-module rank / alpha overrides (not supported).
    #[serde(default, deserialize_with = "null_as_default")]
    pub rank_pattern: BTreeMap<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub alpha_pattern: BTreeMap<String, Value>,
    /// Modules excluded from `target_modules` (not supported).
    #[serde(default)]
    pub exclude_modules: Option<Value>,
    /// true: PEFT's init (A Kaiming-uniform, B zero).
    #[serde(default = "yes")]
    pub init_lora_weights: Value,
    #[serde(default)]
    pub inference_mode: bool,
    /// Every other field, as read.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

fn bias_none() -> String {
    "none".into()
}

fn yes() -> Value {
    Value::Bool(true)
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// PEFT writes lora_alpha as an int; keep it one when it is whole.
fn int_if_whole<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

impl LoraConfig {
    /// A CAUSAL_LM LoRA config as PEFT's defaults have it, with rank `r`, `lora_alpha` and
    /// these target module names.
    pub fn new(r: usize, lora_alpha: f64, targets: &[&str]) -> Self {
        Self {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r,
            lora_alpha,
            lora_dropout: 0.0,
            target_modules: Some(TargetModules::List(
                targets.iter().map(|s| s.to_string()).collect(),
            )),
            bias: bias_none(),
            fan_in_fan_out: false,
            base_model_name_or_path: None,
            use_rslora: false,
            use_dora: false,
            layers_to_transform: None,
            modules_to_save: None,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            exclude_modules: None,
            init_lora_weights: yes(),
            inference_mode: false,
            other: BTreeMap::new(),
        }
    }

    /// Parse `adapter_config.json` text; `path` names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let cfg: Self =
            serde_path_to_error::deserialize(de).map_err(|e| adapter_err(path, e.to_string()))?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Read and check `DIR/adapter_config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::file(&path, e))?;
        Self::from_json(&text, &path)
    }

    /// The factor of the adapter output: lora_alpha / r (rsLoRA: / sqrt(r)).
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// The target module names; None when `target_modules` is a pattern other than
    /// "all-linear" (then the weights file decides).
    pub fn target_names(&self) -> Option<Vec<String>> {
        match &self.target_modules {
            None => Some(DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect()),
            Some(TargetModules::List(v)) => Some(v.clone()),
            Some(TargetModules::Pattern(p)) if p == "all-linear" => {
                Some(LLAMA_TARGETS.iter().map(|s| s.to_string()).collect())
            }
            Some(TargetModules::Pattern(_)) => None,
        }
    }

    /// Whether decoder layer `layer` is adapted (`layers_to_transform`).
    pub fn layer_selected(&self, layer: usize) -> bool {
        match &self.layers_to_transform {
            None => true,
            Some(LayerIndices::One(i)) => *i == layer,
            Some(LayerIndices::List(v)) => v.contains(&layer),
        }
    }

    /// Check that aha can run this adapter as PEFT would.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let fail = |m: String| Err(adapter_err(path, m));
        if !self.peft_type.eq_ignore_ascii_case("LORA") {
            return fail(format!(
                "peft_type {:?} is not supported (only LORA)",
                self.peft_type
            ));
        }
        if self.r == 0 {
            return fail("r must be positive".into());
        }
        if !self.lora_alpha.is_finite() {
            return fail("lora_alpha must be a finite number".into());
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return fail(format!(
                "lora_dropout {} must be in [0, 1)",
                self.lora_dropout
            ));
        }
        if self.bias != "none" {
            return fail(format!(
                "bias {:?} is not supported (only \"none\": biases do not train)",
                self.bias
            ));
        }
        if self.fan_in_fan_out {
            return fail("fan_in_fan_out true (GPT-2 Conv1D layers) is not supported".into());
        }
        if self.use_dora {
            return fail("use_dora (DoRA) is not supported".into());
        }
        if self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return fail("modules_to_save is not supported".into());
        }
        if !self.rank_pattern.is_empty() || !self.alpha_pattern.is_empty() {
            return fail("rank_pattern / alpha_pattern are not supported".into());
        }
        match &self.exclude_modules {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(_) => return fail("exclude_modules is not supported".into()),
        }
        if let Some(Value::String(s)) = self.other.get("lora_bias") {
            return fail(format!("lora_bias {s:?} is not supported"));
        }
        if self.other.get("lora_bias").and_then(Value::as_bool) == Some(true) {
            return fail("lora_bias true is not supported".into());
        }
        // Variants that change what the adapter computes.
        for key in [
            "layer_replication",
            "target_parameters",
            "trainable_token_indices",
            "alora_invocation_tokens",
        ] {
            match self.other.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(Value::Object(o)) if o.is_empty() => {}
                Some(_) => return fail(format!("{key} is not supported")),
            }
        }
        if let Some(TargetModules::List(v)) = &self.target_modules {
            if v.is_empty() {
                return fail("target_modules is empty".into());
            }
        }
        if let Some(names) = self.target_names() {
            if let Some(bad) = names.iter().find(|n| !LLAMA_TARGETS.contains(&n.as_str())) {
                return fail(format!(
                    "target module {bad:?} is not supported (aha adapts {})",
                    LLAMA_TARGETS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// As PEFT writes it (pretty JSON, `inference_mode` true).
    pub fn to_json(&self) -> Result<String> {
        let mut c = self.clone();
        c.inference_mode = true;
        serde_json::to_string_pretty(&c).map_err(|e| ModelError::Invalid(e.to_string()))
    }
}

fn adapter_err(path: &Path, message: impl ToString) -> ModelError {
    ModelError::Adapter {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// PEFT's name of a LoRA tensor: `which` is "A" or "B".
pub fn peft_name(module: &str, which: &str) -> String {
    format!("{PEFT_PREFIX}{module}.lora_{which}.weight")
}

/// The decoder layer index of a module path `model.layers.N....`.
fn layer_of(module: &str) -> Option<usize> {
    module
        .strip_prefix("model.layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn short_name(module: &str) -> &str {
    module.rsplit('.').next().unwrap_or(module)
}

/// splitmix64: a reproducible stream of uniform numbers without a crate's RNG version.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-bound, bound).
    fn uniform(&mut self, bound: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * bound
    }
}

/// The LoRA adapter attached to a model: its config and its A/B tensors (trainable
/// variables, by PEFT name).
#[derive(Clone)]
pub struct Adapter {
    pub config: LoraConfig,
    params: Params,
}

impl Adapter {
    /// The A and B variables by PEFT name: what trains.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The adapted module paths, in order.
    pub fn modules(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .params
            .iter()
            .filter_map(|(n, _)| {
                n.strip_prefix(PEFT_PREFIX)?
                    .strip_suffix(".lora_A.weight")
                    .map(str::to_string)
            })
            .collect();
        out.sort_by_key(|m| (layer_of(m), m.clone()));
        out
    }

    /// Attach fresh adapters to the targeted layers: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's
    /// `kaiming_uniform_(a=sqrt(5))`), seeded; B = 0.
    pub(crate) fn attach_new(
        linears: Vec<(String, &mut Linear)>,
        cfg: &LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        let here = Path::new("<new adapter>");
        cfg.validate(here)?;
        let names = cfg.target_names().ok_or_else(|| {
            adapter_err(
                here,
                "a new adapter needs target_modules as a list of module names",
            )
        })?;
        let mut params = Params::default();
        let mut attach = Vec::new();
        for (k, (module, lin)) in linears.into_iter().enumerate() {
            let selected = names.iter().any(|n| n == short_name(&module))
                && layer_of(&module).is_some_and(|l| cfg.layer_selected(l));
            if !selected {
                continue;
            }
            let w = lin.dense_weight("a LoRA adapter")?;
            let (out_dim, in_dim) = w.dims2()?;
            let (dtype, device) = (w.dtype(), w.device().clone());
            let mut rng = SplitMix(seed ^ (k as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            let bound = 1.0 / (in_dim as f32).sqrt();
            let a: Vec<f32> = (0..cfg.r * in_dim).map(|_| rng.uniform(bound)).collect();
            let a = Tensor::from_vec(a, (cfg.r, in_dim), &device)?.to_dtype(dtype)?;
            let b = Tensor::zeros((out_dim, cfg.r), dtype, &device)?;
            let a = params.insert(&peft_name(&module, "A"), a)?;
            let b = params.insert(&peft_name(&module, "B"), b)?;
            attach.push((lin, a, b));
        }
        if attach.is_empty() {
            return Err(adapter_err(
                here,
                "target_modules / layers_to_transform select no layer of this model",
            ));
        }
        let scale = cfg.scale();
        for (lin, a, b) in attach {
            lin.lora = Some(LoraWeights { a, b, scale });
        }
        Ok(Self {
            config: cfg.clone(),
            params,
        })
    }

    /// Attach adapters from tensors by PEFT name, checking that every targeted layer has
    /// both tensors in the right shapes and that no tensor is left over.
    pub(crate) fn attach_loaded(
        linears: Vec<(String, &mut Linear)>,
        cfg: &LoraConfig,
        tensors: HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<Self> {
        cfg.validate(path)?;
        let tensor_err = |name: &str, message: String| ModelError::Tensor {
            path: path.to_path_buf(),
            name: name.to_string(),
            message,
        };
        // module path -> (A, B)
        let mut found: BTreeMap<String, [Option<Tensor>; 2]> = BTreeMap::new();
        for (name, t) in tensors {
            let module_and_kind = name.strip_prefix(PEFT_PREFIX).and_then(|rest| {
                rest.strip_suffix(".lora_A.weight")
                    .map(|m| (m, 0))
                    .or_else(|| rest.strip_suffix(".lora_B.weight").map(|m| (m, 1)))
            });
            let Some((module, kind)) = module_and_kind else {
                return Err(tensor_err(
                    &name,
                    format!(
                        "is not a LoRA tensor aha can load (expected {PEFT_PREFIX}<module>.lora_A.weight or .lora_B.weight)"
                    ),
                ));
            };
            found.entry(module.to_string()).or_default()[kind] = Some(t);
        }
        let known: BTreeSet<&str> = linears.iter().map(|(m, _)| m.as_str()).collect();
        if let Some(m) = found.keys().find(|m| !known.contains(m.as_str())) {
            return Err(adapter_err(
                path,
                format!("has tensors for {m}, which is not a linear layer of this model"),
            ));
        }
        let names = cfg.target_names();
        let (r, scale) = (cfg.r, cfg.scale());
        let mut params = Params::default();
        let mut attach = Vec::new();
        for (module, lin) in linears {
            let targeted = match &names {
                Some(names) => {
                    names.iter().any(|n| n == short_name(&module))
                        && layer_of(&module).is_some_and(|l| cfg.layer_selected(l))
                }
                None => found.contains_key(&module),
            };
            let pair = found.remove(&module);
            if !targeted {
                if pair.is_some() {
                    return Err(adapter_err(
                        path,
                        format!("has tensors for {module}, which target_modules / layers_to_transform do not select"),
                    ));
                }
                continue;
            }
            let [a, b] = pair.unwrap_or_default();
            let w_dtype = lin.dense_weight("a LoRA adapter")?.dtype();
            let (out_dim, in_dim) = lin.dims()?;
            let mut take = |t: Option<Tensor>, which: &str, shape: [usize; 2]| -> Result<Tensor> {
                let name = peft_name(&module, which);
                let t = t.ok_or_else(|| tensor_err(&name, "missing from the adapter".into()))?;
                if t.dims() != shape {
                    return Err(tensor_err(
                        &name,
                        format!(
                            "has shape {:?}, expected {shape:?} (r = {r} in {CONFIG_FILE}, layer weight [{out_dim}, {in_dim}])",
                            t.dims()
                        ),
                    ));
                }
                let sum = t
                    .to_dtype(DType::F32)?
                    .abs()?
                    .sum_all()?
                    .to_scalar::<f32>()?;
                if !sum.is_finite() {
                    return Err(tensor_err(&name, "has non-finite values".into()));
                }
                params.insert(&name, t.to_dtype(w_dtype)?)
            };
            let a = take(a, "A", [r, in_dim])?;
            let b = take(b, "B", [out_dim, r])?;
            attach.push((lin, a, b));
        }
        if attach.is_empty() {
            return Err(adapter_err(path, "selects no layer of this model"));
        }
        for (lin, a, b) in attach {
            lin.lora = Some(LoraWeights { a, b, scale });
        }
        Ok(Self {
            config: cfg.clone(),
            params,
        })
    }

    /// Give the layers deep copies of their adapter tensors (for a frozen reference that
    /// shares the base weights) and collect them.
    pub(crate) fn fork(linears: Vec<(String, &mut Linear)>, config: LoraConfig) -> Result<Self> {
        let mut params = Params::default();
        for (module, lin) in linears {
            if let Some(l) = lin.lora.as_mut() {
                l.a = params.insert(&peft_name(&module, "A"), l.a.detach().copy()?)?;
                l.b = params.insert(&peft_name(&module, "B"), l.b.detach().copy()?)?;
            }
        }
        Ok(Self { config, params })
    }

    /// Write `adapter_config.json` and `adapter_model.safetensors` (f32) into `dir`, as
    /// PEFT's `save_pretrained` does.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::file(dir, e))?;
        crate::weights::write_file(&dir.join(WEIGHTS_FILE), &self.params.tensors(), DType::F32)?;
        crate::write_atomic(&dir.join(CONFIG_FILE), self.config.to_json()?.as_bytes())
    }
}

/// Read an adapter directory: its config (checked) and its tensors by PEFT name, converted
/// to `dtype`.
pub fn read_adapter(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<(LoraConfig, HashMap<String, Tensor>)> {
    if !dir.is_dir() {
        return Err(ModelError::file(dir, "no such adapter directory"));
    }
    let cfg = LoraConfig::read(dir)?;
    let weights: PathBuf = dir.join(WEIGHTS_FILE);
    if !weights.is_file() {
        let hint = if dir.join("adapter_model.bin").is_file() {
            " (adapter_model.bin is a pickle: save the adapter with safe_serialization=True)"
        } else {
            ""
        };
        return Err(ModelError::file(&weights, format!("missing{hint}")));
    }
    let tensors = crate::weights::read_file(&weights, dtype, device)?
        .into_iter()
        .collect();
    Ok((cfg, tensors))
}

/// `W + scale B A` of every adapted layer, by the base weight's HF name.
pub(crate) fn merged_weights(linears: &[(String, &Linear)]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (module, lin) in linears {
        if let Some(l) = &lin.lora {
            let w = lin.dense_weight("merging an adapter")?.detach();
            let delta =
                l.b.detach()
                    .to_dtype(DType::F32)?
                    .matmul(&l.a.detach().to_dtype(DType::F32)?)?;
            let merged = (w.to_dtype(DType::F32)? + (delta * l.scale)?)?.to_dtype(w.dtype())?;
            out.push((format!("{module}.weight"), merged));
        }
    }
    Ok(out)
}
