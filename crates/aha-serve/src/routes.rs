//! The HTTP routes: chat and text completions (whole or streamed), models, health, metrics.

use crate::api::{self, ApiError, Body, ChatRequest, CompletionRequest, Prompt, Sampling};
use crate::bias::{Chain, LogitBias};
use crate::choice::{chat_logprob, completion_logprobs, finish_str, Choice};
use crate::metrics::Metrics;
use crate::{
    Assets, ChannelReply, Control, ControlError, EngineTx, LogprobsMode, ServeConfig, Shared,
};
use aha_engine::worker::Message;
use aha_engine::{Event, Request, RequestParams, SamplingParams, TokenLogprob, WorkerStats};
use aha_model::{DType, Device, Model};
use aha_text::{StreamingReasoningParser, ToolCallFormat};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// The chat roles of the OpenAI API.
const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

pub struct AppState {
    cfg: ServeConfig,
    assets: Assets,
    engine: EngineTx,
    stats: Arc<WorkerStats>,
    metrics: Metrics,
    started: u64,
    shared: Arc<Shared>,
    weights: WeightSpec,
}

/// What an update must match, read off the model at start (the engine thread owns it).
struct WeightSpec {
    /// Parameter shapes by HF name.
    shapes: HashMap<String, Vec<usize>>,
    dtype: DType,
    device: Device,
    /// Linear layers held as GGUF blocks (no update from safetensors then).
    quantized: usize,
    /// Whether a LoRA adapter can be attached (dense llama/qwen2).
    adaptable: bool,
}

impl AppState {
    pub(crate) fn new(
        cfg: ServeConfig,
        assets: Assets,
        model: &Model,
        engine: EngineTx,
        stats: Arc<WorkerStats>,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        let params = model.params();
        let quantized = model.quantized_linears();
        let weights = WeightSpec {
            shapes: params
                .iter()
                .map(|(n, v)| (n.clone(), v.dims().to_vec()))
                .collect(),
            dtype: params.iter().next().map_or(DType::F32, |(_, v)| v.dtype()),
            device: model.device().clone(),
            quantized,
            adaptable: quantized == 0 && model.as_deepseek_v3().is_none(),
        };
        Arc::new(Self {
            cfg,
            assets,
            engine,
            stats,
            metrics: Metrics::default(),
            started: unix_now(),
            shared,
            weights,
        })
    }
}

type S = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/load_lora_adapter", post(load_lora))
        .route("/v1/unload_lora_adapter", post(unload_lora))
        .route("/update_weights_from_disk", post(update_weights))
        .route("/get_weight_version", get(weight_version))
        .route("/pause_generation", post(pause))
        .route("/continue_generation", post(resume))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(v1)
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|req: axum::extract::Request| async move {
            let (m, p) = (req.method(), req.uri().path());
            unrouted(StatusCode::NOT_FOUND, format!("no route for {m} {p}"))
        })
        // After every route: it is set on the routes there are.
        .method_not_allowed_fallback(|req: axum::extract::Request| async move {
            let (m, p) = (req.method(), req.uri().path());
            unrouted(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} is not allowed on {p}"),
            )
        })
        .layer(DefaultBodyLimit::max(api::MAX_BODY))
        .with_state(state)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

async fn auth(State(s): S, req: axum::extract::Request, next: Next) -> Response {
    if let Some(key) = &s.cfg.api_key {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            s.metrics.failed_requests.fetch_add(1, Ordering::Relaxed);
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// The fallbacks' answer: `status` with `message`, which names the method and the path.
fn unrouted(status: StatusCode, message: String) -> Response {
    ApiError::unrouted(status, message).into_response()
}

/// The web chat: one self-contained page (no external resources).
async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../web/index.html"))
}

async fn health(State(s): S) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "weight_version": s.shared.version(),
        "paused": s.shared.paused.load(Ordering::Acquire),
    }))
}

async fn weight_version(State(s): S) -> Json<Value> {
    Json(json!({"weight_version": s.shared.version()}))
}

async fn metrics(State(s): S) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(&s.stats),
    )
        .into_response()
}

async fn models(State(s): S) -> Json<Value> {
    let mut data = vec![json!({
        "id": s.cfg.model_name,
        "object": "model",
        "created": s.started,
        "owned_by": "aha",
        "root": s.cfg.model_name,
        "parent": null,
        "max_model_len": s.cfg.context,
    })];
    if let Some((name, path)) = s.shared.adapter() {
        data.push(json!({
            "id": name,
            "object": "model",
            "created": s.started,
            "owned_by": "aha",
            "root": path,
            "parent": s.cfg.model_name,
            "max_model_len": s.cfg.context,
        }));
    }
    Json(json!({"object": "list", "data": data}))
}

/// A request ready for the engine.
struct Job {
    prompt: Vec<u32>,
    n: usize,
    params: RequestParams,
    stream: bool,
    include_usage: bool,
    /// Chat: the prompt opened a think block (the template pre-filled `<think>`).
    reasoning_open: Option<bool>,
    constraint: Option<Arc<aha_engine::Constraint>>,
    /// Chat with tools: parse the answer's tool calls in this format.
    tools: Option<ToolCallFormat>,
    /// `parallel_tool_calls: false`: keep only an answer's first call.
    single_call: bool,
    /// Put `token_ids` and `prompt_token_ids` in the choices.
    return_token_ids: bool,
    logit_bias: Option<LogitBias>,
}

