"""The normalised record schema of curated prompts, and reading/writing it as `prompts.parquet`.

What: every source (HF dataset, local file, builtin generator) becomes records of one shape:
    math:  id, prompt, messages, answer, source, domain, meta
    code:  id, prompt, messages, tests, starter_code, fn_name, time_limit_s, release_date, source, domain, meta
    other: id, prompt, messages, answer, source, domain, meta      (any other, free-named domain)
`prompt` is always the question text: for a message-list prompt (veRL's and TRL's conversational
`prompt`, a list of `{role, content}` turns; ShareGPT's `{from, value}` is read too) the content of
the last user message, which filters, dedup and decontamination read. `messages` is then the whole
list as `{"role", "content"}` pairs (None for a plain-text prompt); the prompt renderer passes it to
the tokenizer's chat template. `answer`: text for math; for other domains the ground truth as the
source had it (any JSON value, None if absent). `tests` is a list of cases, each
`{"input": str, "output": str}` (stdin/stdout) or `{"fn_name": str, "args": list, "expected": any}`
(function call), the format `grade_code` takes; a code source may also map `private_tests`
(LiveCodeBench's `private_test_cases`: JSON, or base64 of zlib of a pickled JSON string, read with
an unpickler that builds only plain values) and its cases are added to `tests`. A functional
LiveCodeBench case needs the function's name (`fn_name`, from `metadata.func_name`): without it the
row is an error, never a stdin program. `meta` holds everything else a source had (url, reference
`solution`, veRL's `data_source` and `extra_info`, difficulty, pass rates), as JSON values.
`domain` is stored too, so a stage that mixes domains reads one table.

Why: filters, training, rewards and benchmarks should never care where a problem came from.

How: `normalise(row, ...)` maps one source row through the spec's `fields` mapping (dot paths into a
column's objects, and the layouts detected with no mapping: `rlspec.compiler.datarows`);
`write_prompts` writes a table atomically (row groups into a temporary file, fsync, rename: a killed
job leaves no `prompts.parquet`); `read_prompts` gives the records back. In Parquet, `tests`,
`messages`, `meta` and the answers of other domains are JSON strings, because their values have no
fixed type (function arguments can be anything).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
import math
import os
import pickle
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rlspec.compiler.datarows import REQUIRED, ByDomain, as_container, is_message_list, lookup
from rlspec.runtime.atomic import temp_path

COMMON = ("id", "prompt", "source", "domain", "meta")
GENERIC = ("id", "prompt", "messages", "answer", "source", "domain", "meta")
SCHEMA: dict[str, tuple[str, ...]] = ByDomain(
    GENERIC,
    math=("id", "prompt", "messages", "answer", "source", "domain", "meta"),
    code=("id", "prompt", "messages", "tests", "starter_code", "fn_name", "time_limit_s", "release_date", "source",
          "domain", "meta"))
JSON_COLUMNS = ("tests", "messages", "meta")
ROW_GROUP = 8192
MAX_INFLATED = 1 << 30  # a compressed test field may not grow past 1 GiB (a zip bomb is a bad row, not a dead job)
ROLE_NAMES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
              "model": "assistant", "system": "system", "tool": "tool", "function": "tool"}

__all__ = ["REQUIRED", "SCHEMA", "RecordError", "normalise", "prompt_parts", "parse_tests", "decode_tests",
           "write_prompts", "read_prompts", "field_value"]


class RecordError(ValueError):
    """A row that cannot become a record; the message says which field and why."""


# ----------------------------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------------------------


def normalise(row: dict[str, Any], domain: str, fields: dict[str, str], source: str, fallback_id: str,
              detected: dict[str, str] | None = None) -> dict:
    """One source row -> one record. `fields` maps our names to the row's columns or dot paths;
    `detected` is the mapping of a recognised layout, which `fields` overrides. A column mapped
    whole leaves `meta`; one reached by a dot path stays there (its other keys may matter)."""
    mapping = {**(detected or {}), **fields}
    ours: dict[str, Any] = {}
    shadowed: dict[str, Any] = {}  # a column named like one of our fields that the mapping fills from elsewhere
    taken = set(mapping.values())
    for col, value in row.items():
        if col not in taken:
            (shadowed if col in mapping else ours)[col] = value
    ours.update({name: lookup(row, path) for name, path in mapping.items()})
    record: dict[str, Any] = {"source": source, "domain": domain}
    for name in SCHEMA[domain]:
        if name in ("source", "domain", "meta"):
            continue
        record[name] = ours.pop(name, None)
    record["id"] = str(record["id"]) if record["id"] not in (None, "") else fallback_id
    record["prompt"], record["messages"] = prompt_parts(record["prompt"], record["messages"])
    if domain == "math":
        record["answer"] = _answer_text(record["answer"], mapping.get("answer", "answer"))
    elif domain == "code":
        _code_fields(record, ours.pop("private_tests", None))
    else:
        record["answer"] = _jsonable(record["answer"])
    meta = _meta(ours.pop("meta", None))
    extra = {**ours, **shadowed}
    record["meta"] = {**meta, **{k: _jsonable(v) for k, v in extra.items() if k not in ("domain", "source")}}
    return record


def _code_fields(record: dict[str, Any], private: Any) -> None:
    record["starter_code"], record["fn_name"] = (None if v in (None, "") else str(v)
                                                 for v in (record["starter_code"], record["fn_name"]))
    record["tests"] = parse_tests(record["tests"], record["fn_name"])
    if private not in (None, ""):
        record["tests"] += parse_tests(decode_tests(private), record["fn_name"])
    record["time_limit_s"] = _float_or_none(record["time_limit_s"], "time_limit_s")
    record["release_date"] = parse_date(record["release_date"])


def prompt_parts(prompt: Any, messages: Any = None) -> tuple[str, list[dict[str, str]] | None]:
    """(question text, message list or None) from a prompt that is text or a list of chat turns
    (or its JSON text), and an optional separate `messages` value."""
    prompt = as_container(prompt) if isinstance(prompt, str) and prompt.lstrip()[:2] == "[{" else prompt
    if is_message_list(prompt):
        messages = prompt
    elif isinstance(prompt, (dict, list, tuple)):
        what = f"an object with keys {sorted(map(str, prompt))}" if isinstance(prompt, dict) else "a list"
        raise RecordError(f"prompt is {what}, not text or a list of {{role, content}} messages; map `prompt` to "
                          "the question's text (a dot path reaches into an object: `prompt: question.text`)")
    elif messages in (None, "", []):
        return ("" if prompt is None else str(prompt)), None
    messages = _messages(as_container(messages))
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        raise RecordError(f"the message list has no user message (roles: {[m['role'] for m in messages]}); "
                          "the question is the last user message")
    return (users[-1] if prompt in (None, "") or is_message_list(prompt) else str(prompt)), messages


def _messages(value: Any) -> list[dict[str, str]]:
    if not is_message_list(value):
        raise RecordError(f"messages must be a list of {{role, content}} objects, not {type(value).__name__}")
    out = []
    for i, turn in enumerate(value):
        role = turn.get("role", turn.get("from"))
        role = ROLE_NAMES.get(str(role).lower(), str(role)) if role is not None else None
        content = turn.get("content", turn.get("value"))
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
            if any(not isinstance(p, dict) or p.get("type", "text") != "text" for p in content):
                raise RecordError(f"message {i} has non-text content parts; only text prompts are supported")
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(role, str) or not (content is None or isinstance(content, str)):
            raise RecordError(f"message {i} needs a text `role` and `content` (got role={role!r}, content of type "
                              f"{type(content).__name__})")
        out.append({"role": role, "content": content or ""})
    return out


def _answer_text(value: Any, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        keys = sorted(map(str, value))
        raise RecordError(f"answer ({column!r}) is an object with keys {keys}, not an answer; map one of its keys: "
                          f"`answer: {column}.{'ground_truth' if 'ground_truth' in keys else keys[0]}`")
    if isinstance(value, (list, tuple)):
        raise RecordError(f"answer ({column!r}) is a list ({_jsonable(value)!r:.80}), not one answer; map one "
                          f"item (`answer: {column}.0`) or use a domain with its own reward for several answers")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# ----------------------------------------------------------------------------------------------
# compressed test fields (LiveCodeBench)
# ----------------------------------------------------------------------------------------------


class _PlainValues(pickle.Unpickler):
    """An unpickler that builds only what pickle's own opcodes make (str, bytes, numbers, lists,
    dicts, tuples, True/False/None): it never looks up a global, so a pickle cannot name a function
    to call (`os.system` through REDUCE) or a class to build."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"the pickle asks for {module}.{name}; a dataset's pickled field may hold "
                                     "only plain values (str, bytes, numbers, lists, dicts), never code or objects")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("the pickle refers to a persistent object; only plain values are allowed")


