//! Training for aha: the optimizer and the shared training loop, supervised fine-tuning,
//! GRPO (R1-Zero's reinforcement learning), the built-in verifiable tasks, and pretraining of
//! a tiny base model.

pub mod bpe;
pub mod data;
pub mod grpo;
pub mod optim;
pub mod pretrain;
pub mod sft;
pub mod tasks;
pub mod trainer;