/// The request's answer constraint, if it asks for one.
fn constraint(
    s: &AppState,
    x: &Sampling,
    reasoning: Option<bool>,
    tool_calls: Option<aha_engine::Grammar>,
) -> Result<Option<Arc<aha_engine::Constraint>>, ApiError> {
    use aha_engine::Grammar;
    let mut asked: Vec<(Grammar, &'static str)> = Vec::new();
    if let Some(g) = tool_calls {
        asked.push((g, "tool_choice"));
    }
    if let Some(f) = &x.response_format {
        match f.kind.as_str() {
            "text" => {}
            "json_object" => asked.push((Grammar::JsonObject, "response_format")),
            "json_schema" => {
                let schema = f
                    .json_schema
                    .as_ref()
                    .and_then(|j| j.schema.clone())
                    .ok_or_else(|| {
                        bad(
                            "response_format json_schema needs json_schema.schema",
                            Some("response_format"),
                        )
                    })?;
                asked.push((Grammar::JsonSchema(schema), "response_format"));
            }
            other => {
                return Err(bad(
                    format!(
                        "unknown response_format type {other:?} (text, json_object, json_schema)"
                    ),
                    Some("response_format"),
                ))
            }
        }
    }
    if let Some(r) = &x.regex {
        asked.push((Grammar::Regex(r.clone()), "regex"));
    }
    if let Some(c) = &x.choice {
        asked.push((Grammar::Choice(c.clone()), "choice"));
    }
    if let Some(g) = &x.grammar {
        asked.push((Grammar::Lark(g.clone()), "grammar"));
    }
    if asked.len() > 1 {
        return Err(bad(
            "at most one of response_format (json), regex, choice, grammar and a forced tool_choice",
            Some(asked[1].1),
        ));
    }
    let grammar = asked.pop();
    if grammar.is_none() && x.thinking_budget.is_none() {
        return Ok(None);
    }
    let param = grammar.as_ref().map_or("thinking_budget", |g| g.1);
    let constrainer = s.assets.constrainer.as_ref().ok_or_else(|| {
        bad(
            "this model's tokenizer does not support constrained decoding",
            Some(param),
        )
    })?;
    let gate = if let Some(opened) = reasoning {
        Some(
            aha_engine::Reasoning::think(&s.assets.tokenizer, x.thinking_budget, opened)
                .map_err(|e| ApiError::internal(e.to_string()))?,
        )
    } else if x.thinking_budget.is_some() {
        return Err(bad(
            "thinking_budget needs a reasoning model",
            Some("thinking_budget"),
        ));
    } else {
        None
    };
    // Compiled once: the schema check below looks at the constraint decoding will use.
    let after_reasoning = gate.as_ref().map(|g| reasoning_tokens(s, g));
    let c = compile(s, constrainer, grammar.as_ref().map(|g| &g.0), gate)
        .map_err(|e| bad(e, Some(param)))?;
    if let Some((Grammar::JsonSchema(_), _)) = &grammar {
        answer_starts(s, &c, after_reasoning.as_deref()).map_err(|m| bad(m, Some(param)))?;
    }
    Ok(Some(Arc::new(c)))
}

/// Compile an answer's constraint (counted in the metrics): the compiler's message when it
/// fails.
fn compile(
    s: &AppState,
    constrainer: &aha_engine::Constrainer,
    grammar: Option<&aha_engine::Grammar>,
    gate: Option<aha_engine::Reasoning>,
) -> Result<aha_engine::Constraint, String> {
    s.metrics
        .constraint_compiles
        .fetch_add(1, Ordering::Relaxed);
    constrainer
        .compile(grammar, gate)
        .map_err(|e| e.to_string())
}

/// A whole reasoning as the gate sees it: its forced opening, then `</think>`. After these
/// tokens a gated constraint's processor is where the answer starts.
fn reasoning_tokens(s: &AppState, gate: &aha_engine::Reasoning) -> Vec<u32> {
    let mut t = gate.open.clone();
    // A gate is made only when `</think>` is one token (see `job`).
    t.extend(s.assets.tokenizer.token_to_id(&gate.end));
    t
}

/// Compile a JSON Schema as an answer's constraint and check it (see [`answer_starts`]).
fn check_schema(
    s: &AppState,
    constrainer: &aha_engine::Constrainer,
    schema: &Value,
) -> Result<(), String> {
    let grammar = aha_engine::Grammar::JsonSchema(schema.clone());
    let c = compile(s, constrainer, Some(&grammar), None)?;
    answer_starts(s, &c, None)
}

/// Take a compiled JSON constraint's first answer step (after `reasoning`, the tokens that
/// take a gated one past its reasoning). A schema may compile yet admit no value
/// (`{"$ref": "#"}`): its first mask allows only EOS, and every sample would end at once
/// with an empty answer (JSON is never empty, so that is never right). A schema that
/// dead-ends deeper (a required property that is its own schema) is not seen here.
fn answer_starts(
    s: &AppState,
    c: &aha_engine::Constraint,
    reasoning: Option<&[u32]>,
) -> Result<(), String> {
    let mut logits = vec![0f32; s.assets.vocab_size];
    c.processor()
        .process(0, reasoning.unwrap_or_default(), &mut logits);
    let eos = s.assets.tokenizer.eos_token_ids();
    let starts = logits
        .iter()
        .enumerate()
        .any(|(t, l)| l.is_finite() && !eos.contains(&(t as u32)));
    if starts {
        Ok(())
    } else {
        Err(
            "no JSON value satisfies this schema: nothing may start it (a $ref that only \
             refers to itself?)"
                .into(),
        )
    }
}

/// Turn the shared settings into engine parameters, checking them against the context.
fn job(
    s: &AppState,
    prompt: Vec<u32>,
    x: Sampling,
    logprobs: Option<usize>,
    reasoning_open: Option<bool>,
    tool_calls: Option<aha_engine::Grammar>,
) -> Result<Job, ApiError> {
    let ctx = s.cfg.context;
    // Chat with a reasoning model: the constraint starts after `</think>`.
    let reasons = reasoning_open.filter(|_| {
        s.assets
            .tokenizer
            .token_to_id(aha_text::THINK_END)
            .is_some()
    });
    let constraint = constraint(s, &x, reasons, tool_calls)?;
    let n = x.n.unwrap_or(1);
    if n == 0 || n > s.cfg.max_batch {
        return Err(bad(
            format!(
                "n must be between 1 and {} (the server's batch size)",
                s.cfg.max_batch
            ),
            Some("n"),
        ));
    }
    let temperature = x.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad(
            "temperature must be between 0 and 2",
            Some("temperature"),
        ));
    }
    let top_p = x.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad("top_p must be in (0, 1]", Some("top_p")));
    }
    let min_p = x.min_p.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_p) {
        return Err(bad("min_p must be in [0, 1]", Some("min_p")));
    }
    let top_k = x.top_k.unwrap_or(0);
    if top_k < -1 {
        return Err(bad(
            "top_k must be -1 or 0 (off) or positive",
            Some("top_k"),
        ));
    }
    if logprobs.is_some_and(|k| k > 20) {
        return Err(bad(
            "at most 20 top log-probabilities",
            Some("top_logprobs"),
        ));
    }
    let stop = x.stop.map(api::Stop::into_vec).unwrap_or_default();
    if stop.len() > 16 || stop.iter().any(|s| s.is_empty()) {
        return Err(bad("stop takes up to 16 non-empty strings", Some("stop")));
    }
    if prompt.is_empty() {
        return Err(bad("the prompt is empty", Some("prompt")));
    }
    if let Some(bad_id) = prompt.iter().find(|&&t| t as usize >= s.assets.vocab_size) {
        return Err(bad(
            format!(
                "token id {bad_id} is outside the vocabulary (size {})",
                s.assets.vocab_size
            ),
            Some("prompt"),
        ));
    }
    if prompt.len() >= ctx {
        return Err(bad(
            format!(
                "the prompt has {} tokens; this server's context is {ctx}",
                prompt.len()
            ),
            Some("messages"),
        )
        .with_code("context_length_exceeded"));
    }
    let room = ctx - prompt.len();
    let max_tokens = match x.max_completion_tokens.or(x.max_tokens) {
        Some(0) => return Err(bad("max_tokens must be at least 1", Some("max_tokens"))),
        Some(m) if m > room => {
            return Err(bad(
                format!(
                    "the prompt ({} tokens) plus max_tokens ({m}) exceeds the context ({ctx})",
                    prompt.len()
                ),
                Some("max_tokens"),
            )
            .with_code("context_length_exceeded"))
        }
        Some(m) => m,
        None => s.cfg.default_max_tokens.min(room),
    };
    let seed = x.seed.map_or_else(rand::random::<u64>, |v| v as u64);
    let mut stop_token_ids = if x.ignore_eos.unwrap_or(false) {
        Vec::new()
    } else {
        s.assets.eos_token_ids.clone()
    };
    for &t in x.stop_token_ids.iter().flatten() {
        if t as usize >= s.assets.vocab_size {
            return Err(bad(
                format!(
                    "stop token id {t} is outside the vocabulary (size {})",
                    s.assets.vocab_size
                ),
                Some("stop_token_ids"),
            ));
        }
        if !stop_token_ids.contains(&t) {
            stop_token_ids.push(t);
        }
    }
    // Ignoring a penalty would silently sample something else than asked for.
    for (name, given, neutral) in [
        ("presence_penalty", x.presence_penalty, 0.0),
        ("frequency_penalty", x.frequency_penalty, 0.0),
        ("repetition_penalty", x.repetition_penalty, 1.0),
    ] {
        if given.is_some_and(|v| v != neutral) {
            return Err(bad(
                format!("{name} is not supported (only {neutral}, no penalty)"),
                Some(name),
            ));
        }
    }
    let logit_bias = match &x.logit_bias {
        Some(map) => LogitBias::parse(map, s.assets.vocab_size)?,
        None => None,
    };
    let logprob_temperature = match s.cfg.logprobs_mode {
        LogprobsMode::ProcessedLogprobs if temperature > 0.0 => temperature,
        _ => 1.0,
    };
    Ok(Job {
        prompt,
        n,
        params: RequestParams {
            sampling: SamplingParams {
                temperature,
                top_k: top_k.max(0) as usize,
                top_p,
                min_p,
            },
            max_tokens,
            seed,
            seed_offset: x.seed_offset.unwrap_or(0),
            stop_token_ids,
            stop_strings: stop,
            logprobs,
            logprob_temperature,
        },
        stream: x.stream.unwrap_or(false),
        include_usage: x
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        reasoning_open,
        constraint,
        tools: None,
        single_call: false,
        return_token_ids: x.return_token_ids.unwrap_or(false),
        logit_bias,
    })
}

