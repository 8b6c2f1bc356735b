"""The value of a small, unambiguous subset of LaTeX arithmetic, or None; and whether a LaTeX
string is a polynomial that is certainly not a constant.

What: ``value(r"2\\sqrt{3}+\\frac{\\pi}{4}")`` -> 4.249...; anything outside the subset -> None.
Why: most wrong math answers are plain numbers, and proving ``3+2\\sqrt{2} != 2\\sqrt{3}`` with
sympy's simplify (what math-verify does) takes up to seconds. Two clearly different values settle
"wrong" in microseconds. This is only ever used to say *not equal*; equality stays math-verify's.
How: a recursive-descent parser over: integers and decimals, + - * / ^, ``\\cdot``, ``\\times``,
``\\frac``/``\\dfrac``/``\\tfrac`` with braced arguments, ``\\sqrt{}``, ``\\sqrt[n]{}``, ``\\pi``,
parentheses and braces, and implicit multiplication (``2\\sqrt{3}``, ``3\\pi``, ``\\sqrt{2}\\frac{1}{2}``).
Refused, since math-verify reads them otherwise or its reading is not obvious: letters (variables,
``e``, ``i``), ``\\%``, units, commas, exponents without braces (``2^10``), a number right before
``\\frac`` (``2\\frac{1}{2}`` is the mixed number 5/2 to math-verify, not 1) and a parenthesis after
a factor (math-verify reads ``2(3)`` as 5 and ``\\pi(3)`` as a function call).
The parser is recursive only in the nesting of groups; callers bound that depth before calling
(``mathgrade.screen``), and a RecursionError still only means "no value".
``nonconstant_polynomial("2x^{2}+1")`` is True only for a plain sum of monomials (integer
coefficients, single-letter variables other than e and i, integer powers) in which, after like terms
are collected, some variable survives: sympy collects like terms as it builds the expression, so
such an answer stays a non-constant expression and can never equal a number.
"""

from __future__ import annotations

import math
import re

_TOKEN = re.compile(r"\d+\.\d+|\d+|\\[a-zA-Z]+|[-+*/^(){}\[\]]")
_ALIASES = {"\\dfrac": "\\frac", "\\tfrac": "\\frac", "\\cdot": "*", "\\times": "*", "\\left": "", "\\right": ""}
_LIMIT = 1e12  # larger values may lose precision as floats: no verdict


class _Refuse(Exception):
    pass


def value(latex: str) -> float | None:
    """The number ``latex`` denotes, if it is in the subset; None otherwise."""
    text = latex.replace(" ", "")
    tokens = _TOKEN.findall(text)
    if "".join(tokens) != text:
        return None  # characters outside the subset
    tokens = [_ALIASES.get(t, t) for t in tokens if _ALIASES.get(t, t) != ""]
    parser = _Parser(tokens)
    try:
        result = parser.expr()
        if parser.pos != len(tokens) or not math.isfinite(result) or abs(result) > _LIMIT:
            return None
        return result
    except (_Refuse, ZeroDivisionError, OverflowError, ValueError, IndexError, RecursionError):
        return None


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.pos]
        if expected is not None and token != expected:
            raise _Refuse(token)
        self.pos += 1
        return token

    def expr(self) -> float:
        total = self.term()
        while self.peek() in ("+", "-"):
            total = total + self.term() if self.take() == "+" else total - self.term()
        return total

    def term(self) -> float:
        total, divided = self.signed(), False
        while True:
            token = self.peek()
            if token in ("*", "/"):
                self.take()
                divided |= token == "/"
                total = total * self.signed() if token == "*" else total / self.signed()
            elif token in ("\\frac", "\\sqrt", "\\pi"):
                if divided:  # is 1/2\pi (1/2)pi or 1/(2pi)? Readers disagree: no verdict.
                    raise _Refuse("implicit product after /")
                if token == "\\frac" and self.tokens[self.pos - 1][0].isdigit():
                    raise _Refuse("mixed number")  # 2\frac{1}{2} is 5/2 to math-verify
                total *= self.power()  # implicit multiplication: 2\sqrt{3}, 3\pi
            elif token == "(":
                raise _Refuse("parenthesis after a factor")  # math-verify reads 2(3) as 5
            else:
                return total

    def signed(self) -> float:
        """Leading signs, counted in a loop: a run of 1,000 minus signs is no recursion."""
        negative = False
        while self.peek() in ("+", "-"):
            negative ^= self.take() == "-"
        value = self.power()
        return -value if negative else value

    def power(self) -> float:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        if self.peek() != "{":
            raise _Refuse("exponent without braces")
        exponent = self.group()
        if abs(exponent) > 64 or self.peek() == "^":
            raise _Refuse("exponent")
        return base ** exponent

    def group(self) -> float:
        self.take("{")
        inner = self.expr()
        self.take("}")
        return inner

    def atom(self) -> float:
        token = self.take()
        if token[0].isdigit():
            return float(token)
        if token == "\\pi":
            return math.pi
        if token == "\\frac":
            return self.group() / self.group()
        if token == "\\sqrt":
            return self.root()
        if token in ("(", "{"):
            inner = self.expr()
            self.take(")" if token == "(" else "}")
            return inner
        raise _Refuse(token)

    def root(self) -> float:
        degree = 2.0
        if self.peek() == "[":
            self.take()
            degree = self.expr()
            self.take("]")
        radicand = self.group()
        if radicand < 0 or degree not in (2.0, 3.0, 4.0, 5.0):
            raise _Refuse("root")
        return radicand ** (1 / degree)


