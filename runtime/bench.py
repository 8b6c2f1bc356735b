"""`bench` job: k sampled answers per benchmark problem from one checkpoint, graded and scored.

What: loads the checkpoint a stage ended with, a snapshot inside a stage (`evaluate_every`: the
train job's `snapshots/step-N/model/`), or the initial model, samples `k` answers to every
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
Sampling goes through `rlspec.runtime.rollout.replicas.sample`: the job's `replicas` (one engine
here, or one process per replica on its own GPUs), all problems submitted at once so no chunk waits
on another's longest sample, each problem seeded by `seed` and its index, so the samples and metrics
do not depend on the replica count.
The metric helpers live in `rlspec.runtime.metrics`: `pass_at_k(n, c, k)`, `avg_at_k(correct_matrix) -> (mean, stderr)`
and `maj_at_k(answers, correct) -> (mean, stderr)`. A problem that cannot be run (unreadable
source, empty date window, prompt too long, missing model) stops the job with exit code 1 and one
line saying what to change; no done.json or results.json is left behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rlspec.compiler.jobs import BenchJob, snapshot_folder
from rlspec.compiler.spec import DateWindow
from rlspec.runtime.atomic import temp_path, write_json_atomic
from rlspec.runtime.job import Job, JobError, load_job, model_dir, parse_args, spec_dir
from rlspec.runtime.metrics import avg_at_k, maj_at_k, mean_stderr, metric_name, pass_at_k
from rlspec.runtime.tracking import log_results

class BenchError(Exception):
    """A benchmark that cannot be run or scored; the message names the benchmark and the fix."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args("bench", argv)
    start = time.perf_counter()
    try:
        job = load_job(args.job, "bench", args.context)
        clear_outputs(job.output_dir)
        problems, excluded = load_problems(job)
        samples, timing = generate(job, str(evaluated_model(job)), problems)
        grades = grade(job, problems, samples)
        results = score(job, problems, samples, grades, excluded, timing, time.perf_counter() - start)
        # the job's W&B run (when tracking is on), before the outputs: done.json stays the last word
        log_results(job, {**results, "metrics": {m["name"]: m for m in results["metrics"].values()}})
        write_outputs(job, problems, samples, grades, results)
    except (JobError, BenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{job.label}: {headline(results)} over {len(problems)} problems x {job.config.k} samples "
          f"-> {job.output_dir}/results.json")
    return 0


# ----------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------


def evaluated_model(job: Job) -> Path:
    """The model folder this job evaluates: its input's `model/`, or with `step` the input train job's
    snapshot at that step (`evaluate_every`), which the train job wrote before its done.json."""
    step = job.config.step
    if step is None:
        return model_dir(job)
    path = Path(job.inputs["policy"]) / snapshot_folder(step) / "model"
    if not (path / "config.json").is_file():
        raise JobError(f"snapshot {path} is missing (no config.json): the train job did not write step {step}; "
                       "rerun it with the spec this build was compiled from (`rlspec run`)")
    return path


def clear_outputs(out_dir: Path) -> None:
    """A rerun must not leave the previous run's files looking like this run's."""
    for name in ("done.json", "results.json", "samples.jsonl"):
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def load_problems(job: Job) -> tuple[list[dict], dict[str, int]]:
    """The benchmark's records, cut to its release-date window for code; and what was cut."""
    from rlspec.runtime.data.sources import SourceError, read_source

    cfg: BenchJob = job.config
    try:
        records = read_source(cfg.source, cfg.domain, spec_dir=spec_dir(job), seed=cfg.seed,
                              place=f"benchmarks.{cfg.benchmark}.source")
    except SourceError as exc:
        raise BenchError(f"benchmark {cfg.benchmark!r}: {exc}") from None
    uri = cfg.source.uri
    if uri.startswith("builtin://"):
        from rlspec.runtime.data.builtin import parse_uri
        if parse_uri(uri)[1]["split"] != "test":
            print(f"warning: benchmark {cfg.benchmark!r} reads {uri}, the split the training data is drawn from; "
                  "add split=test to the uri for a held-out set", file=sys.stderr)
    excluded: dict[str, int] = {}
    if cfg.date_window is not None:
        records, excluded = in_window(records, cfg.date_window)
    if not records:
        raise BenchError(f"benchmark {cfg.benchmark!r}: no problems to evaluate ({cfg.source.uri}"
                         f"{', excluded: ' + str(excluded) if excluded else ''}); check the source and date_window")
    return records, excluded


