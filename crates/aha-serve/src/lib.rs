//! `aha serve`: OpenAI-compatible routes on aha's continuous-batching engine.
//!
//! The engine runs on its own thread (a [`aha_engine::Scheduler`] fed by a channel); each
//! HTTP request becomes one engine request whose reply channel the handler reads, so a
//! client that goes away cancels its sequences at the next step.

pub mod api;
mod choice;
mod metrics;
mod routes;

use aha_engine::{Event, Reply, Request, Scheduler, SchedulerConfig, WorkerStats};
use aha_model::Model;
use aha_text::{ChatTemplate, Tokenizer};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The name `/v1/models` lists and responses carry.
    pub model_name: String,
    /// Required as `Authorization: Bearer KEY` on `/v1/*` when set.
    pub api_key: Option<String>,
    /// Most sequences decoding at once (also the largest `n`).
    pub max_batch: usize,
    /// Most tokens (prompt + completion) per sequence.
    pub context: usize,
    /// Requests allowed to wait beyond a full batch before new ones get 503.
    pub max_queue: usize,
    /// `max_tokens` when a request gives none (capped by what the context leaves).
    pub default_max_tokens: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            model_name: "aha".into(),
            api_key: None,
            max_batch: 32,
            context: 4096,
            max_queue: 256,
            default_max_tokens: 1024,
        }
    }
}

/// What the server needs of the model besides its weights.
pub struct Assets {
    pub tokenizer: Tokenizer,
    /// Needed by `/v1/chat/completions` only.
    pub template: Option<ChatTemplate>,
    pub eos_token_ids: Vec<u32>,
    pub vocab_size: usize,
    /// Per-request logits processors, made from the prompt's ids (tests, experiments).
    pub logits_processor: Option<ProcessorFactory>,
    /// Compiles `response_format` and the grammar extensions (None: the tokenizer's
    /// vocabulary could not be read, and such requests are refused).
    pub constrainer: Option<aha_engine::Constrainer>,
}

/// Makes a request's logits processor from its prompt ids (None: no processor).
pub type ProcessorFactory =
    Arc<dyn Fn(&[u32]) -> Option<Box<dyn aha_engine::LogitsProcessor>> + Send + Sync>;

/// The engine side of a request's reply channel.
pub struct ChannelReply(tokio::sync::mpsc::UnboundedSender<Event>);

impl Reply for ChannelReply {
    fn send(&mut self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

pub(crate) type EngineTx = mpsc::Sender<Request<ChannelReply>>;

fn scheduler_config(cfg: &ServeConfig) -> SchedulerConfig {
    SchedulerConfig {
        max_batch: cfg.max_batch,
        max_context: cfg.context,
        ..SchedulerConfig::default()
    }
}

/// Run the engine loop on this thread until every request sender is gone.
fn run_engine(
    model: &Model,
    tokenizer: &Tokenizer,
    cfg: SchedulerConfig,
    rx: mpsc::Receiver<Request<ChannelReply>>,
    stats: &WorkerStats,
) {
    let mut sched = Scheduler::new(model, Some(tokenizer), cfg);
    aha_engine::worker::run(&mut sched, rx, stats);
}

fn bind(host: &str, port: u16) -> Result<std::net::TcpListener, ServeError> {
    let addr = format!("{host}:{port}");
    let l = std::net::TcpListener::bind(&addr).map_err(|source| ServeError::Bind {
        addr: addr.clone(),
        source,
    })?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn check(cfg: &ServeConfig, model: &Model) -> Result<(), ServeError> {
    if cfg.max_batch == 0 || cfg.context < 2 {
        return Err(ServeError::Invalid(
            "max batch must be at least 1 and the context at least 2 tokens".into(),
        ));
    }
    if let Some(max) = model
        .config()
        .get("max_position_embeddings")
        .and_then(|v| v.as_u64())
    {
        if cfg.context as u64 > max {
            tracing::warn!(
                "context {} is longer than the model's max_position_embeddings ({max})",
                cfg.context
            );
        }
    }
    Ok(())
}

/// Serve on `host:port` until SIGINT/SIGTERM; the engine runs on the calling thread (run it
/// on a rayon worker so the numeric kernels share it), HTTP on a tokio runtime beside it.
/// On a signal the listener closes, in-flight requests finish, and this returns.
pub fn serve(
    model: Model,
    assets: Assets,
    cfg: ServeConfig,
    host: &str,
    port: u16,
) -> Result<(), ServeError> {
    check(&cfg, &model)?;
    let listener = bind(host, port)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(WorkerStats::default());
    let tokenizer = assets.tokenizer.clone();
    let sched_cfg = scheduler_config(&cfg);
    let state = routes::AppState::new(cfg, assets, tx, stats.clone());
    let http = std::thread::Builder::new().name("aha-http".into()).spawn(
        move || -> Result<(), ServeError> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                eprintln!("aha serve: listening on http://{addr}");
                axum::serve(listener, routes::router(state))
                    .with_graceful_shutdown(shutdown_signal())
                    .await?;
                eprintln!("aha serve: shut down");
                Ok(())
            })
        },
    )?;
    run_engine(&model, &tokenizer, sched_cfg, rx, &stats);
    http.join()
        .map_err(|_| ServeError::Invalid("the HTTP thread panicked".into()))?
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A server on background threads (tests, embedding); stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<std::thread::JoinHandle<()>>,
    engine: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
        if let Some(h) = self.engine.take() {
            let _ = h.join();
        }
    }
}

/// Start serving on `host:port` (port 0: any free one) on background threads.
pub fn spawn(
    model: Model,
    assets: Assets,
    cfg: ServeConfig,
    host: &str,
    port: u16,
) -> Result<Running, ServeError> {
    check(&cfg, &model)?;
    let listener = bind(host, port)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(WorkerStats::default());
    let tokenizer = assets.tokenizer.clone();
    let sched_cfg = scheduler_config(&cfg);
    let engine_stats = stats.clone();
    let engine = std::thread::Builder::new()
        .name("aha-engine".into())
        .spawn(move || run_engine(&model, &tokenizer, sched_cfg, rx, &engine_stats))?;
    let state = routes::AppState::new(cfg, assets, tx, stats);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let http = std::thread::Builder::new()
        .name("aha-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, routes::router(state))
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            })
        })?;
    Ok(Running {
        addr,
        stop: Some(stop),
        http: Some(http),
        engine: Some(engine),
    })
}
