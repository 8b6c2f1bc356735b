"""Atomic writes: a reader sees a file's (or a folder's) old content or its new content, never a part.

What: `write_text_atomic(path, text)`, `write_json_atomic(path, data)` and
`replace_dir_atomic(staging, target)`.

Why: jobs are killed (preemption, time limits) and read while they run (the report reads a running
grid; Snakemake trusts whatever output exists). A file written in place can be seen half written
and would then look like a finished result.

How: a file is written under a hidden name next to the final one (same folder, so the rename never
crosses file systems), flushed and fsynced, then renamed over the final name (`os.replace` is atomic
on POSIX). A folder cannot be renamed over a non-empty folder, so `replace_dir_atomic` renames the
old folder aside, renames the new one in, then deletes the old one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def temp_path(path: str | Path) -> Path:
    """The hidden sibling a file or folder is staged under: `.NAME.tmpPID` (per process, so two
    writers of the same path do not share a staging name)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text under `temp_path(path)`, fsync, then rename onto `path`. On any failure the
    old file is left as it was and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    """`data` as JSON (indent 2, sorted keys, `str()` for anything JSON has no type for, a final
    newline: the format of every job output), written with `write_text_atomic`."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def replace_dir_atomic(staging: str | Path, target: str | Path) -> None:
    """Put the finished folder `staging` at `target`, replacing what is there. A reader sees the old
    folder or the new one, never a mix of their files; for the instant between the two renames
    `target` is absent. A missing `staging` raises before the old folder is touched, and a failed
    rename puts the old folder back."""
    staging, target = Path(staging), Path(target)
    if not staging.is_dir():
        raise FileNotFoundError(f"{staging}: no staged folder to put at {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)  # left by a killed earlier swap with this pid
    had_old = target.exists()
    if had_old:
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if had_old:
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
