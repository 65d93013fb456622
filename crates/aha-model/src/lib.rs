//! R1-family model architectures on candle: `config.json` and safetensors loading,
//! forward passes that serve both inference (fused ops, KV cache) and training
//! (differentiable ops, full logits), and saving back in the Hugging Face format.

// Not called directly: turns on the AVX-512 kernels of the GEMM crate under candle.
use gemm as _;

/// `fn NAME(args) -> ret` that runs `ANY` (an `#[inline(always)]` fn of the same signature)
/// compiled with the AVX-512 set's target features or the AVX2 set's, whichever the CPU has
/// (`Isa::detected()`), else as compiled for the baseline; the two compiled copies are named
/// so that tests can call each. The same Rust for every set, and Rust never contracts into
/// fused multiply-adds: the same bits whichever runs.
macro_rules! simd_variants {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        = $any:ident for { $v512:ident: $f512:literal, $v2:ident: $f2:literal $(,)? }) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            match crate::qkernels::Isa::detected() {
                // SAFETY: the CPU has these features (detected at run time).
                crate::qkernels::Isa::Avx512 => return unsafe { $v512($($arg),*) },
                crate::qkernels::Isa::Avx2 => return unsafe { $v2($($arg),*) },
                crate::qkernels::Isa::Scalar => {}
            }
            $any($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $f512)]
        unsafe fn $v512($($arg: $ty),*) $(-> $ret)? {
            $any($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $f2)]
        unsafe fn $v2($($arg: $ty),*) $(-> $ret)? {
            $any($($arg),*)
        }
    };
}

pub mod config;
pub mod deepseek_v3;
mod error;
mod fused;
pub mod gguf;
pub mod gguf_deepseek2;
pub mod gguf_llama;
pub mod kv_cache;
pub mod llama;
pub mod lora;
pub mod ops;
pub mod qkernels;
pub mod rope;
pub mod spin;
pub mod weights;

pub use candle_core::{DType, Device, Tensor};
pub use error::{ModelError, Result};
pub use kv_cache::KvCache;
pub use lora::LoraConfig;
pub use ops::Mode;
pub use weights::Params;

use std::path::{Path, PathBuf};

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// Every position: scoring and training.
    All,
    /// Only the last position: sampling.
    Last,
    /// The last n positions: scoring a completion after its prompt without paying the
    /// vocabulary projection for the prompt.
    Tail(usize),
}

impl LogitsFor {
    /// Keep the positions [b, t, h] -> [b, t', h] that get logits.
    pub fn select(self, x: &Tensor) -> candle_core::Result<Tensor> {
        let t = x.dim(1)?;
        match self {
            LogitsFor::All => Ok(x.clone()),
            LogitsFor::Last => x.narrow(1, t - 1, 1),
            LogitsFor::Tail(n) => x.narrow(1, t - n.min(t), n.min(t)),
        }
    }
}

/// One forward pass over a (possibly left-padded) batch.
pub struct ForwardInput<'a> {
    /// [b, t] u32 token ids.
    pub input_ids: &'a Tensor,
    /// [b, t] position of each token in its own sequence (any integer dtype).
    pub position_ids: &'a Tensor,
    /// [b, past + t] 1 for real tokens, 0 for padding, over the cached and new positions;
    /// or [b, t, past + t]: which keys each query may see (on top of causality), e.g. a
    /// block-diagonal mask for several sequences packed into one row.
    /// None: every position is real.
    pub key_mask: Option<&'a Tensor>,
    /// Lengths of the sequences packed back to back into the batch's one row (b = 1, no
    /// cache, no `key_mask`): each attends causally within itself. Training's attention then
    /// goes sequence by sequence (no padding, no [t, t] mask); other paths build the
    /// block-diagonal mask.
    pub segments: Option<&'a [usize]>,
    pub mode: Mode,
    pub logits: LogitsFor,
}

