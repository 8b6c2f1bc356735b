"""Walking the spec models by path: which model or field type stands at `stages[1].algorithm.kl`.

Used to check grid paths, to suggest keys for typos ("did you mean"), and to describe a missing key.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from .errors import Path


def _strip(tp: Any) -> Any:
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
    tp = _strip(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for m in (_strip(a) for a in typing.get_args(tp)) if isinstance(m, type) and issubclass(m, BaseModel)]
    return []


def kinds_of(tp: Any) -> dict[str, type[BaseModel]]:
    """Map `kind` tag -> member model for a union tagged by `kind`."""
    out: dict[str, type[BaseModel]] = {}
    for member in union_members(tp):
        field = member.model_fields.get("kind")
        if field is not None:
            for tag in typing.get_args(_strip(field.annotation)):
                out[tag] = member
    return out


def step(tp: Any, part: str | int, value: Any = None) -> Any:
    """The type one step below `tp` along `part`; `value` is the data at tp (to pick union members).

    Returns None when the step does not exist (unknown field, index into a non-list, ...).
    """
    tp = _strip(tp)
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
    tp = _strip(tp)
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
