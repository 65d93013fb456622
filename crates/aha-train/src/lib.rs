//! Training for aha: the optimizer and the shared training loop, supervised fine-tuning,
//! GRPO (R1-Zero's reinforcement learning), logit-level distillation, rejection sampling and
//! evaluation, the built-in verifiable tasks, and pretraining of a tiny base model.

pub mod bpe;
pub mod corpus;
pub mod data;
pub mod distill;
pub mod error;
pub mod eval;
pub mod grpo;
pub mod moe;
pub mod optim;
pub mod pipeline;
pub mod pretrain;
pub mod rollout;
pub mod sample;
pub mod sft;
pub mod tasks;
pub mod trainer;

pub use error::{Result, TrainError};
