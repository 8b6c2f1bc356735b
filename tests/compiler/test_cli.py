"""The `rlspec` command line: every subcommand through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rlspec.compiler.schema import spec_schema

from conftest import REPO, SPECS

RLSPEC = shutil.which("rlspec") or str(Path(__import__("sys").executable).parent / "rlspec")


def rlspec(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([RLSPEC, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_check_ok_and_error_exit_codes(write_spec):
    assert rlspec("check", "specs/quickstart.yaml").returncode == 0
    bad = write_spec("name: x\nmodel: {path: a/b}\n")
    out = rlspec("check", str(bad))
    assert out.returncode == 1
    assert "datasets: required key missing" in out.stderr and "stages: required key missing" in out.stderr
    assert "Traceback" not in out.stderr


def test_usage_error_exit_code():
    assert rlspec("frobnicate").returncode == 2
    assert rlspec("plan").returncode == 2


def test_schema_has_descriptions_and_is_shipped():
    out = rlspec("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert schema == spec_schema()
    stage = schema["$defs"]["Stage"]["properties"]
    assert "Response length budget" in stage["max_response_tokens"]["description"]
    # The copy editors use (`$schema=` header of every shipped spec) is current.
    assert json.loads((SPECS / "rlspec.schema.json").read_text()) == schema, \
        "regenerate: rlspec schema > specs/rlspec.schema.json"


def test_shipped_specs_point_editors_at_the_schema():
    for spec in sorted(SPECS.rglob("*.yaml")):
        first = spec.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), spec
        target = (spec.parent / first.split("$schema=", 1)[1]).resolve()
        assert target == (SPECS / "rlspec.schema.json").resolve(), spec


def test_plan_json():
    out = rlspec("plan", "tests/compiler/data/small-grid.yaml", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["cells"] == ["len=1536,updates=1", "len=1536,updates=2", "len=2048,updates=1", "len=2048,updates=2"]
    assert data["job_counts"]["train"] == 1 + 4
    s1 = next(j for j in data["jobs"] if j["label"] == "train s1")
    assert s1["shared_by"] == 4 and s1["estimate"]["rollout_tokens"] == 8 * 4 * 1024 * 10
    grid, cells = data["totals"]["grid"], data["totals"]["cells"]
    assert grid["jobs"] == len(data["jobs"])
    # shared jobs are counted once in the grid but in every cell
    assert sum(c["rollout_tokens"] for c in cells.values()) > grid["rollout_tokens"]


def test_plan_table():
    out = rlspec("plan", "specs/acereason-nemotron-7b.yaml")
    assert out.returncode == 0
    assert "train math-8k" in out.stdout and "rollout budget" in out.stdout and "grid" in out.stdout


def test_compile_writes_readable_build_folder(tmp_path):
    out = rlspec("compile", "specs/quickstart.yaml", "-o", str(tmp_path / "q"))
    assert out.returncode == 0, out.stderr
    b = tmp_path / "q"
    for rel in ("Snakefile", "rules/train.smk", "dag.json", "manifest.json", "spec.resolved.json", "context.json",
                "profiles/local/config.yaml", "profiles/slurm/config.yaml", "envs/trainer.yaml"):
        assert (b / rel).is_file(), rel
    manifest = json.loads((b / "manifest.json").read_text())
    assert set(manifest) == {"rlspec_version", "spec", "cells", "jobs", "provenance"}
    assert len(manifest["jobs"]) == len(list((b / "jobs").rglob("*.json")))
    again = rlspec("compile", "specs/quickstart.yaml", "-o", str(tmp_path / "q"))
    assert "0 files written" in again.stdout


def test_default_build_folder_is_named_after_the_spec(tmp_path):
    shutil.copy(REPO / "tests/compiler/data/small-grid.yaml", tmp_path / "s.yaml")
    out = rlspec("compile", "s.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "build" / "small-grid" / "Snakefile").is_file()


def test_run_dry_run_passes_extra_args(tmp_path):
    out = rlspec("run", "specs/quickstart.yaml", "-o", str(tmp_path / "q"), "--dry-run", "--", "--quiet", "rules")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "compiled specs/quickstart.yaml" in text
    for rule in ("model", "curate", "filter", "train", "bench", "report"):
        assert rule in text


def test_run_refuses_unknown_profile(tmp_path):
    out = rlspec("run", "specs/quickstart.yaml", "-o", str(tmp_path / "q"), "--profile", str(tmp_path / "nope"))
    assert out.returncode != 0 and "neither local, slurm" in out.stderr


def test_run_refuses_a_multi_node_train_job_on_the_local_profile(write_spec, tmp_path):
    text = (REPO / "specs" / "quickstart.yaml").read_text().replace(
        "  train: {cpus: 2, mem_gb: 8, time_min: 30}\n", "  train: {cpus: 2, mem_gb: 8, time_min: 30,\n          nodes: 2}\n", 1)
    assert "nodes: 2" in text
    spec = write_spec(text.replace("$schema", "x-schema"), name="quick.yaml")
    out = rlspec("run", str(spec), "-o", str(tmp_path / "q"), "--dry-run", cwd=REPO)
    assert out.returncode == 1, out.stderr
    line = next(i + 1 for i, t in enumerate(text.splitlines()) if "nodes: 2" in t)
    assert f"quick.yaml:{line}:" in out.stderr and "2 nodes per train job need Slurm" in out.stderr
    assert "--profile slurm" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("spec", sorted(str(p.relative_to(REPO)) for p in SPECS.rglob("*.yaml")))
def test_every_shipped_spec_checks_plans_and_compiles(spec, tmp_path):
    assert rlspec("check", spec).returncode == 0
    assert rlspec("plan", spec, "--json").returncode == 0
    assert rlspec("compile", spec, "-o", str(tmp_path / "b")).returncode == 0


def test_slurm_profile_without_plugin_says_how_to_install(tmp_path):
    pytest.importorskip("snakemake")
    import importlib.util
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None:
        pytest.skip("the Slurm plugin is installed here")
    out = rlspec("run", "specs/quickstart.yaml", "-o", str(tmp_path / "q"), "--profile", "slurm", "--dry-run")
    assert out.returncode != 0 and 'pip install "rlspec[slurm]"' in out.stderr
