"""The exact path against math-verify on generated answers: whatever it decides, math-verify
decides the same way on the same pair.

Seeded random strings, so a failure reproduces; real math-verify in this process's main thread.
The corpus test (test_math_agreement.py) covers answers from real reports; these cover shapes
nobody reported: malformed strings compared with themselves, and random well-formed expressions.
"""

import random

import pytest
from math_verify import parse, verify

from rlspec.runtime.reward.mathgrade import exact_verdict, wrap_reference

PIECES = ["1", "2", "x", "y", "a", "\\pi", "\\sqrt{2}", "\\frac{1}{2}", "(", ")", "[", "]", "{", "}", "+", "-", "*",
          "/", "^", "_", "=", ",", ".", "<", ">", "|", "'", "\\infty", "\\le", "A", "10", "0", "\\cup", "\\{", "\\}",
          "\\in", "e", "i", "\\log", "!", "n"]


def garbage(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6)))


def expression(rng: random.Random, depth: int = 0) -> str:
    """A random well-formed answer: numbers, letters, roots, fractions, powers, intervals, sets,
    tuples, relations, percents, degrees and implicit products (``2(3)``, ``2\\frac{1}{2}``)."""
    if depth > 2 or rng.random() < 0.35:
        return rng.choice(["1", "2", "7", "12", "0", "x", "y", "a", "n", "\\pi", "\\infty", "3.5", "0.5", "A", "e", "i",
                           str(rng.randint(0, 99)), f"{rng.randint(0, 99)}.{rng.randint(0, 99)}"])
    a, b = expression(rng, depth + 1), expression(rng, depth + 1)
    return rng.choice([f"\\sqrt{{{a}}}", f"\\frac{{{a}}}{{{b}}}", f"{a}+{b}", f"{a}-{b}", f"{a}^{{{b}}}", f"({a})", f"-{a}",
                       f"[{a},{b})", f"\\{{{a},{b}\\}}", f"{a}={b}", f"({a},{b})", "\\text{Tuesday}", f"{a}\\cdot {b}",
                       f"{a}{b}", f"{a}({b})", f"{a}<{b}", f"{a},{b}", f"{a}\\%", f"{a}^\\circ", f"{a} {b}"])


def number(rng: random.Random) -> str:
    n = rng.randint(-12, 40)
    return rng.choice([str(n), str(abs(n)), f"{n}.0", f"{n / 4}", f"\\frac{{{n}}}{{{rng.randint(2, 6)}}}", f"{n}/{rng.randint(2, 6)}",
                       f"\\text{{{abs(n)}}}", f"{abs(n)}^\\circ", f"\\dfrac{{{abs(n)}}}{{4}}"])


def shaped(rng: random.Random) -> str:
    """An answer of one of the exact path's shapes (or a near relative it must leave alone):
    numbers, assignments, intervals, tuples, sets, bare lists, thousands separators, words,
    choice letters, letters, LaTeX values, percents; ``shaped_list`` adds expanded and factored
    polynomials and lists of answers (hedges)."""
    a, b, c = number(rng), number(rng), number(rng)
    return rng.choice([
        a, f"{rng.choice('xyAeiEn')} = {a}", f"{rng.choice('([')}{a}, {b}{rng.choice(')]')}", f"({a}, {b}, {c})",
        f"\\{{{a}, {b}\\}}", f"{a}, {b}", f"{a}, {b}, {c}", f"\\left({a}, {b}\\right)", f"x = {a}, {b}",
        rng.choice(["\\text{", "\\textbf{"]) + rng.choice(["Tuesday", "tuesday", "Tues day", "odd", "Odd", "yes", "xy", "E"]) + "}",
        rng.choice(["\\text{(B)}", "(B)", "\\textbf{(B)}", "B", "\\text{B}", "b", "C", "\\text{(E)}", "E", "A", "\\text{(D)}"]),
        rng.choice(["x+1", "2x", "x^2", "a", "b", "n", "Friday", "Sunday"]), rng.choice(["2\\sqrt{3}", "\\sqrt{12}", "\\pi", "3\\pi"]),
        f"{rng.randint(1, 99)}\\%", f"{rng.randint(1, 999)},{rng.randint(0, 999):03d}", f"{rng.randint(1, 999)}, {rng.randint(0, 999):03d}",
        f"{rng.randint(1, 99)},{rng.randint(0, 99)}", f"{rng.randint(1, 99)},\\!{rng.randint(0, 999):03d}",
        f"{rng.randint(1, 99)},\\! {rng.randint(0, 999):03d}", f"{rng.randint(1, 30)}.5\\%",
        f"{rng.randint(1, 30)}" + rng.choice(["\\text{ cm}", " \\text{km}", "\\text{ and}", "\\text{ or }", "\\mbox{ m}^2", "\\text{ apples}",
                                          "\\text{ x}", "\\text{E}", "\\text{ cm}^{2}"]),
        f"{rng.randint(1, 30)}\\%",
    ])


