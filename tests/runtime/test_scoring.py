"""`scoring.score`, the one grading entry point of train, filter and bench jobs: a grader that
raises on one response costs that response (status `error`, reward 0), never the batch or the job.

The raising grader is a stand-in installed in `scoring.GRADERS`: the real graders are being made
unable to raise (their own tests feed them the inputs that used to), so only a stand-in can still
exercise the guard that catches whatever a future grader bug raises.
"""

from __future__ import annotations

import pytest

from rlspec.compiler.jobs import Grading
from rlspec.compiler.spec import AnswerExtraction, RewardSettings
from rlspec.runtime import scoring

GRADING = Grading(reward=RewardSettings(), answer=AnswerExtraction(), rewards={})


def test_a_raising_grader_costs_only_the_item_that_raises(monkeypatch):
    real = scoring.GRADERS["math"]

    def fragile(records, responses, grading, workers):
        if any("boom" in r for r in responses):
            raise RecursionError("maximum recursion depth exceeded")
        return real(records, responses, grading, workers)

    monkeypatch.setitem(scoring.GRADERS, "math", fragile)
    records = [{"id": f"m{i}", "answer": "4", "domain": "math"} for i in range(3)]
    responses = ["</think> \\boxed{4}", "</think> boom \\boxed{4}", "</think> \\boxed{5}"]
    grades = scoring.score(records, responses, GRADING, workers=1)
    assert [g.status for g in grades] == ["correct", "error", "wrong"]
    assert grades[1].reward == 0.0 and "RecursionError" in grades[1].detail


def test_unknown_domain_is_refused_before_any_grading():
    with pytest.raises(ValueError, match="unknown domain"):
        scoring.score([{"id": "x", "answer": "1"}], ["1"], GRADING, domains=["qa"])
