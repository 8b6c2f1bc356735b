"""`report` job and `rlspec report BUILD`: tables and figures across the grid, readable offline.

What: reads whatever results a build folder holds and writes one report folder:
  index.html      results table (grid cell x stage x benchmark, with standard errors; best cell
                  highlighted; the paper's numbers as reference rows), the best checkpoint per
                  benchmark over the whole run (snapshots inside stages from `evaluate_every`
                  included: cell, stage, step, value ± stderr, model folder), training summary,
                  figures, a sample browser (the train jobs' rollouts, filtered by outcome and
                  stage), curation funnels, and the list of jobs that have not finished
  README.md       the same in Markdown (sample counts per stage and outcome instead of the browser)
  summary.json    per cell, per stage (the initial model included) and per snapshot inside a stage,
                  per benchmark: metric, value, stderr; per training stage: steps and first/last
                  reward mean; the best cell and the best checkpoint per benchmark
  figures/*.png   training curves (reward, pass rate, response length, truncation, entropy,
                  temperature) with stage boundaries, one line per cell; benchmark score per stage;
                  benchmark score at every evaluated checkpoint against the step, stage boundaries
                  marked; one funnel per curated dataset; per grid axis the final score against the
                  axis value
When the spec's tracking is on, the same tables go to W&B as `wandb.Table`s and the figures as
images, in one summary run (group: the spec's `tracking.group` with `{cell}` = `summary`).

Why: a grid of RL runs is only useful if its outcome can be read in one place, before and after
every stage, and a half-finished grid should already show what it has.

How: the compiled workflow's last job runs
    python -m rlspec.runtime.report --job jobs/report/<id>.json --context context.json
and writes into its output folder (done.json last), then refreshes `report/` in the build folder.
At any time, `rlspec report build/NAME` writes `build/NAME/report/` from what exists so far;
a job that has not finished (no done.json) is listed as missing instead of failing the report.
This file is the program (arguments, the job, the pipeline, publishing); each step is a library in
`runtime/reporting/`: collect -> summary -> figures -> render -> tracking_summary.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from rlspec.runtime.atomic import replace_dir_atomic, temp_path, write_json_atomic
from rlspec.runtime.job import Job, JobError, load_job, parse_args
from rlspec.runtime.reporting.collect import collect
from rlspec.runtime.reporting.figures import draw_figures
from rlspec.runtime.reporting.render import write_pages
from rlspec.runtime.reporting.summary import summarise
from rlspec.runtime.reporting.tracking_summary import log_summary_run


class ReportError(Exception):
    """A build folder the report cannot read at all (no report job, unreadable context)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args("report", argv)
    try:
        job = load_job(args.job, "report", args.context)
        (job.output_dir / "done.json").unlink(missing_ok=True)  # first, so a killed rerun looks unfinished
        shutil.rmtree(job.output_dir, ignore_errors=True)  # no figures left over from an earlier run
        summary = write_report(job, Path.cwd(), job.output_dir, wandb_run=True)
        publish(job.output_dir, Path.cwd() / "report")
        write_json_atomic(job.output_dir / "done.json", {"complete": summary["complete"],
                                                         "missing": len(summary["missing"])})
    except (JobError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"report: {job.output_dir}/index.html (also report/index.html); {status_line(summary)}")
    return 0


def report_build(build: str | Path, out: str | Path | None = None, *, wandb_run: bool = False) -> dict[str, Any]:
    """`rlspec report BUILD`: write BUILD/report/ (or `out`) from the results that exist now."""
    build = Path(build)
    job = find_report_job(build)
    target = Path(out) if out else build / "report"
    staging = temp_path(target)
    shutil.rmtree(staging, ignore_errors=True)
    summary = write_report(job, build, staging, wandb_run=wandb_run)
    replace_dir_atomic(staging, target)
    return summary


def write_report(job: Job, build: Path, out: Path, *, wandb_run: bool) -> dict[str, Any]:
    """The pipeline of both entry points: collect the results, sum them up, draw, write the pages,
    log to W&B. The only place the report reads its job: the libraries get plain values."""
    cfg = job.config
    labels = {jid: j.get("label", jid) for jid, j in job.context.get("jobs", {}).items()}
    # the grid layout is data the report tabulates (and writes to summary.json), so it goes in as rows
    results = collect(build, job.inputs["jobs"], name=cfg.name, cells=[c.model_dump(mode="json") for c in cfg.cells],
                      metrics=cfg.metrics, labels=labels,
                      references={b: [r.model_dump(mode="json") for r in refs] for b, refs in cfg.references.items()})
    summary = summarise(results)
    out.mkdir(parents=True, exist_ok=True)
    summary["figures"] = draw_figures(results, summary, out / "figures")
    write_pages(out, results, summary)
    if wandb_run:
        log_summary_run(job.context.get("tracking") or {}, summary, out, build)
    return summary


def publish(src: Path, target: Path) -> None:
    """Copy a finished report folder to `target` (the build folder's report/) and swap it in, so a
    reader sees the old report or the new one, never a mix. done.json and W&B files stay behind:
    they belong to the job's output folder."""
    staging = temp_path(target)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging, ignore=shutil.ignore_patterns("done.json", "wandb"))
    replace_dir_atomic(staging, target)


def status_line(summary: dict[str, Any]) -> str:
    missing = summary["missing"]
    return "all jobs finished" if not missing else f"{len(missing)} job(s) not finished yet (listed in the report)"


def find_report_job(build: Path) -> Job:
    context = build / "context.json"
    if not context.is_file():
        raise ReportError(f"{build}: not a build folder (no context.json); compile a spec first: "
                          "`rlspec compile SPEC.yaml`")
    try:
        jobs = json.loads(context.read_text(encoding="utf-8")).get("jobs", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{context}: unreadable ({exc}); recompile the spec") from None
    ids = [jid for jid, j in jobs.items() if j.get("kind") == "report"]
    if len(ids) != 1:
        raise ReportError(f"{context}: expected one report job, found {len(ids)}; recompile the spec")
    try:
        return load_job(build / "jobs" / "report" / f"{ids[0]}.json", "report", context)
    except JobError as exc:
        raise ReportError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
