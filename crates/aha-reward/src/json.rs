//! Structured answers: the JSON a response gives after its reasoning, and whether it is
//! valid under a JSON Schema (checked by the `jsonschema` crate, independently of the
//! grammar engine that constrains decoding).

use crate::error::RewardError;
use std::path::Path;
use std::sync::Arc;

/// The answer part of a response: what follows the last `</think>` (the whole response
/// when there is none), trimmed.
pub fn answer_part(response: &str) -> &str {
    match response.rfind("</think>") {
        Some(i) => response[i + "</think>".len()..].trim(),
        None => response.trim(),
    }
}

/// The answer part parsed as one JSON value with nothing but whitespace around it.
pub fn json_answer(response: &str) -> Option<serde_json::Value> {
    serde_json::from_str(answer_part(response)).ok()
}

/// A compiled JSON Schema.
#[derive(Clone)]
pub struct JsonSchemaCheck {
    schema: serde_json::Value,
    validator: Arc<jsonschema::Validator>,
}

impl JsonSchemaCheck {
    /// Compile `schema`; an invalid schema is an error naming what is wrong.
    pub fn new(schema: serde_json::Value) -> Result<Self, RewardError> {
        let validator = jsonschema::validator_for(&schema).map_err(|e| RewardError::BadParam {
            name: "json_schema".into(),
            param: "schema".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            schema,
            validator: Arc::new(validator),
        })
    }

    /// Read and compile a schema file.
    pub fn from_file(path: &Path) -> Result<Self, RewardError> {
        let bad = |reason: String| RewardError::SchemaFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let schema = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        Self::new(schema).map_err(|e| bad(e.to_string()))
    }

    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn any_object() -> Self {
        Self::new(serde_json::json!({"type": "object"})).expect("a valid schema")
    }

    pub fn schema(&self) -> &serde_json::Value {
        &self.schema
    }

    pub fn is_valid(&self, value: &serde_json::Value) -> bool {
        self.validator.is_valid(value)
    }

    /// Whether the response's answer part ([`json_answer`]) is valid under the schema.
    pub fn check_response(&self, response: &str) -> bool {
        json_answer(response).is_some_and(|v| self.is_valid(&v))
    }
}

impl PartialEq for JsonSchemaCheck {
    fn eq(&self, other: &Self) -> bool {
        self.schema == other.schema
    }
}

impl std::fmt::Debug for JsonSchemaCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JsonSchemaCheck")
            .field(&self.schema)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_schema() -> JsonSchemaCheck {
        JsonSchemaCheck::new(serde_json::json!({
            "type": "object",
            "properties": {"answer": {"type": "integer"}, "steps": {"type": "integer", "minimum": 1}},
            "required": ["answer", "steps"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn the_answer_is_what_follows_the_reasoning() {
        let s = answer_schema();
        assert!(s.check_response("<think> 2 + 3 is 5 </think> {\"answer\": 5, \"steps\": 1}"));
        assert!(s.check_response(" 2 + 3 is 5 </think>\n{\"answer\": 5,\n \"steps\": 1}\n"));
        assert!(s.check_response("{\"answer\": 5, \"steps\": 1}"));
        // JSON inside the reasoning does not count; the answer after it does.
        assert!(!s.check_response("<think> {\"answer\": 5, \"steps\": 1} </think> 5"));
        // Wrong types, missing or extra keys, trailing text, a cut-off object.
        for bad in [
            "</think> {\"answer\": \"5\", \"steps\": 1}",
            "</think> {\"answer\": 5}",
            "</think> {\"answer\": 5, \"steps\": 1, \"why\": 0}",
            "</think> {\"answer\": 5, \"steps\": 0}",
            "</think> {\"answer\": 5, \"steps\": 1} done",
            "</think> {\"answer\": 5, \"steps\"",
            "</think> The answer is 5.",
        ] {
            assert!(!s.check_response(bad), "{bad}");
        }
    }

    #[test]
    fn bad_schemas_and_files_are_errors() {
        assert!(JsonSchemaCheck::new(serde_json::json!({"type": 12})).is_err());
        let e = JsonSchemaCheck::from_file(Path::new("/nonexistent/schema.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/schema.json"), "{e}");
        assert!(JsonSchemaCheck::any_object().check_response("</think> {}"));
        assert!(!JsonSchemaCheck::any_object().check_response("</think> [1]"));
    }
}
