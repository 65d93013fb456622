//! `aha chat --tools`: a forced call through the real DeepSeek-R1 template's tool tokens, the
//! calculator run by aha, its result rendered back, and a second answer; clear errors.

use crate::common::{asset, run, stderr};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A random one-layer model around the real R1 tokenizer, saved as an HF directory.
fn random_r1(dir: &Path) -> Option<std::path::PathBuf> {
    let src = asset("deepseek-r1-tokenizer/tokenizer.json")?;
    let src = src.parent().unwrap();
    let tok = aha_text::Tokenizer::from_dir(src).unwrap();
    let cfg = aha_train::pretrain::PretrainConfig {
        num_layers: 1,
        ..aha_train::pretrain::PretrainConfig::tiny(aha_train::tasks::Task::default())
    };
    let eos = tok.eos_token_id().unwrap();
    let model =
        aha_train::pretrain::init_model(&cfg, tok.vocab_size().max(129_280), eos, 0).unwrap();
    let out = dir.join("r1-random");
    model.save(&out).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), out.join(f)).unwrap();
    }
    Some(out)
}

fn chat(args: &[&str], input: &str) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aha"))
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "aha chat failed:\n{se}");
    (so, se)
}

#[test]
fn chat_runs_a_forced_calculator_call_and_answers_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(model) = random_r1(dir.path()) else {
        return;
    };
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tools/calculator.json");
    let (m, t) = (model.to_str().unwrap(), tools.to_str().unwrap());
    let (out, _) = chat(
        &[
            "--model",
            m,
            "--tools",
            t,
            "--tool-choice",
            "calculator",
            "--thinking-budget",
            "8",
            "--max-tokens",
            "60",
            "--seed",
            "3",
        ],
        "What is 17 * 23?\n/exit\n",
    );
    // The forced first answer is one call in R1's own syntax, run by aha ...
    assert!(out.contains("<｜tool▁calls▁begin｜>"), "{out}");
    let tool_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("[tool] ")).collect();
    assert_eq!(tool_lines.len(), 1, "{out}");
    assert!(
        tool_lines[0].starts_with("[tool] calculator({\"expression\""),
        "{out}"
    );
    // ... and the model answers again with the result in its prompt (not forced: no call).
    let after = out.split(tool_lines[0]).nth(1).unwrap();
    assert!(after.contains("[thinking]"), "no second answer: {out}");
}

#[test]
fn tools_need_a_template_that_writes_calls_and_a_known_choice() {
    let dir = tempfile::tempdir().unwrap();
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tools/calculator.json");
    let t = tools.to_str().unwrap();
    if let Some(smol) = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") {
        let out = run(&["chat", "--model", smol.to_str().unwrap(), "--tools", t]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("does not write tool calls"),
            "{}",
            stderr(&out)
        );
    }
    let Some(model) = random_r1(dir.path()) else {
        return;
    };
    let m = model.to_str().unwrap();
    let out = run(&[
        "chat",
        "--model",
        m,
        "--tools",
        t,
        "--tool-choice",
        "weather",
    ]);
    assert!(
        stderr(&out).contains("--tool-choice weather: no such tool"),
        "{}",
        stderr(&out)
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[{\"type\": \"function\"}]").unwrap();
    let out = run(&["chat", "--model", m, "--tools", bad.to_str().unwrap()]);
    assert!(stderr(&out).contains("each tool is"), "{}", stderr(&out));
}

/// A tools file that is not JSON, or whose `parameters` the constraint compiler rejects, is
/// refused naming the file (and the tool) before the model loads: here the weights are
/// missing, and loading them used to fail first.
#[test]
fn a_bad_tools_file_is_refused_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::common::tiny_model(dir.path(), false);
    std::fs::write(
        model.join("chat_template.jinja"),
        crate::common::HERMES_TEMPLATE,
    )
    .unwrap();
    let tools = dir.path().join("tools.json");
    let (m, t) = (model.to_str().unwrap(), tools.to_str().unwrap());
    std::fs::write(
        &tools,
        r#"[{"type": "function", "function": {"name": "calc", "parameters":
            {"type": "object", "properties": {"x": {"type": "nonsense"}}}}}]"#,
    )
    .unwrap();
    let out = run(&["chat", "--model", m, "--tools", t]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{t}: tool \"calc\"")) && !err.contains("loading model"),
        "{err}"
    );
    std::fs::write(&tools, "[{not json").unwrap();
    let err = stderr(&run(&["chat", "--model", m, "--tools", t]));
    assert!(err.contains(&format!("{t} is not JSON")), "{err}");
}
