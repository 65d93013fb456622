//! LaTeX / plain-math answer → expression tree.
//!
//! A recursive-descent parser with a hard depth cap; anything it does not
//! understand is an error, and the caller falls back to text comparison.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};

/// Parser recursion deeper than this is rejected (one bracket level costs
/// about six; no real answer needs 60 levels), which bounds recursion
/// everywhere downstream.
pub const MAX_DEPTH: usize = 400;
/// `!` and `%` signs allowed in one answer.
pub const MAX_POSTFIX: usize = 64;
/// Token budget of one answer.
pub const MAX_TOKENS: usize = 8192;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Const {
    Pi,
    E,
    I,
    Inf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Sqrt,
    Sin,
    Cos,
    Tan,
    Sec,
    Csc,
    Cot,
    Asin,
    Acos,
    Atan,
    Ln,
    Log,
    Exp,
    Abs,
    Floor,
    Ceil,
    Fact,
    Binom,
    Root,
    LogBase,
    /// `\sum_{k=lo}^{hi} body`: args `[k, lo, hi, body]`.
    Sum,
    /// `\prod_{k=lo}^{hi} body`: args `[k, lo, hi, body]`.
    Prod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rel {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    Ne,
    In,
}

/// A decimal literal remembers its precision, for the approximation rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decimal {
    /// Digits after the point (may be negative after `e5`).
    pub frac_digits: i64,
    pub sig_digits: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Num(BigRational, Option<Decimal>),
    Sym(String),
    Const(Const),
    Add(Vec<Node>),
    Mul(Vec<Node>),
    Neg(Box<Node>),
    Div(Box<Node>, Box<Node>),
    Pow(Box<Node>, Box<Node>),
    Func(Func, Vec<Node>),
    Percent(Box<Node>),
    /// `a \pm b`: both values.
    PlusMinus(Box<Node>, Box<Node>),
    /// `( … )` with ≥2 items: a tuple or an open interval.
    Paren(Vec<Node>),
    /// `[ … ]` with ≥2 items: a list or a closed interval.
    Bracket(Vec<Node>),
    Interval {
        lo: Box<Node>,
        hi: Box<Node>,
        lo_closed: bool,
        hi_closed: bool,
    },
    Set(Vec<Node>),
    /// Bare top-level comma list.
    List(Vec<Node>),
    Union(Vec<Node>),
    Matrix(Vec<Vec<Node>>),
    Relation(Vec<Node>, Vec<Rel>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Sym(String),
    Const(Const),
    Func(Func),
    Frac,
    Op(char),
    Rel(Rel),
    SetOpen,
    SetClose,
    Cup,
    Pm,
    Begin(String),
    End,
    Row,
    Word,
    LFloor,
    RFloor,
    LCeil,
    RCeil,
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Contains words: compare as text.
    Textual,
    /// Malformed or unsupported.
    Syntax,
    /// Over a size or depth cap.
    TooBig,
}

type PResult<T> = Result<T, ParseError>;

fn func_of(name: &str) -> Option<Func> {
    Some(match name {
        "sqrt" => Func::Sqrt,
        "sin" => Func::Sin,
        "cos" => Func::Cos,
        "tan" => Func::Tan,
        "sec" => Func::Sec,
        "csc" => Func::Csc,
        "cot" => Func::Cot,
        "arcsin" => Func::Asin,
        "arccos" => Func::Acos,
        "arctan" => Func::Atan,
        "ln" => Func::Ln,
        "log" => Func::Log,
        "exp" => Func::Exp,
        "binom" => Func::Binom,
        "sum" => Func::Sum,
        "prod" => Func::Prod,
        _ => return None,
    })
}

const GREEK: [&str; 22] = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "phi",
    "varphi",
    "chi",
    "omega",
];

/// Whether commas in `s` can be thousands separators: only when every comma
/// sits between a digit and exactly three digits (`1,000`, `12,345,678`);
/// one list-like comma (`1,2`, `3, 4`) makes them all list separators.
fn commas_group_digits(b: &[u8]) -> bool {
    (0..b.len()).filter(|&k| b[k] == b',').all(|k| {
        let three = k + 4 <= b.len() && b[k + 1..k + 4].iter().all(u8::is_ascii_digit);
        let ends = b.get(k + 4).is_none_or(|c| !c.is_ascii_digit());
        k > 0 && b[k - 1].is_ascii_digit() && three && ends
    })
}

