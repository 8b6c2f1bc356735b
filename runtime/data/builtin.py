"""Builtin data generators: `builtin://math?...` and `builtin://code?...`, offline and deterministic.

What: `generate(uri) -> list[dict]` returns records in the normalised schema (see `records.py`):
math word problems with exact answers, and small stdin/stdout or function-call programming problems
with a reference solution and tests. The URI's parameters (`n`, `difficulty`, `split`, `seed`,
`tasks`, `shortcut`, `mode`, `worked`) are parsed and validated by `rlspec.compiler.builtin_params.parse_uri`, which
`rlspec check` also uses; their meaning is documented there.

Why: the quickstart, the tests and CI must run with no network, and a tiny (~0.3 M parameter)
model must be able to learn from the data on a CPU in minutes: short prompts (a few dozen tokens),
short answers, many templates, phrasings, names and numbers so that memorising a template is not
enough, and a difficulty knob so curricula and pass-rate filters have something to work with.

How: every record comes from its own RNG seeded by (generator, split, seed, index), so the same
URI always gives the same records. The problem *content* (template and numbers, not the wording)
has a canonical key; `test` keeps only keys whose hash falls in one fifth of the key space and
`train` only the rest, so a held-out benchmark never shares a problem with training data, whatever
the seeds. Every nine consecutive words of a math prompt hold all its numbers (or all but one of
three), so 9-gram decontamination catches real duplicates, not whole templates. Code answers are built
from one Python expression that serves as the reference solution (stdin program or function) and,
evaluated here, as the source of every test's expected output.
"""

from __future__ import annotations

import builtins
import hashlib
import math
import random
import re
from fractions import Fraction
from typing import Any, Callable

from rlspec.compiler.builtin_params import BuiltinError, parse_uri

__all__ = ["BuiltinError", "generate", "parse_uri", "task_names"]

TEST_SHARE = 5  # one key in five belongs to `test`


def generate(uri: str) -> list[dict[str, Any]]:
    """The records a `builtin://math?...` or `builtin://code?...` URI stands for."""
    kind, params = parse_uri(uri)
    make = GENERATORS[kind]
    out: list[dict[str, Any]] = []
    index = 0
    while len(out) < params["n"]:
        if index > 50 * params["n"] + 1000:  # each draw lands in either split with probability >= 1/5
            raise BuiltinError(uri, f"could not draw {params['n']} {params['split']} problems")
        rng = random.Random(f"{kind}:{params['split']}:{params['seed']}:{index}")
        index += 1
        problem = make(rng, params["difficulty"], params["tasks"], params["mode"])
        if _split_of(kind, problem["key"]) != params["split"]:
            continue  # this problem belongs to the other split
        out.append(_record(kind, uri, params, len(out), problem))
    return out


def task_names(kind: str) -> set[str]:
    """The templates the generator has (math: `add`, `chain`, ...; code: `total`, `flip`, ...); a test
    checks they are the names `builtin_params.TASKS` accepts."""
    if kind == "math":
        return set(MATH_TEMPLATES)
    return {t[0] for ts in FAMILIES.values() for t in ts}


def _split_of(kind: str, key: str) -> str:
    digest = hashlib.sha256(f"{kind}|{key}".encode()).digest()
    return "test" if digest[0] % TEST_SHARE == 0 else "train"


def _record(kind: str, uri: str, params: dict, i: int, problem: dict) -> dict[str, Any]:
    record = {"id": f"builtin-{kind}-{params['split']}-{params['seed']}-{i}", "prompt": problem["prompt"],
              "source": uri, "domain": kind,
              "meta": {"template": problem["template"], "difficulty": params["difficulty"]}}
    if kind == "math":
        record["answer"] = problem["answer"]
    else:
        record.update(tests=problem["tests"], starter_code=problem["starter_code"], fn_name=problem["fn_name"],
                      time_limit_s=None, release_date=None)
        record["meta"]["solution"] = problem["solution"]
    if params["worked"]:
        skip = params["shortcut"] and random.Random(f"shortcut:{record['id']}").random() < params["shortcut"]
        record["response"] = problem["shortcut"] if skip else problem["response"]
    return record


