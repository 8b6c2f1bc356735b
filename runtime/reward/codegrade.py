"""Binary code reward: does the last python block after ``</think>`` pass every test?

What: ``grade_code(responses, tests)`` returns one ``Grade`` per response, in input order, with
status ``pass | wrong | runtime_error | timeout | memory | no_code | sandbox_error``.
``tests[i]`` is a list of cases for response i, each either stdin/stdout
``{"input": str, "output": str}`` or a function call ``{"fn_name": str, "args": list, "expected": any}``
(a method of ``class Solution`` when there is one, else a top-level function; ``args`` may also be
LiveCodeBench's string of newline-separated JSON values).
Why: the recipe rewards 1 only when all tests pass within the time limit; both false positives and
false negatives hurt training, so the comparison is strict but not brittle about whitespace.
How: programs are spread over the shared ``Sandbox``'s workers (one thread each); the tests of one
program run one after another in one forked process (fresh for each program, and replaced after
any failure or leftover thread/process), and this (trusted) process compares the output with the
expectation, which the sandbox never sees. By default grading stops at the first failing test,
and all tests of a program share a total time budget.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .extract import THINK_END, python_code
from .grade import Grade, default_workers
from .sandbox import PYTHON, SandboxError, WorkerDied, get_sandbox

_PROGRAM_IDS = itertools.count()  # tells the worker when a new program starts
# Worker answers that are the program's fault, mapped onto grade statuses.
_FAILURES = {"timeout": "timeout", "memory": "memory", "harness_error": "sandbox_error"}


@dataclass(frozen=True)
class Limits:
    """Per-program limits; one instance per response so problems may set their own time."""

    time: float  # seconds per test (wall clock)
    total: float  # seconds for all tests of the program
    memory_mb: int
    output_bytes: int
    nproc: int
    stop_on_failure: bool
    float_tolerance: float | None


def grade_code(
    responses: Sequence[str],
    tests: Sequence[Sequence[dict]],
    *,
    think_end: str | None = THINK_END,
    time_limit: float | Sequence[float] = 2.0,
    total_time_limit: float | Sequence[float] | None = None,
    memory_mb: int = 1024,
    output_bytes: int = 16 << 20,
    nproc: int = 32,
    stop_on_failure: bool = True,
    float_tolerance: float | None = None,
    workers: int | None = None,
    isolation: str = "auto",
    python: str = PYTHON,
) -> list[Grade]:
    """Run each response's code against its tests in the sandbox; see the module docstring.

    ``time_limit`` / ``total_time_limit``: one value, or one per response (from the problem).
    ``total_time_limit`` defaults to ``time_limit * number of tests``. ``float_tolerance``: allowed
    absolute or relative difference between numbers in outputs (None: compare exactly).
    """
    if len(responses) != len(tests):
        raise ValueError(f"{len(responses)} responses but {len(tests)} test lists: pass one list of cases per response")
    jobs, grades = [], [None] * len(responses)
    for i, (response, cases) in enumerate(zip(responses, tests)):
        code = python_code(response, think_end)
        if code is None:
            grades[i] = Grade(0.0, "no_code", detail="no closing think tag, or no python block after it")
            continue
        for case in cases:
            _check_case(case)
        per_test = _pick(time_limit, i)
        total = _pick(total_time_limit, i) or per_test * max(1, len(cases))
        limits = Limits(per_test, total, memory_mb, output_bytes, nproc, stop_on_failure, float_tolerance)
        jobs.append((i, code, list(cases), limits))
    if jobs:
        box = get_sandbox(default_workers(workers), isolation, python)
        for (i, *_), grade in zip(jobs, box.map(_grade_program, jobs)):
            grades[i] = grade
    return grades  # type: ignore[return-value]


def _pick(value: float | Sequence[float] | None, i: int) -> float | None:
    return value[i] if isinstance(value, Sequence) else value


def _grade_program(worker, job) -> Grade:
    """All tests of one program on one worker; the first failure is the grade's failure.

    Tests go to the worker in batches of 1, 2, 4, ... 16, so a passing program costs few round
    trips while a wrong one wastes at most as many tests as it passed.
    """
    _, code, cases, limits = job
    if not cases:
        return Grade(0.0, "sandbox_error", detail="no tests: refusing to reward untested code")
    program, start = next(_PROGRAM_IDS), time.monotonic()
    passed, failure, k, size, ended = 0, None, 0, 1, False
    while k < len(cases) and not (failure and limits.stop_on_failure):
        batch = _same_mode_run(cases, k, size)
        left = limits.total - (time.monotonic() - start)
        req = _request(program, code, batch, limits, left, last=k + len(batch) == len(cases))
        verdicts = _run_batch(worker, req, batch, limits)
        for j, (status, detail) in enumerate(verdicts):
            if status == "pass":
                passed += 1
                continue
            failure = failure or (k + j, status, f"test {k + j}: {detail}")
            if limits.stop_on_failure:
                break
        ended = req["last"] and len(verdicts) == len(batch)  # then the worker has retired the program
        k, size = k + len(verdicts), min(2 * size, 16)
    if not ended:
        _end_program(worker)
    elapsed = time.monotonic() - start
    if failure is None:
        return Grade(1.0, "pass", detail=f"{passed} tests passed", tests_passed=passed, elapsed=elapsed)
    k, status, detail = failure
    return Grade(0.0, status, detail=detail, failed_test=k, tests_passed=passed, elapsed=elapsed)


def _same_mode_run(cases: list[dict], k: int, size: int) -> list[dict]:
    """Up to ``size`` cases from ``k`` on that share one mode (stdin/stdout, or one function)."""
    mode = cases[k].get("fn_name")
    batch = [cases[k]]
    for case in cases[k + 1:k + size]:
        if case.get("fn_name") != mode:
            break
        batch.append(case)
    return batch


def _end_program(worker) -> None:
    """Kill the program's process and wipe its work dir before this call returns."""
    try:
        worker.request({"op": "end"}, hard_timeout=10)
    except SandboxError:
        pass  # the worker is gone, and the program with it


