"""Binary math reward: is the answer after ``</think>`` equivalent to the reference?

What: ``grade_math(responses, references)`` returns one ``Grade`` per pair, in input order, with
status ``correct | wrong | no_answer | refused | timeout | error``, and never raises for an item:
whatever a policy writes, the batch is graded.
Why: the recipe's math reward is a sympy-based equivalence check (math-verify). Called naively it
costs ~1.2 ms a pair, its SIGALRM timeout breaks outside the main thread and cancels the caller's
alarm, when it times out it quietly answers "wrong", and inputs a policy can write (200 nested
parentheses, a 5,000-digit number) raise out of parsers and would end a training job.
How, in four steps:
1. extract the answer (``extract.math_answer``: the last box, or the final group of boxes with
   ``boxes="all_boxes"``, optionally an unboxed statement); no closing think tag or no answer ->
   ``no_answer``;
2. screen it before any parsing (``screen``: length, nesting depth, digit and sign runs, control
   characters); over a limit -> ``refused`` (reward 0; the detail names the limit). A reference
   over a limit is a data problem -> ``error``;
3. a cheap exact path (``exact``) decides pairs whose verdict is certain without sympy: numbers,
   intervals, tuples and sets of numbers, assignments such as ``x = 5``, text answers and choice
   letters, and "wrong" for LaTeX arithmetic with clearly different values or shapes that can
   never be equal. It decides only where it knows math-verify's reading and gives math-verify's
   verdict: tests run a corpus of math-verify's own cases and public bug reports, and seeded
   random answers, through both and fail on any difference;
4. the remaining distinct (answer, reference) pairs go to a persistent ``KillPool`` whose workers
   run math-verify on their main thread with its own timeouts; a logging hook tells a timeout
   apart from a wrong answer, and a hard per-item kill catches what the alarm cannot interrupt.
   Before its comparison, a worker skips pairs of small plain numbers whose values clearly differ
   (``_clearly_different``, a quarter of a second at most): sympy's simplify would spend seconds
   proving what evalf shows. After it, two exact numbers math-verify calls equal only because its
   evalf chops tiny values (1/2^99 and 1/2^98) are ``wrong`` (``_chopped_apart``). These two are
   the only places the verdict can differ from math-verify's on the same answer, both times on
   numbers whose 30-digit values differ; tests check that.
Any exception while grading one item makes that item ``error`` (reward 0, the detail says what
raised) and leaves the others alone; if the pool itself fails, only the items it held get ``error``.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Sequence

from .exact import exact_verdict, mixed_to_latex
from .extract import BOX_MODES, THINK_END, math_answer
from .grade import Grade, default_workers
from .killpool import KillPool

# ---------------------------------------------------------------- limits before any parsing

# Generous for real answers (MATH answers are at most ~160 characters and nest a few levels), far
# below where parsers recurse too deep (~150 nested groups in the exact path, fewer in sympy's
# LaTeX parser) or Python refuses int conversion (4,300 digits).
MAX_CHARS = 2000
MAX_DEPTH = 40  # nested (), [], {} together
MAX_DIGITS = 1000  # longest run of digits
MAX_SIGNS = 16  # longest run of + and - signs (spaces between them allowed)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIGIT_RUN = re.compile(r"\d{%d}" % (MAX_DIGITS + 1))
_SIGN_RUN = re.compile(r"[+-](?:\s*[+-]){%d}" % MAX_SIGNS)
_BRACKET = re.compile(r"[(){}\[\]]")


def screen(text: str) -> str | None:
    """Why ``text`` is over the grader's limits, or None when it may be parsed. Linear time."""
    if len(text) > MAX_CHARS:
        return f"has {len(text):,} characters (limit {MAX_CHARS:,})"
    if _CONTROL.search(text):
        return "contains a control character (such as NUL)"
    if _DIGIT_RUN.search(text):
        return f"has a run of more than {MAX_DIGITS:,} digits"
    if _SIGN_RUN.search(text):
        return f"has a run of more than {MAX_SIGNS} signs"
    depth = _depth(text)
    if depth > MAX_DEPTH:
        return f"nests {depth} brackets deep (limit {MAX_DEPTH})"
    return None


def _depth(text: str) -> int:
    depth = deepest = 0
    for m in _BRACKET.finditer(text):
        depth += 1 if m.group(0) in "({[" else -1
        depth = max(depth, 0)  # a stray closer is no nesting
        deepest = max(deepest, depth)
    return deepest