# ----------------------------------------------------------------------------------------------
# Math: templates by level. Each returns (prompt, answer, reasoning, key).
# ----------------------------------------------------------------------------------------------

NAMES = ("Ann", "Ben", "Tom", "Mia", "Sam", "Lea", "Max", "Zoe", "Eva", "Leo", "Ida", "Raj")
THINGS = ("apples", "books", "coins", "cards", "pens", "eggs", "cups", "balls", "stamps", "shells")


def _fmt(value: Fraction | int) -> str:
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _top(level: int) -> int:
    """Largest operand at a difficulty: 10, 20, 50, 100, 500."""
    return (10, 20, 50, 100, 500)[level - 1]


def m_compare(rng, d):
    a, b = rng.sample(range(1, 2 * _top(d) + 1), 2)
    if rng.random() < 0.5:
        prompt = rng.choice([f"Which is larger, {a} or {b}?", f"What is the larger of {a} and {b}?",
                             f"Which number is bigger: {a} or {b}?"])
        return prompt, max(a, b), f"{max(a, b)} > {min(a, b)}", f"max {min(a, b)} {max(a, b)}"
    prompt = rng.choice([f"Which is smaller, {a} or {b}?", f"What is the smaller of {a} and {b}?"])
    return prompt, min(a, b), f"{min(a, b)} < {max(a, b)}", f"min {min(a, b)} {max(a, b)}"


def m_next(rng, d):
    a = rng.randint(1, 3 * _top(d))
    if rng.random() < 0.6:
        prompt = rng.choice([f"What number comes after {a}?", f"What is {a} plus one?", f"Count on from {a}: next?"])
        return prompt, a + 1, f"{a} + 1 = {a + 1}", f"next {a}"
    prompt = rng.choice([f"What number comes before {a}?", f"What is {a} minus one?"])
    return prompt, a - 1, f"{a} - 1 = {a - 1}", f"prev {a}"


def m_add(rng, d):
    a, b = rng.randint(1, _top(d)), rng.randint(1, _top(d))
    name, obj = rng.choice(NAMES), rng.choice(THINGS)
    prompt = rng.choice([f"What is {a} + {b}?", f"Compute {a} plus {b}.", f"Find the sum of {a} and {b}.",
                         f"Add {a} and {b}.", f"{name} has {a} {obj}, gets {b} more. How many now?",
                         f"{name} had {a} {obj}, found {b} more. Total?"])
    return prompt, a + b, f"{a} + {b} = {a + b}", f"add {a} {b}"


def m_sub(rng, d):
    a, b = sorted((rng.randint(1, _top(d)), rng.randint(1, _top(d))), reverse=True)
    name, obj = rng.choice(NAMES), rng.choice(THINGS)
    prompt = rng.choice([f"What is {a} - {b}?", f"Compute {a} minus {b}.", f"Subtract {b} from {a}.",
                         f"{name} had {a} {obj}, gave {b} away. How many left?",
                         f"A box holds {a} {obj}. {name} takes {b}. How many {obj} remain?"])
    return prompt, a - b, f"{a} - {b} = {a - b}", f"sub {a} {b}"


def m_mul(rng, d):
    a, b = rng.randint(2, 2 + 3 * d), rng.randint(2, 9 + d)
    name, obj = rng.choice(NAMES), rng.choice(THINGS)
    prompt = rng.choice([f"What is {a} * {b}?", f"Compute {a} times {b}.", f"Multiply {a} by {b}.",
                         f"{name} has {a} bags of {b} {obj}. How many {obj}?",
                         f"{a} kids have {b} {obj} each. Total {obj}?"])
    return prompt, a * b, f"{a} * {b} = {a * b}", f"mul {a} {b}"


