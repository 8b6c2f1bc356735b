"""Rewards for a batch of (record, response) pairs, whatever their domain.

Training, the pass-rate filters and benchmarks all grade the same way: each record's domain picks
its reward terms from the job's `grading.rewards` (the `reward` blocks of the spec's datasets and
benchmarks of that domain), and a domain that declares none uses its built-in grader: math records
against their `answer` with the math grader, code records against their `tests` in the sandbox,
with the limits from the spec's resolved `reward` block and the answer extraction from `model.answer`.
A term that is the user's Python function runs in worker processes (`reward/plugin.py`); several
terms give their weighted sum.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from rlspec.compiler.jobs import Grading, RewardFn
from rlspec.runtime.reward import Grade, grade_code, grade_math

log = logging.getLogger(__name__)


def record_domain(record: dict[str, Any], default: str | None = None) -> str:
    """`domain` if the record says, else code when it carries tests, else math."""
    domain = record.get("domain") or default
    if domain:
        return str(domain)
    return "code" if record.get("tests") is not None else "math"


def record_tests(record: dict[str, Any]) -> list[dict]:
    tests = record.get("tests")
    if isinstance(tests, str):  # parquet may hold the cases as a JSON string
        tests = json.loads(tests)
    return [dict(t) for t in (tests or [])]


def score(records: Sequence[dict[str, Any]], responses: Sequence[str], grading: Grading, *,
          domains: Sequence[str] | None = None, workers: int | None = None,
          spec_dir: str | None = None) -> list[Grade]:
    """One Grade per response, in order. `records[i]` is the problem response i answers; `spec_dir`
    is where relative reward files are (default: the build's context.json says).

    Never raises for a response: a grader that raises on a batch is retried item by item, and an
    item whose grading raises gets status `error` (reward 0, the exception in `detail`), as does a
    Python reward that raises or hangs, so one response a policy produced cannot end a train, filter
    or bench job. The train job counts these (`grader_errors`) and stops past
    `algorithm.health.max_grader_error_rate`."""
    if len(records) != len(responses):
        raise ValueError(f"{len(records)} records but {len(responses)} responses")
    domains = list(domains) if domains is not None else [record_domain(r) for r in records]
    unknown = sorted({d for d in domains if d not in grading.rewards and d not in GRADERS})
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}: no reward for them; only {' and '.join(GRADERS)} have built-in graders, "
                         "and the job declares reward terms for " + (", ".join(sorted(grading.rewards)) or "none")
                         + "; give the datasets of that domain a `reward` block and recompile")
    grades: list[Grade | None] = [None] * len(responses)
    for domain in sorted(set(domains)):
        idx = [i for i, d in enumerate(domains) if d == domain]
        terms = grading.rewards.get(domain) or [BUILTIN[domain]]
        per_term = [_term(t, records, responses, idx, grading, workers, spec_dir) for t in terms]
        for j, i in enumerate(idx):
            grades[i] = _combined(terms, [g[j] for g in per_term])
    return grades  # type: ignore[return-value]


def _term(term: RewardFn, records, responses, idx: list[int], grading: Grading, workers: int | None,
          spec_dir: str | None) -> list[Grade]:
    if term.python is None:
        return _guarded(GRADERS[str(term.grader)], records, responses, idx, grading, workers)
    from rlspec.runtime.reward.plugin import grade_python, item_for
    fn = term.python
    out = grade_python(fn, [item_for(records[i], responses[i], fn.signature) for i in idx], spec_dir=spec_dir,
                       workers=workers)
    failed = [g for g in out if g.status == "error"]
    if failed:
        log.warning("reward %s: %d of %d responses got status error (reward 0); first: %s", term.name, len(failed),
                    len(out), failed[0].detail)
    return out


def _combined(terms: list[RewardFn], grades: list[Grade]) -> Grade:
    """One term at weight 1 is its own grade; several give the weighted sum, with the first failing
    status (else the first term's), so errors are still counted."""
    if len(terms) == 1 and terms[0].weight == 1.0:
        return grades[0]
    bad = next((g for g in grades if g.status in FAILED), None)
    first = grades[0]
    detail = "; ".join(f"{t.name}={g.reward:g} ({g.status}{': ' + g.detail[:120] if g.detail else ''})"
                       for t, g in zip(terms, grades))
    return Grade(sum(t.weight * g.reward for t, g in zip(terms, grades)), (bad or first).status,
                 answer=next((g.answer for g in grades if g.answer is not None), None), detail=detail,
                 failed_test=first.failed_test, tests_passed=first.tests_passed, elapsed=sum(g.elapsed for g in grades))


FAILED = ("error", "sandbox_error")  # the statuses the train job's health rules count


def _guarded(grader, records, responses, idx: list[int], grading: Grading, workers: int | None) -> list[Grade]:
    try:
        return grader([records[i] for i in idx], [responses[i] for i in idx], grading, workers)
    except Exception:  # noqa: BLE001 - any grader failure; isolate the item(s) that cause it
        if len(idx) == 1:
            raise
    out = []
    for i in idx:
        try:
            out.extend(grader([records[i]], [responses[i]], grading, workers))
        except Exception as exc:  # noqa: BLE001
            log.warning("grading item %s raised %s: %s", records[i].get("id"), type(exc).__name__, exc)
            out.append(Grade(0.0, "error", detail=f"the grader raised {type(exc).__name__}: {str(exc)[:300]}"))
    return out


def _grade_math(records, responses, grading: Grading, workers: int | None) -> list[Grade]:
    answer = grading.answer
    return grade_math(list(responses), [str(r["answer"]) for r in records], think_end=answer.think_end,
                      fallbacks=tuple(answer.math_fallback_patterns), boxes=answer.math_boxes,
                      unboxed_fallback=answer.math_unboxed_fallback,
                      timeout=max(1, int(round(grading.reward.math_timeout_s))), workers=workers)


def _grade_code(records, responses, grading: Grading, workers: int | None) -> list[Grade]:
    reward = grading.reward
    return grade_code(list(responses), [record_tests(r) for r in records], think_end=grading.answer.think_end,
                      time_limit=[float(r.get("time_limit_s") or reward.code_time_limit_s) for r in records],
                      total_time_limit=reward.code_total_time_limit_s, memory_mb=reward.code_memory_mb,
                      float_tolerance=reward.code_float_tolerance, workers=workers)


GRADERS = {"math": _grade_math, "code": _grade_code}
BUILTIN = {d: RewardFn(name=d, grader=d, python=None, weight=1.0) for d in GRADERS}  # a domain's default