/// Additive attention bias [b, 1, 1, t, past + t]: causal, and the keys that `key_mask`
/// (see [`ForwardInput::key_mask`]: [b, past + t] or [b, t, past + t]) rules out masked.
pub fn attention_bias(
    key_mask: Option<&Tensor>,
    b: usize,
    t: usize,
    past: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let total = past + t;
    let q_pos = Tensor::arange(past as u32, total as u32, device)?.reshape((t, 1))?;
    let k_pos = Tensor::arange(0u32, total as u32, device)?.reshape((1, total))?;
    let mut allowed = k_pos
        .broadcast_le(&q_pos)?
        .to_dtype(DType::F32)?
        .reshape((1, t, total))?;
    if let Some(mask) = key_mask {
        let mask = match mask.dims() {
            &[mb, mt] if (mb, mt) == (b, total) => mask.reshape((b, 1, total))?,
            &[mb, mq, mt] if (mb, mq, mt) == (b, t, total) => mask.clone(),
            dims => candle_core::bail!(
                "key mask is {dims:?}, expected [{b}, {total}] or [{b}, {t}, {total}]"
            ),
        };
        allowed = allowed.broadcast_mul(&mask.to_dtype(DType::F32)?)?;
    } else {
        allowed = allowed.broadcast_as((b, t, total))?.contiguous()?;
    }
    ((allowed - 1.0)? * -ops::MASK_VALUE)?.reshape((b, 1, 1, t, total))
}

/// The additive bias of `input` for its [b, t] ids after `past` cached positions: as
/// [`attention_bias`], packed `segments` as a block-diagonal causal mask.
pub(crate) fn input_bias(input: &ForwardInput, past: usize) -> candle_core::Result<Tensor> {
    let (b, t) = input.input_ids.dims2()?;
    let device = input.input_ids.device();
    match input.segments {
        None => attention_bias(input.key_mask, b, t, past, device),
        Some(lens) => {
            check_segments(input, past)?;
            let mut allowed = vec![0u8; t * t];
            let mut start = 0;
            for &len in lens {
                for q in start..start + len {
                    allowed[q * t + start..q * t + start + len].fill(1);
                }
                start += len;
            }
            let mask = Tensor::from_vec(allowed, (1, t, t), device)?;
            attention_bias(Some(&mask), 1, t, 0, device)
        }
    }
}

/// Packed segments need one row, no cache, no key mask, and lengths that add up to the row.
pub(crate) fn check_segments(input: &ForwardInput, past: usize) -> candle_core::Result<()> {
    let (b, t) = input.input_ids.dims2()?;
    if let Some(lens) = input.segments {
        if b != 1 || past != 0 || input.key_mask.is_some() || lens.iter().sum::<usize>() != t {
            candle_core::bail!(
                "packed sequences {lens:?} need one row of {t} tokens, no cache and no key mask \
                 (got {b} rows, {past} cached)"
            );
        }
    }
    Ok(())
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype; weights are converted on load. f32 on CPU.
    pub dtype: DType,
    pub device: Device,
    /// What runs the weights a GGUF file keeps quantized.
    pub quant_kernels: qkernels::Kernels,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            quant_kernels: qkernels::Kernels::default(),
        }
    }
}

enum Arch {
    Llama(Box<llama::Llama>),
    DeepseekV3(Box<deepseek_v3::DeepseekV3>),
}

/// A loaded causal language model.
pub struct Model {
    arch: Arch,
    /// config.json as read, written back on save.
    config: serde_json::Value,
    source: Option<PathBuf>,
    device: Device,
}