fn bad(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
    ApiError::bad_request(message, param)
}

/// Counts a request as running until dropped.
struct InFlight(Arc<AppState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .metrics
            .running_requests
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A submitted request: its events, its count in the metrics, and the weight version that
/// runs it (set by the engine before the first event).
struct Submitted {
    rx: UnboundedReceiver<Event>,
    guard: InFlight,
    version: Arc<OnceLock<String>>,
}

fn submit(s: &Arc<AppState>, job: &Job) -> Result<Submitted, ApiError> {
    let limit = (s.cfg.max_batch + s.cfg.max_queue) as u64;
    if s.metrics.running_requests.load(Ordering::Relaxed) >= limit {
        s.metrics.rejected_requests.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::overloaded(
            "the server's queue is full; retry later",
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    s.metrics.running_requests.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight(s.clone());
    let version = Arc::new(OnceLock::new());
    let mut processors: Vec<Box<dyn aha_engine::LogitsProcessor>> = Vec::new();
    if let Some(b) = &job.logit_bias {
        processors.push(Box::new(b.clone()));
    }
    match &job.constraint {
        Some(c) => processors.push(c.processor()),
        None => processors.extend(
            s.assets
                .logits_processor
                .as_ref()
                .and_then(|f| f(&job.prompt)),
        ),
    }
    let processor: Option<Box<dyn aha_engine::LogitsProcessor>> = match processors.len() {
        0 | 1 => processors.pop(),
        _ => Some(Box::new(Chain(processors))),
    };
    s.engine
        .send(Message::Request(Request {
            prompt: job.prompt.clone(),
            n: job.n,
            params: job.params.clone(),
            processor,
            reply: ChannelReply {
                tx,
                version: version.clone(),
            },
        }))
        .map_err(|_| ApiError::internal("the engine has stopped"))?;
    s.metrics
        .prompt_tokens
        .fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
    Ok(Submitted { rx, guard, version })
}

fn fail(s: &AppState, e: ApiError) -> Response {
    s.metrics.failed_requests.fetch_add(1, Ordering::Relaxed);
    e.into_response()
}

async fn chat(State(s): S, Body(body): Body) -> Response {
    match chat_job(&s, &body) {
        Ok(job) => run(s, job, Kind::Chat).await,
        Err(e) => fail(&s, e),
    }
}

async fn completions(State(s): S, Body(body): Body) -> Response {
    match completion_job(&s, &body) {
        Ok(job) => run(s, job, Kind::Completion).await,
        Err(e) => fail(&s, e),
    }
}

fn chat_job(s: &AppState, body: &[u8]) -> Result<Job, ApiError> {
    let req: ChatRequest = api::parse(body)?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages must not be empty",
            Some("messages"),
        ));
    }
    let template = s.assets.template.as_ref().ok_or_else(|| {
        ApiError::bad_request(
            "this model has no chat template; use /v1/completions",
            Some("messages"),
        )
    })?;
    let (tools, forced_calls) = tool_format(template, &req)?;
    // Offered tools' schemas are compiled now even when no grammar will use them ("auto"):
    // a broken one would otherwise pass unnoticed.
    if let (Some(_), Some(c), Some(offered)) = (tools, &s.assets.constrainer, &req.tools) {
        for t in offered {
            let p = &t["function"]["parameters"];
            if p.is_object() {
                check_schema(s, c, p).map_err(|m| {
                    bad(
                        format!("tool {}: parameters: {m}", t["function"]["name"]),
                        Some("tools"),
                    )
                })?;
            }
        }
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        if m.role.is_empty() {
            return Err(ApiError::bad_request(
                "a message has an empty role",
                Some("messages"),
            ));
        }
        // Templates skip roles they do not know, leaving an empty or a silently shortened
        // prompt.
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::bad_request(
                format!(
                    "unknown message role {:?} (one of {})",
                    m.role,
                    ROLES.join(", ")
                ),
                Some("messages"),
            ));
        }
        let content = match &m.content {
            Some(c) => c.text()?,
            None => String::new(),
        };
        // Templates test `'tool_calls' in message` and `content is none`: only set what is given.
        let mut v = json!({"role": m.role, "content": content});
        // An empty list is no calls (the R1 template would write a bare end marker).
        if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
            for c in calls {
                let args = &c["function"]["arguments"];
                if !(c["function"]["name"].is_string() && args.is_string()) {
                    return Err(bad(
                        "each tool call needs function.name and function.arguments (a JSON string)",
                        Some("messages"),
                    ));
                }
            }
            v["tool_calls"] = json!(calls);
            if m.content.is_none() {
                v["content"] = Value::Null;
            }
        }
        if let Some(id) = &m.tool_call_id {
            v["tool_call_id"] = json!(id);
        }
        if let Some(name) = &m.name {
            v["name"] = json!(name);
        }
        messages.push(v);
    }
    // Tools are shown only when calls will be parsed (not with tool_choice "none").
    let shown = tools.and(req.tools.as_ref()).map(|t| json!(t));
    let prompt = template
        .render_with_tools(&messages, shown.as_ref(), true)
        .map_err(|e| {
            ApiError::bad_request(format!("the chat template failed: {e}"), Some("messages"))
        })?;
    let ids = s
        .assets
        .tokenizer
        .encode(&prompt, false)
        .map_err(|e| ApiError::internal(format!("tokenizing the prompt: {e}")))?;
    let logprobs = match (req.logprobs, req.top_logprobs) {
        (Some(true), k) => Some(k.unwrap_or(0)),
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "top_logprobs needs logprobs: true",
                Some("top_logprobs"),
            ))
        }
        _ => None,
    };
    let open = aha_text::prompt_opens_reasoning(&prompt);
    s.metrics.chat_requests.fetch_add(1, Ordering::Relaxed);
    let single_call = req.parallel_tool_calls == Some(false);
    let mut job = job(s, ids, req.sampling, logprobs, Some(open), forced_calls)?;
    job.tools = tools;
    job.single_call = single_call;
    Ok(job)
}

