use std::path::PathBuf;

/// Everything that can go wrong reading or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a GGUF file aha can read (truncated, inconsistent, hostile).
    #[error("{path}: invalid GGUF: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A metadata value of the wrong type, or a tensor that is missing or misplaced.
    #[error("{path}: {message}")]
    Content { path: PathBuf, message: String },
    /// Data that cannot be laid out as asked (writer, row permutation).
    #[error("{0}")]
    Layout(String),
    #[error("writing GGUF: {0}")]
    Write(#[source] std::io::Error),
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;
