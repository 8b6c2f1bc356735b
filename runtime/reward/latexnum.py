"""The value of a small, unambiguous subset of LaTeX arithmetic, or None; and whether a LaTeX
string is a polynomial that is certainly not a constant.

What: ``value(r"2\\sqrt{3}+\\frac{\\pi}{4}")`` -> 4.249...; anything outside the subset -> None.
Why: most wrong math answers are plain numbers, and proving ``3+2\\sqrt{2} != 2\\sqrt{3}`` with
sympy's simplify (what math-verify does) takes up to seconds. Two clearly different values settle
"wrong" in microseconds. This is only ever used to say *not equal*; equality stays math-verify's.
How: a recursive-descent parser over: integers and decimals, + - * / ^, ``\\cdot``, ``\\times``,
``\\frac``/``\\dfrac``/``\\tfrac`` with braced arguments, ``\\sqrt{}``, ``\\sqrt[n]{}``, ``\\pi``,
parentheses and braces, and implicit multiplication (``2\\sqrt{3}``, ``3\\pi``). Letters (variables,
``e``, ``i``), ``\\%``, units, commas and exponents without braces (``2^10``) are refused, since
math-verify's reading of them is not obvious.
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
    except (_Refuse, ZeroDivisionError, OverflowError, ValueError, IndexError):
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
            elif token in ("(", "\\frac", "\\sqrt", "\\pi"):
                if divided:  # is 1/2\pi (1/2)pi or 1/(2pi)? Readers disagree: no verdict.
                    raise _Refuse("implicit product after /")
                total *= self.power()  # implicit multiplication: 2\sqrt{3}, 3\pi, 2(1+1)
            else:
                return total

    def signed(self) -> float:
        if self.peek() in ("+", "-"):
            return self.signed() if self.take() == "+" else -self.signed()
        return self.power()

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


_MONOMIAL = re.compile(r"([+-]?)(\d*)((?:[a-df-hj-z](?:\^\{?\d\}?)?)*)")
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
