"""Every evaluated checkpoint of a run on one step axis, and the best one per benchmark.

What: `run_checkpoints(cell)` lists a summary cell's evaluated models in run order: the initial model
(run step 0), each stage's snapshots inside it (`evaluate_every`) and its end, each with its stage,
its step into the stage, its step since the run began (`run_step`: the stages laid end to end, as
the training curves are), the model folder, and the bench entries. `best_checkpoints(summary)`
picks per benchmark the highest headline score over every checkpoint of every cell.

Why: with evaluation inside a stage, the stage's last model need not be its best (the reason to
evaluate inside it), and a user picks the checkpoint to keep from the whole run, not per stage.

How: pure functions of summary dicts (`summary.py` builds them). A tie goes to the earliest
checkpoint (fewest training steps: the same score for less compute), then to the first cell.
"""

from __future__ import annotations

from typing import Any


def run_checkpoints(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The cell's evaluated checkpoints in run order (points whose bench jobs have not finished are
    included, with empty metrics)."""
    out: list[dict[str, Any]] = []
    offset = 0
    for stage in cell["stages"]:
        train = stage.get("train")
        if train is None:  # the initial model: before any training step
            out.append(_point(stage["stage"], 0, 0, stage["model"], stage["benchmarks"], end=True))
            continue
        for ev in stage["evaluations"]:
            out.append(_point(stage["stage"], ev["step"], offset + ev["step"], ev["model"], ev["benchmarks"],
                              end=False))
        steps = train["steps"] or 0
        if stage["benchmarks"]:
            out.append(_point(stage["stage"], steps, offset + steps, stage["model"], stage["benchmarks"], end=True))
        offset += steps
    return out


def _point(stage: str, step: int, run_step: int, model: str | None, benchmarks: dict, *, end: bool) -> dict:
    return {"stage": stage, "step": step, "run_step": run_step, "end": end, "model": model,
            "benchmarks": benchmarks}


def score(point: dict[str, Any], bench: str, metric: str) -> dict[str, float] | None:
    """{value, stderr} of `bench`'s `metric` at this checkpoint, or None if not (yet) scored."""
    return point["benchmarks"].get(bench, {}).get("metrics", {}).get(metric)


def stage_starts(cell: dict[str, Any]) -> list[tuple[int, str]]:
    """(run step where each training stage begins, its name), for boundary lines and labels."""
    starts, offset = [], 0
    for stage in cell["stages"]:
        train = stage.get("train")
        if train is not None:
            starts.append((offset, stage["stage"]))
            offset += train["steps"] or 0
    return starts


def best_checkpoints(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per benchmark with a score: the checkpoint with the highest headline metric over all cells,
    with its cell, stage, step, run step, value ± stderr, model folder and bench job; `ties` counts
    the other checkpoints with the same value."""
    best = {}
    for b, info in summary["benchmarks"].items():
        metric = info["headline"]
        scored = [(found, p, cell["label"]) for cell in summary["cells"] for p in run_checkpoints(cell)
                  if (found := score(p, b, metric)) is not None]
        if not scored:
            continue
        top = max(found["value"] for found, _, _ in scored)
        winners = [w for w in scored if w[0]["value"] == top]
        found, p, label = min(winners, key=lambda w: w[1]["run_step"])  # min keeps the first cell among equals
        best[b] = {"metric": metric, "value": found["value"], "stderr": found["stderr"], "cell": label,
                   "stage": p["stage"], "step": p["step"], "run_step": p["run_step"], "end": p["end"],
                   "model": p["model"], "job": p["benchmarks"][b]["job"], "ties": len(winners) - 1,
                   "checkpoints": len(scored)}
    return best
