//! Exact (big rational) and numeric (complex f64) evaluation under a work
//! budget. The budget counts steps, not time, so verdicts are reproducible.

use crate::parse::{Const, Func, Node};
use num_bigint::BigInt;
use num_complex::Complex64;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};

/// Largest exact intermediate, in bits; beyond it values are "not exact".
pub const MAX_BITS: u64 = 1 << 16;
/// Non-integer rationals are reduced by gcd, which is quadratic; beyond this
/// size they are left to numeric comparison.
const MAX_FRACTION_BITS: u64 = 1 << 12;
/// Work units allowed for one comparison.
pub const WORK_PER_COMPARISON: u64 = 200_000;

pub(crate) struct Budget {
    left: u64,
    /// Decimal places at which real values that round alike are equal (a
    /// caller's tolerance, as math-verify's `float_rounding`); `None`: exact.
    pub round_to: Option<u32>,
}

impl Budget {
    pub fn new() -> Self {
        Self {
            left: WORK_PER_COMPARISON,
            round_to: None,
        }
    }
    /// Takes `n` units; false once the budget is gone (and stays gone).
    pub fn spend(&mut self, n: u64) -> bool {
        if self.left < n {
            self.left = 0;
            false
        } else {
            self.left -= n;
            true
        }
    }
    pub fn exhausted(&self) -> bool {
        self.left == 0
    }
}

fn bits(r: &BigRational) -> u64 {
    r.numer().bits() + r.denom().bits()
}

fn int_of(r: &BigRational) -> Option<i64> {
    if r.is_integer() {
        r.numer().to_i64()
    } else {
        None
    }
}

// `is_multiple_of` is newer than the workspace's rust-version (1.85).
#[allow(clippy::manual_is_multiple_of)]
fn exact_root(x: &BigInt, n: u32) -> Option<BigInt> {
    if x.is_negative() {
        if n % 2 == 0 {
            return None;
        }
        return exact_root(&-x, n).map(|r| -r);
    }
    let r = x.nth_root(n);
    (num_traits::pow(r.clone(), n as usize) == *x).then_some(r)
}

fn rational_pow(base: &BigRational, e: &BigRational, b: &mut Budget) -> Option<BigRational> {
    // Rational exponent p/q: take an exact q-th root first.
    let q = e.denom().to_u32().filter(|q| *q <= 64)?;
    let p = e.numer().to_i64()?;
    let root = if q == 1 {
        base.clone()
    } else {
        BigRational::new(exact_root(base.numer(), q)?, exact_root(base.denom(), q)?)
    };
    let cost = bits(&root).saturating_mul(p.unsigned_abs());
    if cost > MAX_BITS || p.unsigned_abs() > 1 << 20 {
        return None;
    }
    if !b.spend(1 + cost / 64) {
        return None;
    }
    if p < 0 && root.is_zero() {
        return None;
    }
    // Powers of coprime parts stay coprime: no gcd needed.
    let k = p.unsigned_abs() as usize;
    let (n, d) = (
        num_traits::pow(root.numer().clone(), k),
        num_traits::pow(root.denom().clone(), k),
    );
    Some(if p < 0 {
        BigRational::new(d, n)
    } else {
        BigRational::new_raw(n, d)
    })
}

/// Cost in budget units of one big multiplication (quadratic); a gcd
/// (any non-integer operand) costs several times more.
fn big_cost(a: &BigRational, c: &BigRational) -> u64 {
    if a.is_integer() && c.is_integer() {
        1 + (bits(a) / 64).saturating_mul(bits(c) / 64) / 64
    } else {
        // The gcd that reduces the result is quadratic in its size.
        let w = (bits(a) + bits(c)) / 64;
        1 + w.saturating_mul(w) / 4
    }
}

fn fits(r: &BigRational) -> bool {
    let limit = if r.is_integer() {
        MAX_BITS
    } else {
        MAX_FRACTION_BITS
    };
    bits(r) <= limit
}

/// gcd that first reduces the larger operand modulo the smaller one, so a
/// big/small pair costs a division instead of a long binary gcd.
fn gcd_fast(x: &BigInt, y: &BigInt) -> BigInt {
    let (big, small) = if x.bits() >= y.bits() { (x, y) } else { (y, x) };
    if small.is_zero() {
        return big.abs();
    }
    small.gcd(&(big % small))
}

