"""Benchmark metrics: the unbiased pass@k estimator, avg@k, maj@k, and the metric names as written.

What: pure functions over per-problem correctness (no torch, no I/O). Scores are in [0, 1], each
with its standard error across problems.

Why: a library, not part of a program: the `bench` job computes these scores and the `report` job
names them (`metric_name`), and runtime programs import libraries, never each other.

How: `pass_at_k(n, c, k)`, `avg_at_k(correct_matrix) -> (mean, stderr)`,
`maj_at_k(answers, correct) -> (mean, stderr)`, `metric_name("avg@k", 64) == "avg@64"`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples is correct) from n samples, c of them
    correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k). The binomials overflow floats for large n,
    so the ratio is taken as the product  prod_{i=n-c+1}^{n} (1 - k/i),  every factor in [0, 1]."""
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError(f"pass_at_k takes integers, got n={n!r}, c={c!r}, k={k!r}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} correct out of n={n} samples; need 0 <= c <= n")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} with n={n} samples; need 1 <= k <= n (draw more samples)")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_stderr(per_problem: Sequence[float]) -> tuple[float, float]:
    """Mean over problems and its standard error (sample standard deviation / sqrt(problems)).
    The error is across problems: it says how much the score would move on another draw of
    problems like these, which is what decides whether two checkpoints differ."""
    values = [float(v) for v in per_problem]
    if not values:
        raise ValueError("no problems to average over")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def avg_at_k(correct_matrix: Sequence[Sequence[bool | int | float]]) -> tuple[float, float]:
    """Mean accuracy over k samples per problem (`correct_matrix[problem][sample]`, truthy =
    correct), averaged over problems: (mean, standard error across problems), both in [0, 1]."""
    rows = [list(r) for r in correct_matrix]
    if any(not r for r in rows):
        raise ValueError("avg_at_k: every problem needs at least one sample")
    return mean_stderr([sum(bool(x) for x in r) / len(r) for r in rows])


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> float:
    """Credit for one problem under majority voting: the most frequent extracted answer wins.
    All correct answers count as one answer (each is equivalent to the reference, so to each
    other, even when written differently); wrong answers vote by their text with spaces removed.
    Samples without an answer do not vote. A tie splits the credit: the share of tied answers that
    are correct, so the result does not depend on sample order."""
    votes: Counter[str] = Counter()
    for answer, ok in zip(answers, correct, strict=True):
        if ok:
            votes["\0correct"] += 1
        elif answer is not None:
            votes["".join(answer.split())] += 1
    if not votes:
        return 0.0
    top = max(votes.values())
    winners = [a for a, v in votes.items() if v == top]
    return sum(a == "\0correct" for a in winners) / len(winners)


def maj_at_k(answers: Sequence[Sequence[str | None]], correct: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """maj@k over problems: (mean, standard error) of `majority_correct` per problem."""
    return mean_stderr([majority_correct(a, c) for a, c in zip(answers, correct, strict=True)])


def metric_name(metric: str, k: int) -> str:
    """The spec's metric with k filled in, as the paper writes it: `avg@k` -> `avg@64`."""
    return metric.replace("@k", f"@{k}")
