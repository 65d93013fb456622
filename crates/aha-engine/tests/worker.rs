//! The engine loop of a server: control messages in order with requests, pausing, and
//! log-probs reported at a temperature.

use aha_engine::worker::{run_until_control, Held, Message};
use aha_engine::{
    Event, FinishReason, Request, RequestParams, SamplingParams, Scheduler, SchedulerConfig,
    WorkerStats,
};
use aha_model::{LoadOptions, Model, Tensor};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};

fn model() -> Model {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../aha-model/tests/fixtures/qwen2_tied");
    Model::load(&dir, &LoadOptions::default()).unwrap()
}

fn request(prompt: Vec<u32>, params: RequestParams) -> (Request<Sender<Event>>, Receiver<Event>) {
    let (tx, rx) = channel();
    let r = Request {
        prompt,
        n: 1,
        params,
        processor: None,
        reply: tx,
    };
    (r, rx)
}

fn greedy(max_tokens: usize) -> RequestParams {
    RequestParams {
        sampling: SamplingParams::greedy(),
        max_tokens,
        ..Default::default()
    }
}

fn finished(rx: &Receiver<Event>) -> bool {
    rx.try_iter().any(|e| {
        matches!(
            e,
            Event::Finished {
                reason: FinishReason::Length,
                ..
            }
        )
    })
}

#[test]
fn a_control_message_waits_for_the_requests_before_it() {
    let model = model();
    let stats = WorkerStats::default();
    let paused = AtomicBool::new(false);
    let (tx, rx) = channel::<Message<Sender<Event>, u32>>();
    let (a, ra) = request(vec![1, 2, 3], greedy(20));
    let (b, rb) = request(vec![4, 5], greedy(5));
    tx.send(Message::Request(a)).unwrap();
    tx.send(Message::Control(1)).unwrap();
    tx.send(Message::Request(b)).unwrap();
    let mut held = Held::default();
    let mut submitted = Vec::new();
    let mut sched = Scheduler::new(&model, None, SchedulerConfig::default());
    let c = run_until_control(&mut sched, &rx, &mut held, &paused, &stats, |r| {
        submitted.push(r.prompt.clone())
    });
    assert_eq!(c, Some(1));
    assert!(finished(&ra), "the request before it finished");
    assert!(rb.try_recv().is_err(), "the one after it has not started");
    assert_eq!(submitted, vec![vec![1, 2, 3]]);

    // Paused: nothing starts, and a control message passes the held request.
    paused.store(true, Ordering::Release);
    let (c3, rc) = request(vec![6], greedy(3));
    tx.send(Message::Control(2)).unwrap();
    tx.send(Message::Request(c3)).unwrap();
    let mut sched = Scheduler::new(&model, None, SchedulerConfig::default());
    let c = run_until_control(&mut sched, &rx, &mut held, &paused, &stats, |r| {
        submitted.push(r.prompt.clone())
    });
    assert_eq!(c, Some(2));
    assert!(rb.try_recv().is_err() && rc.try_recv().is_err());
    paused.store(false, Ordering::Release);
    tx.send(Message::Wake).unwrap();
    drop(tx);
    let mut sched = Scheduler::new(&model, None, SchedulerConfig::default());
    let c = run_until_control(&mut sched, &rx, &mut held, &paused, &stats, |r| {
        submitted.push(r.prompt.clone())
    });
    assert_eq!(c, None);
    assert!(finished(&rb) && finished(&rc));
    assert_eq!(submitted, vec![vec![1, 2, 3], vec![4, 5], vec![6]]);
}

#[test]
fn logprobs_at_a_temperature() {
    let model = model();
    let prompt = vec![3u32, 1, 4, 1, 5];
    let run = |logprob_temperature: f32| {
        let mut s = Scheduler::new(&model, None, SchedulerConfig::default());
        let params = RequestParams {
            sampling: SamplingParams {
                temperature: 0.5,
                top_k: 3,
                ..Default::default()
            },
            max_tokens: 6,
            seed: 9,
            logprobs: Some(1),
            logprob_temperature,
            ..Default::default()
        };
        let (r, rx) = request(prompt.clone(), params);
        s.submit(r).unwrap();
        while !s.is_idle() {
            s.step().unwrap();
        }
        let mut out = Vec::new();
        for e in rx.try_iter() {
            if let Event::Token { token, logprob, .. } = e {
                out.push((token, logprob.unwrap().logprob));
            }
        }
        out
    };
    let raw = run(1.0);
    let tempered = run(0.5);
    let tokens: Vec<u32> = raw.iter().map(|x| x.0).collect();
    assert_eq!(tokens, tempered.iter().map(|x| x.0).collect::<Vec<_>>());
    let seq: Vec<u32> = prompt.iter().chain(&tokens).copied().collect();
    let logits = aha_engine::full_logits(&model, &seq).unwrap();
    let logits = logits.narrow(0, prompt.len() - 1, tokens.len()).unwrap();
    let targets = Tensor::new(tokens.as_slice(), model.device()).unwrap();
    for (scale, got) in [(1.0, &raw), (2.0, &tempered)] {
        let (want, _) = aha_model::ops::token_logprobs(&logits, &targets, scale).unwrap();
        let want: Vec<f32> = want.to_vec1().unwrap();
        for ((_, g), w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "scale {scale}: {g} vs {w}");
        }
    }
}
