"""Command-line overrides (`--set PATH=VALUE`) on check/plan/compile/run, and the provenance every
build records: the spec's git commit and dirtiness, rlspec's version and commit, the overrides."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rlspec.compiler.cli import main
from rlspec.compiler.validate import check_file

from conftest import REPO

QUICKSTART = REPO / "specs" / "quickstart.yaml"


def test_overrides_set_values_by_the_grids_paths():
    checked = check_file(QUICKSTART, overrides=["seed=2", "stages[math-long].steps=7",
                                                "rollout.vllm.kv_cache_memory_bytes=67108864"])
    spec = checked.cells[0].spec
    assert spec.seed == 2 and spec.stages[1].steps == 7
    assert spec.stages[0].rollout.vllm.kv_cache_memory_bytes == 67108864  # stage defaults follow the top level


def test_override_errors_are_located_at_the_argument(capsys):
    assert main(["check", str(QUICKSTART), "--set", "seed=x", "--set", "stages[nope].steps=3", "--set", "oops"]) == 1
    err = capsys.readouterr().err
    assert "--set #1 seed: expected a whole number" in err
    assert "--set #2 " in err and "no entry named 'nope'" in err
    assert "--set #3 <root>: 'oops' is not PATH=VALUE" in err and "3 errors" in err


def test_every_command_takes_overrides(tmp_path, capsys):
    assert main(["plan", str(QUICKSTART), "--json", "--set", "stages[code].steps=3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [j["estimate"]["steps"] for j in data["jobs"] if j["label"] == "train code"] == [3]
    out = tmp_path / "b"
    assert main(["compile", str(QUICKSTART), "-o", str(out), "--set", "seed=4"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["provenance"]["overrides"] == ["seed=4"]
    assert json.loads((out / "context.json").read_text())["provenance"] == manifest["provenance"]
    assert manifest["provenance"]["rlspec"]["version"]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def test_build_records_the_specs_commit_and_a_dirty_tree(tmp_path):
    repo = tmp_path / "exp"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "t")
    (repo / "spec.yaml").write_text(QUICKSTART.read_text())
    git(repo, "add", "spec.yaml")
    git(repo, "commit", "-qm", "spec")
    commit = git(repo, "rev-parse", "HEAD").strip()
    run = [sys.executable, "-m", "rlspec.compiler.cli", "run", "spec.yaml", "-o", str(tmp_path / "b"), "--dry-run"]
    clean = subprocess.run(run, cwd=repo, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-2000:]
    state = json.loads((tmp_path / "b" / "manifest.json").read_text())["provenance"]["spec_git"]
    assert state == {"commit": commit, "dirty": False} and "uncommitted changes" not in clean.stdout
    (repo / "spec.yaml").write_text(QUICKSTART.read_text().replace("seed: 1", "seed: 5"))
    dirty = subprocess.run(run, cwd=repo, capture_output=True, text=True, timeout=300)
    assert dirty.returncode == 0, dirty.stderr[-2000:]
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["provenance"]["spec_git"]["dirty"] is True
    assert sum("uncommitted changes" in line for line in dirty.stdout.splitlines()) == 1
