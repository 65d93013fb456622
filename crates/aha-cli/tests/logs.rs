//! Logs written to a file (stderr not a terminal) are plain text, without colour codes.

use crate::common::{stderr, tiny_model};
use std::process::Command;

#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), true);
    // No server answers on port 9: the rollout client logs a warning, then gives up.
    let out = Command::new(env!("CARGO_BIN_EXE_aha"))
        .args(["eval", "--model", model.to_str().unwrap()])
        .args([
            "--task",
            "arithmetic:1",
            "--n",
            "1",
            "--url",
            "http://127.0.0.1:9",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(err.contains("WARN") && err.contains("will retry"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
}
