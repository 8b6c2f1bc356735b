"""The math grader's exact path: verdicts that need no sympy, and that math-verify would give too.

What: ``exact_verdict(answer, reference)`` -> True / False when the verdict is certain, None to
let math-verify decide. ``mixed_to_latex`` rewrites a plain mixed number ("2 2/3") the way
math-verify reads mixed numbers in LaTeX.
Why: most RL answers are short, and their comparisons are settled in microseconds: 204 vs 240,
(3, 5) vs (5, 3), \\{1, 2\\} vs \\{2, 1\\}, x = 720 vs 720, \\text{Tuesday} vs \\text{Wednesday}.
math-verify spends 2-100 ms on each (its parser, then sympy). The rule that keeps the two graders
one grader: the exact path decides only where it knows math-verify's reading, and gives the
verdict math-verify gives, even where that is debatable (``5\\%`` equals 5). Tests run a corpus
of math-verify's own cases and public bug reports plus seeded random answers through both and
fail on any difference.
How: both sides are normalised (spaces, ``\\left``/``\\right``, ``\\dfrac``) and read as a shape:
- a number: integer, decimal, fraction (``\\frac{3}{4}``, ``3/4``), degrees and a trailing unit
  (``5\\text{ cm}``) dropped; also inside ``\\text{}`` / ``\\textbf{}`` / ``\\mathrm{}``, or as the
  right side of ``x = 5`` when the other side is no equation (math-verify unwraps assignments);
- an interval: brackets around two numbers, at least one square, or both round with the smaller
  number first (math-verify's (1, 2) is an open interval);
- a tuple: round brackets around three or more numbers, or two with the first not smaller;
- a set: ``\\{...\\}`` around numbers, or a bare list "1, 2" (a comma right before three digits,
  as in "1,000", is a thousands separator to math-verify: such answers are left to it);
- a list of two or more answers (a hedge, or boxes grouped by ``boxes="all_boxes"``) whose items
  are certainly different from each other: never equal to a single answer;
- a word in ``\\text{}`` / ``\\textbf{}`` (compared without case), a choice letter A-E in any of
  ``\\text{(B)}``, ``(B)``, ``\\textbf{(B)}``, ``B``; an integer percent (``9\\%`` equals 9);
- LaTeX arithmetic with a value (``latexnum``), used only to say "not equal" when the values are
  far apart; a polynomial that is not a constant (never equal to a number), expanded exactly when
  it has one variable and integer coefficients (``(x-2)(x-3)`` equals ``x^2-5x+6``).
Equal numbers are equal; exact numbers that differ differ; decimals are only called different far
outside math-verify's 6-decimal rounding. Shapes of different kinds never compare equal, except
the ones math-verify compares across kinds (a one-element set and a number, an open interval and
a two-element set, a tuple and a set), which are left to it. Anything else is left to it too:
mixed numbers such as ``2\\frac{1}{2}``, spaces between digits, empty intervals (all are equal).
"""

from __future__ import annotations

import re
from fractions import Fraction

from . import latexnum

_MATH_DOLLAR = re.compile(r"\$")
_INT = re.compile(r"-?\d{1,40}")
_DEC = re.compile(r"-?\d{1,15}\.\d{1,12}")
_FRAC = re.compile(r"(-?)\\frac\{(-?\d{1,15})\}\{(\d{1,15})\}|(-?\d{1,15})/(\d{1,15})")
_DEGREES = re.compile(r"\^\{?\\circ\}?$")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm)\{([^{}]*)\}")
# A unit after a number: math-verify drops any \text{...} there ("5 \text{apples}" is 5), except
# "and" / "or", which it reads as list separators.
_UNIT = re.compile(r"(.+?)\\(?:text|mbox)\{([A-Za-z ]+)\}(?:\^\{?\d\}?)?")
_LIST_WORDS = re.compile(r"\b(?:and|or)\b")
_PERCENT = re.compile(r"(-?\d{1,15})\\%")
_ASSIGNMENT = re.compile(r"([a-df-hj-zA-DF-HJ-Z])=([^=]+)")  # not e, i: math-verify reads them as numbers
_WORD = re.compile(r"\\(?:text|textbf)\{([A-Za-z]{2,})\}")
_CHOICE = re.compile(r"\\(?:text|textbf)\{\(([A-E])\)\}|\(([A-E])\)|\\text\{([A-E])\}|([A-E])")
# Spacing goes, except inside \text{...}: "\text{Tues day}" is not "\text{Tuesday}".
_SPACES = re.compile(r"(\\(?:text|textbf|mathrm|mbox)\{[^{}]*\})|\s+|\\[,;:! ]|~|\\left|\\right")
# "1\,000" or "12 345": math-verify reads a space between digits as a product (1*0), not a
# thousands separator, so such answers are left to it.
_SPACED_DIGITS = re.compile(r"\d(?:\s|\\[,;:! ]|~)+\d")
# "1,000" and "12,\!000" are numbers to math-verify; "1, 000" is a list. Answers that may be
# either are left to it.
_THOUSANDS = re.compile(r"\d,\d{3}(?!\d)|,(?:\s|\\[!,;: ])*\\[!,;: ](?:\s|\\[!,;: ])*\d{3}(?!\d)")
# Strings made only of these are compared verbatim with no surprises from math-verify's
# LaTeX normaliser ($ delimiters, \text units and % change how it reads the answer).
_PLAIN = re.compile(r"[0-9A-Za-z\\{}()\[\]^_+\-*/=,.<>|']+")
_EDGE_OPERATOR = re.compile(r"^[+*/^_=,.<>|']|[+\-*/^_=,.<>|'\\]$")
_PLAIN_MIXED = re.compile(r"([+-]?)(\d{1,15})\s+(\d{1,15})/(\d{1,15})")

