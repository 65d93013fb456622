#!/usr/bin/env python3
"""Fresh held-out evaluation set for the math answer verifier (verify(gold, prediction) -> bool).

The problems, gold answers and model-style responses below were written by hand,
independently of the verifier's code, tests and other labelled data, and are meant to be
used once as a held-out test. Labels follow simple hand rules: `expected` is true iff a
careful human grader would accept the response's FINAL committed answer as mathematically
equal to the gold (formatting, equivalent forms, matching units and harmless wording are
fine). Cases where reasonable graders could disagree were left out on purpose.

Each output line: {"id", "category", "kind" ("response" | "answer"), "style", "gold",
"prediction", "expected"}. Bare answers use style "bare".

Regenerate with:
    python3 scripts/verify/make_fresh.py > crates/aha-reward/tests/data/fresh_heldout.jsonl
"""

import json
import sys
from collections import Counter

CASES = []


def A(category, gold, prediction, expected):
    """A bare final answer as a model might write it."""
    CASES.append(dict(category=category, kind="answer", style="bare",
                      gold=gold, prediction=prediction, expected=expected))


def R(category, style, gold, prediction, expected):
    """A whole model response."""
    CASES.append(dict(category=category, kind="response", style=style,
                      gold=gold, prediction=prediction.strip("\n"), expected=expected))


# ---------------------------------------------------------------- number
R("number", "gsm8k", "45", r"""Tom starts with 3 boxes of 14 pencils, so he has 3 * 14 = <<3*14=42>>42 pencils.
He gives 9 pencils to his classmates, leaving 42 - 9 = <<42-9=33>>33 pencils.
He then buys 2 packs of 6 pencils, which is 2 * 6 = <<2*6=12>>12 more pencils.
In total he has 33 + 12 = <<33+12=45>>45 pencils.
#### 45""", True)

R("number", "gpt", "45", r"""Let's work through it step by step.

1. **Pencils at the start:** 3 boxes × 14 pencils = 42 pencils
2. **After giving some away:** 42 − 9 = 33 pencils
3. **New packs:** 2 × 6 = 12 pencils, so 33 + 12 = 45 pencils
4. **Lost on the bus:** he loses 1 pencil, so 45 − 1 = 44 pencils

**Final Answer:** Tom has **44** pencils.""", False)

A("number", "1234", "1,234", True)
A("number", "1234", "1{,}234", True)
A("number", "12000", r"12\,000", True)
A("number", "12000", "1200", False)
A("number", "-7", "−7", True)
A("number", "-7", "7", False)
A("number", "-0.25", "-.25", True)

R("number", "gpt", "16.20", r"""Each notebook costs $2.70, and Priya buys 6 of them.

- Cost: 6 × $2.70 = $16.20

**Final Answer:** $16.20""", True)

R("number", "claude", "16.2", r"""Six notebooks at \$2.70 each cost $6 \times 2.70 = 16.20$ dollars. She pays with a \$20 bill, but the question only asks for the total cost of the notebooks, not the change.

So the answer is \$16.20.""", True)

R("number", "mistral", "3.80", r"""The six notebooks cost 6 × $2.70 = $16.20. Priya pays with a $20 bill, so her change is $20 − $16.20 = $4.80.

Therefore, Priya receives $4.80 in change.""", False)

R("number", "gemini", "25", r"""The price dropped from $80 to $60.

* **Decrease:** $80 - $60 = $20
* **Percent decrease:** $20 / $80 = 0.25

**The price decreased by 25%.**""", True)

R("number", "olmo", r"35\%", r"""There are 40 students in the class and 14 of them walk to school. To find the percent, divide 14 by 40 to get 0.35, then multiply by 100. That is 35 percent of the class. The answer is 35 percent.""", True)

A("number", r"25\%", r"20\%", False)
A("number", "32000", r"3.2\times10^{4}", True)
A("number", r"3.2\times 10^{4}", r"3.2 \times 10^{5}", False)

R("number", "qwen_math", "32000", r"""The colony starts with $2000$ bacteria and doubles every $5$ hours. In $20$ hours there are $20/5 = 4$ doublings, so the population becomes
$$2000 \cdot 2^4 = 2000 \cdot 16 = 32000.$$
Therefore the number of bacteria after $20$ hours is $\boxed{3.2 \times 10^4}$.""", True)

A("number", "0.5", "0.50", True)
A("number", "2.5", "2.05", False)

R("number", "qwen_math", "7", r"""The sum of the four numbers is $4 + 6 + 8 + 10 = 28$. Dividing by the number of values gives the mean:
$$\frac{28}{4} = 7.0$$
The final answer is $\boxed{7.0}$.""", True)

R("number", "llama", "18", r"""## Step 1: Find how many apples Sam picked.
Sam picked twice as many apples as Lena, and Lena picked 9, so Sam picked 2 * 9 = 18 apples.

## Step 2: Check what the question asks.
The question asks for the number of apples Sam picked, which we found in step 1.

The final answer is: $\boxed{18}$""", True)

R("number", "llama", "18", r"""## Step 1: Determine Lena's apples.
Lena picked 9 apples.

## Step 2: Determine Sam's apples.
Sam picked twice as many as Lena: 2 × 9 = 18 apples.

## Step 3: Account for the apples Sam gave away.
Sam gave 2 apples to his neighbor, so he has 18 − 2 = 16 apples.

The final answer is: $\boxed{16}$""", False)

R("number", "r1", "120", r"""<think>
Okay, so I need to count the arrangements of the letters in BRAVE. Let me check whether any letters repeat: B, R, A, V, E. Five letters, all different.

So it's just 5 factorial. 5! = 5 × 4 × 3 × 2 × 1. 5 × 4 = 20, 20 × 3 = 60, 60 × 2 = 120. So 120.

Hmm, is there any restriction in the problem? No, it just says arrangements. So 120.
</think>

The word BRAVE has 5 distinct letters, so the number of arrangements is

$$5! = 120.$$

**Answer:** \boxed{120}""", True)

R("number", "r1", "30", r"""<think>
LLAMA has 5 letters: L, L, A, M, A. L appears twice and A appears twice. So the count is 5!/(2!·2!) = 120/4 = 30.

Wait, let me recount the letters. L-L-A-M-A. Yes two L's and two A's, one M. 30.
</think>

The word LLAMA has 5 letters with the letter L repeated twice. Dividing out the repeated letters:

$$\frac{5!}{2!} = \frac{120}{2} = 60$$

The number of distinct arrangements is \boxed{60}.""", False)

R("number", "claude", "-3", r"""I need integers whose squares are less than 10. Since $3^2 = 9 < 10$ but $4^2 = 16 > 10$, the integers that work are $-3, -2, -1, 0, 1, 2, 3$.

The smallest of these is $-3$.""", True)

R("number", "claude", "3", r"""The slope between $(1, 2)$ and $(3, 8)$ is the change in $y$ over the change in $x$:

$$m = \frac{2 - 8}{3 - 1} = \frac{-6}{2} = -3.$$

So the slope of the line is $-3$.""", False)

A("number", "1000000", "10^6", True)

R("number", "gemini", "0", r"""Here's the calculation:

* $2^{10} = 1024$
* $1024 - 4 = 1020$
* $1020 = 102 \times 10$, so nothing is left over.

**The remainder is 0.**""", True)

R("number", "plain", "1", r"""9 × 10 = 90, and 100 − 90 = 10. So when 100 is divided by 9 the remainder is 10.""", False)

A("number", "5", "5.5", False)

R("number", "mistral", "3600", r"""There are 60 minutes in an hour and 60 seconds in a minute, so one hour contains 60 × 60 seconds. The answer is 3,600.""", True)

R("number", "r1", "130", r"""<think>
Let me parse this. The first field yields 40 bushels. The second field yields 25% more than the first. 25% of 40 is 10, so the second field yields 50 bushels.

The third field yields 10 fewer than the second, so 50 - 10 = 40 bushels.

Total: 40 + 50 + 40 = 130.

Wait, is "25% more than the first" maybe 25% more than the total so far? No, it says "than the first field." So 50 is right.

Hmm, and "10 fewer than the second" gives 40. So the first and third fields yield the same amount. That's fine, just a coincidence.

Total is 130 bushels.
</think>

**Field 1:** 40 bushels

**Field 2:** 25% more than field 1: $40 + 0.25 \times 40 = 50$ bushels

**Field 3:** 10 fewer than field 2: $50 - 10 = 40$ bushels

**Total:** $40 + 50 + 40 = 130$ bushels

$$\boxed{130}$$""", True)

