"""`rlspec check` rules for data: `hf://` URIs, and `fields` mappings against local files.

What:
- every `hf://` data source parses (`uris.parse_dataset`): `hf://datasets/ORG/NAME[@REV]`, or a
  local folder; the old `hf://ORG/NAME` is a warning (it still reads the dataset); `@REV` and a
  `revision:` that disagree are an error at `revision`;
- every `hf://` model (`model.path`, `model.tokenizer`, a pass-rate teacher) parses
  (`uris.parse_model`), and `@REV` agrees with `model.revision`;
- `local_source_issues(spec, spec_dir)`: for every local `.parquet` / `.jsonl` / `.json` / `.csv`
  source, the first rows are read (the whole file only for `.json`) and every `fields` entry must
  name a column or dot path they have, located at that `fields` key, with the columns the file
  really has; a required field (math: `answer`, code: `tests`, every domain: `prompt`) that
  neither a mapping, a column nor a detected layout fills is an error too. Cheap: a few rows, once
  per file and grid.

Why: a mapping error found by `rlspec check` at the spec's line costs a second; found by the curate
job it costs a compile and a queue wait. The rules read what the jobs read through the same code
(`datarows.py`), so check and job cannot disagree.

The URI rules register with `checks.rule`; the local-file rule needs the spec's folder, so
`validate.check_file` calls `local_source_issues` next to its check for missing files.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Any

from . import uris
from .checks import rule, source_places, warn
from .datarows import HEAD_ROWS, LOCAL_SUFFIXES, REQUIRED, detect_layout, mapping_problems, read_local
from .errors import Issue, Path
from .spec import PassRateFilter, Source, Spec

MAX_JSON_BYTES = 256 << 20  # a .json file is parsed whole; bigger ones are left to the job


@rule
def hf_dataset_uris(spec: Spec):
    for path, source in source_places(spec):
        if not uris.is_hf(source.uri):
            continue
        try:
            ref = uris.parse_dataset(source.uri)
        except uris.UriError as exc:
            yield Issue(path + ("uri",), f"{exc}; the job that reads this data would stop on it")
            continue
        try:
            uris.parse_dataset(source.uri, source.revision)
        except uris.UriError as exc:
            yield Issue(path + ("revision",), str(exc))
        if ref.form == "legacy":
            yield warn(path + ("uri",), uris.deprecation(source.uri))


@rule
def hf_model_uris(spec: Spec):
    m = spec.model
    names: list[tuple[Path, str, str | None]] = [(("model", "path"), m.path, m.revision),
                                                 (("model", "tokenizer"), m.tokenizer, None)]
    for name, ds in spec.datasets.items():
        names += [(("datasets", name, "filters", j, "policy"), f.policy, None)
                  for j, f in enumerate(ds.filters) if isinstance(f, PassRateFilter)]
    for path, value, revision in names:
        if not value or not uris.is_hf(value):
            continue
        try:
            uris.parse_model(value)
        except uris.UriError as exc:
            yield Issue(path, str(exc))
            continue
        try:
            uris.parse_model(value, revision)
        except uris.UriError as exc:
            yield Issue(("model", "revision"), str(exc))


def local_source_issues(spec: Spec, spec_dir: FsPath) -> Iterator[Issue]:
    """Issues (unlocated: the caller locates them) of every local data source's `fields` mapping."""
    for path, source, domain in _places(spec):
        if "://" in source.uri:
            continue
        if FsPath(source.uri).suffix not in LOCAL_SUFFIXES:
            yield Issue(path + ("uri",), f"{source.uri!r} is not a data file rlspec reads (type "
                        f"{FsPath(source.uri).suffix or 'none'!r}); use one of {list(LOCAL_SUFFIXES)}, a hf:// dataset "
                        "or a builtin:// generator")
            continue
        file = spec_dir / source.uri
        if not file.is_file() or file.suffix == ".json" and file.stat().st_size > MAX_JSON_BYTES:
            continue  # a missing file is reported by validate; a huge .json by the job
        stat = file.stat()
        rows, problem = _head(str(file.resolve()), stat.st_mtime_ns, stat.st_size)
        if problem is not None:
            yield Issue(path + ("uri",), f"cannot read {source.uri} ({problem}); the job that reads it would stop")
            continue
        yield from _mapping_issues(path, source, domain, rows)


def _places(spec: Spec) -> list[tuple[Path, Source, str]]:
    """Each source with its path and the domain its records are read as (the warm-up reads math)."""
    domain_of = {("datasets", n): ds.domain for n, ds in spec.datasets.items()}
    domain_of.update({("benchmarks", n): b.domain for n, b in spec.benchmarks.items()})
    return [(path, s, domain_of.get(tuple(path[:2]), "math")) for path, s in source_places(spec)]


@functools.lru_cache(maxsize=256)  # every grid cell names the same files
def _head(file: str, mtime_ns: int, size: int) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return read_local(FsPath(file), HEAD_ROWS), None
    except Exception as exc:  # OSError, ValueError, UnicodeDecodeError, and pyarrow's own error types
        return [], f"{type(exc).__name__}: {exc}"


def _mapping_issues(path: Path, source: Source, domain: str, rows: list[dict]) -> Iterator[Issue]:
    found = mapping_problems(rows, source.fields, REQUIRED[domain], detect_layout(rows, domain))
    for key, detail in found.broken.items():
        yield Issue(path + ("fields", key), f"{source.uri} has no {detail} (its columns are {found.columns}); "
                    "map a column it has, or a dot path into one (`reward_model.ground_truth`)")
    if found.absent:
        yield Issue(path + (("fields",) if source.fields else ("uri",)), found.absent_text(domain))
