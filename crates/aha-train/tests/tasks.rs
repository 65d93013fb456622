//! Built-in tasks: deterministic generators, disjoint held-out sets, verifiers.

use aha_train::corpus::{completion_text, DocKind, Format, Lang, Style};
use aha_train::tasks::{is_well_formatted, r1_zero_prompt, Task};
use rand::{rngs::StdRng, SeedableRng};
use std::collections::HashSet;

fn tasks() -> Vec<Task> {
    vec![
        Task::Arithmetic { difficulty: 1 },
        Task::Arithmetic { difficulty: 3 },
        Task::Arithmetic { difficulty: 5 },
        Task::Countdown { difficulty: 2 },
        Task::Countdown { difficulty: 4 },
    ]
}

#[test]
fn generators_are_deterministic_per_seed() {
    for t in tasks() {
        let a: Vec<_> = t.train_problems(7).take(50).collect();
        let b: Vec<_> = t.train_problems(7).take(50).collect();
        let c: Vec<_> = t.train_problems(8).take(50).collect();
        assert_eq!(a, b, "{t}");
        assert_ne!(a, c, "{t}: other seeds give other problems");
        assert_eq!(t.test_set(30), t.test_set(30), "{t}");
        assert_eq!(
            t.test_set(20)[..],
            t.test_set(40)[..20],
            "{t}: a smaller test set is a prefix"
        );
    }
}

#[test]
fn held_out_sets_are_disjoint_from_training() {
    for t in tasks() {
        let test = t.test_set(200);
        let keys: HashSet<_> = test.iter().map(|p| p.key.clone()).collect();
        assert_eq!(
            keys.len(),
            test.len(),
            "{t}: held-out problems are distinct"
        );
        // Arithmetic at difficulty 1 has only a few hundred problems in all.
        let want = if t.difficulty() == 1 { 20 } else { 100 };
        assert!(
            test.len() >= want,
            "{t}: only {} held-out problems",
            test.len()
        );
        for seed in 0..3 {
            for p in t.train_problems(seed).take(3000) {
                assert!(
                    !Task::is_held_out(&p),
                    "{t}: training yielded a held-out problem"
                );
                assert!(!keys.contains(&p.key), "{t}: {} is in both", p.prompt);
            }
        }
    }
}

#[test]
fn arithmetic_difficulty_and_example() {
    let mut rng = StdRng::seed_from_u64(3);
    for d in 1..=5u32 {
        let t = Task::Arithmetic { difficulty: d };
        let p = t.sample(&mut rng);
        let operands = p
            .prompt
            .split_whitespace()
            .filter(|w| w.trim_end_matches('.').parse::<i64>().is_ok())
            .count();
        assert_eq!(operands, d as usize + 1, "{p:?}");
        assert_eq!(p.steps.len(), d as usize, "one rewrite per operation");
        assert_eq!(p.steps.last().unwrap(), &p.answer);
    }
    let c = aha_train::tasks::reduction_chain(&[7, 5, 3, 4], &['+', '*', '-'], 99).unwrap();
    assert_eq!(c.join(" = "), "7 + 5 * 3 - 4 = 7 + 15 - 4 = 22 - 4 = 18");
    assert!("arithmetic:4".parse::<Task>().unwrap() == Task::Arithmetic { difficulty: 4 });
    assert!("countdown".parse::<Task>().unwrap() == Task::Countdown { difficulty: 2 });
    assert!("sudoku".parse::<Task>().is_err() && "arithmetic:0".parse::<Task>().is_err());
    assert!(r1_zero_prompt("Compute 1 + 2.").ends_with("User: Compute 1 + 2. Assistant:"));
}