def m_two_step(rng, d):
    a, b = rng.randint(1, _top(d)), rng.randint(1, _top(d))
    c = rng.randint(1, a + b)
    name, obj = rng.choice(NAMES), rng.choice(THINGS)
    prompt = rng.choice([f"What is {a} + {b} - {c}?", f"Compute {a} plus {b} minus {c}.",
                         f"{name} has {a} {obj}, buys {b} more and loses {c}. How many {obj} now?",
                         f"Start at {a}, add {b}, subtract {c}. Result?"])
    return prompt, a + b - c, f"{a} + {b} = {a + b}, {a + b} - {c} = {a + b - c}", f"addsub {a} {b} {c}"


def m_equation(rng, d):
    x, a = rng.randint(0, _top(d)), rng.randint(1, _top(d))
    var = rng.choice("xyn")
    if rng.random() < 0.5:
        prompt = rng.choice([f"Solve for {var}: {var} + {a} = {x + a}.", f"If {var} + {a} = {x + a}, what is {var}?"])
        return prompt, x, f"{var} = {x + a} - {a} = {x}", f"eq+ {a} {x}"
    a = rng.randint(2, 2 + 2 * d)
    prompt = rng.choice([f"Solve for {var}: {a}{var} = {a * x}.", f"If {a}{var} = {a * x}, find {var}."])
    return prompt, x, f"{var} = {a * x} / {a} = {x}", f"eq* {a} {x}"


def m_divide(rng, d):
    b, q = rng.randint(2, 3 + 2 * d), rng.randint(1, _top(d))
    name, obj = rng.choice(NAMES), rng.choice(THINGS)
    prompt = rng.choice([f"What is {b * q} / {b}?", f"Divide {b * q} by {b}.",
                         f"{name} splits {b * q} {obj} among {b} friends. How many each?"])
    return prompt, q, f"{b * q} / {b} = {q}", f"div {b * q} {b}"


def m_fraction(rng, d):
    den = rng.randint(2, 3 + 3 * d)
    a, b = rng.randint(1, den), rng.randint(1, den)
    value = Fraction(a, den) + Fraction(b, den)
    prompt = rng.choice([f"What is {a}/{den} + {b}/{den}?", f"Add the fractions {a}/{den} and {b}/{den}.",
                         f"Compute {a}/{den} + {b}/{den} in lowest terms."])
    return prompt, value, f"{a}/{den} + {b}/{den} = {a + b}/{den} = {_fmt(value)}", f"frac {a} {b} {den}"


