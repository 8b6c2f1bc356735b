"""The rows of a data source as `rlspec check` and the jobs see them: field paths, layouts, local files.

Shared by `rlspec check` (which reads the first rows of a local file, `checks_data.py`) and the
curate/bench jobs (`runtime/data/sources.py`, `records.py`), so both agree on what a mapping names.
Standard library only (pyarrow is imported when a Parquet file is read).

Field paths. A `fields` value is a column name or a dot path into a column's objects:
`answer: reward_model.ground_truth`, `id: extra_info.index`, `fn_name: metadata.func_name`,
`prompt: conversation.0.content` (a number indexes a list). An object may also arrive as its JSON
text (LiveCodeBench's `metadata`); it is parsed on the way. A column whose name holds dots is taken
whole. A mapping that names nothing in the source's first rows is an error that says where the
path broke and which columns (or keys) the source really has.

Layouts read with no mapping (`detect_layout`; an explicit `fields` entry always wins):
- veRL parquet (`prompt` a list of messages, `reward_model: {style, ground_truth}`, `data_source`,
  `extra_info`): `answer` (math and other domains) or `tests` (code) <- `reward_model.ground_truth`;
- LiveCodeBench (`question_content`, `public_test_cases`, `private_test_cases`, `metadata`,
  `contest_date`, `question_id`): `prompt`, `tests`, `private_tests`, `fn_name` (from
  `metadata.func_name`), `release_date`, `id`; code only (other domains take `prompt` and `id`);
- TRL, standard (`prompt` text) or conversational (`prompt` a list of messages): math takes its
  `answer` from `solution` or `ground_truth` when the source has no `answer` column.
Message-list prompts need no layout: any `prompt` that is a list of `{role, content}` (or
`{from, value}`) turns is read as messages (`records.py`).

Local files: `.jsonl` (one object a line), `.json` (a list of objects, or `{"data": [...]}`),
`.parquet`, `.csv`. A list item that is a dialogue, as in Open-Reasoner-Zero's JSON
(`[{"from": "human", "value": ...}, {"from": "assistant", "ground_truth": {"value": ...}}]`),
becomes the row `{"prompt": [messages], "answer": ground truth}`.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
HEAD_ROWS = 100  # rows a mapping is checked against (the check reads no more of a file)

GENERIC_REQUIRED = ("prompt",)


class ByDomain(dict):
    """Per-domain tables: `math` and `code` are listed, any other (free-named) domain gets the generic entry."""

    def __init__(self, generic, **named):
        super().__init__(named)
        self.generic = generic

    def __missing__(self, key):
        return self.generic


REQUIRED: dict[str, tuple[str, ...]] = ByDomain(GENERIC_REQUIRED, math=("prompt", "answer"), code=("prompt", "tests"))


# ----------------------------------------------------------------------------------------------
# field paths
# ----------------------------------------------------------------------------------------------


class MissingPath(LookupError):
    """Where a field path broke: the part of the path that resolved, the missing key, the keys there."""

    def __init__(self, path: str, reached: str, key: str, keys: list[str] | None):
        super().__init__(path)
        self.path, self.reached, self.key, self.keys = path, reached, key, keys

    def depth(self) -> int:
        return len(self.reached.split(".")) if self.reached else 0

    def describe(self) -> str:
        """What is missing (nothing about the top-level columns: the caller lists them)."""
        if not self.reached:
            return f"{self.path!r}"
        there = f"its keys are {self.keys}" if self.keys is not None else "it is not an object"
        return f"{self.path!r}: {self.reached!r} has no key {self.key!r} ({there})"


def resolve(row: dict[str, Any], path: str) -> Any:
    """The value `path` names in `row`; raises MissingPath."""
    if path in row:
        return row[path]
    parts = path.split(".")
    value: Any = row
    for depth, part in enumerate(parts):
        value = as_container(value) if depth else value
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and _index(part, len(value)) is not None:
            value = value[_index(part, len(value))]
        else:
            keys = sorted(map(str, value)) if isinstance(value, dict) else (
                [str(i) for i in range(len(value))] if isinstance(value, list) else None)
            raise MissingPath(path, ".".join(parts[:depth]), part, keys)
    return value


def lookup(row: dict[str, Any], path: str) -> Any:
    """`resolve`, or None where this row lacks the path (the source as a whole was checked)."""
    try:
        return resolve(row, path)
    except MissingPath:
        return None


def as_container(value: Any) -> Any:
    """An object or list given as its JSON text, parsed; anything else as it is."""
    if isinstance(value, (str, bytes)) and value[:1] in ("{", "[", b"{", b"["):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return value
    return value


def _index(part: str, n: int) -> int | None:
    try:
        i = int(part)
    except ValueError:
        return None
    return i if -n <= i < n else None


# ----------------------------------------------------------------------------------------------
# layouts
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    name: str
    fields: dict[str, str]  # our field -> path, only paths the source's rows have

    def describe(self) -> str:
        return f"{self.name} layout (" + ", ".join(f"{k} <- {v}" for k, v in self.fields.items()) + ")"


def columns_of(rows: Iterable[dict]) -> set[str]:
    return set().union(*(r.keys() for r in itertools.islice(rows, HEAD_ROWS)))


def detect_layout(rows: list[dict], domain: str) -> Layout | None:
    """A known layout of the source's first rows, with the mapping it implies for `domain`."""
    head = rows[:HEAD_ROWS]
    cols = columns_of(head)
    if {"question_content", "public_test_cases"} <= cols:
        wanted = {"prompt": "question_content", "id": "question_id"}
        if domain == "code":
            wanted |= {"tests": "public_test_cases", "private_tests": "private_test_cases",
                       "fn_name": "metadata.func_name", "release_date": "contest_date"}
        return _layout("LiveCodeBench", wanted, head, cols)
    if {"prompt", "reward_model"} <= cols:
        return _layout("veRL", {"tests" if domain == "code" else "answer": "reward_model.ground_truth"}, head, cols)
    if "prompt" in cols:
        conversational = any(is_message_list(r.get("prompt")) for r in head)
        wanted = {}
        if domain == "math" and "answer" not in cols:
            wanted = {"answer": next((c for c in ("solution", "ground_truth") if c in cols), "")}
        return _layout(f"TRL {'conversational' if conversational else 'standard'}", wanted, head, cols)
    return None