/// With `tools` (and `tool_choice` not "none"), the format to parse the answer's calls in;
/// with a forced `tool_choice` ("required", or a named function), the grammar the answer
/// must follow: calls of those tools with arguments valid under their `parameters` schema.
fn tool_format(
    template: &aha_text::ChatTemplate,
    req: &ChatRequest,
) -> Result<(Option<ToolCallFormat>, Option<aha_engine::Grammar>), ApiError> {
    let Some(tools) = &req.tools else {
        return match &req.tool_choice {
            None => Ok((None, None)),
            Some(Value::String(c)) if c == "none" || c == "auto" => Ok((None, None)),
            Some(_) => Err(bad("tool_choice needs tools", Some("tool_choice"))),
        };
    };
    for t in tools {
        if t["type"] != "function" || !t["function"]["name"].is_string() {
            return Err(bad(
                "each tool must be {\"type\": \"function\", \"function\": {\"name\": ..}}",
                Some("tools"),
            ));
        }
        let p = &t["function"]["parameters"];
        if !(p.is_null() || p.is_object()) {
            return Err(bad(
                format!(
                    "tool {}: parameters must be a JSON Schema object, not {p}",
                    t["function"]["name"]
                ),
                Some("tools"),
            ));
        }
    }
    // (name, arguments schema) of the tools a forced choice allows, and whether one call
    // (a named function, or `parallel_tool_calls: false`).
    let single = req.parallel_tool_calls == Some(false);
    let schema = |t: &Value| {
        let p = &t["function"]["parameters"];
        (
            t["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            if p.is_object() {
                p.clone()
            } else {
                json!({"type": "object"})
            },
        )
    };
    let forced: Option<(Vec<(String, Value)>, bool)> = match &req.tool_choice {
        None => None,
        Some(Value::String(c)) if c == "auto" => None,
        Some(Value::String(c)) if c == "none" => return Ok((None, None)),
        Some(Value::String(c)) if c == "required" => Some((tools.iter().map(schema).collect(), single)),
        Some(v) if v["type"] == "function" && v["function"]["name"].is_string() => {
            let name = &v["function"]["name"];
            let t = tools
                .iter()
                .find(|t| &t["function"]["name"] == name)
                .ok_or_else(|| bad(format!("tool_choice names {name}, which is not in tools"), Some("tool_choice")))?;
            Some((vec![schema(t)], true))
        }
        Some(_) => {
            return Err(bad(
                "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ..}}",
                Some("tool_choice"),
            ))
        }
    };
    let format = template.tool_call_format().ok_or_else(|| {
        bad(
            "this model's chat template does not write tool calls",
            Some("tools"),
        )
    })?;
    let grammar = forced.map(|(tools, one)| aha_engine::Grammar::ToolCalls { format, tools, one });
    Ok((Some(format), grammar))
}

fn completion_job(s: &AppState, body: &[u8]) -> Result<Job, ApiError> {
    let req: CompletionRequest = api::parse(body)?;
    // Settings aha does not implement, refused rather than ignored: each would change what
    // the client gets back.
    if req.echo == Some(true) {
        return Err(bad(
            "echo is not supported (the completion never includes the prompt)",
            Some("echo"),
        ));
    }
    let n = req.sampling.n.unwrap_or(1);
    if let Some(best_of) = req.best_of.filter(|&b| b != n) {
        return Err(bad(
            format!(
                "best_of {best_of} is not supported: aha returns every sample it draws, so \
                 best_of may only equal n ({n})"
            ),
            Some("best_of"),
        ));
    }
    if req.suffix.as_ref().is_some_and(|x| !x.is_empty()) {
        return Err(bad(
            "suffix is not supported (no insertion before a suffix)",
            Some("suffix"),
        ));
    }
    let one = |n: usize| -> Result<(), ApiError> {
        if n == 1 {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                "one prompt per request (use n for several completions)",
                Some("prompt"),
            ))
        }
    };
    let encode = |t: &str| {
        s.assets
            .tokenizer
            .encode(t, true)
            .map_err(|e| ApiError::internal(format!("tokenizing the prompt: {e}")))
    };
    let ids = match req.prompt {
        Prompt::Text(t) => encode(&t)?,
        Prompt::Ids(ids) => ids,
        Prompt::Texts(t) => {
            one(t.len())?;
            encode(&t[0])?
        }
        Prompt::IdLists(mut l) => {
            one(l.len())?;
            l.remove(0)
        }
    };
    s.metrics
        .completion_requests
        .fetch_add(1, Ordering::Relaxed);
    job(s, ids, req.sampling, req.logprobs, None, None)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Completion,
}

