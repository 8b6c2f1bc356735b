"""Reading a dataset's sources into normalised records: `hf://`, local files, `builtin://`.

What: `read_source(source, domain, ...)` takes one resolved `Source` block from a job config and
returns records in the schema of `records.py`. Kinds of URI:
- `hf://org/name` (with `config`, `split`, `revision`): loaded with `datasets`; offline it is read
  from the local HF cache (`HF_DATASETS_OFFLINE=1`). `hf://` followed by a local folder (absolute,
  or relative to the spec) reads a `save_to_disk` folder or a folder of data files the same way.
- a local `.jsonl`, `.json`, `.parquet` or `.csv` file, relative to the spec's folder; its sha256 is
  checked against the one the compiler recorded, so changed data never runs under an old job id.
- `builtin://math?...` / `builtin://code?...`: the generators in `builtin.py`.

Why: one reader for curation, benchmarks and warm-up data, with errors a user can act on: every
failure names the source and says what to do (which columns exist, how to fill the cache).

How: a shuffle seeded with the spec seed and `limit` pick the rows (for an HF dataset, before its
rows are converted to dicts); the rows are checked against the `fields` mapping once and
normalised one by one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path
from typing import Any

from rlspec.compiler.jobs import DataSource

from .builtin import BuiltinError, generate
from .records import REQUIRED, RecordError, normalise

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


class SourceError(ValueError):
    """A source that cannot be read; the message names the source."""


def read_source(source: DataSource, domain: str, *, spec_dir: str | Path | None = None,
                seed: int | None = None, prompts_only: bool = False) -> list[dict[str, Any]]:
    """All records of one source block (uri, config, split, revision, fields, limit, shuffle[, sha256]).
    `prompts_only` (benchmark items for decontamination) needs and returns only `id` and `prompt`."""
    uri = source.uri
    rows = _rows(source, spec_dir, lambda n: _order(n, source, seed))
    fields = source.fields
    if rows and rows[0].get("domain") not in (None, domain):  # a builtin generator of the other domain
        raise SourceError(f"{uri}: gives {rows[0]['domain']} problems, but this dataset's domain is {domain}")
    _check_columns(uri, rows, fields, ("prompt",) if prompts_only else REQUIRED[domain], domain)
    label = _label(uri)
    if prompts_only:
        return _prompts(rows, fields, label)
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(normalise(row, domain, fields, uri, f"{label}-{i}"))
        except RecordError as exc:
            raise SourceError(f"{uri}: row {i}: {exc}") from None
    return out


def _order(n: int, source: DataSource, seed: int | None) -> list[int] | None:
    """Which rows to read, in which order: a seeded shuffle, then `limit`; None means all, as stored."""
    if not source.shuffle and not source.limit:
        return None
    order = list(range(n))
    if source.shuffle:
        random.Random(0 if seed is None else seed).shuffle(order)
    return order[: source.limit or n]


def _rows(source: DataSource, spec_dir: str | Path | None, order) -> list[dict[str, Any]]:
    """The source's rows as dicts, picked by `order(n_rows)`."""
    uri = source.uri
    if uri.startswith("hf://"):  # picks before converting: a 900K-row dataset with `limit` stays cheap
        return _hf_rows(uri[len("hf://"):], source, spec_dir, order)
    if uri.startswith("builtin://"):
        try:
            rows = generate(uri)
        except BuiltinError as exc:
            raise SourceError(str(exc)) from None
    elif "://" in uri:
        raise SourceError(f"{uri}: unknown scheme; use hf://org/name, builtin://math|code or a local file path")
    else:
        rows = _local_rows(_resolve(uri, spec_dir), source)
    picked = order(len(rows))
    return rows if picked is None else [rows[i] for i in picked]


