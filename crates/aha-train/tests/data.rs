//! Datasets: the same rows from JSONL and from a Parquet file (written by pyarrow, snappy, as
//! Hugging Face datasets store them), and clear errors on bad files.

use aha_train::data::{question_answer, read_records, DataError};
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn parquet_and_jsonl_give_the_same_rows() {
    let pq = read_records(&fixture("qa.parquet"), None).unwrap();
    let js = read_records(&fixture("qa.jsonl"), None).unwrap();
    assert_eq!(pq.len(), 5);
    assert_eq!(pq, js);
    let qa = question_answer(&pq, &fixture("qa.parquet")).unwrap();
    assert!(qa[0].0.starts_with("Tom has 1 apples") && qa[0].1.ends_with("#### 5"));
    assert_eq!(
        read_records(&fixture("qa.parquet"), Some(2)).unwrap().len(),
        2
    );
}

#[test]
fn bad_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.parquet");
    std::fs::write(&fake, b"PAR1 this is not parquet").unwrap();
    assert!(matches!(
        read_records(&fake, None),
        Err(DataError::Parquet { .. })
    ));
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"question\": \"q\", \"answer\": \"a\"}\n[1, 2]\n").unwrap();
    let err = read_records(&bad, None).unwrap_err().to_string();
    assert!(err.contains(":2:"), "{err}");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    assert!(matches!(
        read_records(&empty, None),
        Err(DataError::Empty { .. })
    ));
    let rows = read_records(&fixture("qa.jsonl"), None).unwrap();
    let mut no_answer = rows.clone();
    no_answer[3].remove("answer");
    let err = question_answer(&no_answer, Path::new("x.jsonl")).unwrap_err();
    assert!(err.to_string().contains("row 4"), "{err}");
    assert!(read_records(&dir.path().join("missing.jsonl"), None).is_err());
}