/// Fraction × fraction by cross-cancellation (Knuth 4.5.1): the result is
/// reduced without a gcd of the full-size product.
fn mul_frac(a: &BigRational, c: &BigRational) -> BigRational {
    let g1 = gcd_fast(a.numer(), c.denom());
    let g2 = gcd_fast(c.numer(), a.denom());
    if g1.is_zero() || g2.is_zero() {
        return BigRational::zero();
    }
    let n = (a.numer() / &g1) * (c.numer() / &g2);
    let d = (a.denom() / &g2) * (c.denom() / &g1);
    BigRational::new_raw(n, d)
}

/// Fraction + fraction (Knuth 4.5.1): gcds of denominator-sized numbers only.
fn add_frac(a: &BigRational, c: &BigRational) -> BigRational {
    let g = gcd_fast(a.denom(), c.denom());
    let (ad, cd) = (a.denom() / &g, c.denom() / &g);
    let t = a.numer() * &cd + c.numer() * &ad;
    let g2 = gcd_fast(&t, &g);
    if t.is_zero() || g2.is_zero() {
        return BigRational::zero();
    }
    BigRational::new_raw(&t / &g2, ad * (c.denom() / g2))
}

/// Fraction × integer: only the small gcd of the integer with the
/// denominator is needed (the result stays reduced).
fn mul_int(a: &BigRational, k: &BigInt, b: &mut Budget) -> Option<BigRational> {
    if !b.spend(1 + (bits(a) + k.bits()) / 256) || bits(a) + k.bits() > MAX_FRACTION_BITS {
        return None;
    }
    if k.is_zero() {
        return Some(BigRational::zero());
    }
    let g = k.gcd(&(a.denom() % k));
    Some(BigRational::new_raw(a.numer() * (k / &g), a.denom() / g))
}

/// Product with integer fast paths (no big gcd) and a size cap.
fn rmul(a: &BigRational, c: &BigRational, b: &mut Budget) -> Option<BigRational> {
    match (a.is_integer(), c.is_integer()) {
        (false, true) => return mul_int(a, c.numer(), b),
        (true, false) => return mul_int(c, a.numer(), b),
        _ => {}
    }
    if !b.spend(big_cost(a, c)) || bits(a) + bits(c) > 2 * MAX_BITS {
        return None;
    }
    let r = if a.is_integer() && c.is_integer() {
        BigRational::from_integer(a.numer() * c.numer())
    } else {
        if bits(a) + bits(c) > 2 * MAX_FRACTION_BITS {
            return None;
        }
        mul_frac(a, c)
    };
    fits(&r).then_some(r)
}

/// Sum with an integer fast path and a size cap.
fn radd(a: &BigRational, c: &BigRational, b: &mut Budget) -> Option<BigRational> {
    // Fraction + integer stays reduced: (n + k·d)/d.
    let (frac, int) = match (a.is_integer(), c.is_integer()) {
        (false, true) => (Some(a), c),
        (true, false) => (Some(c), a),
        _ => (None, a),
    };
    if let Some(f) = frac {
        if bits(f) + bits(int) > MAX_FRACTION_BITS || !b.spend(1 + (bits(f) + bits(int)) / 256) {
            return None;
        }
        let n = f.numer() + int.numer() * f.denom();
        return Some(BigRational::new_raw(n, f.denom().clone()));
    }
    let r = if a.is_integer() && c.is_integer() {
        b.spend(1 + (bits(a) + bits(c)) / 4096);
        BigRational::from_integer(a.numer() + c.numer())
    } else {
        if bits(a).max(bits(c)) > MAX_FRACTION_BITS || !b.spend(big_cost(a, c)) {
            return None;
        }
        add_frac(a, c)
    };
    fits(&r).then_some(r)
}

/// The exact rational value of a constant expression, if it has one.
pub(crate) fn exact(n: &Node, b: &mut Budget) -> Option<BigRational> {
    if !b.spend(1) {
        return None;
    }
    match n {
        Node::Num(v, _) => Some(v.clone()),
        Node::Neg(x) => Some(-exact(x, b)?),
        Node::Add(xs) => {
            let mut acc = BigRational::zero();
            for x in xs {
                let v = exact(x, b)?;
                acc = radd(&acc, &v, b)?;
            }
            Some(acc)
        }
        Node::Mul(xs) => {
            let mut acc = crate::parse::one();
            for x in xs {
                let v = exact(x, b)?;
                acc = rmul(&acc, &v, b)?;
            }
            Some(acc)
        }
        Node::Div(x, y) => {
            let d = exact(y, b)?;
            if d.is_zero() {
                return None;
            }
            rmul(&exact(x, b)?, &d.recip(), b)
        }
        Node::Pow(x, e) => {
            let e = exact(e, b)?;
            let x = exact(x, b)?;
            rational_pow(&x, &e, b)
        }
        Node::Percent(x) => rmul(&exact(x, b)?, &BigRational::new(1.into(), 100.into()), b),
        Node::Func(f, args) => exact_func(*f, args, b),
        _ => None,
    }
}

