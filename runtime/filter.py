"""`filter` job: a stage's hard-prompt filter, run with the policy entering the stage.

What: reads the prompts of the stage's datasets (the `prompts.parquet` of each input curate job),
samples k responses per prompt from the current policy, grades them, and keeps prompts whose pass
rate is in [min, max] (AceReason: drop prompts solved more than 6 of 16 times before the 24K and
32K stages). Writes `prompts.parquet` (same schema, `meta.pass_rate` added), `funnel.json`,
`funnel.md` and, last, `done.json` into its output folder.

Why: the paper's later stages train only on what the current policy still finds hard; the filter
is a DAG job of its own so its (expensive) result is cached and shared like any other job.

How: the same `pass_rate` code as curation (`runtime/data/passrate.py`), so "solved" means what it
means to the trainer. Run by the compiled workflow from the build folder:
    python -m rlspec.runtime.filter --job jobs/filter/<id>.json --context context.json
The policy is `<inputs.policy>/model`: the previous train job's, or for the first stage the
`model` job's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rlspec.runtime.data import output
from rlspec.runtime.data.context import Context
from rlspec.runtime.data.funnel import CurateError, Funnel
from rlspec.runtime.data.records import read_prompts
from rlspec.runtime.job import Job, JobError, load_job, parse_args, spec_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args("filter", argv)
    start = time.perf_counter()
    try:
        job = load_job(args.job, "filter", args.context)
        output.start(job.output_dir)
        records, sources, names = read_data(job)
        c = job.config
        ctx = Context(dataset=f"{'+'.join(names)} before {c.stage}", domain="+".join(sorted({r["domain"] for r in records})), seed=c.seed,
                      grading=c.grading, inference=c.inference, replicas=c.replicas, inputs=job.inputs,
                      spec_dir=spec_dir(job))
        records, funnel = output.filter_records(job, ctx, records, Funnel(sources, []), [c.pass_rate])
        output.finish(job, ctx, records, funnel, start, {})
    except (JobError, CurateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def read_data(job: Job) -> tuple[list[dict], list[dict], list[str]]:
    """The prompts of every finished input data job, with a count per input and the dataset names."""
    records, sources, names = [], [], []
    for folder in map(Path, job.inputs["data"]):
        done = folder / "done.json"
        if not done.is_file():
            raise CurateError(f"{job.label}: input {folder} has not finished (no done.json); run its job first")
        rows = read_prompts(folder / "prompts.parquet")
        names.append(json.loads(done.read_text(encoding="utf-8")).get("dataset", folder.name))
        records += rows
        sources.append({"uri": str(folder / "prompts.parquet"), "records": len(rows)})
    return records, sources, names


if __name__ == "__main__":
    sys.exit(main())
