"""The parameters of a `builtin://math?...` / `builtin://code?...` URI: parsed and validated in one place.

What: `parse_uri(uri) -> (kind, params)` with every default filled in, or a `BuiltinError` that names
the parameter, says what is wrong and what to write (valid choices, ranges, a close spelling).
Parameters, as a URI query:
    n=100          how many records
    difficulty=1   1 (one step, small numbers) .. 5 (several steps, bigger numbers)
    split=train    `train` or `test`
    seed=0         which draw
    tasks=a,b      only these templates (math: `add`, `chain`, ...; code: `total`, `flip`, ...), whatever
                   the difficulty, which still sets the numbers' size (and a chain's length)
    shortcut=0     with `worked`, the share of answers that skip the work, as unfiltered warm-up data
                   does: math guesses the problem's last number with no steps, code prints (returns)
                   the example's output; both are wrong, so a verifier-driven policy learns to avoid them
    mode=both      code only: `stdin` programs, `call` (a function the tests call) or `both` (half each)
    worked=false   `true` adds `response`: a short worked answer in the policy's format
                   (`<reasoning></think>\\n\\boxed{42}` / `</think>\\n```python ...````) for SFT warm-up.

Why a module of its own: the generator (`builtin.py`) uses it when a job reads the data, and
`rlspec check` uses the same function so that `builtin://math?dificulty=2` is an error at the spec's
line instead of minutes later in a job. It imports only the standard library, so the compiler stays
light. The task names are listed here, not read from the generator's templates; a test checks that
both agree.
"""

from __future__ import annotations

import difflib
from typing import Any
from urllib.parse import parse_qs, urlsplit

KINDS = ("math", "code")
PARAMS: dict[str, Any] = {"n": 100, "difficulty": 1, "split": "train", "seed": 0, "worked": False, "tasks": None,
                          "mode": "both", "shortcut": 0.0}
CODE_MODES = ("both", "stdin", "call")
SPLITS = ("train", "test")
INT_RANGES = {"n": (1, 10_000_000), "difficulty": (1, 5), "seed": (0, 2**62)}
MEANING = {  # what each integer parameter is, for messages
    "n": "how many records",
    "difficulty": "1 (one step, small numbers) .. 5 (several steps, bigger numbers)",
    "seed": "which draw",
}
TASKS: dict[str, frozenset[str]] = {
    "math": frozenset({"add", "average", "chain", "compare", "divide", "equation", "fraction", "linear", "mul",
                       "next", "percent", "product_sum", "sub", "two_step"}),
    "code": frozenset({"add", "add_k", "ascending", "backwards", "bigger", "count_char", "count_first", "count_gt",
                       "count_odd", "descending", "distinct", "doubled", "flip", "gap", "gcd", "keep_div", "largest",
                       "longest", "rest", "shout", "size", "smallest", "spread", "sum_even", "sum_lt", "sum_sq",
                       "times", "total", "vowels", "words"}),
}


class BuiltinError(ValueError):
    """A malformed `builtin://` URI. `problem` says what is wrong without repeating the URI."""

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"{uri!r}: {problem}")
        self.uri = uri
        self.problem = problem


def parse_uri(uri: str) -> tuple[str, dict[str, Any]]:
    """(`math` | `code`, parameters with defaults filled in); raises BuiltinError on anything odd."""
    parts = urlsplit(uri)
    if parts.scheme != "builtin" or parts.netloc not in KINDS or parts.path not in ("", "/"):
        raise BuiltinError(uri, f"unknown builtin generator{_close(parts.netloc, KINDS)}; use one of "
                           + ", ".join(f"builtin://{k}" for k in KINDS))
    query = parse_qs(parts.query, keep_blank_values=True)
    _known_names(uri, query)
    params = dict(PARAMS)
    for name, values in query.items():
        if len(values) > 1:
            raise BuiltinError(uri, f"{name}= is given {len(values)} times ({', '.join(values)}); keep one")
        params[name] = _parse_param(uri, name, values[0])
    _check_together(uri, parts.netloc, params)
    return parts.netloc, params


def _known_names(uri: str, query: dict[str, list[str]]) -> None:
    unknown = sorted(set(query) - set(PARAMS))
    if unknown:
        close = [m[0] for m in (difflib.get_close_matches(u, PARAMS, n=1, cutoff=0.75) for u in unknown) if m]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise BuiltinError(uri, f"unknown parameter(s) {unknown}{hint}; valid: {', '.join(sorted(PARAMS))}")


def _check_together(uri: str, kind: str, params: dict[str, Any]) -> None:
    if params["shortcut"] and not params["worked"]:
        raise BuiltinError(uri, "shortcut= changes worked answers, and there are none; add worked=true")
    if params["mode"] != "both" and kind != "code":
        raise BuiltinError(uri, "mode= applies to builtin://code only; remove it")
    if params["tasks"] is not None:
        known = TASKS[kind]
        wrong = [t for t in params["tasks"] if t not in known]
        if wrong or not params["tasks"]:
            hint = "".join(_close(t, known) for t in wrong[:1])
            raise BuiltinError(uri, f"unknown task(s) {wrong}{hint}; builtin://{kind} has {sorted(known)}")


def _parse_param(uri: str, name: str, raw: str) -> Any:
    if name in ("split", "mode"):
        choices = SPLITS if name == "split" else CODE_MODES
        if raw not in choices:
            raise BuiltinError(uri, f"{name}={raw!r}{_close(raw, choices)}; use one of {list(choices)}")
        return raw
    if name == "shortcut":
        try:
            value = float(raw)
        except ValueError:
            raise BuiltinError(uri, f"shortcut={raw!r} is not a number; write a share in [0, 1], "
                               "e.g. shortcut=0.3") from None
        if not 0.0 <= value <= 1.0:
            raise BuiltinError(uri, f"shortcut={value} is outside [0, 1] (it is the share of worked answers "
                               "that skip the work)")
        return value
    if name == "tasks":
        return tuple(sorted({t.strip() for t in raw.split(",") if t.strip()}))
    if name == "worked":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise BuiltinError(uri, f"worked={raw!r}; use true or false")
        return raw.lower() in ("true", "1")
    return _parse_int(uri, name, raw)


def _parse_int(uri: str, name: str, raw: str) -> int:
    low, high = INT_RANGES[name]
    try:
        value = int(raw)
    except ValueError:
        raise BuiltinError(uri, f"{name}={raw!r} is not an integer ({name}: {MEANING[name]}); "
                           f"write e.g. {name}={PARAMS[name] or low}") from None
    if not low <= value <= high:
        raise BuiltinError(uri, f"{name}={value} is outside [{low}, {high}] ({name}: {MEANING[name]})")
    return value


def _close(word: str, options) -> str:
    match = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return f" (did you mean {match[0]!r}?)" if match else ""