fn exact_func(f: Func, args: &[Node], b: &mut Budget) -> Option<BigRational> {
    let a0 = args.first()?;
    match f {
        Func::Sqrt => {
            let x = exact(a0, b)?;
            rational_pow(&x, &BigRational::new(1.into(), 2.into()), b)
        }
        Func::Root => {
            let x = exact(a0, b)?;
            let n = int_of(&exact(args.get(1)?, b)?).filter(|n| (1..=64).contains(n))?;
            if x.is_negative() && n % 2 == 0 {
                return None;
            }
            rational_pow(&x, &BigRational::new(1.into(), n.into()), b)
        }
        Func::Abs => Some(exact(a0, b)?.abs()),
        Func::Floor => Some(exact(a0, b)?.floor()),
        Func::Ceil => Some(exact(a0, b)?.ceil()),
        Func::Fact => {
            let n = int_of(&exact(a0, b)?).filter(|n| (0..=3000).contains(n))?;
            if !b.spend(n as u64 * 4) {
                return None;
            }
            let mut acc = BigInt::from(1u32);
            for k in 2..=n {
                acc *= k;
            }
            Some(BigRational::from_integer(acc))
        }
        Func::Binom => {
            let n = int_of(&exact(a0, b)?)?;
            let k = int_of(&exact(args.get(1)?, b)?)?;
            if k < 0 || n < 0 || k > n {
                return Some(BigRational::zero());
            }
            let k = k.min(n - k);
            // Cost grows like k² big-digit steps; 1000 keeps it under a few ms.
            if k > 1000 || !b.spend(k as u64 * 16) {
                return None;
            }
            let mut acc = BigInt::from(1u32);
            for j in 0..k {
                acc = acc * (n - j) / (j + 1);
            }
            Some(BigRational::from_integer(acc))
        }
        Func::Exp if exact(a0, b)?.is_zero() => Some(crate::parse::one()),
        Func::Ln if exact(a0, b)? == crate::parse::one() => Some(BigRational::zero()),
        _ => None,
    }
}

/// Numeric value with the given variable assignment; `None` when something
/// cannot be evaluated (unknown symbol, structure, budget gone).
pub(crate) fn numeric(n: &Node, env: &[(String, f64)], b: &mut Budget) -> Option<Complex64> {
    if !b.spend(1) {
        return None;
    }
    let c = |x: f64| Complex64::new(x, 0.0);
    Some(match n {
        Node::Num(v, _) => c(v.to_f64().unwrap_or(f64::NAN)),
        Node::Sym(s) => c(env.iter().find(|(k, _)| k == s)?.1),
        Node::Const(k) => match k {
            Const::Pi => c(std::f64::consts::PI),
            Const::E => c(std::f64::consts::E),
            Const::I => Complex64::new(0.0, 1.0),
            Const::Inf => c(f64::INFINITY),
        },
        // Adding +0 turns -0.0 parts into +0.0 so branch cuts behave.
        Node::Neg(x) => -numeric(x, env, b)? + c(0.0),
        Node::Add(xs) => {
            let mut acc = c(0.0);
            for x in xs {
                acc += numeric(x, env, b)?;
            }
            acc
        }
        Node::Mul(xs) => {
            let mut acc = c(1.0);
            for x in xs {
                acc *= numeric(x, env, b)?;
            }
            acc
        }
        Node::Div(x, y) => numeric(x, env, b)? / numeric(y, env, b)?,
        Node::Percent(x) => numeric(x, env, b)? / 100.0,
        Node::Pow(x, e) => {
            let base = numeric(x, env, b)?;
            // Only literal exponents are evaluated exactly here: doing it for
            // every level of a power tower would be quadratic.
            let literal = match &**e {
                Node::Num(..) => true,
                Node::Neg(v) => matches!(**v, Node::Num(..)),
                Node::Div(p, q) => matches!((&**p, &**q), (Node::Num(..), Node::Num(..))),
                _ => false,
            };
            if let Some(er) = if literal { exact(e, b) } else { None } {
                if let Some(k) = int_of(&er).filter(|k| k.abs() <= 1 << 20) {
                    return Some(base.powi(k as i32));
                }
                // Odd roots of negative reals stay real.
                if base.im == 0.0 && base.re < 0.0 {
                    if let (Some(p), Some(q)) = (er.numer().to_i64(), er.denom().to_i64()) {
                        if q % 2 == 1 {
                            let mag = (-base.re).powf(p as f64 / q as f64);
                            return Some(c(if p % 2 == 0 { mag } else { -mag }));
                        }
                    }
                }
            }
            let ev = numeric(e, env, b)?;
            if base == c(0.0) {
                return Some(if ev.re > 0.0 { c(0.0) } else { c(f64::NAN) });
            }
            if base.im == 0.0 && base.re > 0.0 && ev.im == 0.0 {
                c(base.re.powf(ev.re))
            } else {
                base.powc(ev)
            }
        }
        Node::Func(f, args) => numeric_func(*f, args, env, b)?,
        _ => return None,
    })
}

