"""Binary code reward: does the last python block after ``</think>`` pass every test?

What: ``grade_code(responses, tests)`` returns one ``Grade`` per response, in input order, with
status ``pass | wrong | runtime_error | timeout | memory | killed | no_code | sandbox_error``; it
never raises for anything a response contains. ``tests[i]`` is a list of cases for response i,
each either stdin/stdout ``{"input": str, "output": str}`` or a function call ``{"fn_name": str,
"args": list, "expected": any}`` (a method of ``class Solution`` when there is one, else a
top-level function; ``args`` may also be LiveCodeBench's string of newline-separated JSON values).
A call case may give ``"expected_repr"`` instead of ``expected``: the expected value's Python
``repr``, read with ``ast.literal_eval`` (never ``eval``), so tuples, sets and int keys survive
storage that JSON would flatten.
Why: the recipe rewards 1 only when all tests pass within the time limit; both false positives and
false negatives hurt training, so the comparison is strict but not brittle about whitespace.
Verdicts, as LiveCodeBench's grader (``lcb_runner/evaluation/testing_util.py``) decides them:
- a call's result is compared with Python's ``==`` on the decoded values (so ``1 == True`` and
  ``0 == False`` pass; ``[1, 2] != (1, 2)``, and nested tuples never equal lists); as LiveCodeBench
  does, a tuple returned where a list is expected counts as that list at the top level only (its
  expected values come from JSON, which has no tuples). Unlike LiveCodeBench, numbers in a result
  may differ by ``float_tolerance`` when either is a float (LiveCodeBench compares floats exactly),
  and a result is decoded from what the program sent, so a class claiming to equal everything is
  refused (``runtime_error``) instead of passing;
- stdout is compared token by token (any whitespace; LiveCodeBench compares line by line): equal
  text, or both numbers that are equal as decimals (``1.0`` = ``1``), or, when either is not an
  integer, within ``float_tolerance`` (integers never get a tolerance: 10^9 + 1 is not 10^9).
Statuses say what happened: ``timeout`` (wall clock or CPU limit), ``memory`` (MemoryError, or the
kernel's OOM killer at the whole-program limit), ``killed`` (ended by a signal that was not a fault,
such as its own SIGKILL), ``runtime_error`` (exception, non-zero exit, crash signal, too much output,
broke its harness), ``sandbox_error`` (our fault, never the program's).
How: programs are spread over the shared ``Sandbox``'s workers (one thread each); the tests of one
program run one after another in one process forked for that program alone (and replaced after
any failure or leftover thread/process), and this (trusted) process compares the output with the
expectation, which the sandbox never sees. By default grading stops at the first failing test,
and all tests of a program share a total time budget.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
import time
from decimal import Decimal, InvalidOperation
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .extract import THINK_END, python_code
from .grade import Grade, default_workers
from .sandbox import PYTHON, SandboxError, WorkerDied, get_sandbox
from .sandbox_worker import TAGS

_PROGRAM_IDS = itertools.count()  # tells the worker when a new program starts
# Worker outcomes (the part before ":") mapped onto grade statuses; any other is runtime_error.
_FAILURES = {"timeout": "timeout", "memory": "memory", "killed": "killed", "harness_error": "sandbox_error"}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
FLOAT_TOLERANCE = 1e-6


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
    float_tolerance: float | None = FLOAT_TOLERANCE,
    workers: int | None = None,
    isolation: str = "auto",
    python: str = PYTHON,
) -> list[Grade]:
    """Run each response's code against its tests in the sandbox; see the module docstring.

    ``time_limit`` / ``total_time_limit``: one value, or one per response (from the problem).
    ``total_time_limit`` defaults to ``time_limit * number of tests``. ``memory_mb``: the whole
    program (all its processes and files) and each process's address space. ``float_tolerance``:
    allowed absolute (below 1) or relative difference between numbers when either is a float
    (None or 0: compare exactly, as decimals). Raises ValueError only for malformed ``tests``.
    """
    if len(responses) != len(tests):
        raise ValueError(f"{len(responses)} responses but {len(tests)} test lists: pass one list of cases per response")
    decoded: dict[tuple[str, str], Any] = {}  # texts read once per call (a group's rollouts share tests)
    tests = [[_check_case(case, decoded) for case in cases] for cases in tests]
    jobs, grades = [], [None] * len(responses)
    for i, (response, cases) in enumerate(zip(responses, tests)):
        code = python_code(response, think_end) if isinstance(response, str) else None
        if code is None:
            grades[i] = Grade(0.0, "no_code", detail="no closing think tag, or no python block after it")
            continue
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
    """All tests of one program on one worker; any failure of ours is a ``sandbox_error`` grade."""
    try:
        return _run_program(worker, job)
    except Exception as exc:  # a bug of ours must cost one item, not the batch (the trainer's step)
        _end_program(worker)
        return Grade(0.0, "sandbox_error", detail=f"grader failure: {type(exc).__name__}: {str(exc)[:300]}")


def _run_program(worker, job) -> Grade:
    """The first failure is the grade's failure.

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
    except Exception:  # noqa: BLE001 - called while handling a failure of ours: never mask it
        worker.stop()


