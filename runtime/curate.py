"""`curate` job: a dataset's sources through its ordered filters -> a clean prompt set and its funnel.

What: reads every source of one spec dataset (`hf://`, local files, `builtin://` generators; see
`runtime/data/sources.py`), concatenates them in order, applies the dataset's filters in order
(`runtime/data/filters.py`: language, multipart, ..., decontaminate, pass_rate, validate_tests), and
writes to the job's output folder:
  prompts.parquet   the kept records in the normalised schema (`runtime/data/records.py`)
  funnel.json/.md   records in / kept / dropped per filter, reasons and dropped examples
  done.json         a small summary, written last (the workflow's declared output)

Why: the paper's data curation (shared/recipe.md) as one reproducible, content-addressed DAG job.

How: run by the compiled workflow from the build folder:
    python -m rlspec.runtime.curate --job jobs/curate/<id>.json --context context.json
A bad source, an unreadable benchmark or a filter that leaves nothing stops the job with exit code 1
and one line naming the dataset and the source or filter (the funnel so far is still written).
"""

from __future__ import annotations

import sys
import time

from rlspec.runtime.data import output
from rlspec.runtime.data.context import Context
from rlspec.runtime.data.funnel import CurateError
from rlspec.runtime.data.output import filter_and_write
from rlspec.runtime.data.sources import SourceError
from rlspec.runtime.job import Job, JobError, load_job, parse_args, spec_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args("curate", argv)
    start = time.perf_counter()
    try:
        job = load_job(args.job, "curate", args.context)
        output.start(job.output_dir)
        ctx = make_context(job)
        records, sources = read_sources(job, ctx)
        filter_and_write(job, ctx, records, sources, job.config.filters, start)
    except (JobError, CurateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def make_context(job: Job) -> Context:
    """What filters see: the seed, grading and sampling settings, the input models and the spec's
    folder (for relative paths)."""
    c = job.config
    return Context(dataset=c.dataset, domain=c.domain, seed=c.seed, grading=c.grading, inference=c.inference,
                   inputs=job.inputs, spec_dir=spec_dir(job))


def read_sources(job: Job, ctx: Context) -> tuple[list[dict], list[dict]]:
    """All sources' records in order (ids made unique across sources), and a count per source."""
    records: list[dict] = []
    counts: list[dict] = []
    seen: set[str] = set()
    for i, source in enumerate(job.config.sources):
        try:
            rows = ctx.read(source, ctx.domain, place=f"datasets.{ctx.dataset}.sources[{i}]")
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


if __name__ == "__main__":
    sys.exit(main())
