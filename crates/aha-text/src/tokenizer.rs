//! Thin wrapper over the `tokenizers` crate (or llama.cpp's SentencePiece for GGUF
//! `llama` vocabularies) plus the special-token metadata that HF keeps in side files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{eos_ids_from_file, SpecialTokens, TokenizerConfig};
use crate::decode::IncrementalDecoder;
use crate::error::{Result, TextError};
use crate::spm::Spm;

#[derive(Clone)]
enum Backend {
    Hf(Arc<tokenizers::Tokenizer>),
    Spm(Arc<Spm>),
}

/// A loaded tokenizer. Cheap to clone (the vocabulary is shared).
#[derive(Clone)]
pub struct Tokenizer {
    inner: Backend,
    special: SpecialTokens,
    bos_id: Option<u32>,
    pad_id: Option<u32>,
    eos_ids: Vec<u32>,
    force_bos: bool,
    force_eos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

fn load_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let bytes = std::fs::read(path).map_err(|source| TextError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TextError::TokenizerLoad {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl Tokenizer {
    /// Load `tokenizer.json` plus the optional `tokenizer_config.json`,
    /// `generation_config.json` and `config.json` from a model directory.
    ///
    /// End-of-sequence ids are the union of `eos_token_id` in
    /// generation_config.json, config.json and the `eos_token` of
    /// tokenizer_config.json, in that order: generation must stop on any of
    /// them (chat models often list an end-of-turn token there too).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let inner = load_tokenizer_json(&dir.join("tokenizer.json"))?;
        let (cfg_path, cfg) = TokenizerConfig::load(dir)?;
        let cfg = cfg.unwrap_or_default();
        let mut tok = Self::build(inner, cfg.special, &cfg_path)?;
        // HF's Llama-family tokenizers rebuild the post-processor from these
        // flags; honour an explicit `true` if tokenizer.json does not do it.
        tok.force_bos = cfg.add_bos_token == Some(true) && tok.bos_id.is_some();
        tok.force_eos = cfg.add_eos_token == Some(true) && tok.eos_token_id().is_some();

        let mut eos = eos_ids_from_file(&dir.join("generation_config.json"))?;
        eos.extend(eos_ids_from_file(&dir.join("config.json"))?);
        eos.extend(tok.eos_ids.iter().copied());
        let mut seen = std::collections::HashSet::new();
        eos.retain(|id| seen.insert(*id));
        tok.eos_ids = eos;
        Ok(tok)
    }

    /// Load a bare `tokenizer.json` with no side files (no special tokens
    /// known unless set with [`Tokenizer::with_special_tokens`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = load_tokenizer_json(path)?;
        Self::build(inner, SpecialTokens::default(), path)
    }

    /// Replace the special token strings (ids are looked up in the vocab).
    pub fn with_special_tokens(self, special: SpecialTokens) -> Result<Self> {
        Self::build(self.inner, special, Path::new("<special tokens>"))
    }

    /// A GGUF SentencePiece vocabulary; `eos_ids` end generation.
    pub(crate) fn from_spm(spm: Spm, special: SpecialTokens, eos_ids: Vec<u32>) -> Self {
        let (bos_id, pad_id) = (spm.bos, None);
        let (force_bos, force_eos) = (false, false);
        Self {
            inner: Backend::Spm(Arc::new(spm)),
            special,
            bos_id,
            pad_id,
            eos_ids,
            force_bos,
            force_eos,
        }
    }

    fn build(inner: impl Into<Backend>, special: SpecialTokens, cfg_path: &Path) -> Result<Self> {
        let inner = inner.into();
        let lookup = |name: &str, tok: &Option<String>| -> Result<Option<u32>> {
            match tok {
                None => Ok(None),
                Some(t) => inner
                    .token_to_id(t)
                    .map(Some)
                    .ok_or_else(|| TextError::InvalidConfig {
                        path: PathBuf::from(cfg_path),
                        message: format!("{name} {t:?} is not in the tokenizer vocabulary"),
                    }),
            }
        };
        let bos_id = lookup("bos_token", &special.bos)?;
        let pad_id = lookup("pad_token", &special.pad)?;
        let eos_ids = lookup("eos_token", &special.eos)?.into_iter().collect();
        Ok(Self {
            inner,
            special,
            bos_id,
            pad_id,
            eos_ids,
            force_bos: false,
            force_eos: false,
        })
    }

    /// Encode text to ids. With `add_special_tokens` the tokenizer's
    /// post-processor runs (e.g. adds BOS where the model expects it); a
    /// rendered chat prompt already contains BOS, so encode it without.
    ///
    /// SentencePiece (GGUF `llama`) encodes as llama.cpp's `tokenize(text, add_special,
    /// parse_special = true)`: special-token text in a rendered prompt becomes those tokens.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let hf = match &self.inner {
            Backend::Hf(hf) => hf,
            Backend::Spm(spm) => {
                return spm
                    .encode(text, add_special_tokens, true)
                    .map_err(|message| TextError::Tokenizer {
                        operation: "encode",
                        message,
                    })
            }
        };
        let enc = hf
            .encode(text, add_special_tokens)
            .map_err(|e| TextError::Tokenizer {
                operation: "encode",
                message: e.to_string(),
            })?;
        let mut ids = enc.get_ids().to_vec();
        if add_special_tokens {
            if let Some(bos) = self.bos_id.filter(|_| self.force_bos) {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
            if let Some(eos) = self.eos_token_id().filter(|_| self.force_eos) {
                if ids.last() != Some(&eos) {
                    ids.push(eos);
                }
            }
        }
        Ok(ids)
    }

