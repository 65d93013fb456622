//! Where GRPO's rollouts come from, and how new weights reach the sampler.
//!
//! * [`Local`]: the trainer's own engine on the policy in memory (always on-policy).
//! * [`Remote`]: OpenAI-compatible `/v1/completions` servers over HTTP (`aha serve`, vLLM,
//!   SGLang), token ids in and out. Each prompt's group of `n` samples is one request, sent
//!   to the least busy live server; a failed server is skipped, retried after a backoff, and
//!   re-synced to the latest weights before it gets work again. After an optimizer step the
//!   trainer writes the policy (a model directory, or a PEFT adapter) atomically under a
//!   sync directory and tells every server to load it (`/update_weights_from_disk`, SGLang's
//!   name; `/v1/load_lora_adapter`, vLLM's). Every rollout carries the weight version that
//!   produced it (the `weight_version` a server reports, else the last one it was sent), so
//!   the trainer can drop or re-weight stale samples.
//!
//! Sampling is reproducible across sources: output `i * n + j` (sample j of prompt i) draws
//! from the RNG seeded by `(seed, i * n + j)` locally, and remotely through `seed` and aha's
//! `seed_offset` extension; servers that ignore `seed_offset` still sample, just differently.

use crate::error::{io_err, Result, TrainError};
use aha_engine::{Completion, FinishReason, GenerateOptions};
use aha_model::Model;
use aha_text::Tokenizer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to sample: `n` completions of each prompt, prompt-major (output `i * n + j`).
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    pub prompts: Vec<Vec<u32>>,
    pub n: usize,
    pub opts: GenerateOptions,
}

/// One sampled completion and where it came from.
#[derive(Debug, Clone)]
pub struct Generated {
    pub completion: Completion,
    /// The sampler's log-prob of each completion token, when the source reports them (an
    /// `aha serve --logprobs-mode processed_logprobs` server: at the sampling temperature).
    pub logprobs: Option<Vec<f32>>,
    /// The policy version (GRPO steps done) whose weights sampled it.
    pub version: u64,
}

/// Rollouts and the wall time their generation took.
pub type Timed = (Vec<Generated>, Duration);

/// Rollouts being generated.
pub enum Pending {
    Ready(Result<Timed>),
    Running(JoinHandle<Result<Timed>>),
}

impl Pending {
    /// Block until the rollouts are there.
    pub fn wait(self) -> Result<Timed> {
        match self {
            Pending::Ready(r) => r,
            Pending::Running(h) => h
                .join()
                .map_err(|_| TrainError::Invalid("a rollout thread panicked".into()))?,
        }
    }
}

/// A sampler for the trainer.
pub trait RolloutSource: Send + Sync {
    /// Start sampling `req` with the policy `policy`, whose version is `version`. A source
    /// that works elsewhere returns at once ([`Pending::Running`]), so training can overlap.
    fn submit(&self, policy: &Model, version: u64, req: RolloutRequest) -> Result<Pending>;
    /// Make the sampler use `policy`'s weights from now on, as version `version`.
    fn sync(&self, policy: &Model, version: u64) -> Result<()>;
    /// Whether `submit` runs elsewhere (so an asynchronous trainer can overlap with it).
    fn is_remote(&self) -> bool {
        false
    }
}

/// The trainer's own engine.
pub struct Local {
    pub tokenizer: Option<Tokenizer>,
}

impl RolloutSource for Local {
    fn submit(&self, policy: &Model, version: u64, req: RolloutRequest) -> Result<Pending> {
        let t0 = Instant::now();
        let out = aha_engine::generate_n(
            policy,
            self.tokenizer.as_ref(),
            &req.prompts,
            req.n,
            &req.opts,
            |_| {},
        )
        .map(|cs| {
            cs.into_iter()
                .map(|completion| Generated {
                    completion,
                    logprobs: None,
                    version,
                })
                .collect()
        })
        .map(|g| (g, t0.elapsed()))
        .map_err(TrainError::from);
        Ok(Pending::Ready(out))
    }

    fn sync(&self, _policy: &Model, _version: u64) -> Result<()> {
        Ok(())
    }
}

/// How the trainer's weights reach remote servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightSync {
    /// Servers keep their weights (sampling only, e.g. evaluation or a frozen sampler).
    None,
    /// The whole model (a LoRA adapter merged in) as a model directory:
    /// `POST /update_weights_from_disk {"model_path", "weight_version"}`.
    Full,
    /// The PEFT adapter: `POST /v1/load_lora_adapter {"lora_name", "lora_path"}`; requests
    /// then name the adapter as their model.
    Lora,
}

