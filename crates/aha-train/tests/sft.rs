//! Supervised fine-tuning: exact gradient accumulation, packing, labels of real chat
//! templates, and exact resume.

use crate::common;

use aha_model::{LoraConfig, Model};
use aha_text::{ChatMessage, ChatTemplate, Tokenizer};
use aha_train::sft::{self, Example, Nll, SftConfig, IGNORE};
use aha_train::trainer::{OptimConfig, Trainer};
use std::path::{Path, PathBuf};

/// `n` examples over the fixture's 256-token vocabulary: a prompt of 2..5 untrained tokens,
/// then 2..9 trained ones; lengths differ so that per-sequence and per-token means differ.
fn examples(n: usize, seed: u64) -> Vec<Example> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |m: u64| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % m
    };
    (0..n)
        .map(|_| {
            let p = 2 + next(4) as usize;
            let c = 2 + next(8) as usize;
            let ids: Vec<u32> = (0..p + c).map(|_| 1 + next(255) as u32).collect();
            let labels = ids
                .iter()
                .enumerate()
                .map(|(i, &t)| if i < p { IGNORE } else { t as i64 })
                .collect();
            Example {
                input_ids: ids,
                labels,
            }
        })
        .collect()
}

fn tiny() -> Model {
    common::fixture("qwen2_tied")
}

fn grads_of(micro_batch: usize, packing: bool, ex: &[Example]) -> (aha_train::optim::Grads, f64) {
    let t = Trainer::new(tiny(), OptimConfig::default()).unwrap();
    let idx: Vec<usize> = (0..ex.len()).collect();
    let batches = sft::step_batches(ex, &idx, packing, 64, micro_batch);
    let (g, loss, stats) = t.gradients(&Nll, &batches).unwrap();
    let tokens: usize = ex.iter().map(|e| e.trained_tokens()).sum();
    assert_eq!(stats["tokens"], tokens as f64);
    (g, loss)
}

fn max_grad_diff(a: &aha_train::optim::Grads, b: &aha_train::optim::Grads) -> f32 {
    assert_eq!(a.len(), b.len());
    a.grads
        .iter()
        .map(|(k, g)| common::max_abs_diff(g, &b.grads[k]))
        .fold(0.0, f32::max)
}

#[test]
fn accumulated_micro_batches_give_the_full_batch_gradient() {
    let ex = examples(6, 1);
    let (full, loss_full) = grads_of(6, false, &ex);
    let scale = full.global_norm().unwrap() as f32;
    assert!(scale > 1e-3);
    for mb in [1, 4] {
        let (g, loss) = grads_of(mb, false, &ex);
        assert!(
            (loss - loss_full).abs() < 1e-5,
            "micro-batch {mb}: {loss} vs {loss_full}"
        );
        let d = max_grad_diff(&g, &full);
        assert!(d < 1e-5 * scale.max(1.0), "micro-batch {mb}: {d}");
    }
    // Packed rows accumulate to the same gradient too.
    let (g, loss) = grads_of(2, true, &ex);
    assert!((loss - loss_full).abs() < 1e-5);
    assert!(max_grad_diff(&g, &full) < 1e-5 * scale.max(1.0));
    // So do passes of one packed row each (pretraining's: attention sequence by sequence).
    let idx: Vec<usize> = (0..ex.len()).collect();
    for per_pass in [2, 6] {
        let batches = sft::packed_passes(&ex, &idx, per_pass);
        assert_eq!(batches.len(), 6 / per_pass);
        assert!(batches.iter().all(|b| b.rows.len() == 1));
        let t = Trainer::new(tiny(), OptimConfig::default()).unwrap();
        let (g, loss, _) = t.gradients(&Nll, &batches).unwrap();
        assert!((loss - loss_full).abs() < 1e-5, "{per_pass} per pass");
        let d = max_grad_diff(&g, &full);
        assert!(d < 1e-5 * scale.max(1.0), "{per_pass} per pass: {d}");
    }

    // The step loss is the mean NLL over all trained tokens, which is not the mean of the
    // per-example means on this data (so a per-micro-batch mean would be wrong).
    let lp = sft::example_logprobs(&tiny(), &ex, false, 64, 6).unwrap();
    let all: Vec<f32> = lp.iter().flatten().copied().collect();
    let token_mean = -all.iter().map(|&x| x as f64).sum::<f64>() / all.len() as f64;
    assert!(
        (loss_full - token_mean).abs() < 1e-5,
        "{loss_full} vs {token_mean}"
    );
    let seq_mean = -lp
        .iter()
        .map(|v| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64)
        .sum::<f64>()
        / lp.len() as f64;
    assert!((seq_mean - token_mean).abs() > 1e-4);
}

