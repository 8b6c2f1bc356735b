"""summary.json: the report's numbers, in one shape for HTML, Markdown, W&B and scripts.

What: `summarise(results)` turns collected results into per cell, per stage (the initial model
included), per benchmark: metric, value, stderr, and the same for the stage's snapshots inside it
(`evaluations`, from `evaluate_every`) with the model folder each evaluated; per training stage:
steps and first/last reward mean; per benchmark the best cell at its last stage (`best_cells`) and
the best checkpoint anywhere in the run (`checkpoints.best_checkpoints`).

Why: the pages, the figures and the W&B run all show the same numbers, so they are computed once,
here, and everything downstream formats or draws them.

How: pure functions of `Results` (see `collect.py`) and of the summary dict itself.
"""

from __future__ import annotations

from typing import Any

from rlspec.runtime.metrics import metric_name
from rlspec.runtime.reporting.checkpoints import best_checkpoints
from rlspec.runtime.reporting.collect import Results

INITIAL = "initial"  # the stage name of the model before RL


def stage_rows(cell: dict) -> list[tuple[str, dict[str, str], dict | None]]:
    """(stage name, {benchmark: bench job id}, stage layout or None) from `initial` on."""
    rows = [(INITIAL, cell["initial_bench"], None)] if cell["initial_bench"] else []
    return rows + [(s["name"], s["bench"], s) for s in cell["stages"]]


def summarise(res: Results) -> dict[str, Any]:
    benches = {b: {"metrics": [_metric_label(res, b, m) for m in ms], "headline": _metric_label(res, b, ms[0])}
               for b, ms in res.metrics.items()}
    cells = []
    for cell in res.cells:
        stages = []
        for name, bench_ids, layout in stage_rows(cell):
            entry: dict[str, Any] = {"stage": name, "benchmarks": bench_entries(res, bench_ids),
                                     "model": evaluated_model(res, bench_ids)}
            if layout is not None:
                entry["train"] = train_summary(res, layout["train"])
                entry["evaluations"] = [{"step": ev["step"], "model": ev["model"],
                                         "benchmarks": bench_entries(res, ev["bench"])}
                                        for ev in layout["evaluations"]]
            stages.append(entry)
        cells.append({"label": cell["label"], "values": cell["values"], "stages": stages})
    summary = {"name": res.name, "unit": "percent", "benchmarks": benches, "cells": cells,
               "references": res.references, "missing": res.missing, "complete": not res.missing,
               "warnings": res.warnings}
    summary["best"] = best_cells(summary)
    summary["best_checkpoints"] = best_checkpoints(summary)
    return summary


def bench_entries(res: Results, bench_ids: dict[str, str]) -> dict[str, dict]:
    """Per benchmark: its bench job, whether it finished, and its metrics by name (empty until done)."""
    out = {}
    for b, jid in bench_ids.items():
        found = res.bench.get(jid)
        metrics = {m["name"]: {"value": m["value"], "stderr": m["stderr"]}
                   for m in found["metrics"].values()} if found else {}
        out[b] = {"job": jid, "done": found is not None, "metrics": metrics}
    return out


def evaluated_model(res: Results, bench_ids: dict[str, str]) -> str | None:
    """The model folder a stage's end (or the initial model) was benchmarked on, as its finished
    bench jobs recorded it (`results.json` `model`: the input job's folder); None before any finished."""
    for jid in bench_ids.values():
        found = res.bench.get(jid)
        if found is not None and found.get("model"):
            return f"{found['model']}/model"
    return None


def _metric_label(res: Results, bench: str, metric: str) -> str:
    """`avg@k` -> `avg@64` with the benchmark's k (from its job files, so before any job ran)."""
    return metric_name(metric, res.k[bench]) if bench in res.k else metric


def train_summary(res: Results, jid: str) -> dict[str, Any]:
    found = res.train.get(jid, {"rows": [], "done": None})
    rewards = [r["reward_mean"] for r in found["rows"] if isinstance(r.get("reward_mean"), (int, float))]
    done = found["done"]
    return {"job": jid, "done": done is not None,
            "steps": done.get("steps") if done else (found["rows"][-1].get("step") if found["rows"] else 0),
            "first_reward_mean": rewards[0] if rewards else None, "last_reward_mean": rewards[-1] if rewards else None}


def final_value(cell: dict, bench: str, metric: str) -> tuple[str, dict] | None:
    """The cell's score on `bench` at its last evaluated stage: (stage, {value, stderr}), if done."""
    for stage in reversed(cell["stages"]):
        entry = stage["benchmarks"].get(bench)
        if entry is not None:
            return (stage["stage"], entry["metrics"][metric]) if metric in entry["metrics"] else None
    return None


def best_cells(summary: dict[str, Any]) -> dict[str, dict]:
    """Per benchmark, the cell(s) with the highest headline metric at their last evaluated stage.
    `decisive` is false when every scored cell ties (nothing to highlight then)."""
    best = {}
    for b, info in summary["benchmarks"].items():
        scored = [(f[1]["value"], f, c["label"]) for c in summary["cells"]
                  if (f := final_value(c, b, info["headline"])) is not None]
        if not scored:
            continue
        top = max(v for v, _, _ in scored)
        winners = [(f, label) for v, f, label in scored if v == top]
        (stage, value), label = winners[0]
        best[b] = {"cell": label, "stage": stage, "metric": info["headline"], **value,
                   "ties": [{"cell": lb, "stage": f[0]} for f, lb in winners[1:]],
                   "decisive": len(winners) < len(scored)}
    return best