/// The remote servers and how to talk to them.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Base URLs, e.g. `http://127.0.0.1:8000`.
    pub urls: Vec<String>,
    /// Sent as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Longest wait for one request (a whole group of samples).
    pub timeout: Duration,
    /// Tries per request (each on the least busy live server) before the step fails.
    pub attempts: usize,
    /// A failed server rests this long, doubling with each failure in a row (up to 30 s).
    pub backoff: Duration,
    pub sync: WeightSync,
    /// Where synced weights are written (one subdirectory per version; the last two kept).
    pub sync_dir: PathBuf,
    /// The adapter's name on the servers (`WeightSync::Lora`).
    pub lora_name: String,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            api_key: None,
            timeout: Duration::from_secs(600),
            attempts: 8,
            backoff: Duration::from_millis(500),
            sync: WeightSync::Full,
            sync_dir: PathBuf::from("rollout-sync"),
            lora_name: "aha-policy".into(),
        }
    }
}

struct Endpoint {
    url: String,
    /// The served model's id (from `/v1/models`), learned on first contact.
    model: Option<String>,
    in_flight: usize,
    /// Resting after a failure until then.
    down_until: Option<Instant>,
    failures: u32,
    /// The sync version this server was last told to load.
    version: Option<u64>,
}

/// The latest weights written for the servers.
#[derive(Clone)]
struct SyncPoint {
    version: u64,
    path: PathBuf,
}

struct Fleet {
    cfg: RemoteConfig,
    endpoints: Mutex<Vec<Endpoint>>,
    latest: Mutex<Option<SyncPoint>>,
    agent: ureq::Agent,
}

/// OpenAI-compatible rollout servers.
pub struct Remote {
    fleet: Arc<Fleet>,
}

/// A request's failure: worth retrying elsewhere (the server or the network failed), or not
/// (the server refused the request itself).
enum Failure {
    Retry(String),
    Fatal(String),
}

impl Remote {
    /// Servers at `cfg.urls`; each is asked for its model id now (an unreachable one is
    /// retried later, but at least one must answer).
    pub fn new(cfg: RemoteConfig) -> Result<Self> {
        if cfg.urls.is_empty() || cfg.attempts == 0 {
            return Err(TrainError::Invalid(
                "remote rollouts need at least one server URL and one attempt".into(),
            ));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(cfg.timeout)
            .build();
        let endpoints = cfg
            .urls
            .iter()
            .map(|u| Endpoint {
                url: u.trim_end_matches('/').to_string(),
                model: None,
                in_flight: 0,
                down_until: None,
                failures: 0,
                version: None,
            })
            .collect();
        let fleet = Arc::new(Fleet {
            cfg,
            endpoints: Mutex::new(endpoints),
            latest: Mutex::new(None),
            agent,
        });
        let mut alive = 0;
        for i in 0..fleet.len() {
            match fleet.contact(i) {
                Ok(()) => alive += 1,
                Err(e) => {
                    tracing::warn!("{e}; will retry");
                    fleet.rest(i);
                }
            }
        }
        if alive == 0 {
            return Err(TrainError::Invalid(format!(
                "no rollout server answers (tried {})",
                fleet.cfg.urls.join(", ")
            )));
        }
        Ok(Self { fleet })
    }
}

impl Fleet {
    fn len(&self) -> usize {
        self.endpoints.lock().map_or(0, |e| e.len())
    }

    fn url(&self, i: usize) -> String {
        self.endpoints
            .lock()
            .map(|e| e[i].url.clone())
            .unwrap_or_default()
    }

    fn get(&self, url: &str) -> std::result::Result<Value, Failure> {
        let mut r = self.agent.get(url);
        if let Some(k) = &self.cfg.api_key {
            r = r.set("Authorization", &format!("Bearer {k}"));
        }
        read(r.call(), url)
    }

    fn post(&self, url: &str, body: &Value) -> std::result::Result<Value, Failure> {
        let mut r = self.agent.post(url);
        if let Some(k) = &self.cfg.api_key {
            r = r.set("Authorization", &format!("Bearer {k}"));
        }
        read(r.send_json(body), url)
    }

