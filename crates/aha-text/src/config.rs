//! Reading the HF-style JSON side files of a model directory.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Result, TextError};

/// Read and parse a JSON file. A missing file is `Ok(None)` because most
/// side files (generation_config.json, ...) are optional.
pub(crate) fn read_optional_json(path: &Path) -> Result<Option<Value>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TextError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| TextError::Json {
            path: path.to_path_buf(),
            source,
        })
}

/// Special token strings as declared in `tokenizer_config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub unk: Option<String>,
}

/// The parts of `tokenizer_config.json` this crate uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenizerConfig {
    pub special: SpecialTokens,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    /// Raw `chat_template` value (string or list of named templates).
    pub chat_template: Option<Value>,
}

impl TokenizerConfig {
    pub(crate) fn load(dir: &Path) -> Result<(PathBuf, Option<Self>)> {
        let path = dir.join("tokenizer_config.json");
        let Some(v) = read_optional_json(&path)? else {
            return Ok((path, None));
        };
        let Value::Object(map) = &v else {
            return Err(TextError::InvalidConfig {
                path,
                message: "expected a JSON object at the top level".into(),
            });
        };
        let token = |key: &str| -> Result<Option<String>> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                // Serialized `AddedToken`: {"content": "...", "lstrip": ...}
                Some(Value::Object(o)) => match o.get("content") {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    _ => Err(TextError::InvalidConfig {
                        path: path.clone(),
                        message: format!("`{key}` is an object without a string `content`"),
                    }),
                },
                Some(other) => Err(TextError::InvalidConfig {
                    path: path.clone(),
                    message: format!("`{key}` must be a string or an object, got {other}"),
                }),
            }
        };
        let flag = |key: &str| map.get(key).and_then(Value::as_bool);
        let cfg = TokenizerConfig {
            special: SpecialTokens {
                bos: token("bos_token")?,
                eos: token("eos_token")?,
                pad: token("pad_token")?,
                unk: token("unk_token")?,
            },
            add_bos_token: flag("add_bos_token"),
            add_eos_token: flag("add_eos_token"),
            chat_template: map.get("chat_template").filter(|v| !v.is_null()).cloned(),
        };
        Ok((path, Some(cfg)))
    }
}

/// `eos_token_id` from generation_config.json / config.json: an int, a list
/// of ints, or null/absent.
pub(crate) fn eos_ids_from_file(path: &Path) -> Result<Vec<u32>> {
    let Some(v) = read_optional_json(path)? else {
        return Ok(Vec::new());
    };
    let bad = |message: String| TextError::InvalidConfig {
        path: path.to_path_buf(),
        message,
    };
    let as_id = |x: &Value| -> Result<u32> {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(format!("`eos_token_id` entry {x} is not a token id")))
    };
    match v.get("eos_token_id") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(as_id).collect(),
        Some(x) => Ok(vec![as_id(x)?]),
    }
}