#[test]
fn data_parallel_workers_give_the_same_bits() {
    let ex = examples(7, 3);
    let idx: Vec<usize> = (0..ex.len()).collect();
    let batches = sft::step_batches(&ex, &idx, false, 64, 2);
    assert_eq!(batches.len(), 4);
    let run = |workers: usize| {
        let mut t = Trainer::new(tiny(), OptimConfig::default())
            .unwrap()
            .with_workers(workers)
            .unwrap();
        let (g, loss, stats) = t.gradients(&Nll, &batches).unwrap();
        let out = t.step(&Nll, &batches).unwrap();
        (g, loss, stats, out.loss, weights(&t.model))
    };
    let (g1, l1, s1, step1, w1) = run(1);
    for workers in [2, 3] {
        let (g, l, s, step, w) = run(workers);
        assert_eq!(l.to_bits(), l1.to_bits(), "{workers} workers");
        assert_eq!(s, s1);
        assert_eq!(step.to_bits(), step1.to_bits());
        assert_eq!(max_grad_diff(&g, &g1), 0.0, "{workers} workers");
        assert!(w == w1, "{workers} workers: weights after a step differ");
    }
    assert!(g1.global_norm().unwrap() > 1e-3);
}

#[test]
fn packed_and_unpacked_log_probs_agree() {
    let ex = examples(7, 2);
    let rows = sft::make_rows(&ex, &(0..7).collect::<Vec<_>>(), true, 40);
    assert!(rows.len() < 7 && rows.iter().any(|r| r.members.len() > 1));
    let model = tiny();
    let plain = sft::example_logprobs(&model, &ex, false, 40, 3).unwrap();
    let packed = sft::example_logprobs(&model, &ex, true, 40, 2).unwrap();
    for (i, (a, b)) in plain.iter().zip(&packed).enumerate() {
        assert_eq!(a.len(), ex[i].trained_tokens());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "example {i}: {x} vs {y}");
        }
    }
}

fn asset(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("AHA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/assets"));
    let p = base.join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "asset {} missing under CI: run scripts/fetch_assets.sh",
            p.display()
        );
    }
    eprintln!(
        "SKIP: asset {} missing (run scripts/fetch_assets.sh)",
        p.display()
    );
    None
}

/// The maximal runs of trained and untrained tokens, decoded.
fn runs(tok: &Tokenizer, ex: &Example) -> Vec<(bool, String)> {
    assert_eq!(ex.input_ids.len(), ex.labels.len());
    let mut out: Vec<(bool, Vec<u32>)> = Vec::new();
    for (&id, &l) in ex.input_ids.iter().zip(&ex.labels) {
        let trained = l != IGNORE;
        if trained {
            assert_eq!(l, id as i64, "a trained label is the token itself");
        }
        match out.last_mut() {
            Some((t, ids)) if *t == trained => ids.push(id),
            _ => out.push((trained, vec![id])),
        }
    }
    out.into_iter()
        .map(|(t, ids)| (t, tok.decode(&ids, false).unwrap()))
        .collect()
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You are a careful tutor."),
        ChatMessage::user("What is 3*7?"),
        ChatMessage::assistant("<think>\n3 times 7 is 21.\n</think>\n\nThe answer is 21."),
        ChatMessage::user("And 21+1?"),
        ChatMessage::assistant("<think>\nOne more than 21.\n</think>\n\n22."),
    ]
}

