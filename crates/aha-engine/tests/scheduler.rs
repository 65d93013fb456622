//! The continuous-batching scheduler: sequences that join a running batch at different
//! times decode as they would alone; cancellation, logits processors and log-probs.

use aha_engine::{
    generate, Event, FinishReason, GenerateOptions, LogitsProcessor, Request, RequestParams,
    SamplingParams, Scheduler, SchedulerConfig,
};
use aha_model::{LoadOptions, Model};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};

fn model(name: &str) -> Model {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../aha-model/tests/fixtures")
        .join(name);
    Model::load(&dir, &LoadOptions::default()).unwrap()
}

fn greedy(max_tokens: usize) -> RequestParams {
    RequestParams {
        sampling: SamplingParams::greedy(),
        max_tokens,
        ..Default::default()
    }
}

fn request(
    prompt: Vec<u32>,
    n: usize,
    params: RequestParams,
) -> (Request<Sender<Event>>, Receiver<Event>) {
    let (tx, rx) = channel();
    (
        Request {
            prompt,
            n,
            params,
            processor: None,
            reply: tx,
        },
        rx,
    )
}

/// Tokens per sample and finish reasons, from a request's events.
fn collect(rx: &Receiver<Event>, n: usize) -> (Vec<Vec<u32>>, Vec<Option<FinishReason>>) {
    let mut toks = vec![Vec::new(); n];
    let mut fin = vec![None; n];
    while let Ok(e) = rx.try_recv() {
        match e {
            Event::Token { sample, token, .. } => toks[sample].push(token),
            Event::Finished { sample, reason } => fin[sample] = Some(reason),
            Event::Failed(m) => panic!("failed: {m}"),
        }
    }
    (toks, fin)
}

fn alone(model: &Model, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let opts = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens,
        ..Default::default()
    };
    generate(model, None, &[prompt.to_vec()], &opts, |_| {})
        .unwrap()
        .remove(0)
        .token_ids
}

#[test]
fn late_joiners_decode_as_they_would_alone() {
    for name in ["qwen2_tied", "llama3_rope"] {
        let model = model(name);
        let cfg = SchedulerConfig {
            max_batch: 4,
            max_context: 512,
            ..Default::default()
        };
        let mut s = Scheduler::new(&model, None, cfg);
        let long: Vec<u32> = (1..40).collect();
        let short = vec![7u32, 3];
        let mid: Vec<u32> = (50..62).collect();
        let (a, ra) = request(long.clone(), 1, greedy(30));
        s.submit(a).unwrap();
        for _ in 0..5 {
            s.step().unwrap();
        }
        assert_eq!(s.batch_size(), 1);
        // A short prompt joins a batch whose cache is 44 positions wide, then a longer one.
        let (b, rb) = request(short.clone(), 1, greedy(40));
        s.submit(b).unwrap();
        s.step().unwrap();
        assert_eq!(s.batch_size(), 2);
        for _ in 0..3 {
            s.step().unwrap();
        }
        let (c, rc) = request(mid.clone(), 2, greedy(50));
        s.submit(c).unwrap();
        // The batch holds 4: a fifth sequence waits until one finishes.
        let (d, rd) = request(vec![9, 9, 9], 1, greedy(5));
        s.submit(d).unwrap();
        s.step().unwrap();
        assert_eq!(s.batch_size(), 4);
        assert_eq!(s.waiting(), 1);
        let mut steps = 0;
        while !s.is_idle() {
            s.step().unwrap();
            steps += 1;
            assert!(steps < 200);
        }
        let (ta, fa) = collect(&ra, 1);
        let (tb, _) = collect(&rb, 1);
        let (tc, fc) = collect(&rc, 2);
        let (td, _) = collect(&rd, 1);
        assert_eq!(ta[0], alone(&model, &long, 30), "{name}: first");
        assert_eq!(fa[0], Some(FinishReason::Length));
        assert_eq!(tb[0], alone(&model, &short, 40), "{name}: joined later");
        let want_c = alone(&model, &mid, 50);
        assert_eq!(tc[0], want_c, "{name}: n=2, sample 0");
        assert_eq!(tc[1], want_c, "{name}: n=2, sample 1 (greedy: same)");
        assert_eq!(fc, vec![Some(FinishReason::Length); 2]);
        assert_eq!(td[0], alone(&model, &[9, 9, 9], 5), "{name}: waited");
    }
}

