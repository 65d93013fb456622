//! Tokenizer and chat template from a GGUF file's `tokenizer.*` metadata (llama.cpp's
//! format): the `gpt2` byte-level BPE with the pre-tokenizer named by `tokenizer.ggml.pre`,
//! the `llama` SentencePiece vocabulary (scores, byte tokens), special (control) and
//! user-defined tokens, bos/eos/add_bos, and `tokenizer.chat_template`.
//!
//! Only the metadata is read (tensor data may be absent, as in the first part of a split
//! download), by aha-gguf's bounded reader.

use std::io::Read;
use std::path::{Path, PathBuf};

use aha_gguf::{GgufFile, SpecialIds, Value as GValue};
use serde_json::{json, Value};

use crate::chat_template::ChatTemplate;
use crate::config::SpecialTokens;
use crate::error::{Result, TextError};
use crate::spm::{Spm, SpmParts};
use crate::tokenizer::Tokenizer;

pub use aha_gguf::is_gguf_path;

/// The `tokenizer.*` metadata of a GGUF file.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    pub architecture: Option<String>,
    /// `tokenizer.ggml.model`, e.g. `gpt2`, `llama`.
    pub model: String,
    /// `tokenizer.ggml.pre`, e.g. `llama-bpe`, `qwen2`, `smollm`.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// SentencePiece scores (`llama`); empty for BPE.
    pub scores: Vec<f32>,
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    /// BOS and the ids that end generation (aha-gguf's one reading of them).
    pub special: SpecialIds,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece; llama.cpp's default is true).
    pub add_space_prefix: Option<bool>,
    pub chat_template: Option<String>,
}

impl GgufVocab {
    /// The `tokenizer.*` metadata that writes this vocabulary into a GGUF file (a byte-level
    /// BPE, as `aha quantize` writes it).
    pub fn metadata(&self) -> Vec<(String, GValue)> {
        let strings = |v: &[String]| GValue::Array(v.iter().cloned().map(GValue::String).collect());
        let mut meta = vec![
            ("tokenizer.ggml.model".into(), GValue::String("gpt2".into())),
            (
                "tokenizer.ggml.pre".into(),
                GValue::String(self.pre.clone().unwrap_or_default()),
            ),
            ("tokenizer.ggml.tokens".into(), strings(&self.tokens)),
            (
                "tokenizer.ggml.token_type".into(),
                GValue::Array(self.token_types.iter().map(|&t| GValue::I32(t)).collect()),
            ),
            ("tokenizer.ggml.merges".into(), strings(&self.merges)),
            (
                "tokenizer.ggml.add_bos_token".into(),
                GValue::Bool(self.add_bos.unwrap_or(false)),
            ),
        ];
        for (k, v) in [
            ("bos", self.special.bos),
            ("eos", self.special.eos.first().copied()),
            ("unknown", self.unk),
            ("padding", self.pad),
        ] {
            if let Some(id) = v {
                meta.push((format!("tokenizer.ggml.{k}_token_id"), GValue::U32(id)));
            }
        }
        if let Some(t) = &self.chat_template {
            meta.push(("tokenizer.chat_template".into(), GValue::String(t.clone())));
        }
        meta
    }
}

fn bad(path: &Path, message: impl ToString) -> TextError {
    TextError::InvalidConfig {
        path: path.to_path_buf(),
        message: format!("invalid GGUF: {}", message.to_string()),
    }
}

fn strings(key: &str, v: &GValue) -> std::result::Result<Vec<String>, String> {
    match v {
        GValue::Array(a) => a
            .iter()
            .map(|e| {
                e.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{key}: expected strings"))
            })
            .collect(),
        _ => Err(format!("{key}: expected an array")),
    }
}