#[test]
fn verifier_accepts_answers_and_rejects_perturbed_ones() {
    for t in tasks() {
        for p in t
            .test_set(100)
            .iter()
            .chain(t.train_problems(1).take(100).collect::<Vec<_>>().iter())
        {
            let good = format!(
                "<think> {} </think> <answer> {} </answer>",
                p.steps.join(", "),
                p.answer
            );
            assert!(t.check(p, &good), "{t}: {p:?}");
            assert!(is_well_formatted(&good));
            let bad = match t {
                Task::Arithmetic { .. } | Task::Json { .. } | Task::Tool { .. } => format!(
                    "<think> x </think> <answer> {} </answer>",
                    p.gold.parse::<i64>().unwrap() + 1
                ),
                Task::Countdown { .. } => {
                    format!("<think> x </think> <answer> {} + 1 </answer>", p.answer)
                }
            };
            assert!(!t.check(p, &bad), "{t}: accepted {bad} for {p:?}");
            assert!(
                !t.check(p, "<think> no idea </think> <answer> </answer>"),
                "{t}"
            );
        }
    }
    // A countdown answer with a number used twice or missing is wrong even if the value fits.
    let t = Task::Countdown { difficulty: 2 };
    let p = t.test_set(1).remove(0);
    let target = p.meta["target"].as_i64().unwrap();
    assert!(!t.check(&p, &format!("<answer> {target} </answer>")));
}

#[test]
fn corpus_documents_have_the_intended_kinds() {
    let mut rng = StdRng::seed_from_u64(5);
    for t in [
        Task::Arithmetic { difficulty: 3 },
        Task::Countdown { difficulty: 2 },
    ] {
        for p in t.train_problems(2).take(200) {
            let cot = completion_text(&t, &p, Style::plain(DocKind::StepByStep), &mut rng);
            assert!(is_well_formatted(&cot) && t.check(&p, &cot), "{cot}");
            let direct = completion_text(&t, &p, Style::plain(DocKind::Direct), &mut rng);
            assert!(
                is_well_formatted(&direct) && t.check(&p, &direct),
                "{direct}"
            );
            assert!(direct.len() <= cot.len());
            let slip = completion_text(&t, &p, Style::plain(DocKind::Slip), &mut rng);
            assert!(is_well_formatted(&slip), "{slip}");
            if matches!(t, Task::Arithmetic { .. }) {
                assert!(
                    !t.check(&p, &slip),
                    "a slip leads to a wrong answer: {slip}"
                );
            }
            for format in [Format::NoAnswerTags, Format::NoTags, Format::NoThinkClose] {
                let style = Style {
                    format,
                    ..Style::plain(DocKind::StepByStep)
                };
                let bad = completion_text(&t, &p, style, &mut rng);
                assert!(!is_well_formatted(&bad), "{bad}");
                // The built-in tasks take the answer from the answer block only.
                assert_eq!(t.check(&p, &bad), format == Format::NoThinkClose, "{bad}");
            }
        }
    }
}

#[test]
fn worked_solutions_come_in_two_languages() {
    let english = aha_reward::RewardFn::Language {
        script: aha_reward::Script::Latin,
    };
    let t = Task::Arithmetic { difficulty: 3 };
    let mut rng = StdRng::seed_from_u64(9);
    let mut mixed_shares = Vec::new();
    for p in t.train_problems(3).take(100) {
        let style = |lang| Style {
            lang,
            ..Style::plain(DocKind::StepByStep)
        };
        let en = completion_text(&t, &p, style(Lang::English), &mut rng);
        let second = completion_text(&t, &p, style(Lang::Second), &mut rng);
        let mixed = completion_text(&t, &p, style(Lang::Mixed), &mut rng);
        for doc in [&en, &second, &mixed] {
            assert!(is_well_formatted(doc) && t.check(&p, doc), "{doc}");
        }
        assert_eq!(english.score(&en, None), 1.0, "{en}");
        assert_eq!(english.score(&second, None), 0.0, "{second}");
        mixed_shares.push(english.score(&mixed, None));
        // The same steps, only the words differ.
        let digits = |s: &str| {
            s.split_whitespace()
                .filter(|w| w.parse::<i64>().is_ok())
                .count()
        };
        assert_eq!(digits(&en), digits(&second));
    }
    let mean = mixed_shares.iter().sum::<f32>() / mixed_shares.len() as f32;
    assert!((0.3..0.7).contains(&mean), "mixed documents mix: {mean}");
}

