"""The one reader of `metrics.jsonl`, the per-step metric rows a training job appends.

What: `read_metrics(path) -> list[dict]` (strict: a corrupt line raises) and
`scan_metrics(path) -> (rows, bad_lines)` (lenient: says which lines it skipped).

Why: the file is appended one JSON line per step while the job runs, and a killed job (or a
reader racing a running one) can leave the last line cut off mid-write. That line is the only
damage a healthy file can have, so it is skipped without a word; a bad line anywhere else means
the file was corrupted, which a reader must not pass over silently.

How: blank lines are skipped; a missing file has no rows yet (the job has not logged a step).
The trainer reads its own finished file with `read_metrics`; the report, which must show what it
can of a damaged run, uses `scan_metrics` and lists the skipped lines as warnings.
"""

from __future__ import annotations

import json
from pathlib import Path


class MetricsFileError(ValueError):
    """A metrics.jsonl with a line that is not JSON before its last line."""


def scan_metrics(path: str | Path) -> tuple[list[dict], list[int]]:
    """The rows that parse, and the 1-based numbers of the lines that do not (a torn last line is
    skipped and not listed)."""
    path = Path(path)
    if not path.is_file():
        return [], []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows, bad = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n != len(lines):
                bad.append(n)
    return rows, bad


def read_metrics(path: str | Path) -> list[dict]:
    """Every row of `path`, in order; a torn last line is skipped, any other bad line raises."""
    rows, bad = scan_metrics(path)
    if bad:
        raise MetricsFileError(f"{path}: line(s) {', '.join(map(str, bad))} not JSON (only a torn last line, "
                               "from a killed job, is expected); the file is corrupted -- rerun the job")
    return rows