    /// Decode ids to text, optionally dropping special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        match &self.inner {
            Backend::Hf(hf) => {
                hf.decode(ids, skip_special_tokens)
                    .map_err(|e| TextError::Tokenizer {
                        operation: "decode",
                        message: e.to_string(),
                    })
            }
            Backend::Spm(spm) => Ok(spm.decode(ids, skip_special_tokens)),
        }
    }

    /// A streaming decoder that yields text as ids arrive.
    pub fn incremental_decoder(&self, skip_special_tokens: bool) -> IncrementalDecoder {
        IncrementalDecoder::new(self.clone(), skip_special_tokens)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.inner {
            Backend::Hf(hf) => hf.id_to_token(id),
            Backend::Spm(spm) => spm.id_to_token(id).map(str::to_string),
        }
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Backend::Hf(hf) => hf.get_vocab_size(true),
            Backend::Spm(spm) => spm.vocab_size(),
        }
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.special.bos.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.special.eos.as_deref()
    }

    pub fn pad_token(&self) -> Option<&str> {
        self.special.pad.as_deref()
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// The id of `eos_token` from tokenizer_config.json, if any.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.special
            .eos
            .as_deref()
            .and_then(|t| self.inner.token_to_id(t))
    }

    /// All ids that end generation (see [`Tokenizer::from_dir`]).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// The bytes each token adds to decoded text, indexed by id: what a constraint engine
    /// matches tokens against. Byte-level and byte-fallback tokens may hold part of a UTF-8
    /// character. Special tokens are their text, flagged.
    pub fn token_bytes(&self) -> Result<Vec<TokenBytes>> {
        match &self.inner {
            Backend::Hf(hf) => hf_token_bytes(hf),
            Backend::Spm(spm) => Ok((0..spm.vocab_size() as u32)
                .map(|id| {
                    let (bytes, special) = spm.piece(id).unwrap_or_default();
                    TokenBytes { bytes, special }
                })
                .collect()),
        }
    }

    /// The underlying `tokenizers` object, for anything not wrapped here (None for a
    /// GGUF SentencePiece vocabulary, which has no `tokenizers` form).
    pub fn inner(&self) -> Option<&tokenizers::Tokenizer> {
        match &self.inner {
            Backend::Hf(hf) => Some(hf),
            Backend::Spm(_) => None,
        }
    }
}

