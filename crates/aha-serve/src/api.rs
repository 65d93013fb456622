//! OpenAI request shapes (what aha reads of them) and the error body.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// An OpenAI-shaped error: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "invalid or missing API key (send it as 'Authorization: Bearer KEY')".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some("server_overloaded"),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The server is stopping and the request had not started (see [`crate::serve`]).
    pub fn shutting_down() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server is shutting down; retry elsewhere".into(),
            kind: "server_error",
            param: None,
            code: Some("server_shutting_down"),
        }
    }

    /// A request no route takes: 404 (`not_found`) for an unknown path, 405
    /// (`method_not_allowed`) for a known path with another method.
    pub fn unrouted(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::NOT_FOUND => Some("not_found"),
            StatusCode::METHOD_NOT_ALLOWED => Some("method_not_allowed"),
            _ => None,
        };
        Self {
            status,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Most bytes of a request body (axum's default, named here for the error message).
pub const MAX_BODY: usize = 2 << 20;

/// A request body, read whole; a body that cannot be read (over [`MAX_BODY`]: 413) is an
/// OpenAI-shaped error, not axum's plain text.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|r| {
                let message = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    format!("the request body is larger than {MAX_BODY} bytes")
                } else {
                    r.body_text()
                };
                ApiError {
                    status: r.status(),
                    message,
                    kind: "invalid_request_error",
                    param: None,
                    code: None,
                }
            })
    }
}

/// Parse a JSON body, turning serde's complaint into a 400.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}"), None))
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Settings shared by both completion endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    pub model: Option<String>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// vLLM's convention: 0 or -1 is off.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    /// vLLM's extension: keep generating past EOS (benchmarks with fixed lengths).
    pub ignore_eos: Option<bool>,
    /// `{"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}`.
    pub response_format: Option<ResponseFormat>,
    /// Extensions: the answer matches a regex, is one of a list, or follows a Lark grammar.
    pub regex: Option<String>,
    pub choice: Option<Vec<String>>,
    pub grammar: Option<String>,
    /// Extension: at most this many reasoning tokens before `</think>` is forced.
    pub thinking_budget: Option<usize>,
    /// Extension: sample j draws from the RNG of (seed, seed_offset + j), so n requests with
    /// offsets 0..n reproduce one request with n samples.
    pub seed_offset: Option<u64>,
    /// Extension (vLLM): each choice carries `token_ids` and `prompt_token_ids`.
    pub return_token_ids: Option<bool>,
    /// Extension (vLLM): more token ids that end a sample, besides the model's EOS.
    pub stop_token_ids: Option<Vec<u32>>,
    /// Token id (a decimal string) to a bias in [-100, 100] added to its logit.
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    /// Not implemented, so read only to refuse any but the neutral value (0; vLLM's
    /// `repetition_penalty`: 1).
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

/// `POST /update_weights_from_disk` (SGLang's shape; other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateWeightsRequest {
    pub model_path: String,
    pub weight_version: Option<Version>,
}

/// `POST /v1/load_lora_adapter` (vLLM's shape).
#[derive(Debug, Clone, Deserialize)]
pub struct LoadLoraRequest {
    pub lora_name: String,
    pub lora_path: String,
    pub weight_version: Option<Version>,
}

/// `POST /v1/unload_lora_adapter` (vLLM's shape).
#[derive(Debug, Clone, Deserialize)]
pub struct UnloadLoraRequest {
    pub lora_name: String,
    pub weight_version: Option<Version>,
}

/// A weight version as given: a string, or a number taken as its decimal text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Version {
    Text(String),
    Number(u64),
}

impl Version {
    pub fn into_string(self) -> String {
        match self {
            Version::Text(s) => s,
            Version::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    pub json_schema: Option<JsonSchemaFormat>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: Option<String>,
    pub schema: Option<serde_json::Value>,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<InMessage>,
    /// Functions the model may call: `[{"type": "function", "function": {"name", "description",
    /// "parameters"}}]`, handed to the chat template as `tools`.
    pub tools: Option<Vec<serde_json::Value>>,
    /// `"auto"` (the default with tools), `"none"`, `"required"` or a named function.
    pub tool_choice: Option<serde_json::Value>,
    /// False: at most one tool call per answer (OpenAI's default is true, any number).
    pub parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    pub sampling: Sampling,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    /// An assistant turn's calls, `[{"id", "type": "function", "function": {"name", "arguments"}}]`.
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// A `tool` turn: the call it answers.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

/// Message content: a string or a list of parts, of which aha reads the text ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    pub fn text(&self) -> Result<String, ApiError> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::bad_request(
                                format!(
                                    "content parts of type '{kind}' are not supported (text only)"
                                ),
                                Some("messages"),
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// The legacy API's number of top alternatives per token.
    pub logprobs: Option<usize>,
    /// Read only to refuse what aha does not do: the prompt echoed before the completion,
    /// ranking more samples than it returns, and insertion before a suffix.
    pub echo: Option<bool>,
    pub best_of: Option<usize>,
    pub suffix: Option<String>,
}

/// A completion prompt: text, token ids, or a one-element list of either.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    Texts(Vec<String>),
    IdLists(Vec<Vec<u32>>),
}