/// Per-request bookkeeping shared by whole and streamed answers.
struct Answer {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    choices: Vec<Choice>,
    /// Completions: the raw log-probabilities per choice.
    raw_logprobs: Vec<Vec<(u32, TokenLogprob)>>,
    prompt_tokens: usize,
    started: Instant,
    first_token: bool,
    tools: Option<ToolCallFormat>,
    /// Keep only the first call of an answer (`parallel_tool_calls: false`).
    single_call: bool,
    /// The weight version that runs the request (set once the engine starts it).
    version: Arc<OnceLock<String>>,
    /// With `return_token_ids`: the prompt ids and each choice's ids so far.
    prompt_ids: Option<Vec<u32>>,
    token_ids: Vec<Vec<u32>>,
    /// Streams: ids not yet sent in a chunk of that choice, and whether it had a chunk.
    unsent_ids: Vec<Vec<u32>>,
    had_chunk: Vec<bool>,
}

/// A choice's answer when it called tools.
impl Answer {
    fn new(s: &AppState, job: &Job, kind: Kind, version: Arc<OnceLock<String>>) -> Self {
        let parser = || job.reasoning_open.map(StreamingReasoningParser::new);
        Self {
            kind,
            id: new_id(if kind == Kind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            }),
            created: unix_now(),
            model: s.cfg.model_name.clone(),
            choices: (0..job.n).map(|_| Choice::new(parser())).collect(),
            raw_logprobs: vec![Vec::new(); job.n],
            prompt_tokens: job.prompt.len(),
            tools: job.tools,
            single_call: job.single_call,
            started: Instant::now(),
            first_token: false,
            version,
            prompt_ids: job.return_token_ids.then(|| job.prompt.clone()),
            token_ids: vec![Vec::new(); job.n],
            unsent_ids: vec![Vec::new(); job.n],
            had_chunk: vec![false; job.n],
        }
    }

    fn version_json(&self) -> Value {
        self.version.get().map_or(Value::Null, |v| json!(v))
    }

    /// `token_ids` and `prompt_token_ids` (when asked for) into a choice of a whole answer.
    fn add_ids(&self, i: usize, choice: &mut Value) {
        if let Some(p) = &self.prompt_ids {
            choice["token_ids"] = json!(self.token_ids[i]);
            choice["prompt_token_ids"] = json!(p);
        }
    }

    fn usage(&self) -> Value {
        let completion: usize = self.choices.iter().map(|c| c.tokens).sum();
        let reasoning: usize = self.choices.iter().map(|c| c.reasoning_tokens).sum();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        })
    }

    fn observe_first(&mut self, s: &AppState) {
        if !self.first_token {
            self.first_token = true;
            s.metrics.observe_ttft(self.started.elapsed().as_secs_f64());
        }
    }

    /// The tool calls of a finished choice, if it made any. A call written before `</think>`
    /// ends the reasoning there. With `parallel_tool_calls: false` only the first call is
    /// kept: an unconstrained ("auto") answer may still write several.
    fn calls(&self, c: &Choice) -> Option<aha_text::AnswerCalls> {
        let mut calls = self.tools?.answer_calls(&c.reasoning, &c.content)?;
        if self.single_call {
            calls.calls.truncate(1);
        }
        Some(calls)
    }

    /// OpenAI's `tool_calls`; stream deltas also number them (`index`).
    fn tool_calls_json(&self, i: usize, calls: &[aha_text::ToolCall], delta: bool) -> Value {
        let id = self.id.rsplit('-').next().unwrap_or("");
        calls
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let mut v = json!({"id": format!("call_{id}_{i}_{k}"), "type": "function",
                                   "function": {"name": c.name, "arguments": c.arguments}});
                if delta {
                    v["index"] = json!(k);
                }
                v
            })
            .collect()
    }

    fn whole(&mut self, s: &AppState) -> Value {
        let tok = &s.assets.tokenizer;
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let finish = c.finish.map(finish_str);
                match self.kind {
                    Kind::Chat => {
                        let mut message = json!({"role": "assistant", "content": c.content});
                        if let Some(r) = c.reasoning_field() {
                            message["reasoning_content"] = json!(r);
                            message["reasoning"] = json!(r);
                        }
                        let mut finish = finish;
                        if let Some(t) = self.calls(c) {
                            message["content"] =
                                if t.content.is_empty() { Value::Null } else { json!(t.content) };
                            if c.reasoning_field().is_some() {
                                message["reasoning_content"] = json!(t.reasoning);
                                message["reasoning"] = json!(t.reasoning);
                            }
                            message["tool_calls"] = self.tool_calls_json(i, &t.calls, false);
                            finish = Some("tool_calls");
                        }
                        let logprobs = (!c.logprobs.is_empty())
                            .then(|| json!({"content": c.logprobs}));
                        let mut v = json!({"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish});
                        self.add_ids(i, &mut v);
                        v
                    }
                    Kind::Completion => {
                        let lp = &self.raw_logprobs[i];
                        let logprobs = (!lp.is_empty()).then(|| completion_logprobs(tok, lp, 0));
                        let mut v = json!({"index": i, "text": c.content, "logprobs": logprobs, "finish_reason": finish});
                        self.add_ids(i, &mut v);
                        v
                    }
                }
            })
            .collect();
        let object = match self.kind {
            Kind::Chat => "chat.completion",
            Kind::Completion => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
            "weight_version": self.version_json(),
        })
    }

    /// A stream chunk for one choice. `delta`: chat's delta object or the completion text.
    /// With `return_token_ids` it carries the ids of the choice not sent yet (and the prompt
    /// ids in the choice's first chunk).
    fn chunk(
        &mut self,
        i: usize,
        delta: Value,
        logprobs: Option<Value>,
        finish: Option<&str>,
        with_usage: bool,
    ) -> Value {
        let mut choice = match self.kind {
            Kind::Chat => {
                json!({"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
            Kind::Completion => {
                json!({"index": i, "text": delta, "logprobs": logprobs, "finish_reason": finish})
            }
        };
        if let Some(p) = &self.prompt_ids {
            if let Some(ids) = self.unsent_ids.get_mut(i) {
                choice["token_ids"] = json!(std::mem::take(ids));
            }
            if let Some(first) = self.had_chunk.get_mut(i).filter(|h| !**h) {
                *first = true;
                choice["prompt_token_ids"] = json!(p);
            }
        }
        self.frame(vec![choice], with_usage.then_some(Value::Null))
    }

    fn frame(&self, choices: Vec<Value>, usage: Option<Value>) -> Value {
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Completion => "text_completion",
        };
        let mut v = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "weight_version": self.version_json(),
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    /// Record a token; returns the chat delta (or completion text) and its log-probs.
    fn token(
        &mut self,
        s: &AppState,
        sample: usize,
        token: u32,
        text: &str,
        logprob: Option<TokenLogprob>,
    ) -> Option<(Value, Option<Value>)> {
        self.observe_first(s);
        let tok = &s.assets.tokenizer;
        if self.prompt_ids.is_some() {
            if let (Some(all), Some(unsent)) = (
                self.token_ids.get_mut(sample),
                self.unsent_ids.get_mut(sample),
            ) {
                all.push(token);
                unsent.push(token);
            }
        }
        let c = self.choices.get_mut(sample)?;
        let offset = c.content.len();
        let d = c.push(text);
        let lp = logprob.map(|lp| match self.kind {
            Kind::Chat => {
                let e = chat_logprob(tok, token, &lp);
                c.logprobs.push(e.clone());
                json!({"content": [e]})
            }
            Kind::Completion => {
                let v = completion_logprobs(tok, &[(token, lp.clone())], offset);
                self.raw_logprobs[sample].push((token, lp));
                v
            }
        });
        let delta = self.delta_value(d);
        (delta.is_some() || lp.is_some()).then(|| (delta.unwrap_or_else(|| self.empty_delta()), lp))
    }

    fn empty_delta(&self) -> Value {
        match self.kind {
            Kind::Chat => json!({}),
            Kind::Completion => json!(""),
        }
    }

    fn delta_value(&self, d: aha_text::ReasoningDelta) -> Option<Value> {
        if d.is_empty() {
            return None;
        }
        Some(match self.kind {
            Kind::Chat => {
                let mut v = json!({});
                if !d.reasoning.is_empty() {
                    v["reasoning_content"] = json!(d.reasoning);
                    v["reasoning"] = json!(d.reasoning);
                }
                if !d.content.is_empty() {
                    v["content"] = json!(d.content);
                }
                v
            }
            Kind::Completion => json!(d.content),
        })
    }
}

/// A request's events from the engine, cut short when the server stops (see
/// [`crate::serve`]): on [`Shared::cancel`](crate::Shared) the events the engine has already
/// sent come, then each unfinished sample finishes with `length`; the receiver is dropped,
/// which cancels the sequences as a client that leaves does. A request cut before its
/// first token is an error (503).
struct Events {
    rx: Option<UnboundedReceiver<Event>>,
    cancel: tokio::sync::watch::Receiver<bool>,
    cancelled: bool,
    finished: Vec<bool>,
    started: bool,
}

impl Events {
    fn new(s: &AppState, rx: UnboundedReceiver<Event>, n: usize) -> Self {
        Self {
            rx: Some(rx),
            cancel: s.shared.cancel.subscribe(),
            cancelled: false,
            finished: vec![false; n],
            started: false,
        }
    }

    /// The next event; None when the engine has gone.
    async fn next(&mut self) -> Result<Option<Event>, ApiError> {
        let Some(rx) = self.rx.as_mut() else {
            return Ok(self.cut());
        };
        let event = if self.cancelled {
            rx.try_recv().ok()
        } else {
            let cancel = &mut self.cancel;
            // The cancel first: a busy engine always has an event ready.
            let got = tokio::select! {
                biased;
                _ = async {
                    // A closed channel cannot cancel any more.
                    if cancel.wait_for(|c| *c).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => None,
                e = rx.recv() => Some(e),
            };
            match got {
                Some(e) => return Ok(self.seen(e)),
                None => {
                    self.cancelled = true;
                    rx.try_recv().ok()
                }
            }
        };
        if event.is_some() {
            return Ok(self.seen(event));
        }
        self.rx = None;
        if !self.started {
            return Err(ApiError::shutting_down());
        }
        Ok(self.cut())
    }

    fn seen(&mut self, event: Option<Event>) -> Option<Event> {
        match &event {
            Some(Event::Token { .. }) => self.started = true,
            Some(Event::Finished { sample, .. }) => {
                if let Some(f) = self.finished.get_mut(*sample) {
                    *f = true;
                }
            }
            _ => {}
        }
        event
    }

    /// After the cancel: `length` for the next unfinished sample.
    fn cut(&mut self) -> Option<Event> {
        let sample = self.finished.iter().position(|f| !f)?;
        self.finished[sample] = true;
        Some(Event::Finished {
            sample,
            reason: aha_engine::FinishReason::Length,
        })
    }
}

async fn run(s: Arc<AppState>, job: Job, kind: Kind) -> Response {
    let Submitted { rx, guard, version } = match submit(&s, &job) {
        Ok(x) => x,
        Err(e) => return fail(&s, e),
    };
    let answer = Answer::new(&s, &job, kind, version);
    let rx = Events::new(&s, rx, job.n);
    if job.stream {
        stream(s, job, answer, rx, guard)
    } else {
        match whole(&s, job.n, answer, rx).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => fail(&s, e),
        }
    }
}

async fn whole(s: &AppState, n: usize, mut a: Answer, mut rx: Events) -> Result<Value, ApiError> {
    let mut done = 0;
    while done < n {
        match rx.next().await? {
            Some(Event::Token {
                sample,
                token,
                text,
                logprob,
            }) => {
                a.token(s, sample, token, &text, logprob);
            }
            Some(Event::Finished { sample, reason }) => {
                if let Some(c) = a.choices.get_mut(sample) {
                    c.finish(reason);
                    s.metrics
                        .completion_tokens
                        .fetch_add(c.tokens as u64, Ordering::Relaxed);
                }
                done += 1;
            }
            Some(Event::Failed(m)) => return Err(ApiError::internal(m)),
            None => return Err(ApiError::internal("the engine stopped")),
        }
    }
    Ok(a.whole(s))
}

fn sse(v: &Value) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().data(v.to_string()))
}

