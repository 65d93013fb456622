//! Equivalence of a gold answer and a predicted answer.
//!
//! Numbers compare exactly (big rationals). A decimal literal is accepted
//! against a value with no finite decimal expansion (1/3, √2, π) when it is
//! right to every digit it states and has at least three significant digits.
//! Expressions with variables compare by evaluation at fixed pseudo-random
//! points; everything is bounded by [`crate::eval::Budget`].

use crate::eval::{exact, has_inf, is_scalar, numeric, symbols, Budget};
use crate::parse::{parse, Decimal, Node, ParseError, Rel};
use crate::text::{
    canonical_text, choice_letter, compact, gold_choice, normalize_answer, split_or, split_unit,
};
use num_complex::Complex64;
use num_rational::BigRational;
use num_traits::{ToPrimitive, Zero};

/// Answers longer than this are only compared as text.
pub const MAX_PARSE_BYTES: usize = 12 * 1024;
/// Set/list elements beyond this are not matched element by element.
const MAX_ITEMS: usize = 128;
const POINTS: usize = 6;

/// Whether `pred` (an extracted answer) is equivalent to `gold` (an answer).
pub fn answers_equivalent(gold: &str, pred: &str) -> bool {
    answers_equivalent_rounded(gold, pred, None)
}

/// [`answers_equivalent`] where, with `round_to = Some(d)`, two real numbers
/// are also equal when both round to the same value at `d` decimal places
/// (`0.33` for `\frac{1}{3}` at 2). A tolerance the caller states for its
/// data, like math-verify's `float_rounding`. The default (`None`) does not
/// take a rounded decimal for an exact answer (`0.333` for `\frac{1}{3}`,
/// `3.14` for `\pi`), as MATH-style graders do not; a rounded decimal *gold*
/// accepts the exact value when it is right to every digit it states, with
/// at least three significant digits.
pub fn answers_equivalent_rounded(gold: &str, pred: &str, round_to: Option<u32>) -> bool {
    let equivalent_forms = |g: &str, p: &str| equivalent_forms(g, p, round_to);
    let g = prepare(gold);
    let p = prepare(pred);
    if p.is_empty() || g.is_empty() {
        return false;
    }
    if let Some(c) = gold_choice(&g) {
        // "(A) or (B)" offers two letters: a hedge is never right.
        return split_or(&p).len() == 1 && choice_letter(&p) == Some(c);
    }
    if equivalent_forms(&g, &p) {
        return true;
    }
    // Labelled answers (`(p,q)=(3,2)`, `AB=4, CD=5`, `x = 2 + 3 = 5`): the value
    // after the last `=`, when the other side states a bare value.
    let (gl, pl) = (strip_labels(&g), strip_labels(&p));
    let (g_eq, p_eq) = (has_top_eq(&g), has_top_eq(&p));
    let relabelled = match (g_eq, p_eq) {
        (true, false) => gl.map(|x| (x, p.clone())),
        (false, true) => pl.map(|x| (g.clone(), x)),
        // Both stated with `=`: a chain keeps its first and last parts.
        (true, true) => match (
            solution_values(&split_or(&g).join(", ")),
            solution_values(&split_or(&p).join(", ")),
        ) {
            // `W(n) = 1, W(n) = -1` against `W(x) = 1 or W(x) = -1`: the
            // same function with its argument named differently.
            (Some((h1, v1)), Some((h2, v2))) if h1 == h2 => Some((v1, v2)),
            _ => match (chain_ends(&g), chain_ends(&p)) {
                (None, None) => None,
                (a, b) => Some((
                    a.unwrap_or_else(|| g.clone()),
                    b.unwrap_or_else(|| p.clone()),
                )),
            },
        },
        (false, false) => None,
    };
    if let Some((a, b)) = relabelled {
        if equivalent_forms(&a, &b) {
            return true;
        }
    }
    // A decimal comma (`2,74`) read as a point, against a single value only.
    if !g.contains(',') {
        if let Some(x) = decimal_comma(&p) {
            return equivalent_forms(&g, &x);
        }
    }
    if !p.contains(',') {
        if let Some(x) = decimal_comma(&g) {
            return equivalent_forms(&x, &p);
        }
    }
    false
}

/// Normalised form: delimiters and spacing removed, "and" as a comma, number
/// words as digits.
fn prepare(s: &str) -> String {
    let mut n = normalize_answer(s);
    // Unescaped braces around the whole answer are a LaTeX group, not a set:
    // `{1,3}` renders as "1,3" (a set is `\{1,3\}`).
    for _ in 0..64 {
        let t = n.trim();
        match crate::extract::matching_brace(t, 0) {
            Some(close) if close + 1 == t.len() => n = t[1..close].to_string(),
            _ => break,
        }
    }
    let t = and_as_comma(&n);
    if let Some(v) = number_words(&t) {
        return v;
    }
    // "two and a half" is one value, not a list ("three and four" is a list).
    if let Some(v) = number_words(&n).filter(|v| v.contains('/')) {
        return v;
    }
    // "three, four": a list of number words.
    let parts = split_top(&t, b',');
    if parts.len() > 1 && parts.iter().any(|p| number_words(p.trim()).is_some()) {
        return parts
            .iter()
            .map(|p| number_words(p.trim()).unwrap_or_else(|| p.trim().to_string()))
            .collect::<Vec<_>>()
            .join(", ");
    }
    t
}

fn equivalent_forms(g: &str, p: &str, round_to: Option<u32>) -> bool {
    // Clock times are not arithmetic: 12:00 and 1:00 differ.
    match (clock_time(g), clock_time(p)) {
        (Some(a), Some(b)) => return a.0 == b.0 && (a.1.is_none() || b.1.is_none() || a.1 == b.1),
        (Some(_), None) | (None, Some(_)) => return false,
        _ => {}
    }
    let g_alts = split_or(g);
    let p_alts = split_or(p);
    // `x < -1 or x > 3` is the set (-∞, -1) ∪ (3, ∞), not a hedge between two answers.
    if g_alts.len() > 1 || p_alts.len() > 1 {
        if let (Some(gu), Some(pu)) = (interval_union(&g_alts), interval_union(&p_alts)) {
            return equiv(&gu, &pu, &mut Budget::new());
        }
    }
    // Hedging between values is never right, unless gold itself lists them.
    let hedged = p_alts.len() > 1 && g_alts.len() == 1;
    let (g, p) = (g_alts.join(", "), p_alts.join(", "));
    if !hedged && compact(&g) == compact(&p) {
        return true;
    }
    if g.len() > MAX_PARSE_BYTES || p.len() > MAX_PARSE_BYTES {
        return false;
    }
    let mut budget = Budget::new();
    budget.round_to = round_to.map(|d| d.min(15));
    let gn = parse_with_units(&g);
    let pn = parse_with_units(&p);
    match (gn, pn) {
        (Ok((gn, gu)), Ok((pn, pu))) => {
            // A different unit is wrong; a missing unit is fine.
            if let (Some(a), Some(b)) = (&gu, &pu) {
                if a != b {
                    return false;
                }
            }
            let gn = canon(gn);
            if hedged && !matches!(gn, Node::List(_) | Node::Set(_)) {
                return false;
            }
            equiv(&gn, &canon(pn), &mut budget)
        }
        // Words: compare as short text, ignoring case and spacing.
        (Err(ParseError::Textual), _) | (_, Err(ParseError::Textual)) => {
            !hedged && canonical_text(&g) == canonical_text(&p)
        }
        _ => false,
    }
}