fn tokenize(s: &str) -> PResult<Vec<Tok>> {
    let b = s.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let comma_groups = commas_group_digits(b);
    // Inside brackets a comma separates elements: `[100,200]` is an interval.
    let mut depth = 0usize;
    while i < b.len() {
        if toks.len() > MAX_TOKENS {
            return Err(ParseError::TooBig);
        }
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let (lit, next) = read_number(s, i, comma_groups && depth == 0);
            toks.push(Tok::Num(lit));
            i = next;
            continue;
        }
        if c.is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let word = &s[start..i];
            if let Some(f) = func_of(word) {
                toks.push(Tok::Func(f));
            } else if word == "pi" {
                toks.push(Tok::Const(Const::Pi));
            } else if word == "inf" || word == "infty" || word == "infinity" {
                toks.push(Tok::Const(Const::Inf));
            } else if word == "or" {
                return Err(ParseError::Textual);
            } else if word.len() >= 3 {
                // A word, not a product of variables.
                toks.push(Tok::Word);
            } else {
                for ch in word.chars() {
                    toks.push(letter_tok(ch));
                }
            }
            continue;
        }
        if c == b'\\' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == start {
                // Escaped symbol.
                let Some(sym) = s[start..].chars().next() else {
                    i = j;
                    continue;
                };
                i = start + sym.len_utf8();
                match sym {
                    '{' => toks.push(Tok::SetOpen),
                    '}' => toks.push(Tok::SetClose),
                    '\\' => toks.push(Tok::Row),
                    '|' => toks.push(Tok::Op('|')),
                    '%' => toks.push(Tok::Op('%')),
                    _ => {}
                }
                continue;
            }
            let name = &s[start..j];
            i = j;
            match name {
                "frac" => toks.push(Tok::Frac),
                "cr" => toks.push(Tok::Row),
                "cdot" | "times" | "ast" => toks.push(Tok::Op('*')),
                "div" => toks.push(Tok::Op('/')),
                "le" | "leq" | "leqslant" => toks.push(Tok::Rel(Rel::Le)),
                "ge" | "geq" | "geqslant" => toks.push(Tok::Rel(Rel::Ge)),
                "lt" => toks.push(Tok::Rel(Rel::Lt)),
                "gt" => toks.push(Tok::Rel(Rel::Gt)),
                "ne" | "neq" => toks.push(Tok::Rel(Rel::Ne)),
                "in" => toks.push(Tok::Rel(Rel::In)),
                "cup" => toks.push(Tok::Cup),
                "pm" => toks.push(Tok::Pm),
                "infty" | "infin" => toks.push(Tok::Const(Const::Inf)),
                "pi" => toks.push(Tok::Const(Const::Pi)),
                "emptyset" | "varnothing" => toks.push(Tok::Empty),
                "lfloor" => toks.push(Tok::LFloor),
                "rfloor" => toks.push(Tok::RFloor),
                "lceil" => toks.push(Tok::LCeil),
                "rceil" => toks.push(Tok::RCeil),
                "vert" | "mid" => toks.push(Tok::Op('|')),
                "lbrace" => toks.push(Tok::SetOpen),
                "rbrace" => toks.push(Tok::SetClose),
                "circ" => toks.push(Tok::Word),
                "text" | "textbf" | "textit" | "mathrm" | "mathbf" | "mbox" | "textrm"
                | "operatorname" | "mathit" | "boldsymbol" | "textnormal" | "boxed" | "fbox"
                | "mathbb" | "mathcal" | "emph" | "limits" => {
                    // Transparent wrapper: its braces become a group.
                }
                "begin" | "end" => {
                    let (env, next) = read_braced_name(s, i);
                    i = next;
                    if name == "end" {
                        toks.push(Tok::End);
                    } else {
                        if env == "array" {
                            // Skip the column spec `{cc}`.
                            let (_, next) = read_braced_name(s, i);
                            i = next;
                        }
                        toks.push(Tok::Begin(env));
                    }
                }
                "dots" | "ldots" | "cdots" | "prime" => return Err(ParseError::Syntax),
                _ => {
                    if let Some(f) = func_of(name) {
                        toks.push(Tok::Func(f));
                    } else if GREEK.contains(&name) {
                        toks.push(Tok::Sym(name.to_string()));
                    } else {
                        return Err(ParseError::Textual);
                    }
                }
            }
            continue;
        }
        i += 1;
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        match c {
            b'!' if b.get(i) == Some(&b'=') => {
                i += 1;
                toks.push(Tok::Rel(Rel::Ne));
            }
            b'+' | b'-' | b'*' | b'/' | b'^' | b'_' | b'!' | b'%' | b'|' | b'&' | b',' | b';'
            | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'\'' => toks.push(Tok::Op(c as char)),
            b'=' => toks.push(Tok::Rel(Rel::Eq)),
            b'<' => {
                if b.get(i) == Some(&b'=') {
                    i += 1;
                    toks.push(Tok::Rel(Rel::Le));
                } else {
                    toks.push(Tok::Rel(Rel::Lt));
                }
            }
            b'>' => {
                if b.get(i) == Some(&b'=') {
                    i += 1;
                    toks.push(Tok::Rel(Rel::Ge));
                } else {
                    toks.push(Tok::Rel(Rel::Gt));
                }
            }
            b':' => {}
            _ if c >= 0x80 => {
                // Non-ASCII letters (CJK words, accents): text.
                return Err(ParseError::Textual);
            }
            _ => return Err(ParseError::Syntax),
        }
    }
    Ok(toks)
}

