"""Equivalences the compiler must respect: different ways of writing the same experiment compile
to the same jobs (same ids, same files)."""

from __future__ import annotations

import yaml

from rlspec.compiler.plan import build_plan
from rlspec.compiler.render import render
from rlspec.compiler.validate import check_file

from conftest import MINI


def compiled(path) -> dict[str, str]:
    checked = check_file(path)
    plan = build_plan(checked.cells, path.parent)
    files = render(checked, plan, spec_file="spec.yaml")
    files.pop("context.json")  # holds the spec's folder, which differs between tmp dirs
    return files


def job_ids(path) -> set[str]:
    checked = check_file(path)
    return set(build_plan(checked.cells).jobs)


def test_one_point_grid_equals_no_grid(write_spec):
    plain = write_spec(MINI, "plain.yaml")
    gridded = write_spec(MINI + "grid:\n  axes:\n    - path: stages[1].max_response_tokens\n      values: [2048]\n",
                         "grid.yaml")
    a, b = check_file(plain), check_file(gridded)
    assert len(b.cells) == 1
    # The specs differ only in the `grid` block itself; every job is the same.
    assert job_ids(plain) == job_ids(gridded)
    assert a.cells[0].spec.stages == b.cells[0].spec.stages


def test_key_order_does_not_matter(write_spec):
    data = yaml.safe_load(MINI)

    def reverse(x):
        if isinstance(x, dict):
            return {k: reverse(x[k]) for k in reversed(list(x))}
        if isinstance(x, list):
            return [reverse(v) for v in x]
        return x
    a = write_spec(MINI, "a/spec.yaml")
    b = write_spec(yaml.safe_dump(reverse(data), sort_keys=False), "b/spec.yaml")
    assert list(yaml.safe_load(b.read_text())) != list(data)
    assert compiled(a) == compiled(b)


def test_extends_equals_merged_file(write_spec):
    base = write_spec(MINI, "x/base.yaml")
    child = write_spec("extends: base.yaml\nseed: 9\nmodel:\n  max_context: 8192\nstages:\n"
                       "  - {name: only, datasets: [math], max_response_tokens: 512, steps: 5, prompts_per_step: 8,"
                       " group_size: 4}\n", "x/child.yaml")
    merged = yaml.safe_load(base.read_text())
    merged["seed"] = 9
    merged["model"]["max_context"] = 8192  # maps merge: model.path is kept
    merged["stages"] = [{"name": "only", "datasets": ["math"], "max_response_tokens": 512, "steps": 5,
                         "prompts_per_step": 8, "group_size": 4}]  # lists are replaced whole
    flat = write_spec(yaml.safe_dump(merged, sort_keys=False), "y/spec.yaml")
    assert check_file(child).cells[0].spec.model.path == "org/model"
    assert compiled(child) == compiled(flat)


def test_scalar_schedule_equals_constant_block(write_spec):
    a = write_spec(MINI + "rollout:\n  temperature: 0.7\n", "a.yaml")
    b = write_spec(MINI + "rollout:\n  temperature: {kind: constant, value: 0.7}\n", "b.yaml")
    assert job_ids(a) == job_ids(b)


def test_stage_override_equals_top_level_when_single_stage(write_spec):
    one_stage = MINI.split("  - name: s2")[0]
    a = write_spec(one_stage + "algorithm:\n  optimizer: {lr: 0.001}\n", "a.yaml")
    b = write_spec(one_stage.replace("    group_size: 4\n", "    group_size: 4\n    algorithm: {optimizer: {lr: 0.001}}\n"),
                   "b.yaml")
    ta = [j for j in build_plan(check_file(a).cells).jobs.values() if j.kind == "train"]
    tb = [j for j in build_plan(check_file(b).cells).jobs.values() if j.kind == "train"]
    assert [j.id for j in ta] == [j.id for j in tb]


def test_merge_keys_equal_spelled_out_spec(write_spec):
    """Anchor reuse through `x-` keys and `<<:` merges (with an override) is the same experiment as
    writing every value out."""
    anchored = MINI.replace("name: mini\n", "name: mini\nx-stage: &stage {datasets: [math], steps: 10, "
                            "prompts_per_step: 8, group_size: 4, max_response_tokens: 1024}\n")
    anchored = anchored[: anchored.index("stages:\n")] + (
        "stages:\n  - {<<: *stage, name: s1}\n  - {<<: *stage, name: s2, max_response_tokens: 2048}\n")
    a = write_spec(anchored, "a/spec.yaml")
    b = write_spec(MINI, "b/spec.yaml")
    assert check_file(a).cells[0].spec == check_file(b).cells[0].spec
    assert compiled(a) == compiled(b)
