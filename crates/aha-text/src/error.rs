use std::path::PathBuf;

/// Errors from loading tokenizers/templates and rendering prompts.
///
/// Every variant that comes from a file names that file, so a user who
/// points `aha` at a broken model directory sees what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    InvalidConfig { path: PathBuf, message: String },
    #[error(transparent)]
    Gguf(#[from] aha_gguf::GgufError),
    #[error("cannot load tokenizer {path}: {message}")]
    TokenizerLoad { path: PathBuf, message: String },
    #[error("tokenizer failed to {operation}: {message}")]
    Tokenizer {
        operation: &'static str,
        message: String,
    },
    #[error("no chat template found in {path} (expected `chat_template` in tokenizer_config.json or a chat_template.jinja file)")]
    MissingChatTemplate { path: PathBuf },
    #[error("chat template from {source_name} has a syntax error{}: {message}", line_suffix(*line))]
    TemplateSyntax {
        source_name: String,
        line: Option<usize>,
        message: String,
    },
    #[error("chat template from {source_name} failed to render{}: {message}", line_suffix(*line))]
    TemplateRender {
        source_name: String,
        line: Option<usize>,
        message: String,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    match line {
        Some(l) => format!(" at line {l}"),
        None => String::new(),
    }
}

pub type Result<T, E = TextError> = std::result::Result<T, E>;
