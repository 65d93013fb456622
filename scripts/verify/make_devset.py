#!/usr/bin/env python3
"""Builds aha-reward's labelled dev set (crates/aha-reward/tests/data/devset.jsonl).

Every case is hand-labelled: each gold answer comes with answers that are
equivalent to it and answers that are not. Each answer is used twice: bare,
and wrapped in a full response with reasoning (R1 tags, \\boxed, "the answer
is", MATH's "Final Answer" line), so half the set is full responses. Extraction
and adversarial cases are written out whole. A rounded decimal is not an exact
answer (`0.333` for 1/3, `3.1416` for pi), as MATH-style graders and the
independently written sets have it (relabelled 2026-12-07; it was accepted before). Deterministic: no randomness.

Usage: python3 scripts/verify/make_devset.py > crates/aha-reward/tests/data/devset.jsonl
"""
import json
import sys

# (category, gold, [equivalent answers], [non-equivalent answers])
PAIRS = [
    # numbers
    ("number", "1000", ["1,000", "1 000", "1000.0", "10^3", "1\\times10^3", "1e3", "1{,}000"], ["100", "1001", "1,001"]),
    ("number", "0.5", ["\\frac12", "\\frac{1}{2}", "1/2", "\\dfrac{1}{2}", ".5", "\\tfrac{1}{2}"], ["0.51", "\\frac{1}{3}", "5"]),
    ("number", "\\frac{1}{3}", ["\\frac{2}{6}", "1/3", "\\frac{1}{3}"], ["0.333", "0.3333", "0.33", "0.3", "\\frac{1}{4}", "0.334"]),
    ("number", "-7", ["\u22127", "-7.0", "-\\frac{14}{2}", "- 7"], ["7", "-6", "-7.1"]),
    ("number", "120000", ["1.2e5", "1.2\\times10^5", "120,000", "1.2 \\times 10^{5}", "1.2\\cdot 10^5"], ["1.2e4", "12000", "1.2\\times10^6"]),
    ("number", "3.75", ["\\frac{15}{4}", "3.750", "15/4"], ["3.7", "3.8", "\\frac{15}{2}"]),
    ("number", "25\\%", ["25", "0.25", "25%", "\\frac{1}{4}"], ["0.025", "2.5", "52\\%"]),
    ("number", "12345678901234567890", ["12345678901234567890", "12,345,678,901,234,567,890"], ["12345678901234567891", "1.2345678901234567e19"]),
    ("number", "\\pi", ["\\frac{2\\pi}{2}", "\u03c0"], ["3.14159", "3.1416", "3.15", "3", "3.1"]),
    ("number", "12", ["\u0661\u0662", "\uff11\uff12", "12.00", "\\mathbf{12}"], ["13", "1.2", "21"]),
    ("number", "2", ["\\sqrt{4}", "\\sqrt[3]{8}", "4^{1/2}", "\\log_2 4", "\\frac{6}{3}"], ["\\sqrt{2}", "4", "-2"]),
    ("number", "0.000012", ["1.2e-5", "1.2\\times 10^{-5}", "\\frac{12}{1000000}"], ["1.2e-6", "0.00012"]),
    ("number", "-\\frac{3}{4}", ["-0.75", "\\frac{-3}{4}", "-\\dfrac34", "\\frac{3}{-4}"], ["\\frac{3}{4}", "-\\frac{4}{3}"]),
    ("number", "100", ["100", "10^2", "10 \\cdot 10"], ["99.9", "1000", "10"]),
    ("number", "\\frac{2}{3}", ["\\frac{4}{6}"], ["0.667", "0.6667", "0.67", "0.66", "0.6"]),
    # LaTeX expressions
    ("latex", "\\frac{\\sqrt{2}}{2}", ["\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt2}{2}", "2^{-1/2}", "\\sin\\frac{\\pi}{4}", "\\dfrac{\\sqrt{2}}{2}"], ["\\sqrt{2}", "\\frac{\\sqrt{3}}{2}", "0.7071", "0.7"]),
    ("latex", "2\\sqrt{2}", ["\\sqrt{8}", "2\\sqrt2", "\\sqrt{2}\\cdot 2", "2 \\sqrt{2}"], ["\\sqrt{6}", "4", "2\\sqrt{3}"]),
    ("latex", "\\frac{3\\pi}{4}", ["\\frac34\\pi", "0.75\\pi", "\\frac{3}{4}\\pi", "3\\pi/4"], ["\\frac{\\pi}{4}", "\\frac{4\\pi}{3}"]),
    ("latex", "x^2+2x+1", ["(x+1)^2", "x^2 + 2x + 1", "1+2x+x^2", "\\left(x+1\\right)^{2}"], ["x^2+1", "(x-1)^2", "x^2+2x"]),
    ("latex", "\\frac{x}{2}", ["0.5x", "x/2", "\\frac12 x", "\\frac{1}{2}x"], ["2x", "\\frac{2}{x}"]),
    ("latex", "e^{i\\pi}", ["-1"], ["1", "e^{\\pi}"]),
    ("latex", "\\infty", ["\\infty", "+\\infty"], ["-\\infty", "1000000"]),
    ("latex", "3i", ["3\\sqrt{-1}", "i\\cdot 3", "3 i"], ["3", "-3i"]),
    ("latex", "\\binom{5}{2}", ["10", "\\dbinom{5}{2}", "\\frac{5!}{2!3!}"], ["20", "\\binom{5}{3}+1"]),
    ("latex", "5!", ["120"], ["24", "5"]),
    ("latex", "\\left(\\frac{1}{2}\\right)^2", ["\\frac14", "0.25", "2^{-2}"], ["\\frac12", "\\frac{1}{8}"]),
    ("latex", "\\sqrt[3]{2}", ["2^{1/3}", "2^{\\frac13}", "\\sqrt[3]{2}"], ["\\sqrt{2}", "\\sqrt[3]{3}"]),
    ("latex", "\\ln 8", ["3\\ln 2", "\\ln(8)"], ["\\ln 6", "8"]),
    ("latex", "a^2b", ["ba^2", "a \\cdot a \\cdot b", "a^{2} b"], ["ab^2", "a^2+b"]),
    ("latex", "\\frac{1}{x+1}", ["(x+1)^{-1}", "\\frac{1}{1+x}", "1/(x+1)"], ["\\frac{1}{x}+1", "x+1"]),
    ("latex", "\\sin^2 x + \\cos^2 x", ["1"], ["2", "\\sin x"]),
    ("latex", "\\frac{5\\sqrt{3}}{3}", ["\\frac{5}{\\sqrt{3}}", "\\frac{5}{3}\\sqrt{3}"], ["5\\sqrt{3}", "\\frac{3\\sqrt{5}}{5}"]),
    ("latex", "4\\pi", ["4 \\pi", "\\pi \\cdot 4"], ["12.566", "4", "2\\pi", "12.5"]),
    ("latex", "|x-1|", ["|1-x|", "\\left|x-1\\right|"], ["x-1", "|x+1|"]),
    # sets and tuples
    ("set_tuple", "\\{1,2,3\\}", ["\\{3,2,1\\}", "\\{1, 2, 3\\}", "1,2,3", "\\left\\{ 2,1,3 \\right\\}"], ["\\{1,2\\}", "(1,2,3)", "\\{1,2,4\\}"]),
    ("set_tuple", "(1,2)", ["(1, 2)", "\\left(1,2\\right)", "(1.0, 2)"], ["(2,1)", "\\{1,2\\}", "[1,2]"]),
    ("set_tuple", "(3,-4)", ["(3, -4)", "(\\frac{6}{2}, -4)"], ["(-4,3)", "(3,4)", "\\{3,-4\\}"]),
    ("set_tuple", "1, 2", ["2, 1", "1,2", "\\{1,2\\}", "x=1, x=2", "x=2 \\text{ or } x=1"], ["1", "1, 3", "1, 2, 3"]),
    ("set_tuple", "-2, 5", ["5, -2", "x = -2 \\text{ or } x = 5", "\\{-2, 5\\}"], ["-2", "2, -5"]),
    ("set_tuple", "\\emptyset", ["\\varnothing", "\\{\\}"], ["\\{0\\}", "0"]),
    ("set_tuple", "(1,2,3)", ["(1, 2, 3)", "\\left(1,2,3\\right)"], ["(1,3,2)", "\\{1,2,3\\}", "(1,2)"]),
    ("set_tuple", "\\{(1,2),(3,4)\\}", ["\\{(3,4),(1,2)\\}", "(1,2),(3,4)"], ["\\{(2,1),(3,4)\\}", "\\{(1,2)\\}"]),
    ("set_tuple", "2 \\pm \\sqrt{3}", ["2+\\sqrt3, 2-\\sqrt3", "2-\\sqrt{3}, 2+\\sqrt{3}", "\\{2-\\sqrt{3},2+\\sqrt{3}\\}"], ["2+\\sqrt3", "2 \\pm \\sqrt{2}"]),
    ("set_tuple", "(0, \\frac{1}{2}, -1)", ["(0, 0.5, -1)", "\\left(0,\\frac12,-1\\right)"], ["(0, -1, \\frac{1}{2})", "(0, \\frac{1}{2}, 1)"]),
    # intervals and inequalities
    ("interval", "(0, 1]", ["(0,1]", "0 < x \\le 1", "\\left(0, 1\\right]", "0<x\\leq 1"], ["[0,1]", "(0,1)", "0 \\le x \\le 1"]),
    ("interval", "[2, \\infty)", ["x \\ge 2", "[2,\\infty)", "2 \\le x", "x\\geq2"], ["(2, \\infty)", "x > 2", "[-2,\\infty)"]),
    ("interval", "(-\\infty, 3)", ["x < 3", "(-\\infty,3)", "3 > x"], ["x \\le 3", "(-\\infty, 3]", "(3, \\infty)"]),
    ("interval", "(-\\infty, -1) \\cup (1, \\infty)", ["(1,\\infty)\\cup(-\\infty,-1)", "(-\\infty,-1)\\cup(1,\\infty)"], ["(-1, 1)", "(-\\infty,-1] \\cup [1,\\infty)"]),
    ("interval", "(1, 2)", ["1 < x < 2", "(1,2)"], ["[1,2]", "1 \\le x < 2"]),
    ("interval", "[-1, 1]", ["-1 \\le x \\le 1", "[-1,1]", "1 \\ge x \\ge -1"], ["(-1,1)", "[-1,1)"]),
    ("interval", "[\\frac{1}{2}, 3)", ["[0.5, 3)", "\\frac12 \\le x < 3"], ["(0.5, 3)", "[\\frac12, 3]"]),
    # matrices and vectors
    ("matrix", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", ["\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}", "\\begin{pmatrix}\\frac{2}{2}&2\\\\3&4\\end{pmatrix}"], ["\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix}1\\\\-2\\end{pmatrix}", ["(1,-2)", "\\begin{pmatrix}1 \\\\ -2\\end{pmatrix}", "\\begin{bmatrix}1\\\\-2\\end{bmatrix}"], ["(-2,1)", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix}\\frac{1}{2}&0\\\\0&\\frac{1}{2}\\end{pmatrix}", ["\\begin{pmatrix}0.5&0\\\\0&0.5\\end{pmatrix}"], ["\\begin{pmatrix}2&0\\\\0&2\\end{pmatrix}", "\\frac{1}{2}"]),
    ("matrix", "\\begin{pmatrix} 2 \\\\ 0 \\\\ -1 \\end{pmatrix}", ["(2,0,-1)", "\\begin{pmatrix}2\\\\0\\\\-1\\end{pmatrix}"], ["(2,-1,0)", "(2,0,1)"]),
    # equations
    ("equation", "x=5", ["5", "x = 5", "x=\\frac{10}{2}"], ["6", "x=6", "y=5"]),
    ("equation", "y=2x+3", ["y = 3 + 2x", "2x+3", "2x - y + 3 = 0"], ["y=2x-3", "y=3x+2"]),
    ("equation", "x^2+y^2=1", ["y^2+x^2=1", "2x^2+2y^2=2"], ["x^2+y^2=2", "x+y=1"]),
    ("equation", "k=-3", ["-3", "k=-3", "k = -\\frac{6}{2}"], ["3", "k=3"]),
    ("equation", "3", ["x=3", "n = 3"], ["x=4"]),
    # multiple choice
    ("choice", "B", ["(B)", "B", "\\text{(B)}", "B) 42", "\\textbf{(B)}", "(B) 42"], ["A", "(C)", "D", "\\text{(A)}"]),
    ("choice", "(D)", ["D", "\\text{D}", "(D)"], ["B", "(E)"]),
    ("choice", "A", ["option A", "A."], ["B", "(E)"]),
    # short text
    ("text", "\\text{Monday}", ["Monday", "monday", "\\text{monday}", "MONDAY"], ["Tuesday", "\\text{Sunday}"]),
    ("text", "\\text{even}", ["even", "Even", "\\textbf{even}"], ["odd", "\\text{neither}"]),
    ("text", "\\text{no solution}", ["No Solution", "no solution", "\\text{No solution}"], ["1", "\\text{infinitely many}"]),
    ("text", "yes", ["Yes", "YES", "\\text{yes}"], ["no", "maybe"]),
    # units
    ("unit", "5\\text{ cm}", ["5", "5 cm", "5\\text{cm}", "5\\,\\text{cm}", "5 centimeters", "5\\mbox{ cm}"], ["5\\text{ m}", "6\\text{ cm}", "5 km"]),
    ("unit", "30^\\circ", ["30", "30\u00b0", "30^{\\circ}", "30 degrees"], ["60^\\circ", "30 cm"]),
    ("unit", "18", ["\\$18", "18 dollars", "\\$18.00", "18\\text{ dollars}"], ["\\$19", "17 dollars"]),
    ("unit", "12\\text{ inches}", ["12 in", "12", "12 inches"], ["12 ft", "1 foot"]),
    ("unit", "4 \\text{ hours}", ["4 hours", "4", "4\\text{ hr}"], ["4 minutes", "5 hours"]),
    ("unit", "9\\text{ m}^2", ["9", "9 m^2"], ["9 cm^2", "3 m"]),
]

