#!/usr/bin/env python3
"""Generate a *blind* evaluation set for the `aha verify` math-answer verifier.

How this set was made
---------------------
* Written blind: while writing this script the author did NOT read the
  verifier's source, its tests or its data (nothing under crates/aha-reward/,
  no scripts/verify/make_*.py, no *.jsonl under crates/).  The only file this
  script writes under crates/ is crates/aha-reward/tests/data/blind.jsonl.
* Every `expected` label was decided by hand rules (listed below), i.e. by what
  a strict-but-fair human grader of math answers would say.  Labels were never
  taken from (or adjusted to) the verifier's verdicts.
* Phrasing was written by hand as templates imitating the output styles of real
  reasoning models (DeepSeek-R1, R1-Zero, Qwen-Math, Llama, GPT-style markdown,
  Minerva/lighteval "I hope it is correct", GSM8K "####", chatty plain text,
  Chinese and mixed Chinese/English).  Numbers and template choices come from
  a seeded `random.Random(SEED)`, so the output is fully deterministic.
* Python 3 standard library only.  Run:  python3 scripts/verify/make_blind.py

Record format (one JSON object per line)
    {"id", "category", "kind": "response"|"answer", "style", "gold",
     "prediction", "expected"}
`gold` is the reference as a dataset stores it (bare answer, GSM8K solution
ending "#### N", or a MATH solution with \\boxed{}).  `prediction` is a full
model response (kind "response") or only a final answer (kind "answer").

Labelling rules (a strict but fair grader)
------------------------------------------
R1  Only the FINAL answer counts: the last \\boxed{} / <answer> tag / "####" /
    "Final Answer" / "the answer is" statement, after any self-correction.
    A correct value that appears only in the reasoning does not count.
R2  Pure formatting never matters: LaTeX spacing, \\left/\\right, \\dfrac/\\tfrac,
    \\displaystyle, $..$ / \\(..\\) delimiters, a trailing period, thousands
    separators, trailing zeros (2.50 = 2.5), \\text{}/\\textbf{} wrappers,
    Unicode math (√ π × − ½ ² ≤), bold markdown.
R3  Mathematically equal exact values are equal: terminating decimal vs
    fraction (0.375 = 3/8), reordered sums/products, expanded vs factored
    polynomials (questions whose point is the form, e.g. "factor", are not
    used), equivalent radicals / logs / trig identities, 1.2e3 = 1.2x10^3 = 1200.
R4  Approximations of an exact irrational or non-terminating gold are
    rejected (3.14 for \\pi, 1.414 for \\sqrt2, 0.333 for 1/3).  Writing the
    exact value followed by "\\approx 1.414" is accepted (exact value given).
R5  Units: a unit word/symbol attached to the right number is accepted
    ("12 cm", "\\$1,250.00" for 1250).  A different unit that changes the
    number is rejected (gold 120 [minutes], final "2" hours).
R6  Percent: for percentage questions gold "25" accepts "25%", "25\\%",
    "25 percent", and gold "12.5\\%" accepts "12.5".  Percent-vs-decimal-fraction
    pairs (25 vs 0.25) are ambiguous and deliberately NOT included.
R7  Angles: gold in degrees ("30" or "30^\\circ") accepts 30, 30°, 30^\\circ,
    "30 degrees".  A bare degree number for a radian gold, or a radian value
    for a bare degree gold, is rejected (value in the wrong unit).
    Gold "30^\\circ" vs prediction "\\pi/6" is ambiguous and NOT included.
R8  Sets of solutions are order-insensitive; "x=2, x=5", "2 and 5", "\\{5,2\\}"
    are all accepted for gold "2, 5"; a missing or extra element is rejected.
    Ordered pairs/tuples, vectors and matrices are order-sensitive.
    "x=2, y=-1" is accepted for gold "(2, -1)"; a column vector written as
    "(1, -2, 3)" is accepted for the matching pmatrix.
R9  Multiple choice: the correct letter in any common wrapping ("B", "(B)",
    "\\textbf{(B)}", "Option B: 12") is accepted; another letter is rejected.
R10 Equations: a bare-value gold accepts "x = value" / "f(x) = expr"; an
    equation gold accepts the same equation with reordered terms/sides.
    (Gold "y=2x+1" vs bare "2x+1" is ambiguous and NOT included.)
R11 Number words are accepted ("twelve" = 12).
R12 Hedging between different answers ("4 or 6", two competing boxes) is
    rejected; a truncated response with no final answer is rejected; a
    partial answer to a multi-part / multi-solution question is rejected.
R13 Several boxes: the last one counts, unless the text explicitly presents
    the boxes together as the (multi-valued) answer.
R14 Intervals: an equivalent inequality ("-2 < x \\le 3", "x \\ge 1") is
    accepted for an interval gold; endpoint open/closed mistakes are rejected.
"""

import json
import os
import random

SEED = 20240917
rng = random.Random(SEED)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "crates", "aha-reward", "tests", "data", "blind.jsonl")

CASES = []


def add(category, kind, style, gold, prediction, expected):
    CASES.append({"category": category, "kind": kind, "style": style,
                  "gold": gold, "prediction": prediction,
                  "expected": bool(expected)})


# ---------------------------------------------------------------------------
# reasoning filler (no "answer is" phrases, so it never looks like a final)
# ---------------------------------------------------------------------------
OPENERS = [
    "Okay, let's see. I need to work through this problem step by step.",
    "Alright, so the problem is asking me to find a specific value. Let me think.",
    "Hmm, let me start by understanding what's being asked here.",
    "Okay, so I have this problem to solve. Let me read it carefully again.",
    "Let me try to figure this out.",
]
MIDDLES = [
    "First, I'll write down what we know.",
    "Let me set up the relevant quantities.",
    "I'll simplify the expression carefully.",
    "Wait, let me double-check that step.",
    "That seems consistent with the conditions.",
    "Let me verify this with a quick substitution.",
    "Hmm, maybe there's a cleaner way to see this.",
    "Yes, that checks out.",
    "I should be careful with the signs here.",
]
CLOSERS = [
    "I think that's it.",
    "Okay, I'm fairly confident now.",
    "So that should be correct.",
    "Everything is consistent.",
]
ZH_MID = [
    "首先，我们整理一下已知条件。",
    "接下来化简这个式子。",
    "再验证一下计算过程。",
    "注意符号不要出错。",
    "这样就得到了结果。",
]