R("number", "gpt", "130", r"""Let's break the harvest down field by field.

### Field 1
The first field yields **40 bushels**.

### Field 2
The second field yields 25% more than the first:

$$
40 \times 1.25 = 50 \text{ bushels}
$$

### Field 3
The third field yields 10 more than the second:

$$
50 + 10 = 60 \text{ bushels}
$$

### Total
$$
40 + 50 + 60 = 150
$$

**Final Answer:** The farmer harvests **150 bushels** in total.""", False)

A("number", r"\$16.20", "$16.02", False)
A("number", "0.001", "0.01", False)
A("number", "2024", "2,204", False)

# ---------------------------------------------------------------- fraction
A("fraction", r"\frac{3}{4}", "0.75", True)
A("fraction", r"\frac34", r"\dfrac{3}{4}", True)
A("fraction", r"\frac{3}{4}", "3/4", True)
A("fraction", r"\frac{3}{4}", r"\frac{4}{3}", False)
A("fraction", r"\frac{7}{3}", r"2\frac{1}{3}", True)
A("fraction", r"2\frac{1}{3}", r"\frac{7}{3}", True)
A("fraction", r"\frac{7}{3}", r"2\frac{2}{3}", False)
A("fraction", r"\frac{1}{3}", r"0.\overline{3}", True)
A("fraction", r"\frac{4}{11}", r"0.\overline{36}", True)
A("fraction", r"\frac{4}{11}", r"0.\overline{63}", False)
A("fraction", r"-\frac{2}{5}", r"\frac{-2}{5}", True)
A("fraction", r"-\frac{2}{5}", r"\frac{2}{5}", False)
A("fraction", r"\frac{2}{5}", "0.4", True)

R("fraction", "qwen_math", r"\frac{5}{12}", r"""There are $10 + 14 = 24$ marbles in total, and $10$ of them are red.

The probability of drawing a red marble is therefore
$$P(\text{red}) = \frac{10}{24}.$$

\boxed{\frac{10}{24}}""", True)

R("fraction", "qwen_math", r"\frac{5}{12}", r"""To add the fractions we combine them:

$\frac{1}{4} + \frac{1}{6} = \frac{1 + 1}{4 + 6} = \frac{2}{10} = \frac{1}{5}$

Therefore, the sum is $\boxed{\frac{1}{5}}$.""", False)

R("fraction", "r1", r"\frac{1}{6}", r"""<think>
Two fair dice, what's the probability the sum is 7. Total outcomes 36. Pairs summing to 7: (1,6), (2,5), (3,4), (4,3), (5,2), (6,1). That's 6. So 6/36 = 1/6.

Let me make sure I'm not supposed to treat the dice as indistinguishable — no, for probability with fair dice the 36 ordered outcomes are equally likely. So 1/6.
</think>

There are $36$ equally likely ordered outcomes when rolling two dice. The outcomes with sum $7$ are $(1,6),(2,5),(3,4),(4,3),(5,2),(6,1)$, which is $6$ outcomes.

$$P(\text{sum}=7)=\frac{6}{36}=\boxed{\dfrac{1}{6}}$$""", True)

R("fraction", "gpt", r"\frac{11}{36}", r"""To find the probability of rolling at least one 6 with two fair dice, use the complement.

### Step 1: Probability of no sixes
Each die shows something other than 6 with probability $\frac{5}{6}$, so

$$
P(\text{no sixes}) = \left(\frac{5}{6}\right)^2 = \frac{25}{36}.
$$

### Step 2: Complement
$$
P(\text{at least one six}) = 1 - \frac{25}{36} = \frac{11}{36}.
$$

### Answer
\[
\frac{11}{36}
\]""", True)

R("fraction", "mistral", r"\frac{11}{36}", r"""Let's find the probability of rolling at least one six with two dice.

The probability that a single die is not a six is 5/6, so the probability that neither die is a six is (5/6)^2 = 25/36. This gives 1 - 25/36 = 11/36 for at least one six.

However, the outcome where both dice show six has been counted for both dice, so we need to subtract it once: 11/36 - 1/36 = 10/36 = 5/18.

Therefore, the probability of rolling at least one six is 5/18.""", False)

A("fraction", r"\frac{1}{2}", r"\tfrac12", True)
A("fraction", r"\frac{9}{4}", "2.25", True)
A("fraction", r"\frac{9}{4}", "2.5", False)
A("fraction", r"1\frac{1}{2}", "1.5", True)
A("fraction", r"\frac{3}{2}", r"1\frac{2}{3}", False)

R("fraction", "claude", r"\frac{3}{8}", r"""There are $2^3 = 8$ equally likely outcomes when flipping three fair coins. Exactly one head happens in three of them: HTT, THT, and TTH.

So the probability is 3/8.""", True)

R("fraction", "gemini", r"\frac{3}{8}", r"""Here's how to find the probability of getting exactly one head in three flips:

* **Probability of heads on one flip:** 1/2
* **Probability of one head and two tails:** (1/2) × (1/2) × (1/2) = 1/8

**The probability of exactly one head is 1/8.**""", False)

R("fraction", "llama", r"\frac{1}{4}", r"""## Step 1: Rewrite the equation in slope-intercept form.
Divide both sides of $4y = x + 8$ by 4 to get $y = \frac{1}{4}x + 2$.

## Step 2: Identify the slope.
In the form $y = mx + b$, the slope is the coefficient $m$, so $m = \frac{1}{4}$.

The final answer is: $\boxed{\frac{1}{4}}$""", True)

A("fraction", r"\frac{2}{3}", r"0.\overline{6}", True)
A("fraction", r"\frac{5}{8}", "0.625", True)
A("fraction", r"\frac{5}{8}", "0.58", False)

A("fraction", r"\frac{5}{6}", r"0.\overline{5}", False)
A("fraction", r"3\frac{1}{4}", r"\frac{13}{3}", False)

# ---------------------------------------------------------------- radical_pi
A("radical_pi", r"2\sqrt{2}", r"\sqrt{8}", True)
A("radical_pi", r"2\sqrt{2}", r"2\sqrt{3}", False)
A("radical_pi", r"5\sqrt{2}", r"\sqrt{50}", True)
A("radical_pi", r"5\sqrt{2}", r"\sqrt{52}", False)
A("radical_pi", r"\sqrt[3]{2}", "2^{1/3}", True)
A("radical_pi", r"\sqrt[3]{2}", r"\sqrt{2}", False)
A("radical_pi", r"\frac{\pi}{3}", r"\pi/3", True)
A("radical_pi", r"\frac{\pi}{3}", r"\frac{\pi}{6}", False)
A("radical_pi", r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}", True)
A("radical_pi", r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt{2}}{2}", False)
A("radical_pi", r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True)
A("radical_pi", r"3+2\sqrt{2}", r"2\sqrt{2}+3", True)
A("radical_pi", r"3+2\sqrt{2}", r"3-2\sqrt{2}", False)

R("radical_pi", "r1", r"16\pi", r"""<think>
The circle has diameter 8, so the radius is 4. Area is πr² = π·16 = 16π. The question wants the answer in terms of π, so 16π.
</think>

Since the diameter is $8$, the radius is $r = 4$. The area is

$$A = \pi r^2 = \pi (4)^2 = 16\pi.$$

\boxed{16\pi}""", True)

R("radical_pi", "gpt", r"16\pi", r"""To find the area of the circle, use the formula:

$$
A = \pi r^2
$$

The problem gives a length of 8, so substituting:

$$
A = \pi (8)^2 = 64\pi
$$

**Final Answer:** The area of the circle is $64\pi$ square units.""", False)

R("radical_pi", "qwen_math", r"36\pi", r"""The volume of a sphere with radius $r$ is $V = \frac{4}{3}\pi r^3$. With $r = 3$:
\[
V = \frac{4}{3}\pi \cdot 27 = 36\pi.
\]
Thus the volume is $\boxed{36\pi}$.""", True)

A("radical_pi", r"\frac{4\sqrt{3}}{3}", r"\frac{4}{\sqrt{3}}", True)
A("radical_pi", r"\frac{4\sqrt{3}}{3}", r"\frac{\sqrt{3}}{4}", False)

