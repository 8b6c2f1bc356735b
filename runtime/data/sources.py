"""Reading a dataset's sources into normalised records: `hf://`, local files, `builtin://`.

What: `read_source(source, domain, ...)` takes one resolved `Source` block from a job config and
returns records in the schema of `records.py`. Kinds of URI (`rlspec.compiler.uris`):
- `hf://datasets/ORG/NAME[@REV]` (with `config`, `split`, `revision`): loaded with `datasets`;
  offline it is read from the local HF cache (`HF_DATASETS_OFFLINE=1`). The older `hf://ORG/NAME`
  reads the same dataset, with a deprecation warning (once per URI in the job's log). `hf://`
  followed by a local folder (absolute, or relative to the spec) reads a `save_to_disk` folder or
  a folder of data files the same way.
- a local `.jsonl`, `.json`, `.parquet` or `.csv` file, relative to the spec's folder; its sha256 is
  checked against the one the compiler recorded, so changed data never runs under an old job id.
- `builtin://math?...` / `builtin://code?...`: the generators in `builtin.py`.
Rows in veRL's, TRL's and LiveCodeBench's layouts, and Open-Reasoner-Zero's list-of-dialogue JSON,
need no `fields` mapping (`rlspec.compiler.datarows`); `fields` may use dot paths
(`answer: reward_model.ground_truth`).

Why: one reader for curation, benchmarks and warm-up data, with errors a user can act on: every
failure names the source and says what to do (which columns exist, how to fill the cache).

How: a shuffle seeded with the spec seed and `limit` pick the rows (for an HF dataset, before its
rows are converted to dicts); the rows are checked against the `fields` mapping once (a path counts
if one of the first rows has it) and normalised one by one.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path
from typing import Any

from rlspec.compiler import uris
from rlspec.compiler.datarows import LOCAL_SUFFIXES, detect_layout, lookup, mapping_problems, read_local
from rlspec.compiler.jobs import DataSource

from .builtin import BuiltinError, generate
from .records import REQUIRED, RecordError, normalise, prompt_parts

_WARNED: set[str] = set()  # deprecated URIs already warned about in this process


class SourceError(ValueError):
    """A source that cannot be read; the message names the source."""


def read_source(source: DataSource, domain: str, *, spec_dir: str | Path | None = None,
                seed: int | None = None, prompts_only: bool = False, place: str | None = None) -> list[dict[str, Any]]:
    """All records of one source block (uri, config, split, revision, fields, limit, shuffle[, sha256]).
    `prompts_only` (benchmark items for decontamination) needs and returns only `id` and `prompt`.
    `place` is the source's spec path (`datasets.math.sources[0]`), for messages about its `fields`."""
    uri = source.uri
    rows = _rows(source, spec_dir, lambda n: _order(n, source, seed))
    fields = source.fields
    if rows and rows[0].get("domain") not in (None, domain):
        raise SourceError(f"{uri}: gives {rows[0]['domain']} problems, but this dataset's domain is {domain}")
    layout = detect_layout(rows, domain)
    problems = mapping_problems(rows, fields, ("prompt",) if prompts_only else REQUIRED[domain], layout)
    if problems:
        prefix = f"{place}.fields" if place else "fields"
        what = problems.broken_text(prefix=prefix) if problems.broken else problems.absent_text(domain)
        raise SourceError(f"{uri}: {what}")
    detected = layout.fields if layout else {}
    if detected and not prompts_only:
        print(f"{uri}: read as the {layout.describe()}; `fields` entries override it", file=sys.stderr, flush=True)
    label = _label(uri)
    if prompts_only:
        return _prompts(rows, {**detected, **fields}, label, uri)
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(normalise(row, domain, fields, uri, f"{label}-{i}", detected))
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
    if uris.is_hf(uri):  # picks before converting: a 900K-row dataset with `limit` stays cheap
        try:
            ref = uris.parse_dataset(uri, source.revision)
        except uris.UriError as exc:
            raise SourceError(str(exc)) from None
        return _hf_rows(ref, source, spec_dir, order)
    if uri.startswith("builtin://"):
        try:
            rows = generate(uri)
        except BuiltinError as exc:
            raise SourceError(str(exc)) from None
    elif "://" in uri:
        raise SourceError(f"{uri}: unknown scheme; use hf://datasets/org/name, builtin://math|code or a local file "
                          "path")
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


def _prompts(rows: list[dict], fields: dict[str, str], label: str, uri: str) -> list[dict[str, Any]]:
    """Only `id` and the question text (of a message list: the last user message)."""
    out = []
    for i, r in enumerate(rows):
        rid = lookup(r, fields.get("id", "id"))
        try:
            text, _ = prompt_parts(lookup(r, fields.get("prompt", "prompt")),
                                   lookup(r, fields.get("messages", "messages")))
        except RecordError as exc:
            raise SourceError(f"{uri}: row {i}: {exc}") from None
        out.append({"id": str(rid if rid not in (None, "") else f"{label}-{i}"), "prompt": text})
    return out


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
        return read_local(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{uri}: cannot read {path.suffix} file ({type(exc).__name__}: {exc})") from None


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# ----------------------------------------------------------------------------------------------
# Hugging Face datasets
# ----------------------------------------------------------------------------------------------


def _hf_rows(ref: uris.HfRef, source: DataSource, spec_dir: str | Path | None, order) -> list[dict[str, Any]]:
    import datasets
    from datasets.utils.logging import disable_progress_bar
    disable_progress_bar()
    uri, split = source.uri, source.split
    local = _resolve(ref.name, spec_dir) if ref.form != "hub" else None
    if local is not None and not local.is_dir():
        local = None  # a hub dataset written the old way
    if ref.form == "legacy" and local is None and uri not in _WARNED:
        _WARNED.add(uri)
        print(f"warning: {uris.deprecation(uri)}", file=sys.stderr, flush=True)
    try:
        if local is not None and any((local / f).exists() for f in ("state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise SourceError(f"{uri}: no split {split!r}; it has {sorted(ds)}")
                ds = ds[split]
        else:
            path = ref.name if local is None else str(local)
            ds = datasets.load_dataset(path, source.config, split=split, revision=ref.revision)
    except SourceError:
        raise
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError...)
        raise SourceError(_hf_message(uri, source, ref, exc)) from None
    picked = order(len(ds))
    return (ds if picked is None else ds.select(picked)).to_list()  # one Arrow conversion, not a loop


def _hf_message(uri: str, source: DataSource, ref: uris.HfRef, exc: Exception) -> str:
    import os
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    where = (f"config={source.config!r}, split={source.split!r}, revision={ref.revision!r}")
    hint = ("it is not in the local HF cache (offline mode is on): load it once with network access, or point "
            "the uri at a local copy (hf://./<folder> or a data file)") if offline else (
            "it is neither in the local HF cache nor reachable on the Hub: check the name, config and split, "
            "your network, or point the uri at a local copy")
    return f"{uri} ({where}): cannot load ({type(exc).__name__}: {first}); {hint}"