def arith_line():
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    op = rng.choice(["+", "\\times"])
    v = a + b if op == "+" else a * b
    return rng.choice([
        f"Let me compute {a} {'+' if op == '+' else 'times'} {b}, which is {v}.",
        f"So ${a} {op} {b} = {v}$.",
        f"That gives {a} {'plus' if op == '+' else 'times'} {b} = {v} for this part.",
    ])


def think_text(extra=None, n=None):
    n = n or rng.randint(3, 6)
    lines = [rng.choice(OPENERS)]
    for _ in range(n):
        lines.append(arith_line() if rng.random() < 0.4 else rng.choice(MIDDLES))
    if extra:
        lines.extend(extra)
    lines.append(rng.choice(CLOSERS))
    return "\n\n".join(lines)


def steps_text(n=None):
    n = n or rng.randint(2, 4)
    return "\n\n".join(arith_line() if rng.random() < 0.5 else rng.choice(MIDDLES)
                       for _ in range(n))


def inl(ans, math):
    return f"${ans}$" if math else ans


# ---------------------------------------------------------------------------
# response styles.  `ans` is the final answer exactly as the model writes it;
# `math` says whether it is LaTeX that would sit inside $..$ in running text.
# ---------------------------------------------------------------------------
def st_r1(ans, math=True, think_extra=None):
    think = think_text(think_extra)
    summ = rng.choice([
        "To solve the problem, we proceed step by step.\n\n" + steps_text(),
        "**Solution:**\n\n1. " + rng.choice(MIDDLES) + "\n2. " + arith_line(),
        steps_text(),
    ])
    fin = rng.choice([
        "**Final Answer**\n\\[\n\\boxed{%s}\n\\]",
        "**Final Answer**\nThe result is \\boxed{%s}.",
        "Therefore, the answer is $\\boxed{%s}$.",
        "\\[\n\\boxed{%s}\n\\]",
    ]) % ans
    return f"<think>\n{think}\n</think>\n\n{summ}\n\n{fin}"


def st_r1zero(ans, math=True, think_extra=None):
    think = think_text(think_extra).replace("\n\n", " ")
    inner = rng.choice([ans, "\\boxed{%s}" % ans]) if math else ans
    return f"<think> {think} </think> <answer> {inner} </answer>"


def st_qwen(ans, math=True, think_extra=None):
    fin = rng.choice([
        "Therefore, the final answer is $\\boxed{%s}$.",
        "The final answer is $\\boxed{%s}$.",
        "Thus, the answer is \\(\\boxed{%s}\\).",
    ]) % ans
    return f"{steps_text()}\n\n{fin}"


def st_llama(ans, math=True, think_extra=None):
    parts = []
    for i in range(1, rng.randint(3, 5)):
        parts.append(f"## Step {i}: {rng.choice(['Understand the problem', 'Set up the equation', 'Simplify', 'Compute the value', 'Check the result'])}\n{rng.choice(MIDDLES)} {arith_line()}")
    return "\n\n".join(parts) + f"\n\nThe final answer is: $\\boxed{{{ans}}}$"


def st_gpt(ans, math=True, think_extra=None):
    a = inl(ans, math)
    fin = rng.choice([
        "**Answer:** %s",
        "**Final answer:** %s",
        "### Answer\n\n**%s**",
        "---\n\n**Answer: %s**",
    ]) % a
    return f"### Solution\n\n{steps_text()}\n\n{fin}"


def st_minerva(ans, math=True, think_extra=None):
    return (f"{steps_text()}\n\nFinal Answer: The final answer is ${ans}$. "
            "I hope it is correct.")


def st_plain(ans, math=True, think_extra=None):
    a = inl(ans, math)
    fin = rng.choice([
        "So the answer is %s.",
        "So, the answer is %s. Let me know if you have any other questions!",
        "Putting it all together, the final answer is %s. Hope this helps!",
        "That means the answer is %s. 😊",
    ]) % a
    return f"{steps_text()}\n\n{fin}"


def st_gsm(ans, math=True, think_extra=None):
    return f"{steps_text()}\n#### {ans}"


def st_zh(ans, math=True, think_extra=None):
    body = "解：" + "".join(rng.sample(ZH_MID, 3))
    fin = rng.choice([
        "因此，答案是 $\\boxed{%s}$。",
        "所以最终答案为 $\\boxed{%s}$。",
        "**答案：** $\\boxed{%s}$",
    ]) % ans
    return f"{body}\n\n{fin}"


def st_mixed(ans, math=True, think_extra=None):
    think = ("嗯，这道题需要仔细算一下。" + arith_line() + " 对，" +
             rng.choice(ZH_MID) + " Let me double-check... " + rng.choice(MIDDLES))
    if think_extra:
        think += "\n\n" + "\n\n".join(think_extra)
    fin = rng.choice([
        "所以答案是 \\(\\boxed{%s}\\)。",
        "**Final Answer**\n\n最终答案：$\\boxed{%s}$",
        "综上所述, the answer is $\\boxed{%s}$.",
    ]) % ans
    return f"<think>\n{think}\n</think>\n\n{fin}"


def st_mathsol(ans, math=True, think_extra=None):
    return (f"{rng.choice(MIDDLES)} {arith_line()} "
            f"{rng.choice(['Therefore', 'Hence', 'So'])}, the answer is $\\boxed{{{ans}}}$.")


