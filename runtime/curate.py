"""`curate` job: a dataset's records through its ordered filters -> a clean prompt set and its funnel.

What: reads every source of one spec dataset (`hf://`, local files, `builtin://` generators; see
`runtime/data/sources.py`), concatenates them in order, applies the dataset's filters in order
(`runtime/data/filters.py`: language, multipart, ..., decontaminate, validate_tests), and writes to
the job's output folder:
  prompts.parquet   the kept records in the normalised schema (`runtime/data/records.py`)
  funnel.json/.md   records in / kept / dropped per filter, reasons and dropped examples
  done.json         a small summary, written last (the workflow's declared output)
A dataset with a `pass_rate` filter starts instead from its last `sample` job (input `upstream`,
`sources: []`): that job ran the filters before the pass rate and measured every record; this job
applies the thresholds (`PassRateCut`) and the filters after them, and its funnel shows the whole
chain, the sample job's steps first, numbered as the dataset's filters are.

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
from rlspec.runtime.job import Job, JobError, load_job, parse_args, spec_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args("curate", argv)
    start = time.perf_counter()
    try:
        job = load_job(args.job, "curate", args.context)
        output.start(job.output_dir)
        ctx = make_context(job)
        records, funnel = output.read_input(job, ctx)
        records, funnel = output.filter_records(job, ctx, records, funnel, job.config.filters)
        output.finish(job, ctx, records, funnel, start, {})
    except (JobError, CurateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def make_context(job: Job) -> Context:
    """What filters see: the seed, grading settings, the input models and the spec's folder (for
    relative paths). No sampling: a pass rate was measured upstream, in a `sample` job."""
    c = job.config
    return Context(dataset=c.dataset, domain=c.domain, seed=c.seed, grading=c.grading, inference=None,
                   inputs=job.inputs, spec_dir=spec_dir(job))


if __name__ == "__main__":
    sys.exit(main())
