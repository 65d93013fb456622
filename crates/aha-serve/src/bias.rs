//! `logit_bias`, and the chain a request's logits processors run in.

use crate::api::ApiError;
use aha_engine::LogitsProcessor;
use serde_json::{Map, Value};

/// Adds each listed token's bias to its logit, for every sample (OpenAI's `logit_bias`: -100
/// all but bans a token, 100 all but forces it). Reported log-probabilities include it, as
/// they include a constraint's mask.
#[derive(Clone)]
pub struct LogitBias(Vec<(u32, f32)>);

impl LogitBias {
    /// Read `logit_bias`: each key a token id of the model's vocabulary (`vocab` ids), each
    /// value a number in [-100, 100]. None when it lists nothing.
    pub fn parse(map: &Map<String, Value>, vocab: usize) -> Result<Option<Self>, ApiError> {
        let bad = |m: String| ApiError::bad_request(m, Some("logit_bias"));
        let mut biases = Vec::with_capacity(map.len());
        for (key, value) in map {
            let id = key
                .parse::<u32>()
                .ok()
                .filter(|&t| (t as usize) < vocab)
                .ok_or_else(|| {
                    bad(format!(
                        "logit_bias key {key:?} is not a token id of this model (0 to {})",
                        vocab.saturating_sub(1)
                    ))
                })?;
            let bias = value
                .as_f64()
                .filter(|b| (-100.0..=100.0).contains(b))
                .ok_or_else(|| {
                    bad(format!(
                        "logit_bias of token {key}: {value} is not a number in [-100, 100]"
                    ))
                })?;
            biases.push((id, bias as f32));
        }
        Ok((!biases.is_empty()).then_some(Self(biases)))
    }
}

impl LogitsProcessor for LogitBias {
    fn process(&mut self, _sample: usize, _generated: &[u32], logits: &mut [f32]) {
        for &(token, bias) in &self.0 {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
    }
}

/// Processors run in order; the tokens forced are those of the first that forces any (a
/// bias cannot undo what a grammar allows one way only).
pub struct Chain(pub Vec<Box<dyn LogitsProcessor>>);

impl LogitsProcessor for Chain {
    fn process(&mut self, sample: usize, generated: &[u32], logits: &mut [f32]) {
        for p in &mut self.0 {
            p.process(sample, generated, logits);
        }
    }

    fn forced(&mut self, sample: usize, generated: &[u32]) -> Vec<u32> {
        for p in &mut self.0 {
            let f = p.forced(sample, generated);
            if !f.is_empty() {
                return f;
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Option<LogitBias>, ApiError> {
        LogitBias::parse(v.as_object().unwrap(), 10)
    }

    #[test]
    fn keys_outside_the_vocabulary_and_values_out_of_range_are_named() {
        for (bad, named) in [
            (json!({"10": 1}), "\"10\""),
            (json!({"-1": 1}), "\"-1\""),
            (json!({"x": 1}), "\"x\""),
            (json!({"1.5": 1}), "\"1.5\""),
            (json!({"3": 100.5}), "token 3"),
            (json!({"3": -101}), "token 3"),
            (json!({"3": "5"}), "token 3"),
        ] {
            let e = parse(bad.clone())
                .err()
                .unwrap_or_else(|| panic!("{bad} passed"));
            assert_eq!(e.param, Some("logit_bias"));
            assert!(e.message.contains(named), "{bad}: {}", e.message);
        }
        assert!(parse(json!({})).unwrap().is_none());
        let mut b = parse(json!({"9": -100, "0": 2.5})).unwrap().unwrap();
        let mut logits = vec![1.0f32; 10];
        b.process(0, &[], &mut logits);
        assert_eq!(logits[9], -99.0);
        assert_eq!(logits[0], 3.5);
        assert_eq!(logits[1], 1.0);
    }
}
