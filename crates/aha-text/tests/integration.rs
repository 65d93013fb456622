//! All integration tests of this crate in one binary: each test binary links candle, and
//! one binary per file made the test build slow and large.

mod chat_template;
mod deepseek_r1;
mod gguf;
mod reasoning;
mod tokenizer;
