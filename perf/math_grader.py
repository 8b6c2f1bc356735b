"""Benchmark: the math reward (grade_math) against calling math-verify directly, same pairs, same run.

Two rows, each graded by both, in one process:
1. RL-shaped traffic: 320 problems x 16 samples, graded in steps of 32 problems (512 responses),
   as a trainer does. Problems mix the answer forms of DeepScaleR/MATH/AIME: integers, fractions,
   decimals, radicals, multiples of pi, polynomials, tuples, sets of roots, intervals, units,
   percents, text, choice letters and LaTeX a CAS must compare (``KINDS``: 53% plain numbers, fewer than in DeepScaleR,
   which is mostly AIME/AMC integers; the old traffic had 77%). Each problem has a policy skill
   (Beta-distributed); a
   sample is correct with that probability, written as the reference or as one of its equivalent
   forms (2\\sqrt{3} / \\sqrt{12}, 0.75 / \\frac{3}{4}, roots boxed one by one), else wrong: mostly
   one of the problem's two or three near misses (an inverted fraction, a dropped root, a flipped
   bracket), since real policies repeat their mistakes, else a fresh wrong answer. Samples are
   boxed in the usual ways: once, twice (a summary and a "Final Answer"), after a corrected first
   attempt, hedged between two boxes, or stated without a box; 5% never close their thinking and
   4% give up. Duplicates within a step are what real groups produce, no more.
2. Distinct diverse answers: 1,200 (reference, answer) pairs, no two alike, half equivalent forms
   and half near misses, every kind as often (a fourteenth of them LaTeX only a CAS compares:
   radicals, logarithms, trigonometry, complex numbers, equations): what the grader costs when
   nothing repeats.
Peer: math-verify 0.9 called directly per response, in the main thread, the way a reward function
would: ``verify(parse($gold$), parse(text after </think>))`` (no tag -> 0). Ours:
``grade_math(..., boxes="all_boxes", unboxed_fallback=True)``, the knobs that read answers the way
math-verify does (several boxes, unboxed statements); the default knobs cost the same.
Goals (issue 15): >= 20x on RL-shaped traffic, >= 2x on distinct answers, 100% the same verdicts
on non-timeout items in both rows (the program exits 1 otherwise). The pool starts once per
process (timed separately). Run it on a quiet machine: it prints the load average.

    .venv/bin/python perf/math_grader.py      # prints a table, writes perf/results/math_grader.json
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from math_verify import parse, verify  # noqa: E402

from rlspec.runtime.reward import grade_math  # noqa: E402
from rlspec.runtime.reward.extract import final_text  # noqa: E402
from rlspec.runtime.reward.mathgrade import wrap_reference  # noqa: E402

HERE = Path(__file__).parent
KNOBS = {"boxes": "all_boxes", "unboxed_fallback": True}
PROBLEMS, SAMPLES, STEP_PROBLEMS, DISTINCT_PAIRS = 320, 16, 32, 1200
KINDS = {"int": 34, "frac": 14, "decimal": 5, "radical": 8, "pi": 5, "latex": 8, "poly": 5, "tuple": 6, "roots": 7,
         "interval": 6, "units": 4, "percent": 2, "text": 2, "choice": 2}
# (reference, equivalent forms, near misses) of answers only a CAS compares well
LATEX = [
    ("\\frac{1+\\sqrt{5}}{2}", ["\\frac{\\sqrt{5}+1}{2}", "\\dfrac{1+\\sqrt5}{2}"], ["\\frac{1-\\sqrt{5}}{2}", "\\frac{1+\\sqrt{3}}{2}"]),
    ("\\sqrt{2}+\\sqrt{3}", ["\\sqrt{3}+\\sqrt{2}"], ["\\sqrt{5}", "\\sqrt{6}"]),
    ("e^{2}", ["e^2"], ["2e", "e^{3}"]),
    ("\\ln 2", ["\\log 2"], ["\\ln 3", "2\\ln 2"]),
    ("\\frac{\\sqrt{3}}{2}", ["\\frac{1}{2}\\sqrt{3}", "\\sin\\frac{\\pi}{3}"], ["\\frac{\\sqrt{2}}{2}", "\\frac{1}{2}"]),
    ("2^{10}", ["1024"], ["2^{9}", "1000"]),
    ("x^2+y^2=1", ["y^2+x^2=1"], ["x^2+y^2=2", "x^2-y^2=1"]),
    ("3+4i", ["4i+3"], ["3-4i", "4+3i"]),
    ("y=2x+1", ["y=1+2x"], ["y=2x-1", "y=x+1"]),
    ("\\frac{3}{2}\\sqrt{2}", ["\\frac{3\\sqrt{2}}{2}", "\\frac{3}{\\sqrt{2}}"], ["\\frac{2}{3}\\sqrt{2}", "\\frac{3}{2}\\sqrt{3}"]),
    ("2\\sqrt{2}-1", ["-1+2\\sqrt{2}", "\\sqrt{8}-1"], ["2\\sqrt{2}+1", "1-2\\sqrt{2}"]),
    ("\\frac{x+1}{x-1}", ["\\frac{1+x}{x-1}"], ["\\frac{x-1}{x+1}", "\\frac{x+1}{x+2}"]),
    ("\\frac{\\pi}{3}", ["\\frac{1}{3}\\pi"], ["\\frac{\\pi}{6}", "\\frac{2\\pi}{3}"]),
    ("\\cos x", ["\\sin\\left(\\frac{\\pi}{2}-x\\right)"], ["\\sin x", "-\\cos x"]),
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


# ------------------------------------------------------------------ answer forms per kind


def problem(kind: str, rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A reference, its equivalent forms, and the near misses a policy tends to give."""
    return globals()[f"_{kind}"](rng)


