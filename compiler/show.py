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

    budget = Table(title="rollout budget per train/filter job (upper bound: every response at max length)")
    for col in ("job", "prompts/step", "group", "max resp", "steps", "rollout tokens", "GPU-h (est.)"):
        budget.add_column(col, justify="right" if col != "job" else "left")
    for job in data["jobs"]:
        est = job["estimate"]
        if est is None:
            continue
        group = "→".join(str(g) for g in est.get("group_size", [])) or "?"
        budget.add_row(job["label"] + f" [{job['id'][:6]}]", _n(est.get("prompts_per_step")), group,
                       _n(est.get("max_response_tokens")), _n(est.get("steps")), _n(est.get("rollout_tokens")),
                       _n(est.get("gpu_hours")))
    console.print(budget)

    tot = Table(title="totals (shared jobs counted once in the grid total)")
    for col in ("cell", "jobs", "rollout tokens", "GPU-h (est.)", "jobs without estimate"):
        tot.add_column(col, justify="right" if col != "cell" else "left")
    for label, t in data["totals"]["cells"].items():
        tot.add_row(label, _n(t["jobs"]), _n(t["rollout_tokens"]), _n(t["gpu_hours"]), _n(t["jobs_without_estimate"]))
    g = data["totals"]["grid"]
    tot.add_row("[b]grid[/b]", _n(g["jobs"]), _n(g["rollout_tokens"]), _n(g["gpu_hours"]), _n(g["jobs_without_estimate"]))
    console.print(tot)
