//! Running the `aha` binary from tests.

use std::process::{Command, Output};

/// Run `aha` with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aha"))
        .args(args)
        .output()
        .expect("run aha")
}

/// Run `aha` with `args` and require success (the failure shows its stderr).
pub fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "aha {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A real asset from scripts/fetch_assets.sh, or None (test skipped) when absent outside CI.
pub fn asset(rel: &str) -> Option<std::path::PathBuf> {
    let base = std::env::var_os("AHA_ASSETS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/assets")
        });
    let p = base.join(rel);
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "asset {} missing under CI: run scripts/fetch_assets.sh",
        p.display()
    );
    eprintln!(
        "SKIP: asset {} missing (run scripts/fetch_assets.sh)",
        p.display()
    );
    None
}

/// A random one-layer Qwen2 with the byte-level tokenizer `aha pretrain` trains (on a few
/// hundred documents), as an HF directory under `dir`; with `weights` false, only its
/// tokenizer files (a model that cannot load).
pub fn tiny_model(dir: &std::path::Path, weights: bool) -> std::path::PathBuf {
    use aha_train::pretrain::{prepare, PretrainConfig};
    let cfg = PretrainConfig {
        num_layers: 1,
        tokenizer_docs: 200,
        ..PretrainConfig::tiny(aha_train::tasks::Task::Arithmetic { difficulty: 1 })
    };
    let out = dir.join("tiny");
    let (model, _) = prepare(&cfg, &out).expect("a tiny model");
    if weights {
        model.save(&out).expect("saving the tiny model");
    }
    out
}

/// A chat template in Hermes' call syntax (as Qwen2.5 writes calls), each turn ended by EOS.
pub const HERMES_TEMPLATE: &str = "{% if tools %}<sys>tools: {{ tools | tojson }}{{ eos_token }}{% endif %}\
{% for m in messages %}{% if m.role == 'tool' %}<user><tool_response>{{ m.content }}</tool_response>{{ eos_token }}\
{% else %}<{{ m.role }}>{% if m.content %}{{ m.content }}{% endif %}{% if m.tool_calls %}{% for c in m.tool_calls %}\
<tool_call>{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments }}}</tool_call>{% endfor %}{% endif %}\
{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
