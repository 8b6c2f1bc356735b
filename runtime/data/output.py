"""Writing a data job's outputs (curate, filter) in the order that keeps a killed job harmless.

What: `start(out_dir)` removes a previous run's outputs; `finish(...)` writes `prompts.parquet`,
`funnel.json`, `funnel.md` and, last, `done.json` (Snakemake's declared output, a small summary).
`write_funnel` alone is used when a job fails, so the user can read how far it got.

Why: every file is written under a temporary name and renamed, so a reader never sees half a
file; and `done.json` comes last, so a job killed at any point leaves no `done.json` and no
complete-looking `prompts.parquet` from this run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rlspec.runtime.job import write_json_atomic

from .funnel import funnel_markdown
from .records import write_prompts


OUTPUTS = ("done.json", "prompts.parquet", "funnel.json", "funnel.md")


def start(out_dir: Path) -> None:
    """Remove a previous run's outputs, done.json first: nothing old may pass for this run's result."""
    for name in OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_funnel(out_dir: Path, funnel: dict[str, Any]) -> None:
    write_json_atomic(out_dir / "funnel.json", funnel)
    write_text_atomic(out_dir / "funnel.md", funnel_markdown(funnel))


def finish(out_dir: Path, records: list[dict], funnel: dict[str, Any], summary: dict[str, Any]) -> None:
    domains = sorted({r["domain"] for r in records})
    write_prompts(out_dir / "prompts.parquet", records, domains)
    write_funnel(out_dir, funnel)
    write_json_atomic(out_dir / "done.json", {**summary, "records": len(records), "domains": domains})