STYLES = {
    "r1": st_r1, "r1zero": st_r1zero, "qwen": st_qwen, "llama": st_llama,
    "gpt_md": st_gpt, "minerva": st_minerva, "plain": st_plain,
    "gsm8k": st_gsm, "chinese": st_zh, "mixed_zh_en": st_mixed,
    "math_solution": st_mathsol,
}
BOX_STYLES = ["r1", "r1zero", "qwen", "llama", "chinese", "mixed_zh_en",
              "math_solution"]
ALL_STYLES = list(STYLES)
TEXT_STYLES = ["r1zero", "gpt_md", "plain", "minerva"]  # no \boxed around answer


def emit(category, gold, variants, styles=None, answer_prob=0.3):
    """variants: list of (prediction_answer, expected, math_flag)."""
    for v in variants:
        ans, exp = v[0], v[1]
        math = v[2] if len(v) > 2 else True
        if rng.random() < answer_prob:
            add(category, "answer", "bare", gold, ans, exp)
        else:
            pool = styles or BOX_STYLES + ["gpt_md", "minerva", "plain"]
            if not math:  # plain-text answers never go inside $..$
                pool = [s for s in pool if s != "minerva"] or ["plain"]
            style = rng.choice(pool)
            add(category, "response", style, gold, STYLES[style](ans, math), exp)


# ===========================================================================
# 1. integers across every response style
# ===========================================================================
for style in ALL_STYLES:
    for k in range(5):
        g = rng.randint(2, 999)
        if k < 3:
            pred, exp = str(g), True
        elif k == 3:
            pred, exp = str(g + rng.choice([-1, 1])), False      # off by one
        else:
            pred, exp = str(-g), False                            # wrong sign
        add("integer_style", "response", style, str(g),
            STYLES[style](pred, True), exp)
# negative golds
for _ in range(4):
    g = -rng.randint(2, 60)
    sname = rng.choice(BOX_STYLES)
    add("integer_style", "response", sname, str(g), STYLES[sname](str(g), True), True)
    add("integer_style", "response", "qwen", str(g), st_qwen(str(-g)), False)

# ===========================================================================
# 2. fractions / decimals
# ===========================================================================
for num, den in [(3, 4), (5, 8), (2, 5), (7, 20), (1, 8)]:
    g = f"\\frac{{{num}}}{{{den}}}"
    dec = repr(num / den)  # terminating decimal, exact
    emit("fraction", g, [
        (f"{num}/{den}", True),
        (dec, True),
        (f"\\dfrac{{{num}}}{{{den}}}", True),
        (f"\\frac{{{den}}}{{{num}}}", False),                    # inverted
        (f"\\frac{{{num}}}{{{den + 1}}}", False),
    ])
for num, den in [(1, 3), (2, 7), (5, 6)]:
    g = f"\\frac{{{num}}}{{{den}}}"
    emit("fraction", g, [
        (f"\\frac{{{2 * num}}}{{{2 * den}}}", True),             # unreduced, equal
        (f"{num / den:.3f}", False),                               # rounded (R4)
    ])
emit("fraction", "-\\frac{2}{3}", [("\\frac{-2}{3}", True), ("-2/3", True),
                                    ("\\frac{2}{3}", False)])
emit("fraction", "2.5", [("2.50", True), ("\\frac{5}{2}", True), ("2\\frac{1}{2}", True),
                          ("25", False), ("0.25", False)])
emit("fraction", "0.125", [("\\frac{1}{8}", True), (".125", True), ("0.12", False)])

# ===========================================================================
# 3. number words (R11)
# ===========================================================================
WORDS = {12: "twelve", 25: "twenty-five", 100: "one hundred", 7: "seven",
         40: "forty", 18: "eighteen"}
for n, w in WORDS.items():
    emit("number_words", str(n), [(w, True, False)],
         styles=["plain", "gpt_md", "r1zero"], answer_prob=0.4)
emit("number_words", "12", [("Twelve", True, False), ("thirteen", False, False),
                            ("\\text{twelve}", True)], styles=["plain", "gpt_md"])
emit("number_words", "40", [("fourteen", False, False)], styles=["plain"])
emit("number_words", "\\frac{1}{2}", [("one half", True, False)], styles=["plain"])

# ===========================================================================
# 4. percent (R6)
# ===========================================================================
for _ in range(4):
    p = rng.choice([x for x in range(3, 96) if x != 50])   # 100-p must differ from p
    emit("percent", str(p), [
        (f"{p}\\%", True), (f"{p}%", True, False),
        (f"{p} percent", True, False),
        (f"{100 - p}\\%", False),                                 # complement
    ])
emit("percent", "12.5\\%", [("12.5", True), ("12.5\\%", True), ("1.25\\%", False)])
emit("percent", "40", [("4\\%", False), ("40\\%", True)])

# ===========================================================================
# 5. money (R5)
# ===========================================================================
for _ in range(3):
    v = rng.randint(1001, 9999)
    s = f"{v:,}"
    emit("money", str(v), [
        (f"\\${s}.00", True, False), (f"\\${s}", True, False),
        (f"{v} dollars", True, False),
        (f"\\${v + rng.choice([-10, 10, 100])}", False, False),
    ], styles=["gpt_md", "plain", "r1", "qwen"])
emit("money", "12.5", [("\\$12.50", True, False), ("12.50", True), ("\\$1.25", False, False),
                        ("\\$12.05", False, False)], styles=["gpt_md", "plain", "r1"])
emit("money", "1250", [("1{,}250", True), ("\\$125.00", False, False)],
     styles=["r1", "plain"])

# ===========================================================================
# 6. times / dates / days
# ===========================================================================
emit("time_date", "\\text{Tuesday}", [("\\text{Tuesday}", True), ("Tuesday", True, False),
                                       ("\\textbf{Tuesday}", True), ("\\text{Wednesday}", False),
                                       ("Thursday", False, False)])
emit("time_date", "10:30", [("10:30", True), ("10:30", True, False),
                             ("10:03", False), ("11:30", False, False)])
