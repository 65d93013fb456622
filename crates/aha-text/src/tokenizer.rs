//! Thin wrapper over the `tokenizers` crate (or llama.cpp's SentencePiece for GGUF
//! `llama` vocabularies) plus the special-token metadata that HF keeps in side files.

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

    /// The underlying `tokenizers` object, for anything not wrapped here (None for a
    /// GGUF SentencePiece vocabulary, which has no `tokenizers` form).
    pub fn inner(&self) -> Option<&tokenizers::Tokenizer> {
        match &self.inner {
            Backend::Hf(hf) => Some(hf),
            Backend::Spm(_) => None,
        }
    }
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