    /// Health check, model id, and the latest weights if the server lacks them (a restarted
    /// server comes back with its initial weights).
    fn contact(&self, i: usize) -> std::result::Result<(), String> {
        let url = self.url(i);
        let models = self.get(&format!("{url}/v1/models")).map_err(msg)?;
        let id = models["data"][0]["id"].as_str().map(str::to_string);
        let latest = self.latest.lock().map_err(|_| "poisoned lock")?.clone();
        if let Some(p) = &latest {
            self.send_sync(&url, p).map_err(msg)?;
        }
        let mut e = self.endpoints.lock().map_err(|_| "poisoned lock")?;
        e[i].model = id;
        // The version it was just sent, not one another thread may have written since.
        e[i].version = latest.map(|p| p.version);
        e[i].down_until = None;
        e[i].failures = 0;
        Ok(())
    }

    /// Mark server i failed: it rests, longer after each failure in a row.
    fn rest(&self, i: usize) {
        if let Ok(mut e) = self.endpoints.lock() {
            let f = e[i].failures.min(6);
            let wait = (self.cfg.backoff * 2u32.pow(f)).min(Duration::from_secs(30));
            e[i].down_until = Some(Instant::now() + wait);
            e[i].failures += 1;
            e[i].version = None;
        }
    }

    /// The least busy live server (a rested one is re-contacted first), waiting while none is.
    fn acquire(&self) -> Result<(usize, String, Option<String>, Option<u64>)> {
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            let (pick, revive, wake) = {
                let e = self
                    .endpoints
                    .lock()
                    .map_err(|_| TrainError::Invalid("poisoned lock".into()))?;
                let now = Instant::now();
                let live = (0..e.len())
                    .filter(|&i| e[i].down_until.is_none())
                    .min_by_key(|&i| e[i].in_flight);
                let revive = (0..e.len()).find(|&i| e[i].down_until.is_some_and(|t| t <= now));
                let wake = e.iter().filter_map(|x| x.down_until).min();
                (live, revive, wake)
            };
            if let Some(i) = revive {
                match self.contact(i) {
                    Ok(()) => tracing::info!("{}: back", self.url(i)),
                    Err(m) => {
                        tracing::warn!("still down: {m}");
                        self.rest(i);
                    }
                }
                continue;
            }
            if let Some(i) = pick {
                let mut e = self
                    .endpoints
                    .lock()
                    .map_err(|_| TrainError::Invalid("poisoned lock".into()))?;
                if e[i].down_until.is_none() {
                    e[i].in_flight += 1;
                    return Ok((i, e[i].url.clone(), e[i].model.clone(), e[i].version));
                }
                continue;
            }
            if Instant::now() > deadline {
                return Err(TrainError::Invalid(format!(
                    "every rollout server has been down for {:?}",
                    self.cfg.timeout
                )));
            }
            let nap = wake
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(self.cfg.backoff)
                .max(Duration::from_millis(10));
            std::thread::sleep(nap);
        }
    }

    fn release(&self, i: usize, ok: bool) {
        if let Ok(mut e) = self.endpoints.lock() {
            e[i].in_flight = e[i].in_flight.saturating_sub(1);
            if ok {
                e[i].failures = 0;
            }
        }
        if !ok {
            self.rest(i);
        }
    }

    /// Tell one server to load the weights at `p`.
    fn send_sync(&self, url: &str, p: &SyncPoint) -> std::result::Result<(), Failure> {
        let path = p.path.display().to_string();
        let version = p.version.to_string();
        let (route, body) = match self.cfg.sync {
            WeightSync::None => return Ok(()),
            WeightSync::Full => (
                "update_weights_from_disk",
                json!({"model_path": path, "weight_version": version}),
            ),
            WeightSync::Lora => (
                "v1/load_lora_adapter",
                json!({"lora_name": self.cfg.lora_name, "lora_path": path,
                       "load_inplace": true, "weight_version": version}),
            ),
        };
        let v = self.post(&format!("{url}/{route}"), &body)?;
        if v["success"] == json!(false) {
            return Err(Failure::Fatal(format!(
                "{url}/{route}: {}",
                v["message"].as_str().unwrap_or("refused")
            )));
        }
        Ok(())
    }

