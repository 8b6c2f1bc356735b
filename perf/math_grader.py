"""Benchmark: the math reward (grade_math) against calling math-verify directly, same pairs, same run.

Traffic is shaped like an RL step: 300 reference answers x 16 responses. References are mostly
integers and fractions (AIME, DeepScaleR), plus decimals, LaTeX expressions, intervals and sets.
Responses think, then box an answer: the reference verbatim (45%), an equivalent form (15%), a wrong
answer (28%: nine in ten of the reference's kind, as models answer an integer problem with an
integer), no box (7%), or no closing think tag (5%, truncated).
Peer: math-verify 0.9 called directly, one pair at a time, in the main thread, the way a reward
function would: ``verify(parse(f"${gold}$"), parse(text after </think>))`` (no tag -> 0).
Goals (issue 3): >= 20x the peer's throughput; 100% the same verdicts on non-timeout items.

    .venv/bin/python perf/math_grader.py      # prints a table, writes perf/results/math_grader.json
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from math_verify import parse, verify  # noqa: E402

from rlspec.runtime.reward import grade_math  # noqa: E402
from rlspec.runtime.reward.extract import final_text  # noqa: E402

HERE = Path(__file__).parent
GOLDS_PER_KIND = {"int": 150, "frac": 60, "decimal": 25, "latex": 35, "interval": 15, "set": 15}
SAMPLES = 16
LATEX = [("2\\sqrt{3}", "\\sqrt{12}"), ("\\frac{\\pi}{4}", "\\frac{1}{4}\\pi"), ("3+2\\sqrt{2}", "2\\sqrt{2}+3"),
         ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"), ("x^{2}+1", "1+x^2"), ("2^{1/2}", "\\sqrt{2}"),
         ("\\frac{1+\\sqrt{5}}{2}", "\\frac{\\sqrt{5}+1}{2}"), ("4\\pi", "\\pi \\cdot 4"), ("e^{2}", "e^2")]


def gold_and_equivalent(kind: str, rng: random.Random) -> tuple[str, str]:
    """A reference answer and a different-looking equivalent a model might write."""
    if kind == "int":
        n = rng.randint(0, 999)
        return str(n), rng.choice([f"{n}.0", f"{n}", f"{n}^\\circ"])
    if kind == "frac":
        a, b = rng.randint(1, 99), rng.randint(2, 99)
        return f"\\frac{{{a}}}{{{b}}}", rng.choice([f"{a}/{b}", f"\\dfrac{{{a}}}{{{b}}}", f"\\frac{{{2 * a}}}{{{2 * b}}}"])
    if kind == "decimal":
        x = rng.randint(1, 9999) / 100
        return f"{x}", rng.choice([f"{x}0", f"{x:.2f}"])
    if kind == "latex":
        return rng.choice(LATEX)
    if kind == "interval":
        a, b = sorted(rng.sample(range(-9, 10), 2))
        return f"[{a}, {b})", f"[{a},{b})"
    a, b, c = sorted(rng.sample(range(1, 30), 3))
    return f"\\{{{a}, {b}, {c}\\}}", f"\\{{{c}, {a}, {b}\\}}"


def wrong_answer(kind: str, rng: random.Random) -> str:
    """Usually a wrong answer of the reference's own kind (an integer for an AIME problem);
    one time in ten something of another kind (which is what makes sympy work hardest)."""
    if rng.random() < 0.1:
        n = rng.randint(1, 999)
        return rng.choice([str(n), f"\\frac{{{n}}}{{7}}", f"{n / 8}", "2\\sqrt{5}", f"[{-n}, 0)", "x+1"])
    wrong, _ = gold_and_equivalent(kind, rng)  # a fresh random answer of the same kind
    return wrong


def response(answer: str | None, rng: random.Random, truncated: bool = False) -> str:
    thinking = "<think>\n" + " ".join(rng.choice(["Let", "x", "be", "so", "then", "=", "2", "we", "get"]) for _ in range(300))
    if truncated:
        return thinking + " \\boxed{1}"  # ran out of tokens while thinking: no answer
    final = "I could not finish." if answer is None else f"Therefore the answer is $\\boxed{{{answer}}}$."
    return f"{thinking}\n</think>\nSummary of the steps. {final}"


def make_traffic(seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    responses, references = [], []
    for kind, count in GOLDS_PER_KIND.items():
        for _ in range(count):
            gold, equivalent = gold_and_equivalent(kind, rng)
            for _ in range(SAMPLES):
                roll = rng.random()
                answer = gold if roll < 0.45 else equivalent if roll < 0.6 else wrong_answer(kind, rng) if roll < 0.88 else None
                responses.append(response(answer, rng, truncated=roll > 0.95))
                references.append(gold)
    return responses, references


def peer(responses: list[str], references: list[str]) -> list[bool]:
    """math-verify directly, one pair at a time."""
    verdicts = []
    for text, gold in zip(responses, references):
        tail = final_text(text)
        verdicts.append(tail is not None and verify(parse(f"${gold}$"), parse(tail)))
    return verdicts


def print_table(r: dict) -> None:
    d = r["details"]
    print(f"{d['pairs']} pairs ({d['golds']} golds x {d['samples_per_gold']}), statuses {d['statuses']}")
    print(f"{'grader':44s} {'seconds':>9s} {'pairs/s':>10s}")
    print(f"{'grade_math (exact path + math-verify pool)':44s} {d['ours_s']:9.3f} {r['ours']:10.1f}")
    print(f"{'math-verify directly (peer)':44s} {d['theirs_s']:9.3f} {r['theirs']:10.1f}")
    print(f"ratio {r['ratio']}x (goal >= 20x); agreement on non-timeout items {d['agreement_non_timeout']:.4%} (goal 100%)")
    print(f"exact path decided {d['decided_by_exact_path']}/{d['pairs']}, {d['distinct_pairs_sent_to_the_pool']} distinct pairs "
          f"went to the pool; pool start-up {d['pool_startup_s']} s (once per process); load {d['load_average_at_end']}")
    for item in d["disagreements"]:
        print("  disagreement:", item)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def summarise(grades, verdicts, references, ours: float, theirs: float, startup: float) -> dict:
    n = len(grades)
    compared = [(g, v, ref) for g, v, ref in zip(grades, verdicts, references) if g.status != "timeout"]
    disagree = [(g.answer, ref, g.status, v) for g, v, ref in compared if (g.status == "correct") != v]
    pooled = {(g.answer, ref) for g, ref in zip(grades, references) if g.detail not in ("exact", "") and g.answer}
    return {
        "peer": "math-verify 0.9 called directly per pair (parse + verify, main thread), same pairs, same run",
        "ours": round(n / ours, 1), "theirs": round(n / theirs, 1), "unit": "pairs/s",
        "ratio": round(theirs / ours, 2), "date": dt.date.today().isoformat(),
        "details": {
            "pairs": n, "golds": n // SAMPLES, "samples_per_gold": SAMPLES, "workers": len(os.sched_getaffinity(0)),
            "ours_s": round(ours, 3), "theirs_s": round(theirs, 3), "pool_startup_s": round(startup, 3),
            "statuses": dict(Counter(g.status for g in grades)),
            "decided_by_exact_path": sum(g.detail == "exact" for g in grades),
            "distinct_pairs_sent_to_the_pool": len(pooled),
            "agreement_non_timeout": round(1 - len(disagree) / max(1, len(compared)), 6),
            "disagreements": disagree[:20], "goal_ratio": 20, "goal_agreement": 1.0,
            "load_average_at_end": os.getloadavg(),
        },
    }


def main() -> None:
    responses, references = make_traffic()
    _, startup = timed(grade_math, ["</think>\\boxed{\\sqrt{4}}"], ["2"])  # pool start-up, once per process
    grades, ours = timed(grade_math, responses, references)
    verdicts, theirs = timed(peer, responses, references)
    result = summarise(grades, verdicts, references, ours, theirs, startup)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "math_grader.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


if __name__ == "__main__":
    main()
