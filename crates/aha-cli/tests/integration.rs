//! All integration tests of this crate in one binary: each test binary links candle, and
//! one binary per file made the test build slow and large.

mod args;
mod bench;
mod chat_tools;
mod common;
mod constrained;
mod distill;
mod eval_sample;
mod gguf_tokenizers;
mod logs;
mod remote;
mod sft;
mod zero;
