"""Benchmark: compile a 1,000-cell grid over a 6-stage spec, then `snakemake -n` on it.

Targets (issue 2): compile ≤ 2 s, dry run ≤ 30 s on the 2-core machine. The peer is the design we
rejected: the same jobs rendered as one explicit Snakemake rule per job (measured on this machine:
slower DAG building and 25-35x slower --lint). Both dry runs are timed in the same run.

    .venv/bin/python perf/compile_grid.py        # prints a table, writes perf/results/compile_grid.json
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from rlspec.compiler.plan import build_plan
from rlspec.compiler.render import render, write_build
from rlspec.compiler.validate import check_file

HERE = Path(__file__).parent
STAGES = "\n".join(
    f"  - {{name: s{i}, datasets: [math], max_response_tokens: {1024 * i}, steps: 100, prompts_per_step: 64, group_size: 8}}"
    for i in range(1, 7))
SPEC = textwrap.dedent("""\
    name: grid1000
    model: {path: org/model, max_context: 16384}
    datasets:
      math: {domain: math, sources: [{uri: "builtin://math?n=1000"}], filters: [{kind: dedup_exact}, {kind: decontaminate}]}
    benchmarks:
      held: {domain: math, source: {uri: "builtin://math?n=50&split=test"}, k: 4, sampling: {max_response_tokens: 4096}}
    stages:
    """) + STAGES + textwrap.dedent("""
    grid:
      axes:
        - {path: "stages[s4].algorithm.optimizer.lr", values: [1.0e-6, 2.0e-6, 3.0e-6, 4.0e-6, 5.0e-6, 6.0e-6, 7.0e-6, 8.0e-6, 9.0e-6, 1.0e-5]}
        - {path: "stages[s5].group_size", values: [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]}
        - {path: "stages[s6].algorithm.updates_per_batch", values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
    """)


def explicit_snakefile(build: Path) -> str:
    """The peer: one rule per job with literal inputs, outputs and resources (no wildcards)."""
    dag = json.loads((build / "dag.json").read_text())
    lines = ["rule all:", "    input:", *[f"        {t!r}," for t in dag["targets"]], ""]
    for kind, jobs in dag["jobs"].items():
        for jid, job in jobs.items():
            lines += [f"rule {kind}_{jid}:", "    input:", *[f"        {n!r}," for n in job["needs"]],
                      f"        job='jobs/{kind}/{jid}.json',",
                      "    output:", f"        'results/{kind}/{jid}/done.json',",
                      "    log:", f"        'logs/{kind}/{jid}.log',",
                      "    resources:", f"        mem_mb={job['resources']['mem_mb']},",
                      f"    conda: 'envs/trainer.yaml'",
                      f"    shell: 'python -m rlspec.runtime.{kind} --job {{input.job}} > {{log}} 2>&1'", ""]
    return "\n".join(lines)


def dry_run(build: Path, snakefile: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "2", "--snakefile",
                          snakefile, "--directory", str(build)], capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    total = re.search(r"^total\s+(\d+)$", out.stdout + out.stderr, re.M)
    return elapsed, int(total.group(1)) if total else -1


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "grid.yaml"
        spec.write_text(SPEC)
        c0 = time.process_time()
        t0 = time.perf_counter()
        checked = check_file(spec)
        t1 = time.perf_counter()
        plan = build_plan(checked.cells, spec.parent)
        t2 = time.perf_counter()
        files = render(checked, plan, spec_file=str(spec))
        t3 = time.perf_counter()
        build = Path(tmp) / "build"
        write_build(files, build)
        t4 = time.perf_counter()
        compile_cpu_s = time.process_time() - c0
        (build / "Snakefile.explicit").write_text(explicit_snakefile(build))
        ours_s, ours_jobs = dry_run(build, str(build / "Snakefile"))
        theirs_s, theirs_jobs = dry_run(build, str(build / "Snakefile.explicit"))
    kinds: dict[str, int] = {}
    for job in plan.jobs.values():
        kinds[job.kind] = kinds.get(job.kind, 0) + 1
    compile_s = t4 - t0
    rows = [("validate + expand 1,000 cells", t1 - t0), ("plan (content-addressed jobs)", t2 - t1),
            ("render", t3 - t2), ("write build folder", t4 - t3), ("compile total, wall (target ≤ 2 s)", compile_s),
            ("compile total, CPU time of this process", compile_cpu_s),
            ("snakemake -n, wildcard rules (ours, target ≤ 30 s)", ours_s),
            ("snakemake -n, one rule per job (peer)", theirs_s)]
    print(f"{len(checked.cells)} cells, {len(plan.jobs)} jobs {kinds}, {len(files)} files; "
          f"dry-run job counts: ours {ours_jobs}, peer {theirs_jobs}")
    for name, secs in rows:
        print(f"  {name:<52} {secs:8.2f} s")
    ratio = theirs_s / ours_s
    print(f"  {'dry-run speed-up vs one rule per job':<52} {ratio:8.2f} x")
    result = {"peer": "snakemake -n on the same jobs rendered as one explicit rule per job",
              "ours": round(ours_s, 3), "theirs": round(theirs_s, 3), "unit": "s (dry run)", "ratio": round(ratio, 2),
              "date": dt.date.today().isoformat(),
              "details": {"cells": len(checked.cells), "jobs": len(plan.jobs), "jobs_by_kind": kinds,
                          "files": len(files), "compile_s": round(compile_s, 3),
                          "compile_cpu_s": round(compile_cpu_s, 3), "load_average": os.getloadavg(),
                          "compile_target_s": 2.0, "dry_run_target_s": 30.0,
                          "stages_s": {name: round(secs, 3) for name, secs in rows},
                          "dry_run_jobs": {"ours": ours_jobs, "peer": theirs_jobs},
                          "machine": f"{os.cpu_count()} cores", "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "compile_grid.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