#[test]
fn deepseek_r1_labels_cover_exactly_the_generated_turns() {
    let Some(dir) = asset("deepseek-r1-tokenizer") else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let t = ChatTemplate::from_dir(&dir).unwrap();
    let eos = tok.eos_token_id().unwrap();
    let msgs = conversation();
    // The template drops the reasoning of the assistant turns it renders, so each turn
    // becomes its own example: the history as the template renders it, then the turn as
    // the model generates it (reasoning included), then EOS.
    let exs = sft::chat_example(&t, &tok, &msgs, &[]).unwrap();
    assert_eq!(exs.len(), 2);
    for (ex, turn) in exs.iter().zip([2usize, 4]) {
        let r = runs(&tok, ex);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(!r[0].0 && r[1].0);
        assert_eq!(
            r[1].1,
            format!("{}<｜end▁of▁sentence｜>", msgs[turn].content)
        );
        assert_eq!(*ex.input_ids.last().unwrap(), eos);
        assert_eq!(*ex.labels.last().unwrap(), eos as i64, "EOS is trained");
        // The untrained prefix is the prompt exactly as `aha chat` encodes it.
        let prompt = t.render(&msgs[..turn], true).unwrap();
        let p_ids = tok.encode(&prompt, false).unwrap();
        assert_eq!(&ex.input_ids[..p_ids.len()], &p_ids[..]);
        assert!(ex.labels[..p_ids.len()].iter().all(|&l| l == IGNORE));
        assert!(ex.labels[p_ids.len()..].iter().all(|&l| l != IGNORE));
    }
    // Without reasoning the history renders unchanged: one example, both turns trained.
    let plain: Vec<ChatMessage> = msgs
        .iter()
        .map(|m| match m.content.rsplit_once("</think>\n\n") {
            Some((_, a)) if m.role == "assistant" => ChatMessage::assistant(a),
            _ => m.clone(),
        })
        .collect();
    let exs = sft::chat_example(&t, &tok, &plain, &[]).unwrap();
    assert_eq!(exs.len(), 1);
    let r = runs(&tok, &exs[0]);
    let trained: Vec<&str> = r.iter().filter(|x| x.0).map(|x| x.1.as_str()).collect();
    assert_eq!(
        trained,
        [
            "The answer is 21.<｜end▁of▁sentence｜>",
            "22.<｜end▁of▁sentence｜>"
        ]
    );
    let whole: String = r.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(whole, t.render(&plain, false).unwrap());
}

#[test]
fn chatml_labels_are_ignored_exactly_outside_the_assistant_turns() {
    let Some(path) = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let tok = aha_text::gguf::tokenizer(&path).unwrap();
    let t = aha_text::gguf::chat_template(&path).unwrap();
    let msgs = conversation();
    let exs = sft::chat_example(&t, &tok, &msgs, &[]).unwrap();
    // ChatML renders the history unchanged: one example with both turns trained.
    assert_eq!(exs.len(), 1);
    let ex = &exs[0];
    let whole_text = t.render(&msgs, false).unwrap();
    assert_eq!(ex.input_ids, tok.encode(&whole_text, false).unwrap());
    let r = runs(&tok, ex);
    let trained: Vec<&str> = r.iter().filter(|x| x.0).map(|x| x.1.as_str()).collect();
    assert_eq!(
        trained,
        [
            format!("{}<|im_end|>", msgs[2].content),
            format!("{}<|im_end|>", msgs[4].content)
        ]
    );
    let untrained: Vec<&str> = r.iter().filter(|x| !x.0).map(|x| x.1.as_str()).collect();
    assert!(untrained[0].ends_with("<|im_start|>assistant\n"));
    assert!(untrained[1].starts_with('\n') && untrained[1].ends_with("<|im_start|>assistant\n"));
    let whole: String = r.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(whole, whole_text);
    // The end-of-turn token is trained.
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    assert!(ex
        .input_ids
        .iter()
        .zip(&ex.labels)
        .any(|(&i, &l)| i == im_end && l == im_end as i64));
}

