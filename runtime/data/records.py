"""The normalised record schema of curated prompts, and reading/writing it as `prompts.parquet`.

What: every source (HF dataset, local file, builtin generator) becomes records of one shape:
    math: id, prompt, answer, source, domain, meta
    code: id, prompt, tests, starter_code, fn_name, time_limit_s, release_date, source, domain, meta
`tests` is a list of cases, each `{"input": str, "output": str}` (stdin/stdout) or
`{"fn_name": str, "args": list, "expected": any}` (function call), the format `grade_code` takes.
`meta` holds everything else a source had (url, reference `solution`, difficulty, flags, pass rates).
`domain` is stored too, so a stage that mixes math and code reads one table.

Why: filters, training and benchmarks should never care where a problem came from.

How: `normalise(row, ...)` maps one source row through the spec's `fields` mapping; `write_prompts`
writes a table atomically (row groups into a temporary file, fsync, rename: a killed job leaves no
`prompts.parquet`); `read_prompts` gives the records back. In Parquet, `tests` and `meta` are JSON
strings, because their values have no fixed type (function arguments can be anything).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rlspec.runtime.atomic import temp_path

COMMON = ("id", "prompt", "source", "domain", "meta")
SCHEMA = {
    "math": ("id", "prompt", "answer", "source", "domain", "meta"),
    "code": ("id", "prompt", "tests", "starter_code", "fn_name", "time_limit_s", "release_date", "source",
             "domain", "meta"),
}
REQUIRED = {"math": ("prompt", "answer"), "code": ("prompt", "tests")}
ROW_GROUP = 8192


class RecordError(ValueError):
    """A row that cannot become a record; the message says which field and why."""


# ----------------------------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------------------------


def normalise(row: dict[str, Any], domain: str, fields: dict[str, str], source: str, fallback_id: str) -> dict:
    """One source row -> one record. `fields` maps our names to the row's column names."""
    ours: dict[str, Any] = {}
    shadowed: dict[str, Any] = {}  # a column named like one of our fields that the mapping fills from elsewhere
    for col, value in row.items():
        if col not in fields.values():
            (shadowed if col in fields else ours)[col] = value
    ours.update({name: row.get(col) for name, col in fields.items()})
    record: dict[str, Any] = {"source": source, "domain": domain}
    for name in SCHEMA[domain]:
        if name in ("source", "domain", "meta"):
            continue
        record[name] = ours.pop(name, None)
    record["id"] = str(record["id"]) if record["id"] not in (None, "") else fallback_id
    record["prompt"] = "" if record["prompt"] is None else str(record["prompt"])
    if domain == "math":
        record["answer"] = _answer_text(record["answer"])
    else:
        record["starter_code"], record["fn_name"] = (None if v in (None, "") else str(v)
                                                     for v in (record["starter_code"], record["fn_name"]))
        record["tests"] = parse_tests(record["tests"], record["fn_name"])
        record["time_limit_s"] = _float_or_none(record["time_limit_s"], "time_limit_s")
        record["release_date"] = parse_date(record["release_date"])
    meta = _meta(ours.pop("meta", None))
    extra = {**ours, **shadowed}
    record["meta"] = {**meta, **{k: _jsonable(v) for k, v in extra.items() if k not in ("domain", "source")}}
    return record


def _meta(value: Any) -> dict[str, Any]:
    """A source's own `meta` column: a mapping, or its JSON text (our prompts.parquet as a source)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {"meta": value}
    if value is None:
        return {}
    return {str(k): _jsonable(v) for k, v in value.items()} if isinstance(value, dict) else {"meta": _jsonable(value)}


def _answer_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _float_or_none(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RecordError(f"{name}={value!r} is not a number of seconds") from None
    return None if math.isnan(out) else out


def parse_date(value: Any) -> str | None:
    """An ISO date (YYYY-MM-DD) from a date, datetime, timestamp or ISO string; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return value.to_pydatetime().date().isoformat()
    text = str(value).strip()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        raise RecordError(f"release_date={value!r} is not an ISO date (YYYY-MM-DD)") from None


