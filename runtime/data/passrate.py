"""Filters that run a model or the code sandbox: `pass_rate`, `validate_tests`, `weak_tests`.

What:
- pass rate: sample k responses per prompt from a model with the rollout engine, grade them with
  the reward functions, keep items whose pass rate is in [min, max]; optionally require the
  majority answer to be right (the paper's teacher agreement) and drop items answered correctly in
  fewer than `min_response_tokens` on average (the paper's "too easy"). Curation splits this in two:
  a `sample` job measures (`sample`: `meta.pass_rate` on every record, shared by every dataset that
  asks for the same samples) and the dataset's job applies its thresholds (`cut`, a `PassRateCut`);
  a stage's `filter` job does both in one step (`pass_rate`, a `PassRate`). `measure` serves both.
- `validate_tests`: run the reference solution (`solution`, from the source's field mapping) on the
  problem's tests in the sandbox; drop the problem unless it passes all (false-negative rewards).
- `weak_tests`: run trivially wrong programs (print nothing, echo the input, print a constant,
  return None / 0 / the first argument, ...); drop the problem if any passes (false-positive rewards).

Why: the paper's difficulty and test-quality filters; both reward errors measurably hurt training.

How: prompts are rendered exactly as training renders them (`runtime.prompts.render_prompt`),
generated over the job's engine replicas (`runtime.rollout.replicas.sample`, its `inference` block), and graded by
`runtime.scoring.score` (`grade_math` / `grade_code`) with the spec's reward limits, so "solved" means here
what it means to the trainer. Prompts too long for the engine are dropped with their length (a
`sample` job marks them `unsampled` with that reason, and the cut drops them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlspec.compiler.jobs import PassRate, PassRateCut, PassRateSampling

from .context import Context, FilterError, Verdicts
from .records import field_value


@dataclass(frozen=True)
class Measured:
    rate: float  # fraction of the k samples graded correct
    correct: int
    k: int
    majority_ok: bool  # math: the most common extracted answer is a correct one
    correct_tokens: float | None  # mean response length of the correct samples


# ----------------------------------------------------------------------------------------------
# grading any records' responses
# ----------------------------------------------------------------------------------------------


def grade(records: Sequence[dict], responses: Sequence[str], ctx: Context) -> list:
    """One `Grade` per (record, response) pair with the spec's reward limits and answer extraction,
    through the grading entry point training and benchmarks use."""
    from rlspec.runtime.scoring import score
    spec_dir = str(ctx.spec_dir) if ctx.spec_dir is not None else None
    return score(records, responses, ctx.needs("grading"), spec_dir=spec_dir)


def as_response(code: str, ctx: Context) -> str:
    """A program written as a policy answer, so the grader extracts it exactly as it would a model's."""
    think_end = ctx.needs("grading").answer.think_end
    return f"{think_end or ''}\n```python\n{code}\n```"


# ----------------------------------------------------------------------------------------------
# pass rate
# ----------------------------------------------------------------------------------------------


def measure(records: Sequence[dict], model: Path, rate: PassRate | PassRateSampling,
            ctx: Context) -> list[Measured | str]:
    """Sample and grade `rate.k` responses per record over the job's engine replicas (`ctx.replicas`;
    seeded by `ctx.seed` and each sampled prompt's index, so the samples do not depend on the replica
    count); a string instead of a result is why it could not be sampled (its prompt does not fit).
    Each prompt's samples are graded as they arrive and dropped: only the measurement is kept."""
    from rlspec.runtime.prompts import render_prompt
    from rlspec.runtime.rollout import SamplingParams
    from rlspec.runtime.rollout.replicas import ReplicaError, sample
    inf, replicas = ctx.needs("inference"), ctx.needs("replicas")
    tokenizer = _tokenizer(model)
    prompts = [tokenizer(render_prompt(r, r["domain"], inf.prompt, tokenizer), add_special_tokens=False)["input_ids"]
               for r in records]
    out: list[Measured | str] = list(_too_long(inf, prompts, rate.max_response_tokens))
    todo = [i for i, o in enumerate(out) if o is None]
    # top-k is off: pass-rate filters sample with temperature and top-p only
    sampling = SamplingParams(n=rate.k, temperature=rate.temperature, top_p=rate.top_p, top_k=-1,
                              max_tokens=rate.max_response_tokens, seed=ctx.seed, stop=tuple(rate.stop))
    def keep(g: int, samples: list) -> None:
        out[todo[g]] = _score(records[todo[g]], samples, ctx)
    try:
        sample(model, [prompts[i] for i in todo], sampling, inference=inf, replicas=replicas, label=ctx.dataset,
               consume=keep)
    except (OSError, ValueError, ImportError, ReplicaError) as exc:
        raise FilterError(f"cannot sample {str(model)!r} with the {inf.rollout.engine} engine on "
                          f"{replicas.count} replica(s) ({type(exc).__name__}: {exc})") from None
    return out


