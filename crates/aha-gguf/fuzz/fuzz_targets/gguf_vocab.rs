//! The reader feeding aha-text's GGUF tokenizers (gpt2 BPE and llama SentencePiece) on
//! arbitrary bytes: where the metadata parses, the tokenizer and chat template are built
//! and used. Errors are fine; panics and huge allocations are not.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.gguf");
    let Ok(vocab) = aha_text::gguf::GgufVocab::parse(data, data.len() as u64) else {
        return;
    };
    if let Ok(tok) = aha_text::gguf::tokenizer_from_vocab(&vocab, path) {
        if let Ok(ids) = tok.encode("Compute 7 + 5. <think>12</think> 数学 🙂", true) {
            let _ = tok.decode(&ids, false);
        }
    }
    let _ = aha_text::gguf::chat_template_from_vocab(&vocab, path);
});
