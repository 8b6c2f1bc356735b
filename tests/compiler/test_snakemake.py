"""The compiled workflows are valid Snakemake: `--lint` is clean and `-n` lists the expected jobs.

Real Snakemake, run as a subprocess on real build folders.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlspec.compiler.plan import build_plan
from rlspec.compiler.render import render, write_build
from rlspec.compiler.runner import run_snakemake
from rlspec.compiler.validate import check_file

from conftest import REPO, shipped_specs

SPEC_FILES = [p for p in shipped_specs()] + [REPO / "tests/compiler/data/small-grid.yaml"]


def compile_to(spec: Path, out: Path):
    checked = check_file(spec)
    plan = build_plan(checked.cells, spec.parent)
    write_build(render(checked, plan, spec_file=str(spec)), out)
    return plan


def snakemake(build: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(build / "Snakefile"),
                           "--directory", str(build), *args], capture_output=True, text=True, timeout=300)


def job_stats(text: str) -> dict[str, int]:
    block = text.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if m[1] != "total"}


@pytest.mark.parametrize("spec", SPEC_FILES, ids=lambda p: p.stem)
def test_dry_run_lists_every_job(spec, tmp_path):
    plan = compile_to(spec, tmp_path / "b")
    out = snakemake(tmp_path / "b", "-n", "--cores", "2")
    assert out.returncode == 0, out.stderr + out.stdout
    expected: dict[str, int] = {}
    for job in plan.jobs.values():
        expected[job.kind] = expected.get(job.kind, 0) + 1
    expected["all"] = 1
    assert job_stats(out.stdout + out.stderr) == expected


@pytest.mark.parametrize("spec", [REPO / "specs/quickstart.yaml", REPO / "specs/acereason-nemotron-7b.yaml",
                                  REPO / "tests/compiler/data/small-grid.yaml"], ids=lambda p: p.stem)
def test_lint_is_clean(spec, tmp_path):
    compile_to(spec, tmp_path / "b")
    out = snakemake(tmp_path / "b", "--lint")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr


def test_rule_resources_reach_snakemake(tmp_path):
    plan = compile_to(REPO / "tests/compiler/data/small-grid.yaml", tmp_path / "b")
    out = snakemake(tmp_path / "b", "-n", "--cores", "8", "-p")
    text = out.stdout + out.stderr
    train = next(j for j in plan.jobs.values() if j.kind == "train")
    block = text[text.index(f"results/train/{train.id}/done.json"):]
    block = block[:block.index("\n\n")]
    assert "mem_mb=32768" in block and "runtime=120" in block and "slurm_partition=gpu" in block
    # no `tasks` on a GPU job: the Slurm plugin would read it as --ntasks-per-gpu (render._rule_resources)
    assert "gpu=2" in block and "tasks=" not in block
    assert f"python -m rlspec.runtime.train --job jobs/train/{train.id}.json --context context.json" in text


def test_failed_job_is_reported_with_its_log(tmp_path, capsys):
    """A job whose file was edited after compilation refuses to run (rlspec.runtime.job checks the
    content hash); `rlspec run`'s runner reports the failure and shows the job's log."""
    plan = compile_to(REPO / "specs/quickstart.yaml", tmp_path / "b")
    model = next(j for j in plan.jobs.values() if j.kind == "model")
    path = tmp_path / "b" / "jobs" / "model" / f"{model.id}.json"
    doc = json.loads(path.read_text())
    doc["config"]["seed"] = 999
    path.write_text(json.dumps(doc))
    rc = run_snakemake(tmp_path / "b", cores=1, extra=["--until", "model"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "job failed: model" in err
    assert "content does not match its id" in err
    assert not (tmp_path / "b" / model.done).exists()