def _int(rng):
    n = rng.randint(2, 999)
    swapped = int(str(n)[::-1]) if str(n)[::-1] != str(n) else n + 10
    return str(n), [f"{n}.0", f"x = {n}", f"\\text{{{n}}}"], [str(n + 1), str(n - 1), str(swapped), str(2 * n)]


def _frac(rng):
    a, b = rng.randint(1, 30), rng.randint(2, 40)
    f = Fraction(a, b)
    if f.denominator == 1:
        f = Fraction(a, b + 1)
    p, q = f.numerator, f.denominator
    forms = [f"\\dfrac{{{p}}}{{{q}}}", f"{p}/{q}", f"\\frac{{{2 * p}}}{{{2 * q}}}"]
    return f"\\frac{{{p}}}{{{q}}}", forms, [f"\\frac{{{q}}}{{{p}}}", f"\\frac{{{p + 1}}}{{{q}}}", f"{round(p / q, 2)}"]


def _decimal(rng):
    x = Fraction(rng.randint(101, 9999), 100)
    text = f"{float(x):.2f}"
    return text, [text + "0", f"\\frac{{{x.numerator}}}{{{x.denominator}}}"], [f"{float(x) + 0.01:.2f}", f"{float(x) * 10:.1f}"]


def _radical(rng):
    k, m = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7, 10])
    return f"{k}\\sqrt{{{m}}}", [f"\\sqrt{{{k * k * m}}}", f"{k} \\sqrt{{{m}}}"], [f"{k}\\sqrt{{{m + 1}}}", f"{k + 1}\\sqrt{{{m}}}", f"{m}\\sqrt{{{k}}}"]


def _pi(rng):
    a, b = rng.choice([(1, 2), (1, 3), (1, 4), (2, 3), (3, 4), (5, 6), (7, 12)])
    return f"\\frac{{{a}\\pi}}{{{b}}}", [f"\\frac{{{a}}}{{{b}}}\\pi", f"\\dfrac{{{a} \\pi}}{{{b}}}"], [f"\\frac{{{b}\\pi}}{{{a}}}", f"{a}\\pi", f"\\frac{{{a}}}{{{b}}}"]


def _latex(rng):
    gold, forms, misses = rng.choice(LATEX)
    return gold, list(forms), list(misses)


def _poly(rng):
    p, q = rng.sample(range(-6, 7), 2)
    b, c = -(p + q), p * q
    gold = f"x^2{b:+d}x{c:+d}".replace("+0x", "").replace("-0x", "")
    return gold, [f"(x{-p:+d})(x{-q:+d})", f"{c:+d}{b:+d}x+x^2".lstrip("+")], [f"(x{p:+d})(x{q:+d})", f"x^2{-b:+d}x{c:+d}"]


def _tuple(rng):
    a, b = rng.sample(range(-9, 20), 2)
    return f"({a}, {b})", [f"({a},{b})", f"\\left({a}, {b}\\right)"], [f"({b}, {a})", f"({a}, {b + 1})"]


def _roots(rng):
    r, s = sorted(rng.sample(range(-9, 10), 2))
    gold = rng.choice([f"{r}, {s}", f"\\{{{r}, {s}\\}}"])
    return gold, [f"{s}, {r}", f"ROOTS:{r}:{s}"], [f"{r}", f"{s}", f"{r}, {s + 1}"]


