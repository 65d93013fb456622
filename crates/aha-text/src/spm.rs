//! llama.cpp's SentencePiece tokenizer (`tokenizer.ggml.model = "llama"`): Llama 2, Mistral,
//! TinyLlama and other GGUF files. Encoding follows llama.cpp's rules so ids are equal:
//! special tokens are split out first (longest first; control and unknown ones only when
//! asked), a space is prepended to each text piece that starts the input or follows a
//! special token, spaces become `▁`, then adjacent pieces are merged, best-scoring
//! vocabulary entry first (leftmost on ties), and what never became a token is spelled
//! with `<0xNN>` byte tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

const SPACE: &str = "\u{2581}";
// llama.cpp's token types.
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

#[derive(Debug)]
pub(crate) struct Spm {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
    index: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, longest text first.
    specials: Vec<u32>,
    byte_ids: [Option<u32>; 256],
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
}

/// What a SentencePiece vocabulary needs from the file.
pub(crate) struct SpmParts<'a> {
    pub tokens: &'a [String],
    pub scores: &'a [f32],
    pub types: &'a [i32],
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    // Max-heap: best score first, then the leftmost pair.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

impl Spm {
    pub fn new(p: SpmParts) -> Result<Self, String> {
        let n = p.tokens.len();
        if n == 0 {
            return Err("the vocabulary is empty".into());
        }
        if !p.scores.is_empty() && p.scores.len() != n {
            return Err(format!("{} scores for {n} tokens", p.scores.len()));
        }
        if u32::try_from(n).is_err() {
            return Err(format!("{n} tokens"));
        }
        // As llama.cpp: an empty token gets a placeholder text; a repeated text maps to
        // its last id.
        let tokens: Vec<String> = p
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.clone()
                }
            })
            .collect();
        let types: Vec<i32> = (0..n)
            .map(|i| p.types.get(i).copied().unwrap_or(1))
            .collect();
        let index: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| matches!(types[i as usize], CONTROL | USER_DEFINED | UNKNOWN))
            .collect();
        specials.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = index.get(&format!("<0x{b:02X}>")).copied().or_else(|| {
                // llama.cpp falls back to the byte itself as a token.
                std::str::from_utf8(&[b as u8])
                    .ok()
                    .and_then(|s| index.get(s).copied())
            });
        }
        let in_vocab = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        // llama.cpp's defaults for SentencePiece vocabularies.
        Ok(Self {
            scores: if p.scores.is_empty() {
                vec![0.0; n]
            } else {
                p.scores.to_vec()
            },
            tokens,
            types,
            index,
            specials,
            byte_ids,
            bos: in_vocab(p.bos.or(Some(1))),
            eos: in_vocab(p.eos.or(Some(2))),
            unk: in_vocab(p.unk.or(Some(0))),
            add_bos: p.add_bos.unwrap_or(true),
            add_eos: p.add_eos.unwrap_or(false),
            add_space_prefix: p.add_space_prefix.unwrap_or(true),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_to_id(&self, t: &str) -> Option<u32> {
        self.index.get(t).copied()
    }

    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// llama.cpp's `tokenize(text, add_special, parse_special)`.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut prev_special = true;
        for f in self.fragments(text, parse_special) {
            match f {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    let mut s = String::with_capacity(t.len() + 3);
                    if self.add_space_prefix && prev_special {
                        s.push(' ');
                    }
                    s.push_str(t);
                    self.encode_piece(&s.replace(' ', SPACE), &mut out)?;
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// Split out special tokens, longest first, leftmost occurrence first.
    fn fragments<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(text));
        for &id in &self.specials {
            let ty = self.types[id as usize];
            if !parse_special && (ty == CONTROL || ty == UNKNOWN) {
                continue;
            }
            let tok = self.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len());
            for f in frags {
                match f {
                    Fragment::Text(mut t) => {
                        while let Some(at) = t.find(tok) {
                            if at > 0 {
                                next.push(Fragment::Text(&t[..at]));
                            }
                            next.push(Fragment::Token(id));
                            t = &t[at + tok.len()..];
                        }
                        if !t.is_empty() {
                            next.push(Fragment::Text(t));
                        }
                    }
                    other => next.push(other),
                }
            }
            frags = next;
        }
        frags
    }

    fn bigram(&self, text: &str, syms: &[Symbol], left: usize, right: usize) -> Option<Bigram> {
        let (l, r) = (syms[left], syms[right]);
        let piece = &text[l.start..r.start + r.len];
        let id = *self.index.get(piece)?;
        Some(Bigram {
            score: self.scores[id as usize],
            left,
            right,
            size: piece.len(),
        })
    }

    fn encode_piece(&self, text: &str, out: &mut Vec<u32>) -> Result<(), String> {
        let mut syms: Vec<Symbol> = Vec::new();
        for (start, c) in text.char_indices() {
            let i = syms.len();
            syms.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                syms[i - 1].next = Some(i);
            }
        }
        let mut queue = BinaryHeap::new();
        for i in 1..syms.len() {
            queue.extend(self.bigram(text, &syms, i - 1, i));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
            // Stale: one side was merged away or grew since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            syms[b.left].len += r.len;
            syms[b.right].len = 0;
            syms[b.left].next = r.next;
            if let Some(n) = r.next {
                syms[n].prev = Some(b.left);
            }
            if let Some(p) = syms[b.left].prev {
                queue.extend(self.bigram(text, &syms, p, b.left));
            }
            if let Some(n) = syms[b.left].next {
                queue.extend(self.bigram(text, &syms, b.left, n));
            }
        }
        let mut i = (!syms.is_empty()).then_some(0);
        while let Some(s) = i {
            let sym = syms[s];
            let piece = &text[sym.start..sym.start + sym.len];
            match self.index.get(piece) {
                Some(&id) => out.push(id),
                // Only single characters that are not in the vocabulary get here.
                None => {
                    for &b in piece.as_bytes() {
                        match self.byte_ids[b as usize].or(self.unk) {
                            Some(id) => out.push(id),
                            None => {
                                return Err(format!(
                                    "no byte token <0x{b:02X}> and no unknown token for {piece:?}"
                                ))
                            }
                        }
                    }
                }
            }
            i = sym.next;
        }
        Ok(())
    }

    /// What token `id` adds to decoded text (before the leading-space strip), and whether
    /// it is a control or unknown token (skipped when special tokens are).
    pub fn piece(&self, id: u32) -> Option<(Vec<u8>, bool)> {
        let t = self.tokens.get(id as usize)?;
        match self.types[id as usize] {
            CONTROL | UNKNOWN => Some((t.as_bytes().to_vec(), true)),
            USER_DEFINED => Some((t.as_bytes().to_vec(), false)),
            1 => Some((t.replace(SPACE, " ").into_bytes(), false)),
            BYTE => t
                .strip_prefix("<0x")
                .and_then(|h| h.get(..2))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map(|b| (vec![b], false)),
            _ => None,
        }
    }

    /// llama.cpp's detokenize: `▁` back to spaces, byte tokens to bytes, control and
    /// unknown tokens dropped with `skip_special`; the space added before the first
    /// piece is removed (unless a skipped BOS comes first, as in llama.cpp).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut ids = ids;
        let mut strip = self.add_space_prefix;
        if skip_special && self.add_bos && ids.first().is_some_and(|f| Some(f) == self.bos.as_ref())
        {
            strip = false;
            ids = &ids[1..];
        }
        if skip_special && self.add_eos && ids.last().is_some() && ids.last() == self.eos.as_ref() {
            ids = &ids[..ids.len() - 1];
        }
        let mut bytes: Vec<u8> = Vec::new();
        for &id in ids {
            let start = bytes.len();
            match self.piece(id) {
                Some((_, true)) if skip_special => {}
                Some((piece, _)) => bytes.extend_from_slice(&piece),
                None => {}
            }
            if strip && bytes.get(start) == Some(&b' ') {
                bytes.remove(start);
            }
            strip = false;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spm(tokens: &[(&str, f32, i32)]) -> Spm {
        let t: Vec<String> = tokens.iter().map(|x| x.0.to_string()).collect();
        let s: Vec<f32> = tokens.iter().map(|x| x.1).collect();
        let ty: Vec<i32> = tokens.iter().map(|x| x.2).collect();
        Spm::new(SpmParts {
            tokens: &t,
            scores: &s,
            types: &ty,
            bos: None,
            eos: None,
            unk: None,
            add_bos: None,
            add_eos: None,
            add_space_prefix: None,
        })
        .unwrap()
    }

    #[test]
    fn merges_best_score_first_and_falls_back_to_bytes() {
        let mut v = vec![("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)];
        v.extend([
            ("▁", -1.0, 1),
            ("a", -2.0, 1),
            ("b", -2.0, 1),
            ("▁a", -0.5, 1),
        ]);
        v.extend([
            ("ab", -0.1, 1),
            ("▁ab", -3.0, 1),
            ("<0xC3>", 0.0, 6),
            ("<0xA9>", 0.0, 6),
        ]);
        let s = spm(&v);
        // "▁ab": "ab" (-0.1) beats "▁a" (-0.5); then "▁"+"ab" -> "▁ab".
        assert_eq!(s.encode("ab", false, false).unwrap(), vec![8]);
        // BOS by default; "é" is not a token: its two UTF-8 bytes.
        assert_eq!(s.encode("é", true, false).unwrap(), vec![1, 3, 9, 10]);
        assert_eq!(s.decode(&[1, 3, 9, 10], true), " é");
        assert_eq!(s.decode(&[3, 9, 10], false), "é");
        // Control tokens only when parsing specials; a space is added after one.
        assert_eq!(s.encode("<s>a", false, true).unwrap(), vec![1, 6]);
        assert_eq!(s.decode(&[8, 1], false), "ab<s>");
    }
}
