//! Checkers for the built-in tasks: countdown, arithmetic, GSM8K.

use crate::error::RewardError;
use crate::extract::{extract_answer, uses_template, ExtractConfig};
use num_rational::BigRational;
use num_traits::Zero;
use serde::Deserialize;

/// A countdown instance: reach `target` using each of `numbers` exactly once
/// with `+ - * /` and parentheses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Countdown {
    pub numbers: Vec<i64>,
    pub target: i64,
}

impl Countdown {
    /// Reads `{"numbers": [..], "target": N}`.
    pub fn from_json(s: &str) -> Result<Self, RewardError> {
        serde_json::from_str(s).map_err(|e| RewardError::BadGold(e.to_string()))
    }

    /// Checks a bare expression such as `(25 - 5) * 3 + 4`.
    pub fn check_expression(&self, expr: &str) -> bool {
        let mut p = Arith {
            s: expr.as_bytes(),
            i: 0,
            used: Vec::new(),
            depth: 0,
        };
        let Some(v) = p.expr() else { return false };
        p.skip_ws();
        if p.i != p.s.len() {
            return false;
        }
        let mut used = p.used;
        let mut given = self.numbers.clone();
        used.sort_unstable();
        given.sort_unstable();
        used == given && v == BigRational::from_integer(self.target.into())
    }

    /// Checks a full response: the `<answer>` content (or, for a response not in the
    /// think/answer template, the last line), with a trailing `= target` allowed. Under the
    /// template only a complete answer block (or a final box) after the reasoning counts
    /// ([`ExtractConfig::template`]).
    pub fn check_response(&self, response: &str) -> bool {
        let cfg = ExtractConfig {
            last_number: false,
            ..ExtractConfig::reward()
        };
        let answer = match extract_answer(response, &cfg) {
            Some(e) => e.answer,
            None if uses_template(response) => return false,
            None => response.lines().last().unwrap_or("").to_string(),
        };
        let expr = match answer.rfind('=') {
            Some(i) => &answer[..i],
            None => answer.as_str(),
        };
        let expr = expr
            .replace('\u{00D7}', "*")
            .replace('\u{00F7}', "/")
            .replace("\\times", "*")
            .replace("\\div", "/");
        self.check_expression(expr.trim())
    }
}

/// Tiny exact evaluator for `+ - * / ( )` over non-negative integer literals;
/// it records every literal so number usage can be checked.
struct Arith<'a> {
    s: &'a [u8],
    i: usize,
    used: Vec<i64>,
    depth: usize,
}

impl Arith<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Option<BigRational> {
        self.depth += 1;
        if self.depth > 64 {
            return None;
        }
        let mut acc = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term()?;
            acc = if op == b'+' { acc + r } else { acc - r };
        }
        self.depth -= 1;
        Some(acc)
    }
    fn term(&mut self) -> Option<BigRational> {
        let mut acc = self.atom()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            let r = self.atom()?;
            if op == b'*' {
                acc *= r;
            } else {
                if r.is_zero() {
                    return None;
                }
                acc /= r;
            }
        }
        Some(acc)
    }
    fn atom(&mut self) -> Option<BigRational> {
        match self.peek()? {
            b'(' => {
                self.i += 1;
                let v = self.expr()?;
                (self.peek()? == b')').then_some(())?;
                self.i += 1;
                Some(v)
            }
            c if c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                let n: i64 = std::str::from_utf8(&self.s[start..self.i])
                    .ok()?
                    .parse()
                    .ok()?;
                self.used.push(n);
                Some(BigRational::from_integer(n.into()))
            }
            _ => None,
        }
    }
}

/// Arithmetic task: the response's final answer equals `gold` exactly. The answer is
/// read as rewards read it ([`ExtractConfig::reward`]).
pub fn arithmetic(response: &str, gold: &str) -> bool {
    crate::verify_with(gold, response, &ExtractConfig::reward()).correct
}

/// GSM8K: the response's final answer equals the number after `####` in the
/// reference solution (or `gold` itself when it is just a number). The answer is read
/// as rewards read it ([`ExtractConfig::reward`]).
pub fn gsm8k(response: &str, gold_solution: &str) -> bool {
    crate::verify_with(gold_solution, response, &ExtractConfig::reward()).correct
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_rules() {
        let t = Countdown {
            numbers: vec![25, 5, 3, 4],
            target: 64,
        };
        assert!(t.check_expression("(25 - 5) * 3 + 4"));
        assert!(!t.check_expression("(25 - 5) * 3 + 4 + 0"), "extra number");
        assert!(!t.check_expression("(25 - 5) * 3"), "missing number");
        assert!(!t.check_expression("25 * 3 - 5 - 4"), "wrong value");
        assert!(t.check_response("<think>try</think><answer>(25-5)*3+4 = 64</answer>"));
        assert!(!t.check_expression("((((("));
        assert!(!t.check_expression("1/0"));
        assert!(Countdown::from_json("{\"numbers\":[1],\"target\":1}").is_ok());
        assert!(Countdown::from_json("nope").is_err());
    }

    #[test]
    fn gsm8k_and_arithmetic() {
        assert!(gsm8k("so she makes $18.\n#### 18", "Janet ... \n#### 18"));
        assert!(gsm8k("The answer is 1,234.", "#### 1234"));
        assert!(!gsm8k("The answer is 1,235.", "#### 1234"));
        assert!(arithmetic("<answer>-7</answer>", "-7"));
        assert!(!arithmetic("<answer>7</answer>", "-7"));
    }
}