_MONOMIAL = re.compile(r"([+-]?)(\d{0,30})((?:[a-df-hj-z](?:\^\{?\d\}?)?)*)")  # 30 digits: int() stays cheap
_FACTOR = re.compile(r"([a-df-hj-z])(?:\^\{?(\d)\}?)?")


def nonconstant_polynomial(latex: str) -> bool:
    """True when ``latex`` is a sum of monomials that does not collapse to a constant."""
    text = latex.replace(" ", "")
    terms: dict[tuple, int] = {}
    pos = 0
    while pos < len(text):
        m = _MONOMIAL.match(text, pos)
        if not m or m.end() == pos or (pos > 0 and not m.group(1)) or not (m.group(2) or m.group(3)):
            return False
        powers: dict[str, int] = {}
        for var, power in _FACTOR.findall(m.group(3)):
            powers[var] = powers.get(var, 0) + int(power or 1)
        key = tuple(sorted(powers.items()))
        coef = int(m.group(2) or 1) * (-1 if m.group(1) == "-" else 1)
        terms[key] = terms.get(key, 0) + coef
        pos = m.end()
    return any(key and coef for key, coef in terms.items())


# ------------------------------------------------ polynomials in one variable, expanded exactly

_POLY_TOKEN = re.compile(r"\d{1,12}|[a-z]|\\cdot|\\times|[-+*^(){}]")
_POLY_VARIABLES = "abcfghjkmnpqrstuvwxyz"  # not d, e, i: math-verify reads them as more than a letter
_MAX_DEGREE = 12


def polynomial(latex: str) -> tuple[str, dict[int, int]] | None:
    """``(variable, {power: coefficient})`` for a polynomial in one lowercase variable with
    integer coefficients, expanded (``(x-2)(x-3)`` -> ``("x", {2: 1, 1: -5, 0: 6})``); None when
    ``latex`` is anything else. Products of parenthesised factors count only where every factor
    holds the variable: math-verify reads ``2(3)`` as 5, but ``2(x+1)`` as a product."""
    text = latex.replace(" ", "")
    tokens = _POLY_TOKEN.findall(text)
    if "".join(tokens) != text:
        return None
    variables = {t for t in tokens if t.isalpha()}
    if len(variables) != 1 or not variables <= set(_POLY_VARIABLES):
        return None
    parser = _PolyParser([{"\\cdot": "*", "\\times": "*"}.get(t, t) for t in tokens], variables.pop())
    try:
        result = parser.sum()
        if parser.pos != len(parser.tokens) or max(result, default=0) == 0:
            return None
        return parser.variable, result
    except (_Refuse, IndexError, RecursionError):
        return None


def _add(a: dict[int, int], b: dict[int, int], sign: int = 1) -> dict[int, int]:
    out = dict(a)
    for power, coef in b.items():
        out[power] = out.get(power, 0) + sign * coef
    return {p: c for p, c in out.items() if c}


def _mul(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for pa, ca in a.items():
        for pb, cb in b.items():
            if pa + pb > _MAX_DEGREE:
                raise _Refuse("degree")
            out[pa + pb] = out.get(pa + pb, 0) + ca * cb
    return {p: c for p, c in out.items() if c}


class _PolyParser:
    """sum := term (+|- term)*; term := [+|-] factor ([*] factor)*; factor := base [^ digit];
    base := integer | variable | (sum) | {sum}."""

    def __init__(self, tokens: list[str], variable: str):
        self.tokens, self.pos, self.variable = tokens, 0, variable

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        self.pos += 1
        return self.tokens[self.pos - 1]

    def sum(self) -> dict[int, int]:
        total = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            total = _add(total, self.term(), sign)
        return total

    def term(self) -> dict[int, int]:
        sign = 1
        while self.peek() in ("+", "-"):
            sign *= 1 if self.take() == "+" else -1
        product = self.factor()
        while self.peek() is not None and self.peek() not in ("+", "-", ")", "}"):
            if self.peek() == "*":
                self.take()
            product = _mul(product, self.factor())
        return {p: sign * c for p, c in product.items()}

    def factor(self) -> dict[int, int]:
        base = self.base()
        if self.peek() != "^":
            return base
        self.take()
        braced = self.peek() == "{"
        if braced:
            self.take()
        exponent = self.take()
        if braced and self.take() != "}":
            raise _Refuse("exponent")
        if not exponent.isdigit() or int(exponent) > _MAX_DEGREE:
            raise _Refuse("exponent")
        result = {0: 1}
        for _ in range(int(exponent)):
            result = _mul(result, base)
        return result

    def base(self) -> dict[int, int]:
        token = self.take()
        if token.isdigit():
            return {0: int(token)} if int(token) else {}
        if token == self.variable:
            return {1: 1}
        if token in ("(", "{"):
            inner = self.sum()
            if self.take() != (")" if token == "(" else "}"):
                raise _Refuse("group")
            if token == "(" and max(inner, default=0) == 0:
                raise _Refuse("a number in parentheses")  # 2(3) is 5 to math-verify
            return inner
        raise _Refuse(token)
