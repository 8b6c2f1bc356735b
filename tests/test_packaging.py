"""Packaging: one import name (`rlspec`) over the required top-level folders, in a real wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"compiler": "rlspec.compiler", "runtime": "rlspec.runtime", "templates": "rlspec.templates"}


def declared_packages() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"])


def test_required_layout():
    for name in ("specs", "compiler", "runtime", "templates", "tests", "pyproject.toml"):
        assert (REPO / name).exists(), name


def test_every_package_folder_is_declared():
    found = set()
    for folder, pkg in MAPPED.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([pkg, *rel.parts]))
    assert found == declared_packages(), "list every folder with an __init__.py in pyproject's packages"


def test_built_wheel_imports_and_has_templates(tmp_path):
    # Build from a clean copy of the tracked and new files so the repo's own build/ is left alone.
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    wheel = next((tmp_path / "dist").glob("rlspec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "rlspec/templates/Snakefile.j2" in names and "rlspec/templates/rule.smk.j2" in names
    assert not any(n.startswith(("compiler/", "runtime/", "templates/")) for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import rlspec.compiler.cli, rlspec.runtime.job, rlspec.templates, jinja2\n"
            "from rlspec.compiler.render import _env\n"
            "assert _env().get_template('Snakefile.j2')\n"
            "assert rlspec.compiler.cli.__file__.startswith(%r)\n"
            "try:\n    import compiler\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('bare import compiler works')\n"
            % str(site))
    # -I: ignore PYTHONPATH and the user site; sys.path[0] is the cwd (tmp_path), not the repo
    res = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n" + code],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_bare_folder_names_do_not_import(tmp_path):
    res = subprocess.run([sys.executable, "-c", "import compiler"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0
    res = subprocess.run([sys.executable, "-c", "import rlspec.compiler, rlspec.runtime, rlspec.templates"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