#[test]
fn records_of_every_shape_and_the_r1_zero_template() {
    let Some(dir) = asset("deepseek-r1-tokenizer") else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let rows: Vec<aha_train::data::Record> = [
        serde_json::json!({"question": "1+1?", "answer": "1 and 1 make 2.\n#### 2"}),
        serde_json::json!({"prompt": "2+2?", "completion": " <think> 4 </think> <answer> 4 </answer>"}),
        serde_json::json!({"messages": [{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6"}]}),
    ]
    .into_iter()
    .map(|v| v.as_object().unwrap().clone())
    .collect();
    let (exs, stats) =
        sft::examples_from_records(&rows, &sft::Template::r1_zero(), &tok, &[], 1024).unwrap();
    assert_eq!((stats.rows, stats.examples), (3, 3));
    let r = runs(&tok, &exs[0]);
    assert_eq!(r.len(), 2);
    // The paper's template, as `aha grpo --template r1-zero` fills it in.
    assert!(r[0]
        .1
        .contains("i.e., <think> reasoning process here </think>"));
    assert!(r[0].1.ends_with("User: 1+1?. Assistant:"), "{}", r[0].1);
    let (short, _) =
        sft::examples_from_records(&rows, &sft::Template::r1_zero_short(), &tok, &[], 1024)
            .unwrap();
    let rs = runs(&tok, &short[0]);
    assert!(
        rs[0].1.ends_with("and Assistant. User: 1+1? Assistant:"),
        "{}",
        rs[0].1
    );
    assert_eq!(rs[1], r[1]);
    assert_eq!(
        r[1].1,
        " <think> 1 and 1 make 2. </think> <answer> 2 </answer><｜end▁of▁sentence｜>"
    );
    // Cut below the prompt: nothing left to train, the example is dropped.
    let (exs, stats) =
        sft::examples_from_records(&rows, &sft::Template::r1_zero_short(), &tok, &[], 8).unwrap();
    assert!(exs.is_empty() && stats.dropped == 3);
    // dump_batches writes what the examples are.
    let d = tempfile::tempdir().unwrap();
    let (exs, _) =
        sft::examples_from_records(&rows, &sft::Template::r1_zero(), &tok, &[], 1024).unwrap();
    sft::dump_batches(&d.path().join("b.jsonl"), &exs, 2).unwrap();
    let text = std::fs::read_to_string(d.path().join("b.jsonl")).unwrap();
    let back: Vec<Example> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, exs[..2]);
}

fn run_cfg() -> SftConfig {
    SftConfig {
        epochs: 2,
        batch_size: 4,
        micro_batch: 2,
        max_len: 64,
        lr: Some(1e-2),
        eval_every: 2,
        save_every: 0,
        ..Default::default()
    }
}

fn weights(m: &Model) -> Vec<(String, Vec<f32>)> {
    m.trainable_params()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect()
}

fn check_resume(lora: bool) {
    let ex = examples(10, 3);
    // Random tokens do not generalise: the "held-out" loss is measured on examples the run
    // trains on, which must go down.
    let eval = ex[..3].to_vec();
    let cfg = run_cfg();
    let start = || {
        let mut m = tiny();
        if lora {
            m.add_lora(&LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]), 5)
                .unwrap();
        }
        m
    };
    let a = tempfile::tempdir().unwrap();
    let (ma, ra) = sft::train(start(), &ex, &eval, &cfg, a.path(), false).unwrap();
    assert_eq!(ra.steps, 6);
    let (first, last) = (ra.eval_losses[0].1, ra.eval_losses.last().unwrap().1);
    assert!(last < first, "held-out loss {first} -> {last}");

    let b = tempfile::tempdir().unwrap();
    let stop = SftConfig {
        stop_after: Some(3),
        save_every: 2,
        ..cfg.clone()
    };
    sft::train(start(), &ex, &eval, &stop, b.path(), false).unwrap();
    // Resume: the model as the run started (for LoRA, the base without the adapter).
    let base = if lora { tiny() } else { start() };
    let (mb, rb) = sft::train(base, &ex, &eval, &cfg, b.path(), true).unwrap();
    assert_eq!(rb.resumed_from, Some(3));
    assert_eq!(
        weights(&ma),
        weights(&mb),
        "resumed weights are bit-identical"
    );
    // Another batch size is another run: refused, not continued on the other schedule.
    let other = SftConfig {
        batch_size: cfg.batch_size + 1,
        ..cfg.clone()
    };
    let base = if lora { tiny() } else { start() };
    match sft::train(base, &ex, &eval, &other, b.path(), true) {
        Ok(_) => panic!("a resume with another batch size went on"),
        Err(e) => assert!(e.to_string().contains("other settings"), "{e}"),
    }
    let metrics = |d: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("time_s");
                o.remove("tokens_per_s");
                v
            })
            .collect()
    };
    assert_eq!(metrics(a.path()), metrics(b.path()));
}

