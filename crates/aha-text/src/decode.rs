//! Streaming detokenization.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// Turns a stream of token ids into a stream of text pieces.
///
/// Byte-level BPE tokens can end in the middle of a multi-byte UTF-8
/// character, and SentencePiece-style decoders change leading spaces
/// depending on context, so decoding each id alone is wrong. We decode a
/// short window of recent ids twice (without and with the new ids) and emit
/// the difference, holding it back while it ends in U+FFFD (an incomplete
/// character). The window start only moves forward, so cost stays O(window).
pub struct IncrementalDecoder {
    tokenizer: Tokenizer,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    /// Start of the context window used to decode.
    prefix_offset: usize,
    /// End of the ids whose text has already been emitted.
    read_offset: usize,
}

impl IncrementalDecoder {
    pub fn new(tokenizer: Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// Feed one id; returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = self.decode(self.prefix_offset, self.read_offset)?;
        let full = self.decode(self.prefix_offset, self.ids.len())?;
        if full.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        // `full` normally extends `prefix`; if a decoder rewrote earlier
        // text we cannot un-emit it, so wait for more context instead.
        match full.strip_prefix(prefix.as_str()) {
            Some(delta) if !delta.is_empty() => {
                let delta = delta.to_string();
                self.prefix_offset = self.read_offset;
                self.read_offset = self.ids.len();
                Ok(delta)
            }
            _ => Ok(String::new()),
        }
    }

    /// Feed several ids; returns the concatenated new text.
    pub fn push_all(&mut self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            out.push_str(&self.push(id)?);
        }
        Ok(out)
    }

    /// Emit whatever is still held back (e.g. a truncated character, as
    /// U+FFFD) and reset the window. Call when generation ends.
    pub fn finish(&mut self) -> Result<String> {
        let prefix = self.decode(self.prefix_offset, self.read_offset)?;
        let full = self.decode(self.prefix_offset, self.ids.len())?;
        let rest = match full.strip_prefix(prefix.as_str()) {
            Some(d) => d.to_string(),
            None => String::new(),
        };
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(rest)
    }

    /// All ids fed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    fn decode(&self, from: usize, to: usize) -> Result<String> {
        if from >= to {
            return Ok(String::new());
        }
        self.tokenizer
            .decode(&self.ids[from..to], self.skip_special_tokens)
    }
}