Number = tuple[Fraction, bool]  # (value, written with a decimal point)


def exact_verdict(answer: str, reference: str) -> bool | None:
    """True / False when certain without sympy, None to let math-verify decide."""
    if any(p.search(s) for p in (_MATH_DOLLAR, _SPACED_DIGITS, _THOUSANDS) for s in (answer, reference)):
        return None
    a, r = _normalise(answer), _normalise(reference)
    if not a or not r:
        return None
    if a == r and _well_formed(a):
        return True
    a, r = _unwrap_assignment(a, r)
    ka, kr = _shape(a), _shape(r)
    if ka is None and kr is None:
        return None
    if ka is None or kr is None:  # the side with no shape may list several answers
        listed, single = (a, kr) if ka is None else (r, ka)
        return _list_against_single(listed, single)
    if ka[0] != kr[0]:
        return _across_kinds(ka, kr)
    return _COMPARE[ka[0]](ka[1], kr[1])


def mixed_to_latex(answer: str) -> str:
    """``2 2/3`` -> ``2\\frac{2}{3}`` when the whole answer is a plain mixed number with a proper
    fraction. math-verify 0.9 reads ``2 2/3`` as 4/3 (its plain mixed numbers are an open pull
    request, huggingface/Math-Verify#81) but ``2\\frac{2}{3}`` as 8/3; anything else is unchanged."""
    m = _PLAIN_MIXED.fullmatch(answer.strip())
    if not m or int(m.group(3)) >= int(m.group(4)):
        return answer
    return f"{m.group(1)}{m.group(2)}\\frac{{{m.group(3)}}}{{{m.group(4)}}}"


# ------------------------------------------------------------------ reading a shape


def _normalise(s: str) -> str:
    s = _SPACES.sub(lambda m: m.group(1) or "", s)
    return s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def _well_formed(s: str) -> bool:
    """Plain characters, balanced groups, no dangling operator: then math-verify reads the string
    the same way as reference and as answer, and equal strings are equal answers. (Malformed
    strings such as "{" or "x^" may fail to parse as one and be compared as text as the other.)"""
    if not _PLAIN.fullmatch(s) or _EDGE_OPERATOR.search(s):
        return False
    braces = brackets = 0  # {} (also \{ \}) and ()[] (mixed: intervals such as [1,2))
    for ch in s:
        braces += (ch == "{") - (ch == "}")
        brackets += (ch in "([") - (ch in ")]")
        if braces < 0 or brackets < 0:
            return False
    return braces == 0 and brackets == 0


def _unwrap_assignment(a: str, r: str) -> tuple[str, str]:
    """``x=5`` against a side with no ``=`` compares as 5 (math-verify unwraps assignments)."""
    ma, mr = _ASSIGNMENT.fullmatch(a), _ASSIGNMENT.fullmatch(r)
    if ma and "=" not in r:
        return ma.group(2), r
    if mr and "=" not in a:
        return a, mr.group(2)
    return a, r


def _number(s: str) -> Number | None:
    """``(value, has_decimal_point)`` when ``s`` is a plain number math-verify reads the same way."""
    wrapped = _TEXT_WRAP.fullmatch(s)
    if wrapped:
        s = wrapped.group(1)
    unit = _UNIT.fullmatch(s)
    if unit and not _LIST_WORDS.search(unit.group(2)):
        s = unit.group(1)
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


def _items(inner: str) -> list[Number] | None:
    """The numbers of a comma-separated list, or None if any item is no plain number."""
    numbers = [_number(p) for p in inner.split(",")]
    return None if any(n is None for n in numbers) else numbers  # type: ignore[return-value]


def _shape(s: str) -> tuple[str, object] | None:
    """The shape of a normalised answer (see the module docstring), or None."""
    number = _number(s)
    if number is not None:
        return "number", number
    percent = _PERCENT.fullmatch(s)
    if percent:
        return "percent", int(percent.group(1))
    bracketed = _bracketed(s)
    if bracketed is not None:
        return bracketed
    word = _WORD.fullmatch(s)
    if word:
        return "word", word.group(1).lower()
    choice = _CHOICE.fullmatch(s)
    if choice:
        return "choice", next(g for g in choice.groups() if g)
    value = latexnum.value(s)
    if value is not None:
        return "value", value
    expanded = latexnum.polynomial(s)
    if expanded is not None:
        return "polynomial", expanded
    return ("polynomial", None) if latexnum.nonconstant_polynomial(s) else None