fn letter_tok(ch: char) -> Tok {
    match ch {
        'e' => Tok::Const(Const::E),
        'i' => Tok::Const(Const::I),
        c => Tok::Sym(c.to_string()),
    }
}

fn read_braced_name(s: &str, i: usize) -> (String, usize) {
    let rest = &s[i..];
    let t = rest.trim_start();
    let skipped = rest.len() - t.len();
    if let Some(body) = t.strip_prefix('{') {
        if let Some(j) = body.find('}') {
            return (body[..j].trim().to_string(), i + skipped + 1 + j + 1);
        }
    }
    (String::new(), i)
}

/// Reads a number literal with thousands separators (`1,000`, `1 000`),
/// a decimal part and an exponent (`1.2e-5`).
fn read_number(s: &str, start: usize, comma_groups: bool) -> (String, usize) {
    let b = s.as_bytes();
    let mut i = start;
    let mut lit = String::new();
    let digits = |i: usize| {
        let mut j = i;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let j = digits(i);
    lit.push_str(&s[i..j]);
    i = j;
    let first_group = lit.len();
    // Thousands groups only when the first group has 1–3 digits.
    if (1..=3).contains(&first_group) {
        for sep in [b',', b' '] {
            if sep == b',' && !comma_groups {
                continue;
            }
            let mut k = i;
            let mut groups = String::new();
            while k < b.len() && b[k] == sep {
                let e = digits(k + 1);
                let ok = e - (k + 1) == 3 && !(e < b.len() && (b[e] == b'.' && sep == b' '));
                if !ok {
                    break;
                }
                groups.push_str(&s[k + 1..e]);
                k = e;
            }
            if !groups.is_empty() {
                lit.push_str(&groups);
                i = k;
                break;
            }
        }
    }
    if i < b.len() && b[i] == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
        let e = digits(i + 1);
        lit.push_str(&s[i..e]);
        i = e;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut k = i + 1;
        if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
            k += 1;
        }
        let e = digits(k);
        if e > k && e - k <= 6 && !(e < b.len() && b[e].is_ascii_alphabetic()) {
            lit.push_str(&s[i..e]);
            i = e;
        }
    }
    (lit, i)
}

