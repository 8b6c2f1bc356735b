"""`rlspec`: check, plan, compile and run experiment specs.

    rlspec check SPEC.yaml            validate; every problem as FILE:LINE:COL path: message
    (check, plan, compile and run take `--set PATH=VALUE`, repeatable: `--set seed=2
     --set stages[math-8k].steps=10`; values are YAML, paths the grid's, recorded in the manifest)
    rlspec schema                     JSON Schema of the spec language
    rlspec plan SPEC.yaml [--json]    the job DAG, shared jobs, rollout budget, GPU-hours and memory per GPU
    rlspec compile SPEC.yaml [-o DIR] write the build folder (default build/<name>)
    rlspec run SPEC.yaml [--profile local|slurm|PATH] [--cores N] [--dry-run] [-- SNAKEMAKE ARGS]
    rlspec report BUILD_DIR [-o DIR] [--wandb]   tables and figures from the results so far

Exit codes: 0 ok, 1 the spec (or the run) has errors, 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import memory
from .errors import SpecError
from .jobs import BenchJob, FilterJob, SampleJob, TrainJob
from .plan import Plan, PlannedJob, build_plan, totals
from .render import render, write_build
from .spec import Spec
from .validate import Checked, check_file


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = _parser().parse_args(argv)
    try:
        return args.func(args, extra)
    except SpecError as exc:
        _print_issues(exc)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlspec", description="Declarative RL experiments for reasoning models.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate a spec; print every problem with its file:line")
    c.add_argument("spec")
    _add_set(c)
    c.set_defaults(func=cmd_check)
    s = sub.add_parser("schema", help="print the JSON Schema of the spec language")
    s.set_defaults(func=cmd_schema)
    pl = sub.add_parser("plan", help="show the expanded job DAG and the rollout budget")
    pl.add_argument("spec")
    _add_set(pl)
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")
    pl.set_defaults(func=cmd_plan)
    co = sub.add_parser("compile", help="write the build folder (Snakefile, rules, one JSON per job, manifest)")
    co.add_argument("spec")
    _add_set(co)
    co.add_argument("-o", "--out", help="build folder (default: build/<spec name>)")
    co.set_defaults(func=cmd_compile)
    r = sub.add_parser("run", help="compile, then run the workflow with Snakemake",
                       description="Compile, then run the workflow with Snakemake. Arguments after `--` go to Snakemake.")
    r.add_argument("spec")
    _add_set(r)
    r.add_argument("-o", "--out", help="build folder (default: build/<spec name>)")
    r.add_argument("--profile", default="local", help="local, slurm, or a Snakemake profile folder (default: local)")
    r.add_argument("--cores", type=int, default=None, help="cores for local execution (default: all)")
    r.add_argument("--dry-run", "-n", action="store_true", help="list the jobs that would run; run nothing")
    r.set_defaults(func=cmd_run)
    rp = sub.add_parser("report", help="write BUILD_DIR/report/ (HTML, Markdown, JSON, figures) from results so far",
                        description="Write the report of a build folder from whatever results exist; jobs that have "
                                    "not finished are listed as missing.")
    rp.add_argument("build", help="the build folder, e.g. build/<spec name>")
    rp.add_argument("-o", "--out", help="report folder (default: BUILD_DIR/report)")
    rp.add_argument("--wandb", action="store_true", help="also log a W&B summary run when the spec's tracking is on "
                                                         "(the workflow's report job always does)")
    rp.set_defaults(func=cmd_report)
    return p


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="override one spec value for this command (the grid's path syntax, a YAML value; "
                             "repeatable), e.g. --set seed=2 --set stages[math-8k].steps=10")


def _print_issues(exc: SpecError) -> None:
    errors = len(exc.errors)
    print(exc.render(), file=sys.stderr)
    print(f"{errors} error{'s' if errors != 1 else ''}", file=sys.stderr)


def _checked(spec: str, overrides: list[str] | None = None) -> Checked:
    checked = check_file(spec, overrides=overrides or [])
    for w in checked.warnings:
        print(w.render(), file=sys.stderr)
    return checked


def cmd_check(args, extra) -> int:
    checked = _checked(args.spec, args.set)
    cells = len(checked.cells)
    print(f"{args.spec}: ok ({cells} grid cell{'s' if cells != 1 else ''}, {len(checked.warnings)} warning{'s' if len(checked.warnings) != 1 else ''})")
    return 0


def cmd_schema(args, extra) -> int:
    from .schema import spec_schema
    print(json.dumps(spec_schema(), indent=2, sort_keys=True))
    return 0


def cmd_plan(args, extra) -> int:
    checked = _checked(args.spec, args.set)
    plan = build_plan(checked.cells, Path(args.spec).parent)
    data = plan_data(plan, Path(args.spec).parent)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        from .show import print_plan
        print_plan(data)
        _print_memory(data)
    return 0


def plan_data(plan: Plan, spec_dir: Path) -> dict:
    labels = {cj.cell.index: cj.cell.label for cj in plan.cells}
    specs = {cj.cell.index: cj.cell.spec for cj in plan.cells}
    jobs = []
    for job in plan.jobs.values():
        jobs.append({"kind": job.kind, "id": job.id, "label": job.label, "needs": job.input_ids(),
                     "cells": [labels[c] for c in job.cells], "shared_by": len(job.cells),
                     "resources": job.resources, "estimate": job.estimate,
                     "memory": job_memory(job, specs[job.cells[0]], spec_dir, plan)})
    counts = {k: sum(1 for j in jobs if j["kind"] == k) for k in dict.fromkeys(j["kind"] for j in jobs)}
    return {"spec": plan.spec_name, "cells": [labels[c] for c in sorted(labels)], "jobs": jobs,
            "job_counts": counts, "totals": totals(plan)}


def job_memory(job: PlannedJob, spec: Spec, spec_dir: Path, plan: Plan) -> dict | None:
    """The memory estimate per GPU of a train, filter, bench or sample job (`compiler/memory.py`), from
    the spec of the first cell that needs it (resources are not part of a job's id); None for other kinds."""
    config = job.config
    if isinstance(config, TrainJob):
        stage = next(s for s in spec.stages if s.name == config.stage)
        inputs = memory.stage_train(spec, stage, config.ranks, spec_dir)
    elif isinstance(config, FilterJob):
        inputs = memory.stage_filter(spec, next(s for s in spec.stages if s.name == config.stage), spec_dir)
    elif isinstance(config, BenchJob):
        inputs = memory.benchmark_engine(spec, config.benchmark, spec_dir)
    elif isinstance(config, SampleJob):
        teacher = (plan.jobs[job.inputs["teacher"]].config.build.model.name  # type: ignore[union-attr]
                   if config.sampling.model == "teacher" else None)
        inputs = memory.sample_engine(spec, config, teacher, spec_dir)
    else:
        return None
    return memory.estimate(inputs).as_json()


def _print_memory(data: dict) -> None:
    """The plan's memory table: one row per train and filter job, one per group of bench jobs with
    the same estimate. Formatting only (the numbers are plan_data's)."""
    from rich.console import Console
    from rich.table import Table
    table = Table(title="memory per GPU (GiB, estimated before launch; docs/memory.md)")
    for col in ("job", "per GPU", "GPU", "fits", "largest parts", "vLLM KV cache", "with sleep mode"):
        table.add_column(col, justify="left" if col in ("job", "largest parts") else "right")
    for label, mem in _memory_rows(data["jobs"]):
        if not mem["estimated"]:
            table.add_row(label, "-", "-", "?", f"not estimated: {mem['reason']}", "-", "-")
            continue
        parts = sorted(mem["parts_gib"].items(), key=lambda kv: -kv[1])
        shown = " + ".join(f"{k} {v:.1f}" for k, v in parts[:3])
        engine = mem["details"].get("rollout", mem["details"])
        kv = (f"{engine['kv_cache_gib']:.1f} ({engine['full_length_sequences_at_once']} seqs)"
              if engine.get("engine") == "vllm" else "-")
        sleep = mem.get("per_gpu_with_sleep_mode_gib")
        table.add_row(label, f"{mem['per_gpu_gib']:.1f}", f"{mem['gpu_mem_gb']:g}", "yes" if mem["fits"] else "NO",
                      shown, kv, "-" if sleep is None else f"{sleep:.1f}")
    Console(width=None if Console().is_terminal else 160).print(table)


def _memory_rows(jobs: list[dict]) -> list[tuple[str, dict]]:
    """(label, memory) per train/filter job; bench jobs with the same estimate, and jobs not
    estimated for the same reason, share one row."""
    rows: dict[str, list] = {}
    for job in jobs:
        mem = job["memory"]
        if mem is None:
            continue
        key = (job["label"] if job["kind"] != "bench" else json.dumps(mem, sort_keys=True)) if mem["estimated"] \
            else mem["reason"]
        rows.setdefault(key, []).append(job)
    out = []
    for group in rows.values():
        first = group[0]
        label = first["label"] if len(group) == 1 else f"{len(group)} jobs ({first['label']}, ...)"
        out.append((label, first["memory"]))
    return out


def default_out(checked: Checked) -> Path:
    return Path("build") / checked.cells[0].spec.name


def compile_spec(spec: str, out: str | None, overrides: list[str] | None = None) -> tuple[Checked, Plan, Path, dict]:
    from .provenance import provenance
    from .render import package_version
    checked = _checked(spec, overrides)
    plan = build_plan(checked.cells, Path(spec).parent)
    files = render(checked, plan, spec_file=spec, provenance=provenance(spec, overrides or [], package_version()))
    target = Path(out) if out else default_out(checked)
    counts = write_build(files, target)
    return checked, plan, target, counts


def cmd_compile(args, extra) -> int:
    checked, plan, target, counts = compile_spec(args.spec, args.out, args.set)
    print(f"compiled {args.spec} -> {target}/ ({len(checked.cells)} cells, {len(plan.jobs)} jobs; "
          f"{counts['written']} files written, {counts['unchanged']} unchanged, {counts['removed']} removed)")
    return 0


def refuse_multi_node_locally(spec: str, checked: Checked, profile: str) -> None:
    """A job of several nodes (a train job's torchrun per node, an inference job's replicas on other
    nodes) starts its other nodes' processes through `srun` in a Slurm allocation; the local profile
    would start them all on this machine. Located at the `nodes` that asks for them."""
    if profile != "local":
        return
    from .errors import Issue
    from .source import load_spec_file
    for path, nodes in _multi_node_places(checked):
        kind = path[1] if path[0] == "resources" else "sample"
        raise SpecError([Issue(path, f"{nodes} nodes per {kind} job need Slurm (the other nodes' processes start "
                               "through srun); the local profile would start all of them on this machine; run with "
                               f"--profile slurm, or set nodes: 1 to run the {kind} jobs here",
                               load_spec_file(spec).loc(path))])


def _multi_node_places(checked: Checked):
    """(spec path, nodes) of every `nodes` above 1 of a job kind that runs on several nodes."""
    from .spec import PassRateFilter
    for cell in checked.cells:
        res = cell.spec.resources
        for kind in ("train", "sample", "filter", "bench"):
            if getattr(res, kind).nodes > 1:
                yield ("resources", kind, "nodes"), getattr(res, kind).nodes
        for name, ds in cell.spec.datasets.items():
            for i, f in enumerate(ds.filters):
                if isinstance(f, PassRateFilter) and f.resources is not None and f.resources.nodes > 1:
                    yield ("datasets", name, "filters", i, "resources", "nodes"), f.resources.nodes


def cmd_run(args, extra) -> int:
    from .runner import run_snakemake
    from .provenance import dirty_line
    checked, plan, target, _ = compile_spec(args.spec, args.out, args.set)
    refuse_multi_node_locally(args.spec, checked, args.profile)
    print(f"compiled {args.spec} -> {target}/ ({len(plan.jobs)} jobs)")
    note = dirty_line(json.loads((target / "manifest.json").read_text())["provenance"], args.spec)
    if note:
        print(note)
    return run_snakemake(target, profile=args.profile, cores=args.cores, dry_run=args.dry_run, extra=extra,
                         total_jobs=len(plan.jobs))


def cmd_report(args, extra) -> int:
    # imported here: the runtime (matplotlib, W&B) is not needed to check or compile a spec
    from rlspec.runtime.report import ReportError, report_build, status_line
    try:
        summary = report_build(args.build, args.out, wandb_run=args.wandb)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    target = Path(args.out) if args.out else Path(args.build) / "report"
    print(f"report: {target}/index.html; {status_line(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
