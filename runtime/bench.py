"""`bench` job: k sampled answers per benchmark problem from one checkpoint, graded and scored.

What: loads the checkpoint a stage ended with (or the initial model), samples `k` answers to every
problem of one benchmark with the benchmark's own sampling settings (AceReason: temperature 0.6,
top-p 0.95, up to 32K tokens), grades them with the math grader or the code sandbox, and writes to
the job's output folder:
  samples.jsonl   one line per (problem, sample): prompt id, sample index, response, extracted
                  answer, reward, grading status and detail, finish reason, tokens
  results.json    the metrics (`avg@k`, `pass@N`, `maj@k`) in percent with standard errors across
                  problems, counts by grading status, tokens generated, truncation, wall time
  done.json       a small summary, written last (the workflow's declared output)

Why: the recipe reports avg@k (AIME avg@64, LiveCodeBench avg@8) and pass@k by the unbiased
estimator after every stage and before RL; each (checkpoint, benchmark, sampling) is one
content-addressed job, so cells that share a checkpoint share its evaluation.

How: run by the compiled workflow from the build folder:
    python -m rlspec.runtime.bench --job jobs/bench/<id>.json --context context.json
The metric helpers are public: `pass_at_k(n, c, k)`, `avg_at_k(correct_matrix) -> (mean, stderr)`
and `maj_at_k(answers, correct) -> (mean, stderr)`. A problem that cannot be run (unreadable
source, empty date window, prompt too long, missing model) stops the job with exit code 1 and one
line saying what to change; no done.json or results.json is left behind.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlspec.runtime.job import Job, JobError, load_job, parse_args, write_json_atomic

ROWS_PER_CALL = 1024  # prompt x sample rows per generate call: bounded memory, progress lines


class BenchError(Exception):
    """A benchmark that cannot be run or scored; the message names the benchmark and the fix."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args("bench", argv)
    start = time.perf_counter()
    try:
        job = load_job(args.job, "bench", args.context)
        clear_outputs(job.output_dir)
        problems, excluded = load_problems(job)
        samples, timing = generate(job, model_dir(job), problems)
        grades = grade(job, problems, samples)
        results = score(job, problems, samples, grades, excluded, timing, time.perf_counter() - start)
        write_outputs(job, problems, samples, grades, results)
    except (JobError, BenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{job.label}: {headline(results)} over {len(problems)} problems x {job.config['k']} samples "
          f"-> {job.output_dir}/results.json")
    return 0


# ----------------------------------------------------------------------------------------------
# Metrics (public: tests and notebooks use them directly)
# ----------------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples is correct) from n samples, c of them
    correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k). The binomials overflow floats for large n,
    so the ratio is taken as the product  prod_{i=n-c+1}^{n} (1 - k/i),  every factor in [0, 1]."""
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError(f"pass_at_k takes integers, got n={n!r}, c={c!r}, k={k!r}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} correct out of n={n} samples; need 0 <= c <= n")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} with n={n} samples; need 1 <= k <= n (draw more samples)")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_stderr(per_problem: Sequence[float]) -> tuple[float, float]:
    """Mean over problems and its standard error (sample standard deviation / sqrt(problems)).
    The error is across problems: it says how much the score would move on another draw of
    problems like these, which is what decides whether two checkpoints differ."""
    values = [float(v) for v in per_problem]
    if not values:
        raise ValueError("no problems to average over")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def avg_at_k(correct_matrix: Sequence[Sequence[bool | int | float]]) -> tuple[float, float]:
    """Mean accuracy over k samples per problem (`correct_matrix[problem][sample]`, truthy =
    correct), averaged over problems: (mean, standard error across problems), both in [0, 1]."""
    rows = [list(r) for r in correct_matrix]
    if any(not r for r in rows):
        raise ValueError("avg_at_k: every problem needs at least one sample")
    return mean_stderr([sum(bool(x) for x in r) / len(r) for r in rows])


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> float:
    """Credit for one problem under majority voting: the most frequent extracted answer wins.
    All correct answers count as one answer (each is equivalent to the reference, so to each
    other, even when written differently); wrong answers vote by their text with spaces removed.
    Samples without an answer do not vote. A tie splits the credit: the share of tied answers that
    are correct, so the result does not depend on sample order."""
    votes: Counter[str] = Counter()
    for answer, ok in zip(answers, correct, strict=True):
        if ok:
            votes["\0correct"] += 1
        elif answer is not None:
            votes["".join(answer.split())] += 1
    if not votes:
        return 0.0
    top = max(votes.values())
    winners = [a for a, v in votes.items() if v == top]
    return sum(a == "\0correct" for a in winners) / len(winners)


def maj_at_k(answers: Sequence[Sequence[str | None]], correct: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """maj@k over problems: (mean, standard error) of `majority_correct` per problem."""
    return mean_stderr([majority_correct(a, c) for a, c in zip(answers, correct, strict=True)])


def metric_name(metric: str, k: int) -> str:
    """The spec's metric with k filled in, as the paper writes it: `avg@k` -> `avg@64`."""
    return metric.replace("@k", f"@{k}")