def _preview(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------- math-verify (pool worker processes)


class _TimeoutFlag(logging.Handler):
    """math-verify logs "Timeout during ..." and returns False; this records that it happened."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.fired = False

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Timeout"):
            self.fired = True


_FLAG: _TimeoutFlag | None = None
_GOLD_CACHE: dict[str, list] = {}


def _install_flag() -> _TimeoutFlag:
    global _FLAG
    if _FLAG is None:
        _FLAG = _TimeoutFlag()
        log = logging.getLogger("math_verify")
        log.addHandler(_FLAG)
        log.propagate = False  # the worker's stderr is the caller's terminal: keep it quiet
    return _FLAG


_MATH_DOLLAR = re.compile(r"(?<!\\)\$")  # a $ that delimits math (\$ is a dollar sign)


def wrap_reference(reference: str) -> str:
    """Bare LaTeX golds parse wrongly (``2^{1/2}`` reads as 2): give math-verify ``$...$``."""
    return reference if _MATH_DOLLAR.search(reference) else f"${reference}$"


def _parse_reference(reference: str, seconds: int, flag: _TimeoutFlag) -> list:
    if reference not in _GOLD_CACHE:
        from math_verify import parse

        gold = parse(wrap_reference(reference), parsing_timeout=seconds)
        if flag.fired:
            return gold  # do not cache a parse that was cut short
        if len(_GOLD_CACHE) > 4096:
            _GOLD_CACHE.clear()
        _GOLD_CACHE[reference] = gold
    return _GOLD_CACHE[reference]


def _plain_number(parsed: list):
    """The one sympy value of a parse result if it is a plain number (no symbols, no percent)."""
    from sympy import Expr, UnevaluatedExpr

    exprs = [x for x in parsed if isinstance(x, Expr)]
    if len(exprs) != 1 or not exprs[0].is_number or exprs[0].has(UnevaluatedExpr):
        return None  # symbols, sets, relations, matrices, "9\%" (math-verify says 9\% == 9)
    return exprs[0]


PRECHECK_SECONDS = 0.25  # evalf time allowed per pair before math-verify decides instead
PRECHECK_NODES = 200  # larger expression trees go straight to math-verify


class _OverBudget(BaseException):
    """Raised by the pre-check's own timer; a BaseException, so no library code swallows it."""


def _within(seconds: float, fn):
    """``fn()``, cut short with ``_OverBudget`` after ``seconds`` (SIGALRM: main thread only)."""

    def stop(signum, frame):
        raise _OverBudget

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _small(expr, limit: int = PRECHECK_NODES) -> bool:
    from sympy import preorder_traversal

    for count, _ in enumerate(preorder_traversal(expr)):
        if count >= limit:
            return False
    return True


def _values(gold: list, pred: list):
    """``(gold expr, answer expr, gold value, answer value)`` when both parse results are small
    plain numbers that evalf can value within ``PRECHECK_SECONDS``; None otherwise."""
    a, b = _plain_number(gold), _plain_number(pred)
    if a is None or b is None or not (_small(a) and _small(b)):
        return None
    try:
        x, y = _within(PRECHECK_SECONDS, lambda: (a.evalf(30), b.evalf(30)))
    except (_OverBudget, Exception):
        return None  # a 20-deep continued fraction took 3 s here: math-verify decides instead
    return (a, b, x, y) if x.is_finite and y.is_finite else None  # sympy numbers: 1e-5749 is no 0.0


def _clearly_different(x, y) -> bool:
    """Values that differ far beyond math-verify's float rounding (6 decimals).

    Then every comparison math-verify would try should say no; the one that costs (sympy's
    simplify of the difference, seconds for radicals) cannot find zero in a number that is not
    zero. It never says "correct". Where math-verify does say "equal" for such numbers, it is
    wrong (huge exponents it evaluates imprecisely: (2^2005+1)/(3*2^2006) vs 1/(3*2^2006)).
    """
    return bool(abs(x - y) > 1e-5 * max(1, abs(x), abs(y)))


def _chopped_apart(a, b, x, y) -> bool:
    """Two exact numbers (no decimals) math-verify calls equal although their values differ.

    math-verify compares ``(a - b).evalf(chop=True)``, and chop drops anything below ~1e-15, so it
    calls 1/2^99 and 1/2^98 (or 1/2004! and 1/2006!) equal (huggingface/Math-Verify#14, still so
    in 0.9). For exact numbers it means exact equality; a relative difference far above evalf's
    30-digit error settles it. Decimals keep math-verify's 6-decimal rounding, which is by design.
    """
    from sympy import Float

    if a.has(Float) or b.has(Float) or x.is_zero or y.is_zero:
        return False
    return bool(abs(x - y) > 1e-10 * max(abs(x), abs(y)))


def verify_pair(item: tuple[str, str, int]) -> tuple[str, str, float]:
    """Runs in a pool worker: ``(status, detail, seconds)`` for one (answer, reference) pair."""
    from math_verify import parse, verify

    answer, reference, seconds = item
    flag = _install_flag()
    flag.fired = False
    start = time.perf_counter()
    gold = _parse_reference(reference, seconds, flag)
    if not gold:
        status = "timeout" if flag.fired else "error"
        return status, "math-verify could not parse the reference", time.perf_counter() - start
    pred = parse(f"\\boxed{{{answer}}}", parsing_timeout=seconds)
    values = _values(gold, pred) if pred else None
    if values is not None and _clearly_different(values[2], values[3]):
        return "wrong", "numerically different", time.perf_counter() - start
    ok = bool(pred) and verify(gold, pred, timeout_seconds=seconds)
    if ok and values is not None and _chopped_apart(*values):
        return "wrong", "exact values differ (math-verify's chopped evalf called them equal)", time.perf_counter() - start
    status = "correct" if ok else ("timeout" if flag.fired else "wrong")
    return status, "math-verify", time.perf_counter() - start


# ------------------------------------------------------------------------------- public API

_POOLS: dict[int, KillPool] = {}
_POOL_LOCK = threading.Lock()


# Answer shapes a new pool worker parses once. math-verify's LaTeX parser (ANTLR) builds its
# prediction tables lazily, per shape of input: a worker's first "[-8, 0)" or "x^2+1" costs
# 0.1-0.8 s, the next ones ~1 ms. Paying that at start-up keeps it off graded items.
WARM_SHAPES = (
    "7", "-3", "0.25", "\\frac{3}{4}", "\\dfrac{5}{6}", "-\\frac{1}{2}", "2\\sqrt{3}", "\\sqrt[3]{2}", "\\frac{\\sqrt{3}}{2}",
    "3+2\\sqrt{2}", "\\pi", "4\\pi", "\\frac{\\pi}{4}", "e^{2}", "x^{2}+1", "x+1", "2x-3", "x^2-5x+6", "\\frac{x+1}{x-1}",
    "(1,2)", "[1,2)", "(-3, 5]", "[-8, 0)", "(-\\infty, 3]", "\\{1, 2, 3\\}", "\\{-4, 7\\}", "x=2", "y = 3x+1", "x \\in [0, 1]",
    "\\text{Tuesday}", "30^\\circ", "10\\%", "2\\cdot 3", "2\\times 3", "\\left(1, 2\\right)", "\\sin x", "\\log 2",
    "3i", "1+2i", "\\infty", "a_1", "n!", "\\binom{5}{2}", "(1, 2, 3)", "\\frac{1}{2}\\pi", "2^{1/2}", "1,000",
    "\\sqrt{2}+\\sqrt{3}", "x<3", "1 < x < 2", "12.5", "-0.75", "\\frac{-7}{3}", "100\\sqrt{2}", "\\frac{1+\\sqrt{5}}{2}",
)


def warm_up() -> None:
    """Runs once in each new pool worker (see WARM_SHAPES), then forgets what it graded."""
    from math_verify import parse

    flag = _install_flag()
    for shape in WARM_SHAPES:
        parse(wrap_reference(shape), parsing_timeout=5)
        parse(f"\\boxed{{{shape}}}", parsing_timeout=5)
    for answer, reference in (("0.5", "\\frac{1}{2}"), ("\\sqrt{12}", "2\\sqrt{3}"), ("x+1", "[1, 2)"),
                              ("\\{1,2\\}", "\\{2, 1\\}"), ("3+2\\sqrt{2}", "2\\sqrt{3}"), ("x^2", "196")):
        verify_pair((answer, reference, 5))
    _GOLD_CACHE.clear()
    flag.fired = False


def _pool(workers: int) -> KillPool:
    if workers not in _POOLS:
        import math_verify  # noqa: F401  (imported once here, so forked workers start warm)

        _POOLS[workers] = KillPool(verify_pair, workers, init=warm_up)
    return _POOLS[workers]


def grade_math(
    responses: Sequence[str],
    references: Sequence[str],
    *,
    think_end: str | None = THINK_END,
    fallbacks: Sequence[str | re.Pattern[str]] = (),
    boxes: str = "last_box",
    unboxed_fallback: bool = False,
    workers: int | None = None,
    timeout: int = 3,
    hard_timeout: float | None = None,
) -> list[Grade]:
    """Grade each response against its reference; see the module docstring.

    ``boxes``: ``"last_box"`` (the paper's rule) or ``"all_boxes"`` (the final group of boxes, for
    answers boxed one by one); ``unboxed_fallback``: without a box, grade the answer the final
    text states (``extract.stated_answer``); ``fallbacks``: regexes tried before that.
    ``timeout``: math-verify's own limit per parse / comparison (whole seconds, SIGALRM based).
    ``hard_timeout``: wall-clock seconds after which a stuck item's worker is killed
    (default ``2 * timeout + 1``). Both give status ``timeout``, never ``wrong``.
    Raises only for a wrong call (lengths differ, unknown ``boxes``), never for an item.
    """
    if len(responses) != len(references):
        raise ValueError(f"{len(responses)} responses but {len(references)} references: pass one reference per response")
    if boxes not in BOX_MODES:
        raise ValueError(f"boxes={boxes!r}: must be one of {BOX_MODES}")
    read = _Reader(think_end, tuple(fallbacks), boxes, unboxed_fallback)
    grades: list[Grade | None] = [None] * len(responses)
    pending: dict[tuple[str, str], list[int]] = {}  # distinct pairs left for math-verify
    for i, (response, reference) in enumerate(zip(responses, references)):
        grades[i], key = _first_pass(read, response, reference)
        if key is not None:
            pending.setdefault(key, []).append(i)
    if pending:
        _grade_with_math_verify(pending, grades, workers, timeout, hard_timeout or 2 * timeout + 1)
    return grades  # type: ignore[return-value]


class _Reader:
    """How answers are read from responses: ``math_answer``'s settings for one call."""

    def __init__(self, think_end, fallbacks, boxes, unboxed):
        self.think_end, self.fallbacks, self.boxes, self.unboxed = think_end, fallbacks, boxes, unboxed

    def answer(self, response: str) -> str | None:
        return math_answer(response, self.think_end, self.fallbacks, boxes=self.boxes, unboxed=self.unboxed)


def _first_pass(read: _Reader, response, reference) -> tuple[Grade | None, tuple[str, str] | None]:
    """``_fast_grade``, with any exception turned into this item's ``error`` grade."""
    try:
        return _fast_grade(read, response, str(reference))
    except Exception as exc:  # the last resort: one item's bug must not end the batch
        return Grade(0.0, "error", detail=f"grader raised {type(exc).__name__}: {_preview(str(exc))}"), None


def _fast_grade(read: _Reader, response: str, reference: str) -> tuple[Grade | None, tuple[str, str] | None]:
    """A grade when no sympy is needed, else the (answer, reference) key to send to math-verify."""
    problem = screen(reference)
    if problem is not None:
        return Grade(0.0, "error", detail=f"the reference {problem}: the grader cannot read it; fix the data"), None
    answer = read.answer(response)
    if answer is None:
        return Grade(0.0, "no_answer", detail="no closing think tag, or no answer after it"), None
    problem = screen(answer)
    if problem is not None:
        return Grade(0.0, "refused", _preview(answer), f"the answer {problem}: refused before parsing"), None
    answer, reference = mixed_to_latex(answer), mixed_to_latex(reference)
    verdict = exact_verdict(answer, reference)
    if verdict is None:
        return None, (answer, reference)
    return Grade(float(verdict), "correct" if verdict else "wrong", answer, "exact"), None


def _grade_with_math_verify(pending, grades, workers, timeout, hard_timeout) -> None:
    keys = sorted(pending, key=lambda k: k[1])  # same reference together: its parse is cached
    try:
        with _POOL_LOCK:
            outcomes = _pool(default_workers(workers)).map([(a, r, int(timeout)) for a, r in keys], hard_timeout)
    except Exception as exc:  # the pool itself failed (fork refused, ...): only its items suffer
        outcomes = [("error", f"grading pool failed: {type(exc).__name__}: {_preview(str(exc))}")] * len(keys)
    for (answer, _), indices, (kind, value) in zip(keys, (pending[k] for k in keys), outcomes):
        if kind == "ok":
            status, detail, elapsed = value
        elif kind == "timeout":
            status, detail, elapsed = "timeout", f"killed after {hard_timeout:g} s", hard_timeout
        else:
            status, detail, elapsed = "error", value, 0.0
        for i in indices:
            grades[i] = Grade(1.0 if status == "correct" else 0.0, status, answer, detail, elapsed=elapsed)
