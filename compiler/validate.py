"""Spec file -> validated grid cells, with every problem located at file:line:col.

Order of work:
1. read the YAML and its `extends` chain (`source.py`), keeping locations;
2. fill each stage's `algorithm` / `rollout` from the top-level defaults (stage keys win);
3. validate with pydantic and turn its errors into located, user-worded issues: what was expected
   and what the field is (its docstring), what was written, and what to write instead; an unknown
   key gets a close spelling, rlspec's name for another framework's key (`errors.FOREIGN_KEYS`),
   or the block it belongs in;
4. expand the grid: each cell is the raw spec with the axis values set, validated again, so a
   grid value of the wrong type is reported at the grid line that wrote it;
5. cross-field checks (`checks.py`) on every cell, and across cells: a grid axis that changes nothing.
All problems are collected and raised together as one `SpecError`.
"""

from __future__ import annotations

import copy
import itertools
import json
import os.path
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError

from . import checks, checks_data, checks_train  # noqa: F401  (both register their rules on import)
from .errors import (Foreign, Issue, Loc, Path, SpecError, dotted_path, foreign_hint, parse_dotted, show, snippet,
                     suggest, yaml_value)
from .source import Located, deep_merge, load_spec_file
from .spec import Spec
from .walk import (allows_none, bounds, field_at, field_by_loc, generic_path, key_paths, kinds_of, model_at,
                   strip_type, type_at)