def plain_unpickle(data: bytes) -> Any:
    """`pickle.loads` for data nobody vetted: plain values only (see `_PlainValues`)."""
    return _PlainValues(io.BytesIO(data)).load()


def decode_tests(value: Any) -> Any:
    """Test cases from a field that holds them as JSON text or as LiveCodeBench's private field:
    base64 of zlib of a pickle of the JSON text."""
    if isinstance(value, (list, dict)):
        return value
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    if text.lstrip()[:1] in ("[", "{"):
        return text  # parse_tests reads JSON text
    try:
        packed = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise RecordError(f"private tests are neither JSON nor base64 ({exc})") from None
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(packed, MAX_INFLATED)
    except zlib.error as exc:
        raise RecordError(f"private tests are base64 but not zlib-compressed ({exc})") from None
    if inflater.unconsumed_tail:
        raise RecordError(f"private tests inflate to more than {MAX_INFLATED >> 20} MiB; refusing the row")
    try:
        inner = plain_unpickle(raw)
    except Exception as exc:  # a hostile or broken pickle: any error of the unpickler is a bad row
        raise RecordError(f"private tests: refused to unpickle ({type(exc).__name__}: {exc})") from None
    if isinstance(inner, bytes):
        inner = inner.decode("utf-8")
    if not isinstance(inner, (str, list, dict)):
        raise RecordError(f"private tests unpickle to a {type(inner).__name__}, not JSON text or a list of cases")
    return inner


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
        if case.get("testtype") == "functional":  # LiveCodeBench: one JSON argument per line
            if not fn_name:
                raise RecordError("a functional test case (LiveCodeBench `testtype: functional`) needs the function's "
                                  "name, or it would be graded as a stdin program; map `fn_name` (LiveCodeBench: "
                                  "`fn_name: metadata.func_name`)")
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
    for domain in sorted(domains, key=lambda d: (d not in ("math", "code"), d)):
        names += [n for n in SCHEMA[domain] if n not in names]
    return pa.schema([(n, types.get(n, pa.string())) for n in names])


def _column(records: Sequence[dict], name: str) -> list:
    if name in JSON_COLUMNS:
        return [None if r.get(name) is None else json.dumps(r[name], ensure_ascii=False, sort_keys=True)
                for r in records]
    if name == "answer":  # text for math; the ground truth of other domains is any JSON value
        return [r.get(name) if r.get("domain") == "math" or r.get(name) is None else
                json.dumps(r[name], ensure_ascii=False, sort_keys=True) for r in records]
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
    """Records from a `prompts.parquet`, with `tests`, `messages`, `meta` and other domains' answers
    decoded; columns a domain does not use (a mixed table) are left out of its records."""
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    out = []
    for row in table.to_pylist():
        domain = row.get("domain") or ("code" if "tests" in row else "math")
        record = {k: row[k] for k in SCHEMA[domain] if k in row}
        record["meta"] = json.loads(record["meta"]) if record.get("meta") else {}
        if record.get("messages") is not None:
            record["messages"] = json.loads(record["messages"])
        if domain == "code":
            record["tests"] = json.loads(record["tests"]) if record.get("tests") else []
        elif domain != "math" and record.get("answer") is not None:
            record["answer"] = json.loads(record["answer"])
        out.append(record)
    return out