fn stream(s: Arc<AppState>, job: Job, mut a: Answer, mut rx: Events, guard: InFlight) -> Response {
    let (tx, out) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(64);
    let usage = job.include_usage;
    tokio::spawn(async move {
        let _guard = guard;
        // Sending fails once the client is gone: return, dropping `rx`, which cancels.
        macro_rules! emit {
            ($v:expr) => {
                if tx.send(sse(&$v)).await.is_err() {
                    return;
                }
            };
        }
        // The first chunks wait for the engine to start the request: every chunk names the
        // weight version that runs it.
        let mut opened = false;
        // With tools: bytes of each choice's reasoning already sent, and whether a call marker
        // has appeared in it (from then on the reasoning is held back).
        let mut sent_reasoning = vec![0usize; job.n];
        let mut held = vec![false; job.n];
        let mut done = 0;
        while done < job.n {
            let event = tokio::select! {
                e = rx.next() => e,
                _ = tx.closed() => return,
            };
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    s.metrics.failed_requests.fetch_add(1, Ordering::Relaxed);
                    emit!(e.body());
                    break;
                }
            };
            if !opened && a.kind == Kind::Chat && event.is_some() {
                for i in 0..job.n {
                    emit!(a.chunk(
                        i,
                        json!({"role": "assistant", "content": ""}),
                        None,
                        None,
                        usage
                    ));
                }
            }
            opened = true;
            match event {
                Some(Event::Token {
                    sample,
                    token,
                    text,
                    logprob,
                }) => {
                    if let Some((mut delta, lp)) = a.token(&s, sample, token, &text, logprob) {
                        // With tools the answer may turn out to be calls: hold it to the end,
                        // and the reasoning from a call written inside it.
                        if let (Some(f), Some(d)) = (a.tools, delta.as_object_mut()) {
                            d.remove("content");
                            let r = &a.choices[sample].reasoning;
                            // Search only the unsent tail (and a marker's length before it), not
                            // the whole reasoning each token.
                            let mut from = sent_reasoning[sample].saturating_sub(64);
                            while !r.is_char_boundary(from) {
                                from -= 1;
                            }
                            held[sample] = held[sample] || f.find_start(&r[from..]).is_some();
                            if held[sample] {
                                d.remove("reasoning_content");
                                d.remove("reasoning");
                            } else {
                                sent_reasoning[sample] = r.len();
                            }
                        }
                        if delta != json!({}) || lp.is_some() {
                            emit!(a.chunk(sample, delta, lp, None, usage));
                        }
                    }
                }
                Some(Event::Finished { sample, reason }) => {
                    done += 1;
                    let Some(c) = a.choices.get_mut(sample) else {
                        continue;
                    };
                    let rest = c.finish(reason);
                    s.metrics
                        .completion_tokens
                        .fetch_add(c.tokens as u64, Ordering::Relaxed);
                    let mut finish = finish_str(reason);
                    if a.tools.is_some() {
                        let c = &a.choices[sample];
                        let (reasoning, tail, calls) = match a.calls(c) {
                            Some(t) => (t.reasoning, t.content, Some(t.calls)),
                            None => (c.reasoning.clone(), c.content.clone(), None),
                        };
                        // The reasoning not sent yet (held back from a marker that was no call).
                        let r = reasoning.get(sent_reasoning[sample]..).unwrap_or("");
                        if !r.is_empty() {
                            let d = json!({"reasoning_content": r, "reasoning": r});
                            emit!(a.chunk(sample, d, None, None, usage));
                        }
                        if !tail.is_empty() {
                            emit!(a.chunk(sample, json!({"content": tail}), None, None, usage));
                        }
                        if let Some(calls) = calls {
                            let d = json!({"tool_calls": a.tool_calls_json(sample, &calls, true)});
                            emit!(a.chunk(sample, d, None, None, usage));
                            finish = "tool_calls";
                        }
                    } else if let Some(delta) = a.delta_value(rest) {
                        emit!(a.chunk(sample, delta, None, None, usage));
                    }
                    let empty = a.empty_delta();
                    emit!(a.chunk(sample, empty, None, Some(finish), usage));
                }
                Some(Event::Failed(m)) => {
                    s.metrics.failed_requests.fetch_add(1, Ordering::Relaxed);
                    emit!(ApiError::internal(m).body());
                    break;
                }
                None => break,
            }
        }
        if usage {
            emit!(a.frame(Vec::new(), Some(a.usage())));
        }
        let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(out)).into_response()
}