def _interval(rng):
    a, b = sorted(rng.sample(range(-9, 10), 2))
    lo, hi = rng.choice("[("), rng.choice("])")
    flip = {"[": "(", "(": "[", "]": ")", ")": "]"}
    return f"{lo}{a}, {b}{hi}", [f"{lo}{a},{b}{hi}"], [f"{flip[lo]}{a}, {b}{hi}", f"{lo}{a}, {b}{flip[hi]}", f"{lo}{a}, {b + 1}{hi}"]


def _units(rng):
    n, unit = rng.randint(2, 500), rng.choice(["cm", "meters", "dollars", "km", "minutes"])
    return f"{n}", [f"{n}\\text{{ {unit}}}", f"{n} \\text{{{unit}}}"], [f"{n + 1}\\text{{ {unit}}}", f"{2 * n}"]


def _percent(rng):
    p = rng.randint(2, 95)
    return f"{p}\\%", [f"{p}", f"{p} \\%"], [f"{p + 5}\\%", f"{100 - p}\\%"]


def _text(rng):
    day = rng.choice(DAYS)
    others = [d for d in DAYS if d != day]
    return f"\\text{{{day}}}", [day, f"\\textbf{{{day}}}"], [f"\\text{{{d}}}" for d in rng.sample(others, 2)]


def _choice(rng):
    letter = rng.choice("ABCDE")
    others = [c for c in "ABCDE" if c != letter]
    return f"\\text{{({letter})}}", [letter, f"\\textbf{{({letter})}}"], rng.sample(others, 2)


# ------------------------------------------------------------------ responses


def thinking(rng: random.Random) -> str:
    return "<think>\n" + " ".join(rng.choice(["Let", "x", "be", "so", "then", "=", "2", "we", "get", "check"]) for _ in range(300))


def boxed_text(answer: str, wrong: str, rng: random.Random) -> str:
    """How a policy writes its final answer ``answer`` (``wrong``: its earlier attempt, if any)."""
    if answer.startswith("ROOTS:"):  # roots boxed one by one
        _, r, s = answer.split(":")
        return f"The solutions are $x = \\boxed{{{r}}}$ and $x = \\boxed{{{s}}}$."
    roll = rng.random()
    if roll < 0.55:
        return f"Therefore, the answer is $\\boxed{{{answer}}}$."
    if roll < 0.70:
        return f"So we get\n\\[\n\\boxed{{{answer}}}\n\\]"
    if roll < 0.82:
        return f"Thus $\\boxed{{{answer}}}$. Checking the cases above confirms it.\n\n**Final Answer**\n$\\boxed{{{answer}}}$"
    if roll < 0.90:
        return f"At first I got $\\boxed{{{wrong}}}$. That fails the check, so after recomputing, it is $\\boxed{{{answer}}}$."
    if roll < 0.95:
        return f"It is either $\\boxed{{{answer}}}$ or $\\boxed{{{wrong}}}$."
    return f"The final answer is ${answer}$."