def _run_batch(worker, req: dict, batch: list[dict], limits: Limits) -> list[tuple[str, str]]:
    """(status, detail) for each test the worker ran: it stops after one that did not end cleanly."""
    try:
        replies = worker.request(req, hard_timeout=len(batch) * (req["time"] + 1) + 5)["results"]
    except WorkerDied as exc:
        return [("runtime_error", f"the sandbox worker died during the test (killed or stopped by the program?): {exc}")]
    except SandboxError as exc:
        return [("sandbox_error", str(exc))]
    return [_judge(reply, case, req["time"], limits) for reply, case in zip(replies, batch)]


def _judge(reply: dict, case: dict, seconds: float, limits: Limits) -> tuple[str, str]:
    outcome = reply["outcome"]
    if outcome == "total_timeout":
        return "timeout", f"total time limit {limits.total:g} s used up"
    if outcome != "ok":
        return _FAILURES.get(outcome, "runtime_error"), _failure_detail(outcome, reply, seconds, limits)
    if "fn_name" in case:
        return _judge_call(reply["result"], case["expected"], limits.float_tolerance)
    return _judge_stdout(reply["stdout"], str(case["output"]), limits.float_tolerance)


def _request(program: int, code: str, batch: list[dict], limits: Limits, total_left: float, last: bool) -> dict:
    """What the sandbox gets: the program and these tests' inputs, never the expected outputs."""
    call = "fn_name" in batch[0]
    payloads = [json.dumps(_call_args(c["args"])) if call else str(c["input"]) for c in batch]
    return {"op": "test", "program": program, "code": code, "mode": "call" if call else "stdio",
            "fn": batch[0].get("fn_name"), "payloads": payloads, "time": min(limits.time, total_left),
            "total_left": total_left, "memory_mb": limits.memory_mb, "output_bytes": limits.output_bytes,
            "nproc": limits.nproc, "last": last}


def _check_case(case: dict) -> None:
    if not ({"input", "output"} <= case.keys() or {"fn_name", "args", "expected"} <= case.keys()):
        raise ValueError(f"test case with keys {sorted(case)}: needs 'input' and 'output' (stdin/stdout) "
                         "or 'fn_name', 'args' and 'expected' (function call)")


def _call_args(args: Any) -> list:
    if isinstance(args, str):  # LiveCodeBench: one JSON value per line
        return [json.loads(line) for line in args.splitlines() if line.strip()]
    return list(args)


def _failure_detail(outcome: str, reply: dict, seconds: float, limits: Limits) -> str:
    if outcome == "timeout":
        return f"over the time limit ({seconds:.3g} s)"
    if outcome == "memory":
        return f"MemoryError (limit {limits.memory_mb} MB)"
    if outcome == "output_limit":
        return f"wrote more than {limits.output_bytes} bytes"
    last = reply["stderr"].strip().splitlines()[-1:] or [""]
    return f"{outcome}: {last[0][:300]}"


def _judge_stdout(out: str, expected: str, tol: float | None) -> tuple[str, str]:
    got, want = out.split(), expected.split()
    if len(got) != len(want):
        return "wrong", f"expected {len(want)} tokens, got {len(got)}"
    for n, (g, w) in enumerate(zip(got, want)):
        if g != w and not _close(g, w, tol):
            return "wrong", f"token {n} differs"
    return "pass", ""


def _judge_call(result: str, expected: Any, tol: float | None) -> tuple[str, str]:
    if not result:
        return "wrong", "no return value (the program exited before returning)"
    try:
        value = json.loads(result)
    except ValueError:
        return "wrong", "the return value is not JSON"
    return ("pass", "") if _same(value, expected, tol) else ("wrong", "return value differs")


def _same(got: Any, want: Any, tol: float | None) -> bool:
    if isinstance(want, (list, tuple)) and isinstance(got, list):
        return len(got) == len(want) and all(_same(g, w, tol) for g, w in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k], tol) for k in want)
    if type(got) is bool or type(want) is bool:
        return got is want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return got == want or (tol is not None and _within(float(got), float(want), tol))
    return got == want


def _close(got: str, want: str, tol: float | None) -> bool:
    if tol is None:
        return False
    try:
        return _within(float(got), float(want), tol)
    except ValueError:
        return False


def _within(got: float, want: float, tol: float) -> bool:
    return math.isfinite(got) and abs(got - want) <= tol * max(1.0, abs(want))
