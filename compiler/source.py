"""Reading spec files: YAML with a location for every key and value, and `extends` inheritance.

PyYAML's composer keeps a start mark on every node; we build plain Python data from the node tree
and record, for each path, where its key and its value stand. Validation errors found later are
mapped back through these tables to `file:line:col`. YAML merge keys (`<<: *base`, `<<: [*a, *b]`)
follow YAML 1.1: the map's own keys win, then earlier merged maps; a merged value keeps the location
of the anchor that wrote it.

`extends: base.yaml` (a path relative to the file, or a list of them, applied left to right) loads
the base first and deep-merges the child over it: maps merge key by key, lists and scalars are
replaced whole. Locations follow the data: a value inherited from the base points into the base.
"""

from __future__ import annotations

import os.path
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from .errors import Issue, Loc, Path, SpecError

try:  # the C composer is ~5x faster; marks are identical
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

MAX_DEPTH = 64


@dataclass
class Located:
    """Spec data plus where each path came from."""

    data: Any
    value_locs: dict[Path, Loc] = field(default_factory=dict)
    key_locs: dict[Path, Loc] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # every file read, root first

    def loc(self, path: Path, *, key: bool = False) -> Loc | None:
        """The location of `path`, or of its nearest written ancestor."""
        first, second = (self.key_locs, self.value_locs) if key else (self.value_locs, self.key_locs)
        for n in range(len(path), -1, -1):
            p = path[:n]
            if p in first:
                return first[p]
            if p in second:
                return second[p]
        return None


def _mark(mark: Any, file: str) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1)


def parse_yaml(text: str, file: str) -> Located:
    """Parse one YAML document into data plus location tables. Raises SpecError on bad YAML."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _mark(mark, file) if mark else Loc(file, 1, 1)
        problem = exc.problem or str(exc)
        raise SpecError([Issue((), f"invalid YAML: {problem}; fix the syntax at this position", loc)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Issue((), f"invalid YAML: {exc}", Loc(file, 1, 1))]) from None
    out = Located(data=None, files=[file])
    if node is None:
        return out
    issues: list[Issue] = []
    constructor = yaml.SafeLoader("")  # pure-Python constructor for scalars
    out.data = _build(node, (), file, out, issues, constructor, 0)
    if issues:
        # A problem inside an anchored map is met once per alias that merges it: say it once.
        raise SpecError(list({(i.message, i.loc): i for i in issues}.values()))
    return out


def _build(node, path: Path, file: str, out: Located, issues: list[Issue], ctor, depth: int) -> Any:
    out.value_locs[path] = _mark(node.start_mark, file)
    if depth > MAX_DEPTH:
        issues.append(Issue(path, f"nesting deeper than {MAX_DEPTH} levels (a recursive alias?)", out.value_locs[path]))
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key, (key_node, value_node) in _entries(node, path, file, issues, ctor, ()).items():
            out.key_locs[path + (key,)] = _mark(key_node.start_mark, file)
            result[key] = _build(value_node, path + (key,), file, out, issues, ctor, depth + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), file, out, issues, ctor, depth + 1) for i, item in enumerate(node.value)]
    try:
        return ctor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        issues.append(Issue(path, f"cannot read this value: {problem}", out.value_locs[path]))
        return None


MERGE_TAG = "tag:yaml.org,2002:merge"
VALUE_TAG = "tag:yaml.org,2002:value"  # a plain `=` key; PyYAML reads it as the string "="


def _entries(node, path: Path, file: str, issues: list[Issue], ctor, merging: tuple) -> dict[str, tuple]:
    """A mapping's effective (key node, value node) pairs, by key, in PyYAML's order.

    YAML 1.1 merge keys: `<<: *base` copies the keys of `base` that the map does not set itself
    (explicit keys win, whatever their position); `<<: [*a, *b]` merges several maps, and a key in an
    earlier one wins over a later one. The nodes are not changed (PyYAML's `flatten_mapping` rewrites
    them, which breaks a second visit through another alias), so each key keeps the location where
    its winning value is written. Only the map's own keys can be duplicates.
    """
    own: dict[str, tuple] = {}
    sources: list = []
    merge_key = None
    for key_node, value_node in node.value:
        key_loc = _mark(key_node.start_mark, file)
        if key_node.tag == MERGE_TAG:
            if merge_key is not None:
                issues.append(Issue(path, f"two `<<` merge keys (first at line {merge_key.line}); write one "
                                    "`<<: [*a, *b]` (earlier maps win)", key_loc))
                continue
            merge_key = key_loc
            sources = _merge_sources(value_node, path, file, issues)
            continue
        key = _key(key_node, path, key_loc, issues, ctor)
        if key is None:
            continue
        if key in own:
            first = _mark(own[key][0].start_mark, file)
            issues.append(Issue(path + (key,), f"duplicate key {key!r} (first at line {first.line}); "
                                "YAML would silently keep the last one, so remove one of them", key_loc))
            continue
        own[key] = (key_node, value_node)
    merged: dict[str, tuple] = {}
    for source in sources:
        if any(source is m for m in (*merging, node)):
            issues.append(Issue(path, "this map merges itself (`<<: *x` inside the map anchored as `x`); "
                                "merge another anchor", _mark(source.start_mark, file)))
            continue
        for key, pair in _entries(source, path, file, issues, ctor, (*merging, node)).items():
            merged.setdefault(key, pair)  # an earlier map in `<<: [*a, *b]` wins
    return {**{k: own.get(k, pair) for k, pair in merged.items()}, **own}


def _merge_sources(value_node, path: Path, file: str, issues: list[Issue]) -> list:
    """The maps a `<<` key merges: one map, or a list of maps."""
    items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
    bad = [n for n in items if not isinstance(n, yaml.MappingNode)]
    if bad:
        issues.append(Issue(path, f"invalid YAML merge key: `<<` takes a map (`<<: *defaults`) or a list of maps "
                            f"(`<<: [*a, *b]`), not a {bad[0].id}", _mark(bad[0].start_mark, file)))
        return []
    return items


def _key(key_node, path: Path, key_loc: Loc, issues: list[Issue], ctor) -> str | None:
    """A map key as text; None (with an issue) when it is a list, a map or unreadable."""
    if not isinstance(key_node, yaml.ScalarNode):
        issues.append(Issue(path, "a key must be a plain name, not a list or map", key_loc))
        return None
    if key_node.tag == VALUE_TAG:
        return key_node.value
    try:
        key = ctor.construct_object(key_node)
    except yaml.YAMLError as exc:
        issues.append(Issue(path, f"cannot read this key: {getattr(exc, 'problem', None) or exc}", key_loc))
        return None
    return key if isinstance(key, str) else str(key)  # `1: x` or `true: y` -- keep it; validation will name it


def deep_merge(base: Any, over: Any) -> Any:
    """Maps merge key by key (recursively); anything else in `over` replaces `base` whole."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = deep_merge(base[k], v) if k in base else v
        return merged
    return over