REASONING = [
    "First compute the pieces: 3 + 4 = 7, then 7 \\cdot 2 = 14. Checking the other case gives 11, which we discard.",
    "Let me set up the equation. Substituting 2 gives 10, and substituting 5 gives 26, so the relation holds as claimed.",
    "We simplify step by step; the intermediate value 42 is not the result. After cancelling common factors we obtain the final form.",
    "Hmm, wait. Let me re-read the question. We need the exact value, not 3.5 or 100. Recomputing carefully.",
]


def wrap(pred, k):
    """Full response in one of five styles; k picks style and reasoning."""
    r = REASONING[k % len(REASONING)]
    style = k % 5
    if style == 0:
        return f"<think>\n{r}\n</think>\n<answer>{pred}</answer>"
    if style == 1:
        return f"{r}\n\nTherefore, the final answer is $\\boxed{{{pred}}}$."
    if style == 2:
        return f"<think>{r} Maybe it is \\boxed{{7}}? No, let me recheck.</think>\nSo the answer is $\\boxed{{{pred}}}$"
    if style == 3:
        return f"Solution: {r}\n\nFinal Answer: The final answer is ${pred}$. I hope it is correct."
    return f"<think>\n{r}\n</think>\n\n<answer>\nThe answer is \\boxed{{{pred}}}\n</answer>"


