"""The curation filters, registered by name: each says, for every record, why it is dropped (or None).

What: `FILTERS` maps every filter `kind` of the spec (see `compiler/spec.py` for the fields) to a
function `(records, cfg, ctx) -> list[reason | None]`. Text filters (`multipart`, `proof`, ...) look
for statement cues; `language` uses langid (its model ships in the package, nothing is downloaded);
`dedup_near` and `decontaminate` use `ngrams.py`; `pass_rate`, `validate_tests` and `weak_tests`
need a model or the code sandbox and live in `passrate.py` (`pass_rate` dispatches on its config:
curation's thresholds on a `sample` job's measurement, or a stage filter's sample-and-cut).

Why: the paper's curation (recipe.md, "Data curation") is a list of such drops; each must be
configurable, explain itself in the funnel, and be testable on a handful of records.

How: a filter never changes the list; the funnel (`funnel.py`) applies the verdicts in order. A
filter that cannot run at all (a benchmark that cannot be read, a missing tokenizer) raises
`FilterError`, and the job stops with the dataset's and the filter's names.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from rlspec.compiler.jobs import DataSource, PassRate, PassRateCut

from .context import Context, FilterError, Verdicts
from .records import field_value
from .sources import SourceError


def _each(records: Sequence[dict], test: Callable[[dict], str | None]) -> Verdicts:
    return [test(r) for r in records]


def _cue(records: Sequence[dict], pattern: re.Pattern, what: str) -> Verdicts:
    def test(r: dict) -> str | None:
        m = pattern.search(r["prompt"])
        return f"{what}: {m.group(0)!r}" if m else None
    return _each(records, test)


# ----------------------------------------------------------------------------------------------
# statement cues
# ----------------------------------------------------------------------------------------------

_MULTIPART = re.compile(  # lower-case letters: "(A) ... (B)" are answer options, not parts
    r"(?<!\w)\((?:a|i)\).*?(?<!\w)\((?:b|ii)\)|^\s*a[.)]\s.*?^\s*b[.)]\s"
    r"|\b[Pp]art\s*\(?(?:a|1|i|I)\)?[\s:.].*?\b[Pp]art\s*\(?(?:b|2|ii|II)\)?[\s:.]"
    r"|^\s*1[.)]\s[^\n]+\n(?:[^\n]*\n)*?\s*2[.)]\s", re.MULTILINE | re.DOTALL)
_CHOICES = re.compile(  # option letters are capitals: "(a) ... (b)" are parts (multipart)
    r"(?s)\(A\).*?\(B\)|\\textbf\{\s*\(A\)|\bA[.):]\s.*?\bB[.):]\s.*?\bC[.):]\s"
    r"|(?i:answer choices|which of the following|choose the correct|select the correct)")
_TRUE_FALSE = re.compile(r"\btrue or false\b|\btrue/false\b|\byes or no\b|\bT/F\b|\bis (?:it|this|the statement) "
                         r"(?:true|correct)\b|\bdetermine whether the statement", re.IGNORECASE)
_PROOF = re.compile(r"\b(?:prove|proof|show that|demonstrate that|justify that|verify that)\b", re.IGNORECASE)
_FIGURE = re.compile(  # not "image" or "graph": "the image of f", "in the graph G" are mathematics
    r"\b(?:in|see|from|using|refer to) the (?:figure|diagram|picture|illustration)"
                     r"|\b(?:figure|fig\.|diagram|picture)\s*\d|\b(?:shown|pictured|depicted|illustrated) "
                     r"(?:below|above|in the)|\bthe (?:figure|diagram|picture) (?:below|above|shows)|<img|!\[",
                     re.IGNORECASE)
_INTERACTIVE = re.compile(r"\binteractive (?:problem|task)\b|\bthis is an interactive\b|\bflush the output\b|"
                          r"\bfflush\b|stdout\.flush\(\)|System\.out\.flush", re.IGNORECASE)
_SPECIAL_JUDGE = re.compile(r"\b(?:print|output) any (?:of them|one of them|valid|such|correct)\b|"
                            r"\bif there are (?:multiple|several|many) (?:possible )?(?:answers|solutions)\b|"
                            r"\bany (?:of them|valid answer|correct answer) (?:will be|is) accepted\b|"
                            r"\bspecial judge\b", re.IGNORECASE)  # not "checker": a checker board is fine
_YES_NO_ANSWERS = {"true", "false", "yes", "no", "t", "f"}
_LETTER_ANSWER = re.compile(r"^\(?\\?(?:textbf\{)?\(?([A-E])\)?\}?$")


def multipart(records, cfg, ctx) -> Verdicts:
    return _cue(records, _MULTIPART, "several sub-questions")


def multiple_choice(records, cfg, ctx) -> Verdicts:
    cue = _cue(records, _CHOICES, "answer options")
    return [why or (f"the answer is an option letter: {r.get('answer')!r}"
                    if _LETTER_ANSWER.match(str(r.get("answer") or "").strip()) else None)
            for r, why in zip(records, cue)]


def true_false(records, cfg, ctx) -> Verdicts:
    cue = _cue(records, _TRUE_FALSE, "a true/false question")
    return [why or (f"the answer is true/false or yes/no: {r.get('answer')!r}"
                    if str(r.get("answer") or "").strip().lower().strip("$.") in _YES_NO_ANSWERS else None)
            for r, why in zip(records, cue)]


def proof(records, cfg, ctx) -> Verdicts:
    cue = _cue(records, _PROOF, "a proof")
    return [why or ("the answer is a proof" if str(r.get("answer") or "").strip().lower() in ("proof", "see proof")
                    else None) for r, why in zip(records, cue)]


def figure_reference(records, cfg, ctx) -> Verdicts:
    return _cue(records, _FIGURE, "refers to a figure")


def _flag(record: dict, *names: str) -> str | None:
    for name in names:
        value = field_value(record, name)
        if value not in (None, "", False, 0, "false", "False", "0"):
            return name
    return None


def interactive(records, cfg, ctx) -> Verdicts:
    cue = _cue(records, _INTERACTIVE, "interactive")
    return [why or (f"marked {flag!r} in its metadata" if (flag := _flag(r, "interactive", "is_interactive")) else None)
            for r, why in zip(records, cue)]


def special_judge(records, cfg, ctx) -> Verdicts:
    cue = _cue(records, _SPECIAL_JUDGE, "needs a special judge")
    return [why or (f"marked {flag!r} in its metadata" if (flag := _flag(r, "special_judge", "checker", "spj")) else None)
            for r, why in zip(records, cue)]


# ----------------------------------------------------------------------------------------------
# language, length, answers, tests, dates
# ----------------------------------------------------------------------------------------------

_MATH_NOISE = re.compile(r"\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[a-zA-Z]+|[0-9]+|\b[a-zA-Z]\b|[^\w\s]", re.DOTALL)
MIN_LANGUAGE_WORDS = 5  # fewer words of plain text: too little to judge, keep
MIN_LANGUAGE_CONFIDENCE = 0.9


@functools.cache
def _language_identifier():
    """langid's bundled model with normalised probabilities (loading it takes about a second)."""
    from langid.langid import LanguageIdentifier, model
    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