#[test]
fn drills_are_the_steps_of_worked_solutions() {
    use aha_train::corpus::{corpus, facts, CorpusMix};
    let t = Task::Arithmetic { difficulty: 3 };
    let mut rng = StdRng::seed_from_u64(4);
    for p in t.train_problems(4).take(100) {
        let f = facts(&p, Lang::English, &mut rng);
        assert_eq!(f.len(), p.steps.len());
        // Every fact is true, and the last one gives the answer.
        for fact in &f {
            let w: Vec<&str> = fact.split_whitespace().collect();
            let (a, b, c): (i64, i64, i64) = (
                w[0].parse().unwrap(),
                w[2].parse().unwrap(),
                w[4].parse().unwrap(),
            );
            let v = match w[1] {
                "+" => a + b,
                "-" => a - b,
                _ => a * b,
            };
            assert_eq!(v, c, "{fact} in {:?}", p.prompt);
        }
        assert!(f.last().unwrap().ends_with(&format!("is {}", p.answer)));
    }
    let only_drills = CorpusMix {
        step_by_step: 0.0,
        direct: 0.0,
        slip: 0.0,
        drill: 1.0,
        second_language: 0.0,
        mixed_language: 0.0,
        ..CorpusMix::default()
    };
    for doc in corpus(t, only_drills, 3).take(20) {
        assert!(
            !doc.contains("Assistant") && doc.ends_with("<|endoftext|>"),
            "{doc}"
        );
        assert!(
            doc.matches(" is ").count() >= 4,
            "several problems' steps: {doc}"
        );
    }
}

#[test]
fn the_json_task_answers_arithmetic_in_json() {
    let t: Task = "json".parse().unwrap();
    assert_eq!(t, Task::Json { difficulty: 2 });
    let schema = aha_reward::JsonSchemaCheck::new(t.answer_schema().unwrap()).unwrap();
    // The same training problems and held-out partition as arithmetic, with the
    // instruction added.
    let arith = Task::Arithmetic { difficulty: 2 };
    for (j, a) in t.train_problems(4).zip(arith.train_problems(4)).take(50) {
        assert_eq!(j.key, a.key);
        assert_eq!(j.prompt, format!("{} Answer in JSON.", a.prompt));
        assert_eq!(j.gold, a.gold);
    }
    for j in t.test_set(50) {
        assert!(Task::is_held_out(&j), "{}", j.key);
        let answer: serde_json::Value = serde_json::from_str(&j.answer).unwrap();
        assert!(schema.is_valid(&answer), "{}", j.answer);
        assert_eq!(answer["answer"].to_string(), j.gold);
        assert_eq!(answer["steps"], j.steps.len());
    }
    let mut rng = StdRng::seed_from_u64(11);
    for p in t.train_problems(5).take(200) {
        let gold: i64 = p.gold.parse().unwrap();
        for kind in [DocKind::StepByStep, DocKind::Direct] {
            let doc = completion_text(&t, &p, Style::plain(kind), &mut rng);
            assert!(t.is_well_formatted(&doc), "{doc}");
            assert!(t.check(&p, &doc), "{doc}");
            assert!(!doc.contains("<answer>"), "{doc}");
        }
        let slip = completion_text(&t, &p, Style::plain(DocKind::Slip), &mut rng);
        // A slip may leave the value range (a negative value is outside the schema).
        assert!(aha_reward::json_answer(&slip).is_some(), "{slip}");
        // The broken formats are not JSON but still carry the value.
        for doc in broken_formats(&t, &p, &mut rng) {
            assert!(!t.is_well_formatted(&doc), "{doc}");
            assert!(t.check(&p, &doc), "{doc}");
        }
        // JSON with the wrong value, a wrong type, extra text or no reasoning.
        let json = |v: &str| format!("<think> work </think> {{\"answer\": {v}, \"steps\": 2}}");
        assert!(t.is_well_formatted(&json(&(gold + 1).to_string())));
        assert!(!t.check(&p, &json(&(gold + 1).to_string())));
        assert!(!t.is_well_formatted(&json(&format!("\"{gold}\""))));
        assert!(!t.is_well_formatted(&format!("{} ok", json(&p.gold))));
        assert!(!t.is_well_formatted(&format!("{{\"answer\": {gold}, \"steps\": 2}}")));
        assert!(!t.is_well_formatted(&format!(
            "<think> </think> {{\"answer\": {gold}, \"steps\": 2}}"
        )));
        // A reasoning cut off mid-chain gives no value.
        assert_eq!(t.final_value(&format!("<think> {} is", p.gold)), None);
    }
}