#[test]
fn resume_is_exact_full_fine_tuning() {
    check_resume(false);
}

#[test]
fn resume_is_exact_lora() {
    check_resume(true);
}

/// A user asking for a product, the assistant calling the calculator (content null, as
/// OpenAI writes a turn that only calls), the tool's result, and the answer.
fn tool_conversation(arguments: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "messages": [
            {"role": "user", "content": "What is 17*23?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
                "function": {"name": "calculator", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "391"},
            {"role": "assistant", "content": "17*23 = 391."}
        ],
        "tools": [{"type": "function", "function": {"name": "calculator",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}]
    })
}

fn record(v: serde_json::Value) -> aha_train::data::Record {
    v.as_object().unwrap().clone()
}

/// A Hermes-style template (Qwen2.5's call syntax) ending each turn with EOS.
const HERMES: &str = "{% if tools %}<sys>tools: {{ tools | tojson }}{{ eos_token }}{% endif %}\
{% for m in messages %}{% if m.role == 'tool' %}<user><tool_response>{{ m.content }}</tool_response>{{ eos_token }}\
{% else %}<{{ m.role }}>{% if m.content %}{{ m.content }}{% endif %}{% if m.tool_calls %}{% for c in m.tool_calls %}\
<tool_call>{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments }}}</tool_call>{% endfor %}{% endif %}\
{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