/// Parses a literal into an exact rational plus decimal metadata.
pub(crate) fn number_literal(lit: &str) -> Option<(BigRational, Option<Decimal>)> {
    let (mant, exp) = match lit.find(['e', 'E']) {
        Some(k) => (&lit[..k], lit[k + 1..].parse::<i64>().ok()?),
        None => (lit, 0),
    };
    let (int_part, frac_part) = match mant.find('.') {
        Some(k) => (&mant[..k], &mant[k + 1..]),
        None => (mant, ""),
    };
    let digits: String = format!("{int_part}{frac_part}");
    let n: BigInt = if digits.is_empty() {
        BigInt::zero()
    } else {
        digits.parse().ok()?
    };
    let shift = exp - frac_part.len() as i64;
    if shift.abs() > 400 {
        return None;
    }
    let ten = BigInt::from(10u32);
    let val = if shift >= 0 {
        BigRational::from_integer(n * num_traits::pow(ten, shift as usize))
    } else {
        BigRational::new(n, num_traits::pow(ten, (-shift) as usize))
    };
    let is_dec = mant.contains('.') || lit.contains(['e', 'E']);
    let dec = is_dec.then(|| Decimal {
        frac_digits: -shift,
        sig_digits: digits.trim_start_matches('0').len().max(1) as u32,
    });
    Some((val, dec))
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    abs_open: usize,
    wraps: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(ParseError::TooBig)
        } else {
            Ok(())
        }
    }

    fn top(&mut self) -> PResult<Node> {
        let mut items = vec![self.relation()?];
        while self.eat(&Tok::Op(',')) || self.eat(&Tok::Op(';')) {
            if self.peek().is_none() {
                break;
            }
            items.push(self.relation()?);
        }
        if self.pos < self.toks.len() {
            return Err(ParseError::Syntax);
        }
        Ok(if items.len() == 1 {
            items.pop().ok_or(ParseError::Syntax)?
        } else {
            Node::List(items)
        })
    }

    fn relation(&mut self) -> PResult<Node> {
        self.enter()?;
        let first = self.union()?;
        let mut items = vec![first];
        let mut ops = Vec::new();
        while let Some(Tok::Rel(r)) = self.peek().cloned() {
            self.pos += 1;
            ops.push(r);
            items.push(self.union()?);
        }
        self.depth -= 1;
        Ok(if ops.is_empty() {
            items.pop().ok_or(ParseError::Syntax)?
        } else {
            Node::Relation(items, ops)
        })
    }

    fn union(&mut self) -> PResult<Node> {
        let first = self.expr()?;
        if self.peek() != Some(&Tok::Cup) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat(&Tok::Cup) {
            items.push(self.expr()?);
        }
        Ok(Node::Union(items))
    }

    fn expr(&mut self) -> PResult<Node> {
        self.enter()?;
        if self.eat(&Tok::Pm) {
            // A leading `\pm 2` is the pair {2, -2}.
            let t = self.term()?;
            self.depth -= 1;
            let zero = Node::Num(BigRational::zero(), None);
            return Ok(Node::PlusMinus(Box::new(zero), Box::new(t)));
        }
        let mut terms = vec![self.term()?];
        let mut pm: Option<Node> = None;
        loop {
            match self.peek() {
                Some(Tok::Op('+')) => {
                    self.pos += 1;
                    terms.push(self.term()?);
                }
                Some(Tok::Op('-')) => {
                    self.pos += 1;
                    terms.push(Node::Neg(Box::new(self.term()?)));
                }
                Some(Tok::Pm) => {
                    self.pos += 1;
                    if pm.is_some() {
                        return Err(ParseError::Syntax);
                    }
                    pm = Some(self.term()?);
                }
                _ => break,
            }
        }
        self.depth -= 1;
        let sum = if terms.len() == 1 {
            terms.pop().ok_or(ParseError::Syntax)?
        } else {
            Node::Add(terms)
        };
        Ok(match pm {
            Some(d) => Node::PlusMinus(Box::new(sum), Box::new(d)),
            None => sum,
        })
    }

    fn starts_factor(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_)) | Some(Tok::Sym(_)) | Some(Tok::Const(_)) | Some(Tok::Func(_))
            | Some(Tok::Frac) | Some(Tok::Op('(')) | Some(Tok::Op('{')) | Some(Tok::LFloor)
            | Some(Tok::LCeil) | Some(Tok::Begin(_)) => true,
            Some(Tok::Op('|')) => self.abs_open == 0,
            _ => false,
        }
    }

    fn term(&mut self) -> PResult<Node> {
        self.enter()?;
        let mut acc = self.unary()?;
        // `3\frac{3}{4}` is the mixed number 3¾, not 3·¾.
        if self.peek() == Some(&Tok::Frac) {
            if let Some(whole) = integer_literal(&acc) {
                let f = self.power()?;
                if proper_fraction(&f) {
                    let neg = whole.is_negative();
                    let mag = Node::Num(whole.abs(), None);
                    let sum = Node::Add(vec![mag, f]);
                    acc = if neg { Node::Neg(Box::new(sum)) } else { sum };
                } else {
                    acc = mul(acc, f);
                }
            }
        }
        loop {
            match self.peek() {
                Some(Tok::Op('*')) => {
                    self.pos += 1;
                    let r = self.unary()?;
                    acc = mul(acc, r);
                }
                Some(Tok::Op('/')) => {
                    self.pos += 1;
                    let r = self.unary()?;
                    acc = Node::Div(Box::new(acc), Box::new(r));
                }
                _ if self.starts_factor() => {
                    let r = self.power()?;
                    acc = mul(acc, r);
                }
                _ => break,
            }
        }
        self.depth -= 1;
        Ok(acc)
    }

    fn unary(&mut self) -> PResult<Node> {
        self.enter()?;
        let r = match self.peek() {
            Some(Tok::Op('-')) => {
                self.pos += 1;
                Node::Neg(Box::new(self.unary()?))
            }
            Some(Tok::Op('+')) => {
                self.pos += 1;
                self.unary()?
            }
            _ => self.power()?,
        };
        self.depth -= 1;
        Ok(r)
    }

    fn power(&mut self) -> PResult<Node> {
        self.enter()?;
        let base = self.postfix()?;
        let r = if self.eat(&Tok::Op('^')) {
            let e = self.exponent()?;
            let node = Node::Pow(Box::new(base), Box::new(e));
            self.postfix_ops(node)?
        } else {
            base
        };
        self.depth -= 1;
        Ok(r)
    }

    fn exponent(&mut self) -> PResult<Node> {
        self.enter()?;
        let r = self.exponent_inner();
        self.depth -= 1;
        r
    }

    fn exponent_inner(&mut self) -> PResult<Node> {
        match self.peek() {
            Some(Tok::Op('-')) => {
                self.pos += 1;
                Ok(Node::Neg(Box::new(self.exponent()?)))
            }
            Some(Tok::Op('{')) => self.power(),
            _ => {
                // Unbraced exponent: one token (`x^2`, `x^n`); a multi-digit
                // literal like `10^23` keeps all its digits.
                let a = self.atom()?;
                if self.eat(&Tok::Op('^')) {
                    let e = self.exponent()?;
                    return Ok(Node::Pow(Box::new(a), Box::new(e)));
                }
                Ok(a)
            }
        }
    }

    fn postfix(&mut self) -> PResult<Node> {
        let a = self.atom()?;
        self.postfix_ops(a)
    }

    fn postfix_ops(&mut self, mut a: Node) -> PResult<Node> {
        loop {
            if matches!(self.peek(), Some(Tok::Op('!' | '%'))) {
                // Each `!`/`%` nests the tree one level; bound them all.
                self.wraps += 1;
                if self.wraps > MAX_POSTFIX {
                    return Err(ParseError::TooBig);
                }
            }
            match self.peek() {
                Some(Tok::Op('!')) => {
                    self.pos += 1;
                    a = Node::Func(Func::Fact, vec![a]);
                }
                Some(Tok::Op('%')) => {
                    self.pos += 1;
                    a = Node::Percent(Box::new(a));
                }
                _ => return Ok(a),
            }
        }
    }

    /// One argument of `\frac`/`\sqrt`/`\binom`: a braced group or a single
    /// token; `\frac12` splits the literal's digits.
    fn arg(&mut self) -> PResult<Node> {
        match self.peek().cloned() {
            Some(Tok::Op('{')) => self.atom(),
            Some(Tok::Num(lit)) if lit.len() > 1 && lit.bytes().all(|c| c.is_ascii_digit()) => {
                let (head, tail) = lit.split_at(1);
                self.toks[self.pos] = Tok::Num(tail.to_string());
                num_node(head)
            }
            _ => self.atom(),
        }
    }

    fn group_until(&mut self, close: &Tok) -> PResult<Node> {
        let inner = self.relation()?;
        if !self.eat(close) {
            return Err(ParseError::Syntax);
        }
        Ok(inner)
    }

    fn atom(&mut self) -> PResult<Node> {
        self.enter()?;
        let r = self.atom_inner();
        self.depth -= 1;
        r
    }

    fn atom_inner(&mut self) -> PResult<Node> {
        let t = self.next().ok_or(ParseError::Syntax)?;
        match t {
            Tok::Num(lit) => num_node(&lit),
            Tok::Sym(name) => {
                let mut name = name;
                if self.eat(&Tok::Op('_')) {
                    let sub = self.atom()?;
                    name = format!("{name}_{}", node_key(&sub));
                }
                while self.eat(&Tok::Op('\'')) {
                    name.push('\'');
                }
                Ok(Node::Sym(name))
            }
            Tok::Const(c) => Ok(Node::Const(c)),
            Tok::Word => Err(ParseError::Textual),
            Tok::Empty => Ok(Node::Set(Vec::new())),
            Tok::Frac => {
                let n = self.arg()?;
                let d = self.arg()?;
                Ok(Node::Div(Box::new(n), Box::new(d)))
            }
            Tok::Func(Func::Sqrt) => {
                if self.eat(&Tok::Op('[')) {
                    let n = self.group_until(&Tok::Op(']'))?;
                    let x = self.arg()?;
                    return Ok(Node::Func(Func::Root, vec![x, n]));
                }
                let x = self.arg()?;
                Ok(Node::Func(Func::Sqrt, vec![x]))
            }
            Tok::Func(f @ (Func::Sum | Func::Prod)) => {
                // `\sum_{k=0}^{n-1} body`: the index, both bounds, then the
                // product term after it (`\sum_k a_k + 1` sums `a_k` only).
                if !self.eat(&Tok::Op('_')) {
                    return Err(ParseError::Syntax);
                }
                let Node::Relation(mut parts, ops) = self.arg()? else {
                    return Err(ParseError::Syntax);
                };
                // `\sum_{i=1}^{n} i`: an index named `i` is a variable, not √-1.
                let index_i = matches!(parts.first(), Some(Node::Const(Const::I)));
                if index_i {
                    parts[0] = Node::Sym("i".to_string());
                }
                if ops != [Rel::Eq] || parts.len() != 2 || !matches!(parts[0], Node::Sym(_)) {
                    return Err(ParseError::Syntax);
                }
                if !self.eat(&Tok::Op('^')) {
                    return Err(ParseError::Syntax);
                }
                let hi = self.exponent()?;
                let lo = parts.pop().ok_or(ParseError::Syntax)?;
                let k = parts.pop().ok_or(ParseError::Syntax)?;
                let mut body = self.term()?;
                if index_i {
                    imaginary_to_index(&mut body);
                }
                Ok(Node::Func(f, vec![k, lo, hi, body]))
            }
            Tok::Func(Func::Binom) => {
                let n = self.arg()?;
                let k = self.arg()?;
                Ok(Node::Func(Func::Binom, vec![n, k]))
            }
            Tok::Func(f) => {
                let mut base = None;
                if f == Func::Log && self.eat(&Tok::Op('_')) {
                    base = Some(self.arg()?);
                }
                // `\sin^2 x` means (sin x)^2; `\sin^{-1}` is arcsin.
                let mut pow = None;
                if self.eat(&Tok::Op('^')) {
                    pow = Some(self.exponent()?);
                }
                let x = match self.peek() {
                    Some(Tok::Op('(')) | Some(Tok::Op('{')) => self.atom()?,
                    _ => {
                        // `\sin 2x` is sin(2x): an unbracketed argument takes the
                        // juxtaposed factors after it, up to an operator or the
                        // next function (`\sin x \cos x`).
                        let mut arg = self.power()?;
                        while matches!(
                            self.peek(),
                            Some(Tok::Num(_)) | Some(Tok::Sym(_)) | Some(Tok::Const(_))
                        ) {
                            let r = self.power()?;
                            arg = mul(arg, r);
                        }
                        arg
                    }
                };
                let mut node = match base {
                    Some(b) => Node::Func(Func::LogBase, vec![x, b]),
                    None => Node::Func(f, vec![x]),
                };
                if let Some(p) = pow {
                    if p == Node::Neg(Box::new(num_node("1")?)) {
                        let inv = match f {
                            Func::Sin => Func::Asin,
                            Func::Cos => Func::Acos,
                            Func::Tan => Func::Atan,
                            _ => return Ok(Node::Pow(Box::new(node), Box::new(p))),
                        };
                        if let Node::Func(_, args) = node {
                            return Ok(Node::Func(inv, args));
                        }
                        return Err(ParseError::Syntax);
                    }
                    node = Node::Pow(Box::new(node), Box::new(p));
                }
                Ok(node)
            }
            Tok::Op('{') => {
                let items = self.items_until(&[Tok::Op('}')])?.0;
                // A LaTeX group: `{1,3}` renders as "1,3", a list (a set is `\\{1,3\\}`).
                if items.len() == 1 {
                    items.into_iter().next().ok_or(ParseError::Syntax)
                } else {
                    Ok(Node::List(items))
                }
            }
            Tok::SetOpen => {
                if self.eat(&Tok::SetClose) {
                    return Ok(Node::Set(Vec::new()));
                }
                let items = self.items_until(&[Tok::SetClose])?.0;
                Ok(Node::Set(items))
            }
            Tok::Op(open @ ('(' | '[')) => {
                let (items, close) = self.items_until(&[Tok::Op(')'), Tok::Op(']')])?;
                let close_c = if close == Tok::Op(')') { ')' } else { ']' };
                if items.len() == 1
                    && ((open == '(' && close_c == ')') || open == '[' && close_c == ']')
                {
                    return items.into_iter().next().ok_or(ParseError::Syntax);
                }
                let mut items = items;
                if items.len() == 2 && ((open == '(') != (close_c == ')')) {
                    let hi = items.pop().ok_or(ParseError::Syntax)?;
                    let lo = items.pop().ok_or(ParseError::Syntax)?;
                    return Ok(Node::Interval {
                        lo: Box::new(lo),
                        hi: Box::new(hi),
                        lo_closed: open == '[',
                        hi_closed: close_c == ']',
                    });
                }
                Ok(if open == '(' {
                    Node::Paren(items)
                } else {
                    Node::Bracket(items)
                })
            }
            Tok::Op('|') => {
                self.abs_open += 1;
                let inner = self.expr()?;
                self.abs_open -= 1;
                if !self.eat(&Tok::Op('|')) {
                    return Err(ParseError::Syntax);
                }
                Ok(Node::Func(Func::Abs, vec![inner]))
            }
            Tok::LFloor => {
                let inner = self.group_until(&Tok::RFloor)?;
                Ok(Node::Func(Func::Floor, vec![inner]))
            }
            Tok::LCeil => {
                let inner = self.group_until(&Tok::RCeil)?;
                Ok(Node::Func(Func::Ceil, vec![inner]))
            }
            Tok::Begin(env) => {
                if !env.ends_with("matrix") && env != "array" {
                    return Err(ParseError::Syntax);
                }
                let mut rows = Vec::new();
                let mut row = Vec::new();
                loop {
                    match self.peek() {
                        Some(Tok::End) => {
                            self.pos += 1;
                            break;
                        }
                        Some(Tok::Row) => {
                            self.pos += 1;
                            if !row.is_empty() {
                                rows.push(std::mem::take(&mut row));
                            }
                        }
                        Some(Tok::Op('&')) => {
                            self.pos += 1;
                        }
                        None => return Err(ParseError::Syntax),
                        _ => row.push(self.expr()?),
                    }
                }
                if !row.is_empty() {
                    rows.push(row);
                }
                if rows.is_empty() || rows.iter().any(|r| r.len() != rows[0].len()) {
                    return Err(ParseError::Syntax);
                }
                if env == "vmatrix" {
                    return Err(ParseError::Syntax);
                }
                Ok(Node::Matrix(rows))
            }
            _ => Err(ParseError::Syntax),
        }
    }

    fn items_until(&mut self, closers: &[Tok]) -> PResult<(Vec<Node>, Tok)> {
        let mut items = Vec::new();
        loop {
            items.push(self.relation()?);
            match self.next() {
                Some(Tok::Op(',')) | Some(Tok::Op(';')) => continue,
                Some(t) if closers.contains(&t) => return Ok((items, t)),
                _ => return Err(ParseError::Syntax),
            }
        }
    }
}