def _run_batch(worker, req: dict, batch: list[dict], limits: Limits) -> list[tuple[str, str]]:
    """(status, detail) for each test the worker ran: it stops after one that did not end cleanly."""
    try:
        reply = worker.request(req, hard_timeout=len(batch) * (req["time"] + 1) + 5)
    except WorkerDied as exc:
        return [("runtime_error", f"the sandbox worker died during the test (killed or stopped by the program?): {exc}")]
    except SandboxError as exc:
        return [("sandbox_error", str(exc))]
    replies = reply["results"]
    if reply.get("oom") and replies and replies[-1]["outcome"] != "ok":
        replies[-1]["outcome"] = "memory"  # the kernel killed a process of it at the program's limit
    return [_judge(r, case, req["time"], limits) for r, case in zip(replies, batch)]


def _judge(reply: dict, case: dict, seconds: float, limits: Limits) -> tuple[str, str]:
    outcome = reply["outcome"]
    if outcome == "total_timeout":
        return "timeout", f"total time limit {limits.total:g} s used up"
    if outcome != "ok":
        status = _FAILURES.get(outcome.split(":")[0], "runtime_error")
        return status, _failure_detail(outcome, reply, seconds, limits)
    if "fn_name" in case:
        return _judge_call(reply["result"], case["expected"], limits.float_tolerance)
    return _judge_stdout(reply["stdout"], str(case["output"]), limits.float_tolerance)


def _request(program: int, code: str, batch: list[dict], limits: Limits, total_left: float, last: bool) -> dict:
    """What the sandbox gets: the program and these tests' inputs, never the expected outputs."""
    call = "fn_name" in batch[0]
    payloads = [json.dumps(c["args"]) if call else str(c["input"]) for c in batch]
    return {"op": "test", "program": program, "code": code, "mode": "call" if call else "stdio",
            "fn": batch[0].get("fn_name"), "payloads": payloads, "time": min(limits.time, total_left),
            "total_left": total_left, "memory_mb": limits.memory_mb, "output_bytes": limits.output_bytes,
            "nproc": limits.nproc, "last": last}


def _check_case(case: dict, decoded: dict[tuple[str, str], Any]) -> dict:
    """The case as the grader uses it: call ``args`` as a list, ``expected`` decoded."""
    if {"input", "output"} <= case.keys():
        return case
    if not ({"fn_name", "args"} <= case.keys() and case.keys() & {"expected", "expected_repr"}):
        raise ValueError(f"test case with keys {sorted(case)}: needs 'input' and 'output' (stdin/stdout) "
                         "or 'fn_name', 'args' and 'expected' or 'expected_repr' (function call)")
    try:
        args = _read_once(decoded, "args", case["args"]) if isinstance(case["args"], str) else list(case["args"])
        expected = _read_once(decoded, "repr", case["expected_repr"]) if "expected_repr" in case else case["expected"]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"function-call test case for {case['fn_name']!r}: {type(exc).__name__}: {exc}") from None
    return {**case, "args": args, "expected": expected}