/// An assistant's tool calls are trained with its end of turn, as the template writes them
/// (arguments given as JSON text or as an object); the tool's result and the offered tools
/// are prompt. The calls used to be dropped: the turn trained as an empty message.
#[test]
fn tool_calls_are_trained_and_tool_results_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = aha_train::pretrain::PretrainConfig::tiny(aha_train::tasks::Task::Arithmetic {
        difficulty: 1,
    });
    let (_, tok) = aha_train::pretrain::prepare(&cfg, dir.path()).unwrap();
    let rows = [
        record(tool_conversation(serde_json::json!(
            "{\"expression\": \"17*23\"}"
        ))),
        record(tool_conversation(
            serde_json::json!({"expression": "17*23"}),
        )),
    ];
    // Also with a generation prompt that opens the reasoning, as newer R1 templates do: the
    // call turn then starts where the prompt's `<think>` and the call's `<tool_call>` part.
    let opening = HERMES.replace("<assistant>{% endif %}", "<assistant><think>\n{% endif %}");
    let mut exs = Vec::new();
    for source in [HERMES, opening.as_str()] {
        let t = ChatTemplate::new(source, tok.special_tokens().clone()).unwrap();
        let template = sft::Template::Chat(Box::new(t));
        let (e, stats) = sft::examples_from_records(&rows, &template, &tok, &[], 1024).unwrap();
        assert_eq!((stats.rows, stats.examples), (2, 2));
        exs.extend(e);
    }
    let template = sft::Template::Chat(Box::new(
        ChatTemplate::new(HERMES, tok.special_tokens().clone()).unwrap(),
    ));
    let args = [r#"{"expression": "17*23"}"#, r#"{"expression":"17*23"}"#];
    for (ex, args) in exs.iter().zip(args.iter().cycle()) {
        let r = runs(&tok, ex);
        let trained: Vec<&str> = r.iter().filter(|x| x.0).map(|x| x.1.as_str()).collect();
        assert_eq!(
            trained,
            [
                format!("<tool_call>{{\"name\": \"calculator\", \"arguments\": {args}}}</tool_call><|endoftext|>"),
                "17*23 = 391.<|endoftext|>".to_string()
            ]
        );
        let untrained: Vec<&str> = r.iter().filter(|x| !x.0).map(|x| x.1.as_str()).collect();
        assert_eq!(untrained.len(), 2, "{r:?}");
        assert!(untrained[0].starts_with("<sys>tools: [{\"type\": \"function\""));
        assert!(untrained[0].ends_with("<user>What is 17*23?<|endoftext|><assistant>"));
        assert_eq!(
            untrained[1],
            "<user><tool_response>391</tool_response><|endoftext|><assistant>"
        );
    }
    // A template that cannot write calls is refused, naming the row and the message.
    let plain = ChatTemplate::new(
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}",
        tok.special_tokens().clone(),
    )
    .unwrap();
    let err = sft::examples_from_records(
        &rows[1..],
        &sft::Template::Chat(Box::new(plain)),
        &tok,
        &[],
        1024,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("row 1: message 2 has tool_calls")
            && err.contains("does not write tool calls"),
        "{err}"
    );
    // A call whose arguments are not a JSON object is refused by name.
    let bad = record(tool_conversation(serde_json::json!("17*23")));
    let err = sft::examples_from_records(&[bad], &template, &tok, &[], 1024)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 1: `messages`: message 2: tool call 1: `function.arguments`"),
        "{err}"
    );
}

/// DeepSeek-R1's own template: the call in R1's tool tokens and EOS trained, the tool's
/// output (in its output tokens) not; the offered tools shown as a first system turn, as
/// `aha chat --tools` shows them.
#[test]
fn deepseek_r1_tool_calls_are_trained() {
    let Some(dir) = asset("deepseek-r1-tokenizer") else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let t = ChatTemplate::from_dir(&dir).unwrap();
    let row = tool_conversation(serde_json::json!("{\"expression\": \"17*23\"}"));
    let conv = sft::Conversation {
        messages: row["messages"].as_array().unwrap().clone(),
        tools: Some(row["tools"].clone()),
    };
    let exs = sft::conversation_examples(&t, &tok, &conv, &[]).unwrap();
    assert_eq!(exs.len(), 1);
    let r = runs(&tok, &exs[0]);
    let trained: Vec<&str> = r.iter().filter(|x| x.0).map(|x| x.1.as_str()).collect();
    assert_eq!(
        trained,
        [
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>calculator\n```json\n{\"expression\": \"17*23\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>",
            "17*23 = 391.<｜end▁of▁sentence｜>"
        ]
    );
    let untrained: Vec<&str> = r.iter().filter(|x| !x.0).map(|x| x.1.as_str()).collect();
    assert!(untrained[0].contains("You may call the functions below"));
    assert!(untrained[0].ends_with("<｜User｜>What is 17*23?<｜Assistant｜>"));
    assert_eq!(
        untrained[1],
        "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>391<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
    );
    let whole: String = r.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(
        whole,
        t.render_with_tools(&conv.messages, conv.tools.as_ref(), false)
            .unwrap()
    );
}