    /// One group: prompt `i`'s `n` samples, retried on other servers when one fails.
    fn group(&self, req: &RolloutRequest, i: usize, version: u64) -> Result<Vec<Generated>> {
        let o = &req.opts;
        let mut last = String::new();
        for _ in 0..self.cfg.attempts {
            let (e, url, model, synced) = self.acquire()?;
            let model = match self.cfg.sync {
                WeightSync::Lora if synced.is_some() => Some(self.cfg.lora_name.clone()),
                _ => model,
            };
            let mut body = json!({
                "prompt": req.prompts[i],
                "n": req.n,
                "max_tokens": o.max_tokens,
                "temperature": o.sampling.temperature,
                "top_p": o.sampling.top_p,
                // OpenAI seeds are i64; aha serve reads the same 64 bits back.
                "seed": o.seed as i64,
                "seed_offset": (i * req.n) as u64,
                "stop_token_ids": o.stop_token_ids,
                "ignore_eos": o.ignore_eos,
                "logprobs": 0,
                "return_token_ids": true,
            });
            if let Some(m) = model {
                body["model"] = json!(m);
            }
            if o.sampling.top_k > 0 {
                body["top_k"] = json!(o.sampling.top_k);
            }
            if o.sampling.min_p > 0.0 {
                body["min_p"] = json!(o.sampling.min_p);
            }
            if !o.stop_strings.is_empty() {
                body["stop"] = json!(o.stop_strings);
            }
            let r = self
                .post(&format!("{url}/v1/completions"), &body)
                .and_then(|v| parse_choices(&v, req.n, synced.unwrap_or(version)));
            match r {
                Ok(g) => {
                    self.release(e, true);
                    return Ok(g);
                }
                Err(Failure::Fatal(m)) => {
                    self.release(e, true);
                    return Err(TrainError::Invalid(m));
                }
                Err(Failure::Retry(m)) => {
                    tracing::warn!("{m}; retrying elsewhere");
                    last = m;
                    self.release(e, false);
                }
            }
        }
        Err(TrainError::Invalid(format!(
            "a rollout request failed {} times; last: {last}",
            self.cfg.attempts
        )))
    }
}

fn msg(f: Failure) -> String {
    match f {
        Failure::Retry(m) | Failure::Fatal(m) => m,
    }
}

/// A response's JSON: transport failures and 5xx are worth a retry, 4xx are not (except 429).
fn read(
    r: std::result::Result<ureq::Response, ureq::Error>,
    url: &str,
) -> std::result::Result<Value, Failure> {
    match r {
        Ok(resp) => resp
            .into_json::<Value>()
            .map_err(|e| Failure::Retry(format!("{url}: unreadable answer: {e}"))),
        Err(ureq::Error::Status(code, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let m = format!(
                "{url}: HTTP {code}: {}",
                text.chars().take(300).collect::<String>()
            );
            if code >= 500 || code == 429 {
                Err(Failure::Retry(m))
            } else {
                Err(Failure::Fatal(m))
            }
        }
        Err(ureq::Error::Transport(t)) => Err(Failure::Retry(format!("{url}: {}", transport(&t)))),
    }
}

/// A transport failure without its URL (ureq's `Display` leads with it; our messages already
/// name the endpoint).
fn transport(t: &ureq::Transport) -> String {
    let mut m = t.kind().to_string();
    if let Some(detail) = t.message() {
        m += &format!(": {detail}");
    }
    if let Some(source) = std::error::Error::source(t) {
        m += &format!(": {source}");
    }
    m
}

/// The `n` choices of a `/v1/completions` answer with token ids (and log-probs if given).
fn parse_choices(
    v: &Value,
    n: usize,
    fallback: u64,
) -> std::result::Result<Vec<Generated>, Failure> {
    let version = v["weight_version"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| v["weight_version"].as_u64())
        .unwrap_or(fallback);
    let choices = v["choices"]
        .as_array()
        .ok_or_else(|| Failure::Fatal("the answer has no choices".into()))?;
    if choices.len() != n {
        return Err(Failure::Fatal(format!(
            "asked for {n} samples, got {}",
            choices.len()
        )));
    }
    let mut out: Vec<(u64, Generated)> = Vec::with_capacity(n);
    for c in choices {
        let ids = c["token_ids"].as_array().ok_or_else(|| {
            Failure::Fatal(
                "the server returned no token_ids (it needs return_token_ids: aha serve, vLLM >= 0.10.2)"
                    .into(),
            )
        })?;
        let token_ids = ids
            .iter()
            .map(|t| t.as_u64().map(|x| x as u32))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| Failure::Fatal("token_ids holds a non-integer".into()))?;
        let logprobs = c["logprobs"]["token_logprobs"].as_array().and_then(|l| {
            let lp: Option<Vec<f32>> = l.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
            lp.filter(|lp| lp.len() == token_ids.len())
        });
        let finish_reason = match c["finish_reason"].as_str() {
            Some("length") => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        out.push((
            c["index"].as_u64().unwrap_or(out.len() as u64),
            Generated {
                completion: Completion {
                    token_ids,
                    text: Some(c["text"].as_str().unwrap_or_default().to_string()),
                    finish_reason,
                },
                logprobs,
                version,
            },
        ));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, g)| g).collect())
}