def _bracketed(s: str) -> tuple[str, object] | None:
    """An interval, tuple or set of plain numbers; None otherwise (and for empty intervals)."""
    if s.startswith("\\{") and s.endswith("\\}"):
        items = _items(s[2:-2])
        return ("set", items) if items else None
    if s[:1] in "([" and s[-1:] in ")]" and "(" not in s[1:-1] and "[" not in s[1:-1]:
        items = _items(s[1:-1])
        if items is None:
            return None
        if len(items) == 2 and (s[0] == "[" or s[-1] == "]" or items[0][0] < items[1][0]):
            lo, hi = items
            return ("interval", (s[0], lo, hi, s[-1])) if lo[0] < hi[0] else None  # empty: all alike
        return ("tuple", items) if s[0] == "(" and s[-1] == ")" and len(items) >= 2 else None
    if "," in s and not any(c in s for c in "()[]{}"):
        items = _items(s)
        return ("set", items) if items and len(items) >= 2 else None
    return None


# ------------------------------------------------------------------ comparing shapes


def _numbers_verdict(a: Number, b: Number) -> bool | None:
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


def _all(verdicts) -> bool | None:
    """Elementwise verdicts combined: one certain difference settles it, else all must be equal."""
    verdicts = list(verdicts)
    if False in verdicts:
        return False
    return True if all(verdicts) else None


def _tuples(a: list[Number], b: list[Number]) -> bool | None:
    return False if len(a) != len(b) else _all(map(_numbers_verdict, a, b))


def _intervals(a, b) -> bool | None:
    if (a[0], a[3]) != (b[0], b[3]):
        return False
    return _all([_numbers_verdict(a[1], b[1]), _numbers_verdict(a[2], b[2])])


def _sets(a: list[Number], b: list[Number]) -> bool | None:
    if any(dec for _, dec in a + b):
        return None  # sympy keeps 1 and 1.0 apart in a set, and rounds decimals: math-verify decides
    return {v for v, _ in a} == {v for v, _ in b}


def _values(x: float, y: float) -> bool | None:
    """Two LaTeX values: "wrong" when far apart, else math-verify decides (equality is its)."""
    return False if abs(x - y) > 1e-5 * max(1.0, abs(x), abs(y)) else None


_COMPARE = {
    "number": _numbers_verdict, "interval": _intervals, "tuple": _tuples, "set": _sets,
    "word": lambda a, b: a == b, "choice": lambda a, b: a == b, "value": _values, "percent": lambda a, b: a == b,
    "polynomial": lambda a, b: None if a is None or b is None else a == b,  # expanded: equal iff same
}
# Kinds math-verify compares with each other (through sets or numeric values): not decided here.
_RELATED = [{"number", "set"}, {"number", "value"}, {"interval", "set"}, {"tuple", "set"}, {"word", "choice"},
            {"value", "set"}, {"word", "polynomial"}, {"choice", "polynomial"}, {"percent", "value"}, {"percent", "set"}]


_SINGLE = ("number", "word", "choice", "value", "polynomial")  # kinds that never equal a list of two


def _list_against_single(text: str, single: tuple) -> bool | None:
    """False when ``text`` lists two or more certainly different answers and ``single`` is one
    answer: math-verify's set of them has two members, a single answer one. An open interval or a
    tuple is compared with a list of its length item by item, so only other lengths are settled."""
    items = _top_level_items(text)
    if len(items) < 2 or not _settled_against(single, len(items)):
        return None
    shapes = [_shape(item) for item in items]
    if any(k is None for k in shapes):
        return None
    return False if all(_different(x, y) for i, x in enumerate(shapes) for y in shapes[i + 1:]) else None


def _settled_against(single: tuple, length: int) -> bool:
    kind, value = single
    if kind == "interval":
        return value[0] == "[" or value[3] == "]" or length != 2
    if kind == "tuple":
        return length != len(value)
    return kind in _SINGLE


def _different(x, y) -> bool:
    verdict = _COMPARE[x[0]](x[1], y[1]) if x[0] == y[0] else _across_kinds(x, y)
    return verdict is False


def _top_level_items(text: str) -> list[str]:
    """``text`` split at commas outside any brackets or braces (``\\{ \\}`` count as braces)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return items + [text[start:]]


def _across_kinds(ka, kr) -> bool | None:
    """Different shapes: False where math-verify can never find them equal, else None."""
    kinds = {ka[0], kr[0]}
    if kinds == {"number", "percent"}:
        # Deferred: math-verify equates 25\% with 25 but not with \text{25}, which normalises to the
        # same number here (found by test_random_shaped_answers_many), so only it can decide.
        return None
    if kinds == {"number", "value"}:
        number, value = (ka, kr) if ka[0] == "number" else (kr, ka)
        return _values(float(number[1][0]), value[1])
    if kinds in ({"number", "set"}, {"value", "set"}):
        members = ka[1] if ka[0] == "set" else kr[1]
        if len({v for v, _ in members}) >= 2 and not any(dec for _, dec in members):
            return False  # two or more distinct numbers are no single number
        return None
    return None if kinds in _RELATED else False
