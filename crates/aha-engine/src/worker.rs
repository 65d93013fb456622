//! A scheduler driven by a channel of requests, for a server: the loop blocks while there
//! is nothing to do and otherwise steps, taking in new requests between steps.
//!
//! [`run_until_control`] also takes control messages through the same channel (weight
//! updates): one runs once every request sent before it has finished and before any request
//! sent after it starts, so each request runs on one set of weights.

use crate::scheduler::{Reply, Request, Scheduler};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
        step(sched, stats);
        stats.waiting.store(sched.waiting(), Ordering::Relaxed);
    }
}

/// One scheduler step with its counters; a failed step fails the requests it held.
fn step<R: Reply>(sched: &mut Scheduler<'_, R>, stats: &WorkerStats) {
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
}

/// What a server's engine thread receives.
pub enum Message<R, C> {
    Request(Request<R>),
    /// Taken once every request sent before it has finished, before any sent after it is
    /// admitted (see [`run_until_control`]).
    Control(C),
    /// Look at the pause flag again (sent after clearing it).
    Wake,
}

/// Requests and control messages taken from the channel but not yet acted on; kept across
/// calls of [`run_until_control`] (the scheduler is rebuilt between them).
pub struct Held<R, C>(VecDeque<Message<R, C>>);

impl<R, C> Default for Held<R, C> {
    fn default() -> Self {
        Self(VecDeque::new())
    }
}

impl<R, C> Held<R, C> {
    fn requests(&self) -> usize {
        self.0
            .iter()
            .filter(|m| matches!(m, Message::Request(_)))
            .count()
    }
}

/// Run the scheduler until a control message's turn comes, and return it; None once every
/// sender is gone and the work is done.
///
/// Requests are submitted in channel order, each after `on_submit` (e.g. to tell it which
/// weights will run it). A control message waits until the scheduler is idle (the requests
/// before it have finished) and the requests after it stay held until the caller has acted
/// on it and called again. While `paused` is set no request is submitted (the running ones
/// finish), and a control message may pass the held requests: they were not started, and
/// run on what is current when generation continues.
pub fn run_until_control<R: Reply, C>(
    sched: &mut Scheduler<'_, R>,
    requests: &Receiver<Message<R, C>>,
    held: &mut Held<R, C>,
    paused: &AtomicBool,
    stats: &WorkerStats,
    mut on_submit: impl FnMut(&mut Request<R>),
) -> Option<C> {
    let mut open = true;
    loop {
        // Take in whatever arrived; block only when there is nothing else to do.
        loop {
            let stalled = held.0.is_empty() || paused.load(Ordering::Acquire);
            let next = if !open {
                Err(TryRecvError::Disconnected)
            } else if sched.is_idle() && stalled {
                requests
                    .recv_timeout(Duration::from_millis(500))
                    .map_err(|e| match e {
                        RecvTimeoutError::Timeout => TryRecvError::Empty,
                        RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                    })
            } else {
                requests.try_recv()
            };
            match next {
                Ok(Message::Wake) => {}
                Ok(m) => held.0.push_back(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Nothing can resume a pause once every sender is gone: finish what is held.
        let paused = open && paused.load(Ordering::Acquire);
        while !paused && matches!(held.0.front(), Some(Message::Request(_))) {
            if let Some(Message::Request(mut req)) = held.0.pop_front() {
                on_submit(&mut req);
                // An invalid request has been answered by `submit`.
                let _ = sched.submit(req);
            }
        }
        if sched.is_idle() {
            let at = if paused {
                held.0.iter().position(|m| matches!(m, Message::Control(_)))
            } else {
                Some(0).filter(|_| matches!(held.0.front(), Some(Message::Control(_))))
            };
            if let Some(Message::Control(c)) = at.and_then(|i| held.0.remove(i)) {
                stats.waiting.store(held.requests(), Ordering::Relaxed);
                return Some(c);
            }
        }
        stats
            .waiting
            .store(sched.waiting() + held.requests(), Ordering::Relaxed);
        if sched.is_idle() {
            stats.batch.store(0, Ordering::Relaxed);
            if !open && held.0.is_empty() {
                return None;
            }
            continue;
        }
        step(sched, stats);
        stats
            .waiting
            .store(sched.waiting() + held.requests(), Ordering::Relaxed);
    }
}
