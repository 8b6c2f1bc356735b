"""Golden files: the compiled build folder of two specs, byte for byte.

A change to the compiler that alters the output shows up here as a readable diff. When the change is
intended, regenerate the expected files with one command and review the diff in git:

    RLSPEC_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/compiler/test_golden.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rlspec.compiler.plan import build_plan
from rlspec.compiler.render import render
from rlspec.compiler.validate import check_file

from conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
CASES = {"quickstart": "specs/quickstart.yaml", "small-grid": "tests/compiler/data/small-grid.yaml"}


def build_files(rel_spec: str) -> dict[str, str]:
    spec = REPO / rel_spec
    checked = check_file(spec, display=rel_spec)
    files = render(checked, build_plan(checked.cells, spec.parent), spec_file=rel_spec)
    # the one machine-specific value: where relative data files are looked up
    files["context.json"] = files["context.json"].replace(str(spec.parent.resolve()), "<spec_dir>")
    files["manifest.json"] = files["manifest.json"]
    return files


@pytest.mark.parametrize("name", sorted(CASES))
def test_build_folder_matches_golden(name):
    files = build_files(CASES[name])
    folder = GOLDEN / name
    if os.environ.get("RLSPEC_REGEN_GOLDEN"):
        shutil.rmtree(folder, ignore_errors=True)
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
    expected = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert sorted(expected) == sorted(files), "files added or removed; regenerate (see module docstring)"
    for rel in sorted(files):
        assert files[rel] == expected[rel], f"{name}/{rel} differs from the golden file; regenerate if intended"
