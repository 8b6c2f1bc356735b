"""Binary math reward: is the last boxed answer after ``</think>`` equivalent to the reference?

What: ``grade_math(responses, references)`` returns one ``Grade`` per pair, in input order, with
status ``correct | wrong | no_answer | timeout | error``.
Why: the recipe's math reward is a sympy-based equivalence check (math-verify). Called naively it
costs ~1.2 ms a pair, its SIGALRM timeout breaks outside the main thread and cancels the caller's
alarm, and when it times out it quietly answers "wrong", which zeroes rewards without a trace.
How, in three steps:
1. extract the answer (``extract.math_answer``); no closing think tag or no box -> ``no_answer``;
2. a cheap exact path decides pairs whose verdict is certain without sympy (both sides plain
   numbers, integer intervals or integer sets, or the same plain string; "wrong" also for LaTeX
   arithmetic with clearly different values and for shapes that can never be equal, such as a
   number and a non-constant polynomial, see ``_kind`` and ``latexnum``); anything it is unsure
   about falls through, so it never disagrees with math-verify;
3. the remaining distinct (answer, reference) pairs go to a persistent ``KillPool`` whose workers
   run math-verify on their main thread with its own timeouts; a logging hook tells a timeout
   apart from a wrong answer, and a hard per-item kill catches what the alarm cannot interrupt.
   Before its comparison, a worker skips pairs of plain numbers whose values clearly differ
   (``_clearly_different``): sympy's simplify would spend seconds proving what evalf shows.
"""

from __future__ import annotations

import cmath
import logging
import re
import threading
import time
from collections.abc import Sequence
from fractions import Fraction

from . import latexnum
from .extract import THINK_END, math_answer
from .grade import Grade, default_workers
from .killpool import KillPool

# ---------------------------------------------------------------- exact path (parent process)

_INT = re.compile(r"-?\d{1,40}")
_DEC = re.compile(r"-?\d{1,15}\.\d{1,12}")
_FRAC = re.compile(r"(-?)\\frac\{(-?\d{1,15})\}\{(\d{1,15})\}|(-?\d{1,15})/(\d{1,15})")
_DEGREES = re.compile(r"\^\{?\\circ\}?$")
# Intervals need a square bracket: "(1,2)" may be a point. Sets are written \{...\}.
_INTERVAL = re.compile(r"([\[(])(-?\d{1,15}),(-?\d{1,15})([\])])")
_SET = re.compile(r"\\\{(-?\d{1,15}(?:,-?\d{1,15})*)\\\}")
_SPACES = re.compile(r"\s+|\\[,;:! ]|~")
# Strings made only of these are compared verbatim with no surprises from math-verify's
# LaTeX normaliser ($ delimiters, \text units and % change how it reads the answer).
_PLAIN = re.compile(r"[0-9A-Za-z\\{}()\[\]^_+\-*/=,.<>|']+")


def _normalise(s: str) -> str:
    s = _SPACES.sub("", s)
    return s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def _number(s: str) -> tuple[Fraction, bool] | None:
    """``(value, has_decimal_point)`` when ``s`` is a plain number math-verify reads the same way."""
    s = _DEGREES.sub("", s)  # math-verify drops a trailing degree sign (30^\circ == 30)
    if _INT.fullmatch(s):
        return Fraction(int(s)), False
    if _DEC.fullmatch(s):
        return Fraction(s), True
    m = _FRAC.fullmatch(s)
    if m and (m.group(3) or m.group(5)).lstrip("0"):
        sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else ("", m.group(4), m.group(5))
        value = Fraction(int(num), int(den))
        return (-value if sign else value), False
    return None


def _numbers_verdict(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool | None:
    (x, x_dec), (y, y_dec) = a, b
    if x == y:
        return True
    if not (x_dec or y_dec):
        return False  # exact rationals: math-verify compares them exactly too
    # math-verify rounds floats to 6 decimals; only call it wrong far outside that rounding.
    scale = max(1, abs(x), abs(y))
    if scale < 10**12 and abs(x - y) > Fraction(1, 10**5) * scale:
        return False
    return None


def _interval(s: str) -> tuple[str, int, int, str] | None:
    m = _INTERVAL.fullmatch(s)
    if not m or "[" not in s and "]" not in s or int(m.group(2)) >= int(m.group(3)):
        return None  # "(1,2)" may be a point; [2,1) is empty (and all empty sets are equal)
    return m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)


def _int_set(s: str) -> frozenset[int] | None:
    m = _SET.fullmatch(s)
    return frozenset(int(x) for x in m.group(1).split(",")) if m else None


def _kind(s: str, number: tuple | None) -> tuple[str, object] | None:
    """The shape of an answer when it is one whose comparisons need no sympy:
    ("value", float) a number, plain or LaTeX arithmetic (see ``latexnum``); ("polynomial", None)
    a polynomial that is not a constant; ("interval", ...) a proper integer interval;
    ("set", ...) a set of two or more integers. None otherwise.

    Shapes of different kinds are never equal: a constant is not a non-constant polynomial, a
    proper interval is no number or finite set, and a set of two or more numbers is no number (a
    one-element set may equal a number in math-verify, so it is left out).
    """
    if number is not None:
        return "value", float(number[0])
    value = latexnum.value(s)
    if value is not None:
        return "value", value
    if latexnum.nonconstant_polynomial(s):
        return "polynomial", None
    interval = _interval(s)
    if interval is not None:
        return "interval", interval
    members = _int_set(s)
    return ("set", members) if members is not None and len(members) > 1 else None


