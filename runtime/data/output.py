"""A data job's files (curate, sample, filter): reading its records, writing its outputs in the
order that keeps a killed job harmless.

What: `read_input(job, ctx)` gives the records a `curate` or `sample` job starts from and the funnel
so far: its `sources` read in order (ids made unique across sources), or, when `sources` is [], the
`prompts.parquet` and `funnel.json` of its input `upstream` (a `sample` job). `start(out_dir)`
removes a previous run's outputs; `filter_records` runs the job's filters after that funnel;
`finish(...)` writes `prompts.parquet`, `funnel.json`, `funnel.md` and, last, `done.json`
(Snakemake's declared output, a small summary). `write_funnel` alone is used when a job fails, so
the user can read how far it got.

Why: every file is written under a temporary name and renamed, so a reader never sees half a
file; and `done.json` comes last, so a job killed at any point leaves no `done.json` and no
complete-looking `prompts.parquet` from this run. A job reads an upstream job's outputs only once
its `done.json` exists.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlspec.runtime.atomic import write_json_atomic, write_text_atomic

from .context import Context
from .funnel import SAMPLED, CurateError, Funnel, Step, apply_filters, funnel_json, funnel_markdown
from .records import read_prompts, write_prompts
from .sources import SourceError

if TYPE_CHECKING:
    from rlspec.runtime.job import Job


OUTPUTS = ("done.json", "prompts.parquet", "funnel.json", "funnel.md")


def start(out_dir: Path) -> None:
    """Remove a previous run's outputs, done.json first: nothing old may pass for this run's result."""
    for name in OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def read_input(job: Job, ctx: Context) -> tuple[list[dict], Funnel]:
    """The records a curate/sample job starts from: its sources, or its `upstream` job's records."""
    if job.config.sources:
        records, counts = read_sources(job, ctx)
        return records, Funnel(counts, [])
    return read_upstream(job)


def read_sources(job: Job, ctx: Context) -> tuple[list[dict], list[dict]]:
    """All sources' records in order (ids made unique across sources), and a count per source."""
    records: list[dict] = []
    counts: list[dict] = []
    seen: set[str] = set()
    for i, source in enumerate(job.config.sources):
        # a curate job names the spec's line; a sample job serves several datasets (its label names them)
        place = f"datasets.{ctx.dataset}.sources[{i}]" if job.kind == "curate" else f"sources[{i}]"
        try:
            rows = ctx.read(source, ctx.domain, place=place)
        except SourceError as exc:
            raise CurateError(f"dataset {ctx.dataset!r}, source {i + 1}: {exc}") from None
        for r in rows:
            if r["id"] in seen:  # two sources may number their rows the same way
                r["id"] = f"{r['id']}#{i + 1}"
            seen.add(r["id"])
        records += rows
        counts.append({"uri": source.uri, "records": len(rows)})
    if not records:
        raise CurateError(f"dataset {ctx.dataset!r}: its sources hold no records ({counts}); check the uris and splits")
    return records, counts


def read_upstream(job: Job) -> tuple[list[dict], Funnel]:
    """Input `upstream`'s records and its funnel, which this job's steps continue."""
    if "upstream" not in job.inputs:
        raise CurateError(f"{job.label}: the job has no sources and no `upstream` input; "
                          "recompile with `rlspec compile`")
    folder = Path(job.inputs["upstream"])
    if not (folder / "done.json").is_file():
        raise CurateError(f"{job.label}: input {folder} has not finished (no done.json); run its job first")
    try:
        doc = json.loads((folder / "funnel.json").read_text(encoding="utf-8"))
        steps = [Step(**s) for s in doc["steps"]]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CurateError(f"{job.label}: input {folder}/funnel.json is unreadable ({type(exc).__name__}: {exc}); "
                          "rerun its job") from None
    if not steps or steps[-1].filter != SAMPLED:
        raise CurateError(f"{job.label}: input {folder} is not a `sample` job's output (its funnel does not end "
                          f"with a {SAMPLED!r} step); recompile with `rlspec compile`")
    return read_prompts(folder / "prompts.parquet"), Funnel(doc["sources"], steps)


# ----------------------------------------------------------------------------------------------
# filtering and writing
# ----------------------------------------------------------------------------------------------


def filter_records(job: Job, ctx: Context, records: list[dict], funnel: Funnel,
                   filters: list) -> tuple[list[dict], Funnel]:
    """Apply the filters after `funnel`; on failure the funnel so far is written, then re-raised."""
    try:
        kept, steps = apply_filters(records, filters, ctx, funnel.next_filter_index())
    except CurateError as exc:
        write_failed(job, ctx, funnel.then(exc.steps), str(exc))
        raise
    return kept, funnel.then(steps)


def write_failed(job: Job, ctx: Context, funnel: Funnel, error: str) -> None:
    write_funnel(job.output_dir, funnel_json(ctx.dataset, ctx.domain, funnel.sources, funnel.steps, 0, error))


def write_funnel(out_dir: Path, funnel: dict[str, Any]) -> None:
    write_json_atomic(out_dir / "funnel.json", funnel)
    write_text_atomic(out_dir / "funnel.md", funnel_markdown(funnel))


def finish(job: Job, ctx: Context, records: list[dict], funnel: Funnel, start: float,
           summary: dict[str, Any]) -> None:
    """prompts.parquet, funnel.json/.md, then done.json (`summary` adds job-specific counts)."""
    doc = funnel_json(ctx.dataset, ctx.domain, funnel.sources, funnel.steps, len(records))
    domains = sorted({r["domain"] for r in records})
    write_prompts(job.output_dir / "prompts.parquet", records, domains)
    write_funnel(job.output_dir, doc)
    write_json_atomic(job.output_dir / "done.json", {
        "kind": job.kind, "id": job.id, "label": job.label, "dataset": ctx.dataset, "input": funnel.input,
        "seconds": round(time.perf_counter() - start, 2), **summary, "records": len(records), "domains": domains})
    print(f"{job.label}: {funnel.input} records in, {len(records)} kept -> {job.output_dir}/prompts.parquet")