R("radical_pi", "gpt", r"\sqrt{13}", r"""Use the distance formula:

$$
d = \sqrt{(x_2 - x_1)^2 + (y_2 - y_1)^2}
$$

Substituting $(1, 2)$ and $(3, 5)$:

$$
d = \sqrt{(3 - 1)^2 + (5 - 2)^2} = \sqrt{4 + 9} = \sqrt{13}
$$

**Final Answer:** $\sqrt{13}$""", True)

R("radical_pi", "olmo", r"\sqrt{13}", r"""The distance between (1, 2) and (3, 5) is found with the distance formula. The horizontal change is 3 - 1 = 2 and the vertical change is 5 - 2 = 3. Adding these, 2 + 3 = 5, so the distance is $\sqrt{5}$. The answer is $\sqrt{5}$.""", False)

A("radical_pi", r"6\sqrt{3}", r"\sqrt{108}", True)
A("radical_pi", r"6\sqrt{3}", r"3\sqrt{6}", False)

R("radical_pi", "claude", r"2\pi", r"""Both $\sin x$ and $\cos x$ have period $2\pi$, and their sum $\sin x + \cos x = \sqrt{2}\sin(x + \pi/4)$ is a single shifted sine wave, so it can't repeat any sooner.

The period is $2\pi$.""", True)

A("radical_pi", r"\frac{3\pi}{2}", r"\frac{3}{2}\pi", True)
A("radical_pi", r"\frac{3\pi}{2}", r"\frac{2\pi}{3}", False)

R("radical_pi", "mistral", r"4\sqrt{5}", r"""By the Pythagorean theorem, the hypotenuse is c = \sqrt{4^2 + 8^2} = \sqrt{16 + 64} = \sqrt{80}. Since 80 = 4 × 20, we can write \sqrt{80} = 2\sqrt{20}. Therefore, the length of the hypotenuse is $2\sqrt{20}$.""", True)

R("radical_pi", "llama", r"4\sqrt{5}", r"""## Step 1: Apply the Pythagorean theorem.
$c^2 = 4^2 + 8^2 = 16 + 64 = 80$.

## Step 2: Take the square root and simplify.
$c = \sqrt{80} = \sqrt{16 \cdot 5} = 16\sqrt{5}$.

The final answer is: $\boxed{16\sqrt{5}}$""", False)

A("radical_pi", r"4\pi", r"4\pi^2", False)

# ---------------------------------------------------------------- expression
A("expression", "x^2+1", "1+x^2", True)

R("expression", "qwen_math", "x^2-5x+6", r"""A monic quadratic whose roots are $2$ and $3$ must be the product of the factors $x - 2$ and $x - 3$. Hence
$$p(x) = (x-2)(x-3).$$
\boxed{(x-2)(x-3)}""", True)

A("expression", "(x-2)(x-3)", "(x+2)(x+3)", False)
A("expression", "2x+3", "3+2x", True)
A("expression", "2x+3", "2x-3", False)
A("expression", r"\frac{x+1}{x-1}", r"\frac{1+x}{x-1}", True)
A("expression", r"\frac{x+1}{x-1}", r"\frac{x-1}{x+1}", False)
A("expression", r"\sin 2x", r"2\sin x\cos x", True)
A("expression", r"\ln 6", r"\ln 2 + \ln 3", True)
A("expression", r"\ln 6", r"\ln 5", False)

R("expression", "r1", "3x^2-2x", r"""<think>
Derivative of x^3 - x^2 + 7. Power rule: 3x^2 - 2x + 0. So f'(x) = 3x^2 - 2x.
</think>

Using the power rule term by term:

- $\frac{d}{dx}x^3 = 3x^2$
- $\frac{d}{dx}(-x^2) = -2x$
- $\frac{d}{dx}7 = 0$

So $f'(x) = \boxed{3x^2 - 2x}$.""", True)

R("expression", "qwen_math", "3x^2-2x", r"""To differentiate $f(x) = x^3 - x^2 + 7$, we apply the power rule to each term. The derivative of $x^3$ is $3x^2$ and the derivative of $x^2$ is $2x$. Therefore
\[f'(x) = 3x^2 - 2x + 7.\]
The answer is $\boxed{3x^2 - 2x + 7}$.""", False)

A("expression", r"\frac{x^4}{4}+C", r"\frac{1}{4}x^4 + C", True)
A("expression", "x^3+3x^2+3x+1", "(x+1)^3", True)
A("expression", "(x+1)^3", "(x-1)^3", False)
A("expression", "a^2-b^2", "(a-b)(a+b)", True)

R("expression", "gemini", "4x^2-12x+9", r"""To expand $(2x - 3)^2$, use $(a - b)^2 = a^2 - 2ab + b^2$ with $a = 2x$ and $b = 3$:

* $a^2 = 4x^2$
* $2ab = 2(2x)(3) = 12x$
* $b^2 = 9$

**Answer:** $4x^2 - 12x + 9$""", True)

R("expression", "mistral", "4x^2-12x+9", r"""We square each term: $(2x - 3)^2 = (2x)^2 - (3)^2 = 4x^2 - 9$. Therefore, the expanded form is $4x^2 - 9$.""", False)

A("expression", "e^{2x}", "(e^x)^2", True)
A("expression", "-2x+5", "5-2x", True)

R("expression", "gpt", "x+2", r"""Factor the numerator first:

$$
x^2 + 5x + 6 = (x + 2)(x + 3)
$$

Then cancel the common factor (for $x \neq -3$):

$$
\frac{(x + 2)(x + 3)}{x + 3} = x + 2
$$

### Answer
$$x + 2$$""", True)

R("expression", "claude", "x+2", r"""The numerator factors as $(x+2)(x+3)$. Dividing it by $x + 2$ leaves $x + 3$.

So the simplified expression is $x + 3$.""", False)

A("expression", "6x^2+x-2", "(2x-1)(3x+2)", True)
A("expression", "6x^2+x-2", "(2x+1)(3x-2)", False)
A("expression", r"\frac{1}{x^2}", "x^{-2}", True)

R("expression", "llama", r"-\frac{1}{x^2}", r"""## Step 1: Rewrite the function using a negative exponent.
$\frac{1}{x} = x^{-1}$

## Step 2: Apply the power rule.
$\frac{d}{dx} x^{-1} = -1 \cdot x^{-2}$

## Step 3: Simplify.
Since $x^{-2} = \frac{1}{x^2}$, the derivative is $\frac{1}{x^2}$.

The final answer is: $\boxed{\frac{1}{x^2}}$""", False)

A("expression", r"-\frac{1}{x^2}", "-x^{-2}", True)
A("expression", r"\cos 2x", r"\cos^2 x - \sin^2 x", True)

A("expression", "x^2-2x+1", "(x+1)^2", False)
A("expression", r"\frac{x^4}{4}+C", r"\frac{x^3}{3}+C", False)
A("expression", r"\sin 2x", r"2\sin x", False)

# ---------------------------------------------------------------- equation
A("equation", "5", "x=5", True)
A("equation", "5", "x=-5", False)
A("equation", "2x+3", "y=2x+3", True)
A("equation", "2x+3", "y=3x+2", False)
A("equation", r"\pm 3", r"x = 3 \text{ or } x = -3", True)

R("equation", "qwen_math", r"\pm 3", r"""We solve $x^2 - 9 = 0$:
$$x^2 = 9 \implies x = 3.$$
So the solution is $\boxed{3}$.""", False)

A("equation", "3, -3", "-3,3", True)

R("equation", "claude", "1, 4", r"""Factoring, $x^2 - 5x + 4 = (x - 1)(x - 4)$, so the equation holds when $x = 4$ or $x = 1$.

Both values check out in the original equation, so the solutions are $x = 4$ and $x = 1$.""", True)

A("equation", "1,4", "1, -4", False)
A("equation", r"y=-\frac{1}{2}x+4", r"y = 4 - \frac{x}{2}", True)

R("equation", "gpt", r"y=-\frac{1}{2}x+4", r"""We need the line through $(0, 4)$ and $(8, 0)$.

**Slope:**
$$
m = \frac{8 - 0}{0 - 4} = -2
$$

**Intercept:** The line passes through $(0, 4)$, so $b = 4$.

**Final Answer:** $y = -2x + 4$""", False)

A("equation", "x^2+y^2=25", "y^2+x^2=25", True)
A("equation", "(x-1)^2+(y+2)^2=9", "(x-1)^2+(y-2)^2=9", False)
A("equation", "(x-1)^2+(y+2)^2=9", "(y+2)^2+(x-1)^2=9", True)

