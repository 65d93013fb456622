//! Evaluation (`eval`) and rejection sampling (`sample`) end to end on a tiny pretrained base:
//! results.json equals an independent recomputation from samples.jsonl, rescoring reproduces
//! it byte for byte, and a killed rejection-sampling run resumes without duplicates.

use aha_model::{LoadOptions, Model};
use aha_text::Tokenizer;
use aha_train::eval::{
    self, final_answer, EvalConfig, GenConfig, ProblemSet, PromptStyle, SampleRecord,
};
use aha_train::pretrain::{self, PretrainConfig};
use aha_train::sample::{self, rejection_sample, Filter, Filters, SampleConfig, SampleLine};
use aha_train::tasks::Task;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const TASK: Task = Task::Arithmetic { difficulty: 2 };

/// A tiny base pretrained for a few steps, shared by the tests of this file.
fn base() -> &'static Path {
    static BASE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("base");
        pretrain::pretrain(&PretrainConfig::tiny(TASK), &out, false).unwrap();
        (dir, out)
    });
    p
}

fn load() -> (Model, Tokenizer) {
    let model = Model::load(base(), &LoadOptions::default()).unwrap();
    (model, Tokenizer::from_dir(base()).unwrap())
}

fn gen(samples: usize) -> GenConfig {
    GenConfig {
        samples,
        max_tokens: 20,
        batch_size: 2,
        seed: 3,
        ..GenConfig::default()
    }
}

fn binom(n: u64, k: u64) -> u128 {
    if k > n {
        return 0;
    }
    let mut r: u128 = 1;
    for i in 0..k.min(n - k) {
        r = r * (n - i) as u128 / (i + 1) as u128;
    }
    r
}

/// The metrics of results.json recomputed from samples.jsonl without the library's metric
/// code: exact binomials for pass@k, a count-based majority vote for cons@k.
fn recompute(samples: &[Value]) -> Value {
    let mut ids: Vec<String> = Vec::new();
    for s in samples {
        let id = s["problem_id"].as_str().unwrap().to_string();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let k = samples.len() / ids.len();
    let (mut p1, mut cons) = (Vec::new(), Vec::new());
    let mut pk = vec![0.0f64; k];
    for id in &ids {
        let mut rs: Vec<&Value> = samples.iter().filter(|s| s["problem_id"] == **id).collect();
        assert_eq!(rs.len(), k);
        rs.sort_by_key(|s| s["sample"].as_u64().unwrap());
        let c = rs.iter().filter(|s| s["correct"] == true).count();
        p1.push(c as f64 / k as f64);
        for (j, v) in pk.iter_mut().enumerate() {
            let kk = j as u64 + 1;
            *v += 1.0 - binom((k - c) as u64, kk) as f64 / binom(k as u64, kk) as f64;
        }
        // Votes: for each answer, how many answers are equivalent to it; the most votes win,
        // the earliest answer on ties.
        let answers: Vec<Option<&str>> = rs
            .iter()
            .map(|s| s["extracted"].as_str().filter(|a| !a.trim().is_empty()))
            .collect();
        let votes = |a: &str| {
            answers
                .iter()
                .flatten()
                .filter(|b| {
                    aha_reward::answers_equivalent(a, b) || aha_reward::answers_equivalent(b, a)
                })
                .count()
        };
        let mut best: Option<(usize, usize)> = None;
        for (i, a) in answers.iter().enumerate() {
            if let Some(a) = a {
                let v = votes(a);
                if best.is_none_or(|(_, bv)| v > bv) {
                    best = Some((i, v));
                }
            }
        }
        cons.push(match best {
            Some((i, _)) if rs[i]["correct"] == true => 1.0,
            _ => 0.0,
        });
    }
    let n = ids.len() as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let se = |v: &[f64]| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0) / v.len() as f64)
            .sqrt()
    };
    let all = |f: &dyn Fn(&Value) -> f64| samples.iter().map(f).sum::<f64>() / samples.len() as f64;
    serde_json::json!({
        "pass@1": mean(&p1),
        "cons@k": mean(&cons),
        "pass@k": pk.iter().map(|v| v / n).collect::<Vec<_>>(),
        "k": k,
        "n_problems": ids.len(),
        "format_rate": all(&|s| f64::from(u8::from(s["formatted"] == true))),
        "mean_length": all(&|s| s["tokens"].as_f64().unwrap()),
        "language_consistency": all(&|s| s["language_consistency"].as_f64().unwrap()),
        "stderr_pass1": se(&p1),
        "stderr_cons": se(&cons),
    })
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn close(a: &Value, b: &Value, what: &str) {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    // Language scores are f32 in the records (written at their shortest decimal), so their
    // mean agrees to f32 precision only.
    let tol = if what.starts_with("language") {
        1e-6
    } else {
        1e-9
    };
    assert!((a - b).abs() < tol, "{what}: {a} vs {b}");
}

