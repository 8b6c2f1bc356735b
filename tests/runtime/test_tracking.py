"""W&B run settings of compiled jobs: one group per grid, a shared job tagged with every cell that
uses it, typed tracking settings.

Each test compiles a real spec into a build folder (`rlspec compile`'s own function), loads the
job files with the runtime's `load_job` and the build's context.json, and asks
`rlspec.runtime.tracking.run_settings` what `wandb.init` would get; no W&B is imported. The runs
these settings make are read back from W&B's offline files in `tests/runtime/train/test_wandb_runs.py`.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from rlspec.compiler.cli import compile_spec
from rlspec.runtime.job import JobError, load_job
from rlspec.runtime.tracking import TAG_CHARS, _fit, run_settings

# Stage s2 varies over a two-axis zip grid; s1 (and its bench) does not, so both cells share it.
SPEC = """\
name: mini
seed: 3
model: {path: org/model, max_context: 8192}
datasets:
  math: {domain: math, sources: [{uri: "builtin://math?n=100"}]}
benchmarks:
  held: {domain: math, source: {uri: "builtin://math?n=20&split=test"}, k: 4, sampling: {max_response_tokens: 1024}}
stages:
  - {name: s1, datasets: [math], max_response_tokens: 1024, steps: 10, prompts_per_step: 8, group_size: 4}
  - {name: s2, datasets: [math], max_response_tokens: 2048, steps: 10, prompts_per_step: 8, group_size: 4}
grid:
  mode: zip
  axes:
    - {path: "stages[1].max_response_tokens", values: [2048, 4096]}
    - {path: "stages[1].steps", values: [10, 20], name: s2steps}
TRACKING
"""
CELLS = ["max_response_tokens=2048,s2steps=10", "max_response_tokens=4096,s2steps=20"]


def compiled(tmp_path: Path, tracking: str = "tracking: {tags: [nightly]}") -> dict[str, list]:
    """{kind: [(job, run settings)]} of a compiled build."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("TRACKING", tracking))
    _, _, build, _ = compile_spec(str(spec), str(tmp_path / "build"))
    out: dict[str, list] = {}
    for path in sorted((build / "jobs").glob("*/*.json")):
        job = load_job(path, path.parent.name, build / "context.json")
        out.setdefault(job.kind, []).append((job, run_settings(job.context, job)))
    return out


def by_label(jobs: list, label: str):
    (found,) = [(j, s) for j, s in jobs if j.label == label]
    return found


def test_a_job_shared_by_two_cells_is_tagged_with_both(tmp_path):
    jobs = compiled(tmp_path)
    job, s1 = by_label(jobs["train"], "train s1")
    assert s1.tags == ["train", *CELLS, "max_response_tokens=2048", "max_response_tokens=4096", "s2steps=10",
                       "s2steps=20", "nightly"]
    assert s1.config["cells"] == CELLS and s1.config["grid"] == {"max_response_tokens": [2048, 4096],
                                                                  "s2steps": [10, 20]}
    assert s1.group == "mini" and s1.name == "train s1" and s1.mode == "offline" and s1.project == "rlspec"
    assert s1.config["job"] == job.config.model_dump(mode="json")
    s2 = sorted((s for j, s in jobs["train"] if j.label == "train s2"), key=lambda s: s.tags[1])
    assert [s.tags for s in s2] == [["train", CELLS[0], "max_response_tokens=2048", "s2steps=10", "nightly"],
                                    ["train", CELLS[1], "max_response_tokens=4096", "s2steps=20", "nightly"]]
    assert {s.group for s in s2} == {"mini"}  # one group per grid
    _, initial = by_label(jobs["bench"], "bench held @ initial")
    assert initial.tags[:3] == ["bench", *CELLS]


def test_cell_placeholder_splits_the_grid_and_names_shared_jobs(tmp_path):
    jobs = compiled(tmp_path, 'tracking: {group: "{name}/{cell}"}')
    assert by_label(jobs["train"], "train s1")[1].group == "mini/shared"
    assert sorted(s.group for j, s in jobs["train"] if j.label == "train s2") == [f"mini/{c}" for c in CELLS]


@pytest.mark.parametrize("tracking", ["tracking: {backend: none}", "tracking: {mode: disabled}"])
def test_tracking_off_gives_no_run(tmp_path, tracking):
    jobs = compiled(tmp_path, tracking)
    assert all(s is None for kind in jobs.values() for _, s in kind)


def test_without_a_context_there_is_no_run_and_a_foreign_context_is_refused(tmp_path):
    jobs = compiled(tmp_path)
    job, _ = by_label(jobs["train"], "train s1")
    assert run_settings({}, job) is None
    other = tmp_path / "other"
    other.mkdir()
    (other / "spec.yaml").write_text(SPEC.replace("TRACKING", "").replace("seed: 3", "seed: 4"))
    _, _, build, _ = compile_spec(str(other / "spec.yaml"), str(other / "build"))
    foreign = json.loads((build / "context.json").read_text())
    with pytest.raises(JobError, match="is not in this context.json"):
        run_settings(foreign, job)


def test_samples_settings_reach_the_train_job(tmp_path):
    jobs = compiled(tmp_path, "tracking: {samples: {every: 5, count: 3}}")
    job, _ = by_label(jobs["train"], "train s1")
    assert (job.config.samples.every, job.config.samples.count) == (5, 3)
    off = compiled(tmp_path / "off", "tracking: {samples: {every: null}}")
    assert by_label(off["train"], "train s1")[0].config.samples.every is None


def test_long_tags_are_cut_to_wandbs_limit_and_stay_distinct():
    a, b = "x" * 70 + "a", "x" * 70 + "b"
    assert len(_fit(a, TAG_CHARS)) == TAG_CHARS and _fit(a, TAG_CHARS) != _fit(b, TAG_CHARS)
    assert _fit("short", TAG_CHARS) == "short"