def _tokenizer(model: Path):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise FilterError(f"cannot load the tokenizer in {str(model)!r} ({type(exc).__name__}: {exc})") from None


def _too_long(inf, prompts: list[list[int]], max_tokens: int):
    """Per prompt, why the engine cannot take it (too long for the limits, or empty), else None."""
    from rlspec.runtime.rollout.base import prompt_limit
    limit = prompt_limit(inf.rollout, inf.max_model_len, max_tokens)
    if limit < 1:
        raise FilterError(f"max_response_tokens={max_tokens} leaves no room for a prompt in the engine's "
                          f"max_model_len={inf.max_model_len}; lower it or raise model.max_context")
    for ids in prompts:
        n = len(ids)
        yield (f"prompt too long for the rollout: {n} tokens > {limit}" if n > limit
               else "empty prompt: 0 tokens" if n == 0 else None)


def _score(record: dict, samples: list, ctx: Context) -> Measured:
    grades = grade([record] * len(samples), [s.text for s in samples], ctx)
    ok = [g.reward > 0 for g in grades]
    answers = Counter(g.answer for g in grades if g.answer is not None)
    majority_ok = False
    if answers:
        top = answers.most_common(1)[0][0]
        majority_ok = any(good for g, good in zip(grades, ok) if g.answer == top)
    lengths = [len(s.token_ids) for s, good in zip(samples, ok) if good]
    return Measured(sum(ok) / len(ok), sum(ok), len(ok), majority_ok, sum(lengths) / len(lengths) if lengths else None)


def rate_verdict(m: Measured | str, lo: float, hi: float, majority: bool = False,
                 min_tokens: int | None = None) -> str | None:
    if isinstance(m, str):
        return m
    if m.rate < lo:
        return f"pass rate below min {lo:g}: {m.correct}/{m.k}"
    if m.rate > hi:
        return f"pass rate above max {hi:g}: {m.correct}/{m.k}"
    if majority and not m.majority_ok:
        return f"majority answer is wrong: {m.correct}/{m.k} correct"
    if min_tokens is not None and m.correct_tokens is not None and m.correct_tokens < min_tokens:
        return f"answered in fewer than {min_tokens} tokens: {m.correct_tokens:.0f} on average"
    return None


def annotate(records: Sequence[dict], results: Sequence[Measured | str], model: str) -> None:
    """Write each record's measurement on it (`meta.pass_rate`), with all the thresholds need, or
    why it could not be sampled (`unsampled`): every record gets one, so none keeps an older one."""
    for r, m in zip(records, results):
        r["meta"]["pass_rate"] = {"policy": model, "unsampled": m} if isinstance(m, str) else {
            "policy": model, "k": m.k, "correct": m.correct, "rate": m.rate, "majority_ok": m.majority_ok,
            "correct_tokens": m.correct_tokens}


def recorded(record: dict) -> Measured | str:
    """The measurement `annotate` wrote on a record (or why it has none); a record without one is
    refused: its input was not written by this version's `sample` job."""
    m = record["meta"].get("pass_rate")
    try:
        if "unsampled" in m:
            return m["unsampled"]
        return Measured(m["rate"], m["correct"], m["k"], m["majority_ok"], m["correct_tokens"])
    except (TypeError, KeyError):
        raise FilterError(f"record {record['id']!r} carries no pass-rate measurement (meta.pass_rate = {m!r}); "
                          "its input was not written by a `sample` job of this rlspec version: recompile with "
                          "`rlspec compile` and rerun") from None