def _layout(name: str, wanted: dict[str, str], head: list[dict], cols: set[str]) -> Layout:
    """The wanted entries whose path the rows have, except those our own column of that name fills."""
    have = {ours: path for ours, path in wanted.items()
            if path and ours not in cols and any(_has(r, path) for r in head)}
    return Layout(name, have)


def _has(row: dict, path: str) -> bool:
    try:
        resolve(row, path)
    except MissingPath:
        return False
    return True


def is_message_list(value: Any) -> bool:
    """A list of chat turns: objects with `role` (or ShareGPT's `from`)."""
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(m, dict) and ("role" in m or "from" in m) for m in value))


# ----------------------------------------------------------------------------------------------
# mapping problems
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingProblems:
    """What is wrong with a source's `fields` mapping: per key, where its path broke; the required
    fields nothing fills; and the source's real columns, for the messages."""

    broken: dict[str, str]  # fields key -> "'path'" or "'a.b': 'a' has no key 'b' (its keys are [...])"
    absent: list[str]
    columns: list[str]

    def __bool__(self) -> bool:
        return bool(self.broken or self.absent)

    def broken_text(self, keys: Iterable[str] | None = None, prefix: str = "fields") -> str:
        shown = ", ".join(f"{prefix}.{k}: {self.broken[k]}" for k in (keys or sorted(self.broken)))
        return f"the field mapping names columns the source does not have ({shown}); its columns are {self.columns}"

    def absent_text(self, domain: str) -> str:
        return (f"no {' or '.join(self.absent)} field for a {domain} dataset; map it from one of {self.columns} "
                f"with `fields: {{{self.absent[0]}: <column>}}` (a dot path reaches into a column's objects: "
                "`reward_model.ground_truth`)")


def mapping_problems(rows: list[dict], fields: dict[str, str], required: tuple[str, ...],
                     layout: Layout | None) -> MappingProblems:
    """Every mapping the source's first rows do not have (a path counts if one row has it: LiveCodeBench's
    stdin problems have no `func_name`), and every required field nothing fills."""
    head = rows[:HEAD_ROWS]
    if not head:
        return MappingProblems({}, [], [])
    columns = sorted(columns_of(head))
    broken = {}
    for key, path in fields.items():
        misses = []
        for r in head:
            try:
                resolve(r, path)
                break
            except MissingPath as miss:
                misses.append(miss)
        else:
            broken[key] = max(misses, key=MissingPath.depth).describe()
    implicit = layout.fields if layout else {}
    mapped = set(fields) | set(implicit) | (set(columns) - set(fields.values()))
    absent = [] if broken else [f for f in required if f not in mapped]
    return MappingProblems(broken, absent, columns)


# ----------------------------------------------------------------------------------------------
# local files
# ----------------------------------------------------------------------------------------------


def read_local(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The rows of a local data file (the first `limit` only, when set). Raises ValueError, OSError
    or UnicodeDecodeError with the line or item that is wrong."""
    return READERS[path.suffix](path, limit)


def _jsonl(path: Path, limit: int | None) -> list[dict]:
    rows: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if limit is not None and len(rows) >= limit:
                break
            if line.strip():
                try:
                    rows.append(_row(json.loads(line), f"line {n}"))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {n}: {exc.msg}") from None
    return rows


def _json(path: Path, limit: int | None) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError("a .json source holds a list of objects (or {\"data\": [...]})")
    return [_row(x, f"item {i}") for i, x in enumerate(data[:limit])]


def _row(value: Any, where: str) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and is_message_list(value):
        return dialogue_row(value)
    raise ValueError(f"{where} is a {type(value).__name__}, not an object (or a dialogue: a list of "
                     "{role, content} / {from, value} turns)")


def dialogue_row(turns: list[dict]) -> dict[str, Any]:
    """A list-of-dialogue item (Open-Reasoner-Zero): the turns with text become the prompt's messages;
    a turn's `ground_truth` (`{"value": ...}` or the value itself) becomes the answer."""
    row: dict[str, Any] = {"prompt": [t for t in turns if t.get("content", t.get("value")) not in (None, "")]}
    for t in turns:
        truth = t.get("ground_truth")
        if truth is None:
            continue
        if isinstance(truth, dict) and "value" in truth:
            row["answer"] = truth["value"]
            if len(truth) > 1:
                row["ground_truth"] = truth  # pass rates and the like, kept in meta
        else:
            row["answer"] = truth
    return row


def _parquet(path: Path, limit: int | None) -> list[dict]:
    import pyarrow.parquet as pq
    if limit is None:
        return pq.read_table(path).to_pylist()
    batch = next(pq.ParquetFile(path).iter_batches(batch_size=limit), None)
    return [] if batch is None else batch.to_pylist()


def _csv(path: Path, limit: int | None) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [dict(r) for r in itertools.islice(csv.DictReader(fh), limit)]


READERS = {".jsonl": _jsonl, ".json": _json, ".parquet": _parquet, ".csv": _csv}