/// Alternatives that are each a range of one unknown (`x < -1`, `x \ge 3`, `(0, 1]`): their
/// union, flattened. None if any alternative is something else.
fn interval_union(alts: &[String]) -> Option<Node> {
    if alts.iter().any(|a| a.len() > MAX_PARSE_BYTES) {
        return None;
    }
    let mut items = Vec::new();
    for a in alts {
        match canon(parse(a).ok()?) {
            Node::Union(xs) if xs.iter().all(|x| interval_of(x).is_some()) => items.extend(xs),
            n if interval_of(&n).is_some() => items.push(n),
            _ => return None,
        }
    }
    Some(match items.len() {
        1 => items.pop()?,
        _ => Node::Union(items),
    })
}

/// `h:mm` with an optional am/pm: ((hours, minutes), pm?).
fn clock_time(s: &str) -> Option<((u32, u32), Option<bool>)> {
    if !s.contains(':') {
        return None;
    }
    let t = crate::text::unwrap_text_commands(s).to_ascii_lowercase();
    let t = t.trim();
    let (h, rest) = t.split_once(':')?;
    let h = h.trim();
    if h.is_empty() || h.len() > 2 || !h.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let rest = rest.trim_start();
    let mdig = rest.bytes().take_while(u8::is_ascii_digit).count();
    if mdig != 2 {
        return None;
    }
    let suffix: String = rest[2..]
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '.')
        .collect();
    let pm = match suffix.as_str() {
        "" => None,
        "am" => Some(false),
        "pm" => Some(true),
        _ => return None,
    };
    Some(((h.parse().ok()?, rest[..2].parse().ok()?), pm))
}

/// Top-level parts of `s` split at `sep`, outside brackets and braces.
pub(crate) fn split_top(s: &str, sep: u8) -> Vec<&str> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if c == sep && depth == 0 && !(i > 0 && b[i - 1] == b'\\') => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Whether `s` has an `=` outside brackets (`\le`-style relations excluded).
fn has_top_eq(s: &str) -> bool {
    split_top(s, b',')
        .iter()
        .any(|part| split_top(part, b'=').len() > 1)
}

