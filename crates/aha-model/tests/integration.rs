//! All integration tests of this crate in one binary: each test binary links candle, and
//! one binary per file made the test build slow and large.

mod attention;
mod bad_input;
mod common;
mod deepseek_v3;
mod gguf;
mod gguf_deepseek2;
mod lora;
mod packed;
mod parity;
mod qkernels;
mod update;
