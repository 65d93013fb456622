//! A scheduler driven by a channel of requests, for a server: the loop blocks while there
//! is nothing to do and otherwise steps, taking in new requests between steps.

use crate::scheduler::{Reply, Request, Scheduler};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// Live counters the loop keeps up to date (read by a metrics endpoint).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Requests waiting for admission (queued in the scheduler).
    pub waiting: AtomicUsize,
    /// Sequences in the running batch.
    pub batch: AtomicUsize,
    pub prefill_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub steps: AtomicU64,
    /// Busy time (in microseconds) spent in steps.
    pub busy_micros: AtomicU64,
    /// Tokens per second of the last step (f64 bits).
    pub last_tokens_per_second: AtomicU64,
}

impl WorkerStats {
    pub fn last_tokens_per_second(&self) -> f64 {
        f64::from_bits(self.last_tokens_per_second.load(Ordering::Relaxed))
    }
}

/// Run until every sender is dropped and the work is done. A failed step fails the requests
/// it held (they get `Event::Failed`) and the loop goes on.
pub fn run<R: Reply>(
    sched: &mut Scheduler<'_, R>,
    requests: Receiver<Request<R>>,
    stats: &WorkerStats,
) {
    let mut open = true;
    loop {
        // Take in whatever arrived; block only when there is nothing else to do.
        loop {
            let next = if sched.is_idle() && open {
                requests
                    .recv_timeout(Duration::from_millis(500))
                    .map_err(|e| match e {
                        RecvTimeoutError::Timeout => TryRecvError::Empty,
                        RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                    })
            } else if open {
                requests.try_recv()
            } else {
                Err(TryRecvError::Disconnected)
            };
            match next {
                // An invalid request has been answered by `submit`.
                Ok(req) => {
                    let _ = sched.submit(req);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        stats.waiting.store(sched.waiting(), Ordering::Relaxed);
        if sched.is_idle() {
            stats.batch.store(0, Ordering::Relaxed);
            if !open {
                return;
            }
            continue;
        }
        let t = Instant::now();
        match sched.step() {
            Ok(s) => {
                let dt = t.elapsed();
                stats
                    .prefill_tokens
                    .fetch_add(s.prefill_tokens as u64, Ordering::Relaxed);
                let generated = s.sampled + s.forced;
                stats
                    .generated_tokens
                    .fetch_add(generated as u64, Ordering::Relaxed);
                stats.batch.store(s.batch, Ordering::Relaxed);
                if generated > 0 {
                    let tps = generated as f64 / dt.as_secs_f64().max(1e-9);
                    stats
                        .last_tokens_per_second
                        .store(tps.to_bits(), Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::error!("engine step failed: {e}");
                sched.fail_all(&format!("generation failed: {e}"));
            }
        }
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats
            .busy_micros
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.waiting.store(sched.waiting(), Ordering::Relaxed);
    }
}