/// Reads every `i` of a series body as the index variable `i`.
fn imaginary_to_index(n: &mut Node) {
    match n {
        Node::Const(Const::I) => *n = Node::Sym("i".to_string()),
        Node::Num(..) | Node::Sym(_) | Node::Const(_) => {}
        Node::Neg(x) | Node::Percent(x) => imaginary_to_index(x),
        Node::Div(x, y) | Node::Pow(x, y) | Node::PlusMinus(x, y) => {
            imaginary_to_index(x);
            imaginary_to_index(y);
        }
        Node::Interval { lo, hi, .. } => {
            imaginary_to_index(lo);
            imaginary_to_index(hi);
        }
        Node::Add(xs)
        | Node::Mul(xs)
        | Node::Func(_, xs)
        | Node::Paren(xs)
        | Node::Bracket(xs)
        | Node::Set(xs)
        | Node::List(xs)
        | Node::Union(xs)
        | Node::Relation(xs, _) => xs.iter_mut().for_each(imaginary_to_index),
        Node::Matrix(rows) => rows.iter_mut().flatten().for_each(imaginary_to_index),
    }
}

/// An integer literal, possibly negated (no decimal point).
fn integer_literal(n: &Node) -> Option<BigRational> {
    match n {
        Node::Num(v, None) if v.is_integer() => Some(v.clone()),
        Node::Neg(x) => integer_literal(x).map(|v| -v),
        _ => None,
    }
}

