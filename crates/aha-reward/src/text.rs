//! String-level normalisation shared by extraction and equivalence: unicode
//! digits and symbols, LaTeX spacing and delimiters, units, hedges, choices.

/// Maps a unicode decimal digit to its ASCII value; covers the scripts models
/// actually emit (Arabic-Indic, Persian, Devanagari, Bengali, Thai, fullwidth,
/// mathematical alphanumerics).
fn unicode_digit(c: char) -> Option<char> {
    const ZEROS: [u32; 11] = [
        0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0xFF10, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
    ];
    let u = c as u32;
    for z in ZEROS {
        if (z..z + 10).contains(&u) {
            return char::from_digit(u - z, 10);
        }
    }
    None
}

/// Unicode → ASCII/LaTeX, removal of invisible and control characters.
pub(crate) fn normalize_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = unicode_digit(c) {
            out.push(d);
            continue;
        }
        if let Some(d) = superscript_digit(c) {
            out.push_str("^{");
            out.push(d);
            while let Some(d) = chars.peek().copied().and_then(superscript_digit) {
                out.push(d);
                chars.next();
            }
            out.push('}');
            continue;
        }
        if let Some(f) = vulgar_fraction(c) {
            // `2½` is the mixed number 2 + ½.
            if out.ends_with(|c: char| c.is_ascii_digit()) {
                out.push('+');
            }
            out.push_str(f);
            continue;
        }
        match c {
            // `√12` is √(12), not √1·2: the radicand is every digit that follows; `∛5`, `∜5`.
            '\u{221A}' | '\u{221B}' | '\u{221C}'
                if chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_digit() || unicode_digit(*d).is_some()) =>
            {
                out.push_str(match c {
                    '\u{221B}' => "\\sqrt[3]{",
                    '\u{221C}' => "\\sqrt[4]{",
                    _ => "\\sqrt{",
                });
                while let Some(d) = chars.peek().copied().and_then(|d| {
                    if d.is_ascii_digit() {
                        Some(d)
                    } else {
                        unicode_digit(d)
                    }
                }) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            '\u{2212}' | '\u{2013}' | '\u{2010}' | '\u{2011}' | '\u{FE63}' | '\u{FF0D}' => {
                out.push('-')
            }
            '\u{00D7}' | '\u{2715}' => out.push_str("\\times "),
            '\u{00F7}' => out.push_str("\\div "),
            '\u{00B7}' | '\u{22C5}' | '\u{2219}' => out.push_str("\\cdot "),
            '\u{03C0}' => out.push_str("\\pi "),
            '\u{221E}' => out.push_str("\\infty "),
            '\u{221A}' => out.push_str("\\sqrt "),
            '\u{2264}' => out.push_str("\\le "),
            '\u{2265}' => out.push_str("\\ge "),
            '\u{2260}' => out.push_str("\\ne "),
            '\u{00B0}' => out.push_str("^\\circ "),
            '\u{222A}' => out.push_str("\\cup "),
            '\u{00B1}' => out.push_str("\\pm "),
            '\u{FF0C}' => out.push(','),
            '\u{FF08}' => out.push('('),
            '\u{FF09}' => out.push(')'),
            '\u{FF0E}' => out.push('.'),
            '\u{FF05}' => out.push('%'),
            // Invisible formatting and bidi controls change nothing a reader sees.
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{2060}' => {}
            '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => {
                out.push(' ')
            }
            c if c.is_control() && c != '\n' => out.push(' '),
            // Emoji, pictographs, their joiners and the replacement character carry no math.
            '\u{1F000}'..='\u{1FAFF}'
            | '\u{2600}'..='\u{27BF}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFFD}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn superscript_digit(c: char) -> Option<char> {
    Some(match c {
        '\u{2070}' => '0',
        '\u{00B9}' => '1',
        '\u{00B2}' => '2',
        '\u{00B3}' => '3',
        '\u{2074}'..='\u{2079}' => char::from_digit(c as u32 - 0x2070, 10)?,
        _ => return None,
    })
}