/// A label before `=`: names, not a computation (`(p,q)`, `|AB|`, `f(x)`,
/// `S_{ABC}`, `A:B`, `P(3)`), so nothing on its left can be a value.
fn is_label(s: &str) -> bool {
    let t = s.trim();
    if t.is_empty() || !t.chars().any(|c| c.is_alphabetic()) {
        return false;
    }
    // Drop subscripts and the arguments of a named function.
    let mut out = String::new();
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'_' {
            i += 1;
            if b.get(i) == Some(&b'{') {
                let mut d = 0;
                while i < b.len() {
                    if b[i] == b'{' {
                        d += 1;
                    } else if b[i] == b'}' {
                        d -= 1;
                        if d == 0 {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        if c == b'(' && i > 0 && b[i - 1].is_ascii_alphabetic() {
            match t[i..].find(')') {
                Some(j) => {
                    i += j + 1;
                    continue;
                }
                None => return false,
            }
        }
        out.push(c as char);
        i += 1;
    }
    !out.bytes()
        .any(|c| c.is_ascii_digit() || c == b'+' || c == b'-' || c == b'.')
}

/// A computation with no unknowns (`\\frac{1}{2} + 3`): `2 + 3 = 5` states 5.
fn is_constant(s: &str) -> bool {
    match parse(s) {
        Ok(n) => {
            let mut vars = Vec::new();
            symbols(&n, &mut vars);
            vars.is_empty() && is_scalar(&n)
        }
        Err(_) => false,
    }
}

/// Removes labels from every comma-separated part: `AB=4, CD=5` → `4, 5`;
/// `x = 2 + 3 = 5` → `5`. `None` when some part has no label to remove.
fn strip_labels(s: &str) -> Option<String> {
    // `p=5,q=2;p=7,q=2`: groups of named values are tuples.
    let groups = split_top(s, b';');
    if groups.len() > 1 {
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let st = strip_labels(g)?;
            out.push(if st.starts_with('(') {
                st
            } else {
                format!("({st})")
            });
        }
        return Some(out.join(", "));
    }
    let parts = split_top(s, b',');
    let mut out = Vec::with_capacity(parts.len());
    let mut labels: Vec<String> = Vec::new();
    for part in &parts {
        let segs = split_top(part, b'=');
        if segs.len() == 1 {
            out.push(part.trim().to_string());
            continue;
        }
        let last = segs[segs.len() - 1].trim();
        if last.is_empty()
            || !(is_label(segs[0]) || segs.len() > 2 || (is_constant(segs[0]) && is_constant(last)))
        {
            return None;
        }
        out.push(last.to_string());
        labels.push(compact(segs[0]));
    }
    if labels.is_empty() {
        return None;
    }
    let joined = out.join(", ");
    // Values under different names (`a = 7, b = 3`) are in a fixed order: a
    // tuple; the same name repeated (`x = 1, x = 2`) lists solutions.
    let named = parts.len() > 1
        && labels.len() == parts.len()
        && labels
            .iter()
            .enumerate()
            .all(|(i, l)| !labels[..i].contains(l));
    Some(if named { format!("({joined})") } else { joined })
}

/// `f(x) = 1, f(x) = -1`: one function label (the same on every part) and its
/// values; returns the function's name (without its argument) and the values.
fn solution_values(s: &str) -> Option<(String, String)> {
    let mut label: Option<String> = None;
    let mut values = Vec::new();
    for part in split_top(s, b',') {
        let segs = split_top(part, b'=');
        if segs.len() != 2 || !is_label(segs[0]) {
            return None;
        }
        let l = compact(segs[0]);
        if label.as_ref().is_some_and(|x| *x != l) {
            return None;
        }
        label = Some(l);
        values.push(segs[1].trim());
    }
    let l = label?;
    // Only a function of one argument: `W(n)` → `W`.
    let head = l.strip_suffix(')')?.rsplit_once('(')?.0;
    (!head.is_empty() && head.chars().all(|c| c.is_alphabetic()))
        .then(|| (head.to_string(), values.join(", ")))
}

/// `x = 5 + 5 + 1 = 11` → `x = 11`: a chain of equalities states its last value.
fn chain_ends(s: &str) -> Option<String> {
    let parts = split_top(s, b',');
    let mut changed = false;
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let segs = split_top(part, b'=');
        if segs.len() > 2 {
            changed = true;
            out.push(format!(
                "{} = {}",
                segs[0].trim(),
                segs[segs.len() - 1].trim()
            ));
        } else {
            out.push(part.trim().to_string());
        }
    }
    changed.then(|| out.join(", "))
}

/// `2,74` read with a decimal comma → `2.74`. Three digits after the comma
/// read as a thousands group (`1,000`) unless the integer part is 0.
fn decimal_comma(s: &str) -> Option<String> {
    let t = compact(s);
    let body = t.strip_prefix('-').unwrap_or(&t);
    let (int, frac) = body.split_once(',')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(int) || !digits(frac) || (frac.len() == 3 && int != "0") {
        return None;
    }
    Some(t.replacen(',', ".", 1))
}

/// English number words ("forty-two", "negative five", "one million", "three quarters",
/// "two and a half"): the value as digits (`42`, `-5`, `1000000`, `3/4`, `5/2`).
pub(crate) fn number_words(s: &str) -> Option<String> {
    // Cheap rejections first: this runs on every answer.
    if s.len() > 200
        || s.bytes().any(|c| c.is_ascii_digit())
        || !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '\\')
    {
        return None;
    }
    let t = crate::text::unwrap_text_commands(s).to_ascii_lowercase();
    if !t
        .bytes()
        .all(|c| c.is_ascii_alphabetic() || c == b' ' || c == b'-' || c == b'.')
    {
        return None;
    }
    let t = t.replace('-', " ");
    let mut words: Vec<&str> = t
        .split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .collect();
    let neg = matches!(words.first(), Some(&"negative") | Some(&"minus"));
    if neg {
        words.remove(0);
    }
    let sign = if neg { "-" } else { "" };
    let (&last, body) = words.split_last()?;
    let Some(den) = denominator_word(last) else {
        return integer_words(&words).map(|v| format!("{sign}{v}"));
    };
    // "two and three quarters": a whole part before the last "and".
    let (whole, num) = match body.iter().rposition(|w| *w == "and") {
        Some(i) => (integer_words(&body[..i])?, &body[i + 1..]),
        None => (0, body),
    };
    let num = match num {
        [] if last == "half" => 1,
        ["a" | "an"] => 1,
        _ => integer_words(num)?,
    };
    Some(format!("{sign}{}/{den}", whole * den + num))
}

/// "quarter", "thirds", "halves": the denominator. ("second" is left out: "the second".)
fn denominator_word(w: &str) -> Option<i128> {
    let singular = w
        .strip_suffix("ves")
        .map(|h| format!("{h}f"))
        .unwrap_or_else(|| w.strip_suffix('s').unwrap_or(w).to_string());
    Some(match singular.as_str() {
        "half" => 2,
        "third" => 3,
        "quarter" | "fourth" => 4,
        "fifth" => 5,
        "sixth" => 6,
        "seventh" => 7,
        "eighth" => 8,
        "ninth" => 9,
        "tenth" => 10,
        "twelfth" => 12,
        "hundredth" => 100,
        "thousandth" => 1000,
        _ => return None,
    })
}

/// Integer words ("one thousand two hundred and five"): the value.
fn integer_words(words: &[&str]) -> Option<i128> {
    const SMALL: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    let (mut total, mut cur, mut any) = (0i128, 0i128, false);
    for &w in words {
        if let Some(k) = SMALL.iter().position(|x| *x == w) {
            cur += k as i128;
        } else if let Some(k) = TENS.iter().position(|x| *x == w) {
            cur += 20 + 10 * k as i128;
        } else if w == "hundred" {
            cur = cur.max(1) * 100;
        } else if let Some(m) = match w {
            "thousand" => Some(1_000),
            "million" => Some(1_000_000),
            "billion" => Some(1_000_000_000),
            _ => None,
        } {
            total += cur.max(1) * m;
            cur = 0;
        } else if w == "and" || w == "a" {
            continue;
        } else {
            return None;
        }
        any = true;
    }
    any.then_some(total + cur)
}

/// "3 and 5" lists two values, like "3, 5".
pub(crate) fn and_as_comma(s: &str) -> String {
    if !s.contains("and") {
        return s.to_string();
    }
    let mut t = s.to_string();
    for pat in [
        "\\text{ and }",
        "\\text{and}",
        "\\text{ and}",
        "\\text{and }",
        " and ",
    ] {
        t = t.replace(pat, ", ");
    }
    // "19, 46, and 82": the comma before "and" is the same separator.
    while t.contains(", ,") || t.contains(",,") {
        t = t.replace(", ,", ",").replace(",,", ",");
    }
    t
}

/// Parses a comma-separated answer where each element may carry a unit.
fn parse_with_units(s: &str) -> Result<(Node, Option<String>), ParseError> {
    let whole = split_unit(s);
    match parse(&whole.value) {
        Ok(n) => Ok((n, whole.unit)),
        Err(e) => {
            // Per-element units: `3 cm, 4 cm`.
            let parts: Vec<&str> = s.split(',').collect();
            if parts.len() < 2 {
                return Err(e);
            }
            let mut unit = None;
            let mut items = Vec::new();
            for part in parts {
                let sp = split_unit(part);
                if sp.unit.is_some() {
                    if unit.is_some() && unit != sp.unit {
                        return Err(e);
                    }
                    unit = sp.unit;
                }
                items.push(parse(&sp.value)?);
            }
            Ok((Node::List(items), unit))
        }
    }
}

/// Rewrites forms that mean the same thing into one shape: `a \pm b` into a
/// set, inequalities over one variable into intervals, `x \in S` into `S`.
fn canon(n: Node) -> Node {
    match n {
        Node::PlusMinus(a, b) => {
            let a = canon(*a);
            let b = canon(*b);
            Node::Set(vec![
                Node::Add(vec![a.clone(), b.clone()]),
                Node::Add(vec![a, Node::Neg(Box::new(b))]),
            ])
        }
        Node::List(xs) => Node::List(xs.into_iter().map(canon).collect()),
        Node::Set(xs) => Node::Set(xs.into_iter().map(canon).collect()),
        Node::Paren(xs) => Node::Paren(xs.into_iter().map(canon).collect()),
        Node::Bracket(xs) => Node::Bracket(xs.into_iter().map(canon).collect()),
        Node::Union(xs) => Node::Union(xs.into_iter().map(canon).collect()),
        Node::Relation(items, ops) => {
            let items: Vec<Node> = items.into_iter().map(canon).collect();
            if ops == [Rel::In] && matches!(items[0], Node::Sym(_)) {
                return items.into_iter().nth(1).unwrap_or(Node::List(Vec::new()));
            }
            inequality_interval(&items, &ops).unwrap_or(Node::Relation(items, ops))
        }
        Node::Add(xs) if xs.len() > 1 && xs.iter().all(|x| matches!(x, Node::Matrix(_))) => {
            matrix_sum(&xs).unwrap_or(Node::Add(xs))
        }
        // Each product copies its factors' entries: a few factors only.
        Node::Mul(xs)
            if (2..=4).contains(&xs.len()) && xs.iter().all(|x| matches!(x, Node::Matrix(_))) =>
        {
            matrix_product(&xs).unwrap_or(Node::Mul(xs))
        }
        other => other,
    }
}

/// Element-wise sum of same-shape matrices, as expression nodes.
fn matrix_sum(xs: &[Node]) -> Option<Node> {
    let mut acc: Vec<Vec<Node>> = match &xs[0] {
        Node::Matrix(m) => m.clone(),
        _ => return None,
    };
    for x in &xs[1..] {
        let Node::Matrix(m) = x else { return None };
        if m.len() != acc.len() || m.iter().zip(&acc).any(|(a, b)| a.len() != b.len()) {
            return None;
        }
        for (ra, rm) in acc.iter_mut().zip(m) {
            for (a, b) in ra.iter_mut().zip(rm) {
                *a = Node::Add(vec![a.clone(), b.clone()]);
            }
        }
    }
    Some(Node::Matrix(acc))
}

/// Product of conforming matrices, as expression nodes (small sizes only).
fn matrix_product(xs: &[Node]) -> Option<Node> {
    let mut acc: Vec<Vec<Node>> = match &xs[0] {
        Node::Matrix(m) => m.clone(),
        _ => return None,
    };
    for x in &xs[1..] {
        let Node::Matrix(m) = x else { return None };
        let (n, k, p) = (acc.len(), m.len(), m.first()?.len());
        if acc.iter().any(|r| r.len() != k) || n * k * p > 1024 {
            return None;
        }
        acc = (0..n)
            .map(|i| {
                (0..p)
                    .map(|j| {
                        Node::Add(
                            (0..k)
                                .map(|t| Node::Mul(vec![acc[i][t].clone(), m[t][j].clone()]))
                                .collect(),
                        )
                    })
                    .collect()
            })
            .collect();
    }
    Some(Node::Matrix(acc))
}

fn inf(neg: bool) -> Node {
    let i = Node::Const(crate::parse::Const::Inf);
    if neg {
        Node::Neg(Box::new(i))
    } else {
        i
    }
}

/// `x > 3` → (3, ∞); `1 < x \le 2` → (1, 2]; `5 \ge x` → (-∞, 5].
fn inequality_interval(items: &[Node], ops: &[Rel]) -> Option<Node> {
    // `-x \le -3` is `x \ge 3`: move the sign across.
    if let ([Node::Neg(x), c], [op]) | ([c, Node::Neg(x)], [op]) = (items, ops) {
        if is_unknown(x) && !is_unknown(c) {
            let neg_c = Node::Neg(Box::new(c.clone()));
            let flipped = flip(*op)?;
            let (a, b) = if matches!(items[0], Node::Neg(_)) {
                ((**x).clone(), neg_c)
            } else {
                (neg_c, (**x).clone())
            };
            return inequality_interval(&[a, b], &[flipped]);
        }
    }
    // `|x| < 3` is `-3 < x < 3`.
    if let ([Node::Func(crate::parse::Func::Abs, args), c], [op @ (Rel::Lt | Rel::Le)]) =
        (items, ops)
    {
        if args.len() == 1 && is_unknown(&args[0]) && !is_unknown(c) {
            let closed = *op == Rel::Le;
            return Some(Node::Interval {
                lo: Box::new(Node::Neg(Box::new(c.clone()))),
                hi: Box::new(c.clone()),
                lo_closed: closed,
                hi_closed: closed,
            });
        }
    }
    // `1 \le |z| \le 2` is [-2, -1] ∪ [1, 2].
    if let ([a, Node::Func(crate::parse::Func::Abs, args), c], [o1, o2]) = (items, ops) {
        let lower = |o: &Rel| matches!(o, Rel::Lt | Rel::Le);
        if args.len() == 1 && is_unknown(&args[0]) && lower(o1) && lower(o2) {
            let neg = |n: &Node| Node::Neg(Box::new(n.clone()));
            let (ac, cc) = (*o1 == Rel::Le, *o2 == Rel::Le);
            let iv = |lo: Node, hi: Node, lc: bool, hc: bool| Node::Interval {
                lo: Box::new(lo),
                hi: Box::new(hi),
                lo_closed: lc,
                hi_closed: hc,
            };
            return Some(Node::Union(vec![
                iv(neg(c), neg(a), cc, ac),
                iv(a.clone(), c.clone(), ac, cc),
            ]));
        }
    }
    let is_var = is_unknown;
    let mk = |lo: Node, hi: Node, lc: bool, hc: bool| Node::Interval {
        lo: Box::new(lo),
        hi: Box::new(hi),
        lo_closed: lc,
        hi_closed: hc,
    };
    match (items, ops) {
        ([a, b], [op]) => {
            let (var_left, other) = if is_var(a) && !is_var(b) {
                (true, b)
            } else if is_var(b) && !is_var(a) {
                (false, a)
            } else {
                return None;
            };
            // Normalise to "x OP other".
            let op = if var_left { *op } else { flip(*op)? };
            Some(match op {
                Rel::Gt => mk(other.clone(), inf(false), false, false),
                Rel::Ge => mk(other.clone(), inf(false), true, false),
                Rel::Lt => mk(inf(true), other.clone(), false, false),
                Rel::Le => mk(inf(true), other.clone(), false, true),
                _ => return None,
            })
        }
        ([a, x, b], [o1, o2]) if is_var(x) => {
            let lower = |o: Rel| matches!(o, Rel::Lt | Rel::Le);
            let upper = |o: Rel| matches!(o, Rel::Gt | Rel::Ge);
            if lower(*o1) && lower(*o2) {
                Some(mk(a.clone(), b.clone(), *o1 == Rel::Le, *o2 == Rel::Le))
            } else if upper(*o1) && upper(*o2) {
                Some(mk(b.clone(), a.clone(), *o2 == Rel::Ge, *o1 == Rel::Ge))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The unknown of a one-variable inequality: a variable, or a function value
/// written `f(x)` (parsed as a product of symbols).
fn is_unknown(n: &Node) -> bool {
    match n {
        Node::Sym(_) => true,
        Node::Mul(xs) => {
            matches!(&xs[..], [Node::Sym(f), Node::Sym(_)] if ["f", "g", "h"].contains(&f.as_str()))
        }
        _ => false,
    }
}

fn flip(op: Rel) -> Option<Rel> {
    Some(match op {
        Rel::Lt => Rel::Gt,
        Rel::Gt => Rel::Lt,
        Rel::Le => Rel::Ge,
        Rel::Ge => Rel::Le,
        _ => return None,
    })
}

/// Whether a list gives each value under its own name (`a = 7, b = 3`).
fn named_values(xs: &[Node]) -> bool {
    let names: Vec<&str> = xs
        .iter()
        .filter_map(|x| var_equation(x).map(|(v, _)| v))
        .collect();
    names.len() == xs.len()
        && names.len() > 1
        && names
            .iter()
            .enumerate()
            .all(|(i, v)| !names[..i].contains(v))
}

/// `v = rhs` with a single variable on one side.
fn var_equation(n: &Node) -> Option<(&str, &Node)> {
    if let Node::Relation(items, ops) = n {
        if let ([Node::Sym(v), rhs], [Rel::Eq]) = (items.as_slice(), ops.as_slice()) {
            return Some((v, rhs));
        }
    }
    None
}

fn equiv(g: &Node, p: &Node, b: &mut Budget) -> bool {
    if b.exhausted() {
        return false;
    }
    if g == p {
        return true;
    }
    // Equations.
    match (var_equation(g), var_equation(p)) {
        (Some((gv, gr)), Some((pv, pr))) if gv == pv => return equiv(gr, pr, b),
        (Some((_, gr)), None) if !matches!(p, Node::Relation(..)) => return equiv(gr, p, b),
        (None, Some((_, pr))) if !matches!(g, Node::Relation(..)) => return equiv(g, pr, b),
        _ => {}
    }
    // `x = 1, x = 2` lists against lists of values go element-wise below.
    match (g, p) {
        (Node::Relation(gi, go), Node::Relation(pi, po)) => {
            if go == &[Rel::Eq] && po == &[Rel::Eq] {
                return equation_equiv(&gi[0], &gi[1], &pi[0], &pi[1], b);
            }
            if go == po && gi.len() == pi.len() {
                return gi.iter().zip(pi).all(|(x, y)| equiv(x, y, b));
            }
            false
        }
        (Node::List(gs), Node::List(ps)) if named_values(gs) != named_values(ps) => {
            // `a = 7, b = 3` against `7, 3`: named values keep their order.
            ordered(gs, ps, b)
        }
        (Node::Set(gs) | Node::List(gs), Node::Set(ps) | Node::List(ps)) => unordered(gs, ps, b),
        (Node::Union(gs), Node::Union(ps)) => unordered(gs, ps, b),
        (Node::List(gs), Node::Paren(ps) | Node::Bracket(ps))
        | (Node::Paren(gs) | Node::Bracket(gs), Node::List(ps))
        | (Node::Paren(gs), Node::Paren(ps))
        | (Node::Bracket(gs), Node::Bracket(ps)) => ordered(gs, ps, b),
        (Node::Matrix(gr), Node::Matrix(pr)) => {
            gr.len() == pr.len() && gr.iter().zip(pr).all(|(x, y)| ordered(x, y, b))
        }
        (Node::Matrix(m), Node::Paren(v) | Node::Bracket(v) | Node::List(v))
        | (Node::Paren(v) | Node::Bracket(v) | Node::List(v), Node::Matrix(m)) => {
            let flat: Vec<Node> = m.iter().flatten().cloned().collect();
            let is_vector = m.len() == 1 || m.iter().all(|r| r.len() == 1);
            is_vector && ordered(&flat, v, b)
        }
        (Node::Percent(x), Node::Percent(y)) => equiv(x, y, b),
        (Node::Percent(x), y) | (y, Node::Percent(x)) if is_scalar(y) => {
            // 50% is 0.5; "50" without the sign means the same quantity.
            scalar_eq(&Node::Percent(x.clone()), y, b) || scalar_eq(x, y, b)
        }
        _ => {
            if let (Some(gi), Some(pi)) = (interval_of(g), interval_of(p)) {
                let real = matches!(g, Node::Interval { .. }) || matches!(p, Node::Interval { .. });
                return real && interval_eq(gi, pi, b);
            }
            if is_scalar(g) && is_scalar(p) {
                return scalar_eq(g, p, b);
            }
            false
        }
    }
}

type Iv<'a> = (&'a Node, &'a Node, bool, bool);

/// Interval view: explicit intervals, `(a, b)` as open, `[a, b]` as closed.
fn interval_of(n: &Node) -> Option<Iv<'_>> {
    match n {
        Node::Interval {
            lo,
            hi,
            lo_closed,
            hi_closed,
        } => Some((lo, hi, *lo_closed, *hi_closed)),
        Node::Paren(xs) if xs.len() == 2 => Some((&xs[0], &xs[1], false, false)),
        Node::Bracket(xs) if xs.len() == 2 => Some((&xs[0], &xs[1], true, true)),
        _ => None,
    }
}

fn interval_eq(g: Iv, p: Iv, b: &mut Budget) -> bool {
    // Closedness at an infinite end is meaningless; ignore it there.
    let lo_ok = g.2 == p.2 || has_inf(g.0);
    let hi_ok = g.3 == p.3 || has_inf(g.1);
    lo_ok && hi_ok && equiv(g.0, p.0, b) && equiv(g.1, p.1, b)
}

fn ordered(gs: &[Node], ps: &[Node], b: &mut Budget) -> bool {
    gs.len() == ps.len() && gs.iter().zip(ps).all(|(x, y)| equiv(x, y, b))
}

/// Multiset equality by greedy matching (equivalence is transitive, so greedy
/// is enough).
fn unordered(gs: &[Node], ps: &[Node], b: &mut Budget) -> bool {
    // A value listed twice is still one element of the answer set.
    let dedup = |xs: &[Node]| -> Vec<Node> {
        let mut out: Vec<Node> = Vec::with_capacity(xs.len());
        for x in xs.iter().take(MAX_ITEMS + 1) {
            if !out.contains(x) {
                out.push(x.clone());
            }
        }
        out
    };
    let (gd, pd);
    let (gs, ps) = if gs.len() != ps.len() && gs.len() <= MAX_ITEMS && ps.len() <= MAX_ITEMS {
        gd = dedup(gs);
        pd = dedup(ps);
        (&gd[..], &pd[..])
    } else {
        (gs, ps)
    };
    if gs.len() != ps.len() || gs.len() > MAX_ITEMS {
        return gs.len() == ps.len() && gs == ps;
    }
    let mut used = vec![false; ps.len()];
    'outer: for g in gs {
        for (j, p) in ps.iter().enumerate() {
            if !used[j] && equiv(g, p, b) {
                used[j] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

/// A decimal literal (possibly negated or times a power of ten): its value
/// and stated precision.
fn decimal_form(n: &Node) -> Option<(BigRational, Decimal)> {
    match n {
        Node::Num(v, Some(d)) => Some((v.clone(), d.clone())),
        Node::Neg(x) => decimal_form(x).map(|(v, d)| (-v, d)),
        Node::Mul(xs) if xs.len() == 2 => {
            let (v, d) = decimal_form(&xs[0])?;
            if let Node::Pow(base, e) = &xs[1] {
                if let Node::Num(ten, None) = &**base {
                    if *ten == BigRational::from_integer(10.into()) {
                        let mut bud = Budget::new();
                        let k = exact(e, &mut bud)?.to_integer().to_i64()?;
                        if k.abs() > 300 {
                            return None;
                        }
                        let scale = num_traits::pow(
                            BigRational::from_integer(10.into()),
                            k.unsigned_abs() as usize,
                        );
                        let v = if k >= 0 { v * scale } else { v / scale };
                        return Some((
                            v,
                            Decimal {
                                frac_digits: d.frac_digits - k,
                                sig_digits: d.sig_digits,
                            },
                        ));
                    }
                }
            }
            None
        }
        _ => None,
    }
}

/// Whether a rational has a finite decimal expansion (denominator 2^a·5^b).
fn terminates(r: &BigRational) -> bool {
    let mut d = r.denom().clone();
    for p in [2u32, 5] {
        let p = num_bigint::BigInt::from(p);
        while (&d % &p).is_zero() {
            d /= &p;
        }
    }
    d == num_bigint::BigInt::from(1u32)
}

fn approx_ok(dec_value: &BigRational, d: &Decimal, x: f64) -> bool {
    if d.sig_digits < 3 || !x.is_finite() {
        return false;
    }
    let dv = dec_value.to_f64().unwrap_or(f64::NAN);
    let ulp = 10f64.powi(-(d.frac_digits.clamp(-300, 300) as i32));
    let slack = 1e-12 * x.abs();
    // Correctly rounded to the digits it states (truncations are not).
    (x - dv).abs() <= 0.5 * ulp * (1.0 + 1e-9) + slack
}

fn real_value(n: &Node, b: &mut Budget) -> Option<f64> {
    let v = numeric(n, &[], b)?;
    (v.im.abs() <= 1e-12 * v.re.abs().max(1.0)).then_some(v.re)
}

fn scalar_eq(g: &Node, p: &Node, b: &mut Budget) -> bool {
    let (gi, pi) = (has_inf(g), has_inf(p));
    if gi || pi {
        if !(gi && pi) {
            return false;
        }
        return match (real_value(g, b), real_value(p, b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        };
    }
    let mut vars = Vec::new();
    symbols(g, &mut vars);
    symbols(p, &mut vars);
    if vars.is_empty() {
        let eg = exact(g, b);
        let ep = exact(p, b);
        if let (Some(x), Some(y)) = (&eg, &ep) {
            if x == y {
                return true;
            }
        }
        // A gold stated as a rounded decimal, answered with the exact value.
        if let Some((dv, d)) = decimal_form(g) {
            let p_terminates = ep.as_ref().is_some_and(terminates);
            if decimal_form(p).is_none() && !p_terminates {
                if let Some(x) = real_value(p, b) {
                    if approx_ok(&dv, &d, x) {
                        return true;
                    }
                }
            }
        }
        if let Some(d) = b.round_to {
            if let (Some(x), Some(y)) = (real_value(g, b), real_value(p, b)) {
                let k = 10f64.powi(d as i32);
                if x.is_finite() && y.is_finite() && (x * k).round() == (y * k).round() {
                    return true;
                }
            }
        }
        if eg.is_some() && ep.is_some() {
            return false;
        }
        // Irrational constants: compare numerically, tightly.
        return match (numeric(g, &[], b), numeric(p, &[], b)) {
            (Some(x), Some(y)) if finite(x) && finite(y) => close(x, y, 1e-10),
            _ => false,
        };
    }
    points_agree(g, p, &vars, b, |x, y| close(x, y, 1e-8))
}

fn finite(z: Complex64) -> bool {
    z.re.is_finite() && z.im.is_finite()
}

fn close(x: Complex64, y: Complex64, tol: f64) -> bool {
    (x - y).norm() <= tol * x.norm().max(y.norm()).max(1.0)
}

/// Deterministic pseudo-random point per (point, variable): in (0.3, 2.3), the last one near 1.
fn point(k: usize, v: usize) -> f64 {
    let mut z = (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (v as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    if k == POINTS - 1 {
        // One point just above 1 separates huge powers (x^1000000 vs
        // x^1000001) that over/underflow everywhere else.
        1.00001 + 0.00019 * u
    } else {
        0.3 + 2.0 * u
    }
}

fn points_agree(
    g: &Node,
    p: &Node,
    vars: &[String],
    b: &mut Budget,
    agree: impl Fn(Complex64, Complex64) -> bool,
) -> bool {
    let mut checked = 0;
    for k in 0..POINTS {
        let env: Vec<(String, f64)> = vars
            .iter()
            .enumerate()
            .map(|(v, s)| (s.clone(), point(k, v)))
            .collect();
        let (Some(x), Some(y)) = (numeric(g, &env, b), numeric(p, &env, b)) else {
            return false;
        };
        if !finite(x) || !finite(y) || x.norm().max(y.norm()) < 1e-200 {
            // A pole, an overflow or an underflow at this point tells nothing.
            continue;
        }
        if !agree(x, y) {
            return false;
        }
        checked += 1;
    }
    checked > 0
}

/// `l1 = r1` and `l2 = r2` are equivalent when l1 − r1 is a constant nonzero
/// multiple of l2 − r2 (checked at the sample points).
fn equation_equiv(l1: &Node, r1: &Node, l2: &Node, r2: &Node, b: &mut Budget) -> bool {
    if ![l1, r1, l2, r2].iter().all(|n| is_scalar(n)) {
        return false;
    }
    let f1 = Node::Add(vec![l1.clone(), Node::Neg(Box::new(r1.clone()))]);
    let f2 = Node::Add(vec![l2.clone(), Node::Neg(Box::new(r2.clone()))]);
    let mut vars = Vec::new();
    symbols(&f1, &mut vars);
    symbols(&f2, &mut vars);
    if vars.is_empty() {
        return false;
    }
    let mut ratio: Option<Complex64> = None;
    let mut checked = 0;
    for k in 0..POINTS {
        let env: Vec<(String, f64)> = vars
            .iter()
            .enumerate()
            .map(|(v, s)| (s.clone(), point(k, v)))
            .collect();
        let (Some(x), Some(y)) = (numeric(&f1, &env, b), numeric(&f2, &env, b)) else {
            return false;
        };
        if !finite(x) || !finite(y) {
            continue;
        }
        let tiny = 1e-12;
        if x.norm() < tiny && y.norm() < tiny {
            continue;
        }
        if x.norm() < tiny || y.norm() < tiny {
            return false;
        }
        let r = x / y;
        match ratio {
            None => ratio = Some(r),
            Some(r0) if close(r0, r, 1e-8) => {}
            Some(_) => return false,
        }
        checked += 1;
    }
    checked > 0 && ratio.is_some()
}

#[cfg(test)]
mod tests {
    use super::answers_equivalent as eq;

    #[test]
    fn numbers() {
        assert!(eq("1000", "1,000"));
        assert!(eq("1000", "1 000"));
        assert!(eq("0.5", "\\frac12"));
        assert!(eq("120000", "1.2\\times10^5"));
        assert!(eq("120000", "1.2e5"));
        assert!(!eq("2", "3"));
        // A rounded decimal is not the exact answer; a rounded gold takes the exact one.
        assert!(!eq("\\frac{1}{3}", "0.333"));
        assert!(!eq("\\frac{1}{3}", "0.33"));
        assert!(eq("0.333", "\\frac{1}{3}"));
        assert!(!eq("0.33", "\\frac{1}{3}"));
        assert!(!eq("\\frac{1}{4}", "0.26"));
        assert!(eq("\\frac{1}{4}", "0.25"));
        assert!(!eq("\\pi", "3.14"));
        assert!(eq("3.14", "\\pi"));
        assert!(eq("\\sqrt{2}", "\\sqrt{2} \\approx 1.414"));
        assert!(!eq("\\sqrt{2}", "\\approx 1.414"));
        assert!(eq("9+8i", "9+8\\mathrm{i}"));
        assert!(!eq("0.5", "0.50001"));
        assert!(eq("-3", "\u{2212}3"));
        assert!(eq("12", "\u{0661}\u{0662}"));
    }

    #[test]
    fn structures() {
        assert!(eq("\\{1,2\\}", "\\{2,1\\}"));
        assert!(!eq("(1,2)", "(2,1)"));
        assert!(!eq("\\{1,2\\}", "(1,2)"));
        assert!(eq("(3,\\infty)", "x > 3"));
        assert!(eq("[1,2)", "1 \\le x < 2"));
        assert!(!eq("[1,2)", "(1,2)"));
        assert!(eq("x=5", "5"));
        assert!(eq("2x+2", "2(x+1)"));
        assert!(!eq("2x+2", "2(x+2)"));
        assert!(eq("y = 2x + 1", "2y = 4x + 2"));
        assert!(eq(
            "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
            "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"
        ));
        assert!(!eq("5", "5 or 6"));
        assert!(eq("B", "\\text{(B)}"));
        assert!(eq("5\\text{ cm}", "5"));
        assert!(!eq("5\\text{ cm}", "5\\text{ m}"));
        assert!(eq("\\text{Monday}", "monday"));
    }

    #[test]
    fn sums_and_products_of_series() {
        let g = "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}";
        assert!(eq(g, "F_n = \\sum_{k=0}^{n-1} F_{n-k-1} F_k"));
        assert!(!eq(g, "F_n = \\sum_{k=0}^{n-2} F_k F_{n-k-2}"));
        assert!(!eq(g, "F_n = \\sum_{k=1}^{n-1} F_k F_{n-k-1}"));
        assert!(eq(
            "\\sum_{k=1}^{n} k^2",
            "\\sum\\limits_{k=1}^{n} k \\cdot k"
        ));
        assert!(!eq("\\sum_{k=1}^{n} k^2", "\\sum_{k=1}^{n} k^3"));
        assert!(eq("55", "\\sum_{k=1}^{10} k"));
        assert!(eq("55", "\\sum_{i=1}^{10} i"));
        assert!(eq("\\sum_{i=1}^{n} i^2", "\\sum_{k=1}^{n} k^2"));
        assert!(!eq("\\sum_{i=1}^{n} i^2", "\\sum_{k=1}^{n} k^3"));
        assert!(eq("120", "\\prod_{k=1}^{5} k"));
        assert!(!eq("56", "\\sum_{k=1}^{10} k"));
        assert!(eq("\\sum_{k=1}^{n} k + 1", "1 + \\sum_{k=1}^{n} k"));
        // Huge bounds are not summed term by term (and do not hang).
        assert!(!eq("1", "\\sum_{k=1}^{10^{18}} k"));
        assert!(!eq("1", "\\sum_{k=10^{18}}^{10^{18}+5} k"));
    }

    #[test]
    fn glued_or_and_function_labels() {
        let g = "W(n) = 1 \\text{ and } W(n) = -1";
        assert!(eq(g, "W(x)=1orW(x)=-1"));
        assert!(eq(g, "W(x) = 1 \\text{ or } W(x) = -1"));
        assert!(!eq(g, "W(x)=1orW(x)=-2"));
        assert!(!eq(g, "V(x)=1orV(x)=-1"));
        assert!(!eq("5", "5or6"));
        assert!(!eq("(1,2)", "(1,2)or(2,1)"));
        // Words that contain "or" are not split.
        assert!(eq("\\text{for}", "\\text{for}"));
    }

    #[test]
    fn latex_group_braces() {
        // `{1,3}` renders as "1,3": a list, ordered against a pair.
        assert!(eq("(1,3)", "{1,3}"));
        assert!(!eq("(3,1)", "{1,3}"));
        assert!(eq("\\pm 2021", "{-2021, 2021}"));
        assert!(eq("\\{1,3\\}", "{3,1}"));
        assert!(!eq("\\{1,2\\}", "(1,2)"));
        assert!(eq("35 cm, 4", "{35 cm,4}"));
        assert!(eq("-8", "{-8}"));
    }

    #[test]
    fn stated_rounding() {
        use super::answers_equivalent_rounded as eqr;
        assert!(!eq("\\frac{1}{3}", "0.33"));
        assert!(eqr("\\frac{1}{3}", "0.33", Some(2)));
        assert!(!eqr("\\frac{1}{3}", "0.34", Some(2)));
        assert!(!eqr("\\frac{1}{3}", "0.33", Some(3)));
        assert!(eqr(
            "\\begin{pmatrix}\\frac{1}{3}\\\\ \\frac{1}{5}\\end{pmatrix}",
            "\\begin{pmatrix}0.33\\\\0.2\\end{pmatrix}",
            Some(2)
        ));
        assert!(eqr("(\\frac{3}{5},\\frac{8}{3}]", "(0.6,2.6667]", Some(2)));
        assert!(!eqr("x+1", "x+1.001", Some(2)));
    }

    #[test]
    fn compound_units() {
        assert!(eq("80", "80\\mathrm{km}/\\mathrm{h}"));
        assert!(eq("80", "80 \\text{ km/h}"));
        assert!(eq("80", "80 km/h"));
        assert!(eq("9.8", "9.8\\,\\text{m}/\\text{s}^2"));
        assert!(eq("80\\text{ km/h}", "80 \\mathrm{km}/\\mathrm{h}"));
        assert!(eq("80\\text{ km/h}", "80 kilometers per hour"));
        assert!(eq("60 \\text{ mph}", "60\\text{ mi/h}"));
        assert!(!eq("80", "8\\mathrm{km}/\\mathrm{h}"));
        assert!(!eq("80", "85 \\text{ km/h}"));
        assert!(!eq("80\\text{ km/h}", "80\\text{ m/s}"));
        // A power of one letter is a unit only when the letter is one.
        assert!(eq("3", "3 m^2"));
        assert!(!eq("3", "3 x^2"));
        assert!(!eq("\\frac{1}{2}", "\\frac{1}{2} x^2"));
        assert!(eq("\\frac{x^2}{2}", "\\frac{1}{2} x^2"));
        // Only known units make a ratio: `2 r/h` is not 2 with a unit.
        assert!(!eq("2", "2 r/h"));
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn imaginary() {
        assert!(super::answers_equivalent("i", "\\sqrt{-1}"));
        assert!(super::answers_equivalent("3i", "3\\sqrt{-1}"));
    }
}

#[cfg(test)]
mod ambiguity_tests {
    use super::answers_equivalent as eq;

    #[test]
    fn commas_and_mixed_numbers() {
        assert!(eq("[100, 200]", "[100,200]"));
        assert!(eq("\\{99, 100, 101\\}", "\\{101,100,99\\}"));
        assert!(eq("1234567", "1,234,567"));
        assert!(!eq("1234567", "1,234,56"));
        assert!(eq("\\frac{15}{4}", "3\\frac{3}{4}"));
        assert!(eq("-\\frac{5}{2}", "-2\\frac{1}{2}"));
        assert!(eq("\\frac{2\\pi}{3}", "2\\frac{\\pi}{3}"));
        assert!(eq("3", "2\\frac{3}{2}"));
        assert!(eq("-2, 2", "\\pm 2"));
        assert!(eq("\\{-2, 2\\}", "x = \\pm 2"));
        assert!(!eq("2", "\\pm 2"));
        assert!(eq("3, 5", "3 and 5"));
        assert!(eq("3, 5", "5 \\text{ and } 3"));
    }
}

#[cfg(test)]
mod issue16_tests {
    use super::answers_equivalent as eq;

    #[test]
    fn relations_and_intervals() {
        assert!(eq("x \\geq 3", "-x \\le -3"));
        assert!(!eq("x \\geq 3", "-x \\ge -3"));
        assert!(eq("(0,1)", "0<f(x)<1"));
        assert!(eq("(-3, 3)", "|x| < 3"));
        assert!(!eq("[-3, 3]", "|x| < 3"));
        assert!(eq("x \\neq 5", "x != 5"));
        assert!(eq("(-\\infty, \\infty)", "\\mathbb{R}"));
        assert!(eq("(-\\infty,-1)\\cup(3,\\infty)", "x<-1 \\text{ or } x>3"));
        assert!(eq("(-\\infty,-1)\\cup(3,\\infty)", "x > 3 or x < -1"));
        assert!(!eq(
            "(-\\infty,-1)\\cup(3,\\infty)",
            "x<-1 \\text{ or } x\\ge 3"
        ));
        assert!(!eq(
            "(-\\infty,-1)\\cup(3,\\infty)",
            "x<-1 \\text{ or } x>4"
        ));
        assert!(!eq("(3,\\infty)", "x > 3 or x < -1"));
        assert!(eq(
            "1\\leq|z|\\leq \\frac{3}{2}",
            "\\left[-\\frac{3}{2}, -1\\right] \\cup \\left[1, \\frac{3}{2}\\right]"
        ));
    }

    #[test]
    fn labels_and_chains() {
        assert!(eq("(3,2)", "(p,q)=(3,2)"));
        assert!(!eq("(3,2)", "(p,q)=(2,3)"));
        assert!(eq("4, 5", "AB=4, CD=5"));
        assert!(eq("7, 3", "a = 7, b = 3"));
        assert!(!eq("7, 3", "a = 3, b = 7"));
        assert!(eq("5", "x = 2 + 3 = 5"));
        assert!(!eq("5", "x = 2 + 3 = 6"));
        // An equation to solve is not its right-hand side.
        assert!(!eq("5", "2x + 3 = 5"));
        assert!(!eq("7 = 11a+c", "11a+c"));
        assert!(!eq("x = 5", "y = 5"));
        assert!(eq("(5,2),(7,2)", "p=5,q=2;p=7,q=2"));
    }

    #[test]
    fn number_formats() {
        assert!(eq("11111", "11,\\! 111"));
        assert!(eq("16386.20", "\\$16,\\!386.20"));
        assert!(eq("2.74", "2,74"));
        assert!(eq("0.111", "0,111"));
        assert!(!eq("1", "1,000"));
        assert!(eq("42", "forty-two"));
        assert!(eq("-5", "negative five"));
        assert!(!eq("42", "forty-three"));
        assert!(eq("\\frac{1}{3}", "0.\\overline{3}"));
        assert!(eq("\\frac{1}{6}", "0.1\\overline{6}"));
        assert!(!eq("\\frac{1}{3}", "0.\\overline{6}"));
        assert!(eq("-\\frac{1}{2}", "\\frac{1}{-2}"));
    }

    #[test]
    fn unicode_and_symbolic() {
        assert!(eq("2\\sqrt{3}", "√12"));
        assert!(eq("\\sqrt[3]{5}", "∛5"));
        assert!(!eq("\\sqrt{5}", "∛5"));
        assert!(eq(
            "\\begin{pmatrix} 4 \\\\ -2 \\end{pmatrix}",
            "\\langle 4, -2 \\rangle"
        ));
        assert!(eq("\\frac{3}{4}", "three quarters"));
        assert!(eq("1.5", "one and a half"));
        assert!(!eq("\\frac{2}{3}", "three halves"));
        assert!(eq("3, 4", "three and four"));
        assert!(eq("x^2+1", "x²+1"));
        assert!(!eq("x^2+1", "x³+1"));
        assert!(eq("\\frac{3}{4}", "¾"));
        assert!(eq("5", "🎉 5 🎉"));
        assert!(eq("\\sin 2x", "2\\sin x \\cos x"));
        assert!(!eq("\\sin 2x", "2\\sin x"));
        assert!(eq("\\cos 2\\theta", "1 - 2\\sin^2\\theta"));
    }

    #[test]
    fn times_choices_and_hedges() {
        assert!(!eq("12:00", "1:00"));
        assert!(eq("12:00", "12:00"));
        assert!(eq("3:45", "3:45\\text{ pm}"));
        assert!(!eq("3:45", "345"));
        assert!(eq("A", "The correct option is A."));
        assert!(eq("A", "choice \\textbf{(A) } 12"));
        assert!(!eq("A", "(A) or (B)"));
        assert!(!eq("D", "A and D"));
        assert!(eq("(11,7)or(7,11)", "(7,11),(11,7)"));
    }
}

#[cfg(test)]
mod matrix_arithmetic_tests {
    use super::answers_equivalent as eq;

    #[test]
    fn sums_and_products() {
        let a = "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}";
        let b = "\\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}";
        assert!(eq(
            "\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}",
            &format!("{a} + {b}")
        ));
        assert!(!eq(
            "\\begin{pmatrix}6 & 8 \\\\ 10 & 13\\end{pmatrix}",
            &format!("{a} + {b}")
        ));
        assert!(eq(
            "\\begin{pmatrix}19 & 22 \\\\ 43 & 50\\end{pmatrix}",
            &format!("{a} {b}")
        ));
        // A long chain of products is not expanded (its size would explode).
        let chain = vec![a; 40].join(" ");
        let t = std::time::Instant::now();
        assert!(!eq("1", &chain));
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
    }
}

#[cfg(test)]
mod number_word_tests {
    use super::number_words;

    #[test]
    fn words() {
        let w = |s: &str| number_words(s);
        assert_eq!(w("sixty-six").as_deref(), Some("66"));
        assert_eq!(w("thirty").as_deref(), Some("30"));
        assert_eq!(w("\\text{fifty}").as_deref(), Some("50"));
        assert_eq!(w("one thousand two hundred fifty").as_deref(), Some("1250"));
        assert_eq!(w("minus six").as_deref(), Some("-6"));
        assert_eq!(w("three quarters").as_deref(), Some("3/4"));
        assert_eq!(w("two-thirds").as_deref(), Some("2/3"));
        assert_eq!(w("one and a half").as_deref(), Some("3/2"));
        assert_eq!(w("a quarter").as_deref(), Some("1/4"));
        assert_eq!(w("half").as_deref(), Some("1/2"));
        assert_eq!(w("negative two and three fifths").as_deref(), Some("-13/5"));
        assert_eq!(w("five halves").as_deref(), Some("5/2"));
        assert_eq!(w("third"), None);
        assert_eq!(w("second"), None);
        assert_eq!(number_words("Monday"), None);
        assert_eq!(number_words("a"), None);
    }
}