/// The admin routes' answer: `{"success": true, "message", "weight_version"}`.
fn admin_ok(message: impl Into<String>, version: String) -> Response {
    Json(json!({"success": true, "message": message.into(), "weight_version": version}))
        .into_response()
}

/// The admin routes' failure: `{"success": false, "message"}` with its status.
fn admin_error(status: axum::http::StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"success": false, "message": message.into()})),
    )
        .into_response()
}

fn admin_bad(message: impl Into<String>) -> Response {
    admin_error(axum::http::StatusCode::BAD_REQUEST, message)
}

/// A given weight version: absent, or a non-empty string (or a number).
fn given_version(v: Option<api::Version>) -> Result<Option<String>, &'static str> {
    match v.map(api::Version::into_string) {
        Some(v) if v.trim().is_empty() => Err("weight_version must not be empty"),
        v => Ok(v),
    }
}

/// Hand a change to the engine (in order with the requests) and answer with its outcome.
async fn control(
    s: &AppState,
    make: impl FnOnce(crate::ControlReply) -> Control,
    done: String,
) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if s.engine.send(Message::Control(make(tx))).is_err() {
        return admin_error(StatusCode::INTERNAL_SERVER_ERROR, "the engine has stopped");
    }
    match rx.await {
        Ok(Ok(version)) => {
            tracing::info!("{done}: weight version {version}");
            admin_ok(done, version)
        }
        Ok(Err(ControlError::Invalid(m))) => admin_bad(m),
        Ok(Err(ControlError::NotFound(m))) => admin_error(StatusCode::NOT_FOUND, m),
        Err(_) => admin_error(StatusCode::INTERNAL_SERVER_ERROR, "the engine has stopped"),
    }
}