def language(records, cfg, ctx) -> Verdicts:
    """Drop a record only when langid is confident it is not one of `keep`; formulas, numbers and
    one-letter variables are removed first (they make short English look like other languages)."""
    ident = _language_identifier()
    keep = set(cfg.keep)

    def test(r: dict) -> str | None:
        text = _MATH_NOISE.sub(" ", r["prompt"])
        if len(text.split()) < MIN_LANGUAGE_WORDS:
            return None
        lang, prob = ident.classify(text)
        if lang in keep or prob < MIN_LANGUAGE_CONFIDENCE:
            return None
        return f"language not one of {sorted(keep)}: {lang} (p={prob:.2f})"
    return _each(records, test)


def length(records, cfg, ctx) -> Verdicts:
    unit = cfg.unit
    if unit == "tokens":
        tok = ctx.tokenizer()
        sizes = [len(ids) for ids in tok([r["prompt"] for r in records], add_special_tokens=False)["input_ids"]] \
            if records else []
    else:
        sizes = [len(r["prompt"].strip()) for r in records]
    lo, hi = cfg.min, cfg.max
    return [f"{n} {unit} < min {lo}" if n < lo else f"{n} {unit} > max {hi}" if hi is not None and n > hi else None
            for n in sizes]


_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def answer_parseable(records, cfg, ctx) -> Verdicts:
    """The reference answer must parse with math-verify, as the reward will parse it. Bare LaTeX
    gold such as `2^{1/2}` parses wrongly unless wrapped in `$...$`, so it is wrapped."""
    from math_verify import parse

    def test(r: dict) -> str | None:
        answer = str(r.get("answer") or "").strip()
        if not answer:
            return "no reference answer"
        if _PLAIN_NUMBER.fullmatch(answer):
            return None
        gold = answer if "$" in answer or "\\boxed" in answer else f"${answer}$"
        try:
            parsed = parse(gold, parsing_timeout=5)
        except Exception as exc:  # math-verify raises a variety of parser errors
            return f"math-verify failed: {answer!r} ({type(exc).__name__})"
        # math-verify also returns the raw string it could not read: only a sympy object counts
        return None if any(not isinstance(p, str) for p in parsed) else f"math-verify cannot parse: {answer!r}"
    return _each(records, test)


def min_tests(records, cfg, ctx) -> Verdicts:
    return [f"{len(r['tests'])} test(s) < min {cfg.min}" if len(r["tests"]) < cfg.min else None for r in records]


