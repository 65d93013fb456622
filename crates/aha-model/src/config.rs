//! `config.json` as Hugging Face writes it, in both the Hub style (`rope_theta`,
//! `rope_scaling`, `torch_dtype`) and the transformers-5 style (`rope_parameters`, `dtype`).

use crate::error::{ModelError, Result};
use serde::Deserialize;
use std::path::Path;

/// The rope frequency schedule: base plus an optional long-context scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Llama 3.1: low frequencies slowed by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// YaRN (DeepSeek-V3): frequency interpolation by band plus an attention scale.
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        /// 0 when absent (as HF, which tests these two for truthiness).
        mscale: f64,
        mscale_all_dim: f64,
        /// An explicit cos/sin factor, overriding the one derived from mscale.
        attention_factor: Option<f64>,
        /// Round the correction range to whole dimensions (HF default true).
        truncate: bool,
    },
}

/// The raw `rope_scaling` / `rope_parameters` object; field names as HF spells them.
#[derive(Debug, Clone, Deserialize, Default)]
struct RawRope {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
    beta_fast: Option<f64>,
    beta_slow: Option<f64>,
    mscale: Option<f64>,
    mscale_all_dim: Option<f64>,
    attention_factor: Option<f64>,
    truncate: Option<bool>,
}

/// Parse rope settings from either config style. `default_theta` applies when neither names one.
pub(crate) fn parse_rope(
    raw: &serde_json::Value,
    default_theta: f64,
) -> std::result::Result<RopeConfig, String> {
    let get = |key: &str| -> std::result::Result<Option<RawRope>, String> {
        match raw.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| format!("{key}: {e}")),
        }
    };
    let params = get("rope_parameters")?;
    let scaling = get("rope_scaling")?;
    let top_theta = raw.get("rope_theta").and_then(|v| v.as_f64());
    let theta = params
        .as_ref()
        .and_then(|p| p.rope_theta)
        .or(top_theta)
        .unwrap_or(default_theta);
    let Some(r) = params.or(scaling) else {
        return Ok(RopeConfig {
            theta,
            scaling: RopeScaling::None,
        });
    };
    let kind = r
        .rope_type
        .clone()
        .or(r.kind.clone())
        .unwrap_or_else(|| "default".into());
    let need =
        |v: Option<f64>, name: &str| v.ok_or_else(|| format!("rope scaling {kind:?} needs {name}"));
    let scaling = match kind.as_str() {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: need(r.factor, "factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: need(r.factor, "factor")?,
            low_freq_factor: need(r.low_freq_factor, "low_freq_factor")?,
            high_freq_factor: need(r.high_freq_factor, "high_freq_factor")?,
            original_max_position_embeddings: r
                .original_max_position_embeddings
                .ok_or("rope scaling llama3 needs original_max_position_embeddings")?,
        },
        "yarn" => RopeScaling::Yarn {
            factor: need(r.factor, "factor")?,
            original_max_position_embeddings: r
                .original_max_position_embeddings
                .ok_or("rope scaling yarn needs original_max_position_embeddings")?,
            beta_fast: r.beta_fast.unwrap_or(32.0),
            beta_slow: r.beta_slow.unwrap_or(1.0),
            mscale: r.mscale.unwrap_or(0.0),
            mscale_all_dim: r.mscale_all_dim.unwrap_or(0.0),
            attention_factor: r.attention_factor,
            truncate: r.truncate.unwrap_or(true),
        },
        other => return Err(format!("unsupported rope scaling type {other:?}")),
    };
    Ok(RopeConfig { theta, scaling })
}

/// Fields shared by every architecture's `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Header {
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
}

/// Which architecture a config names, from `model_type` or else `architectures`.
pub fn architecture(raw: &serde_json::Value) -> Option<String> {
    let h: Header = serde_json::from_value(raw.clone()).ok()?;
    if let Some(t) = h.model_type {
        return Some(t);
    }
    let arch = h.architectures.first()?;
    let t = match arch.as_str() {
        "LlamaForCausalLM" => "llama",
        "Qwen2ForCausalLM" => "qwen2",
        "DeepseekV3ForCausalLM" => "deepseek_v3",
        other => other,
    };
    Some(t.to_string())
}

/// The stored weight dtype named by `torch_dtype` (Hub) or `dtype` (transformers 5).
pub fn stored_dtype(raw: &serde_json::Value) -> Option<String> {
    raw.get("dtype")
        .or_else(|| raw.get("torch_dtype"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// Deserialize an architecture's config, naming the offending field in errors.
pub(crate) fn parse_fields<T: serde::de::DeserializeOwned>(
    raw: &serde_json::Value,
    path: &Path,
) -> Result<T> {
    serde_path_to_error::deserialize(raw.clone()).map_err(|e| ModelError::config(path, e))
}

/// Read and parse `config.json`, naming the file in every error.
pub fn read_config(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::file(path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::config(path, e))?;
    if !value.is_object() {
        return Err(ModelError::config(path, "expected a JSON object"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hub_and_v5_styles_agree() {
        let hub = json!({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}});
        let v5 = json!({"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}});
        let a = parse_rope(&hub, 10000.0).unwrap();
        assert_eq!(a, parse_rope(&v5, 10000.0).unwrap());
        assert_eq!(a.theta, 500000.0);
        assert!(matches!(a.scaling, RopeScaling::Llama3 { .. }));
    }

    #[test]
    fn default_rope_and_bad_rope() {
        let r = parse_rope(&json!({"rope_theta": 1e6}), 10000.0).unwrap();
        assert_eq!(
            r,
            RopeConfig {
                theta: 1e6,
                scaling: RopeScaling::None
            }
        );
        let v5 = json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}});
        assert_eq!(parse_rope(&v5, 1.0).unwrap(), r);
        assert!(parse_rope(&json!({"rope_scaling": {"type": "ntk-by-parts"}}), 1.0).is_err());
        assert!(parse_rope(&json!({"rope_scaling": {"rope_type": "llama3"}}), 1.0).is_err());
    }
}