impl Model {
    /// Load a Hugging Face model directory (config.json + safetensors), or a `.gguf` file:
    /// llama/qwen2 run quantized; deepseek2 (DeepSeek-V2/V3/R1) loads as a DeepSeek-V3 model
    /// whose block-quantized projections stay quantized (see
    /// [`deepseek_v3::DeepseekV3::quantized_linears`]; inference only), the rest dense f32.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        if gguf::is_gguf_path(dir) {
            let g = gguf::open(dir)?;
            if gguf_deepseek2::is_deepseek2(&g)? {
                let (config, dense, quantized) =
                    gguf_deepseek2::quantized_checkpoint(&g, &opts.device)?;
                return Self::from_gguf_tensors(config, dense, quantized, dir, opts);
            }
            let (config, dense, quantized) = gguf_llama::checkpoint(&g, &opts.device, true)?;
            return Self::from_gguf_tensors(config, dense, quantized, dir, opts);
        }
        let config_path = dir.join("config.json");
        let config = config::read_config(&config_path)?;
        let mut ckpt = weights::Checkpoint::read_dir(dir, opts.dtype, &opts.device)?;
        let mut model = Self::from_checkpoint(config, &mut ckpt, &config_path, &opts.device)?;
        model.source = Some(dir.to_path_buf());
        Ok(model)
    }

    /// Like [`Model::load`], but a `.gguf` file is dequantized into a dense f32 Llama/Qwen2
    /// model (trainable, and able to carry a LoRA adapter) instead of running quantized; a
    /// deepseek2 file into a dense f32 DeepSeek-V3 model.
    pub fn load_dense(path: &Path, opts: &LoadOptions) -> Result<Self> {
        if !gguf::is_gguf_path(path) {
            return Self::load(path, opts);
        }
        let g = gguf::open(path)?;
        let (config, tensors, quantized) = if gguf_deepseek2::is_deepseek2(&g)? {
            let (config, tensors) = gguf_deepseek2::dense_checkpoint(&g, &opts.device)?;
            (config, tensors, Default::default())
        } else {
            gguf_llama::checkpoint(&g, &opts.device, false)?
        };
        Self::from_gguf_tensors(config, tensors, quantized, path, opts)
    }

    /// A model from a GGUF file's HF-named tensors: dense ones (converted to the compute
    /// dtype) and quantized ones that the architecture may keep quantized.
    fn from_gguf_tensors(
        config: serde_json::Value,
        dense: std::collections::HashMap<String, Tensor>,
        quantized: std::collections::HashMap<String, candle_core::quantized::QTensor>,
        path: &Path,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let dense = dense
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_dtype(opts.dtype)?)))
            .collect::<Result<_>>()?;
        let mut ckpt = weights::Checkpoint::from_tensors(dense, path).with_quantized(
            quantized,
            path,
            opts.quant_kernels,
        );
        let mut model = Self::from_checkpoint(config, &mut ckpt, path, &opts.device)?;
        model.source = Some(path.to_path_buf());
        Ok(model)
    }

    /// Build from a parsed config and in-memory tensors. `config_path` is for error messages.
    pub fn from_checkpoint(
        config: serde_json::Value,
        ckpt: &mut weights::Checkpoint,
        config_path: &Path,
        device: &Device,
    ) -> Result<Self> {
        let arch_name = config::architecture(&config).ok_or_else(|| {
            ModelError::config(config_path, "no \"model_type\" or \"architectures\" field")
        })?;
        let arch = match arch_name.as_str() {
            "llama" | "qwen2" | "mistral" => {
                let cfg = llama::LlamaConfig::from_json(&config, config_path)?;
                Arch::Llama(Box::new(llama::Llama::load(cfg, ckpt, device)?))
            }
            "deepseek_v3" => {
                let cfg = deepseek_v3::DeepseekV3Config::from_json(&config, config_path)?;
                Arch::DeepseekV3(Box::new(deepseek_v3::DeepseekV3::load(cfg, ckpt, device)?))
            }
            other => return Err(ModelError::UnknownArchitecture(other.to_string())),
        };
        let leftover: Vec<&String> = ckpt
            .names()
            .filter(|n| *n != "lm_head.weight" && !n.contains("rotary_emb"))
            .collect();
        if !leftover.is_empty() {
            tracing::warn!(
                "{} checkpoint tensors are not used by the model, e.g. {}",
                leftover.len(),
                leftover[0]
            );
        }
        Ok(Self {
            arch,
            config,
            source: None,
            device: device.clone(),
        })
    }

    /// Logits [b, t, vocab] (or [b, 1, vocab] for `LogitsFor::Last`), f32 on CPU.
    pub fn forward(&self, input: &ForwardInput, cache: Option<&mut KvCache>) -> Result<Tensor> {
        match &self.arch {
            Arch::Llama(m) => m.forward(input, cache),
            Arch::DeepseekV3(m) => m.forward(input, cache),
        }
    }

    /// Log-probs and entropies (detached) [b, n] of `targets` [b, n] (u32): target k of row r
    /// under softmax(scale · logits) at position k of row r of the positions
    /// `input.logits` keeps. What [`Model::forward`] and [`ops::token_logprobs`] give, without
    /// the logits' intermediate views in the graph (see [`ops::head_logprobs`]).
    pub fn target_logprobs(
        &self,
        input: &ForwardInput,
        targets: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, Tensor)> {
        match &self.arch {
            Arch::Llama(m) => {
                let x = m.hidden(input, None)?;
                Ok(ops::head_logprobs(
                    &x,
                    m.lm_head(),
                    targets,
                    scale,
                    input.mode,
                )?)
            }
            Arch::DeepseekV3(m) => {
                let n = targets.dim(1)?;
                let logits = m
                    .forward(input, None)?
                    .to_dtype(DType::F32)?
                    .narrow(1, 0, n)?;
                Ok(ops::token_logprobs(&logits, targets, scale)?)
            }
        }
    }

    pub fn new_cache(&self) -> KvCache {
        match &self.arch {
            Arch::Llama(m) => KvCache::new(m.num_layers()),
            Arch::DeepseekV3(m) => KvCache::new(m.num_layers()),
        }
    }

    pub fn params(&self) -> &Params {
        match &self.arch {
            Arch::Llama(m) => m.params(),
            Arch::DeepseekV3(m) => m.params(),
        }
    }

    /// The parameters an optimizer should update: the LoRA A/B tensors when an adapter is
    /// attached (the base weights are frozen), else every parameter.
    pub fn trainable_params(&self) -> &Params {
        match &self.arch {
            Arch::Llama(m) => match m.adapter() {
                Some(a) => a.params(),
                None => m.params(),
            },
            _ => self.params(),
        }
    }

    fn arch_name(&self) -> &'static str {
        match &self.arch {
            Arch::Llama(_) => "llama/qwen2",
            Arch::DeepseekV3(_) => "deepseek_v3",
        }
    }

    fn llama_mut(&mut self) -> Result<&mut llama::Llama> {
        let name = self.arch_name();
        match &mut self.arch {
            Arch::Llama(m) => Ok(m),
            _ => Err(ModelError::Invalid(format!(
                "LoRA is not supported for the {name} architecture (aha adapts dense llama/qwen2 models; \
                 load a .gguf file dense to adapt it)"
            ))),
        }
    }

    /// Attach fresh LoRA adapters (PEFT's init: A random from `seed`, B zero, so the model's
    /// outputs do not change); from now on only the adapters train.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        let mut cfg = cfg.clone();
        if cfg.base_model_name_or_path.is_none() {
            cfg.base_model_name_or_path = self.source_name();
        }
        self.llama_mut()?.add_adapter(&cfg, seed)
    }

    /// Attach the PEFT LoRA adapter saved in `dir` (`adapter_config.json` +
    /// `adapter_model.safetensors`).
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        self.llama_mut()?;
        let dtype = self
            .params()
            .iter()
            .next()
            .map_or(DType::F32, |(_, v)| v.dtype());
        let (cfg, tensors) = lora::read_adapter(dir, dtype, &self.device)?;
        let path = dir.join(lora::WEIGHTS_FILE);
        self.llama_mut()?.load_adapter(&cfg, tensors, &path)
    }

    /// Attach an adapter read by [`lora::read_adapter`] (`path`: where it came from, for
    /// errors), replacing any attached one. A failed attach leaves the model as it was.
    pub fn replace_adapter(
        &mut self,
        cfg: &LoraConfig,
        tensors: std::collections::HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<()> {
        self.llama_mut()?.replace_adapter(cfg, tensors, path)
    }

    /// Detach the LoRA adapter without merging it: the base model computes again. Returns
    /// whether one was attached.
    pub fn remove_adapter(&mut self) -> bool {
        match &mut self.arch {
            Arch::Llama(m) => m.remove_adapter(),
            _ => false,
        }
    }

    /// Overwrite every parameter in place with the tensor of the same name (converted to the
    /// parameter's dtype), e.g. from [`read_weights`]. All names and shapes are checked
    /// before anything is written, so an error leaves the model unchanged; tensors the model
    /// does not use are ignored. An attached adapter stays attached. `origin` names the
    /// tensors' source in errors.
    pub fn set_weights(
        &self,
        tensors: &std::collections::HashMap<String, Tensor>,
        origin: &Path,
    ) -> Result<()> {
        self.check_dense("updated in place")?;
        let mut plan = Vec::with_capacity(self.params().len());
        for (name, var) in self.params().iter() {
            let err = |message: String| ModelError::Tensor {
                path: origin.to_path_buf(),
                name: name.clone(),
                message,
            };
            let t = tensors
                .get(name)
                .ok_or_else(|| err("missing (every parameter of the model is needed)".into()))?;
            if t.dims() != var.dims() {
                return Err(err(format!(
                    "has shape {:?}, the model's parameter {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            if t.dtype() == DType::F8E4M3 {
                return Err(err(
                    "is block-FP8 (needs its scales); write the weights dequantized".into(),
                ));
            }
            plan.push((var, t.to_dtype(var.dtype())?));
        }
        for (var, t) in plan {
            var.set(&t)?;
        }
        Ok(())
    }

    /// The attached LoRA adapter, if any.
    pub fn adapter(&self) -> Option<&lora::Adapter> {
        match &self.arch {
            Arch::Llama(m) => m.adapter(),
            _ => None,
        }
    }

    /// Write the attached adapter in the PEFT format into `dir`.
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        self.adapter()
            .ok_or_else(|| ModelError::Invalid("the model has no LoRA adapter to save".into()))?
            .save(dir)
    }

    /// Fold the adapter into the base weights (W += alpha/r B A) and drop it: the model
    /// computes the same, with no adapter and every weight trainable again.
    pub fn merge_adapter(&mut self) -> Result<()> {
        match &mut self.arch {
            Arch::Llama(m) => m.merge_adapter(),
            _ => Ok(()),
        }
    }

    /// A copy to serve as a frozen reference: every trainable parameter copied; with an
    /// adapter, the frozen base weights are shared instead of copied.
    pub fn snapshot(&self) -> Result<Model> {
        self.check_dense("copied for training")?;
        let arch = match &self.arch {
            Arch::Llama(m) => Arch::Llama(Box::new(m.fork()?)),
            Arch::DeepseekV3(_) => {
                let mut tensors = std::collections::HashMap::new();
                for (name, var) in self.params().iter() {
                    tensors.insert(name.clone(), var.as_tensor().detach().copy()?);
                }
                let origin = self
                    .source
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("<copy>"));
                let mut ckpt = weights::Checkpoint::from_tensors(tensors, &origin);
                let m = Self::from_checkpoint(
                    self.config.clone(),
                    &mut ckpt,
                    &origin.join("config.json"),
                    &self.device,
                )?;
                m.arch
            }
        };
        Ok(Model {
            arch,
            config: self.config.clone(),
            source: self.source.clone(),
            device: self.device.clone(),
        })
    }

    /// Linear layers that hold GGUF blocks (a GGUF file loaded by [`Model::load`]): inference
    /// only, and not in [`Model::params`].
    pub fn quantized_linears(&self) -> usize {
        match &self.arch {
            Arch::Llama(m) => m.quantized_linears(),
            Arch::DeepseekV3(m) => m.quantized_linears(),
        }
    }

    /// An error when some weights are held quantized outside [`Model::params`].
    fn check_dense(&self, what: &str) -> Result<()> {
        match self.quantized_linears() {
            0 => Ok(()),
            n => Err(ModelError::Invalid(format!(
                "this model holds {n} linear layers quantized (a GGUF file) and cannot be \
                 {what}: load the GGUF file dense (Model::load_dense) to train, copy or save it"
            ))),
        }
    }

    fn source_name(&self) -> Option<String> {
        self.source.as_ref().map(|p| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        })
    }

    pub fn vocab_size(&self) -> usize {
        match &self.arch {
            Arch::Llama(m) => m.cfg.vocab_size,
            Arch::DeepseekV3(m) => m.cfg.vocab_size,
        }
    }

    /// The DeepSeek-V3 model inside, for its routing statistics, balancing and MTP decoding.
    pub fn as_deepseek_v3(&self) -> Option<&deepseek_v3::DeepseekV3> {
        match &self.arch {
            Arch::DeepseekV3(m) => Some(m),
            _ => None,
        }
    }

    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The directory the model was loaded from, if any.
    pub fn source_dir(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// EOS ids named by config.json (`eos_token_id`: an int or a list).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        match self.config.get("eos_token_id") {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Write config.json and model.safetensors so that transformers loads them; weights are
    /// stored in the config's dtype. Tokenizer files of the source directory are copied. With
    /// a LoRA adapter the weights are written merged (W + alpha/r B A); see
    /// [`Model::save_adapter`] for the adapter alone.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.check_dense("saved")?;
        std::fs::create_dir_all(dir).map_err(|e| ModelError::file(dir, e))?;
        let dtype = config::stored_dtype(&self.config)
            .as_deref()
            .and_then(weights::parse_dtype)
            .unwrap_or(DType::F32);
        let tensors = match &self.arch {
            Arch::Llama(m) if m.adapter().is_some() => m.merged_tensors()?,
            _ => self.params().tensors(),
        };
        weights::write_file(&dir.join("model.safetensors"), &tensors, dtype)?;
        // Weights are written dequantized, so a quantization_config (block FP8) no longer applies.
        let mut config = self.config.clone();
        if let Some(obj) = config.as_object_mut() {
            obj.remove("quantization_config");
        }
        let config_text = serde_json::to_string_pretty(&config)
            .map_err(|e| ModelError::Invalid(e.to_string()))?;
        write_atomic(&dir.join("config.json"), config_text.as_bytes())?;
        if let Some(src) = &self.source {
            for f in [
                "tokenizer.json",
                "tokenizer_config.json",
                "generation_config.json",
                "special_tokens_map.json",
            ] {
                let from = src.join(f);
                if from.is_file() && src != dir {
                    std::fs::copy(&from, dir.join(f)).map_err(|e| ModelError::file(&from, e))?;
                }
            }
        }
        Ok(())
    }
}

/// Every tensor of a model directory's safetensors files (`model.safetensors` or shards),
/// float tensors converted to `dtype`: the input of [`Model::set_weights`].
pub fn read_weights(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<std::collections::HashMap<String, Tensor>> {
    if !dir.is_dir() {
        return Err(ModelError::file(dir, "no such model directory"));
    }
    let mut out = std::collections::HashMap::new();
    for file in weights::shard_files(dir)? {
        out.extend(weights::read_file(&file, dtype, device)?);
    }
    Ok(out)
}

/// Write a file via a temp file and a rename, so a crash never leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::file(path, e))
}