# ----------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------


def clear_outputs(out_dir: Path) -> None:
    """A rerun must not leave the previous run's files looking like this run's."""
    for name in ("done.json", "results.json", "samples.jsonl"):
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def load_problems(job: Job) -> tuple[list[dict], dict[str, int]]:
    """The benchmark's records, cut to its release-date window for code; and what was cut."""
    from rlspec.runtime.data.sources import SourceError, read_source

    cfg = job.config
    spec_dir = job.context.get("spec_dir")
    try:
        records = read_source(cfg["source"], cfg["domain"], spec_dir=spec_dir, seed=cfg["seed"])
    except SourceError as exc:
        raise BenchError(f"benchmark {cfg['benchmark']!r}: {exc}") from None
    uri = cfg["source"]["uri"]
    if uri.startswith("builtin://"):
        from rlspec.runtime.data.builtin import parse_uri
        if parse_uri(uri)[1]["split"] != "test":
            print(f"warning: benchmark {cfg['benchmark']!r} reads {uri}, the split the training data is drawn from; "
                  "add split=test to the uri for a held-out set", file=sys.stderr)
    excluded: dict[str, int] = {}
    if cfg["date_window"] is not None:
        records, excluded = in_window(records, cfg["date_window"])
    if not records:
        raise BenchError(f"benchmark {cfg['benchmark']!r}: no problems to evaluate ({cfg['source']['uri']}"
                         f"{', excluded: ' + str(excluded) if excluded else ''}); check the source and date_window")
    return records, excluded


def in_window(records: list[dict], window: dict[str, str]) -> tuple[list[dict], dict[str, int]]:
    """Problems released in [start, end) (LiveCodeBench v5: 2024-08-01 to 2025-02-01). A problem
    with no release date is left out: it cannot be shown to fall inside the window."""
    start, end = dt.date.fromisoformat(str(window["start"])), dt.date.fromisoformat(str(window["end"]))
    kept, excluded = [], Counter()
    for r in records:
        day = r.get("release_date")
        if day is None:
            excluded["no_release_date"] += 1
        elif not start <= dt.date.fromisoformat(day) < end:
            excluded["outside_window"] += 1
        else:
            kept.append(r)
    return kept, dict(excluded)


def model_dir(job: Job) -> str:
    """The HF folder to load: `<policy job>/model/` (a stage's final checkpoint or the built
    model), else the spec's base model, resolved to a local snapshot (the HF cache offline)."""
    policy = job.inputs.get("policy")
    if policy is not None:
        folder = Path(policy) / "model"
        if not (folder / "config.json").is_file():
            raise BenchError(f"{folder}: no model there (config.json missing); the job that writes it "
                             f"({policy}) has not finished -- run the workflow, not this job alone")
        return str(folder)
    base = job.config["base_model"]
    if base is None or not base.get("path"):
        raise BenchError("the job names neither a policy input nor base_model.path; recompile the spec")
    path = base["path"].removeprefix("hf://")
    local = Path(path).expanduser()
    if not local.is_absolute() and job.context.get("spec_dir"):
        local = Path(job.context["spec_dir"]) / local
    if local.is_dir():
        return str(local)
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(path, revision=base.get("revision"))
    except Exception as exc:  # hub errors come in many types; all mean "not available here"
        raise BenchError(f"model {path!r} (revision {base.get('revision')!r}) is neither a local folder nor "
                         f"downloadable here ({type(exc).__name__}: {exc}); download it once with network "
                         "access, or point model.path at a local folder") from None