emit("time_date", "\\text{March 15}", [("\\text{March 15}", True), ("March 15", True, False),
                                        ("March 16", False, False)])
emit("time_date", "2024", [("2024", True), ("\\mathbf{2024}", True),
                            ("2025", False)])
emit("time_date", "6:45", [("6:45", True), ("6:54", False)])

# ===========================================================================
# 7. units (R5)
# ===========================================================================
for unit_tex, unit_txt in [("\\text{ cm}", "cm"), ("\\text{ meters}", "meters"),
                           ("\\,\\mathrm{kg}", "kg"), ("\\text{ cm}^2", "square cm")]:
    v = rng.randint(5, 300)
    emit("units", str(v), [(f"{v}{unit_tex}", True), (f"{v} {unit_txt}", True, False),
                           (f"{v + 1}{unit_tex}", False)])
# unit mismatch that changes the number (gold in minutes / metres / cents)
add("units", "response", "r1", "120",
    st_r1("2", think_extra=["The trip takes 120 minutes, which is 2 hours."]), False)
add("units", "response", "gpt_md", "120", st_gpt("2 \\text{ hours}"), False)
add("units", "response", "qwen", "1500", st_qwen("1.5"), False)
add("units", "response", "plain", "350", st_plain("3.5 dollars", False), False)
add("units", "response", "r1", "45", st_r1("45 \\text{ minutes}"), True)
add("units", "answer", "bare", "2.5", "2.5\\text{ km}", True)

# ===========================================================================
# 8. scientific notation (R3)
# ===========================================================================
emit("scientific", "1200", [("1.2\\times10^3", True), ("1.2e3", True, False),
                             ("1.2 \\times 10^{3}", True), ("12 \\times 10^2", True),
                             ("1.2\\times10^4", False), ("120", False)])
emit("scientific", "3.5\\times 10^{-4}", [("0.00035", True), ("3.5e-4", True, False),
                                           ("3.5\\times10^{4}", False),
                                           ("3.5 \\cdot 10^{-4}", True)])
emit("scientific", "6.02\\times10^{23}", [("6.02 \\times 10^{23}", True),
                                           ("6.02e23", True, False),
                                           ("6.02\\times10^{22}", False)])
emit("scientific", "45000", [("4.5\\times 10^4", True), ("4.5E+04", True, False),
                              ("4.5\\times10^3", False)])

# ===========================================================================
# 9. intervals and inequalities (R14)
# ===========================================================================
emit("interval", "(-2, 3]", [("(-2,3]", True), ("\\left(-2, 3\\right]", True),
                              ("-2 < x \\leq 3", True), ("x \\in (-2, 3]", True),
                              ("[-2,3]", False), ("(-2, 3)", False), ("(-3, 2]", False)])
emit("interval", "[1, \\infty)", [("[1,\\infty)", True), ("x \\ge 1", True),
                                   ("[1, +\\infty)", True), ("(1, \\infty)", False),
                                   ("x > 1", False)])
emit("interval", "(-\\infty, -1) \\cup (2, \\infty)", [
    ("(-\\infty,-1)\\cup(2,\\infty)", True), ("(2, \\infty) \\cup (-\\infty, -1)", True),
    ("x < -1 \\text{ or } x > 2", True), ("(-1, 2)", False),
    ("(-\\infty, -1] \\cup [2, \\infty)", False)])
emit("interval", "[0, 4]", [("0 \\le x \\le 4", True), ("[0,4]", True), ("(0, 4)", False)])

# ===========================================================================
# 10. sets / lists of solutions (R8, R12)
# ===========================================================================
for _ in range(4):
    a, b = sorted(rng.sample(range(-9, 13), 2))
    g = f"{a}, {b}"
    emit("set_list", g, [
        (f"{b}, {a}", True), (f"\\{{{b}, {a}\\}}", True),
        (f"x = {a} \\text{{ or }} x = {b}", True),
        (f"{a}", False),                                          # partial
        (f"{a}, {b}, {b + 3}", False),                            # extra element
    ], answer_prob=0.35)
emit("set_list", "1, 2, 3", [("3, 2, 1", True), ("\\{1,2,3\\}", True), ("1, 2", False)])
emit("set_list", "\\{-3, 4\\}", [("x_1 = -3, x_2 = 4", True), ("4, -3", True),
                                  ("3, -4", False)])

# ===========================================================================
# 11. ordered tuples / coordinates (R8)
# ===========================================================================
for _ in range(3):
    a, b = rng.randint(-9, 9), rng.randint(-9, 9)
    while a == b or a == -b or a == 0 or b == 0:
        a, b = rng.randint(-9, 9), rng.randint(-9, 9)
    g = f"({a}, {b})"
    emit("tuple", g, [
        (f"({a},{b})", True), (f"\\left( {a}, \\, {b} \\right)", True),
        (f"x = {a}, y = {b}", True),
        (f"({b}, {a})", False), (f"({a}, {-b})", False),
    ])
emit("tuple", "(1, 2, 3)", [("(1,2,3)", True), ("(3, 2, 1)", False), ("(1, 2)", False)])

