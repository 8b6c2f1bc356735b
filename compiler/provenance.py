"""Where a build came from: the spec file's git commit (and whether its repository had uncommitted
changes), rlspec's own version and commit, and the command-line overrides.

`rlspec compile`/`run` write it into the build folder's manifest and context (every W&B run's config
carries it), so a result can be traced to the exact spec text and code that produced it. Git is
asked with a short timeout; outside a repository, or without git, the fields are null.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 5


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                             timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(path: Path) -> dict[str, Any] | None:
    """{commit, dirty} of the repository holding `path` (a file or folder); None outside one."""
    folder = path if path.is_dir() else path.parent
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def provenance(spec_file: str | Path, overrides: list[str], version: str) -> dict[str, Any]:
    return {"spec_git": git_state(Path(spec_file).resolve()), "overrides": list(overrides),
            "rlspec": {"version": version, "git": git_state(Path(__file__).resolve().parent)}}


def dirty_line(prov: dict[str, Any], spec_file: str) -> str | None:
    """The one line `rlspec run` prints when the spec's repository has uncommitted changes."""
    state = prov.get("spec_git")
    if state and state["dirty"]:
        return (f"note: {spec_file} is in a git repository with uncommitted changes (at {state['commit'][:12]}); "
                "the build records the commit, not your edits")
    return None