def polynomial(rng: random.Random) -> str:
    p, q, v = rng.randint(-5, 5), rng.randint(-5, 5), rng.choice("xxxyn")
    return rng.choice([f"({v}{p:+d})({v}{q:+d})", f"{v}^2{-(p + q):+d}{v}{p * q:+d}", f"{v}^2{p + q:+d}{v}{p * q:+d}",
                       f"({v}{p:+d})^2", f"{rng.randint(2, 4)}({v}{p:+d})", f"{v}({v}{q:+d})", f"{v}^{{2}}{p * q:+d}",
                       f"-({v}{p:+d})", f"({v}{p:+d})\\cdot({v}{q:+d})", f"{v}^3{p:+d}", f"{rng.randint(1, 9)}{v}"])


def shaped_list(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return polynomial(rng)
    return ", ".join(shaped(rng) for _ in range(rng.randint(2, 3))) if roll < 0.35 else shaped(rng)


def disagreements(pairs) -> tuple[int, list]:
    decided, wrong = 0, []
    for answer, gold in pairs:
        verdict = exact_verdict(answer, gold)
        if verdict is None:
            continue
        decided += 1
        theirs = verify(parse(wrap_reference(gold)), parse(f"\\boxed{{{answer}}}"))
        if verdict != theirs:
            wrong.append((answer, gold, verdict))
    return decided, wrong


def test_an_answer_equal_to_its_reference_is_correct_only_when_math_verify_agrees():
    """The original "same plain string is correct" rule disagreed with math-verify on 755 of
    2,756 such strings ("{", "x^", "(1\\}"): math-verify parses one side and not the other."""
    rng = random.Random(7)
    strings = [garbage(rng) for _ in range(400)]
    decided, wrong = disagreements((s, s) for s in strings)
    assert not wrong
    assert decided > 50


def test_percents_against_numbers():
    """math-verify calls 9\\% equal to 9 and to 9/100, but not to \\text{9} (which the exact path
    normalises to 9): percent-vs-number pairs are left to math-verify, and none is decided wrongly."""
    numbers = ("1", "9", "75", "\\frac{3}{4}", "\\frac{1}{2}", "\\frac{3}{2}", "2", "\\text{25}", "\\text{9}")
    pairs = [(f"{p}\\%", n) for p in (1, 9, 25, 50, 75, 100, 150) for n in numbers]
    decided, wrong = disagreements(pairs + [(n, p) for p, n in pairs])
    assert not wrong and decided == 0


def test_random_expression_pairs_sample():
    rng = random.Random(11)
    pool = [expression(rng) for _ in range(200)]
    pairs = [(rng.choice(pool), rng.choice(pool)) for _ in range(300)]
    decided, wrong = disagreements(pairs + [(a, a) for a, _ in pairs[:60]])
    assert not wrong
    assert decided > 60


def test_random_shaped_answers_sample():
    rng = random.Random(13)
    pool = [shaped_list(rng) for _ in range(300)]
    decided, wrong = disagreements([(rng.choice(pool), rng.choice(pool)) for _ in range(500)])
    assert not wrong
    assert decided > 100


@pytest.mark.slow
def test_random_shaped_answers_many():
    """~12,000 pairs, ~150 s."""
    for seed in range(3):
        rng = random.Random(200 + seed)
        pool = [shaped_list(rng) for _ in range(600)]
        decided, wrong = disagreements([(rng.choice(pool), rng.choice(pool)) for _ in range(4000)])
        assert not wrong, wrong[:10]


@pytest.mark.slow
def test_random_expression_pairs_many():
    """~6,000 pairs, ~60 s."""
    for seed in range(3):
        rng = random.Random(100 + seed)
        pool = [expression(rng) for _ in range(400)]
        pairs = [(rng.choice(pool), rng.choice(pool)) for _ in range(1500)] + [(s, s) for s in pool[:300]]
        pairs += [(garbage(rng),) * 2 for _ in range(200)]
        decided, wrong = disagreements(pairs)
        assert not wrong, wrong[:10]