def _read_once(decoded: dict[tuple[str, str], Any], kind: str, text: str) -> Any:
    """LiveCodeBench's one-JSON-value-per-line ``args``, or an ``expected_repr`` literal."""
    key = (kind, text)
    if key not in decoded:
        if kind == "args":
            decoded[key] = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            decoded[key] = ast.literal_eval(text)
    return decoded[key]


def _failure_detail(outcome: str, reply: dict, seconds: float, limits: Limits) -> str:
    if outcome == "timeout":
        return f"over the time limit ({seconds:.3g} s)"
    if outcome == "memory":
        return f"over the memory limit ({limits.memory_mb} MB for the whole program)"
    if outcome == "output_limit":
        return f"wrote more than {limits.output_bytes} bytes"
    last = reply["stderr"].strip().splitlines()[-1:] or [""]
    return f"{outcome}: {last[0][:300]}"


def _judge_stdout(out: str, expected: str, tol: float | None) -> tuple[str, str]:
    got, want = out.split(), expected.split()
    if len(got) != len(want):
        return "wrong", f"expected {len(want)} tokens, got {len(got)}"
    for n, (g, w) in enumerate(zip(got, want)):
        if g != w and not _same_number(g, w, tol):
            return "wrong", f"token {n} differs"
    return "pass", ""


def _same_number(got: str, want: str, tol: float | None) -> bool:
    """Both tokens are numbers, equal as decimals or (unless both are integers) within ``tol``."""
    if not (_NUMBER.fullmatch(got) and _NUMBER.fullmatch(want)):
        return False
    try:
        if Decimal(got) == Decimal(want):
            return True
    except InvalidOperation:
        return False
    if not tol or (_INTEGER.fullmatch(got) and _INTEGER.fullmatch(want)):
        return False
    return _within(float(got), float(want), tol)


def _judge_call(result: str, expected: Any, tol: float | None) -> tuple[str, str]:
    if not result:
        return "wrong", "no return value (the program exited before returning)"
    try:
        value = _decode(result)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        return "wrong", f"the return value could not be decoded ({type(exc).__name__})"
    if type(value) is tuple and type(expected) is list:
        value = list(value)  # LiveCodeBench's rule: a tuple for a list is fine, at the top level only
    try:
        same = _equal(value, expected, tol)
    except RecursionError:
        same = False  # nested deeper than we compare: never a pass
    return ("pass", "") if same else ("wrong", "return value differs")


def _decode(result: str) -> Any:
    """The sandbox's JSON, with the types it tagged (tuples, sets, ...) restored."""
    return json.loads(result, object_hook=_untag)


def _untag(obj: dict) -> Any:
    if len(obj) != 1:
        return obj
    (key, value), = obj.items()
    restore = _UNTAG.get(key)
    return obj if restore is None else restore(value)


_UNTAG = {TAGS[tuple]: tuple, TAGS[set]: set, TAGS[frozenset]: frozenset, TAGS[dict]: lambda pairs: dict(pairs),
          TAGS[bytes]: bytes.fromhex, TAGS[complex]: lambda parts: complex(*parts)}


def _equal(got: Any, want: Any, tol: float | None) -> bool:
    """Python's ``==`` (so ``1 == True`` and ``[1] != (1,)``), except that numbers may differ by
    ``tol`` when either is a float."""
    if tol and _is_number(got) and _is_number(want) and float in (type(got), type(want)):
        return got == want or _within(got, want, tol)
    if type(want) in (list, tuple) and type(got) is type(want):
        return len(got) == len(want) and all(_equal(g, w, tol) for g, w in zip(got, want))
    if type(want) is dict and type(got) is dict:
        return got.keys() == want.keys() and all(_equal(got[k], want[k], tol) for k in want)
    return got == want


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float))


def _within(got: float | int, want: float | int, tol: float) -> bool:
    try:
        got, want = float(got), float(want)
    except OverflowError:  # an int too large for a float: only == can make it equal
        return False
    return math.isfinite(got) and math.isfinite(want) and abs(got - want) <= tol * max(1.0, abs(want))
