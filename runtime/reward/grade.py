"""The result type shared by the math grader and the code sandbox.

What: ``Grade``, one frozen record per graded response, and ``STATUSES`` (the closed set of
outcomes). Why: callers (training, curation, benchmarking) need more than a reward: they count
timeouts separately from wrong answers, and log which test failed. How: a frozen dataclass, so a
grade can be hashed, compared and safely shared between threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MATH_STATUSES = ("correct", "wrong", "no_answer", "refused", "timeout", "error")
CODE_STATUSES = ("pass", "wrong", "runtime_error", "timeout", "memory", "killed", "no_code", "sandbox_error")


@dataclass(frozen=True)
class Grade:
    """One graded response. ``reward`` is binary (1.0 only for ``correct`` / ``pass``)."""

    reward: float
    status: str
    answer: str | None = None  # math: the extracted answer; code: None (the code is in the response)
    detail: str = ""  # how it was decided, or what went wrong (error text, which token differed)
    failed_test: int | None = None  # code: index of the first failing test
    tests_passed: int = 0  # code: how many tests passed before grading stopped
    elapsed: float = 0.0  # seconds spent on this item (math-verify, or all tests of the program)


def default_workers(workers: int | None) -> int:
    """``workers`` if given, else this process's share of the cores it may run on: torchrun's
    ranks on a node share one CPU set (``LOCAL_WORLD_SIZE`` of them), so each rank's grader pool
    takes its part of it rather than all of it (8 ranks x all cores would oversubscribe the node
    eightfold)."""
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers={workers}: must be at least 1")
        return workers
    sharing = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, len(os.sched_getaffinity(0)) // sharing)