impl GgufVocab {
    /// Read the tokenizer metadata of a GGUF file.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_gguf(&GgufFile::open_header(path)?)
    }

    /// Parse from a reader at the start of a GGUF file of `len` bytes.
    pub fn parse<R: Read>(mut r: R, len: u64) -> Result<Self> {
        Self::from_gguf(&GgufFile::parse(&mut r, len, Path::new("<gguf>"), false)?)
    }

    /// The tokenizer metadata of a parsed header.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        Self::from_gguf_inner(g).map_err(|m| bad(&g.path, m))
    }

    fn from_gguf_inner(g: &GgufFile) -> std::result::Result<Self, String> {
        let str_of = |k: &str| g.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let bool_of = |k: &str| match g.get(k) {
            Some(GValue::Bool(b)) => Some(*b),
            _ => None,
        };
        let id_of = |k: &str| {
            g.get(k)
                .and_then(|v| v.as_u64())
                .and_then(|v| u32::try_from(v).ok())
        };
        let mut v = GgufVocab {
            architecture: str_of("general.architecture"),
            pre: str_of("tokenizer.ggml.pre"),
            unk: id_of("tokenizer.ggml.unknown_token_id"),
            pad: id_of("tokenizer.ggml.padding_token_id"),
            add_bos: bool_of("tokenizer.ggml.add_bos_token"),
            add_eos: bool_of("tokenizer.ggml.add_eos_token"),
            add_space_prefix: bool_of("tokenizer.ggml.add_space_prefix"),
            chat_template: str_of("tokenizer.chat_template"),
            special: g.special_ids(),
            ..Default::default()
        };
        v.model = match g.get("tokenizer.ggml.model") {
            None => String::new(),
            Some(GValue::String(s)) => s.clone(),
            Some(_) => return Err("tokenizer.ggml.model is not a string".into()),
        };
        v.tokens = match g.get("tokenizer.ggml.tokens") {
            Some(t) => strings("tokenizer.ggml.tokens", t)?,
            None => Vec::new(),
        };
        if v.tokens.is_empty() {
            return Err("no tokenizer.ggml.tokens".into());
        }
        if let Some(m) = g.get("tokenizer.ggml.merges") {
            v.merges = strings("tokenizer.ggml.merges", m)?;
        }
        v.token_types = match g.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(GValue::Array(a)) => a
                .iter()
                .map(|e| e.as_i64().and_then(|i| i32::try_from(i).ok()).unwrap_or(1))
                .collect(),
            Some(_) => return Err("tokenizer.ggml.token_type is not an array".into()),
        };
        v.scores = match g.get("tokenizer.ggml.scores") {
            None => Vec::new(),
            Some(GValue::Array(a)) => a
                .iter()
                .map(|e| e.as_f64().map(|x| x as f32))
                .collect::<Option<_>>()
                .ok_or("tokenizer.ggml.scores: expected floats")?,
            Some(_) => return Err("tokenizer.ggml.scores is not an array".into()),
        };
        for (what, n) in [
            ("token types", v.token_types.len()),
            ("scores", v.scores.len()),
        ] {
            if n != 0 && n != v.tokens.len() {
                return Err(format!("{n} {what} for {} tokens", v.tokens.len()));
            }
        }
        for (name, id) in [("unk", v.unk), ("pad", v.pad)] {
            if id.is_some_and(|i| i as usize >= v.tokens.len()) {
                return Err(format!("{name} token id {id:?} is outside the vocabulary"));
            }
        }
        Ok(v)
    }

    fn token(&self, id: Option<u32>) -> Option<String> {
        id.and_then(|i| self.tokens.get(i as usize).cloned())
    }

    pub fn special_tokens(&self) -> SpecialTokens {
        SpecialTokens {
            bos: self.token(self.special.bos),
            eos: self.token(self.special.eos.first().copied()),
            pad: self.token(self.pad),
            unk: self.token(self.unk),
        }
    }

    /// The HF pre-tokenizer matching llama.cpp's `tokenizer.ggml.pre`.
    fn pre_tokenizer(&self) -> std::result::Result<(Value, Value), String> {
        let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let seq = |v: Vec<Value>| json!({"type": "Sequence", "pretokenizers": v});
        let none = json!(null);
        let nfc = json!({"type": "NFC"});
        const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        const DSV3: &str = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
        let pre = self.pre.as_deref().unwrap_or("default");
        Ok(match pre {
            "qwen2" | "deepseek-r1-qwen" => (nfc, seq(vec![split(QWEN2), byte_level(false)])),
            "llama3" | "llama-bpe" | "smaug-bpe" => (none, seq(vec![split(LLAMA3), byte_level(false)])),
            "smollm" | "starcoder" => (none, seq(vec![json!({"type": "Digits", "individual_digits": true}), byte_level(true)])),
            "deepseek-v3" => (
                none,
                seq(vec![split(r"\p{N}{1,3}"), split("[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+"), split(DSV3), byte_level(false)]),
            ),
            "default" | "gpt-2" | "gpt2" => (none, byte_level(true)),
            other => return Err(format!("pre-tokenizer {other:?} is not supported (aha knows llama-bpe, qwen2, deepseek-r1-qwen, deepseek-v3, smollm, gpt-2)")),
        })
    }

    /// An HF `tokenizer.json` equivalent to this vocabulary.
    pub fn tokenizer_json(&self) -> std::result::Result<Value, String> {
        if self.model != "gpt2" {
            return Err(format!(
                "tokenizer model {:?} is not supported (aha reads the gpt2 byte-level BPE)",
                self.model
            ));
        }
        let (normalizer, pre) = self.pre_tokenizer()?;
        let mut vocab = serde_json::Map::with_capacity(self.tokens.len());
        let mut added = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            vocab.insert(t.clone(), json!(i));
            let ty = self.token_types.get(i).copied().unwrap_or(1);
            if ty == 3 || ty == 4 {
                added.push(json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": false, "special": ty == 3}));
            }
        }
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre,
            "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": self.merges},
        }))
    }

    /// The side files (`tokenizer_config.json`, `config.json`) that carry bos/eos and the template.
    fn side_files(&self) -> (Value, Value) {
        let s = self.special_tokens();
        let eos = &self.special.eos;
        (
            json!({"bos_token": s.bos, "eos_token": s.eos, "pad_token": s.pad, "unk_token": s.unk,
                "add_bos_token": self.add_bos.unwrap_or(false), "add_eos_token": self.add_eos.unwrap_or(false),
                "chat_template": self.chat_template}),
            json!({"eos_token_id": eos}),
        )
    }

    /// Write `tokenizer.json`, `tokenizer_config.json` and `config.json` (eos ids) into `dir`,
    /// so an HF-style directory carries the same tokenizer.
    pub fn write_hf_files(&self, dir: &Path) -> Result<()> {
        let tok = self.tokenizer_json().map_err(|m| bad(dir, m))?;
        let (cfg, model_cfg) = self.side_files();
        for (name, v) in [
            ("tokenizer.json", tok),
            ("tokenizer_config.json", cfg),
            ("config.json", model_cfg),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, serde_json::to_vec(&v).expect("json"))
                .map_err(|source| TextError::Io { path: p, source })?;
        }
        Ok(())
    }
}

