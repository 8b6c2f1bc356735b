"""`sample` job: pass-rate samples of one model on a dataset's items, shared by every dataset that asks.

What: reads the records of the job's `sources` (as `curate` reads them), or, when `sources` is [],
the records of input `upstream` (an earlier `sample` job of the same chain); runs `filters` (the
dataset's filters up to this pass rate, the same funnel code as `curate`); samples `sampling.k`
responses per record from the model of input role `sampling.model` (`policy`: the initial model,
`teacher`: a fetched one), grades them, and writes on every record what was measured
(`meta.pass_rate`: policy, k, correct, rate, majority_ok, correct_tokens) or why it could not be
sampled (`unsampled`: its prompt does not fit). It drops nothing after its filters and applies no
thresholds. Writes `prompts.parquet`, `funnel.json`/`.md` (the filters and a "sampled" step) and,
last, `done.json`.

Why: pass-rate samples of a teacher (DeepSeek-R1 for AceReason's code and math) are the most
expensive curation step; the job carries no dataset name and no thresholds, so it is
content-addressed by (items, filters, model, sampling, engine) and datasets that differ only in
their thresholds (the 7B spec's `code` and `code-capped`) share one run. Each dataset's `curate`
job (or the next `sample` job) applies its own thresholds to the measurement (`PassRateCut`).

How: run by the compiled workflow from the build folder:
    python -m rlspec.runtime.sample --job jobs/sample/<id>.json --context context.json
Outputs are written as `curate` writes them (`runtime/data/output.py`: old outputs removed first,
done.json last), so a killed job leaves nothing complete-looking. Errors name the job's label.
"""

from __future__ import annotations

import sys
import time

from rlspec.runtime.data import output, passrate
from rlspec.runtime.data.context import Context, FilterError
from rlspec.runtime.data.funnel import CurateError, Funnel, sampled_step
from rlspec.runtime.job import Job, JobError, load_job, parse_args, spec_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args("sample", argv)
    start = time.perf_counter()
    try:
        job = load_job(args.job, "sample", args.context)
        output.start(job.output_dir)
        ctx = make_context(job)
        records, funnel = output.read_input(job, ctx)
        records, funnel = output.filter_records(job, ctx, records, funnel, job.config.filters)
        funnel, unsampled = measure(job, ctx, records, funnel)
        output.finish(job, ctx, records, funnel, start, {"sampled": len(records) - unsampled, "unsampled": unsampled})
    except (JobError, CurateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def make_context(job: Job) -> Context:
    """What the filters and the sampling see. The job serves several datasets, so errors and the
    funnel name it by its label ("sample <model> k=<k> on <datasets>")."""
    c = job.config
    return Context(dataset=job.label, domain=c.domain, seed=c.seed, grading=c.grading, inference=c.inference,
                   replicas=c.replicas, inputs=job.inputs, spec_dir=spec_dir(job))


def measure(job: Job, ctx: Context, records: list[dict], funnel: Funnel) -> tuple[Funnel, int]:
    """Sample and grade every record, write the measurement on it; the funnel gains a "sampled"
    step and the count of records that could not be sampled is returned."""
    t0 = time.perf_counter()
    try:
        results = passrate.sample(records, job.config.sampling, ctx)
    except FilterError as exc:
        message = f"{job.label}, sampling {job.config.sampling.model!r}: {exc}"
        output.write_failed(job, ctx, funnel, message)
        raise CurateError(message) from None
    step = sampled_step(funnel, len(records), time.perf_counter() - t0)
    return funnel.then([step]), sum(isinstance(m, str) for m in results)


if __name__ == "__main__":
    sys.exit(main())