def _merge_locs(base: Located, child: Located) -> tuple[dict, dict]:
    """Location tables after merging child over base: a path the child wrote replaces the base's
    whole subtree when the child's value is not a map (lists are replaced whole)."""
    values = dict(base.value_locs)
    keys = dict(base.key_locs)
    replaced = [p for p in child.value_locs if not isinstance(_get(child.data, p), dict)]
    for p in replaced:
        n = len(p)
        for table in (values, keys):
            for q in [q for q in table if len(q) > n and q[:n] == p]:
                del table[q]
    values.update(child.value_locs)
    keys.update(child.key_locs)
    return values, keys


def _get(data: Any, path: Path) -> Any:
    for p in path:
        data = data[p]
    return data


def load_spec_file(path: str | FsPath, *, display: str | None = None, _chain: tuple[str, ...] = ()) -> Located:
    """Load a spec file and everything it `extends`, merged. Errors are located, never tracebacks."""
    fs = FsPath(path)
    name = display or str(path)
    key = str(fs.resolve())
    if key in _chain:
        cycle = " -> ".join([*(_c for _c in _chain[_chain.index(key):]), key])
        raise SpecError([Issue(("extends",), f"`extends` forms a cycle ({cycle}); remove one of the links",
                               Loc(name, 1, 1))])
    try:
        text = fs.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Issue((), f"spec file not found: {name}", None)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Issue((), f"cannot read spec file {name}: {exc}", None)]) from None
    located = parse_yaml(text, name)
    if located.data is None:
        raise SpecError([Issue((), "the spec is empty; start from specs/quickstart.yaml", Loc(name, 1, 1))])
    if not isinstance(located.data, dict):
        raise SpecError([Issue((), "the spec must be a map of keys (name:, model:, stages: ...)", Loc(name, 1, 1))])
    parents = located.data.pop("extends", None)
    if parents is None:
        return located
    ext_loc = located.value_locs.get(("extends",))
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise SpecError([Issue(("extends",), "must be a file name or a list of file names", ext_loc)])
    merged: Located | None = None
    for i, parent in enumerate(parents):
        parent_fs = fs.parent / parent
        parent_name = os.path.normpath(FsPath(name).parent / parent)
        if not parent_fs.is_file():
            raise SpecError([Issue(("extends",) if len(parents) == 1 else ("extends", i),
                                   f"base spec {parent!r} not found (looked for {parent_name}); "
                                   "paths are relative to the file that extends them",
                                   located.value_locs.get(("extends", i), ext_loc))])
        base = load_spec_file(parent_fs, display=parent_name, _chain=(*_chain, key))
        if merged is None:
            merged = base
        else:
            values, keys = _merge_locs(merged, base)
            merged = Located(deep_merge(merged.data, base.data), values, keys, merged.files + base.files)
    assert merged is not None
    for table in (located.value_locs, located.key_locs):
        for p in [p for p in table if p and p[0] == "extends"]:
            del table[p]
    values, keys = _merge_locs(merged, located)
    return Located(deep_merge(merged.data, located.data), values, keys, [name, *merged.files])