def exact_verdict(answer: str, reference: str) -> bool | None:
    """True / False when certain without sympy, None to let math-verify decide."""
    if "$" in answer or "$" in reference:
        return None
    a, r = _normalise(answer), _normalise(reference)
    if not a or not r:
        return None
    na, nr = _number(a), _number(r)
    if na is not None and nr is not None:
        return _numbers_verdict(na, nr)
    if a == r and _PLAIN.fullmatch(a):
        return True
    ka, kr = _kind(a, na), _kind(r, nr)
    if ka is None or kr is None:
        return None
    if ka[0] != kr[0]:
        return False
    if ka[0] in ("interval", "set"):
        return ka[1] == kr[1]
    if ka[0] == "value" and _far_apart(ka[1], kr[1]):
        return False  # 3+2\sqrt{2} is not 2\sqrt{3}; equal values are left to math-verify
    return None  # two polynomials, or two close values: math-verify decides


def _far_apart(x: float, y: float) -> bool:
    """Different far beyond float error and math-verify's rounding to 6 decimals."""
    return abs(x - y) > 1e-5 * max(1.0, abs(x), abs(y))


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


def wrap_reference(reference: str) -> str:
    """Bare LaTeX golds parse wrongly (``2^{1/2}`` reads as 2): give math-verify ``$...$``."""
    return reference if "$" in reference else f"${reference}$"


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


def _clearly_different(gold: list, pred: list, seconds: int) -> bool:
    """Both sides are plain numbers whose values differ far beyond math-verify's float rounding.

    Then every comparison math-verify would try says no; the one that costs (sympy's simplify of
    the difference, seconds for radicals) cannot find zero in a number that is not zero. This only
    skips work: it never says "correct", and anything unusual falls through to math-verify.
    """
    from math_verify.errors import TimeoutException
    from math_verify.utils import timeout

    a, b = _plain_number(gold), _plain_number(pred)
    if a is None or b is None:
        return False
    try:
        x, y = timeout(seconds)(lambda: (complex(a.evalf(30)), complex(b.evalf(30))))()
    except (TimeoutException, Exception):
        return False
    finite = all(map(cmath.isfinite, (x, y)))
    return finite and abs(x - y) > 1e-5 * max(1.0, abs(x), abs(y))


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
    if pred and _clearly_different(gold, pred, seconds):
        return "wrong", "numerically different", time.perf_counter() - start
    ok = bool(pred) and verify(gold, pred, timeout_seconds=seconds)
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
    workers: int | None = None,
    timeout: int = 3,
    hard_timeout: float | None = None,
) -> list[Grade]:
    """Grade each response against its reference; see the module docstring.

    ``timeout``: math-verify's own limit per parse / comparison (whole seconds, SIGALRM based).
    ``hard_timeout``: wall-clock seconds after which a stuck item's worker is killed
    (default ``2 * timeout + 1``). Both give status ``timeout``, never ``wrong``.
    """
    if len(responses) != len(references):
        raise ValueError(f"{len(responses)} responses but {len(references)} references: pass one reference per response")
    grades: list[Grade | None] = [None] * len(responses)
    pending: dict[tuple[str, str], list[int]] = {}  # distinct pairs left for math-verify
    for i, (response, reference) in enumerate(zip(responses, references)):
        answer = math_answer(response, think_end, fallbacks)
        grades[i], key = _fast_grade(answer, str(reference))
        if key is not None:
            pending.setdefault(key, []).append(i)
    if pending:
        _grade_with_math_verify(pending, grades, workers, timeout, hard_timeout or 2 * timeout + 1)
    return grades  # type: ignore[return-value]


def _fast_grade(answer: str | None, reference: str) -> tuple[Grade | None, tuple[str, str] | None]:
    """A grade when no sympy is needed, else the (answer, reference) key to send to math-verify."""
    if answer is None:
        return Grade(0.0, "no_answer", detail="no closing think tag, or no boxed answer after it"), None
    verdict = exact_verdict(answer, reference)
    if verdict is None:
        return None, (answer, reference)
    return Grade(float(verdict), "correct" if verdict else "wrong", answer, "exact"), None


def _grade_with_math_verify(pending, grades, workers, timeout, hard_timeout) -> None:
    keys = sorted(pending, key=lambda k: k[1])  # same reference together: its parse is cached
    with _POOL_LOCK:
        outcomes = _pool(default_workers(workers)).map([(a, r, int(timeout)) for a, r in keys], hard_timeout)
    for (answer, _), indices, (kind, value) in zip(keys, (pending[k] for k in keys), outcomes):
        if kind == "ok":
            status, detail, elapsed = value
        elif kind == "timeout":
            status, detail, elapsed = "timeout", f"killed after {hard_timeout:g} s", hard_timeout
        else:
            status, detail, elapsed = "error", value, 0.0
        for i in indices:
            grades[i] = Grade(1.0 if status == "correct" else 0.0, status, answer, detail, elapsed=elapsed)
