"""Mutation fuzzing over the shipped specs: whatever the input, the only exception that escapes is
the project's own SpecError (a located, readable error), never a traceback.

Two mutators: text-level (delete, duplicate or corrupt lines, YAML syntax noise) and data-level
(replace, delete, rename or add a key anywhere in the tree, with values of any type). A spec that
still validates must also plan and render; a message never shows pydantic's own wording.
"""

from __future__ import annotations

import os
import random
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlspec.compiler.errors import SpecError
from rlspec.compiler.plan import build_plan
from rlspec.compiler.render import render
from rlspec.compiler.validate import check_file

from conftest import REPO, SPECS

BASES = [p for p in sorted(SPECS.glob("*.yaml"))] + [REPO / "tests/compiler/data/small-grid.yaml"]
TEXTS = {p.name: p.read_text() for p in BASES}
NOISE = ["{", "}", "[", "]", ":", "- ", "  ", "\t", "&a", "*a", "!!python/object:os.system", "<<: *x", "'", '"',
         "null", "~", "1e400", "-", "#", "%YAML 1.1", "...", "---", "?", "|", ">", "\\u0000", "é"]
LINE = re.compile(r"^(\S+:\d+:\d+|<spec>) \S.*?: \S")
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) |
    st.text(max_size=12) | st.sampled_from(["math", "code", "vllm", "stages[0].steps", "0.5", "constant", "per_epoch"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def run_compiler(path) -> None:
    try:
        checked = check_file(path)
    except SpecError as exc:
        assert exc.issues, "a SpecError must carry at least one issue"
        for line in exc.render().splitlines():
            assert LINE.match(line), f"not a located error line: {line!r}"
            assert "Input should" not in line, f"pydantic's bare wording reached the user: {line!r}"
        return
    plan = build_plan(checked.cells, path.parent)
    render(checked, plan, spec_file=str(path))


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


@settings(max_examples=int(os.environ.get("RLSPEC_FUZZ_EXAMPLES", 100)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(sorted(TEXTS)), seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 4))
def test_text_mutations(tmp_path, base, seed, edits):
    rng = random.Random(seed)
    lines = TEXTS[base].splitlines()
    for _ in range(edits):
        i = rng.randrange(len(lines))
        op = rng.randrange(4)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(NOISE) + lines[i][pos:]
        else:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    path = tmp_path / "fuzz.yaml"
    path.write_text("\n".join(lines) + "\n")
    run_compiler(path)


@settings(max_examples=int(os.environ.get("RLSPEC_FUZZ_EXAMPLES", 120)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(sorted(TEXTS)), pick=st.integers(0, 10**6), value=VALUES,
       op=st.sampled_from(["replace", "delete", "rename", "add"]), word=st.text(min_size=1, max_size=10))
def test_data_mutations(tmp_path, base, pick, value, op, word):
    data = yaml.safe_load(TEXTS[base])
    data.pop("extends", None)  # the mutated file lands in a tmp folder without its base
    all_paths = [p for p in paths(data) if p]
    target = all_paths[pick % len(all_paths)]
    parent = data
    for part in target[:-1]:
        parent = parent[part]
    key = target[-1]
    if op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        parent[word] = parent.pop(key)
    elif op == "add" and isinstance(parent, dict):
        parent[word] = value
    path = tmp_path / "fuzz.yaml"
    try:
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
    except yaml.YAMLError:
        pytest.skip("value not representable in YAML")
    run_compiler(path)
