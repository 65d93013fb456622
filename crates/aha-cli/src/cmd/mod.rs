pub mod chat;
pub mod common;
pub mod generate;
pub mod logprobs;
pub mod verify;
