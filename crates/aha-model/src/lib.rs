//! R1-family model architectures on candle: `config.json` and safetensors loading,
//! forward passes that serve both inference (fused ops, KV cache) and training
//! (differentiable ops, full logits), and saving back in the Hugging Face format.

pub mod config;
pub mod deepseek_v3;
mod error;
pub mod gguf;
pub mod kv_cache;
pub mod llama;
pub mod ops;
pub mod quantized;
pub mod rope;
pub mod weights;

pub use candle_core::{DType, Device, Tensor};
pub use error::{ModelError, Result};
pub use kv_cache::KvCache;
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
    /// [b, past + t] 1 for real tokens, 0 for padding, over the cached and new positions.
    /// None: every position is real.
    pub key_mask: Option<&'a Tensor>,
    pub mode: Mode,
    pub logits: LogitsFor,
}

/// Additive attention bias [b, 1, 1, t, past + t]: causal, and padding keys masked.
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
        let (mb, mt) = mask.dims2()?;
        if (mb, mt) != (b, total) {
            candle_core::bail!("key mask is [{mb}, {mt}], expected [{b}, {total}]");
        }
        allowed = allowed.broadcast_mul(&mask.to_dtype(DType::F32)?.reshape((b, 1, total))?)?;
    } else {
        allowed = allowed.broadcast_as((b, t, total))?.contiguous()?;
    }
    ((allowed - 1.0)? * -ops::MASK_VALUE)?.reshape((b, 1, 1, t, total))
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype; weights are converted on load. f32 on CPU.
    pub dtype: DType,
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

enum Arch {
    Llama(llama::Llama),
    DeepseekV3(Box<deepseek_v3::DeepseekV3>),
    Quantized(Box<quantized::QuantizedLlama>),
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
    /// Load a Hugging Face model directory (config.json + safetensors).
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        if gguf::is_gguf_path(dir) {
            let g = gguf::GgufFile::open(dir)?;
            let m = quantized::QuantizedLlama::load(&g, &opts.device)?;
            let config = m.config_json(&g);
            return Ok(Self {
                arch: Arch::Quantized(Box::new(m)),
                config,
                source: Some(dir.to_path_buf()),
                device: opts.device.clone(),
            });
        }
        let config_path = dir.join("config.json");
        let config = config::read_config(&config_path)?;
        let mut ckpt = weights::Checkpoint::read_dir(dir, opts.dtype, &opts.device)?;
        let mut model = Self::from_checkpoint(config, &mut ckpt, &config_path, &opts.device)?;
        model.source = Some(dir.to_path_buf());
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
                Arch::Llama(llama::Llama::load(cfg, ckpt, device)?)
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
            Arch::Quantized(m) => m.forward(input, cache),
        }
    }

    pub fn new_cache(&self) -> KvCache {
        match &self.arch {
            Arch::Llama(m) => KvCache::new(m.num_layers()),
            Arch::DeepseekV3(m) => KvCache::new(m.num_layers()),
            Arch::Quantized(m) => KvCache::new(m.num_layers()),
        }
    }

    pub fn params(&self) -> &Params {
        match &self.arch {
            Arch::Llama(m) => m.params(),
            Arch::DeepseekV3(m) => m.params(),
            Arch::Quantized(m) => m.params(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.arch {
            Arch::Llama(m) => m.cfg.vocab_size,
            Arch::DeepseekV3(m) => m.cfg.vocab_size,
            Arch::Quantized(m) => m.cfg.vocab_size,
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
    /// stored in the config's dtype. Tokenizer files of the source directory are copied.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::file(dir, e))?;
        let dtype = config::stored_dtype(&self.config)
            .as_deref()
            .and_then(weights::parse_dtype)
            .unwrap_or(DType::F32);
        weights::write_file(
            &dir.join("model.safetensors"),
            &self.params().tensors(),
            dtype,
        )?;
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

/// Write a file via a temp file and a rename, so a crash never leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::file(path, e))
}