/// `\frac{a}{b}` with integer literals 0 < a < b.
fn proper_fraction(n: &Node) -> bool {
    match n {
        Node::Div(a, b) => match (&**a, &**b) {
            (Node::Num(a, None), Node::Num(b, None)) => {
                a.is_integer() && b.is_integer() && a.is_positive() && a < b
            }
            _ => false,
        },
        _ => false,
    }
}

fn mul(a: Node, b: Node) -> Node {
    match a {
        Node::Mul(mut v) => {
            v.push(b);
            Node::Mul(v)
        }
        a => Node::Mul(vec![a, b]),
    }
}

fn num_node(lit: &str) -> PResult<Node> {
    let (v, d) = number_literal(lit).ok_or(ParseError::TooBig)?;
    Ok(Node::Num(v, d))
}

/// A stable textual key of a node (for subscripts and structural fallback).
pub(crate) fn node_key(n: &Node) -> String {
    match n {
        Node::Num(v, _) => v.to_string(),
        Node::Sym(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Parses a normalised answer string.
pub(crate) fn parse(s: &str) -> Result<Node, ParseError> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err(ParseError::Syntax);
    }
    // Any word makes the answer prose, whatever else it contains.
    if toks.contains(&Tok::Word) {
        return Err(ParseError::Textual);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        abs_open: 0,
        wraps: 0,
    };
    p.top()
}

pub(crate) fn one() -> BigRational {
    BigRational::one()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let (v, d) = number_literal("1.25e2").unwrap_or_else(|| (one(), None));
        assert_eq!(v, BigRational::from_integer(125.into()));
        assert_eq!(d.map(|d| d.frac_digits), Some(0));
        assert!(matches!(parse("1,000"), Ok(Node::Num(..))));
        assert!(matches!(parse("1, 2"), Ok(Node::List(..))));
        assert!(matches!(parse("\\frac12"), Ok(Node::Div(..))));
        assert!(matches!(parse("[1,2)"), Ok(Node::Interval { .. })));
        assert_eq!(parse("Monday"), Err(ParseError::Textual));
        assert_eq!(parse("(((("), Err(ParseError::Syntax));
        let deep = "(".repeat(500) + "1" + &")".repeat(500);
        assert_eq!(parse(&deep), Err(ParseError::TooBig));
    }
}
