//! Errors of the crate's fallible entry points (spec parsing, task inputs).
use thiserror::Error;

/// What can go wrong when building a reward from a spec or reading a task's gold.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RewardError {
    #[error("unknown reward function `{0}`")]
    UnknownReward(String),
    #[error("bad weight `{weight}` for reward `{name}`")]
    BadWeight { name: String, weight: String },
    #[error("bad parameter `{param}` for reward `{name}`: {reason}")]
    BadParam {
        name: String,
        param: String,
        reason: String,
    },
    #[error("empty reward spec")]
    EmptySpec,
    #[error("bad task gold: {0}")]
    BadGold(String),
    #[error("JSON Schema {}: {reason}", path.display())]
    SchemaFile {
        path: std::path::PathBuf,
        reason: String,
    },
}
