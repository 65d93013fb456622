//! aha-text: tokenization, chat templates and reasoning parsing.
//!
//! Typical use by the engine:
//! ```no_run
//! # fn main() -> Result<(), aha_text::TextError> {
//! use aha_text::{ChatMessage, ChatTemplate, StreamingReasoningParser, Tokenizer};
//! let dir = std::path::Path::new("model");
//! let tok = Tokenizer::from_dir(dir)?;
//! let tmpl = ChatTemplate::from_dir(dir)?;
//! let prompt = tmpl.render(&[ChatMessage::user("2+2?")], true)?;
//! let ids = tok.encode(&prompt, false)?;
//! let mut dec = tok.incremental_decoder(true);
//! let mut parser = StreamingReasoningParser::for_prompt(&prompt);
//! for id in [1u32, 2, 3] {
//!     if tok.is_eos(id) { break; }
//!     let delta = parser.push(&dec.push(id)?);
//!     print!("{}", delta.content);
//! }
//! # let _ = ids; Ok(()) }
//! ```

mod chat_template;
mod config;
mod decode;
mod error;
pub mod gguf;
mod reasoning;
mod spm;
mod tokenizer;
mod tool_calls;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use config::SpecialTokens;
pub use decode::IncrementalDecoder;
pub use error::{Result, TextError};
pub use reasoning::{
    prompt_opens_reasoning, split_reasoning, ReasoningDelta, ReasoningSplit,
    StreamingReasoningParser, THINK_END, THINK_START,
};
pub use tokenizer::{TokenBytes, Tokenizer};
pub use tool_calls::{AnswerCalls, ParsedToolCalls, ToolCall, ToolCallFormat};
