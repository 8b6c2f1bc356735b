"""Read the results of every job of a grid from its build folder, finished or not.

What: `collect(build, folders, ...) -> Results`: per job folder `results/<kind>/<id>/`, bench
`results.json` (finished jobs only), train `metrics.jsonl` rows and `done.json` (an unfinished stage
still shows its curve so far) and the rollout samples of `samples.jsonl` (`samples.read_samples`),
curate/filter `funnel.json`; each bench job's `k` from its job file;
and the jobs without `done.json`, which the report lists as missing.

Why: a half-finished grid should already show what it has, so nothing here fails on a missing or
unreadable file: a missing file is a job not run yet, an unreadable one becomes a warning the
report prints.

How: the report program reads its own job once and passes plain values in (grid cells, metrics,
references, labels, the job folders); this module never sees the report job's config. It does read
each bench job file's `benchmark` and `k` (`_read_k`), so that `avg@k` is named `avg@64` before
any bench job has finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlspec.runtime.metricsfile import scan_metrics
from rlspec.runtime.reporting.samples import read_samples


@dataclass
class Results:
    """Everything the report shows, read from `results/<kind>/<id>/` of one build folder."""

    name: str
    cells: list[dict]
    metrics: dict[str, list[str]]  # benchmark -> spec metrics (`avg@k`, `pass@4`, ...)
    references: dict[str, list[dict]]
    labels: dict[str, str]  # job id -> label
    k: dict[str, int] = field(default_factory=dict)  # benchmark -> samples per problem
    bench: dict[str, dict] = field(default_factory=dict)  # finished bench jobs: results.json
    train: dict[str, dict] = field(default_factory=dict)  # train id -> {"rows": [...], "done": {...} | None}
    funnels: dict[str, dict] = field(default_factory=dict)  # curate/filter id -> funnel.json
    samples: dict[str, dict] = field(default_factory=dict)  # train id -> {"rows": [...], "total": n, "stride": k}
    missing: list[dict] = field(default_factory=list)  # jobs without done.json: kind, id, label
    warnings: list[str] = field(default_factory=list)  # unreadable files, said in the report


def collect(build: Path, folders: list[str], *, name: str, cells: list[dict], metrics: dict[str, list[str]],
            references: dict[str, list[dict]], labels: dict[str, str]) -> Results:
    """Read `build/<folder>` for every job folder (`results/<kind>/<id>`, relative to the build
    folder); the keyword arguments are the report job's grid layout, carried into the Results."""
    res = Results(name, cells, metrics, references, labels)
    for folder in folders:
        kind, jid = Path(folder).parent.name, Path(folder).name
        path = build / folder
        done = _read_json(path / "done.json", res)
        if done is None:
            res.missing.append({"kind": kind, "id": jid, "label": labels.get(jid, f"{kind} {jid}")})
        if kind == "bench":
            _read_k(build / "jobs" / "bench" / f"{jid}.json", res)
        if kind == "bench" and done is not None:
            found = _read_json(path / "results.json", res)
            if found is not None:
                res.bench[jid] = found
        elif kind == "train":
            rows = _read_jsonl(path / "metrics.jsonl", res)
            if rows or done is not None:  # an unfinished stage still shows its curve so far
                res.train[jid] = {"rows": rows, "done": done}
            found_samples = read_samples(path / "samples.jsonl", res.warnings)
            if found_samples["rows"]:
                res.samples[jid] = found_samples
        elif kind in ("curate", "filter"):
            funnel = _read_json(path / "funnel.json", res)
            if funnel is not None and funnel.get("steps") is not None:
                res.funnels[jid] = funnel
    return res


def _read_k(job_file: Path, res: Results) -> None:
    config = (_read_json(job_file, res) or {}).get("config", {})
    if "benchmark" in config and "k" in config:
        res.k[config["benchmark"]] = config["k"]


def _read_json(path: Path, res: Results) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        res.warnings.append(f"{path}: unreadable, left out ({exc})")
        return None


def _read_jsonl(path: Path, res: Results) -> list[dict]:
    """Metric rows; a running trainer may be mid-line, so a bad *last* line is skipped silently."""
    rows, bad = scan_metrics(path)
    res.warnings += [f"{path}: line {n} is not JSON, skipped" for n in bad]
    return rows
