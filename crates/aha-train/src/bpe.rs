//! A byte-level BPE tokenizer trained with the `tokenizers` crate, saved as a Hugging Face
//! `tokenizer.json` plus `tokenizer_config.json`.
//!
//! Numbers are pre-split from the text around them (each may carry the space before it),
//! and BPE merges the frequent ones into single tokens: with the small values of the
//! built-in tasks every number is one token, so a single step such as `11 - 7 = 4` is a
//! lookup a tiny model learns in minutes (digit by digit it did not, in the same budget). The four R1 tags are added tokens (not special:
//! decoding keeps them; they swallow the spaces around them), and `<|endoftext|>` is the one special token: BOS, EOS and pad.

use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// The end-of-text token: EOS, BOS and padding.
pub const EOS_TOKEN: &str = "<|endoftext|>";
/// Added (non-special) tokens: the R1 tags.
pub const TAG_TOKENS: [&str; 4] = ["<think>", "</think>", "<answer>", "</answer>"];

/// Train a byte-level BPE tokenizer on `texts` with at most `vocab_size` entries in the
/// BPE model (the 5 added tokens come on top).
pub fn train_tokenizer<I, S>(
    texts: I,
    vocab_size: usize,
) -> tokenizers::Result<tokenizers::Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    let digits = Split::new(
        tokenizers::pre_tokenizers::split::SplitPattern::Regex(r" ?\d+".into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )?;
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Split(digits),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]);
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let alphabet: std::collections::HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS_TOKEN, true)])
        .initial_alphabet(alphabet)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tok.train(&mut trainer, texts)?;
    // The tags absorb the spaces around them: " <think> 7" is two tokens, not four.
    let tags: Vec<AddedToken> = TAG_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, false).lstrip(true).rstrip(true))
        .collect();
    tok.add_tokens(&tags);
    Ok(tok)
}

/// Write `tokenizer.json` and `tokenizer_config.json` (EOS/BOS/pad = `<|endoftext|>`, no BOS
/// added on encode, a minimal chat template that renders the R1-Zero prompt).
pub fn save_tokenizer(tok: &tokenizers::Tokenizer, dir: &Path) -> tokenizers::Result<()> {
    std::fs::create_dir_all(dir)?;
    tok.save(dir.join("tokenizer.json"), false)?;
    let head = crate::tasks::TEMPLATE_HEAD;
    let tail = crate::tasks::TEMPLATE_TAIL;
    let template = format!(
        "{{% for message in messages %}}{{% if message['role'] == 'user' %}}{head}{{{{ message['content'] }}}}{tail}\
{{% elif message['role'] == 'assistant' %}} {{{{ message['content'] }}}}{EOS_TOKEN}{{% endif %}}{{% endfor %}}"
    );
    let cfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "unk_token": null,
        "add_bos_token": false,
        "add_eos_token": false,
        "model_max_length": 512,
        "clean_up_tokenization_spaces": false,
        "chat_template": template,
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&cfg)?,
    )?;
    Ok(())
}