/// The tokenizer of a GGUF file (bos/eos/add_bos from its metadata; generation stops on
/// eos and eot).
pub fn tokenizer(path: &Path) -> Result<Tokenizer> {
    let vocab = GgufVocab::read(path)?;
    tokenizer_from_vocab(&vocab, path)
}

/// Build a [`Tokenizer`] from parsed metadata; `path` names the source in errors.
pub fn tokenizer_from_vocab(vocab: &GgufVocab, path: &Path) -> Result<Tokenizer> {
    match vocab.model.as_str() {
        "gpt2" => bpe_tokenizer(vocab, path),
        "llama" => {
            let spm = Spm::new(SpmParts {
                tokens: &vocab.tokens,
                scores: &vocab.scores,
                types: &vocab.token_types,
                bos: vocab.special.bos,
                eos: vocab.special.eos.first().copied(),
                unk: vocab.unk,
                add_bos: vocab.add_bos,
                add_eos: vocab.add_eos,
                add_space_prefix: vocab.add_space_prefix,
            })
            .map_err(|m| bad(path, m))?;
            Ok(Tokenizer::from_spm(
                spm,
                vocab.special_tokens(),
                vocab.special.eos.clone(),
            ))
        }
        other => Err(TextError::InvalidConfig {
            path: path.to_path_buf(),
            message: format!(
                "GGUF tokenizer model {other:?} is not supported (aha reads gpt2 and llama)"
            ),
        }),
    }
}

