"""Metrics of a job: a local `metrics.jsonl` (train jobs, always) and a W&B run (when tracking is on).

What: `Tracker(job, path)` appends a train job's per-step metrics to `metrics.jsonl` and logs them,
and tables (`log_table`), to the job's W&B run; `log_results(job, values)` gives a bench job its
run with its numbers. One W&B run per train and per bench job:
- group: `tracking.group`, by default `{name}`, so a grid is one group and the report's summary
  run sits in it too (`{cell}` is the job's cell label, `shared` for a job several cells use);
- tags: the job kind, the label of EVERY grid cell that uses the job (cells that agree on all a
  job depends on share it, and it is theirs all, not the first's), each of those cells' grid-axis
  values as `axis=value`, and `tracking.tags`;
- config: the job config, the cells' labels, per axis the values of those cells, provenance;
- id: the job id, so a resumed job continues its run; name: the job label.
Offline by default (`tracking.mode`): runs go under the build folder's `wandb/`.
`metrics.jsonl` is the source of truth for reports; on resume it is cut back to the checkpoint's
step so a step never appears twice.

Why the settings come from the build's context.json (`--context`) and not the job file: a job's
id is the hash of what determines its outputs, and where its W&B run goes does not; which cells
share a job changes when a grid grows, and a job file whose bytes change makes Snakemake rerun a
finished job. The context is read through typed models (`BuildContext`), never `.get(key, default)`.

How: `run_settings(context, job)` is pure (no W&B import): the compiler's tests check a shared
job's tags with it on a compiled build; `open_run` hands its result to `wandb.init`. A job run
without `--context` (by hand) has no tracking block and gets no run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rlspec.compiler.spec import Tracking
from rlspec.runtime.atomic import write_text_atomic
from rlspec.runtime.job import Job, JobError
from rlspec.runtime.metricsfile import read_metrics

TAG_CHARS = 64  # W&B's limits
GROUP_CHARS = 128


class _Context(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # context.json holds more than tracking reads


class ContextCell(_Context):
    index: int
    label: str
    values: dict[str, Any]


class ContextJob(_Context):
    kind: str
    label: str
    cells: list[int]
    """Every grid cell whose DAG holds the job."""


class BuildContext(_Context):
    """What this module reads of a build's context.json (written by `rlspec compile`)."""

    name: str
    tracking: Tracking
    cells: list[ContextCell]
    jobs: dict[str, ContextJob]
    provenance: dict[str, Any] | None


@dataclass(frozen=True)
class RunSettings:
    """The `wandb.init` arguments of one job's run."""

    project: str
    entity: str | None
    mode: str
    group: str
    name: str
    tags: list[str]
    config: dict[str, Any]


def tracking_settings(block: dict[str, Any] | None) -> Tracking | None:
    """The context's `tracking` block as the spec's model; None when there is none (a job run
    without a context) or when tracking is off."""
    if not block:
        return None
    settings = Tracking.model_validate(block)
    return settings if _on(settings) else None


def _on(settings: Tracking) -> bool:
    return settings.backend == "wandb" and settings.mode != "disabled"


def group_name(settings: Tracking, name: str, cell: str) -> str:
    """`tracking.group` with `{name}` and `{cell}` filled in; other braces are kept as written
    (`str.format` would fail every job at its first W&B call on a stray one)."""
    return _fit(settings.group.replace("{name}", name).replace("{cell}", cell), GROUP_CHARS)


def run_settings(context: dict[str, Any], job: Job) -> RunSettings | None:
    """Group, tags and config of `job`'s run, from the build context; None when tracking is off."""
    if not context:  # a job run by hand, without --context
        return None
    try:
        ctx = BuildContext.model_validate(context)
    except ValidationError as exc:
        raise JobError(f"the context.json passed with {job.path} does not match this rlspec version "
                       f"({exc.error_count()} problems); recompile with `rlspec compile`") from None
    if not _on(ctx.tracking):
        return None
    if job.id not in ctx.jobs:
        raise JobError(f"job {job.id} is not in this context.json; pass the context.json of the build folder "
                       f"that holds {job.path}")
    mine = set(ctx.jobs[job.id].cells)
    cells = [c for c in ctx.cells if c.index in mine]
    axes: dict[str, list[Any]] = {}
    for c in cells:
        for axis, value in c.values.items():
            if value not in axes.setdefault(axis, []):
                axes[axis].append(value)
    t = ctx.tracking
    tags = [job.kind, *(c.label for c in cells if c.values),  # the no-grid cell ("base") adds nothing
            *(f"{axis}={_text(v)}" for axis, values in axes.items() for v in values), *t.tags]
    return RunSettings(project=t.project, entity=t.entity, mode=t.mode,
                       group=group_name(t, ctx.name, cells[0].label if len(cells) == 1 else "shared"),
                       name=job.label, tags=list(dict.fromkeys(_fit(tag, TAG_CHARS) for tag in tags)),
                       config={"job": job.config.model_dump(mode="json"), "cells": [c.label for c in cells],
                               "grid": axes, "provenance": ctx.provenance})  # spec and rlspec commits


def open_run(job: Job):
    """The job's W&B run (resumed when its id exists), or None when tracking is off."""
    settings = run_settings(job.context, job)
    if settings is None:
        return None
    import wandb
    return wandb.init(project=settings.project, entity=settings.entity, mode=settings.mode, group=settings.group,
                      name=settings.name, id=job.id, resume="allow", job_type=job.kind, tags=settings.tags,
                      config=settings.config, dir=os.getcwd(), settings=wandb.Settings(silent=True, init_timeout=90))


class Tracker:
    """A train job's metrics: `path` (metrics.jsonl) on the main rank, and its W&B run."""

    def __init__(self, job: Job, path: Path, *, enabled: bool = True):
        self.path = path
        self.enabled = enabled
        self.run = open_run(job) if enabled else None

    def truncate_after(self, step: int) -> None:
        """Drop metric lines past `step` (left by a run killed after its last checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [row for row in read_metrics(self.path) if row["step"] <= step]  # a torn last line goes too
        write_text_atomic(self.path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in keep))

    def log(self, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(metrics, sort_keys=True) + "\n")
        if self.run is not None:
            self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=int(metrics["step"]))

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        if self.run is not None:
            import wandb
            self.run.log({key: wandb.Table(columns=columns, data=rows)}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in values.items():
                self.run.summary[k] = v

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def log_results(job: Job, values: dict[str, Any]) -> None:
    """A bench job's run: every number in `values` (nested keys joined by `/`) in one history row
    and in the run summary."""
    run = open_run(job)
    if run is None:
        return
    flat = _numbers(values)
    run.log(flat)
    for k, v in flat.items():
        run.summary[k] = v
    run.finish()


def _numbers(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def _text(value: Any) -> str:
    """As the cell labels write it: scalars as text, lists and mappings as compact JSON."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _fit(text: str, limit: int) -> str:
    """`text`, or a cut of it with a hash of the whole: still one text per value."""
    if len(text) <= limit:
        return text
    return f"{text[:limit - 9]}~{hashlib.blake2b(text.encode(), digest_size=4).hexdigest()}"
