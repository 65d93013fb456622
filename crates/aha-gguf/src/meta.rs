//! Tokenizer facts from `tokenizer.ggml.*` metadata that both the model and the text side need.

use crate::reader::GgufFile;

/// BOS and the ids that end generation, as llama.cpp reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    /// eos, eot, eom in that order, without repeats.
    pub eos: Vec<u32>,
}

impl GgufFile {
    /// `tokenizer.ggml.model` (`gpt2`, `llama`, ...), if present and a string.
    pub fn tokenizer_model(&self) -> Option<&str> {
        self.get("tokenizer.ggml.model").and_then(|v| v.as_str())
    }

    /// Number of entries in `tokenizer.ggml.tokens`, if the file has them.
    fn vocab_len(&self) -> Option<u64> {
        match self.get("tokenizer.ggml.tokens") {
            Some(crate::Value::Array(a)) => Some(a.len() as u64),
            _ => None,
        }
    }

    /// BOS and end-of-generation ids. Keys that are absent, not integers, or (when the file
    /// has a vocabulary) outside it are skipped, as llama.cpp ignores them. SentencePiece
    /// (`llama`) vocabularies default to BOS 1 and EOS 2, as in llama.cpp.
    pub fn special_ids(&self) -> SpecialIds {
        let n = self.vocab_len();
        let id = |k: &str| -> Option<u32> {
            let v = self
                .get(&format!("tokenizer.ggml.{k}_token_id"))?
                .as_u64()?;
            let v = u32::try_from(v).ok()?;
            n.is_none_or(|n| (v as u64) < n).then_some(v)
        };
        let spm = self.tokenizer_model() == Some("llama") && n.is_some_and(|n| n > 2);
        let mut out = SpecialIds {
            bos: id("bos").or(if spm { Some(1) } else { None }),
            eos: Vec::new(),
        };
        let eos = id("eos").or(if spm { Some(2) } else { None });
        for e in [eos, id("eot"), id("eom")].into_iter().flatten() {
            if !out.eos.contains(&e) {
                out.eos.push(e);
            }
        }
        out
    }
}