R("equation", "qwen_math", "7", r"""To solve $3x - 4 = 17$, first add $4$ to both sides:
$$3x = 21.$$
Then divide both sides by $3$:
$$x = 7.$$
Check: $3(7) - 4 = 21 - 4 = 17$. ✓

\boxed{7}""", True)

R("equation", "mistral", "7", r"""Subtracting 4 from both sides of 3x - 4 = 17 gives 3x = 13, and dividing by 3 gives x = 13/3. Therefore, the solution is $x = \frac{13}{3}$.""", False)

R("equation", "r1", "-2", r"""<think>
5x + 3 = 2x - 3. Subtract 2x: 3x + 3 = -3. Subtract 3: 3x = -6. x = -2. Check: 5(-2)+3 = -7, 2(-2)-3 = -7. Good.
</think>

Subtract $2x$ from both sides and then subtract $3$:

$$3x = -6 \quad\Longrightarrow\quad x = -2.$$

Check: $5(-2) + 3 = -7$ and $2(-2) - 3 = -7$.

$$\boxed{x=-2}$$""", True)

A("equation", r"2, -\frac{1}{3}", r"x=-\frac13 \text{ and } x=2", True)

R("equation", "gpt", r"2, -\frac{1}{3}", r"""Solve $3x^2 - 5x - 2 = 0$ by factoring.

### Step 1: Factor
$$
3x^2 - 5x - 2 = (3x - 1)(x + 2)
$$

### Step 2: Zero-product property
- $3x - 1 = 0 \Rightarrow x = \frac{1}{3}$
- $x + 2 = 0 \Rightarrow x = -2$

**Final Answer:** $x = -2, \frac{1}{3}$""", False)

A("equation", "4", "k = 4", True)
A("equation", "x=4", "4", True)

R("equation", "llama", r"1\pm\sqrt{2}", r"""## Step 1: Identify the coefficients.
For $x^2 - 2x - 1 = 0$ we have $a = 1$, $b = -2$, $c = -1$.

## Step 2: Compute the discriminant.
$b^2 - 4ac = 4 + 4 = 8$.

## Step 3: Apply the quadratic formula.
$x = \frac{2 \pm \sqrt{8}}{2} = \frac{2 \pm 2\sqrt{2}}{2} = 1 \pm \sqrt{2}$.

The final answer is: $\boxed{1+\sqrt{2}, 1-\sqrt{2}}$""", True)

A("equation", r"1\pm\sqrt{2}", r"-1\pm\sqrt{2}", False)

R("equation", "olmo", "(2,3)", r"""Adding the two equations x + y = 5 and x - y = -1 gives 2x = 4, so x = 2. Substituting back into the first equation, 2 + y = 5, so y = 3. The solution is x = 2, y = 3.""", True)

A("equation", "(2,3)", "x=3, y=2", False)

R("equation", "claude", "10", r"""Rewriting $\log_2(x - 2) = 3$ in exponential form gives $x - 2 = 2^3 = 8$, so $x = 10$. This value is in the domain, since $x - 2 = 8 > 0$.

The solution is $x = 10$.""", True)

R("equation", "gemini", "10", r"""**Step 1:** Convert the logarithm to exponential form: $x - 2 = 3^2$.

**Step 2:** $3^2 = 9$, so $x - 2 = 9$.

**Step 3:** Add 2 to both sides.

**Answer: $x = 11$**""", False)

A("equation", r"-\frac{3}{2}", r"x = -\frac{2}{3}", False)

# ---------------------------------------------------------------- interval_set
A("interval_set", "[-2,7)", "[-2, 7)", True)
A("interval_set", "[-2,7)", "(-2,7)", False)
A("interval_set", "[-2,7)", r"-2 \le x < 7", True)
A("interval_set", "[-2,7)", r"-2 < x \le 7", False)

R("interval_set", "r1", r"(-\infty,-1)\cup(3,\infty)", r"""<think>
Solve x^2 - 2x - 3 > 0. Factor: (x - 3)(x + 1). Roots -1 and 3. Parabola opens upward so it's positive outside the roots: x < -1 or x > 3. Strict inequality, so open intervals.
</think>

Factoring gives $(x-3)(x+1) > 0$. The roots are $x=-1$ and $x=3$, and since the parabola opens upward, the expression is positive outside the roots.

$$\boxed{(-\infty,-1)\cup(3,\infty)}$$""", True)

R("interval_set", "qwen_math", r"(-\infty,-1)\cup(3,\infty)", r"""We factor: $x^2 - 2x - 3 = (x-3)(x+1)$. The critical points are $x = -1$ and $x = 3$. Testing $x = 0$: $(0-3)(0+1) = -3$. Hence the inequality $x^2 - 2x - 3 > 0$ holds on $\boxed{(-1, 3)}$.""", False)

A("interval_set", r"(-\infty,-1)\cup(3,\infty)", r"x<-1 \text{ or } x>3", True)
A("interval_set", r"(-\infty,-1]\cup[3,\infty)", r"(-\infty,-1)\cup(3,\infty)", False)
A("interval_set", r"\{1,2,3\}", r"\{3,1,2\}", True)
A("interval_set", r"\{1,2,3\}", r"\{1,2,4\}", False)
A("interval_set", "-1, 2", "2, -1", True)
A("interval_set", "(3,-1)", "(-1,3)", False)

R("interval_set", "gpt", "(3,-1)", r"""Set the two expressions for $y$ equal:

$$
x - 4 = -2x + 5 \implies 3x = 9 \implies x = 3
$$

Substitute back: $y = 3 - 4 = -1$.

**Final Answer:** The lines intersect at $(3, -1)$.""", True)

A("interval_set", r"[0,\infty)", r"x \geq 0", True)
A("interval_set", r"[0,\infty)", r"(0,\infty)", False)
A("interval_set", "(1,2,3)", "(1,3,2)", False)
A("interval_set", r"\mathbb{R}", r"(-\infty, \infty)", True)

R("interval_set", "r1", "[2,5]", r"""<think>
|2x - 7| ≤ 3 means -3 ≤ 2x - 7 ≤ 3. Add 7: 4 ≤ 2x ≤ 10. Divide by 2: 2 ≤ x ≤ 5. Endpoints included because of ≤. So [2, 5].

Quick check: x = 2 gives |4 - 7| = 3 ✓, x = 5 gives |10 - 7| = 3 ✓, x = 6 gives 5 > 3 ✗.
</think>

$$|2x-7|\le 3 \iff -3\le 2x-7\le 3 \iff 2\le x\le 5.$$

The solution set is $\boxed{[2,5]}$.""", True)

R("interval_set", "mistral", "[2,5]", r"""The inequality $|2x - 7| \le 3$ means $2x - 7$ is between $-3$ and $3$. Adding 7 gives $4 < 2x < 10$, so $2 < x < 5$. In interval notation, the solution is $(2, 5)$.""", False)

A("interval_set", r"(-3,\infty)", "x>-3", True)
A("interval_set", r"(-3,\infty)", r"(3,\infty)", False)

R("interval_set", "gpt", r"\{2,3,5,7\}", r"""The primes less than 10 are the numbers greater than 1 with no divisors other than 1 and themselves:

- 2 ✔️
- 3 ✔️
- 4 = 2 × 2 ✖️
- 5 ✔️
- 6 = 2 × 3 ✖️
- 7 ✔️
- 8 = 2 × 4 ✖️
- 9 = 3 × 3 ✖️

**Final Answer:** $\{2, 3, 5, 7\}$""", True)

R("interval_set", "olmo", r"\{2,3,5,7\}", r"""The prime numbers less than 10 are the ones that can only be divided evenly by 1 and themselves. These are 1, 2, 3, 5, and 7. So the set is {1, 2, 3, 5, 7}.""", False)

A("interval_set", r"(-\infty, 2]", r"(-\infty, 2)", False)
A("interval_set", "(1,4)", "1<x<4", True)

R("interval_set", "claude", "(-2,5)", r"""The function is already in vertex form $y = a(x - h)^2 + k$: writing $(x + 2)^2$ as $(x - (-2))^2$ shows $h = -2$, and $k = 5$.

The vertex is at $(-2, 5)$.""", True)

R("interval_set", "llama", "(-2,5)", r"""## Step 1: Recall the vertex form of a parabola.
The vertex form is $y = a(x - h)^2 + k$, where $(h, k)$ is the vertex.

## Step 2: Read off h and k.
Comparing $y = (x + 2)^2 + 5$ with the vertex form, $h = 2$ and $k = 5$.

The final answer is: $\boxed{(2,5)}$""", False)