fn vulgar_fraction(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{00BD}' => "\\frac{1}{2}",
        '\u{00BC}' => "\\frac{1}{4}",
        '\u{00BE}' => "\\frac{3}{4}",
        '\u{2153}' => "\\frac{1}{3}",
        '\u{2154}' => "\\frac{2}{3}",
        '\u{215B}' => "\\frac{1}{8}",
        _ => return None,
    })
}

/// LaTeX commands that only affect spacing or sizing; removed before parsing.
const NOISE: [&str; 24] = [
    "\\displaystyle",
    "\\textstyle",
    "\\left",
    "\\right",
    "\\bigl",
    "\\bigr",
    "\\Bigl",
    "\\Bigr",
    "\\biggl",
    "\\biggr",
    "\\big",
    "\\Big",
    "\\bigg",
    "\\Bigg",
    "\\qquad",
    "\\quad",
    "\\limits",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "\\ ",
    "\\$",
    "\\mathrm{~}",
];

/// A variable's name rather than a value: `x`, `AB`, `x_1`.
fn is_name(s: &str) -> bool {
    let (head, sub) = s.split_once('_').unwrap_or((s, ""));
    (1..=2).contains(&head.len())
        && head.bytes().all(|c| c.is_ascii_alphabetic())
        && sub
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'{' || c == b'}')
}

/// Strips math delimiters, spacing macros and a trailing full stop.
pub(crate) fn normalize_answer(s: &str) -> String {
    let mut t = normalize_unicode(s);
    for pat in ["\\(", "\\)", "\\[", "\\]"] {
        // `\[`/`\]` are display delimiters here; interval brackets are plain.
        t = t.replace(pat, " ");
    }
    t = t.replace('$', " ");
    // `\langle 4, -2 \rangle` is the vector (4, -2).
    if t.contains("\\langle") {
        t = t
            .replace("\\left\\langle", "(")
            .replace("\\right\\rangle", ")");
        t = t.replace("\\langle", "(").replace("\\rangle", ")");
    }
    if t.trim().eq_ignore_ascii_case("all real numbers") {
        return "(-\\infty, \\infty)".to_string();
    }
    if !t.contains(['\\', '{', '^', '~']) {
        // No LaTeX: only the trailing full stop to drop.
        let trimmed = t.trim();
        return trimmed
            .strip_suffix('.')
            .unwrap_or(trimmed)
            .trim()
            .to_string();
    }
    if t.contains("\\\\") {
        t = undouble_commands(&t);
    }
    // `11,\! 111`: the thin negative space sits inside a thousands separator.
    while t.contains(",\\! ") {
        t = t.replace(",\\! ", ",\\!");
    }
    t = t.replace(",\\!", ",");
    // No other command starts with `quad`, so `\quadx` is `\quad x`.
    t = t.replace("\\qquad", " ").replace("\\quad", " ");
    for r in ["\\mathbb{R}", "\\mathbb R", "\\R "] {
        t = t.replace(r, "(-\\infty, \\infty)");
    }
    if let Some(i) = t.find("\\approx") {
        // `x = 1/3 \approx 0.33` and `\sqrt{2} \approx 1.414`: the approximation after
        // an exact value is a remark; `x \approx 11` alone states 11.
        let left = t[..i].trim();
        t = if left.contains('=') || !(left.is_empty() || is_name(left)) {
            t[..i].to_string()
        } else {
            t.replacen("\\approx", "=", 1)
        };
    }
    // The upright imaginary unit (ISO style).
    t = t.replace("\\mathrm{i}", "i");
    if t.contains("\\overline") {
        t = repeating_decimals(&t);
    }
    // Protect matrix row breaks `\\\\` from the control-space rule `\\ `.
    t = t.replace("\\\\", " \\cr ");
    for pat in NOISE {
        t = remove_command(&t, pat);
    }
    t = t.replace('~', " ");
    for (from, to) in [
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
        ("\\dbinom", "\\binom"),
        ("\\tbinom", "\\binom"),
        ("{,}", ","),
        ("{, }", ","),
        ("\\%", "%"),
        ("\\degree", "^\\circ"),
        ("^{\\circ}", "^\\circ"),
        ("^{ \\circ }", "^\\circ"),
        ("^\\circ", " \\text{deg} "),
    ] {
        t = t.replace(from, to);
    }
    let trimmed = t.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed).trim();
    trimmed.to_string()
}