def generate(job: Job, model_path: str, problems: list[dict]) -> tuple[list[list[Any]], dict[str, float]]:
    """k samples per problem through the spec's rollout engine, at the benchmark's sampling."""
    from rlspec.runtime.prompts import render_prompt
    from rlspec.runtime.rollout import make_engine

    cfg, s = job.config, job.config["sampling"]
    t0 = time.perf_counter()
    engine = make_engine(model_path, engine=cfg["engine"]["engine"], dtype=cfg["dtype"], seed=cfg["seed"],
                         max_model_len=cfg["max_context"], settings=cfg["engine"])
    load_s = time.perf_counter() - t0
    try:
        prompts = [render_prompt(r, cfg["domain"], cfg["prompt"], engine.tokenizer) for r in problems]
        sampling = engine.make_sampling(n=cfg["k"], temperature=s["temperature"], top_p=s["top_p"],
                                        top_k=s["top_k"], max_tokens=s["max_response_tokens"])
        per_call = max(1, ROWS_PER_CALL // cfg["k"])
        samples: list[list[Any]] = []
        tokens = 0
        gen_s = 0.0
        for at in range(0, len(prompts), per_call):
            try:
                rollout = engine.generate(prompts[at:at + per_call], sampling)
            except ValueError as exc:  # prompts too long for the limits: the engine says which
                raise BenchError(f"benchmark {cfg['benchmark']!r}, problems {at}..: {exc}") from None
            samples += rollout
            tokens += rollout.timing.generated_tokens
            gen_s += rollout.timing.seconds
            print(f"{job.label}: generated {len(samples)}/{len(prompts)} problems "
                  f"({tokens} tokens, {tokens / gen_s if gen_s else 0:.0f} tok/s)", flush=True)
    finally:
        engine.close()
    return samples, {"load_s": load_s, "generate_s": gen_s}


def grade(job: Job, problems: list[dict], samples: list[list[Any]]) -> list[list[Any]]:
    """One Grade per sample, in the same [problem][sample] layout, graded as training grades."""
    from rlspec.runtime import scoring

    cfg = job.config
    owners = [p for p, group in zip(problems, samples) for _ in group]
    flat = scoring.score(owners, [s.text for group in samples for s in group], reward=cfg["reward"],
                         answer=cfg["answer"], domains=[cfg["domain"]] * len(owners))
    it = iter(flat)
    return [[next(it) for _ in group] for group in samples]


def score(job: Job, problems: list[dict], samples: list[list[Any]], grades: list[list[Any]],
          excluded: dict[str, int], timing: dict[str, float], wall_s: float) -> dict[str, Any]:
    cfg = job.config
    k = cfg["k"]
    correct = [[g.reward >= 1.0 for g in row] for row in grades]
    metrics = {}
    for m in cfg["metrics"]:
        if m == "avg@k":
            value, err = avg_at_k(correct)
        elif m == "maj@k":
            value, err = maj_at_k([[g.answer for g in row] for row in grades], correct)
        elif m.startswith("pass@"):
            n_k = int(m[len("pass@"):])
            value, err = mean_stderr([pass_at_k(len(row), sum(row), n_k) for row in correct])
        else:
            raise BenchError(f"unknown metric {m!r}; valid: avg@k, pass@N, maj@k")
        metrics[m] = {"name": metric_name(m, k), "value": 100.0 * value, "stderr": 100.0 * err}
    flat = [s for group in samples for s in group]
    generated = sum(len(s.token_ids) for s in flat)
    return {
        "benchmark": cfg["benchmark"], "domain": cfg["domain"], "job": job.id, "label": job.label,
        "model": job.inputs.get("policy") or cfg["base_model"], "unit": "percent",
        "problems": len(problems), "k": k, "samples": len(flat), "excluded": excluded,
        "metrics": metrics,
        "status_counts": dict(Counter(g.status for row in grades for g in row).most_common()),
        "solved_any": sum(any(row) for row in correct),
        "tokens": {"generated": generated, "mean_response": generated / len(flat),
                   "max_response": max(len(s.token_ids) for s in flat),
                   "truncation_rate": sum(s.finish_reason == "length" for s in flat) / len(flat)},
        "sampling": cfg["sampling"], "engine": cfg["engine"]["engine"],
        "wall_s": {**{k_: round(v, 3) for k_, v in timing.items()}, "total": round(wall_s, 3)},
    }


def write_outputs(job: Job, problems: list[dict], samples: list[list[Any]], grades: list[list[Any]],
                  results: dict[str, Any]) -> None:
    """samples.jsonl and results.json under temporary names then renamed; done.json last."""
    path = job.output_dir / "samples.jsonl"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for problem, group, row in zip(problems, samples, grades):
            for i, (s, g) in enumerate(zip(group, row)):
                fh.write(json.dumps({"id": problem["id"], "sample": i, "response": s.text, "answer": g.answer,
                                     "reward": g.reward, "status": g.status, "detail": g.detail,
                                     "finish_reason": s.finish_reason, "tokens": len(s.token_ids)},
                                    ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    write_json_atomic(job.output_dir / "results.json", results)
    write_json_atomic(job.output_dir / "done.json", {
        "benchmark": results["benchmark"], "problems": results["problems"], "k": results["k"],
        "metrics": {m["name"]: round(m["value"], 4) for m in results["metrics"].values()}})


def headline(results: dict[str, Any]) -> str:
    return ", ".join(f"{m['name']} {m['value']:.1f} ± {m['stderr']:.1f}" for m in results["metrics"].values())


if __name__ == "__main__":
    sys.exit(main())