STAGE_DEFAULTED = ("algorithm", "rollout")


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its label, the axis values that made it, and the validated spec."""

    index: int
    label: str
    values: dict[str, Any]  # axis name -> value
    spec: Spec


@dataclass
class Checked:
    """The result of checking a spec file: its cells and any warnings."""

    file: str
    cells: list[Cell]
    warnings: list[Issue] = field(default_factory=list)
    base: Spec | None = None  # the spec without grid values


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------


def check_file(path: str | FsPath, *, display: str | None = None, overrides: Sequence[str] = ()) -> Checked:
    """Load, validate and expand a spec. Raises SpecError with every problem found. `overrides` are
    command-line `PATH=VALUE` settings (`rlspec ... --set`), applied after `extends` and located at
    the argument that wrote them."""
    located = load_spec_file(path, display=display)
    # Top-level `x-...` keys hold YAML anchors to reuse (as in docker-compose); they are not settings.
    located.data = {k: v for k, v in located.data.items() if not str(k).startswith("x-")}
    _rebase_local_paths(located, FsPath(path).parent, display or str(path))
    issues: list[Issue] = _apply_overrides(located, overrides)  # reported with everything else
    base = _validate(located, located.data, issues)
    if base is None:
        # Still report the cross-field problems: drop the keys that failed and check the rest.
        repaired = _repair(located.data, issues)
        if repaired is not None:
            failed = [i.path for i in issues]
            found = (_locate(located, i) for i in checks.run(repaired) if i.severity == "error")
            issues.extend(i for i in found if not _about_removed(i, failed))
        raise SpecError(_dedupe(issues))
    cells = _expand(located, base, issues)
    for cell in cells:
        issues.extend(_locate(located, i) for i in checks.run(cell.spec))
    issues.extend(_missing_local_files(located, base, FsPath(path).parent))
    issues.extend(_locate(located, i) for i in checks_data.local_source_issues(base, FsPath(path).parent))
    for cell in cells:
        issues.extend(_reward_files(located, cell.spec, FsPath(path).parent))
        issues.extend(_chat_template_missing(located, cell.spec, FsPath(path).parent))
    issues = _dedupe(issues)
    if any(i.severity == "error" for i in issues):
        raise SpecError(issues)
    warnings = sorted((i for i in issues if i.severity == "warning"), key=Issue.sort_key)
    return Checked(file=display or str(path), cells=cells, warnings=warnings, base=base)


def _apply_overrides(located: Located, overrides: Sequence[str]) -> list[Issue]:
    """Set each `PATH=VALUE` (the grid's path syntax; the value parsed as YAML) in the spec data.
    The value's location becomes the argument (`--set #2`), so a bad value is reported there."""
    import yaml
    issues = []
    for k, text in enumerate(overrides, 1):
        where = Loc(f"--set #{k}", 0, 0)
        path_text, sep, value_text = text.partition("=")
        path_text = path_text.strip()
        if not sep or not path_text:
            issues.append(Issue((), f"{text!r} is not PATH=VALUE; write e.g. `--set seed=2` or "
                               "`--set stages[math-8k].steps=10`", where))
            continue
        resolved, problem = _check_axis_path(located.data, path_text)
        if problem is not None or resolved is None:
            try:
                written = parse_dotted(path_text)
            except ValueError:
                written = ()
            issues.append(Issue(written, str(problem), where))
            continue
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else None
        except yaml.YAMLError as exc:
            issues.append(Issue(resolved, f"the value {value_text!r} is not YAML ({exc.problem or exc}); "
                                "quote text that YAML would misread", where))
            continue
        located.data = set_path(located.data, resolved, value)
        for table in (located.value_locs, located.key_locs):  # the file's locations under it are gone
            for old in [p for p in table if p[:len(resolved)] == resolved]:
                del table[old]
        located.value_locs[resolved] = where
        located.key_locs[resolved] = where
    return issues


def _rebase_local_paths(located: Located, root_dir: FsPath, root_name: str) -> None:
    """A relative data path is relative to the file that wrote it; rewrite those written in an
    `extends` base so that all are relative to the spec being compiled."""
    for path, loc in located.value_locs.items():
        is_uri = path and path[-1] == "uri" or len(path) >= 2 and path[-2] == "extra_files"
        is_model = _names_a_model(path)
        is_reward = bool(path) and path[-1] == "python" and "reward" in path
        if not (is_uri or is_model or is_reward) or loc.file == root_name:
            continue
        try:
            node = located.data
            for part in path[:-1]:
                node = node[part]
            value = node[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(value, str) or "://" in value or os.path.isabs(value):
            continue
        if is_reward:  # `file.py:function`: the file moves, the function name stays
            file_part, sep, function = value.rpartition(":")
            node[path[-1]] = FsPath(os.path.relpath(FsPath(loc.file).parent / file_part, root_dir)).as_posix() + sep + function
            continue
        written_in = FsPath(loc.file).parent
        # a model may be a hub id (`org/name`): only a path that says it is one, or names a folder, moves
        if is_model and not (value.startswith(("./", "../")) or (written_in / value).is_dir()):
            continue
        node[path[-1]] = FsPath(os.path.relpath(written_in / value, root_dir)).as_posix()


def _names_a_model(path: Path) -> bool:
    """`model.path`, `model.tokenizer` and a pass-rate filter's teacher `policy`."""
    return tuple(path) in (("model", "path"), ("model", "tokenizer")) or (
        len(path) == 5 and path[0] == "datasets" and path[2] == "filters" and path[4] == "policy")


def _missing_local_files(located: Located, spec: Spec, spec_dir: FsPath) -> list[Issue]:
    """Local data files are read by jobs later; say now if one is not there yet."""
    found = []
    places = [(path + ("uri",), source.uri) for path, source in checks.source_places(spec)]
    for path, uri in places:
        if "://" not in uri and not (spec_dir / uri).is_file():
            found.append(Issue(path, f"local file {uri!r} does not exist (relative to {spec_dir.as_posix() or '.'}); "
                               "the job that reads it will fail until it does", located.loc(path), "warning"))
    return found


def reward_term_places(spec: Spec) -> list[tuple[Path, Any]]:
    """Every reward term of the spec with its path (datasets, then benchmarks)."""
    return [(p + ("reward", k), t) for p, block in checks.domain_places(spec) for k, t in enumerate(block.reward or [])]


def _reward_files(located: Located, spec: Spec, spec_dir: FsPath) -> list[Issue]:
    """A `python:` reward names a file that exists, parses, and defines the function at module level
    (read with `ast`: compiling never runs the user's code)."""
    import ast
    found = []
    for path, term in reward_term_places(spec):
        if term.python is None:
            continue
        at = path + ("python",)
        file_part, _, function = term.python.rpartition(":")
        where = spec_dir / file_part
        problem = None
        if not where.is_file():
            problem = (f"reward file {file_part!r} does not exist (relative to {spec_dir.as_posix() or '.'}); "
                       "the path is relative to the spec file")
        else:
            try:
                tree = ast.parse(where.read_bytes(), filename=str(where))
            except (SyntaxError, ValueError) as exc:
                problem = f"reward file {file_part!r} does not parse ({exc}); fix the file"
            else:
                defined = sorted(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
                if function not in defined and not _assigns(tree, function):
                    problem = (f"{file_part!r} defines no function {function!r} at module level"
                               + suggest(function, defined) + (f" (functions: {', '.join(defined)})" if defined else ""))
        if problem:
            found.append(Issue(at, problem, located.loc(at)))
    return found


def _assigns(tree: Any, name: str) -> bool:
    """`name = ...` at module level (a reward made by a factory or an import alias)."""
    import ast
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def _chat_template_missing(located: Located, spec: Spec, spec_dir: FsPath) -> list[Issue]:
    """`use_chat_template: true` with a local tokenizer folder that carries no chat template: every
    prompt would fail to render. Hub tokenizers are not looked up (compiling needs no network)."""
    m = spec.model
    name = m.tokenizer or m.path
    wants = [p + ("prompt", "use_chat_template") for p, b in checks.domain_places(spec)
             if b.prompt is not None and b.prompt.use_chat_template]
    if m.prompt.use_chat_template:
        wants.insert(0, ("model", "prompt", "use_chat_template"))
    if not wants or name is None or m.from_scratch is not None:
        return []
    folder = spec_dir / name if not os.path.isabs(name) else FsPath(name)
    if not folder.is_dir() or has_chat_template(folder):
        return []
    return [Issue(at, f"the tokenizer in {name!r} has no chat template (no `chat_template` in tokenizer_config.json, "
                  "no chat_template.jinja), so prompts cannot be rendered with one; write a `template` with "
                  "`{question}` and set `use_chat_template: false`, or use a tokenizer that has one", located.loc(at))
            for at in wants]


def has_chat_template(folder: FsPath) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("chat_template"))


# ------------------------------------------------------------------------------------------
# stage defaults
# ------------------------------------------------------------------------------------------


def with_stage_defaults(raw: dict) -> dict:
    """Each stage's `algorithm` and `rollout` = top-level block deep-merged with the stage's own."""
    if not isinstance(raw, dict) or not isinstance(raw.get("stages"), list):
        return raw
    out = dict(raw)
    stages = []
    for stage in raw["stages"]:
        if isinstance(stage, dict):
            stage = dict(stage)
            for key in STAGE_DEFAULTED:
                top = raw.get(key) if isinstance(raw.get(key), dict) else {}
                own = stage.get(key, {})
                stage[key] = deep_merge(top, own) if isinstance(own, dict) else own
        stages.append(stage)
    out["stages"] = stages
    return out


# ------------------------------------------------------------------------------------------
# pydantic -> located issues
# ------------------------------------------------------------------------------------------


def _validate(located: Located, raw: Any, issues: list[Issue], *, override_locs: dict | None = None) -> Spec | None:
    data = with_stage_defaults(raw)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            issues.append(_issue_from_pydantic(located, data, err, override_locs or {}))
        return None


def _user_path(data: Any, loc: tuple, err_type: str) -> Path:
    """Drop pydantic's union tags and wrapper names from `loc`, keeping what the user wrote."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(data, dict) and isinstance(part, str) and part in data:
            data = data[part]
            out.append(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            out.append(part)
        elif last and err_type == "missing" and isinstance(part, str) and isinstance(data, dict):
            out.append(part)
    return tuple(out)


def _issue_from_pydantic(located: Located, data: Any, err: dict, override_locs: dict) -> Issue:
    kind = err["type"]
    at = _user_path(data, err["loc"], kind)  # where the value stands in `data` (stages hold their defaults)
    path = at if any(at[: len(p)] == p for p in override_locs) else _origin(located, at)
    value = _written(data, at, err)
    if kind == "extra_forbidden":
        return Issue(path, _unknown_key(data, at, value), _where(located, path, override_locs, key=True))
    if kind == "union_tag_invalid":
        kinds = sorted(kinds_of(type_at(Spec, at, data) or object))
        got = value.get("kind") if isinstance(value, dict) else value
        text = f"unknown kind {got!r}" + suggest(str(got), kinds)
        if kinds:
            text += f"; valid kinds: {', '.join(kinds)}"
        return Issue(path + ("kind",), text, _where(located, path + ("kind",), override_locs))
    if kind == "union_tag_not_found":
        kinds = sorted(kinds_of(type_at(Spec, at, data) or object))
        return Issue(path, f"missing `kind:`; set one of: {', '.join(kinds)}", _where(located, path, override_locs))
    if kind == "missing" and err["loc"] and isinstance(err["loc"][-1], int):  # a fixed-length list, too short
        _, tp = field_by_loc(Spec, err["loc"][:-1])
        size = len(typing.get_args(strip_type(tp))) if tp is not None else err["loc"][-1] + 1
        example = _example(kind, field_at(Spec, at, data), value)
        text = f"expected a list of {size} values, got {show(value)}" + (f"; write e.g. `{example}`" if example else "")
        return Issue(path, text, _where(located, path, override_locs))
    if kind == "missing":
        what = _what(_info(field_at(Spec, at, data)))
        return Issue(path, f"required key missing{f' ({what})' if what else ''}; add `{path[-1]}:` here",
                     _where(located, path[:-1], override_locs))
    if kind == "literal_error":
        return Issue(path, _not_a_choice(data, at, err, value), _where(located, path, override_locs))
    if kind == "string_pattern_mismatch":
        text = (f"{value!r} is not a valid name: use letters, digits, `_`, `.` or `-`, "
                "starting with a letter or digit (it becomes part of file and job names)")
        return Issue(path, text, _where(located, path, override_locs))
    return Issue(path, _wrong_value(data, at, err, value), _where(located, path, override_locs))


def _written(data: Any, at: Path, err: dict) -> Any:
    """The value as the user wrote it: `true`, not the text "true" the bool guard hands pydantic."""
    node = data
    for part in at:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return err.get("input")
    return node


# --- unknown keys ---------------------------------------------------------------------------

MAX_LISTED_KEYS = 16  # "valid keys here: ..." only when the list is short enough to read


def _unknown_key(data: Any, at: Path, value: Any) -> str:
    """Why a key is unknown and what to write: another framework's name for an rlspec setting,
    a close spelling, or a key of another block; else the valid keys."""
    key = str(at[-1])
    parent = model_at(Spec, at[:-1], data)
    fields = sorted(parent.model_fields) if parent else []
    here = generic_path(Spec, at[:-1], data)
    foreign = foreign_hint(key, parent.__name__ if parent else None)
    if foreign is not None:
        return f"unknown key {key!r}: " + _foreign_text(foreign, here, value)
    close = suggest(key, fields)
    elsewhere = "" if close else _belongs_elsewhere(key, here, value)
    text = f"unknown key {key!r}" + (close or elsewhere)
    if fields and not elsewhere:
        text += (f"; valid keys here: {', '.join(fields)}" if len(fields) <= MAX_LISTED_KEYS else
                 f"; {parent.__name__} has {len(fields)} keys (`rlspec schema` lists them)")
    return text


def _foreign_text(foreign: Foreign, here: str, value: Any) -> str:
    if foreign.note:
        return f"{foreign.origin}'s name; {foreign.note}"
    return f"{foreign.origin}'s name; rlspec's is `{foreign.target}`: {_where_to_write(foreign.target, here, value)}"


def _belongs_elsewhere(key: str, here: str, value: Any) -> str:
    """` here: it belongs at `rollout.vllm.gpu_memory_utilization`; write ...` for a key of the
    schema written in the wrong block; `` when the key exists nowhere."""
    places = [p for p in key_paths(Spec).get(key, []) if p != f"{here}.{key}".lstrip(".")]
    if not places:
        return ""
    inside = [p for p in places if here and p.startswith(here + ".")]
    best = (inside or places)[0]
    others = [p for p in places if p != best][:2]
    also = f" (or {', '.join(f'`{o}`' for o in others)})" if others else ""
    return f" here: it belongs at `{best}`{also}; {_where_to_write(best, here, value)}"


def _where_to_write(target: str, here: str, value: Any) -> str:
    """`write `kl: {coef: 0.1}` here` when `target` lies below the block the key was written in."""
    candidates = [target] + ([f"stages[*].{target}"] if target.split(".")[0] in STAGE_DEFAULTED else [])
    for candidate in candidates:
        if here and candidate.startswith(here + "."):
            return f"write `{snippet(candidate[len(here) + 1:], value)}` here"
    if target.startswith("stages[*]."):
        return f"set `{snippet(target[len('stages[*].'):], value)}` in each stage"
    if not here:
        return f"write `{snippet(target.replace('.<name>', '.NAME'), value)}`"
    return f"move it to `{target}`"


# --- wrong values -------------------------------------------------------------------------------


def _not_a_choice(data: Any, at: Path, err: dict, value: Any) -> str:
    expected = err.get("ctx", {}).get("expected", "")
    options = [o.strip().strip("'\"") for o in expected.replace(" or ", ",").split(",") if o.strip()]
    what = _what(_info(field_at(Spec, at, data)))
    return f"{value!r} is not allowed" + suggest(str(value), options) + f"; use {expected}" + (
        f" ({what})" if what else "")


def _wrong_value(data: Any, at: Path, err: dict, value: Any) -> str:
    """`expected <type and range> (<what the field is>), got <value>; write e.g. `key: example``."""
    deep, tp = field_by_loc(Spec, err["loc"])
    user = field_at(Spec, at, data)
    own = deep is not None and tp is deep.annotation  # not a list item: the field's own metadata applies
    limits = bounds(tp, deep.metadata if own else ()) if tp is not None else {}
    limits = limits or {k: v for k, v in err.get("ctx", {}).items() if k in ("ge", "gt", "le", "lt")}
    nullable = user is not None and allows_none(user[1].annotation) and not isinstance(at[-1], int)
    noun = _noun(err, tp, limits, nullable)
    what = _what(deep) or _what(_info(user))  # the innermost docstring: ConstantTemperature.value's
    text = f"expected {noun}{f' ({what})' if what else ''}, got {_got(err, value)}"
    example = _example(err["type"], user, value)
    return text + (f"; write e.g. `{example}`" if example else "")


_NOUNS = {"int": "a whole number", "float": "a number", "bool": "true or false", "string": "a text",
          "list": "a list", "tuple": "a list", "dict": "a map", "date": "a date (YYYY-MM-DD)",
          "finite": "a finite number"}


def _noun(err: dict, tp: Any, limits: dict, nullable: bool) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind in ("too_short", "too_long"):
        count = ctx["min_length"] if kind == "too_short" else ctx["max_length"]
        many = ("entry" if count == 1 else "entries") if ctx.get("field_type") == "Dictionary" else (
            "item" if count == 1 else "items")
        return f"{'at least' if kind == 'too_short' else 'at most'} {count} {many}"
    if kind in ("string_too_short", "string_too_long"):
        return "a non-empty text" if ctx.get("min_length") == 1 else (
            f"a text of at most {ctx.get('max_length')} characters")
    base = _type_noun(kind, tp)
    if limits:
        base += " " + _range(limits)
    return base + (" or null" if nullable else "")


def _type_noun(kind: str, tp: Any) -> str:
    inner = strip_type(tp)
    members = kinds_of(tp) if tp is not None else {}
    if members:
        number = "constant" in members and "value" in members["constant"].model_fields
        return ("a number or " if number else "") + f"a map with `kind:` one of {', '.join(sorted(members))}"
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return f"a map of keys ({', '.join(inner.model_fields)})"
    family = kind.split("_")[0]
    if family in _NOUNS:
        return _NOUNS[family]
    return {int: "a whole number", float: "a number", bool: "true or false", str: "a text"}.get(inner, "a value")


def _range(limits: dict) -> str:
    def num(x: float) -> str:
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else yaml_value(float(x))
    low = ("[", num(limits["ge"])) if "ge" in limits else ("(", num(limits["gt"])) if "gt" in limits else None
    high = (num(limits["le"]), "]") if "le" in limits else (num(limits["lt"]), ")") if "lt" in limits else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low:
        return f"{'≥' if low[0] == '[' else '>'} {low[1]}"
    return f"{'≤' if high[1] == ']' else '<'} {high[0]}"


def _got(err: dict, value: Any) -> str:
    ctx = err.get("ctx", {})
    if err["type"] == "too_short":
        return "none" if not ctx.get("actual_length") else str(ctx["actual_length"])
    if err["type"] == "too_long":
        return str(ctx.get("actual_length"))
    return show(value)


def _info(found: tuple[str, Any] | None) -> Any:
    return found[1] if found is not None else None


def _what(info: Any) -> str:
    """The first sentence of a field's docstring (its FieldInfo's description): what the setting is."""
    if info is None or not info.description:
        return ""
    text = " ".join(info.description.split())
    first = re.split(r"(?<=[a-z0-9)])\. ", text, maxsplit=1)[0].rstrip(".")
    if len(first) <= WHAT_LENGTH:
        return first
    cut = first[: WHAT_LENGTH - 4].rsplit(" ", 1)[0]
    while cut.count("(") > cut.count(")"):  # never stop inside a parenthesis
        cut = cut[: cut.rindex("(")].rstrip()
    return cut.rstrip(",;:") + " ..."


WHAT_LENGTH = 100  # characters of a field's docstring quoted in a message


def _example(kind: str, user: tuple[str, Any] | None, value: Any) -> str | None:
    """`key: value` that would be accepted: the user's scalar in a list, the user's number in a block
    or quoted as text, else the field's default; None when there is nothing sensible to show."""
    if user is None:
        return None
    name, info = user
    if kind == "list_type" and not isinstance(value, (dict, list)):
        return f"{name}: [{yaml_value(value)}]"
    model = strip_type(info.annotation)
    if kind == "model_type" and isinstance(model, type) and issubclass(model, BaseModel):
        return _as_block(name, model, value)
    if kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{name}: \"{value}\""
    default = None if info.is_required() else info.default
    if isinstance(default, BaseModel) and "value" in type(default).model_fields:  # a constant schedule
        default = default.value
    if isinstance(default, (bool, int, float)) or isinstance(default, str) and default:
        return f"{name}: {yaml_value(default)}"
    if isinstance(default, (list, tuple)) and default and all(isinstance(v, (int, float, str)) for v in default):
        return f"{name}: {yaml_value(default)}"
    return None


def _as_block(name: str, model: type[BaseModel], value: Any) -> str | None:
    """`kl: 0.1` -> `kl: {coef: 0.1}`: the user's number put into the block's first numeric key."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        fits = (int, float) if isinstance(value, int) else (float,)
        for field_name, info in model.model_fields.items():
            if strip_type(info.annotation) in fits:
                return f"{name}: {{{field_name}: {yaml_value(value)}}}"
    return None


def _where(located: Located, path: Path, override_locs: dict, *, key: bool = False) -> Loc | None:
    for n in range(len(path), -1, -1):
        if path[:n] in override_locs:
            return override_locs[path[:n]]
    return located.loc(_origin(located, path), key=key)


def _origin(located: Located, path: Path) -> Path:
    """The path the user actually wrote for a stage value inherited from a top-level default:
    stages[1].rollout.temperature -> rollout.temperature when stage 1 does not set it."""
    if len(path) >= 3 and path[0] == "stages" and path[2] in STAGE_DEFAULTED:
        written = any(p[: len(path)] == path for p in located.value_locs)
        if not written and any(p[: len(path) - 2] == path[2:] for p in located.value_locs):
            return path[2:]
    return path


def _locate(located: Located, issue: Issue) -> Issue:
    if issue.loc is not None:
        return issue
    path = _origin(located, issue.path)
    return Issue(path, issue.message, located.loc(path), issue.severity)


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set = set()
    out = []
    for i in issues:
        # One line per place in the file: a YAML anchor used twice gives one message, not two.
        key = (i.message, i.loc, i.severity) if i.loc is not None else (i.path, i.message, i.severity)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def _repair(raw: Any, issues: list[Issue], rounds: int = 4) -> Spec | None:
    """Best effort: remove the map keys that failed validation (so defaults apply) until the spec
    validates; None if that does not converge. Only used to run the cross-field checks anyway."""
    data = copy.deepcopy(raw)
    bad = [i.path for i in issues]
    for _ in range(rounds):
        for path in bad:
            _delete_deepest_key(data, path)
        found: list[Issue] = []
        spec = _validate(Located(data), data, found)
        if spec is not None:
            return spec
        bad = [i.path for i in found]
    return None


def _about_removed(issue: Issue, failed: list[Path]) -> bool:
    """Whether a check on the repaired spec is about a key removed because it failed (the check saw
    its default): `stages[1]: set exactly one of `steps` and `epochs`` after `steps: 0` failed."""
    n = len(issue.path)
    return any(f == issue.path or len(f) > n and f[:n] == issue.path and f"`{f[n]}`" in issue.message
               for f in failed)


def _delete_deepest_key(data: Any, path: Path) -> None:
    cut = max((n for n, part in enumerate(path) if isinstance(part, str)), default=None)
    if cut is None:
        return
    node = data
    for part in path[:cut]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(path[cut], None)


# ------------------------------------------------------------------------------------------
# grid expansion
# ------------------------------------------------------------------------------------------


def resolve_path(raw: dict, path: Path) -> Path:
    """Replace stage / dataset names in brackets by list indices: stages[math-8k] -> stages[0]."""
    out: list[str | int] = []
    node: Any = raw
    for part in path:
        if isinstance(part, str) and isinstance(node, list):
            idx = next((i for i, s in enumerate(node) if isinstance(s, dict) and s.get("name") == part), None)
            if idx is None:
                names = [s.get("name") for s in node if isinstance(s, dict)]
                raise KeyError(f"no entry named {part!r} (names: {', '.join(map(str, names))})")
            part = idx
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int):
            node = node[part] if -len(node) <= part < len(node) else None
        else:
            node = None
    return tuple(out)


def set_path(raw: dict, path: Path, value: Any) -> dict:
    """A copy of raw with `value` at path; missing maps on the way are created. Only the containers
    along the path are copied (the rest is shared), so a 1,000-cell grid expands quickly."""
    root = dict(raw)
    node: Any = root
    for part, nxt in zip(path[:-1], path[1:]):
        child = node[part] if (isinstance(node, dict) and part in node) or isinstance(node, list) else None
        if isinstance(child, dict):
            child = dict(child)
        elif isinstance(child, list):
            child = list(child)
        else:
            child = {} if isinstance(nxt, str) else []
        node[part] = child
        node = child
    node[path[-1]] = copy.deepcopy(value)
    return root


def _check_axis_path(base_raw: dict, text: str) -> tuple[Path | None, str | None]:
    try:
        parsed = parse_dotted(text)
    except ValueError as exc:
        return None, f"malformed path: {exc}; write it like `stages[1].max_response_tokens`"
    if parsed and parsed[0] in ("grid", "name", "extends"):
        return None, f"`{parsed[0]}` cannot be a grid axis"
    try:
        resolved = resolve_path(base_raw, parsed)
    except KeyError as exc:
        return None, f"path {text!r} does not exist: {exc.args[0]}"
    data = with_stage_defaults(base_raw)
    if type_at(Spec, resolved, data) is None:
        return None, _explain_missing_path(data, resolved, text)
    node: Any = data
    for i, part in enumerate(resolved):
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                size = len(node) if isinstance(node, list) else 0
                return None, (f"path {text!r} does not exist: {dotted_path(resolved[:i]) or 'spec'} has "
                              f"{size} entries, so index {part} is out of range")
            node = node[part]
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return resolved, None


def _explain_missing_path(data: Any, path: Path, text: str) -> str:
    for n in range(len(path)):
        if type_at(Spec, path[: n + 1], data) is None:
            parent = model_at(Spec, path[:n], data)
            fields = sorted(parent.model_fields) if parent else []
            bad = path[n]
            hint = suggest(str(bad), fields)
            return f"path {text!r} does not exist: no field {bad!r} under {dotted_path(path[:n]) or 'the spec'}{hint}"
    return f"path {text!r} does not exist"


def _expand(located: Located, base: Spec, issues: list[Issue]) -> list[Cell]:
    raw = located.data
    if base.grid is None:
        return [Cell(0, "base", {}, base)]
    grid = base.grid
    base_raw = {k: v for k, v in raw.items() if k != "grid"}
    axes: list[tuple[str, Path, list, Path]] = []  # (name, resolved path, values, spec path of the axis)
    for i, axis in enumerate(grid.axes):
        resolved, problem = _check_axis_path(base_raw, axis.path)
        if problem:
            issues.append(Issue(("grid", "axes", i, "path"), problem, located.loc(("grid", "axes", i, "path"))))
            continue
        name = axis.name or _axis_label(resolved)
        axes.append((name, resolved, list(axis.values), ("grid", "axes", i)))
    names = [a[0] for a in axes]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        issues.append(Issue(("grid", "axes"), f"two axes are named {dup!r}; give them distinct `name:`s",
                            located.loc(("grid", "axes"))))
    if issues:
        return []
    if grid.mode == "zip":
        lengths = {len(a[2]) for a in axes}
        if len(lengths) > 1:
            issues.append(Issue(("grid", "mode"), "`zip` needs axes of equal length "
                                f"(got {', '.join(str(len(a[2])) for a in axes)}); use `product` or equalise them",
                                located.loc(("grid", "mode"))))
            return []
        combos = list(zip(*(range(len(a[2])) for a in axes)))
    else:
        combos = list(itertools.product(*(range(len(a[2])) for a in axes)))
    excluded = _exclusions(located, grid, axes, issues)
    cells: list[Cell] = []
    for combo in combos:
        values = {a[0]: a[2][j] for a, j in zip(axes, combo)}
        if any(all(_same(values[k], v) for k, v in ex.items()) for ex in excluded):
            continue
        cell_raw = base_raw
        override_locs: dict[Path, Loc] = {}
        for (name, path, vals, spec_path), j in zip(axes, combo):
            cell_raw = set_path(cell_raw, path, vals[j])
            loc = located.loc(spec_path + ("values", j))
            override_locs[path] = loc
            if path[0] in STAGE_DEFAULTED:  # a top-level default also lands in every stage
                for s in range(len(cell_raw.get("stages", []))):
                    override_locs[("stages", s) + path] = loc
        spec = _validate(located, cell_raw, issues, override_locs=override_locs)
        if spec is not None:
            label = ",".join(f"{k}={_fmt(v, j)}" for k, v, j in zip(values, values.values(), combo))
            cells.append(Cell(len(cells), label, values, spec))
    if len(cells) > 1:
        lands = [(name, path, _lands_at(path, len(base_raw.get("stages", [])))) for name, path, _, _ in axes]
        for issue in checks.axes_without_effect(lands, [(c.values, c.spec) for c in cells]):
            issues.append(Issue(issue.path, issue.message, located.loc(issue.path), issue.severity))
    if len(cells) == 1:  # a one-point grid is the same experiment as no grid
        cells = [Cell(0, "base", {}, cells[0].spec)]
    if not cells and not issues:
        issues.append(Issue(("grid", "exclude"), "every grid cell is excluded; nothing would run",
                            located.loc(("grid", "exclude"))))
    return cells


def _lands_at(path: Path, stages: int) -> list[Path]:
    """Where an axis value lands once stage defaults are merged: its own path and, for a top-level
    `algorithm` / `rollout` value, each stage's copy."""
    copies = [("stages", s) + path for s in range(stages)] if path[0] in STAGE_DEFAULTED else []
    return [path, *copies]


def _exclusions(located: Located, grid, axes, issues: list[Issue]) -> list[dict[str, Any]]:
    by_name = {a[0]: a[0] for a in axes}
    by_path = {dotted_path(a[1]): a[0] for a in axes}
    by_written = {}
    for a, axis in zip(axes, grid.axes):
        by_written[axis.path] = a[0]
    out = []
    for i, ex in enumerate(grid.exclude):
        entry = {}
        for key, value in ex.items():
            name = by_name.get(key) or by_written.get(key) or by_path.get(key)
            if name is None:
                issues.append(Issue(("grid", "exclude", i, key), f"{key!r} is not a grid axis"
                                    + suggest(key, list(by_name) + list(by_written)),
                                    located.loc(("grid", "exclude", i, key), key=True)))
                continue
            entry[name] = value
        out.append(entry)
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _axis_label(path: Path) -> str:
    last = [p for p in path if isinstance(p, str)]
    return last[-1] if last else dotted_path(path)


def _fmt(value: Any, index: int) -> str:
    """A short, readable label for an axis value (lists of named entries by their names)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return "+".join(str(v["name"]) for v in value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return text if len(text) <= 24 else f"#{index}"
    return str(value)
