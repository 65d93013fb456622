//! Training for aha: the optimizer, GRPO (R1-Zero's reinforcement learning), the built-in
//! verifiable tasks, and pretraining of a tiny base model.

pub mod bpe;
pub mod data;
pub mod eval;
pub mod grpo;
pub mod optim;
pub mod pretrain;
pub mod sample;
pub mod tasks;
