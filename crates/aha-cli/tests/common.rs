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
