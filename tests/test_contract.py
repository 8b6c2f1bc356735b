"""The typed job contract: every field a job config carries is read by runtime code, and the spec's
closed choices match the runtime's registries.

How the first test works (an AST scan, not a run): it collects every field of every model reachable
from the job models (`rlspec.compiler.jobs.CONFIGS`, spec sub-models included) and every attribute
name read anywhere under `runtime/`. A field whose name is never read as an attribute is dead: the
compiler writes it into job files (changing job ids) but no job honours it. A read is an attribute
(`cfg.k`) or a string subscript (`cell["stages"]`: the report tabulates its grid layout as rows).
The scan matches names, not types, so a field passes when any object's attribute of that name is
read; `IMPLICIT` lists the fields that are honoured without a read, each with the reason.
"""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from rlspec.compiler import jobs, spec

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"

# (model, field) -> why no runtime code needs to read it
IMPLICIT = {
    ("Optimizer", "name"): "a one-choice Literal (adamw); the trainer builds torch AdamW",
    ("AnswerExtraction", "math"): "a one-choice Literal (boxed): the math grader extracts boxed answers",
    ("AnswerExtraction", "code"): "a one-choice Literal (last_python_block): the code grader's extraction",
}


def _models(tp, seen: dict[str, type[BaseModel]]) -> None:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        _models(typing.get_args(tp)[0], seen)
    elif origin in (typing.Union, types.UnionType, list, dict, tuple):
        for arg in typing.get_args(tp):
            _models(arg, seen)
    elif isinstance(tp, type) and issubclass(tp, BaseModel) and tp.__name__ not in seen:
        seen[tp.__name__] = tp
        for f in tp.model_fields.values():
            _models(f.annotation, seen)


def job_fields() -> set[tuple[str, str]]:
    seen: dict[str, type[BaseModel]] = {}
    for model in jobs.CONFIGS.values():
        _models(model, seen)
    return {(name, f) for name, model in seen.items() for f in model.model_fields}


def runtime_attributes() -> set[str]:
    names: set[str] = set()
    for path in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str):
                names.add(node.slice.value)
    return names


def test_every_job_config_field_is_read_by_the_runtime():
    read = runtime_attributes()
    dead = sorted((m, f) for m, f in job_fields() if f not in read and (m, f) not in IMPLICIT)
    assert not dead, f"job config fields no runtime code reads (honour them, or drop them from the job): {dead}"


def test_the_implicit_list_names_real_fields():
    assert set(IMPLICIT) <= job_fields()


def test_job_configs_have_no_defaults():
    """A job model field without a default must be written by the compiler: nothing is invented."""
    for kind, model in jobs.CONFIGS.items():
        seen: dict[str, type[BaseModel]] = {}
        _models(model, seen)
        for name, m in seen.items():
            if m.__module__ != jobs.__name__:
                continue  # the spec's own sub-models keep the spec's documented defaults
            own = m.__annotations__  # a job model extending a spec model keeps the spec's fields as they are
            defaulted = [f for f, info in m.model_fields.items() if f in own and not info.is_required()]
            assert not defaulted, f"{kind}: {name} has defaults {defaulted}"


def _literal(model: type[BaseModel], field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


def test_spec_choices_match_the_runtime_registries():
    from rlspec.runtime.data.filters import FILTERS
    from rlspec.runtime.grpo import algos
    assert _literal(spec.Algorithm, "loss_agg") == set(algos.AGGREGATIONS)
    assert _literal(spec.KL, "estimator") == set(algos.KL_ESTIMATORS)
    kinds = {typing.get_args(t.model_fields["kind"].annotation)[0]
             for t in typing.get_args(typing.get_args(spec.Filter)[0])}
    assert kinds == set(FILTERS)
