//! `aha serve`: OpenAI-compatible routes on aha's continuous-batching engine.
//!
//! The engine runs on its own thread (a [`aha_engine::Scheduler`] fed by a channel); each
//! HTTP request becomes one engine request whose reply channel the handler reads, so a
//! client that goes away cancels its sequences at the next step.
//!
//! Weight updates and LoRA adapters (the admin routes, for RL trainers) go through the same
//! channel: the engine lets the requests sent before one finish, applies it between two
//! schedulers, and only then starts the requests sent after it, so every response names the
//! one weight version that generated it (see `docs/serve-admin.md`).

pub mod api;
mod bias;
mod choice;
mod metrics;
mod routes;

use aha_engine::worker::{run_until_control, Held, Message};
use aha_engine::{Event, Reply, Scheduler, SchedulerConfig, WorkerStats};
use aha_model::{LoraConfig, Model, Tensor};
use aha_text::{ChatTemplate, Tokenizer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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
    /// What reported log-probabilities are of (vLLM's `--logprobs-mode`).
    pub logprobs_mode: LogprobsMode,
    /// The weight version reported until the first update.
    pub weight_version: String,
    /// How long in-flight requests may run once the server is told to stop; then they are
    /// cancelled and answered with what they have (see [`serve`]).
    pub shutdown_grace: Duration,
}

/// What reported log-probabilities are of; vLLM's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogprobsMode {
    /// The model's distribution (after any constraint mask): log-softmax of the logits.
    #[default]
    RawLogprobs,
    /// The distribution sampled from before top-k/top-p/min-p: log-softmax of the logits
    /// divided by the request's temperature (when it is above 0), what an RL trainer
    /// recomputes at its sampling temperature.
    ProcessedLogprobs,
}

impl LogprobsMode {
    /// `raw_logprobs` or `processed_logprobs`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "raw_logprobs" => Some(Self::RawLogprobs),
            "processed_logprobs" => Some(Self::ProcessedLogprobs),
            _ => None,
        }
    }
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
            logprobs_mode: LogprobsMode::default(),
            weight_version: "0".into(),
            shutdown_grace: Duration::from_secs(10),
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

/// The engine side of a request's reply channel, and the weight version that runs it (set
/// when the engine starts it, before any event).
pub struct ChannelReply {
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
    version: Arc<OnceLock<String>>,
}