def parse_tests(value: Any, fn_name: str | None) -> list[dict[str, Any]]:
    """Test cases from the shapes datasets use: a list of cases, its JSON text, or APPS-style
    `{"inputs": [...], "outputs": [...]}` (function calls when the problem has a `fn_name`)."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RecordError(f"tests are not valid JSON ({exc.msg} at {exc.pos})") from None
    if isinstance(value, dict):
        inputs, outputs = value.get("inputs"), value.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
            raise RecordError("tests as a mapping need equally long `inputs` and `outputs` lists")
        value = [_apps_case(i, o, fn_name) for i, o in zip(inputs, outputs)]
    if not isinstance(value, (list, tuple)):
        raise RecordError(f"tests must be a list of cases, not {type(value).__name__}")
    return [_case(c, fn_name) for c in value]


def _apps_case(inp: Any, out: Any, fn_name: str | None) -> dict[str, Any]:
    if fn_name:
        args = inp if isinstance(inp, list) else [inp]
        expected = out[0] if isinstance(out, list) and len(out) == 1 else out
        return {"fn_name": fn_name, "args": args, "expected": expected}
    return {"input": _text(inp), "output": _text(out)}


def _text(value: Any) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _case(case: Any, fn_name: str | None) -> dict[str, Any]:
    if not isinstance(case, dict):
        raise RecordError(f"a test case must be an object, not {type(case).__name__}")
    if "args" in case or "expected" in case or "expected_repr" in case:
        name = case.get("fn_name") or fn_name
        if not name:
            raise RecordError("a function-call test case needs `fn_name` (in the case or the problem)")
        out = {"fn_name": str(name), "args": list(case.get("args", [])), "expected": case.get("expected")}
        if case.get("expected_repr") is not None:  # a Python literal: keeps tuple vs list (the grader reads it)
            out["expected_repr"] = str(case["expected_repr"])
        return out
    if "input" in case and "output" in case:
        if case.get("testtype") == "functional" and fn_name:  # LiveCodeBench: one JSON argument per line
            args = [json.loads(line) for line in str(case["input"]).splitlines() if line.strip()]
            return {"fn_name": fn_name, "args": args, "expected": json.loads(case["output"])}
        return {"input": str(case["input"]), "output": str(case["output"])}
    raise RecordError(f"a test case needs input/output or args/expected, got keys {sorted(case)}")


def _jsonable(value: Any) -> Any:
    """Values a source may hold, made JSON-safe (arrays, dates, numpy scalars)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _jsonable(value.tolist())
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def field_value(record: dict[str, Any], name: str) -> Any:
    """A record's field, looked up in the schema columns first and then in `meta`."""
    if name in record:
        return record[name]
    return record.get("meta", {}).get(name)


# ----------------------------------------------------------------------------------------------
# Parquet I/O
# ----------------------------------------------------------------------------------------------


def _arrow_schema(domains: Sequence[str]):
    import pyarrow as pa
    types = {"time_limit_s": pa.float64()}
    names: list[str] = []
    for domain in ("math", "code"):
        if domain in domains:
            names += [n for n in SCHEMA[domain] if n not in names]
    return pa.schema([(n, types.get(n, pa.string())) for n in names])


def _column(records: Sequence[dict], name: str) -> list:
    if name in ("tests", "meta"):
        return [None if name not in r else json.dumps(r[name], ensure_ascii=False, sort_keys=True) for r in records]
    return [r.get(name) for r in records]


def write_prompts(path: str | Path, records: Sequence[dict[str, Any]], domains: Iterable[str]) -> None:
    """Write records as Parquet under a temporary name, fsync, then rename into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = _arrow_schema(sorted(set(domains)))
    tmp = temp_path(path)
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, max(len(records), 1), ROW_GROUP):
                chunk = records[start:start + ROW_GROUP]
                writer.write_table(pa.table({n: _column(chunk, n) for n in schema.names}, schema=schema))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Records from a `prompts.parquet`, with `tests` and `meta` decoded; columns a domain does not
    use (a mixed table) are left out of its records."""
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    out = []
    for row in table.to_pylist():
        domain = row.get("domain") or ("code" if "tests" in row else "math")
        record = {k: row[k] for k in SCHEMA[domain] if k in row}
        record["meta"] = json.loads(record["meta"]) if record.get("meta") else {}
        if domain == "code":
            record["tests"] = json.loads(record["tests"]) if record.get("tests") else []
        out.append(record)
    return out
