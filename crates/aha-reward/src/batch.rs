//! JSONL verification: one `{"gold": .., "prediction": ..}` object per line
//! in, the same object with `verdict` and `extracted` added out.

use crate::{verify_rounded, ExtractConfig};
use serde_json::{json, Map, Value};

/// The result of one input line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineOutcome {
    /// The output line (compact JSON, no newline).
    pub json: String,
    pub verdict: bool,
    /// The line's `expected` field, when it has a boolean one.
    pub expected: Option<bool>,
}

fn field_text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        // Numeric golds (`"gold": 18`) are common in hand-made files.
        other => Some(other.to_string()),
    }
}

/// Verifies one JSONL line. Malformed lines get `verdict: false` and an
/// `error` field instead of stopping the run.
pub fn verify_json_line(line: &str, cfg: &ExtractConfig) -> LineOutcome {
    let parsed: Result<Value, _> = serde_json::from_str(line);
    let mut obj = match parsed {
        Ok(Value::Object(o)) => o,
        Ok(other) => {
            let mut m = Map::new();
            m.insert("input".into(), other);
            m
        }
        Err(e) => {
            let mut m = Map::new();
            m.insert("input".into(), Value::String(line.to_string()));
            m.insert("error".into(), Value::String(format!("invalid JSON: {e}")));
            m.insert("verdict".into(), Value::Bool(false));
            return LineOutcome {
                json: Value::Object(m).to_string(),
                verdict: false,
                expected: None,
            };
        }
    };
    let expected = obj.get("expected").and_then(Value::as_bool);
    let gold = field_text(&obj, "gold");
    let pred = field_text(&obj, "prediction");
    let verdict = match (gold, pred) {
        (Some(g), Some(p)) => {
            // `"precision": d`: numbers equal when rounded to d decimals.
            let round_to = obj
                .get("precision")
                .and_then(Value::as_u64)
                .map(|d| d.min(15) as u32);
            let v = verify_rounded(&g, &p, cfg, round_to);
            let extracted = json!({
                "gold": v.gold,
                "prediction": v.predicted.as_ref().map(|e| e.answer.clone()),
                "source": v.predicted.as_ref().map(|e| e.source),
            });
            // Append to the original text: keeps the input's key order and
            // formatting, and avoids re-serialising long responses.
            let fresh = !obj.contains_key("verdict") && !obj.contains_key("extracted");
            if let (true, Some(head)) = (fresh, line.trim_end().strip_suffix('}')) {
                let sep = if obj.is_empty() { "" } else { "," };
                return LineOutcome {
                    json: format!(
                        "{head}{sep}\"verdict\":{},\"extracted\":{extracted}}}",
                        v.correct
                    ),
                    verdict: v.correct,
                    expected,
                };
            }
            obj.insert("extracted".into(), extracted);
            v.correct
        }
        _ => {
            obj.insert(
                "error".into(),
                Value::String("missing `gold` or `prediction`".into()),
            );
            obj.insert("extracted".into(), Value::Null);
            false
        }
    };
    obj.insert("verdict".into(), Value::Bool(verdict));
    LineOutcome {
        json: Value::Object(obj).to_string(),
        verdict,
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let cfg = ExtractConfig::default();
        let o = verify_json_line(
            r##"{"gold":"18","prediction":"so #### 18","expected":true,"id":3}"##,
            &cfg,
        );
        assert!(o.verdict);
        assert_eq!(o.expected, Some(true));
        let v: Value = serde_json::from_str(&o.json).unwrap_or(Value::Null);
        assert_eq!(v["id"], 3);
        assert_eq!(v["extracted"]["prediction"], "18");
        let bad = verify_json_line("{not json", &cfg);
        assert!(!bad.verdict && bad.json.contains("error"));
        let num = verify_json_line(r#"{"gold":18,"prediction":"18"}"#, &cfg);
        assert!(num.verdict);
        // Key order and spacing of the input survive.
        let kept = verify_json_line(r#"{"z": 1, "prediction": "7", "gold": "7"}  "#, &cfg);
        assert!(
            kept.json.starts_with(
                r#"{"z": 1, "prediction": "7", "gold": "7","verdict":true,"extracted":{"#
            ),
            "{}",
            kept.json
        );
        let parsed: Value = serde_json::from_str(&kept.json).unwrap_or(Value::Null);
        assert_eq!(parsed["extracted"]["prediction"], "7");
        // Existing `verdict` keys are replaced, not duplicated.
        let again = verify_json_line(&kept.json, &cfg);
        assert_eq!(again.json.matches("\"verdict\"").count(), 1);
    }
}