def in_window(records: list[dict], window: DateWindow) -> tuple[list[dict], dict[str, int]]:
    """Problems released in [start, end) (LiveCodeBench v5: 2024-08-01 to 2025-02-01). A problem
    with no release date is left out: it cannot be shown to fall inside the window."""
    start, end = window.start, window.end
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


def generate(job: Job, model_path: str, problems: list[dict]) -> tuple[list[list[Any]], dict[str, float]]:
    """k samples per problem at the benchmark's sampling over the job's engine replicas (`replicas`: one
    engine in this process, or one process per replica), seeded by `seed` and each problem's index,
    so the samples do not depend on how many replicas share the problems."""
    from transformers import AutoTokenizer

    from rlspec.runtime.prompts import render_prompt
    from rlspec.runtime.rollout import SamplingParams
    from rlspec.runtime.rollout.replicas import ReplicaError, sample

    cfg: BenchJob = job.config
    s, inf = cfg.sampling, cfg.inference
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prompts = [tokenizer(render_prompt(r, cfg.domain, inf.prompt, tokenizer), add_special_tokens=False)["input_ids"]
               for r in problems]
    sampling = SamplingParams(n=cfg.k, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                              max_tokens=s.max_response_tokens, stop=tuple(s.stop), seed=cfg.seed)
    try:
        out = sample(model_path, prompts, sampling, inference=inf, replicas=cfg.replicas, label=job.label)
    except (ValueError, ReplicaError) as exc:  # a prompt too long (the check says which) or a failed replica
        raise BenchError(f"benchmark {cfg.benchmark!r}: {exc}") from None
    tokens = out.groups.timing.generated_tokens
    print(f"{job.label}: generated {len(out.groups)} problems x {cfg.k} samples on {cfg.replicas.count} "
          f"replica(s) ({tokens} tokens, {tokens / out.wall_s if out.wall_s else 0:.0f} tok/s)", flush=True)
    return list(out.groups), {"load_s": out.load_s, "generate_s": out.generate_s, "sample_s": out.wall_s}


def grade(job: Job, problems: list[dict], samples: list[list[Any]]) -> list[list[Any]]:
    """One Grade per sample, in the same [problem][sample] layout, graded as training grades."""
    from rlspec.runtime import scoring

    cfg = job.config
    owners = [p for p, group in zip(problems, samples) for _ in group]
    where = spec_dir(job)
    flat = scoring.score(owners, [s.text for group in samples for s in group], cfg.grading,
                         domains=[cfg.domain] * len(owners), spec_dir=str(where) if where is not None else None)
    it = iter(flat)
    return [[next(it) for _ in group] for group in samples]


def score(job: Job, problems: list[dict], samples: list[list[Any]], grades: list[list[Any]],
          excluded: dict[str, int], timing: dict[str, float], wall_s: float) -> dict[str, Any]:
    cfg: BenchJob = job.config
    k = cfg.k
    correct = [[g.reward >= 1.0 for g in row] for row in grades]
    metrics = {}
    for m in cfg.metrics:
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
        "benchmark": cfg.benchmark, "domain": cfg.domain, "job": job.id, "label": job.label,
        "model": job.inputs["policy"], "unit": "percent",
        "problems": len(problems), "k": k, "samples": len(flat), "excluded": excluded,
        "metrics": metrics,
        "status_counts": dict(Counter(g.status for row in grades for g in row).most_common()),
        "solved_any": sum(any(row) for row in correct),
        "tokens": {"generated": generated, "mean_response": generated / len(flat),
                   "max_response": max(len(s.token_ids) for s in flat),
                   "truncation_rate": sum(s.finish_reason == "length" for s in flat) / len(flat)},
        "sampling": cfg.sampling.model_dump(mode="json"), "engine": cfg.inference.rollout.engine,
        "replicas": cfg.replicas.count,
        "wall_s": {**{k_: round(v, 3) for k_, v in timing.items()}, "total": round(wall_s, 3)},
    }


def write_outputs(job: Job, problems: list[dict], samples: list[list[Any]], grades: list[list[Any]],
                  results: dict[str, Any]) -> None:
    """samples.jsonl and results.json under temporary names then renamed; done.json last."""
    path = job.output_dir / "samples.jsonl"
    tmp = temp_path(path)
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