fn assert_matches_recomputation(dir: &Path) {
    let samples = read_lines(&dir.join("samples.jsonl"));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let want = recompute(&samples);
    for key in [
        "pass@1",
        "cons@k",
        "format_rate",
        "mean_length",
        "language_consistency",
    ] {
        close(&results[key], &want[key], key);
    }
    assert_eq!(results["k"], want["k"]);
    assert_eq!(results["n_problems"], want["n_problems"]);
    close(
        &results["stderr"]["pass@1"],
        &want["stderr_pass1"],
        "stderr pass@1",
    );
    close(
        &results["stderr"]["cons@k"],
        &want["stderr_cons"],
        "stderr cons@k",
    );
    let k = want["k"].as_u64().unwrap() as usize;
    let pk = results["pass@k"].as_object().unwrap();
    assert_eq!(pk.len(), k);
    for j in 1..=k {
        close(
            &pk[&j.to_string()],
            &want["pass@k"][j - 1],
            &format!("pass@{j}"),
        );
    }
}

#[test]
fn evaluation_writes_consistent_samples_and_results_and_rescores_identically() {
    let (model, tok) = load();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let set = ProblemSet::task_test(TASK, 5);
    let cfg = EvalConfig {
        gen: gen(4),
        ..EvalConfig::default()
    };
    let report = eval::evaluate(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &cfg,
        serde_json::json!({"model": "tiny"}),
        Some(&out),
    )
    .unwrap();
    let samples = read_lines(&out.join("samples.jsonl"));
    assert_eq!(samples.len(), 20);
    for (i, s) in samples.iter().enumerate() {
        let p = &set.problems[i / 4];
        assert_eq!(s["problem_id"], p.id.as_str());
        assert_eq!(s["sample"], i % 4);
        let text = s["completion"].as_str().unwrap();
        assert_eq!(s["correct"], TASK.check_gold(&p.gold, text));
        assert_eq!(s["extracted"].as_str(), final_answer(text).as_deref());
        assert!(s["tokens"].as_u64().unwrap() <= 20);
        assert!(["stop", "length"].contains(&s["finish_reason"].as_str().unwrap()));
    }
    // The k samples of a problem are not all the same text (T = 0.6 sampling).
    assert!(samples[..4]
        .iter()
        .any(|s| s["completion"] != samples[0]["completion"]));
    assert_eq!(report.samples.len(), 20);
    assert_eq!(report.results.config["model"], "tiny");
    assert_eq!(report.results.config["samples"], 4);
    assert_matches_recomputation(&out);

    let before = std::fs::read(out.join("results.json")).unwrap();
    let again = eval::rescore(&out).unwrap();
    assert_eq!(again, report.results);
    assert_eq!(std::fs::read(out.join("results.json")).unwrap(), before);

    // The tiny model is rarely right: rewrite the samples with varied verdicts and answers
    // (ties included), then rescoring must still agree with the recomputation.
    let answers = ["5", "5.0", "7", "\\frac{14}{2}", "", "9"];
    let edited: String = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut r: SampleRecord = serde_json::from_value(s.clone()).unwrap();
            r.correct = (i * 7) % 3 == 0;
            r.extracted = Some(answers[(i * 5) % answers.len()].to_string());
            r.formatted = i % 2 == 0;
            serde_json::to_string(&r).unwrap() + "\n"
        })
        .collect();
    std::fs::write(out.join("samples.jsonl"), edited).unwrap();
    let r = eval::rescore(&out).unwrap();
    assert!(r.pass1 > 0.0 && r.pass1 < 1.0);
    assert_matches_recomputation(&out);

    // Same seed, same samples.
    let out2 = dir.path().join("eval2");
    eval::evaluate(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &cfg,
        serde_json::json!({"model": "tiny"}),
        Some(&out2),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(out2.join("samples.jsonl")).unwrap(),
        report
            .samples
            .iter()
            .map(|s| serde_json::to_string(s).unwrap() + "\n")
            .collect::<String>()
            .into_bytes()
    );

    // Greedy: one sample, pass@k has the single entry pass@1.
    let greedy = EvalConfig {
        gen: GenConfig {
            max_tokens: 20,
            ..GenConfig::greedy()
        },
        ..EvalConfig::default()
    };
    let g = eval::evaluate(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &greedy,
        Value::Null,
        None,
    )
    .unwrap();
    assert_eq!(g.results.k, 1);
    assert_eq!(g.results.pass_at, vec![g.results.pass1]);
}

