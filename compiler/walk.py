"""Walking the spec models by path: which model or field type stands at `stages[1].algorithm.kl`.

Used to check grid paths, to suggest keys for typos ("did you mean"), and to describe a missing key.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from .errors import Path


def strip_type(tp: Any) -> Any:
    """Unwrap Annotated[...] and Optional[...] down to the interesting type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def union_members(tp: Any) -> list[type[BaseModel]]:
    """The model members of a (tagged) union type, or [] if tp is not one."""
    tp = strip_type(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for m in (strip_type(a) for a in typing.get_args(tp)) if isinstance(m, type) and issubclass(m, BaseModel)]
    return []


def kinds_of(tp: Any) -> dict[str, type[BaseModel]]:
    """Map `kind` tag -> member model for a union tagged by `kind`."""
    out: dict[str, type[BaseModel]] = {}
    for member in union_members(tp):
        field = member.model_fields.get("kind")
        if field is not None:
            for tag in typing.get_args(strip_type(field.annotation)):
                out[tag] = member
    return out


def step(tp: Any, part: str | int, value: Any = None) -> Any:
    """The type one step below `tp` along `part`; `value` is the data at tp (to pick union members).

    Returns None when the step does not exist (unknown field, index into a non-list, ...).
    """
    tp = strip_type(tp)
    members = union_members(tp)
    if members:
        kind = value.get("kind") if isinstance(value, dict) else None
        tagged = kinds_of(tp)
        if kind in tagged:
            tp = tagged[kind]
        else:  # schedules written as plain numbers, or no kind given: first member with the field
            tp = next((m for m in members if isinstance(part, str) and part in m.model_fields), members[0])
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if isinstance(part, str) and part in tp.model_fields:
            return tp.model_fields[part].annotation
        return None
    if origin in (list, tuple) and isinstance(part, int):
        args = typing.get_args(tp)
        return args[0] if origin is list or len(args) == 2 and args[1] is Ellipsis else (
            args[part] if 0 <= part < len(args) else None)
    if origin is dict and isinstance(part, str):
        return typing.get_args(tp)[1]
    return None


def type_at(root: type[BaseModel], path: Path, data: Any) -> Any:
    """The annotation at `path` under `root`, or None when the path leads nowhere."""
    tp: Any = root
    for part in path:
        tp = step(tp, part, data)
        if tp is None:
            return None
        data = _child(data, part)
    return tp


