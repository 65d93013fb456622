pub mod bench;
pub mod chat;
pub mod common;
pub mod generate;
pub mod grpo;
pub mod logprobs;
pub mod pretrain;
pub mod verify;