/// Largest number of terms a sum or product with numeric bounds adds up.
const MAX_SERIES_TERMS: f64 = 1000.0;

/// `\sum`/`\prod` with args `[k, lo, hi, body]`. Integer bounds (at most
/// [`MAX_SERIES_TERMS`] terms) give the true value. Symbolic bounds (`n-1` at a
/// sample point) give a fixed pseudo-random functional of the bounds and of the
/// body at three index values: equal for the same series written differently
/// (`F_k F_{n-k-1}` or `F_{n-k-1} F_k`), different for different ones; closed
/// forms of such series are not recognised.
fn numeric_series(
    f: Func,
    args: &[Node],
    env: &[(String, f64)],
    b: &mut Budget,
) -> Option<Complex64> {
    let [Node::Sym(k), lo, hi, body] = args else {
        return None;
    };
    let lo = numeric(lo, env, b)?;
    let hi = numeric(hi, env, b)?;
    let mut env2: Vec<(String, f64)> = env.iter().filter(|(n, _)| n != k).cloned().collect();
    env2.push((k.clone(), 0.0));
    let last = env2.len() - 1;
    let at = |x: f64, env2: &mut Vec<(String, f64)>, b: &mut Budget| {
        env2[last].1 = x;
        numeric(body, env2, b)
    };
    let integral = |z: Complex64| z.im == 0.0 && z.re.is_finite() && z.re.fract() == 0.0;
    if integral(lo) && integral(hi) && lo.re.abs() < 1e12 && hi.re - lo.re < MAX_SERIES_TERMS {
        let sum = f == Func::Sum;
        let mut acc = Complex64::new(if sum { 0.0 } else { 1.0 }, 0.0);
        let terms = (hi.re - lo.re + 1.0).max(0.0) as usize;
        for j in 0..terms {
            let v = at(lo.re + j as f64, &mut env2, b)?;
            acc = if sum { acc + v } else { acc * v };
        }
        return Some(acc);
    }
    let (ts, cs, w) = match f {
        Func::Sum => ([0.37, 1.61, 2.93], [0.71, -1.13, 0.53], [0.29, 0.83, 0.11]),
        _ => ([0.43, 1.29, 3.07], [-0.67, 0.41, 1.27], [-0.47, 0.19, 0.61]),
    };
    let mut acc = Complex64::new(w[2], 0.0) + lo * w[0] + hi * w[1];
    for (t, c) in ts.iter().zip(cs) {
        acc += at(*t, &mut env2, b)? * c;
    }
    Some(acc)
}

