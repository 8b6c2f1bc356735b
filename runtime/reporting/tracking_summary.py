"""The report's W&B summary run: the results and training tables and the figures, in one run.

What: `log_summary_run(tracking, summary, out, build)` logs `wandb.Table`s of the tables the
pages show, the figures as images, and per benchmark the best cell in the run summary. The run's
group is the spec's `tracking.group` with `{cell}` = `summary`: by default (`{name}`) the group
of the grid's train and bench runs.

Why: a grid's per-job runs are many; one summary run puts the outcome where the W&B user looks.

How: does nothing unless the tracking settings (the build context's `tracking` block, read as
the spec's `Tracking` model) name the wandb backend and a mode other than disabled; a W&B failure prints a warning and does not fail the report, whose files on disk
are complete without it. Per-job runs are `runtime/tracking.py`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rlspec.runtime.reporting.render import result_rows, train_rows
from rlspec.runtime.tracking import group_name, tracking_settings


def log_summary_run(tracking: dict[str, Any], summary: dict[str, Any], out: Path, build: Path) -> None:
    """One summary run with the tables and figures; a W&B failure is reported, not fatal, because
    the report on disk is complete without it. `tracking` is the build context's tracking block,
    `out` the report folder the figure paths are relative to, `build` where W&B keeps its files."""
    settings = tracking_settings(tracking)
    if settings is None:
        return
    try:
        import wandb
        run = wandb.init(project=settings.project, entity=settings.entity, mode=settings.mode,
                         group=group_name(settings, summary["name"], "summary"), name=f"{summary['name']} report",
                         job_type="report", tags=["report", *settings.tags], dir=str(build),
                         config={"cells": [{"label": c["label"], **c["values"]} for c in summary["cells"]]},
                         settings=wandb.Settings(silent=True, init_timeout=90))
        header, rows = result_rows(summary)
        theader, trows = train_rows(summary)
        run.log({"results": wandb.Table(columns=header, data=[r["cells"] for r in rows]),
                 "training": wandb.Table(columns=theader, data=trows),
                 **{f"figures/{Path(f).stem}": wandb.Image(str(out / f)) for f in summary["figures"]}})
        for b, win in summary["best"].items():
            run.summary[f"best/{b}/{win['metric']}"] = win["value"]
            run.summary[f"best/{b}/cell"] = win["cell"]
        run.summary["complete"] = summary["complete"]
        run.finish()
    except Exception as exc:  # network, auth or disk trouble in W&B must not lose the local report
        print(f"warning: W&B summary run not written ({type(exc).__name__}: {exc})", file=sys.stderr)
