"""Rewards for a batch of (record, response) pairs, whatever their domain.

Training, the pass-rate filters and benchmarks all grade the same way: math records against their
`answer` with the math grader, code records against their `tests` in the sandbox, with the limits
from the spec's resolved `reward` block and the answer extraction from `model.answer`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rlspec.runtime.reward import Grade, grade_code, grade_math


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


def score(records: Sequence[dict[str, Any]], responses: Sequence[str], *, reward: dict[str, Any],
          answer: dict[str, Any], domains: Sequence[str] | None = None, workers: int | None = None) -> list[Grade]:
    """One Grade per response, in order. `records[i]` is the problem response i answers."""
    if len(records) != len(responses):
        raise ValueError(f"{len(records)} records but {len(responses)} responses")
    domains = list(domains) if domains is not None else [record_domain(r) for r in records]
    grades: list[Grade | None] = [None] * len(responses)
    math_idx = [i for i, d in enumerate(domains) if d == "math"]
    code_idx = [i for i, d in enumerate(domains) if d == "code"]
    if math_idx:
        timeout = max(1, int(round(reward["math_timeout_s"])))
        found = grade_math([responses[i] for i in math_idx], [str(records[i]["answer"]) for i in math_idx],
                           think_end=answer["think_end"], fallbacks=tuple(answer.get("math_fallback_patterns", ())),
                           timeout=timeout, workers=workers)
        for i, g in zip(math_idx, found):
            grades[i] = g
    if code_idx:
        limits = [float(records[i].get("time_limit_s") or reward["code_time_limit_s"]) for i in code_idx]
        found = grade_code([responses[i] for i in code_idx], [record_tests(records[i]) for i in code_idx],
                           think_end=answer["think_end"], time_limit=limits,
                           total_time_limit=reward["code_total_time_limit_s"], memory_mb=reward["code_memory_mb"],
                           workers=workers)
        for i, g in zip(code_idx, found):
            grades[i] = g
    unknown = [d for d in domains if d not in ("math", "code")]
    if unknown:
        raise ValueError(f"unknown domain(s) {sorted(set(unknown))}: records must be math or code")
    return grades  # type: ignore[return-value]