/// Commands written with a doubled backslash (`\\\\frac`, from answers escaped
/// twice) read as the command; a real row break is followed by a space, a digit
/// or a sign, not by a command name.
fn undouble_commands(s: &str) -> String {
    const NAMES: [&str; 24] = [
        "frac", "dfrac", "left", "right", "le", "leq", "ge", "geq", "sqrt", "cdot", "pi", "infty",
        "text", "times", "boxed", "neq", "ne", "in", "cup", "mathrm", "mathbf", "pm", "lt", "gt",
    ];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\\\") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let word_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        if word_len > 0 && NAMES.contains(&&after[..word_len]) && !after.starts_with("\\") {
            out.push('\\');
        } else {
            out.push_str("\\\\");
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `0.1\overline{6}` → `\frac{1}{6}`: a repeating decimal as its exact fraction.
/// Left alone when the digits are too many for u128 arithmetic.
fn repeating_decimals(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\overline") {
        let head = &rest[..i];
        let after = &rest[i + "\\overline".len()..];
        let after_t = after.trim_start();
        let (rep, tail) = match after_t.strip_prefix('{') {
            Some(b) => match b.find('}') {
                Some(j) => (&b[..j], &b[j + 1..]),
                None => ("", after),
            },
            None => after_t.split_at(after_t.chars().next().map_or(0, |c| c.len_utf8())),
        };
        let rep = rep.trim();
        // The literal before: digits, a point, digits.
        let hb = head.as_bytes();
        let mut k = hb.len();
        while k > 0 && (hb[k - 1].is_ascii_digit() || hb[k - 1] == b'.') {
            k -= 1;
        }
        let lit = &head[k..];
        let frac = match lit.split_once('.') {
            Some((int, non)) if !rep.is_empty() && rep.bytes().all(|c| c.is_ascii_digit()) => {
                repeating_fraction(int, non, rep)
            }
            _ => None,
        };
        match frac {
            Some((n, d)) => {
                out.push_str(&head[..k]);
                out.push_str(&format!("\\frac{{{n}}}{{{d}}}"));
                rest = tail;
            }
            None => {
                out.push_str(head);
                out.push_str("\\overline");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn repeating_fraction(int: &str, non: &str, rep: &str) -> Option<(u128, u128)> {
    if int.len() + non.len() + rep.len() > 30 || non.contains('.') {
        return None;
    }
    let p10 = |k: usize| 10u128.checked_pow(k as u32);
    let int_v: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let non_v: u128 = if non.is_empty() { 0 } else { non.parse().ok()? };
    let rep_v: u128 = rep.parse().ok()?;
    let a = p10(non.len())?;
    let r = p10(rep.len())?.checked_sub(1)?;
    let head = int_v.checked_mul(a)?.checked_add(non_v)?;
    let n = head.checked_mul(r)?.checked_add(rep_v)?;
    let d = a.checked_mul(r)?;
    Some((n, d))
}

/// Removes `pat` only where it is not the prefix of a longer command name
/// (`\left` must not eat `\leftarrow`).
fn remove_command(s: &str, pat: &str) -> String {
    if !s.contains(pat) {
        return s.to_string();
    }
    let letters_only = pat[1..].chars().all(|c| c.is_ascii_alphabetic());
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(pat) {
        out.push_str(&rest[..i]);
        let after = &rest[i + pat.len()..];
        let continues = letters_only && after.starts_with(|c: char| c.is_ascii_alphabetic());
        if continues {
            out.push_str(pat);
        } else {
            out.push(' ');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Canonical unit names; `None` means "a generic word that is not a unit
/// check" (e.g. "units"), which is dropped.
fn canonical_unit(word: &str) -> Option<String> {
    let w = word.trim().to_ascii_lowercase();
    let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '^');
    if let Some(c) = table_unit(w) {
        return Some(c.to_string());
    }
    let generic = [
        "unit", "units", "sq", "square", "squared", "cubic", "squnits", "squnits",
    ];
    if w.is_empty() || generic.contains(&w) {
        return None;
    }
    // Unknown words: compare by a light stem so "apples" matches "apple".
    let stem = w
        .strip_suffix("es")
        .filter(|s| s.len() > 2)
        .or_else(|| w.strip_suffix('s'));
    Some(stem.unwrap_or(w).to_string())
}

/// The canonical name of a unit of the table (lower-case input).
fn table_unit(w: &str) -> Option<&'static str> {
    let table: &[(&[&str], &str)] = &[
        (
            &[
                "cm",
                "centimeter",
                "centimeters",
                "centimetre",
                "centimetres",
            ],
            "cm",
        ),
        (&["mm", "millimeter", "millimeters"], "mm"),
        (&["m", "meter", "meters", "metre", "metres"], "m"),
        (
            &["km", "kilometer", "kilometers", "kilometre", "kilometres"],
            "km",
        ),
        (&["in", "inch", "inches"], "in"),
        (&["ft", "foot", "feet"], "ft"),
        (&["yd", "yard", "yards"], "yd"),
        (&["mi", "mile", "miles"], "mi"),
        (&["g", "gram", "grams"], "g"),
        (&["kg", "kilogram", "kilograms"], "kg"),
        (&["lb", "lbs", "pound", "pounds"], "lb"),
        (&["s", "sec", "secs", "second", "seconds"], "s"),
        (&["min", "mins", "minute", "minutes"], "min"),
        (&["h", "hr", "hrs", "hour", "hours"], "h"),
        (&["day", "days"], "day"),
        (&["week", "weeks"], "week"),
        (&["year", "years"], "year"),
        (&["deg", "degree", "degrees"], "deg"),
        (&["dollar", "dollars", "usd"], "dollar"),
        (&["cent", "cents"], "cent"),
        (&["l", "liter", "liters", "litre", "litres"], "l"),
        (&["ml", "milliliter", "milliliters"], "ml"),
        (&["mph"], "mph"),
        (&["cm^2", "cm2"], "cm^2"),
        (&["m^2", "m2"], "m^2"),
    ];
    table
        .iter()
        .find(|(names, _)| names.contains(&w))
        .map(|(_, canon)| *canon)
}

/// Unit of an answer and the answer without it.
pub(crate) struct Split {
    pub value: String,
    pub unit: Option<String>,
}

/// Splits a trailing unit off an answer: `5\text{ cm}`, `5\mathrm{cm}`,
/// `5 cm^2`, `12 apples`, `30^\circ` (normalised to `\text{deg}` earlier).
pub(crate) fn split_unit(s: &str) -> Split {
    let t = s.trim();
    // `9\\text{ m}^2`: the power belongs to the unit.
    for pow in ["^2", "^{2}", "^3", "^{3}"] {
        if let Some(core) = t.strip_suffix(pow).filter(|c| c.ends_with('}')) {
            let inner = split_unit(core);
            if let Some(u) = inner.unit {
                let p = if pow.contains('2') { "^2" } else { "^3" };
                return Split {
                    value: inner.value,
                    unit: canonical_unit(&format!("{u}{p}")).or(Some(format!("{u}{p}"))),
                };
            }
        }
    }
    let text_cmds = [
        "\\text{",
        "\\textbf{",
        "\\mathrm{",
        "\\mbox{",
        "\\textrm{",
        "\\textnormal{",
    ];
    // A compound unit: `80\mathrm{km}/\mathrm{h}`, `9.8\text{m}/\text{s}^2`.
    if let Some(sp) = compound_unit(t) {
        return sp;
    }
    // A trailing text command whose content is words → unit.
    if t.ends_with('}') {
        for cmd in text_cmds {
            if let Some(i) = t.rfind(cmd) {
                let inner = &t[i + cmd.len()..t.len() - 1];
                let head = t[..i].trim();
                if !head.is_empty()
                    && head_is_quantity(head)
                    && !inner.contains('{')
                    && !inner.trim().is_empty()
                    && inner
                        .chars()
                        .all(|c| c.is_ascii_alphabetic() || " ^23./".contains(c))
                    && (!inner.contains('/') || unit_ratio(inner).is_some())
                    && inner.chars().any(|c| c.is_ascii_alphabetic())
                {
                    let inner = inner.trim();
                    let unit = unit_of_words(inner);
                    // A trailing `^2` after the text command belongs to the unit.
                    return Split {
                        value: head.to_string(),
                        unit,
                    };
                }
            }
        }
    }
    // Plain trailing words (≥2 letters each) after a numeric head.
    let tokens: Vec<&str> = t.split_whitespace().collect();
    let mut k = tokens.len();
    while k > 1 {
        let w = tokens[k - 1];
        let core = w
            .strip_suffix("^2")
            .or_else(|| w.strip_suffix("^3"))
            .unwrap_or(w);
        // One letter with a power is a unit only when it is one (`m^2`, not `x^2`).
        let long_enough = core.len() >= 2
            || (!core.is_empty() && core.len() < w.len() && known_unit(core).is_some());
        let ratio = core.contains('/') && unit_ratio(core).is_some();
        if ratio || (long_enough && core.chars().all(|c| c.is_ascii_alphabetic())) {
            k -= 1;
        } else {
            break;
        }
    }
    if k < tokens.len() && k > 0 {
        let head = tokens[..k].join(" ");
        if head_is_quantity(&head) {
            return Split {
                unit: unit_of_words(&tokens[k..].join(" ")),
                value: head,
            };
        }
    }
    Split {
        value: t.to_string(),
        unit: None,
    }
}

/// `80\mathrm{km}/\mathrm{h}`: a unit in a text command, `/`, and another one
/// (the head may itself be such a ratio, `\mathrm{kg}/\mathrm{m}/\mathrm{s}`).
fn compound_unit(t: &str) -> Option<Split> {
    if !t.contains('/') || !t.ends_with(['}', '2', '3']) {
        return None;
    }
    let (core, pow) = match t.strip_suffix("^2").or_else(|| t.strip_suffix("^{2}")) {
        Some(c) => (c, "^2"),
        None => match t.strip_suffix("^3").or_else(|| t.strip_suffix("^{3}")) {
            Some(c) => (c, "^3"),
            None => (t, ""),
        },
    };
    let core = core.strip_suffix('}')?;
    let (open, cmd) = [
        "\\text{",
        "\\mathrm{",
        "\\textrm{",
        "\\mbox{",
        "\\textnormal{",
    ]
    .iter()
    .filter_map(|c| core.rfind(c).map(|i| (i, *c)))
    .max_by_key(|x| x.0)?;
    let denom = core[open + cmd.len()..].trim();
    let den = known_unit(denom)?;
    let head = core[..open].trim_end().strip_suffix('/')?.trim_end();
    let num = split_unit(head);
    let unit = num
        .unit
        .filter(|u| u.split('/').all(|p| known_unit(p).is_some()))?;
    if !head_is_quantity(&num.value) {
        return None;
    }
    Some(Split {
        value: num.value,
        unit: Some(format!("{unit}/{den}{pow}")),
    })
}

/// A unit from the table of known units (not the stem of any word).
fn known_unit(word: &str) -> Option<String> {
    let w = word.trim().to_ascii_lowercase();
    let (base, pow) = match w.strip_suffix("^2").or_else(|| w.strip_suffix("^{2}")) {
        Some(b) => (b, "^2"),
        None => match w.strip_suffix("^3").or_else(|| w.strip_suffix("^{3}")) {
            Some(b) => (b, "^3"),
            None => (w.as_str(), ""),
        },
    };
    table_unit(base.trim()).map(|c| format!("{c}{pow}"))
}

/// `km/h`, `m/s^2`: known units joined by `/`, canonical.
fn unit_ratio(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.trim().split('/').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let names: Option<Vec<String>> = parts.iter().map(|p| known_unit(p)).collect();
    let r = names?.join("/");
    Some(if r == "mi/h" { "mph".to_string() } else { r })
}

fn unit_of_words(words: &str) -> Option<String> {
    if let Some(r) = unit_ratio(words) {
        return Some(r);
    }
    let mut words = words.to_string();
    // "kilometers per hour" is km/h.
    if let Some((a, b)) = words.split_once(" per ") {
        if let (Some(a), Some(b)) = (known_unit(a), known_unit(b)) {
            return Some(format!("{a}/{b}"));
        }
        words = format!("{a} {b}");
    }
    let parts: Vec<String> = words
        .split_whitespace()
        .filter_map(canonical_unit)
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" "))
    }
}

/// A unit can only follow something that ends like a number or a closed group.
fn head_is_quantity(head: &str) -> bool {
    head.ends_with(|c: char| c.is_ascii_digit() || c == '}' || c == ')' || c == '%')
        && head.chars().any(|c| c.is_ascii_digit())
}

/// Splits an answer at top-level "or" (`5 or 6`, `x=1 \text{ or } x=2`,
/// `5 \lor 6`). One element means no alternative was offered.
pub(crate) fn split_or(s: &str) -> Vec<String> {
    // Fast path: no "or" anywhere means one alternative.
    if !s.contains("or") {
        let t = s.trim();
        return vec![t.to_string()];
    }
    // `(11,7)or(7,11)`: an "or" between brackets needs no spaces.
    let mut t = s.replace("\\lor", " or ").replace(")or(", ") or (");
    for cmd in ["\\text{", "\\textrm{", "\\mbox{", "\\mathrm{"] {
        for inner in ["or", " or", "or ", " or "] {
            t = t.replace(&format!("{cmd}{inner}}}"), " or ");
        }
    }
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => depth -= 1,
            b' ' if depth == 0 && t[i..].starts_with(" or ") => {
                parts.push(t[start..i].trim().to_string());
                start = i + 4;
                i += 4;
                continue;
            }
            // `W(x)=1orW(x)=-1`: spaces lost around "or" after a value.
            b'o' if depth == 0 && glued_or(b, i) => {
                parts.push(t[start..i].trim().to_string());
                start = i + 2;
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(t[start..].trim().to_string());
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        parts.push(String::new());
    }
    parts
}

/// An "or" at `i` written without spaces between a value (ending in a digit
/// or a closing bracket) and the next one (a capital, a digit, a sign, a
/// bracket, a command, or a variable before `=`/`(`/`_`); "for", "order" and
/// other words never match, since a letter precedes or follows them.
fn glued_or(b: &[u8], i: usize) -> bool {
    if i == 0 || b.get(i + 1) != Some(&b'r') {
        return false;
    }
    let before = b[i - 1];
    if !(before.is_ascii_digit() || before == b')' || before == b'}') {
        return false;
    }
    match b.get(i + 2) {
        Some(c) if c.is_ascii_uppercase() || c.is_ascii_digit() => true,
        Some(b'-' | b'(' | b'\\') => true,
        Some(c) if c.is_ascii_lowercase() => matches!(b.get(i + 3), Some(b'=' | b'(' | b'_')),
        _ => false,
    }
}

/// Removes `\text{..}`-style wrappers, keeping their content.
pub(crate) fn unwrap_text_commands(s: &str) -> String {
    let mut t = s.to_string();
    for cmd in [
        "\\textbf{",
        "\\textit{",
        "\\text{",
        "\\mathrm{",
        "\\mbox{",
        "\\textrm{",
        "\\mathbf{",
        "\\boxed{",
        "\\fbox{",
        "\\textnormal{",
        "\\emph{",
    ] {
        // Bounded loop: every pass removes one wrapper.
        for _ in 0..64 {
            let Some(i) = t.find(cmd) else { break };
            let open = i + cmd.len() - 1;
            match crate::extract::matching_brace(&t, open) {
                Some(close) => {
                    let inner = t[open + 1..close].to_string();
                    t = format!("{}{}{}", &t[..i], inner, &t[close + 1..]);
                }
                None => {
                    t = format!("{}{}", &t[..i], &t[open + 1..]);
                }
            }
        }
    }
    t
}

/// Case- and space-insensitive form of a short text answer.
pub(crate) fn canonical_text(s: &str) -> String {
    let t = unwrap_text_commands(s);
    let t = t.to_lowercase();
    let out: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    out.trim_end_matches('.').to_string()
}

/// The answer with whitespace removed: the cheap exact-match fast path.
pub(crate) fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A multiple-choice letter: `B`, `(B)`, `B)`, `\text{(B)}`, `B: 12`,
/// `option B`. Only A–J count.
pub(crate) fn choice_letter(s: &str) -> Option<char> {
    let t = unwrap_text_commands(s);
    let t = t.trim().trim_matches('*').trim();
    choice_at_start(t).or_else(|| choice_in_sentence(t))
}

/// A letter named in a sentence ("The correct option is A.", "choice (C) 12"):
/// after "option", "choice" or "answer is", or in parentheses; exactly one
/// distinct letter must be named.
fn choice_in_sentence(t: &str) -> Option<char> {
    let lower = t.to_ascii_lowercase();
    let b = t.as_bytes();
    let mut found: Option<char> = None;
    let mut note = |c: char| -> bool {
        match found {
            Some(f) if f != c => false,
            _ => {
                found = Some(c);
                true
            }
        }
    };
    for kw in [
        "option is",
        "choice is",
        "option",
        "choice",
        "answer is",
        "answer:",
    ] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(kw) {
            let at = from + i + kw.len();
            from = at;
            let rest = t[at..].trim_start_matches([' ', ':', '(', '*']);
            let mut cs = rest.chars();
            if let Some(c) = cs.next() {
                let next = cs.next();
                if ('A'..='J').contains(&c) && next.is_none_or(|n| !n.is_alphanumeric()) && !note(c)
                {
                    return None;
                }
            }
        }
    }
    for i in 0..b.len().saturating_sub(2) {
        if b[i] == b'('
            && b[i + 2] == b')'
            && (b'A'..=b'J').contains(&b[i + 1])
            && !note(b[i + 1] as char)
        {
            return None;
        }
    }
    found
}

fn choice_at_start(t: &str) -> Option<char> {
    let lower = t.to_ascii_lowercase();
    let body = ["option ", "choice ", "answer "]
        .iter()
        .find_map(|p| lower.starts_with(p).then(|| &t[p.len()..]))
        .unwrap_or(t)
        .trim();
    let body = body.strip_prefix('(').unwrap_or(body).trim_start();
    let mut chars = body.chars();
    let c = chars.next()?;
    if !('A'..='J').contains(&c) {
        return None;
    }
    let rest = chars.as_str().trim_start();
    match rest.chars().next() {
        None => Some(c),
        Some(')') | Some('.') | Some(':') => Some(c),
        _ => None,
    }
}

/// Whether a gold answer is a multiple-choice letter (and nothing else).
pub(crate) fn gold_choice(s: &str) -> Option<char> {
    let t = unwrap_text_commands(s);
    let t = t.trim().trim_matches(|c| c == '(' || c == ')').trim();
    let mut chars = t.chars();
    let c = chars.next()?;
    (chars.next().is_none() && ('A'..='J').contains(&c)).then_some(c)
}
