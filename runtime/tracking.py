"""Metrics of a job: a local `metrics.jsonl` (always) and a W&B run (when the spec's tracking is on).

One W&B run per job, grouped per grid cell (`tracking.group`, default `{name}-{cell}`), tagged with
the job kind and the cell's grid values, with the job config as the run config. The run id is the
job id, so a resumed job continues its run. `metrics.jsonl` is the source of truth for reports; on
resume it is cut back to the checkpoint's step so a step never appears twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rlspec.runtime.atomic import write_text_atomic
from rlspec.runtime.job import Job
from rlspec.runtime.metricsfile import read_metrics


class Tracker:
    def __init__(self, job: Job, path: Path, *, enabled: bool = True):
        self.path = path
        self.enabled = enabled
        self.run = None
        if enabled:
            self.run = _wandb_run(job)

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

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in values.items():
                self.run.summary[k] = v

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _wandb_run(job: Job):
    tracking = job.context.get("tracking") or {}
    if tracking.get("backend", "none") != "wandb" or tracking.get("mode") == "disabled":
        return None
    import wandb
    cells = job.context.get("cells", [])
    mine = job.context.get("jobs", {}).get(job.id, {}).get("cells", [0])
    cell = next((c for c in cells if c["index"] == (mine[0] if mine else 0)), {"label": "base", "values": {}})
    group = tracking.get("group", "{name}-{cell}").format(name=job.context.get("name", "rlspec"), cell=cell["label"])
    tags = [job.kind, *[f"{k}={v}" for k, v in cell["values"].items()], *tracking.get("tags", [])]
    return wandb.init(project=tracking.get("project"), entity=tracking.get("entity"), mode=tracking.get("mode"),
                      group=group[:128], name=job.label, id=job.id, resume="allow", job_type=job.kind,
                      tags=[t[:64] for t in tags],
                      config={"job": job.config.model_dump(mode="json"), "cells": mine, "grid": cell["values"],
                              "provenance": job.context.get("provenance")},  # spec and rlspec commits
                      dir=os.getcwd(), settings=wandb.Settings(silent=True, init_timeout=90))