def cut(records, cfg: PassRateCut) -> Verdicts:
    """Curation's pass-rate thresholds on the measurement its `sample` job wrote on each record."""
    return [rate_verdict(recorded(r), cfg.min, cfg.max, cfg.majority, cfg.min_response_tokens) for r in records]


def sample(records: Sequence[dict], sampling: PassRateSampling, ctx: Context) -> list[Measured | str]:
    """A `sample` job's measurement: `sampling.k` graded samples of each record from the model of
    input `sampling.model`, written on the records (`annotate`)."""
    model = ctx.model_dir(sampling.model)
    results = measure(records, model, sampling, ctx)
    annotate(records, results, model_label(model))
    return results


def pass_rate(records, cfg: PassRate, ctx: Context) -> Verdicts:
    """A stage's `filter` job: sample the policy entering the stage and cut in one step."""
    model = ctx.model_dir(cfg.model)
    results = measure(records, model, cfg, ctx)
    annotate(records, results, model_label(model))
    return [rate_verdict(m, cfg.min, cfg.max, cfg.majority, cfg.min_response_tokens) for m in results]


def model_label(model: Path) -> str:
    """What `meta.pass_rate.policy` records: the folder of the job that holds the model."""
    return model.parent.as_posix()


# ----------------------------------------------------------------------------------------------
# test quality
# ----------------------------------------------------------------------------------------------


def _solution(record: dict) -> str | None:
    value = field_value(record, "solution")
    if isinstance(value, list):  # some datasets list several accepted solutions: the first is the reference
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return value if isinstance(value, str) and value.strip() else None


def validate_tests(records, cfg, ctx: Context) -> Verdicts:
    solutions = [_solution(r) for r in records]
    idx = [i for i, s in enumerate(solutions) if s is not None]
    out: Verdicts = ["no reference solution (map one with `fields: {solution: <column>}`)"] * len(records)
    grades = grade([records[i] for i in idx], [as_response(solutions[i], ctx) for i in idx], ctx)
    for i, g in zip(idx, grades):
        out[i] = None if g.status == "pass" else f"reference solution fails its tests: {g.status} ({g.detail[:120]})"
    return out


WRONG_STDIN = {  # name -> program: each is wrong for any problem worth training on
    "prints nothing": "pass",
    "prints an empty line": "print()",
    "echoes the input": "import sys\nprint(sys.stdin.read(), end='')",
    "prints 0": "print(0)", "prints 1": "print(1)", "prints -1": "print(-1)",
    "prints Yes": "print('Yes')", "prints No": "print('No')", "prints YES": "print('YES')", "prints NO": "print('NO')",
}
WRONG_RETURNS = {"returns None": "None", "returns 0": "0", "returns 1": "1", "returns -1": "-1",
                 "returns True": "True", "returns False": "False", "returns []": "[]", "returns ''": "''",
                 "returns its first argument": "args[0] if args else None"}


def _wrong_programs(record: dict) -> dict[str, str]:
    names = {case["fn_name"] for case in record["tests"] if "fn_name" in case}
    programs = dict(WRONG_STDIN) if any("input" in case for case in record["tests"]) else {}
    for label, value in WRONG_RETURNS.items():
        body = "".join(f"def {n}(*args, **kwargs):\n    return {value}\n" for n in sorted(names))
        if names:  # a top-level function and a Solution method: the grader accepts both shapes
            body += "class Solution:\n" + "".join(f"    def {n}(self, *args, **kwargs):\n        return {value}\n"
                                                for n in sorted(names))
            programs[label] = body
    return programs


def weak_tests(records, cfg, ctx: Context) -> Verdicts:
    pairs = [(i, label, code) for i, r in enumerate(records) if r["tests"] for label, code in _wrong_programs(r).items()]
    grades = grade([records[i] for i, _, _ in pairs], [as_response(code, ctx) for _, _, code in pairs], ctx)
    out: Verdicts = [None] * len(records)
    for (i, label, _), g in zip(pairs, grades):
        if g.status == "pass" and out[i] is None:
            out[i] = f"tests accept a trivially wrong program: {label}"
    return out