def _resolve(path: str, spec_dir: str | Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or spec_dir is None else Path(spec_dir) / p


def _label(uri: str) -> str:
    """A short name for ids: the file or dataset name without the query."""
    return uri.split("?")[0].rstrip("/").split("/")[-1] or uri


def _prompts(rows: list[dict], fields: dict[str, str], label: str) -> list[dict[str, Any]]:
    pcol, icol = fields.get("prompt", "prompt"), fields.get("id", "id")
    return [{"id": str(r.get(icol) if r.get(icol) not in (None, "") else f"{label}-{i}"), "prompt": str(r[pcol] or "")}
            for i, r in enumerate(rows)]


def _check_columns(uri: str, rows: list[dict], fields: dict[str, str], required: tuple[str, ...], domain: str) -> None:
    if not rows:
        return
    columns = set().union(*(r.keys() for r in rows[:100]))
    missing = {ours: theirs for ours, theirs in fields.items() if theirs not in columns}
    if missing:
        shown = ", ".join(f"fields.{o}: {t!r}" for o, t in sorted(missing.items()))
        raise SourceError(f"{uri}: the field mapping names columns the source does not have ({shown}); "
                          f"its columns are {sorted(columns)}")
    mapped = set(fields) | (columns - set(fields.values()))
    absent = [f for f in required if f not in mapped]
    if absent:
        raise SourceError(f"{uri}: no {' or '.join(absent)} field for a {domain} dataset; map it from one of "
                          f"{sorted(columns)} with `fields: {{{absent[0]}: <column>}}`")


# ----------------------------------------------------------------------------------------------
# local files
# ----------------------------------------------------------------------------------------------


def _local_rows(path: Path, source: DataSource) -> list[dict[str, Any]]:
    uri = source.uri
    if path.suffix not in LOCAL_SUFFIXES:
        raise SourceError(f"{uri}: unsupported file type {path.suffix!r}; use one of {list(LOCAL_SUFFIXES)}")
    if not path.is_file():
        raise SourceError(f"{uri}: file not found ({path}); put the data there or fix the spec's uri")
    expected = source.sha256
    if expected is not None and _sha256(path) != expected:
        raise SourceError(f"{uri}: the file changed since the spec was compiled (sha256 differs); "
                          "recompile so the job gets a new id")
    try:
        return READERS[path.suffix](path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{uri}: cannot read {path.suffix} file ({type(exc).__name__}: {exc})") from None


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(_object(json.loads(line), f"line {n}"))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {n}: {exc.msg}") from None
    return rows


def _json(path: Path) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError("a .json source holds a list of objects (or {\"data\": [...]})")
    return [_object(x, f"item {i}") for i, x in enumerate(data)]


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where} is a {type(value).__name__}, not an object")
    return value


def _parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq
    return pq.read_table(path).to_pylist()


def _csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


READERS = {".jsonl": _jsonl, ".json": _json, ".parquet": _parquet, ".csv": _csv}


# ----------------------------------------------------------------------------------------------
# Hugging Face datasets
# ----------------------------------------------------------------------------------------------


def _hf_rows(name: str, source: DataSource, spec_dir: str | Path | None, order) -> list[dict[str, Any]]:
    import datasets
    from datasets.utils.logging import disable_progress_bar
    disable_progress_bar()
    uri, split = source.uri, source.split
    local = _resolve(name, spec_dir)
    try:
        if local.is_dir() and any((local / f).exists() for f in ("state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise SourceError(f"{uri}: no split {split!r}; it has {sorted(ds)}")
                ds = ds[split]
        else:
            path = str(local) if local.is_dir() else name
            ds = datasets.load_dataset(path, source.config, split=split, revision=source.revision)
    except SourceError:
        raise
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError...)
        raise SourceError(_hf_message(uri, source, exc)) from None
    picked = order(len(ds))
    return (ds if picked is None else ds.select(picked)).to_list()  # one Arrow conversion, not a loop


def _hf_message(uri: str, source: DataSource, exc: Exception) -> str:
    import os
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    where = (f"config={source.config!r}, split={source.split!r}, revision={source.revision!r}")
    hint = ("it is not in the local HF cache (offline mode is on): load it once with network access, or point "
            "the uri at a local copy (hf://<folder> or a data file)") if offline else (
            "it is neither in the local HF cache nor reachable on the Hub: check the name, config and split, "
            "your network, or point the uri at a local copy")
    return f"{uri} ({where}): cannot load ({type(exc).__name__}: {first}); {hint}"
