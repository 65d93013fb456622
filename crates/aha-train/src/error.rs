//! The one error type of aha's training code: the trainer loop, its objectives (NLL, GRPO,
//! distillation), pretraining, evaluation, rejection sampling and the pipeline all fail the
//! same ways.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Model(#[from] aha_model::ModelError),
    #[error(transparent)]
    Engine(#[from] aha_engine::EngineError),
    #[error(transparent)]
    Text(#[from] aha_text::TextError),
    #[error(transparent)]
    Optim(#[from] crate::optim::OptimError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{}:{line}: {msg}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

/// A problem with the file at `path` that is not an I/O error (bad contents, a missing
/// tensor).
pub(crate) fn file_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// An I/O error at `path`, kept as the source.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
