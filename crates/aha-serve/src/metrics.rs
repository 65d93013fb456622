//! Prometheus text for `/metrics`.

use aha_engine::WorkerStats;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Time-to-first-token histogram bucket bounds, seconds.
const TTFT_BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
pub struct Metrics {
    pub chat_requests: AtomicU64,
    pub completion_requests: AtomicU64,
    pub failed_requests: AtomicU64,
    pub rejected_requests: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub running_requests: AtomicU64,
    /// Grammars compiled for constrained decoding and request-time schema checks.
    pub constraint_compiles: AtomicU64,
    ttft_buckets: [AtomicU64; TTFT_BUCKETS.len()],
    ttft_count: AtomicU64,
    ttft_micros: AtomicU64,
}

impl Metrics {
    pub fn observe_ttft(&self, seconds: f64) {
        for (b, &bound) in self.ttft_buckets.iter().zip(&TTFT_BUCKETS) {
            if seconds <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.ttft_count.fetch_add(1, Ordering::Relaxed);
        self.ttft_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn render(&self, engine: &WorkerStats) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        metric(
            "aha_requests_total",
            "counter",
            "Requests accepted, by endpoint.",
            &[
                (
                    "{endpoint=\"chat\"}".into(),
                    g(&self.chat_requests).to_string(),
                ),
                (
                    "{endpoint=\"completions\"}".into(),
                    g(&self.completion_requests).to_string(),
                ),
            ],
        );
        metric(
            "aha_requests_failed_total",
            "counter",
            "Requests answered with an error (4xx/5xx).",
            &one(g(&self.failed_requests).to_string()),
        );
        metric(
            "aha_requests_rejected_total",
            "counter",
            "Requests turned away because the queue was full.",
            &one(g(&self.rejected_requests).to_string()),
        );
        metric(
            "aha_requests_running",
            "gauge",
            "Requests submitted to the engine and not yet finished.",
            &one(g(&self.running_requests).to_string()),
        );
        metric(
            "aha_prompt_tokens_total",
            "counter",
            "Prompt tokens of accepted requests.",
            &one(g(&self.prompt_tokens).to_string()),
        );
        metric(
            "aha_completion_tokens_total",
            "counter",
            "Tokens generated for finished choices.",
            &one(g(&self.completion_tokens).to_string()),
        );
        metric(
            "aha_constraint_compiles_total",
            "counter",
            "Grammars compiled (answer constraints and the schema checks of offered tools).",
            &one(g(&self.constraint_compiles).to_string()),
        );
        metric(
            "aha_engine_generated_tokens_total",
            "counter",
            "Tokens sampled by the engine (cancelled sequences included).",
            &one(g(&engine.generated_tokens).to_string()),
        );
        metric(
            "aha_engine_prefill_tokens_total",
            "counter",
            "Prompt tokens prefilled by the engine (a prompt shared by n samples once).",
            &one(g(&engine.prefill_tokens).to_string()),
        );
        metric(
            "aha_engine_steps_total",
            "counter",
            "Engine steps.",
            &one(g(&engine.steps).to_string()),
        );
        metric(
            "aha_engine_busy_seconds_total",
            "counter",
            "Time the engine spent in steps.",
            &one(format!("{:.6}", g(&engine.busy_micros) as f64 / 1e6)),
        );
        metric(
            "aha_queue_length",
            "gauge",
            "Requests waiting for a place in the batch.",
            &one(engine.waiting.load(Ordering::Relaxed).to_string()),
        );
        metric(
            "aha_batch_size",
            "gauge",
            "Sequences in the running batch.",
            &one(engine.batch.load(Ordering::Relaxed).to_string()),
        );
        metric(
            "aha_tokens_per_second",
            "gauge",
            "Tokens sampled per second in the engine's last step.",
            &one(format!("{:.3}", engine.last_tokens_per_second())),
        );
        let mut lines: Vec<(String, String)> = TTFT_BUCKETS
            .iter()
            .zip(&self.ttft_buckets)
            .map(|(b, c)| (format!("_bucket{{le=\"{b}\"}}"), g(c).to_string()))
            .collect();
        lines.push((
            "_bucket{le=\"+Inf\"}".into(),
            g(&self.ttft_count).to_string(),
        ));
        lines.push((
            "_sum".into(),
            format!("{:.6}", g(&self.ttft_micros) as f64 / 1e6),
        ));
        lines.push(("_count".into(), g(&self.ttft_count).to_string()));
        metric(
            "aha_time_to_first_token_seconds",
            "histogram",
            "Time from receiving a request to its first generated token.",
            &lines,
        );
        s
    }
}
