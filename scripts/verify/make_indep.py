#!/usr/bin/env python3
"""Builds the independent labelled set for aha-reward (issue #16).

Written separately from make_devset.py and sharing none of its phrasing: the
response styles imitate endings of real reasoning models (DeepSeek-R1 think
blocks, Qwen boxed endings, Llama "The final answer is: $\\boxed{..}$", GPT-style
"Final Answer:" lines, lighteval/MATH "I hope it is correct.", GSM8K "####",
display math after an answer phrase, chat-template leftovers).

Labels come from hand rules only, never from a verifier's verdict:
  * equivalence items list, per gold, renderings that are mathematically the
    same answer (label true) and renderings that are not (label false);
  * a wrapped response carries the label of the rendering it commits to last;
  * extraction templates state which of the two values they commit to.

Every third item of each class (and every third extraction template) goes to
the held-out part, which is not looked at during development.

Usage:
  python3 scripts/verify/make_indep.py dev > crates/aha-reward/tests/data/indep.jsonl
  python3 scripts/verify/make_indep.py heldout > crates/aha-reward/tests/data/indep_heldout.jsonl
"""
import json
import sys

# (class, gold, [same answer], [different answer]).
ITEMS = [
    # Relations, inequalities, intervals.
    ("relation", "x \\geq 3", ["x \\ge 3", "x>=3", "3 \\le x", "[3, \\infty)", "-x \\le -3"], ["x > 3", "x \\le 3", "[-3, \\infty)"]),
    ("relation", "[-2, 7]", ["-2 \\le x \\le 7", "-2\\leq x\\leq 7", "7 \\geq x \\geq -2"], ["-2 < x < 7", "(-2, 7)", "[-7, 2]"]),
    ("relation", "(0,1)", ["0<f(x)<1", "0 < y < 1", "\\left(0, 1\\right)"], ["0 \\le f(x) \\le 1", "(0, 1]", "(0, 2)"]),
    ("relation", "(-\\infty, \\infty)", ["\\mathbb{R}", "(-\\infty,+\\infty)", "x \\in \\mathbb{R}"], ["(0, \\infty)", "[0, \\infty)"]),
    ("relation", "x \\neq 2", ["x \\ne 2", "x != 2", "x\\neq2"], ["x = 2", "x \\neq -2"]),
    ("relation", "x < -1", ["x \\lt -1", "-1 > x", "-1 \\gt x", "(-\\infty,-1)"], ["x > -1", "x \\le -1", "x < 1"]),
    ("relation", "y \\le 5", ["5 \\geq y", "y<=5", "-y \\ge -5"], ["y \\ge 5", "y < 5"]),
    ("relation", "t > 0", ["0 < t", "t \\gt 0", "(0, \\infty)"], ["t \\ge 0", "t < 0"]),
    ("relation", "[1, 4)", ["1 \\le x < 4", "4 > x \\geq 1", "1\\leq m<4"], ["(1, 4]", "1 < x \\le 4"]),
    ("relation", "m \\geq -\\frac{1}{2}", ["m \\ge -0.5", "-\\frac12 \\le m", "[-\\frac{1}{2}, \\infty)"], ["m \\le -\\frac{1}{2}", "m > -\\frac{1}{2}"]),
    ("relation", "(-3, 3)", ["-3 < x < 3", "|x| < 3", "3 > x > -3"], ["[-3, 3]", "x < 3"]),
    ("relation", "a \\ge 1", ["a\\geq 1", "1 \\leq a", "[1,+\\infty)"], ["a > 1", "a \\le 1"]),
    # Matrices and vectors.
    ("matrix", "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", ["\\left[\\begin{array}{cc} 1 & 0 \\\\ 0 & 1 \\end{array}\\right]", "\\begin{bmatrix}1&0\\\\0&1\\end{bmatrix}"], ["\\begin{pmatrix} 0 & 1 \\\\ 1 & 0 \\end{pmatrix}", "\\begin{pmatrix} 1 & 0 \\\\ 0 & -1 \\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix} 3 \\\\ -1 \\\\ 2 \\end{pmatrix}", ["\\left[ \\begin{array}{c} 3 \\\\ -1 \\\\ 2 \\end{array} \\right]", "\\begin{bmatrix} 3 \\\\ -1 \\\\ 2\\end{bmatrix}", "(3,-1,2)"], ["\\begin{pmatrix} 3 \\\\ 1 \\\\ 2 \\end{pmatrix}", "(2,-1,3)"]),
    ("matrix", "\\begin{pmatrix} \\frac{1}{2} & -\\frac{1}{2} \\\\ 1 & 0 \\end{pmatrix}", ["\\begin{pmatrix} 0.5 & -0.5 \\\\ 1 & 0 \\end{pmatrix}", "\\begin{bmatrix} \\dfrac12 & -\\dfrac12 \\\\ 1 & 0 \\end{bmatrix}"], ["\\begin{pmatrix} \\frac{1}{2} & \\frac{1}{2} \\\\ 1 & 0 \\end{pmatrix}", "\\begin{pmatrix} 1 & 0 \\\\ \\frac{1}{2} & -\\frac{1}{2} \\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix} 4 & -2 \\end{pmatrix}", ["\\left[\\begin{matrix} 4 & -2 \\end{matrix}\\right]", "\\begin{bmatrix}4 & -2\\end{bmatrix}"], ["\\begin{pmatrix} -2 & 4 \\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix} 2 & 1 \\\\ 7 & 4 \\end{pmatrix}", ["\\left[ \\begin{array}{rr} 2 & 1 \\\\ 7 & 4 \\end{array} \\right]", "\\begin{pmatrix}2&1\\\\7&4\\end{pmatrix}"], ["\\begin{pmatrix} 2 & 7 \\\\ 1 & 4 \\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix} -6 \\\\ 9 \\end{pmatrix}", ["\\left[\\begin{array}{c}-6\\\\9\\end{array}\\right]", "\\begin{bmatrix} -6 \\\\ 9 \\end{bmatrix}"], ["\\begin{pmatrix} 6 \\\\ -9 \\end{pmatrix}"]),
    # Labelled answers.
    ("labelled", "(3,2)", ["(p,q)=(3,2)", "(p, q) = (3, 2)"], ["(p,q)=(2,3)"]),
    ("labelled", "1", ["A:B=1", "|AB|=1", "f(x)=1", "x = 2 - 1 = 1"], ["f(x)=2", "|AB| = 3"]),
    ("labelled", "4, 5", ["AB=4, CD=5", "AB = 4,\\ CD = 5"], ["AB=5, CD=6"]),
    ("labelled", "5", ["x = 2 + 3 = 5", "n = 10 - 5 = 5"], ["x = 2 + 3 = 6"]),
    ("labelled", "(-1, 4)", ["(x, y) = (-1, 4)", "(a,b)=(-1,4)"], ["(x, y) = (4, -1)"]),
    ("labelled", "12", ["BC = 12", "S_{\\triangle ABC} = 12", "P(3) = 12"], ["BC = 13"]),
    ("labelled", "7, 3", ["a = 7, b = 3", "m=7,\\ n=3"], ["a = 3, b = 7", "a=7, b=4"]),
    ("labelled", "20", ["g(4) = 20", "\\angle ABC = 20"], ["g(4) = 21"]),
    # Number formats.
    ("number_format", "11111", ["11,\\! 111", "11{,}111", "11\\,111"], ["11,\\! 112", "1111"]),
    ("number_format", "16386.20", ["\\$16,\\!386.20", "16,386.2", "\\$ 16{,}386.20"], ["\\$16,\\!386.02", "16386"]),
    ("number_format", "2.74", ["2,74"], ["274", "2.47"]),
    ("number_format", "42", ["forty-two", "Forty two", "\\text{forty-two}"], ["forty-three", "twenty-four"]),
    ("number_format", "-5", ["negative five", "minus five"], ["five", "negative six"]),
    ("number_format", "\\frac{1}{3}", ["0.\\overline{3}", "0.\\overline{33}"], ["0.\\overline{6}", "0.3"]),
    ("number_format", "\\frac{14}{11}", ["1.\\overline{27}", "1.2\\overline{72}"], ["1.\\overline{72}", "1.27"]),
    ("number_format", "\\frac{7}{2}", ["3\\frac{1}{2}", "3 \\frac12", "\\frac{14}{4}"], ["3\\frac{1}{3}", "\\frac{2}{7}"]),
    ("number_format", "-\\frac{1}{2}", ["\\frac{1}{-2}", "\\frac{-2}{4}", "-\\frac{2}{4}"], ["\\frac{1}{2}", "\\frac{-1}{-2}"]),
    ("number_format", "0.111", ["0,111"], ["111"]),
    ("number_format", "1000000", ["1,000,000", "one million", "10^6"], ["100,000", "one thousand"]),
    ("number_format", "\\frac{1}{6}", ["0.1\\overline{6}", "\\frac{3}{18}"], ["0.\\overline{16}", "0.16"]),
    ("number_format", "2.5", ["2\\frac{1}{2}", "\\frac{10}{4}", "2,5"], ["2\\frac{1}{4}", "25"]),
    ("number_format", "1250", ["\\$1,\\!250", "1{,}250.00", "one thousand two hundred fifty"], ["\\$1,\\!205", "125"]),
    ("number_format", "17", ["seventeen", "Seventeen"], ["seventy", "sixteen"]),
    # Unicode.
    ("unicode", "\\sqrt{2}", ["√2", "√(2)", "√{2}"], ["√3", "2"]),
    ("unicode", "\\frac{\\pi}{2}", ["π/2", "½π", "0.5π"], ["π", "2π"]),
    ("unicode", "\\infty", ["∞", "+∞"], ["-∞", "0"]),
    ("unicode", "45^\\circ", ["45°", "45 °"], ["54°", "135°"]),
    ("unicode", "36", ["３６", "٣٦", "३६"], ["３７", "63"]),
    ("unicode", "2\\sqrt{3}", ["2√3", "√12"], ["3√2", "√6"]),
    ("unicode", "x^2+1", ["x²+1", "x² + 1"], ["x³+1", "x²-1"]),
    ("unicode", "-\\infty", ["−∞", "-∞"], ["∞"]),
    ("unicode", "\\frac{3}{4}", ["¾", "３/４"], ["⅓", "4/3"]),
    # Units and degrees.
    ("unit", "60", ["60^\\circ", "60°", "60^{\\circ}"], ["30^\\circ", "600"]),
    ("unit", "25", ["25\\text{ m}^2", "25 \\text{ square centimeters}", "25\\,\\mathrm{cm}^2"], ["52\\text{ m}^2", "5 \\text{ m}^2"]),
    ("unit", "80", ["80\\mathrm{km}/\\mathrm{h}", "80 \\text{ km/h}", "80\\,\\text{mph}"], ["8\\mathrm{km}/\\mathrm{h}", "85 \\text{ km/h}"]),
    ("unit", "150", ["150 \\text{ square units}", "150\\text{ cm}^2", "150 square feet"], ["15 \\text{ square units}"]),
    ("unit", "12", ["12\\text{ cm}", "12 \\mbox{ meters}", "\\$12"], ["12\\text{ cm}^2 + 1", "21\\text{ cm}"]),
    ("unit", "90^\\circ", ["90", "90°", "90 \\text{ degrees}"], ["180^\\circ", "9^\\circ"]),
    ("unit", "3.5\\text{ hours}", ["3.5\\text{ hours}", "3.5 \\mathrm{h}", "3\\frac{1}{2} \\text{ hours}"], ["3.5\\text{ minutes}", "5.3\\text{ hours}"]),
    ("unit", "40", ["40 \\text{ miles per hour}", "40\\text{ mph}"], ["4 \\text{ mph}"]),
    # Symbolic equivalence.
    ("symbolic", "3n+1", ["1+3n", "n\\cdot 3 + 1", "3(n+\\frac13)"], ["3n-1", "n+3"]),
    ("symbolic", "\\ln 2", ["\\ln(2)", "\\log 2 / \\log e", "\\ln{2}"], ["\\ln 3", "\\log 2"]),
    ("symbolic", "\\sqrt[3]{2}", ["2^{1/3}", "2^{\\frac{1}{3}}", "\\sqrt[3]{16}/2"], ["\\sqrt{2}", "2^{3}"]),
    ("symbolic", "2\\sqrt{3}", ["\\sqrt{12}", "\\frac{6}{\\sqrt{3}}", "\\sqrt{3} \\cdot 2"], ["\\sqrt{6}", "3\\sqrt{2}"]),
    ("symbolic", "\\sin 2x", ["2\\sin x \\cos x", "2\\cos(x)\\sin(x)"], ["\\sin x \\cos x", "2\\sin x"]),
    ("symbolic", "(a+b)^2", ["a^2+2ab+b^2", "b^2 + a^2 + 2ba"], ["a^2+b^2", "(a-b)^2"]),
    ("symbolic", "\\cos 2\\theta", ["\\cos^2\\theta - \\sin^2\\theta", "1 - 2\\sin^2\\theta", "2\\cos^2\\theta - 1"], ["\\cos^2\\theta + \\sin^2\\theta", "2\\cos\\theta"]),
    ("symbolic", "\\frac{\\sqrt{3}}{3}", ["\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{12}}{6}", "3^{-1/2}"], ["\\sqrt{3}", "\\frac{\\sqrt{2}}{3}"]),
    ("symbolic", "x^2 - 4", ["(x-2)(x+2)", "(x+2)(x-2)", "-4 + x^2"], ["(x-2)^2", "x^2+4"]),
    ("symbolic", "\\tan x", ["\\frac{\\sin x}{\\cos x}", "\\sin(x)/\\cos(x)"], ["\\frac{\\cos x}{\\sin x}", "\\cot x"]),
    ("symbolic", "\\log_2 24", ["3 + \\log_2 3", "\\frac{\\ln 24}{\\ln 2}"], ["\\log_2 12", "3\\log_2 3"]),
    ("symbolic", "e^{2x}", ["(e^x)^2", "e^x \\cdot e^x"], ["2e^x", "e^{x^2}"]),
    # Multiple choice (gold is a letter).
    ("choice", "A", ["The correct option is A.", "choice $\\textbf{(A) } 12$", "\\textbf{(A)}", "Option (A)"], ["(A) or (B)", "The correct option is B.", "\\textbf{(B) } 12"]),
    ("choice", "C", ["\\text{(C)}", "(C) $\\sqrt{5}$", "The answer is C"], ["C or D", "\\text{(D)}"]),
    ("choice", "D", ["\\mathrm{(D)}", "D) 3", "**(D)**"], ["(B)", "A and D"]),
    ("choice", "E", ["\\textbf{(E)}\\ 100", "(E)"], ["(A)", "E or B"]),
    ("choice", "B", ["\\textbf{(B) }\\frac{1}{2}", "Choice B"], ["\\textbf{(C) }\\frac{1}{2}", "(A) or (B)"]),
    # Case-insensitive text.
    ("text_case", "\\text{Monday}", ["\\text{monday}", "MONDAY", "monday"], ["\\text{Tuesday}", "Sunday"]),
    ("text_case", "\\text{odd}", ["Odd", "\\textbf{ODD}", "\\text{odd}"], ["even", "\\text{neither}"]),
    ("text_case", "True", ["true", "\\text{TRUE}"], ["false", "\\text{False}"]),
    ("text_case", "\\text{Alice}", ["alice", "\\textbf{Alice}"], ["Bob", "\\text{Alicia}"]),
    ("text_case", "\\text{North}", ["north", "\\text{NORTH}"], ["south", "\\text{Northwest}"]),
    ("text_case", "\\text{yes}", ["Yes", "\\text{YES}"], ["No", "\\text{Maybe}"]),
    # Adversarial shapes around the answer.
    ("adversarial", "5", ["{{{{5}}}}", "((((5))))", "\\left(\\left(5\\right)\\right)", "🎉 5 🎉", "\ufffd5\ufffd", "{{{{{{{{{{{{{{{{5}}}}}}}}}}}}}}}}"], ["{{{{6}}}}", "((((55))))", "🎉 6 🎉"]),
    ("adversarial", "\\frac{2}{3}", ["{\\frac{2}{3}}", "{{\\frac{{2}}{{3}}}}", "(((\\frac{2}{3})))"], ["{\\frac{3}{2}}", "(((\\frac{2}{5})))"]),
    ("adversarial", "-8", ["⚠️ -8", "{-8}", "(-(8))"], ["{8}", "⚠️ 8"]),
    # Times are not numbers: 12:00 and 1:00 differ.
    ("time", "12:00", ["12:00", "12:00\\text{ PM}"], ["1:00", "12:30", "2:00"]),
    ("time", "3:45", ["3:45", "3:45\\text{ pm}"], ["4:35", "3:54", "345"]),
    ("time", "10:30", ["10:30"], ["1:03", "3:10"]),
]

# Response styles: (name, template with {a} for the answer), all of them
# committing to the answer.
STYLES = [
    ("r1", "<think>\nOkay, so I need to figure this out. Let me work through it carefully.\nFirst, write down what is given. Then simplify.\nWait, let me double-check that step... yes, it holds.\n</think>\n\nAfter simplifying, we obtain\n\n\\[\n\\boxed{{{a}}}\n\\]"),
    ("qwen", "To solve the problem, we analyse each condition in turn.\n\n1. From the first condition we get a linear relation.\n2. Substituting into the second gives the value.\n\nThus, the final answer is $\\boxed{{{a}}}$."),
    ("llama", "## Step 1: Understand the problem\nWe need the requested quantity.\n\n## Step 2: Compute\nCarrying out the computation step by step.\n\nThe final answer is: $\\boxed{{{a}}}$"),
    ("gpt", "Let's reason it out.\n\nCombining the two facts gives the result directly.\n\n**Final Answer:** ${a}$"),
    ("math", "We begin by rewriting the expression. Careful algebra then gives the required value.\n\nFinal Answer: The final answer is ${a}$. I hope it is correct."),
    ("display", "Putting the pieces together, the answer is\n\\[ {a} \\]"),
    ("dollars", "Collecting terms, we find that the answer is:\n$$\n{a}\n$$"),
    ("chat", "Simplifying gives the result.\n\nThe answer is $\\boxed{{{a}}}$.<|im_end|>\n<|im_start|>user\nThanks! Can you also do 2+2?"),
]

# Multiple-choice answers are sentences or labelled letters, written as text.
CHOICE_STYLES = [
    ("answer_line", "Checking each option against the conditions, only one survives.\n\n**Answer:** {a}"),
    ("r1_tag", "<think>\nCompare the options one at a time; the others fail the check.\n</think>\n<answer>{a}</answer>"),
]

# Extraction templates: (name, template, value slot used last). Each is
# filled with a (gold, right, wrong) triple; {c} is the value committed to
# last, {o} the other one. Label: committed value is the right one.
TEMPLATES = [
    ("display_math", "Therefore, the answer is\n\\[\n{c}\n\\]\nThis matches our estimate."),
    ("display_math", "So the final answer is:\n$$ {c} $$"),
    ("display_math", "Hence the answer is\n\n\\[\\boxed{{{c}}}\\]"),
    ("display_math", "The final answer is\n$$\\boxed{{{c}}}$$\n"),
    ("display_math", "Thus the answer is:\n\\[ x = {c} \\]"),
    ("display_math", "**Answer**\n\n$$\n{c}\n$$"),
    ("final_prose", "Final Answer: The largest $n$ is ${c}$."),
    ("final_prose", "Final Answer: The value of the expression is ${c}$. I hope it is correct."),
    ("final_prose", "Final Answer: The required sum equals ${c}$."),
    ("final_prose", "Final answer: The number of ways is ${c}$.\n\nI hope it is correct."),
    ("final_prose", "**Final Answer:** The minimum possible value is ${c}$."),
    ("final_prose", "Final Answer: The answer is ${c}$. I hope it is correct.<|eot_id|>"),
    ("chat_leftover", "So the result is \\boxed{{{c}}}.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat about {o}?"),
    ("chat_leftover", "The answer is ${c}$.</s>"),
    ("chat_leftover", "#### {c}<|endoftext|>Human: is it {o}?"),
    ("chat_leftover", "Therefore the answer is $\\boxed{{{c}}}$.\n<|im_end|>\n<|im_start|>assistant\nYou're welcome!"),
    ("gsm8k", "Half of the total is taken first, then the rest is split.\n#### {c}"),
    ("gsm8k", "She pays 3 * 4 = <<3*4=12>>12 for the first part and the rest after.\n#### {c}"),
    ("gsm8k", "<think>\nTry {o} first; no, that overcounts.\n</think>\nWorking it out properly:\n#### {c}"),
    ("revision", "So we get $\\boxed{{{o}}}$. But re-reading the problem, the question asks for something else. Redoing the computation, the final answer is ${c}$."),
    ("revision", "My first attempt gave \\boxed{{{o}}}. Wait, I made an arithmetic slip. Correcting it, the answer is ${c}$."),
    ("revision", "Initially: $\\boxed{{{o}}}$.\n\nHmm, re-reading the problem statement, I mixed up the two quantities.\n\nFinal Answer: ${c}$"),
    ("revision", "The answer is ${o}$. Actually, checking again, that is wrong; the answer is $\\boxed{{{c}}}$."),
    ("revision", "<think>Probably \\boxed{{{o}}}.</think>\nAfter verifying, the answer is \\boxed{{{c}}}."),
    ("revision", "We might guess ${o}$, but computing carefully gives\n\n**Answer:** ${c}$"),
    ("r1_full", "<think>\nLet me see. If I take {o} it fails the check. Let me try again.\nOkay so the value works out.\n</think>\n\n**Solution**\n\nThe computation gives $\\boxed{{{c}}}$."),
    ("r1_full", "<think>\nHmm, {o}? No.\n</think>\nThe final answer is $\\boxed{{{c}}}$"),
]

# (gold, right, wrong) fillers for the templates.
FILL = [
    ("34", "34", "35"),
    ("\\frac{3}{4}", "\\frac34", "\\frac{4}{3}"),
    ("2\\sqrt{3}", "2\\sqrt3", "3\\sqrt2"),
    ("-5", "-5", "5"),
    ("(2,-1)", "(2, -1)", "(-1, 2)"),
    ("\\frac{\\pi}{6}", "\\frac{\\pi}{6}", "\\frac{\\pi}{3}"),
    ("120", "120", "210"),
    ("0.25", "\\frac{1}{4}", "0.5"),
]

# Whole responses with several answers, labelled by hand: (class, gold, response, label).
MULTI = [
    ("multi_answer", "3, 5", "Factoring, $(x-3)(x-5)=0$, so $x = \\boxed{3}$ and $x = \\boxed{5}$.", True),
    ("multi_answer", "3, 5", "The roots are $\\boxed{5}$ and $\\boxed{3}$.", True),
    ("multi_answer", "3, 5", "The roots are $\\boxed{3}, \\boxed{5}$.", True),
    ("multi_answer", "3, 5", "The roots are $\\boxed{3}$ and $\\boxed{6}$.", False),
    ("multi_answer", "3, 5", "The root is $\\boxed{5}$.", False),
    ("multi_answer", "19, 46, 82", "The three numbers are $\\boxed{19, 46, \\text{ and } 82}$.", True),
    ("multi_answer", "19, 46, 82", "The numbers are 19, 46, and 82, so the answer is $\\boxed{19, 46, \\text{and } 82}$.", True),
    ("multi_answer", "19, 46, 82", "So the answer is $\\boxed{19, 46}$.", False),
    ("multi_answer", "(1,2), (2,1)", "The solutions are $\\boxed{(2,1), (1,2)}$.", True),
    ("multi_answer", "(1,2), (2,1)", "The solutions are $\\boxed{(2,1)}$ and $\\boxed{(1,2)}$.", True),
    ("multi_answer", "(1,2), (2,1)", "The only solution is $\\boxed{(1,2)}$.", False),
    ("multi_answer", "k = 45, n = 2", "Thus $\\boxed{k = 45}$ and $\\boxed{n = 2}$.", True),
    ("multi_answer", "k = 45, n = 2", "Thus $\\boxed{k = 45}$ and $\\boxed{n = 3}$.", False),
    ("multi_answer", "-2, 1", "So $x=\\boxed{-2}$ or $x=\\boxed{1}$.", True),
    ("multi_answer", "2", "Either $\\boxed{2}$ or $\\boxed{3}$, I cannot decide.", False),
    ("multi_answer", "7", "First, $a = \\boxed{3}$. Using this in the second part of the problem, we find the requested total is $\\boxed{7}$.", True),
    ("multi_answer", "1, 2, 3", "The values are $\\boxed{1}$, $\\boxed{2}$, and $\\boxed{3}$.", True),
    ("multi_answer", "1, 2, 3", "The values are $\\boxed{1}$, $\\boxed{2}$, and $\\boxed{4}$.", False),
    ("multi_answer", "\\frac{1}{2}, -4", "Both work: $x=\\boxed{\\frac12}$ and $x=\\boxed{-4}$.", True),
    ("multi_answer", "0, 6", "The solutions are $x=0$ and $x=6$, i.e. $\\boxed{0 \\text{ and } 6}$.", True),
    ("multi_answer", "0, 6", "The solutions are $\\boxed{0 \\text{ and } 7}$.", False),
    ("multi_answer", "(0,0), (1,1), (-1,1)", "All solutions: $\\boxed{(1,1), (0,0), (-1,1)}$.", True),
    ("multi_answer", "(0,0), (1,1), (-1,1)", "All solutions: $\\boxed{(1,1), (0,0)}$.", False),
    ("multi_answer", "5", "We have $\\boxed{5}$ and also $\\boxed{5}$ by symmetry.", True),
]


def items_for(part):
    per_class = {}
    for it in ITEMS:
        k = per_class.get(it[0], 0)
        per_class[it[0]] = k + 1
        if (k % 3 == 2) == (part == "heldout"):
            yield it


def main():
    part = sys.argv[1] if len(sys.argv) > 1 else "dev"
    assert part in ("dev", "heldout")
    rows = []
    s = 0
    for cls, gold, goods, bads in items_for(part):
        for pred, ok in [(g, True) for g in goods] + [(b, False) for b in bads]:
            rows.append({"category": cls, "kind": "answer", "gold": gold, "prediction": pred, "expected": ok})
            # Text-ish renderings (choice sentences) are whole answers already.
            styles = CHOICE_STYLES if cls == "choice" else STYLES
            style, tpl = styles[s % len(styles)]
            s += 1
            rows.append({"category": cls, "kind": "response", "style": style, "gold": gold,
                         "prediction": tpl.format(a=pred), "expected": ok})
    for k, (cls, tpl) in enumerate(TEMPLATES):
        if (k % 3 == 2) != (part == "heldout"):
            continue
        for j, (gold, right, wrong) in enumerate(FILL):
            if (j + k) % 2 == 0:
                continue  # half the fillers per template keeps the set small
            rows.append({"category": cls, "kind": "response", "gold": gold,
                         "prediction": tpl.format(c=right, o=wrong), "expected": True})
            rows.append({"category": cls, "kind": "response", "gold": gold,
                         "prediction": tpl.format(c=wrong, o=right), "expected": False})
    for k, (cls, gold, resp, ok) in enumerate(MULTI):
        if (k % 3 == 2) != (part == "heldout"):
            continue
        rows.append({"category": cls, "kind": "response", "gold": gold, "prediction": resp, "expected": ok})
    for i, r in enumerate(rows):
        sys.stdout.write(json.dumps({"id": i, **r}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