/// The byte-level BPE through an equivalent HF `tokenizer.json`.
fn bpe_tokenizer(vocab: &GgufVocab, path: &Path) -> Result<Tokenizer> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "aha-gguf-tok-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|source| TextError::Io {
        path: dir.clone(),
        source,
    })?;
    let result = vocab
        .write_hf_files(&dir)
        .and_then(|_| Tokenizer::from_dir(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(|e| match e {
        TextError::InvalidConfig { message, .. } | TextError::TokenizerLoad { message, .. } => {
            bad(path, message)
        }
        other => other,
    })
}

/// The chat template of a GGUF file (`tokenizer.chat_template`).
pub fn chat_template(path: &Path) -> Result<ChatTemplate> {
    let vocab = GgufVocab::read(path)?;
    chat_template_from_vocab(&vocab, path)
}

pub fn chat_template_from_vocab(vocab: &GgufVocab, path: &Path) -> Result<ChatTemplate> {
    let source = vocab
        .chat_template
        .clone()
        .ok_or_else(|| TextError::MissingChatTemplate {
            path: path.to_path_buf(),
        })?;
    ChatTemplate::new(source, vocab.special_tokens())
}

/// llama.cpp's name (`tokenizer.ggml.pre`) for the pre-tokenizer of an HF `tokenizer.json`.
pub fn pre_tokenizer_name(tokenizer_json: &Value) -> Option<&'static str> {
    let pre = &tokenizer_json["pre_tokenizer"];
    let text = pre.to_string();
    if pre["type"] == "ByteLevel" && pre["use_regex"] != false {
        return Some("gpt-2");
    }
    if text.contains("Digits") && text.contains("ByteLevel") {
        return Some("smollm");
    }
    if text.contains(r"\\p{N}{1,3}") && text.contains(r"\\p{L}\\p{P}\\p{S}") {
        return Some("deepseek-v3");
    }
    if text.contains(r"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}") {
        return Some("llama-bpe");
    }
    if text.contains(r"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|") {
        return Some("qwen2");
    }
    // aha's own tiny BPE (aha-train's bpe.rs): whole numbers split off, then GPT-2's
    // byte-level regex, which already keeps ` ?\p{N}+` together: the same pieces on ASCII.
    if let Some([split, byte_level]) = pre["pretokenizers"].as_array().map(Vec::as_slice) {
        if split["type"] == "Split"
            && split["pattern"]["Regex"] == " ?\\d+"
            && byte_level["type"] == "ByteLevel"
            && byte_level["use_regex"] != false
        {
            return Some("gpt-2");
        }
    }
    None
}

