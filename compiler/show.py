"""Human-readable `rlspec plan` output (rich tables). Only formatting; the data comes from cli.plan_data."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _n(x: Any) -> str:
    if x is None:
        return "?"
    if isinstance(x, float):
        return f"{x:,.2f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _cells(job: dict, n_cells: int) -> str:
    if job["shared_by"] == n_cells and n_cells > 1:
        return f"all {n_cells}"
    if n_cells == 1:
        return "-"
    return f"{job['shared_by']}/{n_cells}: " + ", ".join(job["cells"][:3]) + (" ..." if job["shared_by"] > 3 else "")


def print_plan(data: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 140)
    n_cells = len(data["cells"])
    jobs = Table(title=f"{data['spec']}: {len(data['jobs'])} jobs for {n_cells} grid cell(s)", show_lines=False)
    for col in ("kind", "id", "job", "cells"):
        jobs.add_column(col)
    for job in data["jobs"]:
        jobs.add_row(job["kind"], job["id"], job["label"], _cells(job, n_cells))
    console.print(jobs)

    console.print(_budget_table(data["jobs"]))
    unknown = _not_estimated(data["jobs"])
    if unknown.row_count:
        console.print(unknown)

    tot = Table(title="totals (shared jobs counted once in the grid total)")
    for col in ("cell", "jobs", "rollout tokens", "GPU-h (est.)", "jobs without estimate", "CPU-only jobs"):
        tot.add_column(col, justify="right" if col != "cell" else "left")
    for label, t in data["totals"]["cells"].items():
        tot.add_row(label, _n(t["jobs"]), _n(t["rollout_tokens"]), _n(t["gpu_hours"]), _n(t["jobs_without_estimate"]),
                    _n(t["cpu_jobs"]))
    g = data["totals"]["grid"]
    tot.add_row("[b]grid[/b]", _n(g["jobs"]), _n(g["rollout_tokens"]), _n(g["gpu_hours"]), _n(g["jobs_without_estimate"]),
                _n(g["cpu_jobs"]))
    console.print(tot)


def _groups(jobs: list[dict]) -> list[tuple[str, list[dict]]]:
    """Jobs with an estimate, one row per job; the bench jobs of one benchmark (one estimate for every
    checkpoint) share a row."""
    rows: dict[str, list[dict]] = {}
    for job in jobs:
        if job["estimate"] is None:
            continue
        key = job["label"].split(" @ ")[0] if job["kind"] == "bench" else job["id"]
        rows.setdefault(key, []).append(job)
    return [(g[0]["label"] + f" [{g[0]['id'][:6]}]" if len(g) == 1 else f"{g[0]['label'].split(' @ ')[0]} "
             f"({len(g)} jobs)", g) for g in rows.values()]


def _budget_table(jobs: list[dict]) -> Table:
    budget = Table(title="rollout budget per job that samples (upper bound: every response at max length; "
                         "GPU-h at the mean length)")
    for col in ("job", "prompts/step", "group", "max resp", "steps", "rollout tokens", "GPU-h (est.)", "GPU-h each"):
        budget.add_column(col, justify="right" if col != "job" else "left")
    for label, group in _groups(jobs):
        est = group[0]["estimate"]
        sizes = "→".join(str(g) for g in est.get("group_size", [])) or "?"
        each = _n(est.get("gpu_hours")) if len(group) > 1 else ""
        total = None if est.get("gpu_hours") is None else est["gpu_hours"] * len(group)
        budget.add_row(label, _n(est.get("prompts_per_step")), sizes, _n(est.get("max_response_tokens")),
                       _n(est.get("steps")), _n(None if est.get("rollout_tokens") is None
                                                else est["rollout_tokens"] * len(group)), _n(total), each)
    return budget


def _not_estimated(jobs: list[dict]) -> Table:
    """Every job without GPU-hours, with why: a size the spec does not give (what to set), a kind with
    no budget on GPUs, or CPU only (no GPU-hours at all); and lower bounds, with why."""
    table = Table(title="jobs without a GPU-hour estimate, and estimates that are bounds")
    for col in ("job", "why"):
        table.add_column(col)
    reasons: dict[str, list[str]] = {}
    for job in jobs:
        est = job["estimate"]
        if est is None:
            why = ("CPU only: no GPU-hours" if job["resources"]["gpus"] == 0
                   else f"not estimated: {job['kind']} jobs have no GPU-hour model")
        elif est.get("note"):
            why = est["note"] if est.get("gpu_hours") is not None else f"not estimated: {est['note']}"
        else:
            continue
        reasons.setdefault(why, []).append(job["label"])
    for why, labels in reasons.items():
        shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
        table.add_row(shown, why)
    return table