impl RolloutSource for Remote {
    fn submit(&self, _policy: &Model, version: u64, req: RolloutRequest) -> Result<Pending> {
        let fleet = self.fleet.clone();
        let h = std::thread::Builder::new()
            .name("aha-rollouts".into())
            .spawn(move || -> Result<Timed> {
                let t0 = Instant::now();
                let req = &req;
                let fleet = &fleet;
                let groups: Vec<Result<Vec<Generated>>> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..req.prompts.len())
                        .map(|i| s.spawn(move || fleet.group(req, i, version)))
                        .collect();
                    hs.into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(TrainError::Invalid("a rollout thread panicked".into()))
                            })
                        })
                        .collect()
                });
                let mut out = Vec::with_capacity(req.prompts.len() * req.n);
                for g in groups {
                    out.extend(g?);
                }
                Ok((out, t0.elapsed()))
            })
            .map_err(|e| TrainError::Invalid(format!("starting the rollout thread: {e}")))?;
        Ok(Pending::Running(h))
    }

    fn sync(&self, policy: &Model, version: u64) -> Result<()> {
        let f = &self.fleet;
        if f.cfg.sync == WeightSync::None {
            return Ok(());
        }
        let path = write_weights(policy, &f.cfg.sync_dir, version, f.cfg.sync)?;
        let p = SyncPoint { version, path };
        *f.latest
            .lock()
            .map_err(|_| TrainError::Invalid("poisoned lock".into()))? = Some(p.clone());
        let targets: Vec<(usize, String)> = {
            let e = f
                .endpoints
                .lock()
                .map_err(|_| TrainError::Invalid("poisoned lock".into()))?;
            (0..e.len())
                .filter(|&i| e[i].down_until.is_none())
                .map(|i| (i, e[i].url.clone()))
                .collect()
        };
        let results: Vec<(usize, std::result::Result<(), Failure>)> = std::thread::scope(|s| {
            let hs: Vec<_> = targets
                .iter()
                .map(|(i, url)| {
                    let p = &p;
                    s.spawn(move || (*i, f.send_sync(url, p)))
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (i, r) in results {
            match r {
                Ok(()) => {
                    if let Ok(mut e) = f.endpoints.lock() {
                        e[i].version = Some(version);
                    }
                }
                Err(Failure::Fatal(m)) => return Err(TrainError::Invalid(m)),
                Err(Failure::Retry(m)) => {
                    // Down now: it is re-synced when it comes back.
                    tracing::warn!("weight sync: {m}");
                    f.rest(i);
                }
            }
        }
        prune(&f.cfg.sync_dir, version);
        Ok(())
    }

    fn is_remote(&self) -> bool {
        true
    }
}

/// Write the policy for the servers under `dir/v{version}` (whole model or adapter), via a
/// temporary directory and a rename so a server never reads half of it. Returns the
/// absolute path.
fn write_weights(policy: &Model, dir: &Path, version: u64, how: WeightSync) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let dir = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    let fin = dir.join(format!("v{version}"));
    let tmp = dir.join(format!(".v{version}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    match how {
        WeightSync::Lora => policy.save_adapter(&tmp)?,
        _ => policy.save(&tmp)?,
    }
    if fin.exists() {
        std::fs::remove_dir_all(&fin).map_err(io_err(&fin))?;
    }
    std::fs::rename(&tmp, &fin).map_err(io_err(&fin))?;
    Ok(fin)
}

/// Keep the newest two synced versions on disk.
fn prune(dir: &Path, version: u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let old = name
            .strip_prefix('v')
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v + 1 < version);
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_failure_names_the_url_once() {
        // Port 1 on the loopback: nothing listens, the connection is refused at once.
        let url = "http://127.0.0.1:1/v1/models";
        let m = match read(ureq::get(url).call(), url) {
            Err(Failure::Retry(m)) => m,
            other => panic!("expected a retryable failure, got {:?}", other.map_err(msg)),
        };
        assert_eq!(m.matches("127.0.0.1:1").count(), 1, "{m}");
        assert!(m.starts_with(url) && m.contains("Connection Failed"), "{m}");
    }
}