impl GgufVocab {
    /// The vocabulary of an HF model directory (byte-level BPE `tokenizer.json`,
    /// `tokenizer_config.json`), padded to `vocab_size` as llama.cpp's converter does.
    pub fn from_hf_dir(dir: &Path, vocab_size: usize) -> Result<Self> {
        let p = dir.join("tokenizer.json");
        let bytes = std::fs::read(&p).map_err(|source| TextError::Io {
            path: p.clone(),
            source,
        })?;
        let tj: Value = serde_json::from_slice(&bytes).map_err(|source| TextError::Json {
            path: p.clone(),
            source,
        })?;
        let model = &tj["model"];
        if model["type"] != "BPE" {
            return Err(TextError::InvalidConfig {
                path: p,
                message: "only byte-level BPE tokenizers can be written to GGUF".into(),
            });
        }
        let pre = pre_tokenizer_name(&tj).ok_or_else(|| TextError::InvalidConfig {
            path: p.clone(),
            message: "unrecognised pre-tokenizer: no llama.cpp equivalent known".into(),
        })?;
        let mut tokens: Vec<Option<String>> = Vec::new();
        let mut types: Vec<i32> = Vec::new();
        let mut put = |id: usize, t: &str, ty: i32| {
            if id >= tokens.len() {
                tokens.resize(id + 1, None);
                types.resize(id + 1, 1);
            }
            tokens[id] = Some(t.to_string());
            types[id] = ty;
        };
        if let Some(v) = model["vocab"].as_object() {
            for (t, id) in v {
                put(id.as_u64().unwrap_or(0) as usize, t, 1);
            }
        }
        for a in tj["added_tokens"].as_array().into_iter().flatten() {
            let ty = if a["special"] == true { 3 } else { 4 };
            put(
                a["id"].as_u64().unwrap_or(0) as usize,
                a["content"].as_str().unwrap_or(""),
                ty,
            );
        }
        let n = vocab_size.max(tokens.len());
        let mut out_tokens = Vec::with_capacity(n);
        let mut out_types = Vec::with_capacity(n);
        for i in 0..n {
            match tokens.get(i).cloned().flatten() {
                Some(t) => {
                    out_tokens.push(t);
                    out_types.push(types.get(i).copied().unwrap_or(1));
                }
                None => {
                    out_tokens.push(format!("[PAD{i}]"));
                    out_types.push(5);
                }
            }
        }
        let merges: Vec<String> = model["merges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| match m {
                Value::String(s) => Some(s.clone()),
                Value::Array(p) => {
                    Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))
                }
                _ => None,
            })
            .collect();
        let tok = Tokenizer::from_dir(dir)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = std::fs::read(&cfg_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let template = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
            Ok(s) => Some(s),
            Err(_) => cfg["chat_template"].as_str().map(str::to_string),
        };
        let id_of = |t: Option<&str>| t.and_then(|t| tok.token_to_id(t));
        Ok(Self {
            architecture: None,
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens: out_tokens,
            token_types: out_types,
            merges,
            special: SpecialIds {
                bos: tok.bos_token_id(),
                eos: tok
                    .eos_token_id()
                    .or_else(|| tok.eos_token_ids().first().copied())
                    .into_iter()
                    .collect(),
            },
            scores: Vec::new(),
            add_space_prefix: None,
            unk: id_of(tok.special_tokens().unk.as_deref()),
            pad: tok.pad_token_id(),
            add_bos: Some(cfg["add_bos_token"] == true),
            add_eos: Some(cfg["add_eos_token"] == true),
            chat_template: template,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{pre_tokenizer_name, GgufVocab, Spm, SpmParts};
    use serde_json::json;

    /// All three of llama.cpp's modes on the fixture, including special-token text left as
    /// text (not reachable through `Tokenizer::encode`).
    #[test]
    fn spm_matches_llama_cpp_with_and_without_special_parsing() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_spm");
        let r: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("llama_cpp_encodings.json")).unwrap(),
        )
        .unwrap();
        let mut differ = 0;
        for (file, encs) in r["files"].as_object().unwrap() {
            let v = GgufVocab::read(&dir.join(file)).unwrap();
            let spm = Spm::new(SpmParts {
                tokens: &v.tokens,
                scores: &v.scores,
                types: &v.token_types,
                bos: v.special.bos,
                eos: v.special.eos.first().copied(),
                unk: v.unk,
                add_bos: v.add_bos,
                add_eos: v.add_eos,
                add_space_prefix: v.add_space_prefix,
            })
            .unwrap();
            for (t, e) in r["texts"]
                .as_array()
                .unwrap()
                .iter()
                .zip(encs.as_array().unwrap())
            {
                let t = t.as_str().unwrap();
                let want = |k: &str| -> Vec<u32> { serde_json::from_value(e[k].clone()).unwrap() };
                assert_eq!(
                    spm.encode(t, false, false).unwrap(),
                    want("plain"),
                    "{file} {t:?}"
                );
                assert_eq!(
                    spm.encode(t, false, true).unwrap(),
                    want("special"),
                    "{file} {t:?}"
                );
                assert_eq!(
                    spm.encode(t, true, true).unwrap(),
                    want("add_special"),
                    "{file} {t:?}"
                );
                differ += (want("plain") != want("special")) as usize;
            }
        }
        // The texts exercise special-token parsing.
        assert!(differ >= 4, "{differ}");
    }

    #[test]
    fn pre_tokenizer_names() {
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true});
        let aha_tiny = json!({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": " ?\\d+"}, "behavior": "Isolated", "invert": false},
            byte_level.clone(),
        ]}});
        assert_eq!(pre_tokenizer_name(&aha_tiny), Some("gpt-2"));
        assert_eq!(
            pre_tokenizer_name(&json!({"pre_tokenizer": byte_level})),
            Some("gpt-2")
        );
        let other_split = json!({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "use_regex": true},
        ]}});
        assert_eq!(pre_tokenizer_name(&other_split), None);
    }
}
