"""Atomic writes (`runtime/atomic.py`): a reader sees the old content or the new, never a part."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlspec.runtime import job
from rlspec.runtime.atomic import replace_dir_atomic, temp_path, write_json_atomic, write_text_atomic


def spy_renames(monkeypatch, fail_on: int | None = None) -> list[dict]:
    """Record every `os.replace` with what the source and the destination hold at that instant.
    A spy, not a mock: the real rename still happens, unless call number `fail_on` (1-based) is
    asked to fail, which stands in for a rename the file system refuses (hard to cause for real)."""
    real, seen = os.replace, []

    def replace(src, dst):
        src, dst = Path(src), Path(dst)
        seen.append({"src": src, "dst": dst, "src_text": src.read_text() if src.is_file() else None,
                     "dst_text": dst.read_text() if dst.is_file() else None})
        if fail_on == len(seen):
            raise OSError("refused (test)")
        real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    return seen


def test_the_final_name_only_ever_holds_a_whole_file(tmp_path, monkeypatch):
    path = tmp_path / "out" / "index.html"
    path.parent.mkdir()
    path.write_text("old page")
    renames = spy_renames(monkeypatch)
    write_text_atomic(path, "new page, " * 1000)
    (r,) = renames
    assert r["src"] != path and r["src"] == temp_path(path) and r["src"].parent == path.parent
    assert r["src"].name.startswith(".")  # hidden: globs such as *.html never pick up a half-written file
    assert r["src_text"] == "new page, " * 1000  # complete before it gets the final name
    assert r["dst_text"] == "old page"  # until then the reader still sees the old file
    assert path.read_text() == "new page, " * 1000
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.html"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "half a page \ud800")  # a lone surrogate cannot be written as UTF-8
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_json_format_is_the_job_outputs_format(tmp_path):
    """Byte for byte the format `runtime/job.py` writes today (indent 2, sorted keys, str() for
    other types, final newline), so switching a writer to this helper changes no output file."""
    data = {"b": [1, 2.5, None], "a": {"z": "é", "y": True}, "path": Path("/x/y")}
    write_json_atomic(tmp_path / "new.json", data)
    job.write_json_atomic(tmp_path / "old.json", data)
    assert (tmp_path / "new.json").read_bytes() == (tmp_path / "old.json").read_bytes()
    assert (tmp_path / "new.json").read_text().endswith("}\n")


def make_dir(path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def contents(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def test_folder_swap_replaces_the_whole_folder(tmp_path):
    target = make_dir(tmp_path / "report", {"index.html": "old", "figures/gone.png": "old figure"})
    staging = make_dir(temp_path(target), {"index.html": "new", "figures/a.png": "new figure"})
    replace_dir_atomic(staging, target)
    assert contents(target) == {"index.html": "new", "figures/a.png": "new figure"}  # no old file left in
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # neither staging nor the old folder remain


def test_folder_swap_into_a_new_place(tmp_path):
    staging = make_dir(tmp_path / "staged", {"index.html": "new"})
    replace_dir_atomic(staging, tmp_path / "a" / "report")
    assert contents(tmp_path / "a" / "report") == {"index.html": "new"}


def test_folder_swap_without_staging_keeps_the_old_folder(tmp_path):
    target = make_dir(tmp_path / "report", {"index.html": "old"})
    with pytest.raises(FileNotFoundError, match="no staged folder"):
        replace_dir_atomic(tmp_path / ".report.tmp1", target)
    assert contents(target) == {"index.html": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_folder_swap_puts_the_old_folder_back_when_the_rename_fails(tmp_path, monkeypatch):
    target = make_dir(tmp_path / "report", {"index.html": "old"})
    staging = make_dir(tmp_path / "staged", {"index.html": "new"})
    spy_renames(monkeypatch, fail_on=2)  # 1: old folder aside, 2: staging in (refused), 3: old back
    with pytest.raises(OSError, match="refused"):
        replace_dir_atomic(staging, target)
    assert contents(target) == {"index.html": "old"} and contents(staging) == {"index.html": "new"}