#[test]
fn dataset_files_are_read_as_problems() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qa.jsonl");
    let set = ProblemSet::from_file(&path, Some(3), None).unwrap();
    assert_eq!(set.problems.len(), 3);
    assert_eq!(set.problems[0].id, "1");
    assert_eq!(set.problems[0].gold, "5");
    assert!(set
        .checker
        .check(&set.problems[0].gold, "so 1 + 4 = 5. The answer is 5."));
    assert!(!set
        .checker
        .check(&set.problems[0].gold, "<answer>6</answer>"));
    assert!(ProblemSet::from_file(Path::new("/nonexistent.jsonl"), None, None).is_err());
}

/// A row whose gold the verifier cannot read is an error naming the file and the line (blank
/// lines counted), before anything is generated; it used to be scored wrong on every sample.
#[test]
fn unreadable_golds_are_refused_by_line() {
    use aha_train::eval::gold_answer;
    for (reference, gold) in [
        ("42", "42"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        ("x = 3", "x = 3"),
        ("Paris", "Paris"),
        (
            "\\begin{pmatrix} 1 \\\\\n 2 \\end{pmatrix}",
            "\\begin{pmatrix} 1 \\\\\n 2 \\end{pmatrix}",
        ),
        ("She had 3 + 2 = <<3+2=5>>5 apples.\n#### 5", "5"),
        ("So the total is 5 apples.\nThe answer is 5.", "5"),
        ("We get \\boxed{7}.", "7"),
    ] {
        assert_eq!(gold_answer(reference).as_deref(), Ok(gold), "{reference:?}");
    }
    for (reference, why) in [
        ("", "is empty"),
        ("   ", "is empty"),
        (
            "She had 3 + 2 = <<3+2=5>>5 apples.",
            "no marked final answer",
        ),
        (
            "She had 3 apples.\nShe bought 2 more, so she has 5 in all.",
            "no marked final answer",
        ),
        ("3 + 2 = 5 ####", "marks an empty answer"),
        ("\\boxed{}", "marks an empty answer"),
    ] {
        let err = gold_answer(reference).unwrap_err();
        assert!(
            err.contains(why) && err.contains("#### 42"),
            "{reference:?}: {err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gsm.jsonl");
    std::fs::write(
        &path,
        "{\"question\": \"1+1?\", \"answer\": \"1 + 1 = 2\\n#### 2\"}\n\n\
         {\"question\": \"2+2?\", \"answer\": \"2 + 2 = <<2+2=4>>4\\nSo she has 4.\"}\n",
    )
    .unwrap();
    let err = ProblemSet::from_file(&path, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("{}: line 3: the answer", path.display()))
            && err.contains("no marked final answer"),
        "{err}"
    );
    std::fs::write(&path, "{\"question\": \"1+1?\", \"answer\": \"\"}\n").unwrap();
    let err = ProblemSet::from_file(&path, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1: the answer is empty"), "{err}");
}

/// Rows whose reference is `tool_calls` are judged by their calls (the math verifier judged
/// the calls' JSON text as an answer), their `tools` are offered in the prompt, and a file
/// mixing them with answers, a call without a name, or no template to write calls in are
/// refused.
#[test]
fn tool_call_references_are_judged_by_their_calls() {
    use aha_text::{ChatTemplate, SpecialTokens, ToolCallFormat};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.jsonl");
    let tools = r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]"#;
    let row = |city: &str| {
        format!(
            r#"{{"question": "Weather in {city}?", "tools": {tools}, "tool_calls": [{{"type": "function", "function": {{"name": "get_weather", "arguments": "{{\"city\": \"{city}\"}}"}}}}]}}"#
        )
    };
    std::fs::write(&path, format!("{}\n{}\n", row("Paris"), row("Oslo"))).unwrap();
    let err = ProblemSet::from_file(&path, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tool calls") && err.contains("--template chat"),
        "{err}"
    );

    let set = ProblemSet::from_file(&path, None, Some(ToolCallFormat::Hermes)).unwrap();
    assert_eq!(
        set.checker,
        eval::Checker::ToolCalls(ToolCallFormat::Hermes)
    );
    let (gold, p) = (&set.problems[0].gold, &set.problems[0]);
    let call = |args: &str| {
        format!("<think>look it up</think>\n<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {args}}}\n</tool_call>")
    };
    assert!(set.checker.check(gold, &call(r#"{"city": "Paris"}"#)));
    assert!(!set.checker.check(gold, &call(r#"{"city": "Oslo"}"#)));
    assert!(!set
        .checker
        .check(gold, "<think>hm</think> It is sunny in Paris."));
    // The extracted answer is the calls, equal for equal calls whatever the key order.
    let style_tmpl = ChatTemplate::new(
        "{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant><tool_call>{% endif %}",
        SpecialTokens::default(),
    )
    .unwrap();
    let style = PromptStyle::Chat(&style_tmpl);
    let prompt = style.render_problem(p).unwrap();
    assert!(
        prompt.starts_with("TOOLS [") && prompt.contains("get_weather"),
        "{prompt}"
    );
    assert!(prompt.contains("<user>Weather in Paris?"), "{prompt}");
    let script = aha_reward::Script::from_code("en").unwrap();
    let scored = |c: &str| eval::score_completion(&set.checker, &style, script, gold, &prompt, c);
    let a = scored(&call(r#"{"city": "Paris", "units": "C"}"#));
    let b = scored(&call(r#"{"units": "C", "city": "Paris"}"#));
    assert!(!a.correct);
    assert_eq!(a.extracted, b.extracted);
    assert!(a.extracted.as_deref().unwrap().contains("get_weather"));
    // Different arguments are different votes.
    let (o1, o2) = (
        scored(&call(r#"{"city": "Oslo"}"#)),
        scored(&call(r#"{"city": "Oslo"}"#)),
    );
    let votes = [&a, &o1, &b, &o2, &o1].map(|s| s.extracted.as_deref());
    assert_eq!(eval::majority_vote(&votes), Some(1), "{votes:?}");
    // Tools need a chat template.
    assert!(PromptStyle::R1Zero.render_problem(p).is_err());

    // One kind per file; each call needs a name.
    std::fs::write(
        &path,
        format!(
            "{}\n{{\"question\": \"1+1?\", \"answer\": \"2\"}}\n",
            row("Paris")
        ),
    )
    .unwrap();
    let err = ProblemSet::from_file(&path, None, Some(ToolCallFormat::Hermes))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2") && err.contains("one kind"), "{err}");
    std::fs::write(
        &path,
        "{\"question\": \"q\", \"tool_calls\": [{\"arguments\": {\"city\": \"Paris\"}}]}\n",
    )
    .unwrap();
    let err = ProblemSet::from_file(&path, None, Some(ToolCallFormat::Hermes))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1") && err.contains("\"name\""), "{err}");
}

fn sample_cfg(filters: Filters, write_dropped: bool) -> SampleConfig {
    SampleConfig {
        gen: gen(3),
        filters,
        write_dropped,
        ..SampleConfig::default()
    }
}

#[test]
fn rejection_sampling_filters_counts_and_resumes_without_duplicates() {
    let (model, tok) = load();
    let dir = tempfile::tempdir().unwrap();
    let set = ProblemSet::task_problems(TASK, TASK.train_problems(1).take(6));
    assert_eq!(set.problems.len(), 6);

    // No filters: every completion is kept and written.
    let all_path = dir.path().join("all.jsonl");
    let all = rejection_sample(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &sample_cfg(Filters::default(), false),
        Some(&all_path),
    )
    .unwrap();
    assert_eq!(all.kept.len(), 18);
    assert_eq!(
        (all.stats.prompts, all.stats.kept, all.stats.dropped),
        (6, 18, 0)
    );
    let written: Vec<SampleLine> = read_lines(&all_path)
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    assert_eq!(written, all.kept);
    for l in &written {
        assert_eq!(l.correct, TASK.check_gold(&l.gold, &l.completion));
        assert_eq!(l.rewards.accuracy, f32::from(u8::from(l.correct)));
    }
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("all.stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats["stats"]["kept"], 18);

    // Kill after three prompts, mid-way through the fourth's lines; the rerun completes the
    // same file with no prompt twice.
    let progress = std::fs::read_to_string(dir.path().join("all.progress.jsonl")).unwrap();
    let entries: Vec<Value> = progress
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 6);
    let cut = entries[2]["bytes"].as_u64().unwrap() as usize;
    let full = std::fs::read(&all_path).unwrap();
    let killed = dir.path().join("killed.jsonl");
    let mut partial = full[..cut].to_vec();
    partial.extend_from_slice(&full[cut..cut + 25]);
    std::fs::write(&killed, partial).unwrap();
    let first3: String = progress.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(
        dir.path().join("killed.progress.jsonl"),
        first3 + "{\"problem_id\": \"tru",
    )
    .unwrap();
    let resumed = rejection_sample(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &sample_cfg(Filters::default(), false),
        Some(&killed),
    )
    .unwrap();
    assert_eq!(std::fs::read(&killed).unwrap(), full);
    assert_eq!(resumed.kept, all.kept);
    assert_eq!(resumed.stats, all.stats);
    // A finished run resumes to a no-op.
    let again = rejection_sample(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &sample_cfg(Filters::default(), false),
        Some(&killed),
    )
    .unwrap();
    assert_eq!(std::fs::read(&killed).unwrap(), full);
    assert_eq!(again.stats, all.stats);

    // Another run's settings, problems or a corrupt progress file: refused, nothing touched.
    let refused = |cfg: &SampleConfig, set: &ProblemSet, path: &Path| {
        let before = std::fs::read(path).unwrap();
        let err = rejection_sample(&model, &tok, set, &PromptStyle::R1Zero, cfg, Some(path))
            .unwrap_err()
            .to_string();
        assert_eq!(std::fs::read(path).unwrap(), before, "{err}");
        err
    };
    let mut more = sample_cfg(Filters::default(), false);
    more.gen.samples += 1;
    assert!(refused(&more, &set, &all_path).contains("samples per prompt"));
    let strict_cfg = sample_cfg(
        Filters {
            keep_correct: true,
            ..Filters::default()
        },
        false,
    );
    assert!(refused(&strict_cfg, &set, &all_path).contains("all.config.json"));
    let other = ProblemSet::task_problems(TASK, TASK.train_problems(2).skip(50).take(6));
    let plain = sample_cfg(Filters::default(), false);
    assert!(refused(&plain, &other, &all_path).contains("not in this run's problems"));
    std::fs::write(dir.path().join("all.progress.jsonl"), "garbage\n").unwrap();
    assert!(refused(&plain, &set, &all_path).contains("not a progress record"));

    // Filters: the file holds kept lines only, and the counts add up.
    let strict = Filters {
        keep_correct: true,
        require_format: true,
        max_paragraph_chars: Some(40),
        ..Filters::default()
    };
    let f_path = dir.path().join("strict.jsonl");
    let f = rejection_sample(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &sample_cfg(strict.clone(), false),
        Some(&f_path),
    )
    .unwrap();
    let kept_lines = read_lines(&f_path);
    assert_eq!(kept_lines.len(), f.stats.kept);
    assert!(kept_lines
        .iter()
        .all(|l| l["kept"] == true && l["correct"] == true && l["rewards"]["format"] == 1.0));
    assert_eq!(f.stats.kept + f.stats.dropped, 18);
    assert_eq!(f.stats.dropped_by.values().sum::<usize>(), f.stats.dropped);
    let expect_dropped = all
        .kept
        .iter()
        .filter(|l| {
            !l.correct
                || l.rewards.format < 1.0
                || sample::longest_paragraph_chars(&l.completion) > 40
        })
        .count();
    assert_eq!(f.stats.dropped, expect_dropped);
    assert_eq!(
        f.stats
            .rejected_by
            .get(&Filter::Correct)
            .copied()
            .unwrap_or(0),
        all.kept.iter().filter(|l| !l.correct).count()
    );
    // With the dropped lines written too, every completion is there with its verdict.
    let w_path = dir.path().join("with_dropped.jsonl");
    rejection_sample(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &sample_cfg(strict, true),
        Some(&w_path),
    )
    .unwrap();
    let lines = read_lines(&w_path);
    assert_eq!(lines.len(), 18);
    assert_eq!(
        lines.iter().filter(|l| l["kept"] == true).count(),
        f.stats.kept
    );
    assert!(lines
        .iter()
        .all(|l| (l["kept"] == true) == l["dropped_by"].is_null()));

    // An output file that is not a resumable run is not overwritten.
    let stray = dir.path().join("stray.jsonl");
    std::fs::write(&stray, "{}\n").unwrap();
    assert!(rejection_sample(
        &model,
        &tok,
        &set,
        &PromptStyle::R1Zero,
        &sample_cfg(Filters::default(), false),
        Some(&stray),
    )
    .is_err());
}

#[test]
fn constrained_answers_are_valid_after_free_reasoning() {
    constrained_answers_valid(Task::Json { difficulty: 1 });
    constrained_answers_valid(Task::Tool { difficulty: 1 });
}

/// The JSON task's answers valid under its schema, the tool task's one call of `answer` with
/// valid arguments: checked by the jsonschema crate and the tool-call parser, not by the
/// grammar engine.
fn constrained_answers_valid(task: Task) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    pretrain::pretrain(&PretrainConfig::tiny(task), &base, false).unwrap();
    let model = Model::load(&base, &LoadOptions::default()).unwrap();
    let tok = Tokenizer::from_dir(&base).unwrap();
    let schema = aha_reward::JsonSchemaCheck::new(match task {
        Task::Tool { .. } => serde_json::from_str(aha_train::tasks::ANSWER_TOOL.1).unwrap(),
        _ => task.answer_schema().unwrap(),
    })
    .unwrap();
    let marker = match task {
        Task::Tool { .. } => "<tool_call>",
        _ => "{\"answer\"",
    };
    let set = ProblemSet::task_test(task, 6);
    let max_tokens = 64;
    let run = |constrained: bool| {
        let constraint = if constrained {
            eval::task_constraint(&task, &tok, max_tokens).unwrap()
        } else {
            None
        };
        let cfg = EvalConfig {
            gen: GenConfig {
                samples: 4,
                max_tokens,
                batch_size: 3,
                seed: 5,
                constraint,
                ..GenConfig::default()
            },
            ..EvalConfig::default()
        };
        eval::evaluate(
            &model,
            &tok,
            &set,
            &PromptStyle::R1Zero,
            &cfg,
            serde_json::json!({}),
            None,
        )
        .unwrap()
        .samples
    };
    let free = run(false);
    let constrained = run(true);
    let valid = |s: &SampleRecord| match task {
        Task::Tool { .. } => {
            let answer = aha_reward::answer_part(&s.completion);
            let parsed = aha_text::ToolCallFormat::Hermes.parse(answer);
            match parsed.calls.as_slice() {
                [call] => {
                    call.name == aha_train::tasks::ANSWER_TOOL.0
                        && parsed.content.trim().is_empty()
                        && serde_json::from_str(&call.arguments).is_ok_and(|a| schema.is_valid(&a))
                }
                _ => false,
            }
        }
        _ => schema.check_response(&s.completion),
    };
    let finished: Vec<&SampleRecord> = constrained
        .iter()
        .filter(|s| s.finish_reason == aha_engine::FinishReason::Stop)
        .collect();
    // Every finished constrained answer is valid JSON (checked by jsonschema, not by the
    // grammar engine) after a reasoning that the mask left alone: it opens with <think> and
    // is not JSON itself. (The task's format also wants a non-empty reasoning, which a
    // near-random model does not always write.)
    assert!(
        finished.len() * 4 >= constrained.len() * 3,
        "{} of {} finished: {:#?}",
        finished.len(),
        constrained.len(),
        constrained
            .iter()
            .map(|s| &s.completion)
            .collect::<Vec<_>>()
    );
    for s in &finished {
        assert!(valid(s), "{:?}", s.completion);
        let (reasoning, _) = s.completion.split_once("</think>").unwrap();
        assert!(
            reasoning.trim_start().starts_with("<think>"),
            "{:?}",
            s.completion
        );
        assert!(!reasoning.contains(marker), "{:?}", s.completion);
    }
    let free_valid = free.iter().filter(|s| valid(s)).count();
    assert!(
        free_valid < finished.len(),
        "free {free_valid}, constrained {}",
        finished.len()
    );
}