fn numeric_func(
    f: Func,
    args: &[Node],
    env: &[(String, f64)],
    b: &mut Budget,
) -> Option<Complex64> {
    if matches!(f, Func::Sum | Func::Prod) {
        return numeric_series(f, args, env, b);
    }
    let x = numeric(args.first()?, env, b)?;
    let real = |v: Complex64| v.im.abs() <= 1e-12 * v.re.abs().max(1.0);
    Some(match f {
        Func::Sqrt => {
            if real(x) && x.re >= 0.0 {
                Complex64::new(x.re.sqrt(), 0.0)
            } else if real(x) {
                // Principal root: √-a = i√a, whatever the sign of a zero imaginary part.
                Complex64::new(0.0, (-x.re).sqrt())
            } else {
                x.sqrt()
            }
        }
        Func::Root => {
            let n = numeric(args.get(1)?, env, b)?;
            if real(x) && real(n) && x.re < 0.0 && n.re.fract() == 0.0 && n.re % 2.0 != 0.0 {
                Complex64::new(-(-x.re).powf(1.0 / n.re), 0.0)
            } else {
                x.powc(n.inv())
            }
        }
        Func::Sin => x.sin(),
        Func::Cos => x.cos(),
        Func::Tan => x.tan(),
        Func::Sec => x.cos().inv(),
        Func::Csc => x.sin().inv(),
        Func::Cot => x.tan().inv(),
        Func::Asin => x.asin(),
        Func::Acos => x.acos(),
        Func::Atan => x.atan(),
        Func::Ln => x.ln(),
        Func::Log => x.log10(),
        Func::LogBase => x.ln() / numeric(args.get(1)?, env, b)?.ln(),
        Func::Exp => x.exp(),
        Func::Abs => Complex64::new(x.norm(), 0.0),
        Func::Floor if real(x) => Complex64::new(x.re.floor(), 0.0),
        Func::Ceil if real(x) => Complex64::new(x.re.ceil(), 0.0),
        Func::Fact if real(x) && x.re >= 0.0 && x.re.fract() == 0.0 && x.re <= 170.0 => {
            let mut acc = 1.0;
            let mut k = 2.0;
            while k <= x.re {
                acc *= k;
                k += 1.0;
            }
            Complex64::new(acc, 0.0)
        }
        Func::Binom => {
            let k = numeric(args.get(1)?, env, b)?;
            if !(real(x) && real(k) && k.re.fract() == 0.0 && (0.0..=170.0).contains(&k.re)) {
                return None;
            }
            let mut acc = 1.0;
            let mut j = 0.0;
            while j < k.re {
                acc = acc * (x.re - j) / (j + 1.0);
                j += 1.0;
            }
            Complex64::new(acc, 0.0)
        }
        _ => return None,
    })
}

/// Free variables of an expression (sorted, deduplicated).
pub(crate) fn symbols(n: &Node, out: &mut Vec<String>) {
    match n {
        Node::Sym(s) => {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        Node::Num(..) | Node::Const(_) => {}
        Node::Neg(x) | Node::Percent(x) => symbols(x, out),
        Node::Div(x, y) | Node::Pow(x, y) | Node::PlusMinus(x, y) => {
            symbols(x, out);
            symbols(y, out);
        }
        Node::Interval { lo, hi, .. } => {
            symbols(lo, out);
            symbols(hi, out);
        }
        Node::Add(xs)
        | Node::Mul(xs)
        | Node::Func(_, xs)
        | Node::Paren(xs)
        | Node::Bracket(xs)
        | Node::Set(xs)
        | Node::List(xs)
        | Node::Union(xs)
        | Node::Relation(xs, _) => xs.iter().for_each(|x| symbols(x, out)),
        Node::Matrix(rows) => rows.iter().flatten().for_each(|x| symbols(x, out)),
    }
}

/// Whether an expression mentions ∞.
pub(crate) fn has_inf(n: &Node) -> bool {
    match n {
        Node::Const(Const::Inf) => true,
        Node::Num(..) | Node::Sym(_) | Node::Const(_) => false,
        Node::Neg(x) | Node::Percent(x) => has_inf(x),
        Node::Div(x, y) | Node::Pow(x, y) | Node::PlusMinus(x, y) => has_inf(x) || has_inf(y),
        Node::Add(xs) | Node::Mul(xs) | Node::Func(_, xs) => xs.iter().any(has_inf),
        _ => false,
    }
}

/// Whether a node is a plain scalar expression (no sets, tuples, relations).
pub(crate) fn is_scalar(n: &Node) -> bool {
    match n {
        Node::Num(..) | Node::Sym(_) | Node::Const(_) => true,
        Node::Neg(x) | Node::Percent(x) => is_scalar(x),
        Node::Div(x, y) | Node::Pow(x, y) => is_scalar(x) && is_scalar(y),
        Node::Add(xs) | Node::Mul(xs) | Node::Func(_, xs) => xs.iter().all(is_scalar),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i64, d: i64) -> BigRational {
        BigRational::new(n.into(), d.into())
    }

    #[test]
    fn fast_rational_ops_match_num_rational() {
        let vals = [
            q(3, 4),
            q(-5, 6),
            q(7, 1),
            q(0, 1),
            q(-12, 35),
            q(22, 7),
            q(1, 1000),
        ];
        for a in &vals {
            for c in &vals {
                let mut b = Budget::new();
                assert_eq!(rmul(a, c, &mut b), Some(a * c), "{a} * {c}");
                assert_eq!(radd(a, c, &mut b), Some(a + c), "{a} + {c}");
            }
        }
    }
}