def m_linear(rng, d):
    a, x, b = rng.randint(2, 2 + 2 * d), rng.randint(-_top(d) // 2, _top(d)), rng.randint(1, _top(d))
    var = rng.choice("xyz")
    prompt = rng.choice([f"Solve for {var}: {a}{var} + {b} = {a * x + b}.",
                         f"Find {var} if {a}{var} + {b} = {a * x + b}."])
    return prompt, x, f"{a}{var} = {a * x + b} - {b} = {a * x}, {var} = {x}", f"lin {a} {b} {x}"


def m_average(rng, d):
    count = rng.randint(2, 2 + d // 2)
    values = [rng.randint(1, _top(d)) for _ in range(count)]
    total = sum(values)
    shown = ", ".join(map(str, values))
    prompt = rng.choice([f"What is the average of {shown}?", f"Find the mean of the numbers {shown}."])
    answer = Fraction(total, count)
    return prompt, answer, f"({' + '.join(map(str, values))}) / {count} = {_fmt(answer)}", f"avg {shown}"


def m_percent(rng, d):
    p, base = rng.choice((10, 20, 25, 50, 75)), rng.randint(1, _top(d)) * 4
    prompt = rng.choice([f"What is {p}% of {base}?", f"Compute {p} percent of {base}."])
    answer = Fraction(p * base, 100)
    return prompt, answer, f"{base} * {p} / 100 = {_fmt(answer)}", f"pct {p} {base}"


def m_chain(rng, d):
    """Single-digit additions and subtractions in a row (d to d + 1 of them), every partial result in
    0..20: each step is a small fact the warm-up teaches, so longer chains test composing them."""
    value = rng.randint(1, 9)
    start, steps, parts = value, [], [str(value)]
    for _ in range(rng.randint(d, d + 1)):
        x = rng.randint(1, 9)
        op = rng.choice("+-") if 0 <= value - x and value + x <= 20 else ("-" if value + x > 20 else "+")
        new = value + x if op == "+" else value - x
        steps.append(f"{value} {op} {x} = {new}")
        parts += [op, str(x)]
        value = new
    expr = " ".join(parts)
    words = ", ".join(("add" if op == "+" else "subtract") + f" {x}" for op, x in zip(parts[1::2], parts[2::2]))
    prompt = rng.choice([f"What is {expr}?", f"Compute {expr}.", f"Evaluate {expr}.",
                         f"Start at {start}, {words}. Result?"])
    return prompt, value, ", ".join(steps), f"chain {expr}"


def m_product_sum(rng, d):
    a, b, c, e = (rng.randint(2, 3 + 2 * d) for _ in range(4))
    prompt = rng.choice([f"What is {a} * {b} + {c} * {e}?", f"Compute {a} times {b} plus {c} times {e}."])
    value = a * b + c * e
    return prompt, value, f"{a * b} + {c * e} = {value}", f"prodsum {a} {b} {c} {e}"


MATH_LEVELS: dict[int, tuple[Callable, ...]] = {
    1: (m_compare, m_next, m_add, m_sub, m_mul),  # compare / next: learnable by a tiny model in minutes
    2: (m_two_step, m_equation, m_divide, m_fraction),
    3: (m_linear, m_average, m_percent),
    4: (m_product_sum,),
}
# Templates only a `tasks=` query selects (the default mix by difficulty stays as it was).
EXTRA_MATH = (m_chain,)
MATH_TEMPLATES = {t.__name__[2:]: t for ts in (*MATH_LEVELS.values(), EXTRA_MATH) for t in ts}


def make_math(rng: random.Random, difficulty: int, tasks: tuple[str, ...] | None = None,
              mode: str = "both") -> dict[str, Any]:  # `mode` is code's; every generator takes the same arguments
    if tasks:
        templates = [MATH_TEMPLATES[t] for t in tasks]
    else:
        templates = [t for level, ts in MATH_LEVELS.items() if level <= difficulty for t in ts]
    template = rng.choice(templates)
    prompt, answer, reasoning, key = template(rng, difficulty)
    answer = _fmt(answer)
    return {"prompt": prompt, "answer": answer, "key": key, "template": template.__name__,
            "response": f"{reasoning}</think>\n\\boxed{{{answer}}}", "shortcut": f"</think>\n\\boxed{{{_guess(prompt, answer)}}}"}


def _guess(prompt: str, answer: str) -> str:
    """A step-less guess, as careless warm-up data has: the problem's last number (never the answer)."""
    numbers = re.findall(r"\d+", prompt)
    guess = numbers[-1] if numbers else "0"
    return guess if guess != answer else str(int(guess) + 1)


# ----------------------------------------------------------------------------------------------
# Code: a task is one Python expression over the input; it is the reference solution and the oracle.
# ----------------------------------------------------------------------------------------------

# (name, level, what the statement asks for, expression); `k` / `c` are filled in per problem.
# Statements are terse on purpose: with a ~400-token vocabulary every word costs 1-3 tokens, and the
# quickstart's prompts must stay within ~60 tokens with the template around them.
LIST_TASKS = [
    ("total", 1, "the sum", "sum(xs)"),
    ("largest", 1, "the largest", "max(xs)"),
    ("smallest", 1, "the smallest", "min(xs)"),
    ("size", 1, "how many there are", "len(xs)"),
    ("backwards", 1, "them reversed", "xs[::-1]"),
    ("ascending", 1, "them sorted", "sorted(xs)"),
    ("doubled", 1, "each doubled", "[2 * x for x in xs]"),
    ("sum_even", 2, "the sum of the even ones", "sum(x for x in xs if x % 2 == 0)"),
    ("count_odd", 2, "how many are odd", "sum(1 for x in xs if x % 2 == 1)"),
    ("count_gt", 2, "how many are above {k}", "sum(1 for x in xs if x > {k})"),
    ("sum_lt", 2, "the sum of those below {k}", "sum(x for x in xs if x < {k})"),
    ("add_k", 2, "each plus {k}", "[x + {k} for x in xs]"),
    ("keep_div", 2, "those divisible by {k}", "[x for x in xs if x % {k} == 0]"),
    ("descending", 2, "them sorted high to low", "sorted(xs, reverse=True)"),
    ("spread", 3, "max minus min", "max(xs) - min(xs)"),
    ("sum_sq", 3, "the sum of squares", "sum(x * x for x in xs)"),
    ("distinct", 3, "the distinct ones sorted", "sorted(set(xs))"),
    ("count_first", 3, "how many equal the first", "xs.count(xs[0])"),
]
TEXT_TASKS = [
    ("flip", 2, "it reversed", "s[::-1]"),
    ("shout", 2, "it in upper case", "s.upper()"),
    ("vowels", 2, "its vowel count", "sum(c in 'aeiou' for c in s)"),
    ("words", 2, "its word count", "len(s.split())"),
    ("longest", 3, "its longest word length", "max(len(w) for w in s.split())"),
    ("count_char", 3, "how often {c} appears", "s.count('{c}')"),
]
PAIR_TASKS = [
    ("add", 1, "a + b", "a + b"),
    ("times", 1, "a * b", "a * b"),
    ("bigger", 1, "the larger", "max(a, b)"),
    ("gap", 2, "the absolute difference", "abs(a - b)"),
    ("rest", 3, "a mod b", "a % b"),
    ("gcd", 3, "their gcd", "math.gcd(a, b)"),
]
FAMILIES = {"list": LIST_TASKS, "text": TEXT_TASKS, "pair": PAIR_TASKS}
ARGS = {"list": ("xs",), "text": ("s",), "pair": ("a", "b")}
LIST_NAMES = ("nums", "xs", "arr")
FN_NAMES = ("solve", "f", "go")
WORDS = ("cat", "sun", "tree", "blue", "code", "apple", "river", "moon", "data", "echo", "idea", "sky")
STDIN_READ = {  # how the program reads its input, and ways to say so
    "list": ("xs = list(map(int, input().split()))", ("Read ints.", "Input: ints on a line.", "Given ints.")),
    "text": ("s = input()", ("Read a line.", "Input: a text line.", "Given words.")),
    "pair": ("a, b = map(int, input().split())", ("Read a b.", "Input: ints a b.", "Given a and b.")),
}


def _code_args(rng: random.Random, family: str, d: int, k: int, c: str, small: bool = False) -> tuple:
    """One argument tuple, often hitting `k` / `c`; `small` for the example in the statement."""
    if family == "list":
        lo, hi = (0, 9) if small else (-10 * d if d >= 3 else 0, 10 * d + 5)
        xs = [rng.randint(lo, hi) for _ in range(rng.randint(2, 3) if small else rng.randint(1, 3 + 2 * d))]
        xs[rng.randrange(len(xs))] = rng.choice((k, k * 2, k + 1))
        return (xs,)
    if family == "text":
        words = [rng.choice(WORDS) for _ in range(1 if small else rng.randint(1, 4))]
        if rng.random() < 0.5:
            words[0] = c + words[0]
        return (" ".join(words),)
    top = 9 if small else 20 * d
    return (rng.randint(1, top), rng.randint(1, top))


def _weak(cases: list[tuple], values: list) -> bool:
    """Tests a constant answer or "return the first argument" would pass: draw again."""
    return len({repr(v) for v in values}) < 2 or all(v == args[0] for args, v in zip(cases, values))


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def make_code(rng: random.Random, difficulty: int, only: tuple[str, ...] | None = None,
              mode: str = "both") -> dict[str, Any]:
    tasks = [(fam, t) for fam, ts in FAMILIES.items() for t in ts if (t[0] in only if only else t[1] <= difficulty)]
    family, (name, _, asks, expr) = rng.choice(tasks)
    k, c = rng.randint(2, 5 + difficulty), rng.choice("aeost")
    asks, expr = asks.format(k=k, c=c), expr.format(k=k, c=c)
    oracle = {"math": math}

    def run(args: tuple) -> Any:
        return eval(expr, oracle, dict(zip(ARGS[family], args)))  # our own expression, never user input
    for _ in range(20):
        cases = [_code_args(rng, family, difficulty, k, c) for _ in range(rng.randint(4, 6))]
        values = [run(args) for args in cases]
        if not _weak(cases, values):
            break
    shown = _code_args(rng, family, difficulty, k, c, small=True)
    build = _stdin_problem if rng.random() < 0.5 else _call_problem  # drawn in every mode: same problems
    build = {"both": build, "stdin": _stdin_problem, "call": _call_problem}[mode]
    problem = build(rng, family, name, asks, expr, cases, values, (shown, run(shown)))
    problem.update(template=f"{family}.{name}.{problem['mode']}", key=problem["prompt"],
                   response=f"</think>\n```python\n{problem['solution']}\n```",
                   shortcut=f"</think>\n```python\n{problem['hardcoded']}\n```")
    return problem


def _stdin_problem(rng, family, name, asks, expr, cases, values, example) -> dict[str, Any]:
    read, intros = STDIN_READ[family]
    prompt = f"{rng.choice(intros)} Print {asks}. Ex: {_stdin_text(example[0])} -> {_show(example[1])}"
    lead = "import math\n" if "math." in expr else ""
    printed = f"print(*{expr})" if isinstance(example[1], list) else f"print({expr})"
    tests = [{"input": _stdin_text(args) + "\n", "output": _show(v) + "\n"} for args, v in zip(cases, values)]
    return {"prompt": prompt, "tests": tests, "solution": f"{lead}{read}\n{printed}", "starter_code": None,
            "fn_name": None, "mode": "stdin", "hardcoded": f"print({_show(example[1])!r})"}


def _stdin_text(args: tuple) -> str:
    return " ".join(" ".join(map(str, a)) if isinstance(a, list) else str(a) for a in args)


def _call_problem(rng, family, name, asks, expr, cases, values, example) -> dict[str, Any]:
    fn = rng.choice((name, rng.choice(FN_NAMES)))
    if hasattr(builtins, fn):  # `def max(xs): return max(xs)` would call itself
        fn = f"my_{fn}"
    params = ARGS[family]
    if family == "list":
        params = (rng.choice(LIST_NAMES),)
        expr = re.sub(r"\bxs\b", params[0], expr)
    signature = f"def {fn}({', '.join(params)}):"
    call = f"{fn}({', '.join(map(repr, example[0]))}) == {example[1]!r}"
    prompt = rng.choice([f"Write {fn}({', '.join(params)}) returning {asks}. Ex: {call}",
                         f"{fn}({', '.join(params)}) returns {asks}. Ex: {call}"])
    lead = "import math\n\n" if "math." in expr else ""
    tests = [{"fn_name": fn, "args": list(args), "expected": v} for args, v in zip(cases, values)]
    return {"prompt": prompt, "tests": tests, "solution": f"{lead}{signature}\n    return {expr}",
            "starter_code": signature, "fn_name": fn, "mode": "call",
            "hardcoded": f"{signature}\n    return {example[1]!r}"}


GENERATORS: dict[str, Callable[..., dict[str, Any]]] = {"math": make_math, "code": make_code}
