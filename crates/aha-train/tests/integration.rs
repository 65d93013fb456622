//! All integration tests of this crate in one binary: each test binary links candle, and
//! one binary per file made the test build slow and large.

mod common;
mod data;
mod distill;
mod evalsample;
mod grpo;
mod grpo_lora;
mod moe;
mod pipeline;
mod pretrain;
mod sft;
mod tasks;