# Whole-response extraction cases: (gold, response, expected).
EXTRACTION = [
    ("4", "First I get \\boxed{3}. Wait, that is wrong; recomputing gives \\boxed{4}.", True),
    ("3", "First I get \\boxed{3}. Wait, that is wrong; recomputing gives \\boxed{4}.", False),
    ("5", "It could be \\boxed{5} or \\boxed{6}.", False),
    ("6", "It could be \\boxed{5} or \\boxed{6}.", False),
    ("5", "The answer is 5 or 6.", False),
    ("5", "<think>either 5 or 6</think><answer>5 or 6</answer>", False),
    ("8", "<think>I think it is \\boxed{7}</think>\n<answer>8</answer>", True),
    ("7", "<think>I think it is \\boxed{7}</think>\n<answer>8</answer>", False),
    ("1234", "She has 1,000 + 234 apples.\n#### 1,234", True),
    ("42", "Adding up, 40 + 2 gives a total of 42 apples", True),
    ("41", "Adding up, 40 + 2 gives a total of 42 apples", False),
    ("5", "I am not sure how to solve this problem.", False),
    ("\\frac{\\sqrt{2}}{2}", "So $x = \\boxed{\\frac{1}{\\sqrt{2}}}$.", True),
    ("12", "Hence the area is \\fbox{12}.", True),
    ("9", "<think>The answer is 9.</think>", True),
    ("9", "<think>so 9</think><answer></answer>", False),
    ("\\frac{1}{2}", "The final answer is: $\\frac{1}{2}$", True),
    ("10", "**Final Answer:** 10", True),
    ("10", "Answer: 10 cm", True),
    ("-3", "Thus x = -3.\n\nThe answer is \\boxed{x = -3}.", True),
    ("2", "Let's see: \\boxed{\\frac{4}{2}} is what we get", True),
    ("(1,2)", "The point is $\\boxed{(1, 2)}$.", True),
    ("(1,2)", "The point is $\\boxed{(2, 1)}$.", False),
    ("B", "Comparing options, the correct one is \\boxed{B}.", True),
    ("B", "Comparing options, the correct one is \\boxed{C}.", False),
    ("18", "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", True),
    ("3", "<think>Let me think.\n\\boxed{3}</think> I changed my mind: the answer is \\boxed{4}.", False),
    ("4", "<think>Let me think.\n\\boxed{3}</think> I changed my mind: the answer is \\boxed{4}.", True),
    ("7", "\\boxed{\\boxed{7}}", True),
    ("0", "The answer is \\boxed{0}.", True),
    ("0", "The answer is \\boxed{O}.", False),
    ("2", "答案是 \\boxed{2}", True),
    ("42", "\u0627\u0644\u062c\u0648\u0627\u0628 \u0647\u0648 \\boxed{\u0664\u0662}", True),
]


