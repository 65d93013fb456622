//! Prompt datasets: rows of named text fields from JSONL (one JSON object per line) or from
//! Parquet files as Hugging Face datasets store them (e.g. `train-00000-of-00001.parquet`).

use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a JSON object: {msg}")]
    Json {
        path: String,
        line: usize,
        msg: String,
    },
    #[error("{path}: not a readable Parquet file: {msg}")]
    Parquet { path: String, msg: String },
    #[error("{path}: row {row}: no {wanted} field (looked for {keys:?})")]
    MissingField {
        path: String,
        row: usize,
        wanted: &'static str,
        keys: Vec<&'static str>,
    },
    #[error("{path}: no rows")]
    Empty { path: String },
    /// A row whose fields are there but unusable.
    #[error("{path}: {at}: {msg}")]
    Row {
        path: String,
        at: RowAt,
        msg: String,
    },
}

/// Where a row was read: its line in a JSONL file, or its row in a Parquet file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAt {
    Line(usize),
    Row(usize),
}

impl std::fmt::Display for RowAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowAt::Line(n) => write!(f, "line {n}"),
            RowAt::Row(n) => write!(f, "row {n}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;

/// One row: its fields, strings and numbers (nested values kept as JSON).
pub type Record = Map<String, Value>;

/// Read up to `limit` rows of a `.jsonl` / `.json` (JSON lines) or `.parquet` file.
pub fn read_records(path: &Path, limit: Option<usize>) -> Result<Vec<Record>> {
    Ok(read_records_at(path, limit)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// [`read_records`] with where each row was read (blank JSONL lines are skipped, so a row's
/// index is not its line).
pub fn read_records_at(path: &Path, limit: Option<usize>) -> Result<Vec<(RowAt, Record)>> {
    let name = path.display().to_string();
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let rows = if is_parquet {
        read_parquet(path, limit)?
    } else {
        read_jsonl(path, limit)?
    };
    if rows.is_empty() {
        return Err(DataError::Empty { path: name });
    }
    Ok(rows)
}

fn read_jsonl(path: &Path, limit: Option<usize>) -> Result<Vec<(RowAt, Record)>> {
    let name = path.display().to_string();
    let io = |source| DataError::Io {
        path: name.clone(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        if limit.is_some_and(|n| rows.len() >= n) {
            break;
        }
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(m)) => rows.push((RowAt::Line(i + 1), m)),
            Ok(_) => {
                return Err(DataError::Json {
                    path: name,
                    line: i + 1,
                    msg: "a JSON value that is not an object".into(),
                })
            }
            Err(e) => {
                return Err(DataError::Json {
                    path: name,
                    line: i + 1,
                    msg: e.to_string(),
                })
            }
        }
    }
    Ok(rows)
}

fn read_parquet(path: &Path, limit: Option<usize>) -> Result<Vec<(RowAt, Record)>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let name = path.display().to_string();
    let bad = |e: parquet::errors::ParquetError| DataError::Parquet {
        path: name.clone(),
        msg: e.to_string(),
    };
    let f = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    let reader = SerializedFileReader::new(f).map_err(bad)?;
    let mut rows = Vec::new();
    for row in reader.get_row_iter(None).map_err(bad)? {
        if limit.is_some_and(|n| rows.len() >= n) {
            break;
        }
        let row = row.map_err(bad)?;
        let mut m = Map::new();
        for (k, v) in row.get_column_iter() {
            let value = match v {
                Field::Str(s) => Value::String(s.clone()),
                Field::Null => Value::Null,
                Field::Bool(b) => Value::Bool(*b),
                Field::Int(x) => Value::from(*x),
                Field::Long(x) => Value::from(*x),
                Field::Float(x) => Value::from(*x as f64),
                Field::Double(x) => Value::from(*x),
                // Anything else (lists, structs, dates, bytes) as the crate displays it.
                other => Value::String(other.to_string()),
            };
            m.insert(k.clone(), value);
        }
        rows.push((RowAt::Row(rows.len() + 1), m));
    }
    Ok(rows)
}

/// Whether [`question_answer`] takes a row's reference from its `tool_calls` (no answer field
/// comes before it).
pub fn answer_is_tool_calls(r: &Record) -> bool {
    ANSWER_KEYS.iter().find(|k| field(r, k).is_some()) == Some(&"tool_calls")
}

/// Where [`question_answer`] looks for the reference, in order. `tool_calls`: the reference
/// calls of a tool-use row, kept as their JSON text.
const ANSWER_KEYS: [&str; 5] = ["answer", "gold", "solution", "ground_truth", "tool_calls"];

/// Field `key` of a row as a question or reference: a string, a number, or `tool_calls`' JSON.
fn field(r: &Record, key: &str) -> Option<String> {
    match r.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        v @ (Value::Array(_) | Value::Object(_)) if key == "tool_calls" => Some(v.to_string()),
        _ => None,
    }
}

/// A question and its reference answer, from the first present field of each list
/// (GSM8K: `question` / `answer`; MATH-style: `problem` / `solution`; also `prompt` / `gold`).
pub fn question_answer(rows: &[Record], path: &Path) -> Result<Vec<(String, String)>> {
    const Q: [&str; 3] = ["question", "prompt", "problem"];
    let text = |r: &Record, keys: &[&'static str]| keys.iter().find_map(|k| field(r, k));
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let missing = |wanted, keys: &[&'static str]| DataError::MissingField {
                path: path.display().to_string(),
                row: i + 1,
                wanted,
                keys: keys.to_vec(),
            };
            Ok((
                text(r, &Q).ok_or_else(|| missing("question", &Q))?,
                text(r, &ANSWER_KEYS).ok_or_else(|| missing("answer", &ANSWER_KEYS))?,
            ))
        })
        .collect()
}

/// The dataset indices of step `step`: epochs of seeded permutations, so any step's batch
/// is known without replaying the ones before (resume).
pub fn batch_indices(n: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    // splitmix64, so that the order does not depend on a crate's RNG version.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut out = Vec::with_capacity(batch);
    let mut k = step as usize * batch;
    let mut epoch = usize::MAX;
    let mut perm: Vec<usize> = Vec::new();
    while out.len() < batch {
        let e = k / n;
        if e != epoch {
            perm = (0..n).collect();
            let mut state = mix(seed ^ mix(e as u64));
            for i in (1..n).rev() {
                state = mix(state);
                perm.swap(i, (state % (i as u64 + 1)) as usize);
            }
            epoch = e;
        }
        out.push(perm[k % n]);
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::batch_indices;

    /// Each epoch visits every row once, in an order that depends on the seed; any step's
    /// batch comes out the same computed alone (what resuming needs).
    #[test]
    fn batches_are_seeded_epochs() {
        let (n, b) = (10, 4);
        let flat: Vec<usize> = (0..5).flat_map(|s| batch_indices(n, b, 7, s)).collect();
        for epoch in flat.chunks(n).take(2) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            assert_eq!(e, (0..n).collect::<Vec<_>>());
        }
        assert_ne!(flat[..n], flat[n..2 * n], "epochs in the same order");
        assert_ne!(batch_indices(n, b, 8, 0), batch_indices(n, b, 7, 0));
        assert_eq!(batch_indices(n, b, 7, 3), flat[12..16]);
    }
}