def date_cutoff(records, cfg, ctx) -> Verdicts:
    """Keep problems released in [after, before). A problem with no date is dropped: its release
    cannot be shown to predate the benchmark window (contamination)."""
    before, after = cfg.before, cfg.after

    def test(r: dict) -> str | None:
        if r.get("release_date") is None:
            return "no release date"
        day = dt.date.fromisoformat(r["release_date"])
        if before is not None and day >= before:
            return f"released on or after {before}: {day}"
        if after is not None and day < after:
            return f"released before {after}: {day}"
        return None
    return _each(records, test)


# ----------------------------------------------------------------------------------------------
# duplicates and contamination
# ----------------------------------------------------------------------------------------------


_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_PUNCTUATION = set(".,;:!?\"'`")


def normalised_text(value: Any) -> str:
    """The exact-duplicate key of a field: Unicode forms, case, spacing and sentence punctuation
    folded, but symbols kept (`3 + 4` and `3 * 4` are different problems)."""
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return " ".join(t for t in _TOKEN.findall(text) if t not in _SENTENCE_PUNCTUATION)


def dedup_exact(records, cfg, ctx) -> Verdicts:
    """A record is a duplicate when any listed field (non-empty) equals an earlier record's: the
    paper dedups code "by statement and URL", so the same statement under two URLs is caught too."""
    seen: dict[tuple[str, str], str] = {}
    out: Verdicts = []
    for r in records:
        keys = [(f, normalised_text(v)) for f in cfg.fields if (v := field_value(r, f)) not in (None, "")]
        keys = [k for k in keys if k[1]]
        first = next((k for k in keys if k in seen), None)
        out.append(f"same {first[0]} as an earlier record: {seen[first]}" if first else None)
        if first is None:
            for k in keys:
                seen[k] = r["id"]
    return out


def dedup_near(records, cfg, ctx) -> Verdicts:
    from .ngrams import near_duplicates
    twins = near_duplicates([r["prompt"] for r in records], cfg.threshold, cfg.num_perm, cfg.shingle)
    return [None if t is None else f"near-duplicate of an earlier record: {records[t]['id']}" for t in twins]


def decontaminate(records, cfg, ctx) -> Verdicts:
    """Drop records sharing a word n-gram with an item of the spec's benchmarks or extra files."""
    from .ngrams import NgramIndex
    items = []
    for name, bench in sorted(cfg.benchmarks.items()):
        try:
            rows = ctx.read(bench.source, bench.domain, prompts_only=True)
        except SourceError as exc:
            raise FilterError(f"benchmark {name!r}: {exc}") from None
        items += [(name, r["id"], r["prompt"]) for r in rows]
    for extra in cfg.extra_files:
        try:
            rows = ctx.read(DataSource(uri=extra.path, sha256=extra.sha256), ctx.domain, prompts_only=True)
        except SourceError as exc:
            raise FilterError(f"extra file: {exc}") from None
        items += [(extra.path, r["id"], r["prompt"]) for r in rows]
    if not items:
        return [None] * len(records)
    matches = NgramIndex(cfg.n, items).first_matches([r["prompt"] for r in records])
    return [None if m is None else f"{cfg.n}-gram overlap with {m.benchmark}: item {m.item}: {m.ngram!r}"
            for m in matches]


def pass_rate(records, cfg: PassRate | PassRateCut, ctx) -> Verdicts:
    """One kind, two configs: curation's `PassRateCut` applies thresholds to the measurement its
    `sample` job wrote on each record; a stage filter's `PassRate` samples the policy, then cuts."""
    from . import passrate
    if isinstance(cfg, PassRateCut):
        return passrate.cut(records, cfg)
    return passrate.pass_rate(records, cfg, ctx)


def _model_filters() -> dict[str, Callable]:
    from . import passrate
    return {"pass_rate": pass_rate, "validate_tests": passrate.validate_tests, "weak_tests": passrate.weak_tests}


FILTERS: dict[str, Callable[[Sequence[dict], dict, Context], Verdicts]] = {
    "language": language,
    "multipart": multipart,
    "multiple_choice": multiple_choice,
    "true_false": true_false,
    "proof": proof,
    "figure_reference": figure_reference,
    "length": length,
    "answer_parseable": answer_parseable,
    "dedup_exact": dedup_exact,
    "dedup_near": dedup_near,
    "decontaminate": decontaminate,
    "date_cutoff": date_cutoff,
    "min_tests": min_tests,
    "interactive": interactive,
    "special_judge": special_judge,
    **_model_filters(),
}


def get_filter(kind: str) -> Callable[[Sequence[dict], dict, Context], Verdicts]:
    try:
        return FILTERS[kind]
    except KeyError:
        raise FilterError(f"unknown filter kind {kind!r}; valid kinds: {', '.join(sorted(FILTERS))}") from None
