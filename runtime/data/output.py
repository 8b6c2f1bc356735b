"""Writing a data job's outputs (curate, filter) in the order that keeps a killed job harmless.

What: `start(out_dir)` removes a previous run's outputs; `finish(...)` writes `prompts.parquet`,
`funnel.json`, `funnel.md` and, last, `done.json` (Snakemake's declared output, a small summary).
`write_funnel` alone is used when a job fails, so the user can read how far it got.

Why: every file is written under a temporary name and renamed, so a reader never sees half a
file; and `done.json` comes last, so a job killed at any point leaves no `done.json` and no
complete-looking `prompts.parquet` from this run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlspec.runtime.atomic import write_json_atomic, write_text_atomic

from .context import Context
from .funnel import CurateError, apply_filters, funnel_json, funnel_markdown
from .records import write_prompts

if TYPE_CHECKING:
    from rlspec.runtime.job import Job


OUTPUTS = ("done.json", "prompts.parquet", "funnel.json", "funnel.md")


def start(out_dir: Path) -> None:
    """Remove a previous run's outputs, done.json first: nothing old may pass for this run's result."""
    for name in OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def write_funnel(out_dir: Path, funnel: dict[str, Any]) -> None:
    write_json_atomic(out_dir / "funnel.json", funnel)
    write_text_atomic(out_dir / "funnel.md", funnel_markdown(funnel))


def finish(out_dir: Path, records: list[dict], funnel: dict[str, Any], summary: dict[str, Any]) -> None:
    domains = sorted({r["domain"] for r in records})
    write_prompts(out_dir / "prompts.parquet", records, domains)
    write_funnel(out_dir, funnel)
    write_json_atomic(out_dir / "done.json", {**summary, "records": len(records), "domains": domains})


def filter_and_write(job: Job, ctx: Context, records: list[dict], sources: list[dict], filters: list,
                     start: float) -> None:
    """Apply the filters and write every output; on failure the funnel so far is still written."""
    try:
        records, steps = apply_filters(records, filters, ctx)
    except CurateError as exc:
        write_funnel(job.output_dir, funnel_json(ctx.dataset, ctx.domain, sources, exc.steps, 0, str(exc)))
        raise
    funnel = funnel_json(ctx.dataset, ctx.domain, sources, steps, len(records))
    summary = {"kind": job.kind, "id": job.id, "label": job.label, "dataset": ctx.dataset, "input": funnel["input"],
               "seconds": round(time.perf_counter() - start, 2)}
    finish(job.output_dir, records, funnel, summary)
    print(f"{job.label}: {funnel['input']} records in, {len(records)} kept -> {job.output_dir}/prompts.parquet")