#[test]
fn structured_tasks_corpora_use_their_format_only_sometimes() {
    use aha_train::corpus::{corpus, CorpusMix};
    let mix = CorpusMix::default();
    for (t, marker, instruction) in [
        (
            Task::Json { difficulty: 2 },
            "{\"answer\":",
            "Answer in JSON.",
        ),
        (
            Task::Tool { difficulty: 2 },
            "<tool_call>",
            "Call the answer tool.",
        ),
    ] {
        let docs: Vec<String> = corpus(t, mix, 3).take(3000).collect();
        let template: Vec<&String> = docs.iter().filter(|d| d.contains("Assistant:")).collect();
        let structured = template.iter().filter(|d| d.contains(marker)).count();
        let share = structured as f64 / template.len() as f64;
        // The strict format is `mix.formatted` of the template documents.
        assert!(
            (share - mix.formatted as f64).abs() < 0.05,
            "{t}: {marker} in {share:.3} of the template documents"
        );
        assert!(template.iter().all(|d| d.contains(instruction)));
    }
}

#[test]
fn the_tool_task_answers_arithmetic_with_a_call_judged_by_the_tool_call_reward() {
    let t: Task = "tool".parse().unwrap();
    assert_eq!(t, Task::Tool { difficulty: 2 });
    let arith = Task::Arithmetic { difficulty: 2 };
    for (c, a) in t.train_problems(4).zip(arith.train_problems(4)).take(50) {
        assert_eq!(c.key, a.key);
        assert_eq!(c.prompt, format!("{} Call the answer tool.", a.prompt));
        assert_eq!(c.gold, a.gold);
    }
    let call = |v: &str| {
        format!("<tool_call>\n{{\"name\": \"answer\", \"arguments\": {{\"value\": {v}}}}}\n</tool_call>")
    };
    let mut rng = StdRng::seed_from_u64(11);
    for p in t.train_problems(5).take(200) {
        assert_eq!(p.answer, call(&p.gold));
        let gold: i64 = p.gold.parse().unwrap();
        for kind in [DocKind::StepByStep, DocKind::Direct] {
            let doc = completion_text(&t, &p, Style::plain(kind), &mut rng);
            assert!(t.is_well_formatted(&doc), "{doc}");
            assert!(t.check(&p, &doc), "{doc}");
            assert_eq!(t.final_value(&doc), Some(p.gold.clone()), "{doc}");
        }
        // The broken formats carry the value but make no call: wrong, with no value.
        for doc in broken_formats(&t, &p, &mut rng) {
            assert!(!t.is_well_formatted(&doc), "{doc}");
            assert!(!t.check(&p, &doc), "{doc}");
            assert_eq!(t.final_value(&doc), None, "{doc}");
        }
        let answer = |v: &str| format!("<think> work </think> {}", call(v));
        // A well-formed call with the wrong value; a value of the wrong type; a call of
        // another function; two calls; text after the call; no reasoning.
        assert!(t.is_well_formatted(&answer(&(gold + 1).to_string())));
        assert!(!t.check(&p, &answer(&(gold + 1).to_string())));
        assert!(!t.is_well_formatted(&answer(&format!("\"{gold}\""))));
        assert!(!t.check(&p, &answer(&format!("\"{gold}\""))));
        let other = answer(&p.gold).replace("\"answer\"", "\"submit\"");
        assert!(!t.is_well_formatted(&other) && !t.check(&p, &other));
        let twice = format!("{}\n{}", answer(&p.gold), call(&p.gold));
        assert!(!t.is_well_formatted(&twice) && !t.check(&p, &twice));
        let chatty = format!("{} Done.", answer(&p.gold));
        assert!(!t.is_well_formatted(&chatty));
        assert!(
            t.check(&p, &chatty),
            "the reward judges the call, not the text"
        );
        assert!(!t.is_well_formatted(&format!("<think> </think> {}", call(&p.gold))));
        // A call that ends the reasoning counts for the reward, not for the format.
        let early = format!("<think> work {}", call(&p.gold));
        assert!(t.check(&p, &early) && !t.is_well_formatted(&early));
    }
}

/// A worked solution in each broken format (no answer tags, no tags, reasoning not closed).
fn broken_formats(t: &Task, p: &aha_train::tasks::Problem, rng: &mut StdRng) -> Vec<String> {
    [Format::NoAnswerTags, Format::NoTags, Format::NoThinkClose]
        .into_iter()
        .map(|format| {
            let style = Style {
                format,
                ..Style::plain(DocKind::StepByStep)
            };
            completion_text(t, p, style, rng)
        })
        .collect()
}