# ---------------------------------------------------------------- vector_matrix
A("vector_matrix", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", "(1,2)", True)
A("vector_matrix", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}", False)
A("vector_matrix", r"\begin{pmatrix} 3 \\ -1 \\ 4 \end{pmatrix}", r"\begin{bmatrix} 3 \\ -1 \\ 4 \end{bmatrix}", True)
A("vector_matrix", r"\begin{pmatrix} 3 \\ -1 \\ 4 \end{pmatrix}", r"\begin{pmatrix} 3 \\ 1 \\ 4 \end{pmatrix}", False)
A("vector_matrix", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", True)
A("vector_matrix", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}", False)

R("vector_matrix", "gpt", r"\begin{pmatrix} 2 & -1 \\ -5 & 3 \end{pmatrix}", r"""For a $2 \times 2$ matrix $A = \begin{pmatrix} a & b \\ c & d \end{pmatrix}$, the inverse is

$$
A^{-1} = \frac{1}{ad - bc}\begin{pmatrix} d & -b \\ -c & a \end{pmatrix}.
$$

Here $A = \begin{pmatrix} 3 & 1 \\ 5 & 2 \end{pmatrix}$, so $\det A = 3 \cdot 2 - 1 \cdot 5 = 1$.

$$
A^{-1} = \begin{pmatrix} 2 & -1 \\ -5 & 3 \end{pmatrix}
$$

**Final Answer:**
$$
\begin{pmatrix} 2 & -1 \\ -5 & 3 \end{pmatrix}
$$""", True)

R("vector_matrix", "qwen_math", r"\begin{pmatrix} 2 & -1 \\ -5 & 3 \end{pmatrix}", r"""The determinant is $3\cdot 2 - 1\cdot 5 = 1$. Swapping the diagonal entries and negating the off-diagonal entries, we obtain
\[
A^{-1} = \begin{pmatrix} 2 & -5 \\ -1 & 3 \end{pmatrix}.
\]
\boxed{\begin{pmatrix} 2 & -5 \\ -1 & 3 \end{pmatrix}}""", False)

A("vector_matrix", r"\begin{pmatrix} \frac{1}{2} \\ 1 \end{pmatrix}", r"\begin{pmatrix} 0.5 \\ 1 \end{pmatrix}", True)
A("vector_matrix", r"\begin{pmatrix} 0 \\ 0 \\ 1 \end{pmatrix}", "(0, 0, -1)", False)

R("vector_matrix", "qwen_math", r"\begin{pmatrix} -3 \\ 6 \\ -3 \end{pmatrix}", r"""We compute the cross product component by component:
\begin{align*}
\mathbf{a} \times \mathbf{b} &= \begin{pmatrix} 2\cdot 6 - 3\cdot 5 \\ 3\cdot 4 - 1\cdot 6 \\ 1\cdot 5 - 2\cdot 4 \end{pmatrix} \\
&= \begin{pmatrix} 12 - 15 \\ 12 - 6 \\ 5 - 8 \end{pmatrix} \\
&= \begin{pmatrix} -3 \\ 6 \\ -3 \end{pmatrix}.
\end{align*}
Therefore, the answer is $\boxed{\begin{pmatrix} -3 \\ 6 \\ -3 \end{pmatrix}}$.""", True)

R("vector_matrix", "r1", r"\begin{pmatrix} -3 \\ 6 \\ -3 \end{pmatrix}", r"""<think>
Cross product of (1,2,3) and (4,5,6). i component: 2*6 - 3*5 = 12 - 15 = -3. j component: 1*6 - 3*4 = 6 - 12 = -6. k component: 1*5 - 2*4 = -3.

So (-3, -6, -3).
</think>

Using the determinant formula for the cross product:

- $i$: $2\cdot 6 - 3\cdot 5 = -3$
- $j$: $1\cdot 6 - 3\cdot 4 = -6$
- $k$: $1\cdot 5 - 2\cdot 4 = -3$

$$\mathbf a\times\mathbf b = \boxed{\begin{pmatrix}-3\\-6\\-3\end{pmatrix}}$$""", False)

R("vector_matrix", "llama", "-2", r"""## Step 1: Recall the formula for a 2x2 determinant.
For $\begin{pmatrix} a & b \\ c & d \end{pmatrix}$, the determinant is $ad - bc$.

## Step 2: Substitute the entries.
$ad - bc = (1)(4) - (2)(3) = 4 - 6 = -2$.

The final answer is: $\boxed{-2}$""", True)

R("vector_matrix", "claude", "-2", r"""For a $2\times 2$ matrix the determinant is the difference of the diagonal products. Here the products are $2 \cdot 3 = 6$ and $1 \cdot 4 = 4$, giving $6 - 4 = 2$.

The determinant is 2.""", False)

A("vector_matrix", r"\begin{pmatrix} 4 \\ -2 \end{pmatrix}", r"\langle 4, -2 \rangle", True)
A("vector_matrix", r"\begin{pmatrix} 4 \\ -2 \end{pmatrix}", r"\langle -2, 4\rangle", False)

R("vector_matrix", "r1", r"\begin{pmatrix} 3 \\ 0 \end{pmatrix}", r"""<think>
Projection of v = (3,4) onto u = (1,0). Formula: (v·u / u·u) u. v·u = 3, u·u = 1. So 3·(1,0) = (3,0). Makes sense, projecting onto the x-axis just keeps the x-component.
</think>

$$\operatorname{proj}_{\mathbf u}\mathbf v=\frac{\mathbf v\cdot\mathbf u}{\mathbf u\cdot\mathbf u}\,\mathbf u=\frac{3}{1}\begin{pmatrix}1\\0\end{pmatrix}=\boxed{\begin{pmatrix}3\\0\end{pmatrix}}$$<｜end▁of▁sentence｜>""", True)

R("vector_matrix", "gemini", r"\begin{pmatrix} 6 & 8 \\ 10 & 12 \end{pmatrix}", r"""To add two matrices, add the entries in matching positions:

* Top row: $1 + 5 = 6$, $2 + 6 = 8$
* Bottom row: $3 + 7 = 10$, $4 + 8 = 12$

**Result:**
$$\begin{bmatrix} 6 & 8 \\ 10 & 12 \end{bmatrix}$$""", True)

R("vector_matrix", "mistral", r"\begin{pmatrix} 2 & 1 \\ 4 & 3 \end{pmatrix}", r"""Multiplying by the permutation matrix $\begin{pmatrix} 0 & 1 \\ 1 & 0 \end{pmatrix}$ swaps the rows of the matrix. Therefore, the product is $\begin{pmatrix} 3 & 4 \\ 1 & 2 \end{pmatrix}$.""", False)

R("vector_matrix", "claude", "32", r"""Multiplying matching components and adding: $1\cdot 4 + 2 \cdot 5 + 3 \cdot 6 = 4 + 10 + 18 = 32$.

The dot product is 32.""", True)

A("vector_matrix", r"\begin{pmatrix} -6 \\ 9 \end{pmatrix}", "(-6, 9)", True)
A("vector_matrix", r"\begin{pmatrix} -6 \\ 9 \end{pmatrix}", "(6, -9)", False)

R("vector_matrix", "gemini", r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}", r"""Let's square the matrix $A = \begin{bmatrix} 0 & 1 \\ 1 & 0 \end{bmatrix}$:

* Entry (1,1): $0\cdot0 + 1\cdot1 = 1$
* Entry (1,2): $0\cdot1 + 1\cdot0 = 0$
* Entry (2,1): $1\cdot0 + 0\cdot1 = 0$
* Entry (2,2): $1\cdot1 + 0\cdot0 = 1$

**Answer:** $A^2 = \begin{bmatrix} 1 & 0 \\ 0 & 1 \end{bmatrix}$""", True)

A("vector_matrix", r"\begin{pmatrix} 5 \\ -1 \end{pmatrix}", r"\begin{pmatrix} 5 \\ -1 \\ 0 \end{pmatrix}", False)
A("vector_matrix", r"\begin{pmatrix} -1 \\ 4 \end{pmatrix}", r"\left( -1, 4 \right)", True)
A("vector_matrix", r"\begin{pmatrix} 2 & 0 \\ 0 & 3 \end{pmatrix}", r"\begin{pmatrix}2&0\\0&-3\end{pmatrix}", False)

A("vector_matrix", r"\begin{pmatrix} 1 \\ -2 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \\ -2 \end{pmatrix}", False)

# ---------------------------------------------------------------- choice
A("choice", r"\text{(C)}", "C", True)
A("choice", r"\text{(C)}", "(C)", True)
A("choice", r"\text{(C)}", "(D)", False)
A("choice", "C", "Answer: C", True)
A("choice", "C", "Answer: B", False)

R("choice", "gpt", "B", r"""Let the number of students be $n$. Since $\frac{3}{4}n = 18$, we get $n = 24$.

Checking the options: (A) 18, (B) 24, (C) 27, (D) 32.

**Final Answer:** (B) 24""", True)

R("choice", "gemini", "B", r"""Let's compare the options:

* (A) $2^{10}$
* (B) $3^7$
* (C) $4^4$
* (D) $5^3$

The option with the largest base is $5^3$, and a bigger base grows faster.

**The correct choice is (D).**""", False)

R("choice", "llama", r"\text{(E)}", r"""## Step 1: Compute 15% of 80.
$0.15 \times 80 = 12$.

## Step 2: Match the result to the answer choices.
The choices are (A) 8, (B) 9, (C) 10, (D) 11, (E) 12, so the value 12 corresponds to choice (E).

The final answer is: $\boxed{E}$""", True)

R("choice", "r1", r"\text{(E)}", r"""<think>
We want the largest of (A) 0.7, (B) 0.65, (C) 0.607, (D) 0.6999, (E) 0.71.

My first instinct is E, 0.71. But let me line them up. 0.7 has the digit 7 in the tenths place. 0.71 also has 7 in the tenths place, then 1 in the hundredths. And 0.6999 is very close to 0.7.

Actually, wait. I think I'm overcomplicating it. 0.7 is a clean seven tenths, and the others are all six-tenths-something or have extra digits tacked on.

I'll go with A since seven tenths beats the others.
</think>

Comparing the decimals by their tenths digit, (A) $0.7$ is the largest.

$\boxed{A}$""", False)

A("choice", "A", r"\boxed{\text{A}}", True)

R("choice", "qwen_math", "(A)", r"""The sum of the interior angles of a hexagon is $(6-2)\cdot 180^\circ = 720^\circ$, which matches choice (A).

\boxed{(A)}""", True)

R("choice", "claude", "D", r"""Let me test each option in $2x + 5 > 17$, which simplifies to $x > 6$.

Options A (4), B (5), and C (6) are all too small, since none of them is greater than 6. Option D is 7, which works because $2(7) + 5 = 19 > 17$.

So the answer must be D.""", True)

R("choice", "olmo", "A", r"""Option B, 87, is divisible by 3 because 8 + 7 = 15, and option D, 51, is divisible by 3 as well. Option C, 91, is not divisible by 2, 3, or 5, so 91 is prime. The answer is C.""", False)

R("choice", "mistral", "B", r"""The ratio of boys to girls is 2:3, so girls make up 3/5 of the class. With 30 students, the number of girls is 3/5 × 30 = 18. The answer is 18, which is option (B).""", True)

A("choice", r"\text{(D)}", r"\textbf{(D)}", True)
A("choice", r"\text{(D)}", r"\textbf{(D) } 7", True)
A("choice", "D", r"\textbf{(B) } 5", False)

R("choice", "claude", "E", r"""Among $1, \dots, 20$ there are $\lfloor 20/3 \rfloor = 6$ multiples of 3 and $\lfloor 20/5 \rfloor = 4$ multiples of 5. The number 15 is counted twice, so the total is $6 + 4 - 1 = 9$.

That matches option (E) 9, so the answer is (E).""", True)

R("choice", "gemini", "C", r"""The perimeter of the rectangle is $2(8 + 5) = 26$ cm. Looking at the answer choices, (A) lists 26 cm.

**Answer: (A)**""", False)

R("choice", "mistral", "A", r"""We are asked for the probability that a randomly chosen card from {1, 2, 3, 4} is not 4. Three of the four cards are not 4, so the probability is 3/4.

The correct answer is A) 3/4.""", True)

R("choice", "gpt", "A", r"""At first it looks like **(A)** is correct, since $x = 2$ satisfies the first equation.

However, checking the second equation: $3(2) - 1 = 5 \neq 7$, so (A) fails. Trying (C) $x = \frac{8}{3}$: $3 \cdot \frac{8}{3} - 1 = 7$ ✓.

### Answer
**(C)**""", False)

R("choice", "olmo", "C", r"""I initially thought the answer was (A) because 12 is divisible by 4. However, the number must also be divisible by 9, and 12 is not. Checking (B), 18 is divisible by 9 but not by 4. Option (C), 36, is divisible by both 4 and 9. The correct answer is (C).""", True)

A("choice", r"\text{(B)}", "B)", True)
A("choice", "D", "Answer: (D)", True)

R("choice", "minerva", "B", r"""Since $f(2) = 4 - 6 + 5 = 3$, the only listed value that matches is choice (B).
Final Answer: The final answer is $\text{(B)}$. I hope it is correct.""", True)

A("choice", r"\text{(A)}", "(E)", False)
A("choice", r"\text{(B)}", r"\textbf{(E)}", False)

R("choice", "llama", r"\text{(A)}", r"""## Step 1: Evaluate the power.
$2^6 = 2 \cdot 2 \cdot 2 \cdot 2 \cdot 2 = 32$.

## Step 2: Match with the options.
The options are (A) 64, (B) 32, (C) 16, (D) 12, so the value matches option (B).

The final answer is: $\boxed{B}$""", False)

R("choice", "claude", "D", r"""Option (D), 5/12 ≈ 0.42, looks tempting at first. But (B) 3/8 = 0.375 feels closer to 0.4, since both start with a 3 or 4 in the tenths place and 3/8 is a simpler fraction.

So the answer is (B).""", False)

# ---------------------------------------------------------------- units_text
R("units_text", "claude", "15", r"""The perimeter is the sum of the three side lengths: $4 + 5 + 6 = 15$.

The perimeter of the triangle is 15 cm.""", True)

A("units_text", r"15\text{ cm}", "15 cm", True)
A("units_text", r"2\text{ hours}", "2 minutes", False)

R("units_text", "plain", "3", r"""Time = distance ÷ speed = 180 ÷ 60 = 3. It takes the train 3 hours.""", True)

A("units_text", r"\text{Tuesday}", "Tuesday", True)
A("units_text", r"\text{Tuesday}", "Thursday", False)
A("units_text", r"30^\circ", "30 degrees", True)
A("units_text", r"30^\circ", r"60^\circ", False)

R("units_text", "gpt", "120", r"""The sum of the interior angles of a hexagon is $(6 - 2) \times 180^\circ = 720^\circ$. A regular hexagon has six equal angles, so each one measures

$$
\frac{720^\circ}{6} = 120^\circ.
$$

**Final Answer:** Each interior angle is $120^\circ$.""", True)

R("units_text", "r1", "48", r"""<think>
Round trip, same distance each way. Say the distance is d. Time going = d/40, time back = d/60. Total time = d/40 + d/60 = 3d/120 + 2d/120 = 5d/120 = d/24. Total distance 2d. Average speed = 2d / (d/24) = 48.

Not 50, since more time is spent at the slower speed.
</think>

Let the one-way distance be $d$ km. The total time is $\frac{d}{40}+\frac{d}{60}=\frac{d}{24}$ hours, so the average speed is

$$\frac{2d}{d/24}=48\text{ km/h}.$$

\boxed{48\text{ km/h}}""", True)

R("units_text", "olmo", "48", r"""To find the average speed, we take the average of the two speeds: (40 + 60) / 2 = 50. So the car's average speed for the whole trip is 50 km/h.""", False)

A("units_text", "6", r"6 \text{ cm}^2", True)
A("units_text", "2.50", "2.50 dollars", True)

R("units_text", "gemini", r"\text{Thursday}", r"""* 100 days is 14 full weeks plus 2 extra days ($14 \times 7 = 98$).
* The 14 full weeks bring us back to Tuesday.
* Two more days: Tuesday → Wednesday → Thursday.

**100 days after Tuesday is a Thursday.**""", True)

R("units_text", "mistral", r"\text{Thursday}", r"""Since 100 = 7 × 14 + 2, the day of the week shifts by 2. Counting Tuesday itself as the first day, the second day is Wednesday. Therefore, 100 days after Tuesday is a Wednesday.""", False)

A("units_text", r"\text{even}", "even", True)
A("units_text", r"\text{neither}", r"\text{odd}", False)
A("units_text", r"4\text{ inches}", "4 in.", True)
A("units_text", r"4\text{ inches}", "4 feet", False)

R("units_text", "gsm8k", "12", r"""Sara buys 2 dozen eggs, which is 2 * 12 = <<2*12=24>>24 eggs.
She uses 8 for a cake and 4 for breakfast, using 8 + 4 = <<8+4=12>>12 eggs.
She has 24 - 12 = <<24-12=12>>12 eggs left.
#### 12""", True)

R("units_text", "r1", r"45^\circ", r"""<think>
Right isosceles triangle: the two legs are equal, so the two acute angles are equal. They add to 90°, so each is 45°.
</think>

In a right isosceles triangle the two acute angles are equal and sum to $90^\circ$, so each measures $\boxed{45^\circ}$.""", True)

R("units_text", "qwen_math", r"45^\circ", r"""Each acute angle in the triangle is $\frac{90^\circ}{2}=45^\circ$, so the angle formed with the extension of the base is $180^\circ - 45^\circ$.
\[\boxed{135^\circ}\]""", False)

A("units_text", r"\text{Carla}", "Carla", True)

R("units_text", "claude", r"\text{Carla}", r"""Let me line up the clues. Ana finished before Bea, and Carla finished after Bea, so the order among those three is Ana, Bea, Carla. Dan finished last.

That puts Bea in third place among the runners who finished before Dan, so the runner we're looking for is Bea.""", False)

A("units_text", r"2\text{ hours}", "2 hours", True)

R("units_text", "llama", "90", r"""## Step 1: Note the start and end times.
The movie starts at 7:15 PM and ends at 8:45 PM.

## Step 2: Find the difference.
From 7:15 to 8:15 is 60 minutes, and from 8:15 to 8:45 is 30 more minutes, for 90 minutes total.

The final answer is: $\boxed{90 \text{ minutes}}$""", True)

R("units_text", "gpt", "90", r"""Subtract the start time from the end time:

- End: 8.45
- Start: 7.15
- Difference: 8.45 − 7.15 = 1.30

**Final Answer:** The movie is **130 minutes** long.""", False)

A("units_text", r"5\text{ km}", "5 m", False)
A("units_text", r"\text{odd}", "even", False)

R("units_text", "gemini", r"\text{Saturday}", r"""* Today is Wednesday.
* 10 days = 1 week + 3 days.
* Three days after Wednesday: Thursday, Friday, Saturday... counting from today, that lands on **Friday**.

**Answer: Friday**""", False)

# ---------------------------------------------------------------- extraction
R("extraction", "claude", "17", r"""The two numbers are 5 and 12, and the problem asks for their sum.

Final Answer: 17. Let me double-check: 5 + 12 = 17, and 17 is indeed prime, which matches the condition in the problem.""", True)

R("extraction", "mistral", "12", r"""The larger number is 12 and the smaller is 5, so the quantity asked for, their sum, is 17.

Final Answer: 17

Check: 12 − 5 = 7 ✓ and 12 + 5 = 17 ✓.""", False)

R("extraction", "gpt", r"\frac{5}{2}", r"""Add 1 to both sides to get $2x = 5$, then divide by 2.

Therefore, the answer is
\[
x = \frac{5}{2}.
\]""", True)

_DIAG = r"""Each vertex of the hexagon connects to $6 - 1 = 5$ others, so there are $\frac{6 \cdot 5}{2} = 15$ segments, giving $\boxed{15}$. Wait, that counts the sides too. Subtracting the $6$ sides, the number of diagonals is $15 - 6 = 9$.

\boxed{9}"""
R("extraction", "qwen_math", "9", _DIAG, True)
R("extraction", "qwen_math", "15", _DIAG, False)

R("extraction", "minerva", "24", r"""The four different books can be arranged in $4! = 4\cdot 3\cdot 2\cdot 1 = 24$ ways.
Final Answer: The final answer is $24$. I hope it is correct.""", True)

R("extraction", "minerva", "24", r"""Treating the two math books as a single block, there are $3! = 6$ ways to arrange the blocks and $2$ ways to order the math books inside the block, giving $6 \cdot 2 = 12$.
Final Answer: The final answer is $12$. I hope it is correct.""", False)

R("extraction", "qwen_math", "36", r"""The area of a square with side length $6$ is $6^2 = 36$.

Therefore, the area is $\boxed{36}$.<|im_end|>""", True)

R("extraction", "r1", "7", r"""<think>
64 = 2^6. Number of divisors is 6 + 1 = 7: 1, 2, 4, 8, 16, 32, 64. Yes, seven.
</think>

Since $64 = 2^6$, it has $6 + 1 = 7$ positive divisors: $1, 2, 4, 8, 16, 32, 64$.

\boxed{7}<｜end▁of▁sentence｜>""", True)

R("extraction", "qwen_math", "36", r"""We need $1 + 2 + \cdots + 8$. Using the formula $\frac{n(n-1)}{2}$ with $n = 8$, we get $\frac{8 \cdot 7}{2} = 28$.

So the sum is $\boxed{28}$.<|im_end|>""", False)

R("extraction", "claude", "14", r"""If the number is $n$, then $3n - 2 = 40$, so $3n = 42$ and $n = 14$.

The answer is 14. To verify: $3 \times 14 = 42$, and $42 - 2 = 40$, which matches the problem.""", True)

R("extraction", "gemini", "40", r"""Let the unknown number be $n$:

* $3n - 2 = 40$
* $3n = 42$
* $n = 14$

**Answer: 14**

Check: 3 × 14 = 42, and 42 − 2 = 40 ✓""", False)

_NEG = r"""We have -3x = 18. Dividing both sides by 3 gives x = 6. Wait, that's wrong — I need to divide by -3, not 3. So x = 18 / (-3) = -6. The correct answer is x = -6."""
R("extraction", "olmo", "-6", _NEG, True)
R("extraction", "olmo", "6", _NEG, False)

R("extraction", "llama", "11", r"""## Step 1: Isolate the variable.
Subtract 4 from both sides of $x + 4 = 15$ to get $x = 11$.

## Step 2: Verify.
$11 + 4 = 15$, which is correct.

$$\boxed{x = 11}$$""", True)

_FLOUR = r"""A recipe uses 1 kg of flour for 4 servings.

- 1 kg = 1000 g
- Per serving: 1000 ÷ 4 = 250 g

**Answer:** 250

(That is, 250 grams of flour per serving, out of 1000 grams in total.)"""
R("extraction", "gpt", "250", _FLOUR, True)
R("extraction", "gpt", "1000", _FLOUR, False)

R("extraction", "r1", "28", r"""<think>
How many handshakes among 8 people if each shakes hands once with every other? Each person shakes 7 hands, 8 × 7 = 56. Hmm, that double counts, each handshake involves two people. So 56 / 2 = 28.

Earlier I almost said 21, but that would be 7 people: 7·6/2 = 21. With 8 it's 28.
</think>

Each of the $8$ people shakes hands with $7$ others, and each handshake is counted twice, so the number of handshakes is

$$\binom{8}{2} = \frac{8\cdot 7}{2} = 28.$$

\boxed{28}""", True)

R("extraction", "r1", "28", r"""<think>
8 people, each pair shakes once. That's C(8,2) = 28.
</think>

Each of the 8 people shakes hands with the 7 others, so the total number of handshakes is $8 \times 7 = \boxed{56}$.""", False)

R("extraction", "gpt", "51", r"""We need the product of 3 and 17.

### Step 1
Multiply the tens: $3 \times 10 = 30$.

### Step 2
Multiply the ones: $3 \times 7 = 21$.

### Step 3
Add the partial products: $30 + 21 =""", False)

_CHAIRS = r"""It's tempting to just multiply 4 by 3 and get 12, but that ignores the 4 extra chairs set aside for the judges.

The answer is not 12; it is 16."""
R("extraction", "claude", "16", _CHAIRS, True)
R("extraction", "claude", "12", _CHAIRS, False)

R("extraction", "qwen_math", r"\frac{\sqrt{2}}{2}", r"""In a $45^\circ$-$45^\circ$-$90^\circ$ triangle with legs $1$, the hypotenuse is $\sqrt{2}$, so
$$\sin 45^\circ = \boxed{\frac{1}{\sqrt{2}}}.$$""", True)

R("extraction", "mistral", "9", r"""The number of students who play both sports is 15 + 12 − 18 = 9, since 18 students play at least one of the two.

ANSWER: 9""", True)

R("extraction", "gpt", "1024", r"""Each of the 10 questions can be answered in 2 ways (true or false), and the choices are independent.

$$
2 \times 2 \times \cdots \times 2 = 2^{10}
$$

**Final Answer**
\[
\boxed{1024}
\]""", True)

R("extraction", "gsm8k", "1050", r"""Each ticket costs $35 and 30 tickets were sold, so the total is 35 * 30 = <<35*30=1050>>1,050 dollars.
#### 1,050""", True)

R("extraction", "claude", "120", r"""There are $5! = 120$ ways to seat five friends in five chairs. Since rotations of the round table give the same seating, we divide by 5: $120 \div 5 = 24$.

Hence the number of distinct seatings is 24.""", False)

R("extraction", "llama", "8", r"""## Step 1: Count the vertices on the faces.
A cube has 6 faces, and each face has 4 vertices, giving 6 × 4 = 24 face-vertex pairs.

## Step 2: Correct for sharing.
Each vertex is shared by 3 faces, so the cube has 24 / 3 = 8 vertices.

The final answer is: $\boxed{8}$<|eot_id|>""", True)

R("extraction", "gemini", r"\frac{7}{12}", r"""To add $\frac{1}{3}$ and $\frac{1}{4}$, use the common denominator 12:

* $\frac{1}{3} = \frac{4}{12}$
* $\frac{1}{4} = \frac{3}{12}$

So, the answer is:

$$\frac{7}{12}$$""", True)

R("extraction", "gpt", "5", r"""Lena starts with 7 apples and gives 2 to her friend, so she has $7 - 2 = 5$ apples left.

**Answer:** 5 apples

*Note:* if she had given away 3 apples instead of 2, she would have had 4 left, but the problem says 2.""", True)

R("extraction", "minerva", "8", r"""A cube has $8$ vertices and $12$ edges. By Euler's formula $V - E + F = 2$, the number of faces is $F = 2 - 8 + 12 = 6$.
Final Answer: The final answer is $6$. I hope it is correct.""", False)

R("extraction", "llama", "11", r"""## Step 1: Isolate the variable.
Add 4 to both sides of $x + 4 = 15$ to get $x = 19$.

The final answer is: $\boxed{19}$<|eot_id|>""", False)

R("extraction", "gpt", r"\frac{5}{3}", r"""Cross-multiplying $\frac{x}{5} = \frac{1}{3}$ gives $3x = 5$.

Therefore, the answer is
\[
\frac{3}{5}.
\]""", False)

# ---------------------------------------------------------------- unicode
A("unicode", r"\sqrt{2}", "√2", True)
A("unicode", r"2\sqrt{2}", "2√2", True)
A("unicode", r"2\sqrt{2}", "2√3", False)
A("unicode", r"\frac{\pi}{2}", "π/2", True)
A("unicode", r"\frac{\pi}{2}", "π/4", False)
A("unicode", r"\frac{1}{2}", "½", True)
A("unicode", r"\frac{1}{2}", "¼", False)
A("unicode", r"\infty", "∞", True)
A("unicode", r"\infty", "−∞", False)
A("unicode", r"30^\circ", "30°", True)
A("unicode", r"30^\circ", "60°", False)
A("unicode", "42", "４２", True)
A("unicode", "42", "４３", False)
A("unicode", r"[-1, \infty)", "[−1, ∞)", True)
A("unicode", r"[-1,\infty)", "(−1, ∞)", False)
A("unicode", r"(-\infty,3]", "x ≤ 3", True)
A("unicode", r"(-\infty,3]", "x < 3", False)
A("unicode", r"\frac{3}{4}", "¾", True)
A("unicode", r"\frac{3}{4}", "⅓", False)
A("unicode", r"2\pi", "2π", True)
A("unicode", r"\sqrt[3]{5}", "∛5", True)
A("unicode", "x^2", "x²", True)
A("unicode", "x^2", "x³", False)

R("unicode", "claude", r"45^\circ", r"""The slope of $y = x$ is 1, and $\tan\theta = 1$ gives θ = 45°.

So the line makes an angle of 45° with the positive x-axis.""", True)

A("unicode", r"-\frac{1}{2}", "−½", True)
A("unicode", r"3\times10^{8}", "3×10⁸", True)
A("unicode", r"3\times10^{8}", "3×10⁶", False)

R("unicode", "gemini", r"\frac{\pi}{4}", r"""* The line $y = x$ has slope 1.
* The angle θ with the x-axis satisfies tan θ = 1.
* tan(π/3) = 1

**Answer: θ = π/3**""", False)

R("unicode", "gpt", r"5\sqrt{3}", r"""The altitude of an equilateral triangle splits it into two 30-60-90 triangles.

- Hypotenuse: 10
- Short leg: 10 ÷ 2 = 5
- Long leg (the height): 5 × √3

**Final Answer:** The height is 5√3 cm.""", True)

# ---------------------------------------------------------------- words
A("words", "42", "forty-two", True)
A("words", "42", "twenty-four", False)
A("words", r"\frac{3}{4}", "three quarters", True)
A("words", r"\frac{3}{4}", "three-fourths", True)
A("words", r"\frac{3}{4}", "three fifths", False)
A("words", "-5", "negative five", True)
A("words", "-5", "five", False)
A("words", "100", "one hundred", True)
A("words", "1000", "one hundred", False)

R("words", "claude", "12", r"""Each tray holds 12 muffins, and the baker has to bake 144 of them. Dividing, $144 \div 12 = 12$.

The baker needs twelve trays.""", True)

R("words", "gemini", "12", r"""* **Total muffins:** 144
* **Muffins per tray:** 12
* **Trays:** 144 ÷ 12 = 12
* **Extra tray for testing the oven:** 12 + 1 = 13

**The baker needs thirteen trays.**""", False)

A("words", r"\frac{1}{2}", "one half", True)
A("words", r"\frac{1}{2}", "one third", False)
A("words", "0", "zero", True)
A("words", "2500", "two thousand five hundred", True)
A("words", "2500", "twenty-five thousand", False)

R("words", "claude", "17", r"""Maya's brother is 6, and Maya is 5 years older than twice his age: $2 \times 6 + 5 = 17$.

Maya is seventeen years old.""", True)

A("words", "70", "seventeen", False)
A("words", "15", "fifty", False)

R("words", "mistral", "3", r"""Factoring x^3 - x = x(x - 1)(x + 1), we find the real solutions x = 0, x = 1, and x = -1. There are three real solutions.""", True)

R("words", "olmo", "2", r"""We factor x^3 - 4x^2 + 4x = x(x - 2)^2. Setting each factor to zero gives x = 0, x = 2, and x = 2 again. So the equation has three real solutions.""", False)

A("words", "1.5", "one and a half", True)
A("words", "1.5", "two and a half", False)
A("words", "-12", "minus twelve", True)
A("words", r"\frac{2}{3}", "two thirds", True)
A("words", r"\frac{2}{3}", "two ninths", False)
A("words", "1000000", "one million", True)
A("words", "1000000", "one billion", False)

R("words", "gpt", r"\frac{1}{4}", r"""- Maria ate $\frac{1}{2}$ of the pizza.
- Her brother ate $\frac{1}{4}$ of the pizza.
- Together they ate $\frac{1}{2} + \frac{1}{4} = \frac{3}{4}$.
- What is left: $1 - \frac{3}{4} = \frac{1}{4}$.

**Final Answer:** One quarter of the pizza is left.""", True)


def main():
    out = sys.stdout
    try:
        out.reconfigure(encoding="utf-8")
    except AttributeError:
        pass
    for i, case in enumerate(CASES):
        row = {"id": i, "category": case["category"], "kind": case["kind"],
               "style": case["style"], "gold": case["gold"],
               "prediction": case["prediction"], "expected": case["expected"]}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    # Summary on stderr so stdout stays pure JSONL.
    by_cat = Counter((c["category"], c["expected"]) for c in CASES)
    cats = sorted({c["category"] for c in CASES})
    for cat in cats:
        print(f"{cat:14s} true={by_cat[(cat, True)]:3d} false={by_cat[(cat, False)]:3d}",
              file=sys.stderr)
    n_true = sum(c["expected"] for c in CASES)
    print(f"total={len(CASES)} true={n_true} false={len(CASES) - n_true}", file=sys.stderr)


if __name__ == "__main__":
    main()