def model_at(root: type[BaseModel], path: Path, data: Any) -> type[BaseModel] | None:
    """The model class whose instance stands at `path` (resolving tagged unions from data)."""
    tp = type_at(root, path, data)
    if tp is None:
        return None
    tp = strip_type(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    value = _get(data, path)
    members = union_members(tp)
    if members:
        kind = value.get("kind") if isinstance(value, dict) else None
        return kinds_of(tp).get(kind)
    return None


def _child(data: Any, part: str | int) -> Any:
    if isinstance(data, dict) and isinstance(part, str):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and -len(data) <= part < len(data):
        return data[part]
    return None


def _get(data: Any, path: Path) -> Any:
    for part in path:
        data = _child(data, part)
    return data


# ------------------------------------------------------------------------------------------
# facts about one field, for messages
# ------------------------------------------------------------------------------------------


def field_at(root: type[BaseModel], path: Path, data: Any) -> tuple[str, Any] | None:
    """(name, FieldInfo) of the model field that holds `path`: the last named part, so a list item
    `optimizer.betas[1]` gives the field `betas`. None when no model field stands there."""
    named = [n for n, part in enumerate(path) if isinstance(part, str)]
    if not named:
        return None
    n = named[-1]
    parent = model_at(root, path[:n], data)
    if parent is None or path[n] not in parent.model_fields:
        return None
    return str(path[n]), parent.model_fields[path[n]]


def bounds(tp: Any, metadata: list | tuple = ()) -> dict[str, float]:
    """Numeric bounds (`ge`, `gt`, `le`, `lt`) on a type: from the field's metadata and from any
    Annotated[...] layer inside Optional[...]."""
    found: dict[str, float] = {}

    def take(items) -> None:
        for item in items:
            inner = getattr(item, "metadata", None)  # a FieldInfo inside Annotated
            take(inner if isinstance(inner, list) else ())
            for name in ("ge", "gt", "le", "lt"):
                value = getattr(item, name, None)
                if isinstance(value, (int, float)):
                    found[name] = value
    take(metadata)
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            take(typing.get_args(tp)[1:])
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return found
            tp = args[0]
        else:
            return found


def allows_none(tp: Any) -> bool:
    """Whether `null` is a valid value of the type (an Optional field)."""
    if typing.get_origin(tp) is typing.Annotated:
        return allows_none(typing.get_args(tp)[0])
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def key_paths(root: type[BaseModel]) -> dict[str, list[str]]:
    """Every key name of the schema -> the generic paths where it is valid (`rollout.temperature`,
    `benchmarks.<name>.sampling.temperature`, ...), shortest first. Used to say where a key that is
    unknown here belongs. Stage-level copies of the top-level `algorithm` / `rollout` are left out."""
    cached = _KEY_PATHS.get(root)
    if cached is None:
        found: dict[str, list[str]] = {}
        _index(root, "", found, set())
        cached = _KEY_PATHS[root] = {k: sorted(set(v), key=lambda p: (p.count(".") + p.count("["), p))
                                     for k, v in found.items()}
    return cached


_KEY_PATHS: dict[type, dict[str, list[str]]] = {}


def _index(model: type[BaseModel], prefix: str, found: dict[str, list[str]], seen: set) -> None:
    if model in seen:
        return
    seen = seen | {model}
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        found.setdefault(name, []).append(path)
        if prefix == "stages[*]" and name in ("algorithm", "rollout"):
            continue  # the same keys as the top-level blocks
        for sub, suffix in _submodels(info.annotation):
            _index(sub, path + suffix, found, seen)


def _submodels(tp: Any) -> list[tuple[type[BaseModel], str]]:
    """The models reachable from a field type, with the path suffix to them ("", "[*]", ".<name>")."""
    tp = strip_type(tp)
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [(tp, "")]
    if origin in (typing.Union, types.UnionType):
        return [(m, "") for m in union_members(tp)]
    if origin in (list, tuple):
        return [(m, "[*]" + s) for a in typing.get_args(tp) if a is not Ellipsis for m, s in _submodels(a)]
    if origin is dict:
        return [(m, ".<name>" + s) for m, s in _submodels(typing.get_args(tp)[1])]
    return []


def field_by_loc(root: type[BaseModel], loc: tuple) -> tuple[Any, Any]:
    """(FieldInfo, type) that pydantic validated at its error `loc`, following the union-member
    names pydantic puts in `loc` (`rollout.temperature.constant.value` -> ConstantTemperature.value).
    The type is the item type when `loc` ends inside a list. (None, None) when `loc` leads nowhere."""
    tp: Any = root
    info = None
    for part in loc:
        tp = strip_type(tp)
        tagged = kinds_of(tp)
        if isinstance(part, str) and part in tagged:
            tp = tagged[part]
            continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return None, None
            tp = info.annotation
            continue
        tp = step(tp, part)
        if tp is None:
            return None, None
    return info, tp


def generic_path(root: type[BaseModel], path: Path, data: Any) -> str:
    """A path with list indices as `[*]` and map keys as `<name>`: ("datasets", "math", "sources", 0)
    -> "datasets.<name>.sources[*]", the form `key_paths` uses."""
    out = ""
    for n, part in enumerate(path):
        if isinstance(part, int):
            out += "[*]"
            continue
        parent = strip_type(type_at(root, path[:n], data)) if n else root
        name = "<name>" if typing.get_origin(parent) is dict else str(part)
        out += f".{name}" if out else name
    return out