/// One token's bytes (see [`Tokenizer::token_bytes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenBytes {
    pub bytes: Vec<u8>,
    pub special: bool,
}

/// How a `tokenizers` vocabulary spells bytes.
enum Spelling {
    /// GPT-2's byte-to-character map.
    ByteLevel,
    /// `<0xNN>` byte tokens, and this character for a space (SentencePiece's `▁`).
    ByteFallback(char),
    Metaspace(char),
}

fn hf_token_bytes(hf: &tokenizers::Tokenizer) -> Result<Vec<TokenBytes>> {
    let unsupported = |what: String| TextError::Tokenizer {
        operation: "list token bytes",
        message: what,
    };
    let decoder = match hf.get_decoder() {
        Some(d) => serde_json::to_value(d).map_err(|e| unsupported(e.to_string()))?,
        None => serde_json::Value::Null,
    };
    let parts: Vec<&serde_json::Value> = match decoder["decoders"].as_array() {
        Some(list) => list.iter().collect(),
        None => vec![&decoder],
    };
    let kind = |t: &str| parts.iter().find(|d| d["type"] == t);
    let char_of = |v: &serde_json::Value| v.as_str().and_then(|s| s.chars().next());
    let spelling = if kind("ByteLevel").is_some() {
        Spelling::ByteLevel
    } else if kind("ByteFallback").is_some() {
        let space = kind("Replace")
            .and_then(|r| char_of(&r["pattern"]["String"]))
            .unwrap_or('\u{2581}');
        Spelling::ByteFallback(space)
    } else if let Some(m) = kind("Metaspace") {
        Spelling::Metaspace(char_of(&m["replacement"]).unwrap_or('\u{2581}'))
    } else {
        return Err(unsupported(format!(
            "no byte-level, byte-fallback or metaspace decoder (decoder: {decoder})"
        )));
    };
    let byte_of: HashMap<char, u8> = match spelling {
        Spelling::ByteLevel => byte_level_chars(),
        _ => HashMap::new(),
    };
    let vocab = hf.get_vocab(true);
    let n = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    let mut out = vec![TokenBytes::default(); n];
    let added = hf.get_added_tokens_decoder();
    for (text, id) in vocab {
        out[id as usize] = if let Some(a) = added.get(&id) {
            TokenBytes {
                bytes: a.content.clone().into_bytes(),
                special: a.special,
            }
        } else {
            let bytes = match spelling {
                Spelling::ByteLevel => text
                    .chars()
                    .map(|c| byte_of.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| unsupported(format!("token {text:?} is not byte-level")))?,
                Spelling::ByteFallback(space) => match text
                    .strip_prefix("<0x")
                    .and_then(|h| h.strip_suffix('>'))
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => vec![b],
                    None => text.replace(space, " ").into_bytes(),
                },
                Spelling::Metaspace(space) => text.replace(space, " ").into_bytes(),
            };
            TokenBytes {
                bytes,
                special: false,
            }
        };
    }
    Ok(out)
}

/// GPT-2's byte-level alphabet, inverted: printable bytes stand for themselves, the rest
/// for the characters from U+0100 on, in byte order.
fn byte_level_chars() -> HashMap<char, u8> {
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            let c = if printable {
                b as char
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap_or(char::REPLACEMENT_CHARACTER)
            };
            (c, b)
        })
        .collect()
}

impl Backend {
    fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Backend::Hf(hf) => hf.token_to_id(token),
            Backend::Spm(spm) => spm.token_to_id(token),
        }
    }
}

impl From<tokenizers::Tokenizer> for Backend {
    fn from(t: tokenizers::Tokenizer) -> Self {
        Backend::Hf(Arc::new(t))
    }
}