/// Read a model directory's tensors and check them against the served parameters (names,
/// shapes), so a bad update is refused before it is ordered among the requests.
fn read_checked(
    spec: &WeightSpec,
    dir: &Path,
) -> Result<HashMap<String, aha_model::Tensor>, String> {
    let tensors =
        aha_model::read_weights(dir, spec.dtype, &spec.device).map_err(|e| e.to_string())?;
    let mut problems: Vec<String> = Vec::new();
    let mut names: Vec<&String> = spec.shapes.keys().collect();
    names.sort();
    for name in names {
        let want = &spec.shapes[name];
        match tensors.get(name) {
            None => problems.push(format!("{name} is missing")),
            Some(t) if t.dims() != want.as_slice() => problems.push(format!(
                "{name} has shape {:?}, the served model's {want:?}",
                t.dims()
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(tensors);
    }
    let more = problems.len().saturating_sub(5);
    problems.truncate(5);
    let mut m = format!("{}: {}", dir.display(), problems.join("; "));
    if more > 0 {
        m.push_str(&format!(" (and {more} more)"));
    }
    Err(m)
}

/// `POST /update_weights_from_disk`: `{"model_path", "weight_version"?}`.
async fn update_weights(State(s): S, Body(body): Body) -> Response {
    let req: api::UpdateWeightsRequest = match api::parse(&body) {
        Ok(r) => r,
        Err(e) => return admin_bad(e.message),
    };
    let version = match given_version(req.weight_version) {
        Ok(v) => v,
        Err(m) => return admin_bad(m),
    };
    if s.weights.quantized > 0 {
        return admin_bad(format!(
            "this model holds {} linear layers quantized (a GGUF file), which cannot be updated \
             from safetensors; serve a dense model (an HF directory) to update its weights",
            s.weights.quantized
        ));
    }
    let dir = PathBuf::from(&req.model_path);
    let st = s.clone();
    let at = dir.clone();
    let tensors = match tokio::task::spawn_blocking(move || read_checked(&st.weights, &at)).await {
        Ok(Ok(t)) => t,
        Ok(Err(m)) => return admin_bad(m),
        Err(e) => return admin_bad(format!("reading {}: {e}", dir.display())),
    };
    let done = format!("updated the weights from {}", dir.display());
    control(
        &s,
        |reply| Control::SetWeights {
            tensors,
            origin: dir,
            version,
            reply,
        },
        done,
    )
    .await
}

/// `POST /v1/load_lora_adapter`: `{"lora_name", "lora_path", "weight_version"?}`.
async fn load_lora(State(s): S, Body(body): Body) -> Response {
    let req: api::LoadLoraRequest = match api::parse(&body) {
        Ok(r) => r,
        Err(e) => return admin_bad(e.message),
    };
    let version = match given_version(req.weight_version) {
        Ok(v) => v,
        Err(m) => return admin_bad(m),
    };
    if req.lora_name.trim().is_empty() {
        return admin_bad("lora_name must not be empty");
    }
    if req.lora_name == s.cfg.model_name {
        return admin_bad(format!(
            "lora_name {:?} is the base model's name",
            req.lora_name
        ));
    }
    if !s.weights.adaptable {
        return admin_bad(
            "LoRA adapters need a dense llama/qwen2 model (this one is DeepSeek-V3 or holds \
             quantized GGUF layers)",
        );
    }
    let dir = PathBuf::from(&req.lora_path);
    let (dtype, device, at) = (s.weights.dtype, s.weights.device.clone(), dir.clone());
    let read = tokio::task::spawn_blocking(move || {
        aha_model::lora::read_adapter(&at, dtype, &device).map_err(|e| e.to_string())
    })
    .await;
    let (cfg, tensors) = match read {
        Ok(Ok(x)) => x,
        Ok(Err(m)) => return admin_bad(m),
        Err(e) => return admin_bad(format!("reading {}: {e}", dir.display())),
    };
    let done = format!(
        "loaded LoRA adapter {:?} from {}",
        req.lora_name,
        dir.display()
    );
    control(
        &s,
        |reply| Control::LoadAdapter {
            name: req.lora_name,
            cfg: Box::new(cfg),
            tensors,
            dir,
            version,
            reply,
        },
        done,
    )
    .await
}

/// `POST /v1/unload_lora_adapter`: `{"lora_name"}`.
async fn unload_lora(State(s): S, Body(body): Body) -> Response {
    let req: api::UnloadLoraRequest = match api::parse(&body) {
        Ok(r) => r,
        Err(e) => return admin_bad(e.message),
    };
    let version = match given_version(req.weight_version) {
        Ok(v) => v,
        Err(m) => return admin_bad(m),
    };
    if s.shared
        .adapter()
        .is_none_or(|(name, _)| name != req.lora_name)
    {
        return admin_error(
            axum::http::StatusCode::NOT_FOUND,
            format!("no LoRA adapter named {:?} is loaded", req.lora_name),
        );
    }
    let done = format!("unloaded LoRA adapter {:?}", req.lora_name);
    control(
        &s,
        |reply| Control::RemoveAdapter {
            name: req.lora_name,
            version,
            reply,
        },
        done,
    )
    .await
}

/// `POST /pause_generation`: requests keep being accepted but none starts until
/// `/continue_generation`; running ones finish.
async fn pause(State(s): S) -> Json<Value> {
    s.shared.paused.store(true, Ordering::Release);
    Json(json!({"success": true, "message": "generation paused"}))
}

async fn resume(State(s): S) -> Json<Value> {
    s.shared.paused.store(false, Ordering::Release);
    // The engine may be waiting for a message: have it look at the flag now.
    let _ = s.engine.send(Message::Wake);
    Json(json!({"success": true, "message": "generation continues"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrouted_requests_get_one_error_shape() {
        for (status, code) in [
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ] {
            let r = unrouted(status, "m".into());
            assert_eq!(r.status(), status);
            let e = ApiError::unrouted(status, "m").body();
            assert_eq!(e["error"]["code"], code);
            assert_eq!(e["error"]["message"], "m");
        }
    }

    /// A forced choice's grammar: one call for a named function or with
    /// `parallel_tool_calls: false`, else one or more.
    #[test]
    fn parallel_tool_calls_false_forces_one_call() {
        let template = aha_text::ChatTemplate::new("{# <tool_call> #}", Default::default())
            .expect("a template");
        let named = json!({"type": "function", "function": {"name": "f"}});
        for (choice, parallel, one) in [
            (json!("required"), None, false),
            (json!("required"), Some(true), false),
            (json!("required"), Some(false), true),
            (named.clone(), None, true),
            (named, Some(false), true),
        ] {
            let req: ChatRequest = serde_json::from_value(json!({
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": choice,
                "parallel_tool_calls": parallel,
            }))
            .expect("a request");
            let (_, grammar) = tool_format(&template, &req).expect("tools");
            assert!(
                matches!(grammar, Some(aha_engine::Grammar::ToolCalls { one: o, .. }) if o == one),
                "{choice} {parallel:?}: {grammar:?}"
            );
        }
    }
}