def response(answer: str | None, wrong: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        return thinking(rng) + " so \\boxed{1"  # ran out of tokens while thinking: no answer
    if answer is None or roll < 0.09:
        return thinking(rng) + "\n</think>\nI could not finish."
    return thinking(rng) + "\n</think>\nSummary of the steps. " + boxed_text(answer, wrong, rng)


def sample_answer(gold: str, forms: list[str], misses: list[str], skill: float, rng: random.Random) -> str:
    if rng.random() < skill:
        return gold if rng.random() < 0.6 else rng.choice(forms)
    return rng.choice(misses) if rng.random() < 0.8 else fresh_wrong(rng)


def fresh_wrong(rng: random.Random) -> str:
    return rng.choice([str(rng.randint(1, 999)), f"\\frac{{{rng.randint(1, 50)}}}{{{rng.randint(2, 50)}}}",
                       f"{rng.randint(2, 9)}\\sqrt{{{rng.randint(2, 11)}}}", f"[{-rng.randint(1, 9)}, 0)", "x+1"])


def rl_traffic(seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=PROBLEMS)
    responses, references = [], []
    for kind in kinds:
        gold, forms, misses = problem(kind, rng)
        skill = rng.betavariate(1.2, 1.0)
        for _ in range(SAMPLES):
            answer = sample_answer(gold, forms, misses, skill, rng)
            responses.append(response(answer, rng.choice(misses), rng))
            references.append(gold)
    return responses, references


def distinct_traffic(seed: int = 1) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    responses, references = [], []
    while len(responses) < DISTINCT_PAIRS:
        gold, forms, misses = problem(rng.choice(list(KINDS)), rng)  # every kind as often: diverse
        answer = rng.choice(forms) if rng.random() < 0.5 else rng.choice(misses)
        if answer.startswith("ROOTS:") or (gold, answer) in seen:
            continue
        seen.add((gold, answer))
        responses.append("<think>\nwork\n</think>\n" + f"Therefore, the answer is $\\boxed{{{answer}}}$.")
        references.append(gold)
    return responses, references


# ------------------------------------------------------------------ measuring


def peer(responses: list[str], references: list[str]) -> list[bool]:
    """math-verify directly, one response at a time."""
    verdicts = []
    for text, gold in zip(responses, references):
        tail = final_text(text)
        verdicts.append(tail is not None and verify(parse(wrap_reference(gold)), parse(tail)))
    return verdicts


def ours(responses: list[str], references: list[str], step: int):
    grades = []
    for i in range(0, len(responses), step):
        grades += grade_math(responses[i:i + step], references[i:i + step], **KNOBS)
    return grades


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def measure(name: str, goal: float, traffic, step: int) -> dict:
    responses, references = traffic
    grades, ours_s = timed(ours, responses, references, step)
    verdicts, theirs_s = timed(peer, responses, references)
    compared = [(g, v, r) for g, v, r in zip(grades, verdicts, references) if g.status != "timeout"]
    disagree = [(g.answer, r, g.status, v) for g, v, r in compared if (g.status == "correct") != v]
    n = len(grades)
    return {
        "row": name, "pairs": n, "ours": round(n / ours_s, 1), "theirs": round(n / theirs_s, 1),
        "ratio": round(theirs_s / ours_s, 2), "goal_ratio": goal, "ours_s": round(ours_s, 3), "theirs_s": round(theirs_s, 3),
        "distinct_pairs": len(set(zip((g.answer for g in grades), references))),
        "statuses": dict(Counter(g.status for g in grades)),
        "decided_by_exact_path": sum(g.detail == "exact" for g in grades),
        "agreement_non_timeout": round(1 - len(disagree) / max(1, len(compared)), 6), "disagreements": disagree[:20],
    }


def print_table(result: dict) -> None:
    details = result["details"]
    print(f"{'row':32s} {'pairs':>6s} {'ours/s':>9s} {'peer/s':>8s} {'ratio':>7s} {'goal':>5s} {'same verdicts':>14s}")
    for row in details["rows"]:
        print(f"{row['row']:32s} {row['pairs']:6d} {row['ours']:9.1f} {row['theirs']:8.1f} {row['ratio']:6.2f}x "
              f"{row['goal_ratio']:4g}x {row['agreement_non_timeout']:14.4%}")
        print(f"   statuses {row['statuses']}; exact path decided {row['decided_by_exact_path']}, {row['distinct_pairs']} distinct pairs")
        for item in row["disagreements"]:
            print("   disagreement:", item)
    print(f"pool start-up {details['pool_startup_s']} s (once per process); load average {details['load_average_at_start']} "
          f"at start, {details['load_average_at_end']} at end; {details['workers']} workers")


def main() -> None:
    load_start = os.getloadavg()
    _, startup = timed(grade_math, ["</think>\\boxed{\\sqrt{4}}"], ["2"])  # pool start-up, once per process
    rows = [measure("RL-shaped traffic", 20, rl_traffic(), STEP_PROBLEMS * SAMPLES),
            measure("distinct diverse answers", 2, distinct_traffic(), STEP_PROBLEMS * SAMPLES)]
    rl = rows[0]
    result = {
        "peer": "math-verify 0.9 called directly per response (parse + verify, main thread), same pairs, same run",
        "ours": rl["ours"], "theirs": rl["theirs"], "unit": "pairs/s", "ratio": rl["ratio"], "date": dt.date.today().isoformat(),
        "details": {"rows": rows, "knobs": KNOBS, "workers": len(os.sched_getaffinity(0)), "pool_startup_s": round(startup, 3),
                    "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(), "goal_agreement": 1.0},
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "math_grader.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    if any(row["agreement_non_timeout"] < 1.0 for row in rows):
        sys.exit("verdicts differ from math-verify's: see the disagreements above")


if __name__ == "__main__":
    main()