#[test]
fn a_dropped_receiver_cancels_its_sequences() {
    let model = model("qwen2_tied");
    let mut s = Scheduler::new(&model, None, SchedulerConfig::default());
    let (a, ra) = request(vec![1, 2, 3], 3, greedy(100));
    let (b, rb) = request(vec![4, 5], 1, greedy(100));
    s.submit(a).unwrap();
    s.submit(b).unwrap();
    s.step().unwrap();
    assert_eq!(s.batch_size(), 4);
    drop(ra);
    s.step().unwrap();
    assert_eq!(
        s.batch_size(),
        1,
        "the 3 samples of the dropped request retire"
    );
    s.step().unwrap();
    assert_eq!(collect(&rb, 1).0[0].len(), 3);
    // A request whose caller left before it ran takes no place in the batch.
    let (c, rc) = request(vec![6], 1, greedy(100));
    s.submit(c).unwrap();
    drop(rc);
    s.step().unwrap();
    assert_eq!(s.batch_size(), 1);
    assert_eq!(s.waiting(), 0);
}

/// Forces token 42 for sample 0 and bans it for the others.
struct Force;

impl LogitsProcessor for Force {
    fn process(&mut self, sample: usize, _generated: &[u32], logits: &mut [f32]) {
        for (i, l) in logits.iter_mut().enumerate() {
            if (i == 42) != (sample == 0) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

#[test]
fn logits_processor_and_logprobs() {
    let model = model("qwen2_untied");
    let mut s = Scheduler::new(&model, None, SchedulerConfig::default());
    let (tx, rx) = channel();
    let params = RequestParams {
        sampling: SamplingParams {
            temperature: 1.0,
            ..Default::default()
        },
        max_tokens: 6,
        seed: 3,
        logprobs: Some(3),
        ..Default::default()
    };
    s.submit(Request {
        prompt: vec![1, 2, 3],
        n: 2,
        params,
        processor: Some(Box::new(Force)),
        reply: tx,
    })
    .unwrap();
    while !s.is_idle() {
        s.step().unwrap();
    }
    let mut seen = [0usize; 2];
    while let Ok(e) = rx.try_recv() {
        if let Event::Token {
            sample,
            token,
            logprob,
            ..
        } = e
        {
            seen[sample] += 1;
            let lp = logprob.expect("asked for log-probs");
            if sample == 0 {
                assert_eq!(token, 42);
                // Everything else is -inf: token 42 holds all the mass.
                assert!(lp.logprob.abs() < 1e-5, "{lp:?}");
                assert_eq!(lp.top[0].0, 42);
            } else {
                assert_ne!(token, 42);
                assert_eq!(lp.top.len(), 3);
                assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
                assert!(lp.logprob <= lp.top[0].1 && lp.logprob < 0.0);
            }
        }
    }
    assert_eq!(seen, [6, 6]);
}

#[test]
fn invalid_requests_are_answered_not_queued() {
    let model = model("qwen2_tied");
    let cfg = SchedulerConfig {
        max_batch: 2,
        max_context: 16,
        ..Default::default()
    };
    let mut s = Scheduler::new(&model, None, cfg);
    for (prompt, n, max_tokens) in [
        (vec![], 1, 4),
        (vec![999], 1, 4),
        (vec![1], 3, 4),
        (vec![1; 10], 1, 7),
    ] {
        let (r, rx) = request(prompt, n, greedy(max_tokens));
        assert!(s.submit(r).is_err());
        assert!(matches!(rx.try_recv(), Ok(Event::Failed(_))));
    }
    assert!(s.is_idle());
}

/// Forces `script` right after the first `after + 3 * sample` tokens of each sample; `fast`:
/// also says so through `forced`, so the scheduler appends them without sampling.
struct Script {
    after: usize,
    script: Vec<u32>,
    fast: bool,
}

impl Script {
    fn rest(&self, sample: usize, generated: &[u32]) -> &[u32] {
        let after = self.after + 3 * sample;
        let done = generated.len().saturating_sub(after);
        if generated.len() < after || done >= self.script.len() {
            return &[];
        }
        &self.script[done..]
    }
}

impl LogitsProcessor for Script {
    fn process(&mut self, sample: usize, generated: &[u32], logits: &mut [f32]) {
        if let Some(&t) = self.rest(sample, generated).first() {
            for (i, l) in logits.iter_mut().enumerate() {
                if i != t as usize {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    fn forced(&mut self, sample: usize, generated: &[u32]) -> Vec<u32> {
        if self.fast {
            self.rest(sample, generated).to_vec()
        } else {
            Vec::new()
        }
    }
}

const PLAIN: [u32; 3] = [40, 41, 42];

/// A plain request with the longest prompt, then two scripted samples that fast-forward at
/// different steps (so each gets padding inside its row while the other feeds), then the
/// plain one retires and the cache is compacted. Returns the scripted and the plain
/// request's tokens, the steps taken and the tokens forced.
fn run_script(
    model: &Model,
    fast: bool,
    sampling: SamplingParams,
) -> (Vec<Vec<u32>>, Vec<Vec<u32>>, usize, usize) {
    let cfg = SchedulerConfig {
        max_batch: 4,
        max_context: 512,
        ..Default::default()
    };
    let mut s = Scheduler::new(model, None, cfg);
    let params = |max_tokens| RequestParams {
        sampling: sampling.clone(),
        max_tokens,
        seed: 11,
        ..Default::default()
    };
    let long: Vec<u32> = (0..40).map(|i| PLAIN[i % 3] + i as u32).collect();
    let (b, rb) = request(long, 1, params(8));
    s.submit(b).unwrap();
    let mut forced = s.step().unwrap().forced;
    let (tx, rx) = channel();
    let script = Script {
        after: 2,
        script: vec![5, 17, 17, 30, 2, 9],
        fast,
    };
    s.submit(Request {
        prompt: (1..20).collect(),
        n: 2,
        params: params(16),
        processor: Some(Box::new(script)),
        reply: tx,
    })
    .unwrap();
    let mut steps = 1;
    while !s.is_idle() {
        forced += s.step().unwrap().forced;
        steps += 1;
        assert!(steps < 100);
    }
    let (ta, fa) = collect(&rx, 2);
    assert_eq!(fa, vec![Some(FinishReason::Length); 2]);
    let (tb, _) = collect(&rb, 1);
    (ta, tb, steps, forced)
}

#[test]
fn forced_tokens_fast_forward_to_the_same_samples_in_fewer_steps() {
    for name in ["qwen2_tied", "llama3_rope"] {
        let model = model(name);
        for sampling in [
            SamplingParams::greedy(),
            SamplingParams {
                temperature: 1.0,
                ..Default::default()
            },
        ] {
            let (slow_a, slow_b, slow_steps, slow_forced) =
                run_script(&model, false, sampling.clone());
            let (fast_a, fast_b, fast_steps, fast_forced) = run_script(&model, true, sampling);
            assert_eq!(
                &fast_a[0][2..8],
                &[5, 17, 17, 30, 2, 9],
                "{name}: the script"
            );
            assert_eq!(
                &fast_a[1][5..11],
                &[5, 17, 17, 30, 2, 9],
                "{name}: the script"
            );
            assert_eq!(fast_a, slow_a, "{name}: scripted samples");
            assert_eq!(fast_b, slow_b, "{name}: the plain request beside them");
            assert_eq!(slow_forced, 0);
            // Each script starts once its first tokens are out: all 6 appended, none sampled.
            assert_eq!(fast_forced, 2 * 6, "{name}");
            assert!(
                fast_steps < slow_steps,
                "{name}: {fast_steps} vs {slow_steps}"
            );
        }
    }
}