# ===========================================================================
# 12. matrices / 13. vectors (R8)
# ===========================================================================
emit("matrix", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", [
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}", True),
    ("\\left[\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}\\right]", True),
    ("\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", False),
    ("\\begin{pmatrix} 1 & -2 \\\\ 3 & 4 \\end{pmatrix}", False),
], answer_prob=0.2)
emit("matrix", "\\begin{pmatrix} -1 & 0 \\\\ 5 & \\frac{1}{2} \\end{pmatrix}", [
    ("\\begin{pmatrix} -1 & 0 \\\\ 5 & 0.5 \\end{pmatrix}", True),
    ("\\begin{pmatrix} -1 & 0 \\\\ 5 & \\dfrac{1}{2} \\end{pmatrix}", True),
    ("\\begin{pmatrix} -1 & 5 \\\\ 0 & \\frac{1}{2} \\end{pmatrix}", False),
    ("\\begin{pmatrix} 1 & 0 \\\\ 5 & \\frac{1}{2} \\end{pmatrix}", False),
], answer_prob=0.2)
emit("vector", "\\begin{pmatrix} 1 \\\\ -2 \\\\ 3 \\end{pmatrix}", [
    ("\\begin{pmatrix}1\\\\-2\\\\3\\end{pmatrix}", True),
    ("\\begin{bmatrix} 1 \\\\ -2 \\\\ 3 \\end{bmatrix}", True),
    ("(1, -2, 3)", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\\\ 3 \\end{pmatrix}", False),
    ("\\begin{pmatrix} -1 \\\\ 2 \\\\ -3 \\end{pmatrix}", False),
    ("\\begin{pmatrix} 3 \\\\ -2 \\\\ 1 \\end{pmatrix}", False),
], answer_prob=0.2)
emit("vector", "\\begin{pmatrix} \\frac{3}{5} \\\\ \\frac{4}{5} \\end{pmatrix}", [
    ("\\begin{pmatrix} 0.6 \\\\ 0.8 \\end{pmatrix}", True),
    ("\\begin{pmatrix} 3/5 \\\\ 4/5 \\end{pmatrix}", True),
    ("\\begin{pmatrix} \\frac{4}{5} \\\\ \\frac{3}{5} \\end{pmatrix}", False),
], answer_prob=0.2)

# ===========================================================================
# 14. complex numbers
# ===========================================================================
for _ in range(3):
    a, b = rng.sample(range(1, 10), 2)
    g = f"{a}+{b}i"
    emit("complex", g, [
        (f"{b}i+{a}", True), (f"{a} + {b}\\,i", True), (f"{a}+{b}\\mathrm{{i}}", True),
        (f"{a}-{b}i", False), (f"{b}+{a}i", False),
    ], answer_prob=0.3)
emit("complex", "-1 - i", [("-i - 1", True), ("-1+i", False), ("1 - i", False)])
emit("complex", "\\frac{1}{2} + \\frac{\\sqrt{3}}{2}i", [
    ("\\frac{1+i\\sqrt{3}}{2}", True), ("\\frac12 - \\frac{\\sqrt3}{2} i", False)])

# ===========================================================================
# 15. symbolic expressions (R3)
# ===========================================================================
emit("expression", "x^2+1", [("1+x^2", True), ("x^{2} + 1", True), ("x^2-1", False)])
emit("expression", "x^2+2x+1", [("(x+1)^2", True), ("(x-1)^2", False)])
emit("expression", "(x-2)(x+3)", [("x^2+x-6", True), ("(x+3)(x-2)", True),
                                   ("(x+2)(x-3)", False)])
emit("expression", "\\frac{x+1}{x-1}", [("\\frac{1+x}{x-1}", True),
                                         ("\\frac{x-1}{x+1}", False)])
emit("expression", "2a+3b", [("3b+2a", True), ("2a-3b", False)])
emit("expression", "3x^2-4x", [("x(3x-4)", True), ("3x^2+4x", False)])
emit("expression", "\\frac{n(n+1)}{2}", [("\\frac{n^2+n}{2}", True),
                                          ("\\frac{n(n-1)}{2}", False)])
emit("expression", "2^{n}-1", [("2^n - 1", True), ("2^{n-1}", False)])
emit("expression", "6x^5", [("6x^{5}", True), ("5x^6", False), ("6x^4", False)])

# ===========================================================================
# 16. radicals / logs / trig (R3)
# ===========================================================================
emit("radical_log_trig", "2\\sqrt{2}", [("\\sqrt{8}", True), ("2\\sqrt2", True),
                                         ("\\sqrt{2}", False), ("4\\sqrt{2}", False)])
emit("radical_log_trig", "\\frac{\\sqrt{2}}{2}", [("\\frac{1}{\\sqrt{2}}", True),
                                                    ("\\frac{\\sqrt{3}}{2}", False)])
emit("radical_log_trig", "3\\sqrt{5}", [("\\sqrt{45}", True), ("5\\sqrt{3}", False)])
emit("radical_log_trig", "\\ln 4", [("2\\ln 2", True), ("\\ln 2", False)])
emit("radical_log_trig", "\\log_2 3", [("\\frac{\\ln 3}{\\ln 2}", True),
                                        ("\\log_3 2", False)])
emit("radical_log_trig", "\\sin 2x", [("2\\sin x\\cos x", True), ("2\\sin x", False)])
emit("radical_log_trig", "\\cos 2x", [("\\cos^2 x - \\sin^2 x", True),
                                       ("1 - 2\\sin^2 x", True), ("\\sin^2 x - \\cos^2 x", False)])
emit("radical_log_trig", "\\frac{\\pi}{3}", [("\\pi/3", True), ("\\frac{2\\pi}{3}", False)])
emit("radical_log_trig", "5+2\\sqrt{6}", [("(\\sqrt{2}+\\sqrt{3})^2", True),
                                           ("5-2\\sqrt{6}", False)])

# ===========================================================================
# 17. angles, degrees vs radians (R7)
# ===========================================================================
emit("angle", "30^\\circ", [("30", True), ("30^{\\circ}", True), ("30°", True, False),
                             ("30 degrees", True, False), ("60^\\circ", False)])
emit("angle", "135", [("135^\\circ", True), ("135°", True, False), ("45^\\circ", False)])
emit("angle", "30", [("\\frac{\\pi}{6}", False)])
emit("angle", "\\frac{\\pi}{4}", [("\\frac{\\pi}{4}", True), ("45", False),
                                   ("\\frac{\\pi}{2}", False)])

# ===========================================================================
# 18. multiple choice (R9)
# ===========================================================================
for gl in ["B", "\\text{(B)}", "(B)"]:
    emit("multiple_choice", gl, [("B", True), ("(B)", True), ("\\textbf{(B)}", True),
                                  ("C", False)], answer_prob=0.25)
emit("multiple_choice", "D", [("Option D: 12", True, False), ("\\text{(D) } 12", True),
                               ("(A)", False)], styles=["gpt_md", "plain", "r1"])
add("multiple_choice", "response", "plain", "B",
    st_plain("(B) or (C)", False), False)
add("multiple_choice", "response", "gpt_md", "C",
    "### Solution\n\n" + steps_text() + "\n\n**Answer: (C) $\\frac{3}{4}$**", True)

# ===========================================================================
# 19. equations as answers (R10)
# ===========================================================================
emit("equation", "5", [("x = 5", True), ("x=-5", False)])
emit("equation", "2x+1", [("f(x) = 2x+1", True), ("f(x) = 2x-1", False)])
emit("equation", "y = 2x + 1", [("y=2x+1", True), ("y = 1 + 2x", True),
                                 ("y = 2x - 1", False), ("y = x + 1", False)])
emit("equation", "x^2 + y^2 = 25", [("x^2+y^2=25", True), ("y^2 + x^2 = 25", True),
                                     ("x^2 + y^2 = 5", False)])
emit("equation", "-\\frac{1}{3}", [("k = -\\frac{1}{3}", True), ("k = \\frac{1}{3}", False)])

# ===========================================================================
# 20. approximations (R4)
# ===========================================================================
emit("approx", "\\pi", [("3.14", False), ("\\approx 3.1416", False), ("\\pi", True)])
emit("approx", "\\sqrt{2}", [("1.414", False), ("\\sqrt{2} \\approx 1.414", True)])
emit("approx", "\\frac{1}{3}", [("0.333", False), ("0.33", False)])
emit("approx", "\\frac{3}{8}", [("0.375", True)])
emit("approx", "e^2", [("7.389", False), ("e^{2}", True)])
emit("approx", "\\frac{22}{7}", [("3.14", False), ("\\frac{22}{7}", True)])
emit("approx", "2\\sqrt{3}", [("3.46", False), ("\\sqrt{12}", True)])

# ===========================================================================
# 21. Unicode math (R2)
# ===========================================================================
emit("unicode", "\\sqrt{2}", [("√2", True, False), ("√3", False, False)],
     styles=["plain", "gpt_md", "r1zero"])
emit("unicode", "\\frac{\\pi}{2}", [("π/2", True, False), ("2π", False, False)],
     styles=["plain", "gpt_md"])
emit("unicode", "-3", [("−3", True, False), ("3", False, False)], styles=["plain", "gpt_md"])
emit("unicode", "\\frac{1}{2}", [("½", True, False), ("¼", False, False)],
     styles=["plain", "gpt_md"])
emit("unicode", "30000", [("3 × 10^4", True, False), ("3 × 10^5", False, False)],
     styles=["plain", "gpt_md"])
emit("unicode", "2\\sqrt{3}", [("2√3", True, False)], styles=["plain"])
emit("unicode", "x^2+1", [("x² + 1", True, False), ("x² − 1", False, False)],
     styles=["plain", "gpt_md"])
emit("unicode", "(-2, 3]", [("−2 < x ≤ 3", True, False)], styles=["plain"])

# ===========================================================================
# 22. LaTeX formatting (R2)
# ===========================================================================
emit("latex_format", "\\frac{3}{4}", [
    ("\\dfrac{3}{4}", True), ("\\tfrac34", True), ("\\displaystyle \\frac{3}{4}", True),
    ("\\frac34", True), ("{\\frac{3}{4}}", True), ("\\left(\\frac{3}{4}\\right)", True),
    ("\\frac{4}{3}", False), ("\\dfrac{3}{5}", False)])
emit("latex_format", "-\\frac{1}{2}", [("\\frac{-1}{2}", True), ("-\\dfrac12", True),
                                        ("\\frac{1}{2}", False)])
emit("latex_format", "10", [("10\\,", True), ("\\mathbf{10}", True), ("10.", True),
                             ("\\text{10}", True), ("100", False)])
add("latex_format", "response", "qwen", "7",
    steps_text() + "\n\nThe final answer is $\\boxed{ \\; 7 \\; }$.", True)
add("latex_format", "response", "r1", "\\frac{1}{6}",
    "<think>\n" + think_text() + "\n</think>\n\nSo the probability is \\boxed{\\frac{1}{6}}.", True)

# ===========================================================================
# 23. nested / several boxes (R13)
# ===========================================================================
add("boxes", "response", "r1", "\\frac{\\sqrt{3}}{2}",
    st_r1("\\frac{\\sqrt{3}}{2}"), True)
add("boxes", "response", "qwen", "\\{1, 2\\}",
    st_qwen("\\left\\{ 1, 2 \\right\\}"), True)
add("boxes", "response", "llama", "\\frac{2^{10}}{3}", st_llama("\\frac{2^{10}}{3}"), True)
add("boxes", "response", "r1", "\\frac{2^{10}}{3}", st_r1("\\frac{2^{9}}{3}"), False)
for _ in range(3):
    a = rng.randint(3, 50)
    b = a + rng.randint(2, 20)
    body = (f"We first find the number of pairs, $\\boxed{{{a}}}$, and then add the singles.\n\n"
            f"{steps_text()}\n\nSo the total is $\\boxed{{{b}}}$.")
    add("boxes", "response", "math_solution", str(b), body, True)
    add("boxes", "response", "math_solution", str(a), body, False)
a, b = 2, 5
add("boxes", "response", "qwen", "2, 5",
    steps_text() + "\n\nThe solutions are $\\boxed{2}$ and $\\boxed{5}$.", True)
add("boxes", "response", "qwen", "2, 5",
    steps_text() + "\n\nSo $x = \\boxed{2}$ or $x = \\boxed{5}$.", True)
add("boxes", "response", "r1", "\\frac{1}{2}, \\frac{3}{2}",
    st_r1("\\left\\{\\frac{1}{2},\\, \\frac{3}{2}\\right\\}"), True)
add("boxes", "response", "qwen", "(3, 4)",
    steps_text() + "\n\nThe point is $\\boxed{(3, 4)}$.", True)

# ===========================================================================
# 24. revised answers (R1)
# ===========================================================================
for _ in range(4):
    w = rng.randint(10, 90)
    r = w + rng.choice([2, 3, 5, -4])
    body = (f"{steps_text()}\n\nSo the answer is {w}.\n\nWait, I made an error in the "
            f"second step: I forgot to include the last group. Let me redo it.\n\n"
            f"{arith_line()}\n\nSo the correct answer is $\\boxed{{{r}}}$.")
    add("revision", "response", "qwen", str(r), body, True)
    add("revision", "response", "qwen", str(w), body, False)
for _ in range(2):
    w = rng.randint(10, 90)
    r = w * 2
    think = think_text([f"So the result is {w}.",
                        f"Hmm, wait. Each term is counted twice, so it should be {r}."])
    body = f"<think>\n{think}\n</think>\n\nThe total count is $\\boxed{{{r}}}$."
    add("revision", "response", "r1", str(r), body, True)
    add("revision", "response", "r1", str(w), body, False)
# think concludes one value, summary states the corrected one
add("revision", "response", "r1", "24",
    "<think>\nLet me count: 4 rows of 6, so 24. Actually I first wrote 20 but that skips a row.\n</think>\n\nThere are 4 rows with 6 seats each, so the answer is $\\boxed{24}$.", True)

# ===========================================================================
# 25. hedging (R12)
# ===========================================================================
for _ in range(3):
    a = rng.randint(2, 40)
    b = a + rng.randint(1, 6)
    add("hedge", "response", "plain", str(a),
        steps_text() + f"\n\nSo the answer is either {a} or {b}, depending on whether the endpoint is included.", False)
    add("hedge", "response", "qwen", str(a),
        steps_text() + f"\n\nThe answer is $\\boxed{{{a}}}$ or $\\boxed{{{b}}}$.", False)
add("hedge", "response", "r1", "16",
    "<think>\nIt could be 16 or 18. Checking the constraint again rules out 18.\n</think>\n\nIt might look like 18 at first, but the constraint rules it out, so I'll go with $\\boxed{16}$.", True)
add("hedge", "response", "gpt_md", "\\frac{1}{2}",
    "### Solution\n\n" + steps_text() + "\n\n**Answer:** $\\frac{1}{2}$ (or possibly $\\frac{1}{4}$ if the draws are without replacement)", False)

# ===========================================================================
# 26. correct value only mid-reasoning (R1)
# ===========================================================================
for _ in range(5):
    g = rng.randint(10, 200)
    w = g + rng.choice([-3, -1, 1, 2, 10])
    style = rng.choice(["r1", "mixed_zh_en"])
    extra = [f"Maybe the value is {g}? Let me check that.",
             f"No, that misses a case; recounting gives {w}."]
    add("mid_reasoning", "response", style, str(g), STYLES[style](str(w), True, extra), False)
add("mid_reasoning", "response", "llama", "\\frac{5}{12}",
    "## Step 1: Compute the probability\nThe probability of the first event is $\\frac{5}{12}$.\n\n## Step 2: Complement\nWe need the complement, $1-\\frac{5}{12}$.\n\nThe final answer is: $\\boxed{\\frac{7}{12}}$", False)
add("mid_reasoning", "response", "gpt_md", "36",
    "### Solution\n\nThe area of the square is 36.\nThe perimeter is 24.\n\n**Answer:** 24", False)

# ===========================================================================
# 27. truncated responses (R12)
# ===========================================================================
for _ in range(5):
    g = rng.randint(10, 500)
    think = think_text([f"So far the running total is {g}, and I still need to account for the"])
    think = think.rsplit("\n\n", 1)[0]  # drop closer: cut mid-sentence
    add("truncated", "response", "r1", str(g), f"<think>\n{think}", False)
add("truncated", "response", "qwen", "42",
    "Let's compute step by step.\n\nFirst, $6 \\times 7 = 42$. Next we subtract the number of", False)
add("truncated", "response", "llama", "\\frac{3}{4}",
    "## Step 1: Set up\nThe probability is $\\frac{3}{4}$ of the remaining\n\n## Step 2: Compute the", False)
add("truncated", "response", "r1zero", "12",
    "<think> There are 12 apples initially, then the baskets", False)
add("truncated", "response", "mixed_zh_en", "9",
    "<think>\n嗯，先算 3 乘以 3 等于 9。然后还要考虑", False)

# ===========================================================================
# 28. GSM8K gold ("#### N")
# ===========================================================================
NAMES = ["Natalia", "James", "Maria", "Tom", "Aisha", "Wei", "Carlos", "Priya"]
for _ in range(10):
    nm = rng.choice(NAMES)
    a, b, c = rng.randint(5, 60), rng.randint(2, 9), rng.randint(3, 12)
    bc = b * c
    t = a + bc
    gold = (f"{nm} buys {b}*{c} = <<{b}*{c}={bc}>>{bc} apples.\n"
            f"So {nm} has {a}+{bc} = <<{a}+{bc}={t}>>{t} apples in total.\n#### {t}")
    reasoning = [f"{nm} buys {b} bags with {c} apples each, so {b} × {c} = {bc}.",
                 f"Adding the {a} apples {nm} already had: {a} + {bc} = {t}."]
    k = rng.random()
    style = rng.choice(["r1", "gsm8k", "plain", "gpt_md", "qwen", "chinese", "llama"])
    if k < 0.55:
        pred, exp = str(t), True
    elif k < 0.8:
        pred, exp = str(bc), False         # forgot the initial apples
    else:
        pred, exp = str(t + 1), False
    fn = STYLES[style]
    resp = fn(pred, True, reasoning) if style in ("r1",) else fn(pred, True)
    add("gsm8k_gold", "response", style, gold, resp, exp)
    if rng.random() < 0.5:
        add("gsm8k_gold", "answer", "bare", gold, str(t), True)
gold = "Each week she saves 15*4 = <<15*4=60>>60 dollars.\nIn a year: 60*52 = <<60*52=3120>>3120 dollars.\n#### 3120"
add("gsm8k_gold", "response", "gpt_md", gold, st_gpt("\\$3,120", False), True)
add("gsm8k_gold", "response", "plain", gold, st_plain("$3,120.00", False), True)
add("gsm8k_gold", "response", "gsm8k", gold, st_gsm("3,120"), True)
add("gsm8k_gold", "response", "gsm8k", gold, st_gsm("312"), False)

# ===========================================================================
# 29. MATH-style solution gold with \boxed{}
# ===========================================================================
MATH_GOLDS = [
    ("We rationalize: $\\frac{3}{\\sqrt{12}} = \\frac{3}{2\\sqrt3} = \\boxed{\\frac{\\sqrt{3}}{2}}$.",
     "\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{3}"),
    ("Completing the square, the center is $\\boxed{(2, -3)}$.", "(2,-3)", "(-2, 3)"),
    ("By Vieta, the sum of the roots is $-\\frac{b}{a} = \\boxed{\\frac{7}{2}}$.",
     "\\frac{7}{2}", "-\\frac{7}{2}"),
    ("The inequality holds for $x \\in \\boxed{[-1, 5)}$.", "[-1,5)", "[-1,5]"),
    ("Thus the remainder is $\\boxed{3}$.", "3", "4"),
    ("The number of ways is $\\binom{6}{2} = \\boxed{15}$.", "15", "30"),
    ("So $f^{-1}(x) = \\boxed{\\frac{x-3}{2}}$.", "\\frac{x-3}{2}", "\\frac{x+3}{2}"),
]
for sol, right, wrong in MATH_GOLDS:
    s1, s2 = rng.sample(["r1", "qwen", "llama", "minerva", "r1zero", "mixed_zh_en"], 2)
    add("math_solution_gold", "response", s1, sol, STYLES[s1](right, True), True)
    add("math_solution_gold", "response", s2, sol, STYLES[s2](wrong, True), False)
add("math_solution_gold", "answer", "bare",
    "Hence the answer is $\\boxed{\\dfrac{1}{\\sqrt{2}}}$.", "\\frac{\\sqrt{2}}{2}", True)

# ===========================================================================
# 30. Chinese / mixed-language final statements
# ===========================================================================
for _ in range(3):
    g = rng.randint(5, 300)
    add("chinese", "response", "chinese", str(g),
        "解：" + "".join(rng.sample(ZH_MID, 3)) + f"\n\n答：一共需要 {g} 元。", True)
    add("chinese", "response", "chinese", str(g),
        "解：" + "".join(rng.sample(ZH_MID, 3)) + f"\n\n最终答案：{g + rng.choice([1, 2, -1])}", False)
add("chinese", "response", "mixed_zh_en", "\\frac{2}{3}",
    "<think>\n好的，我需要计算概率。Total outcomes = 9, favorable = 6，所以是 6/9。\n</think>\n\n化简后得到 $\\boxed{\\dfrac{2}{3}}$。", True)
add("chinese", "response", "mixed_zh_en", "\\frac{2}{3}",
    "<think>\n好的，favorable = 6, total = 9... 等等，应该是 total = 10。\n</think>\n\n所以概率为 $\\boxed{\\frac{3}{5}}$。", False)
add("chinese", "response", "chinese", "(1, -2)",
    "解方程组得 $x=1$，$y=-2$。\n\n所以交点坐标为 $\\boxed{(1,-2)}$。", True)
add("chinese", "response", "chinese", "(1, -2)",
    "解方程组得 $x=1$，$y=-2$。\n\n所以交点坐标为 $\\boxed{(-2,1)}$。", False)

# ===========================================================================
# 31. markdown tables
# ===========================================================================
for _ in range(3):
    a, b, c = rng.randint(3, 30), rng.randint(3, 30), rng.randint(3, 30)
    tot = a + b + c
    table = ("| Item | Count |\n|---|---|\n"
             f"| Red | {a} |\n| Blue | {b} |\n| Green | {c} |\n| **Total** | **{tot}** |")
    add("table", "response", "gpt_md", str(tot),
        f"### Solution\n\n{table}\n\n**Answer:** {tot} marbles", True)
    add("table", "response", "gpt_md", str(tot),
        f"### Solution\n\n{table}\n\nBut the blue ones are counted twice, so we subtract {b}.\n\n**Answer:** {tot - b} marbles", False)

# ===========================================================================
# 32. multi-part answers (R12)
# ===========================================================================
add("multi_part", "response", "qwen", "a = 3, b = 7",
    steps_text() + "\n\nTherefore, the final answer is $\\boxed{a = 3, b = 7}$.", True)
add("multi_part", "response", "qwen", "a = 3, b = 7",
    steps_text() + "\n\nTherefore, the final answer is $\\boxed{a = 3}$.", False)
add("multi_part", "response", "r1", "a = 3, b = 7",
    st_r1("b = 7, a = 3"), True)
add("multi_part", "response", "r1", "a = 3, b = 7",
    st_r1("a = 7, b = 3"), False)
add("multi_part", "response", "gpt_md", "4, 9",
    "### Solution\n\n" + steps_text() + "\n\n**Answer:** the smallest value is 4.", False)

# ---------------------------------------------------------------------------
for i, c in enumerate(CASES):
    c["id"] = i
    CASES[i] = {k: c[k] for k in ["id", "category", "kind", "style", "gold",
                                  "prediction", "expected"]}

if __name__ == "__main__":
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for c in CASES:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    from collections import Counter
    cat = Counter(c["category"] for c in CASES)
    nf = sum(not c["expected"] for c in CASES)
    print(f"wrote {len(CASES)} cases to {os.path.normpath(OUT)}; "
          f"expected=false: {nf} ({nf / len(CASES):.0%})")
    for k, v in cat.items():
        print(f"  {k:20s} {v}")