def adversarial():
    big = "7" * 5000
    big2 = "7" * 4999 + "8"
    deep_ok = "(" * 40 + "1" + ")" * 40
    deep_bad = "(" * 3000 + "1" + ")" * 3000
    braces = "{" * 2000 + "1" + "}" * 2000
    long_sum = "+".join(["1"] * 2000)
    return [
        ("5", "", False),
        ("", "5", False),
        ("", "", False),
        ("12", "\\boxed{12", True),
        ("1", "}}}{{{", False),
        ("1", "\\boxed{}}{", False),
        ("10^{10^{10}}", "10^{10^{10}}", True),
        ("10^{10^{10}}", "10^{10^{11}}", False),
        ("10^{10^{10}}", "1", False),
        ("2^{100000000}", "2^{100000001}", False),
        ("2^{100000000}", "2^{100000000}", True),
        (big, big, True),
        (big, big2, False),
        (big, "\\boxed{" + big + "}", True),
        ("1", deep_ok, True),
        ("1", deep_bad, False),
        ("1", braces, False),
        ("2000", long_sum, True),
        ("3", "\u0000\\boxed{3}\u0000", True),
        ("3", "\\boxed{\u00003}", True),
        ("12", "\u202e\\boxed{12}\u202c", True),
        ("12", "\\boxed{1\u200f2}", True),
        ("1", "\\frac{1}{0}", False),
        ("0", "0/0", False),
        ("i", "\\sqrt{-1}", True),
        ("1", "9!!!!!!!!!", False),
        ("9!!!!", "9!!!!", True),
        ("1", "\\frac{\\frac{\\frac{\\frac{1}{1}}{1}}{1}}{1}", True),
        ("1", "x^{x^{x^{x^{x^{x^{x^{x}}}}}}}", False),
        ("5", "\\sqrt[0]{5}", False),
        ("1", "0^0", True),
        ("5", "\\\\\\\\\\\\\\", False),
        ("5", "$$$$$", False),
        ("5", "\\begin{pmatrix}", False),
        ("5", "\\left(\\right.", False),
        ("5", "5" + "\u0301" * 50, False),
        ("\\frac{1}{2}", "\\frac{1}{2}" + " " * 20000, True),
        ("1", "1e999999", False),
        ("1", "0." + "0" * 3000 + "1", False),
    ]


def main():
    rows = []
    for cat, gold, goods, bads in PAIRS:
        for k, p in enumerate(goods + bads):
            ok = k < len(goods)
            rows.append({"category": cat, "kind": "answer", "gold": gold, "prediction": p, "expected": ok})
    # Full responses: every answer again, wrapped (alternating styles).
    n = len(rows)
    for i in range(n):
        r = dict(rows[i])
        r["kind"] = "response"
        r["prediction"] = wrap(rows[i]["prediction"], i)
        rows.append(r)
    for gold, resp, ok in EXTRACTION:
        rows.append({"category": "extraction", "kind": "response", "gold": gold, "prediction": resp, "expected": ok})
    for gold, pred, ok in adversarial():
        rows.append({"category": "adversarial", "kind": "answer", "gold": gold, "prediction": pred, "expected": ok})
    for i, r in enumerate(rows):
        r = {"id": i, **r}
        sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