impl Reply for ChannelReply {
    fn send(&mut self, event: Event) -> bool {
        self.tx.send(event).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A change of the served weights, applied by the engine thread between requests.
pub(crate) enum Control {
    /// Overwrite every parameter (already read and checked against the model's shapes).
    SetWeights {
        tensors: HashMap<String, Tensor>,
        origin: PathBuf,
        version: Option<String>,
        reply: ControlReply,
    },
    /// Attach a LoRA adapter, replacing the attached one.
    LoadAdapter {
        name: String,
        cfg: Box<LoraConfig>,
        tensors: HashMap<String, Tensor>,
        /// The adapter's directory.
        dir: PathBuf,
        version: Option<String>,
        reply: ControlReply,
    },
    /// Detach the adapter called `name`.
    RemoveAdapter {
        name: String,
        version: Option<String>,
        reply: ControlReply,
    },
}

/// The new weight version, or why nothing changed (and whether because nothing was found).
pub(crate) type ControlReply = tokio::sync::oneshot::Sender<Result<String, ControlError>>;

pub(crate) enum ControlError {
    NotFound(String),
    Invalid(String),
}

/// What the engine thread and the routes share.
#[derive(Default)]
pub(crate) struct Shared {
    /// The version of the weights now served.
    pub version: Mutex<String>,
    /// The attached adapter: (name, directory).
    pub adapter: Mutex<Option<(String, String)>>,
    /// `/pause_generation`: no request is started while set.
    pub paused: AtomicBool,
    /// Set when the shutdown grace is over: every handler stops waiting for the engine and
    /// answers with what it has, dropping its reply channel, which cancels the sequences as a
    /// client that leaves does.
    pub cancel: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn new(cfg: &ServeConfig) -> Self {
        Self {
            version: Mutex::new(cfg.weight_version.clone()),
            ..Self::default()
        }
    }
    pub fn version(&self) -> String {
        self.version.lock().map(|v| v.clone()).unwrap_or_default()
    }
    pub fn adapter(&self) -> Option<(String, String)> {
        self.adapter.lock().ok().and_then(|a| a.clone())
    }
}

pub(crate) type Msg = Message<ChannelReply, Control>;
pub(crate) type EngineTx = mpsc::Sender<Msg>;

fn scheduler_config(cfg: &ServeConfig) -> SchedulerConfig {
    SchedulerConfig {
        max_batch: cfg.max_batch,
        max_context: cfg.context,
        ..SchedulerConfig::default()
    }
}

/// Run the engine loop on this thread until every request sender is gone. Between control
/// messages it runs one scheduler; a control message is applied with none running.
fn run_engine(
    mut model: Model,
    tokenizer: &Tokenizer,
    cfg: SchedulerConfig,
    rx: mpsc::Receiver<Msg>,
    stats: &WorkerStats,
    shared: &Shared,
) {
    let mut held = Held::default();
    let mut applied = 0u64;
    loop {
        let current = shared.version();
        let control = {
            let mut sched = Scheduler::new(&model, Some(tokenizer), cfg.clone());
            run_until_control(&mut sched, &rx, &mut held, &shared.paused, stats, |req| {
                let _ = req.reply.version.set(current.clone());
            })
        };
        let Some(control) = control else {
            return;
        };
        applied += 1;
        apply(&mut model, control, shared, &current, applied);
    }
}

/// The version after an update: the given one, else the previous plus one when it is a
/// number, else the number of updates so far.
fn next_version(given: Option<String>, previous: &str, applied: u64) -> String {
    given.unwrap_or_else(|| match previous.parse::<u64>() {
        Ok(v) => v.saturating_add(1).to_string(),
        Err(_) => applied.to_string(),
    })
}

fn apply(model: &mut Model, control: Control, shared: &Shared, current: &str, applied: u64) {
    let invalid = |e: aha_model::ModelError| ControlError::Invalid(e.to_string());
    let (result, version, reply) = match control {
        Control::SetWeights {
            tensors,
            origin,
            version,
            reply,
        } => (
            model.set_weights(&tensors, &origin).map_err(invalid),
            version,
            reply,
        ),
        Control::LoadAdapter {
            name,
            cfg,
            tensors,
            dir,
            version,
            reply,
        } => {
            let path = dir.join(aha_model::lora::WEIGHTS_FILE);
            let r = model.replace_adapter(&cfg, tensors, &path).map_err(invalid);
            if r.is_ok() {
                if let Ok(mut a) = shared.adapter.lock() {
                    *a = Some((name, dir.display().to_string()));
                }
            }
            (r, version, reply)
        }
        Control::RemoveAdapter {
            name,
            version,
            reply,
        } => {
            let attached = shared.adapter().is_some_and(|(n, _)| n == name);
            let r = if attached && model.remove_adapter() {
                if let Ok(mut a) = shared.adapter.lock() {
                    *a = None;
                }
                Ok(())
            } else {
                Err(ControlError::NotFound(format!(
                    "no LoRA adapter named {name:?} is loaded"
                )))
            };
            (r, version, reply)
        }
    };
    let answer = result.map(|()| {
        let v = next_version(version, current, applied);
        if let Ok(mut cur) = shared.version.lock() {
            *cur = v.clone();
        }
        v
    });
    let _ = reply.send(answer);
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

/// What serving needs, ready to run: the bound listener, the routes' state and the engine
/// loop.
struct Parts {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    state: Arc<routes::AppState>,
    shared: Arc<Shared>,
    grace: Duration,
    engine: Box<dyn FnOnce() + Send>,
}

fn prepare(
    model: Model,
    assets: Assets,
    cfg: ServeConfig,
    host: &str,
    port: u16,
) -> Result<Parts, ServeError> {
    check(&cfg, &model)?;
    let listener = bind(host, port)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(WorkerStats::default());
    let tokenizer = assets.tokenizer.clone();
    let sched_cfg = scheduler_config(&cfg);
    let grace = cfg.shutdown_grace;
    let shared = Arc::new(Shared::new(&cfg));
    let state = routes::AppState::new(cfg, assets, &model, tx, stats.clone(), shared.clone());
    let engine_shared = shared.clone();
    let engine = Box::new(move || {
        run_engine(model, &tokenizer, sched_cfg, rx, &stats, &engine_shared);
    });
    Ok(Parts {
        listener,
        addr,
        state,
        shared,
        grace,
        engine,
    })
}

/// Serve on `host:port` until SIGINT/SIGTERM; the engine runs on the calling thread (run it
/// on a rayon worker so the numeric kernels share it), HTTP on a tokio runtime beside it.
///
/// On a signal the listener closes at once and requests in flight have
/// [`ServeConfig::shutdown_grace`] to finish. Those still running then are cancelled and
/// answered with what they have: each unfinished choice ends with `finish_reason: "length"`
/// (cut short, as by `max_tokens`: the text is a valid prefix, and the client keeps what was
/// generated), a stream then ends with `[DONE]`, and a request without a token yet gets a
/// 503 (`server_shutting_down`), which a client can retry elsewhere. A second signal during
/// the grace cancels them at once. This returns once every connection has closed and the
/// engine has stopped.
pub fn serve(
    model: Model,
    assets: Assets,
    cfg: ServeConfig,
    host: &str,
    port: u16,
) -> Result<(), ServeError> {
    let p = prepare(model, assets, cfg, host, port)?;
    let grace = p.grace;
    eprintln!("aha serve: listening on http://{}", p.addr);
    let shutdown = Shutdown::default();
    let signals = shutdown.clone();
    let on_signals = async move {
        let mut signal = ShutdownSignal::new();
        for _ in 0..2 {
            signal.recv().await;
            signals.request();
            if signals.requests() == 1 {
                eprintln!(
                    "aha serve: stopping; requests in flight have {}s to finish (signal again \
                     to cancel them now)",
                    grace.as_secs_f64()
                );
            } else {
                eprintln!("aha serve: cancelling the requests in flight now");
            }
        }
    };
    let http = http_thread(p.listener, p.state, p.shared, grace, shutdown, on_signals)?;
    (p.engine)();
    let done = http
        .join()
        .map_err(|_| ServeError::Invalid("the HTTP thread panicked".into()))?;
    eprintln!("aha serve: shut down");
    done
}

/// Run [`http`] on a runtime of its own, on a new thread.
fn http_thread(
    listener: std::net::TcpListener,
    state: Arc<routes::AppState>,
    shared: Arc<Shared>,
    grace: Duration,
    shutdown: Shutdown,
    beside: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<(), ServeError>>, ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("aha-http".into())
        .spawn(move || {
            // `beside` (the signal listener) ends with the runtime.
            rt.spawn(beside);
            rt.block_on(http(listener, state, &shared, grace, shutdown))
                .map_err(ServeError::from)
        })?;
    Ok(thread)
}

/// Answer HTTP on `listener` until the first stop request, then shut down as [`serve`]
/// says: after `grace` (or at a second request), [`Shared::cancel`]. Returns once every
/// connection has closed (the engine ends when the state, which holds its channel, is
/// dropped).
async fn http(
    listener: std::net::TcpListener,
    state: Arc<routes::AppState>,
    shared: &Shared,
    grace: Duration,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let first = shutdown.clone();
    let server = axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(async move { first.requested(1).await });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    tokio::select! {
        done = &mut server => return done,
        _ = shutdown.requested(1) => {}
    }
    tokio::select! {
        done = &mut server => return done,
        cut = shutdown.grace(grace) => {
            if cut {
                tracing::warn!("shutdown: asked again; cancelling the requests still running");
            } else {
                tracing::warn!(
                    "shutdown: cancelling the requests still running after the {}s grace",
                    grace.as_secs_f64()
                );
            }
        }
    }
    shared.cancel.send_replace(true);
    server.await
}

/// Requests to stop a server (signals, [`Running::stop`]), counted: the first closes the
/// listener and starts the grace, a second ends the grace at once (an operator who presses
/// Ctrl-C twice wants it gone now).
#[derive(Clone, Default)]
pub struct Shutdown(Arc<tokio::sync::watch::Sender<u32>>);

impl Shutdown {
    /// Ask to stop (again).
    pub fn request(&self) {
        self.0.send_modify(|n| *n = n.saturating_add(1));
    }

    /// How many times stopping was asked.
    pub fn requests(&self) -> u32 {
        *self.0.borrow()
    }

    /// Resolves once stopping was asked at least `times` times.
    async fn requested(&self, times: u32) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`: the channel cannot close while this waits.
        let _ = rx.wait_for(|n| *n >= times).await;
    }

    /// The grace after the first request: true when a second request cut it short, false
    /// when `grace` ran out.
    pub async fn grace(&self, grace: Duration) -> bool {
        tokio::select! {
            _ = self.requested(2) => true,
            _ = tokio::time::sleep(grace) => false,
        }
    }
}

/// SIGINT and SIGTERM, each delivery once: the listeners are made once, so a signal that
/// comes while the first is handled is not lost.
struct ShutdownSignal {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl ShutdownSignal {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.int) => {},
            _ = next(&mut self.term) => {},
        }
    }
}

#[cfg(not(unix))]
impl ShutdownSignal {
    fn new() -> Self {
        Self {}
    }

    /// The next Ctrl-C.
    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A server on background threads (tests, embedding); stops when dropped, or by
/// [`Running::stop`], the way [`serve`] stops on a signal.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Shutdown,
    http: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
    engine: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What stops this server, as a signal stops [`serve`]: asking once is
    /// [`Running::stop`]'s start, asking again (from another thread) ends the grace at once.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Stop accepting, give requests in flight the configured grace, cancel the rest, and
    /// return once the HTTP side and the engine have ended.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if self.http.is_some() {
            self.shutdown.request();
        }
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
        if let Some(h) = self.engine.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shut_down();
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
    let p = prepare(model, assets, cfg, host, port)?;
    let engine = std::thread::Builder::new()
        .name("aha-engine".into())
        .spawn(p.engine)?;
    let shutdown = Shutdown::default();
    let http = http_thread(
        p.listener,
        p.state,
        p.shared,
        p.grace,
        shutdown.clone(),
        async {},
    )?;
    Ok(Running {
        addr: p.addr,
        shutdown,
        http: Some(http),
        engine: Some(engine),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_request_ends_the_grace_at_once() {
        let shutdown = Shutdown::default();
        shutdown.request();
        // Only one request: the grace runs out.
        assert!(!shutdown.grace(Duration::from_millis(50)).await);
        let again = shutdown.clone();
        let asker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            again.request();
        });
        let t = std::time::Instant::now();
        let cut = tokio::time::timeout(
            Duration::from_secs(20),
            shutdown.grace(Duration::from_secs(600)),
        )
        .await
        .expect("the grace outlived a second request");
        assert!(cut, "a second request ends the grace");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert_eq!(shutdown.requests(), 2);
        asker.await.unwrap();
        // Asked twice before the grace starts: it is over at once.
        assert!(shutdown.grace(Duration::from_secs(600)).await);
    }
}
