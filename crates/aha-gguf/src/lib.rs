//! aha-gguf: the GGUF file format (llama.cpp's), versions 2 and 3, and nothing else.
//!
//! * [`GgufFile`]: a bounded reader of the header, metadata and tensor index (tensor bytes
//!   are read on demand); a truncated or hostile file is an error, never a panic.
//! * [`write()`]: the writer used by `aha quantize`.
//! * [`names`]: HF <-> llama.cpp tensor names and the llama q/k row layout.
//! * [`SpecialIds`]: BOS/EOS from `tokenizer.ggml.*`, for the model and the tokenizer alike.
//!
//! Dequantization and quantized matmuls live in aha-model; tokenizers in aha-text.

mod error;
mod meta;
pub mod names;
mod reader;
mod types;
mod writer;

pub use error::{GgufError, Result};
pub use meta::SpecialIds;
pub use reader::{is_gguf_path, AlignedBytes, GgufFile, TensorInfo, DEFAULT_ALIGNMENT, MAGIC};
pub use types::{type_name, GgmlType, Value};
pub use writer::{write, TensorOut};
