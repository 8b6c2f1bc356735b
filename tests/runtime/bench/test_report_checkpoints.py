"""Evaluation inside a stage, at run time: the report's checkpoints on one step axis and the best
checkpoint per benchmark (from recorded runs, `report_fixtures`), the bench job finding its
snapshot, and the train job's snapshot and checkpoint writing (`runtime/grpo/checkpoint.py`):
atomic under SIGKILL, earlier snapshots kept, resumable checkpoints pruned to `keep_checkpoints`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import report_fixtures as rf
from rlspec.runtime.job import JobError, load_job
from rlspec.runtime.report import report_build
from rlspec.runtime.reporting.checkpoints import best_checkpoints, run_checkpoints

# the fixture grid with snapshots inside s1: steps 6, evaluate_every 2 -> snapshots at 2 and 4
SPEC = rf.SPEC.replace("steps: 6, prompts_per_step: 8, group_size: 4}",
                       "steps: 6, prompts_per_step: 8, group_size: 4, evaluate_every: 2}")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    assert SPEC != rf.SPEC
    build = rf.compile_fixture(tmp_path_factory.mktemp("inside"), SPEC)
    rf.fill(build)
    return build


@pytest.fixture(scope="module")
def summary(build):
    return report_build(build)


def job_id(build: Path, label: str) -> str:
    (jid,) = [j for j, info in rf.context(build)["jobs"].items() if info["label"] == label]
    return jid


def accuracy(cell: int, stage: str, step: int | None, k: int = 4) -> float:
    return 100 * sum(rf.bench_accuracy(cell, stage, p, s, step) for p in range(5) for s in range(k)) / (5 * k)


def test_checkpoints_in_run_order_with_their_scores(build, summary):
    s1 = job_id(build, "train s1")
    for index, cell in enumerate(summary["cells"]):
        points = run_checkpoints(cell)
        assert [(p["stage"], p["step"], p["run_step"], p["end"]) for p in points] == [
            ("initial", 0, 0, True), ("s1", 2, 2, False), ("s1", 4, 4, False), ("s1", 6, 6, True), ("s2", 5, 11, True)]
        assert points[1]["model"] == f"results/train/{s1}/snapshots/step-000002/model"
        assert points[3]["model"] == f"results/train/{s1}/model"  # the stage's end: the train job's model/
        for p in points:
            step = None if p["end"] else p["step"]
            assert p["benchmarks"]["held"]["metrics"]["avg@4"]["value"] == pytest.approx(accuracy(index, p["stage"], step))


def test_best_checkpoint_can_be_inside_a_stage(build, summary):
    """A snapshot at s1 step 4 solves everything (fixture: 4 of 4), more than any stage's end."""
    best = summary["best_checkpoints"]["held"]
    s1 = job_id(build, "train s1")
    assert best == {"metric": "avg@4", "value": 100.0, "stderr": 0.0, "cell": "len=768", "stage": "s1", "step": 4,
                    "run_step": 4, "end": False, "model": f"results/train/{s1}/snapshots/step-000004/model",
                    "job": job_id(build, "bench held @ s1 step 4"), "ties": 1, "checkpoints": 10}
    assert summary["best_checkpoints"]["code-held"]["step"] == 4
    # the stage-end ranking (best cell at its last stage) is unchanged by the snapshots
    assert summary["best"]["held"]["stage"] == "s2" and summary["best"]["held"]["cell"] == "len=1024"


def test_pages_name_the_best_checkpoint_and_plot_every_step(build, summary):
    out = build / "report"
    page, readme = (out / "index.html").read_text(), (out / "README.md").read_text()
    model = summary["best_checkpoints"]["held"]["model"]
    assert "<h2>Checkpoints</h2>" in page and f"<td>{model}</td>" in page and "<td>4 (inside)</td>" in page
    assert '<td class="best">100.0 ± 0.0</td>' in page
    # cell len=1024 shares s1, so its step-4 snapshot ties (the same bench job)
    assert f"| held | avg@4 | 100.0 ± 0.0 | len=768 | s1 | 4 (inside) | 4 | {model} | 1 of 10 |" in readme
    assert "figures/benchmark_steps.png" in summary["figures"] and (out / "figures" / "benchmark_steps.png").is_file()
    assert "![benchmark_steps](figures/benchmark_steps.png)" in readme


def test_figure_plots_the_points_inside_stages_and_marks_boundaries(summary):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlspec.runtime.reporting.figures import fig_checkpoints
    fig = fig_checkpoints(plt, summary)
    (ax,) = [a for a in fig.axes if a.get_title() == "held: avg@4 (%)"]
    lines = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: (data line, caps, bars)
    lines.update({line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")})
    assert list(lines["len=768"].get_xdata()) == [0, 2, 4, 6, 11]
    assert list(lines["len=768"].get_ydata()) == pytest.approx([accuracy(0, s, st) for s, st in
                                                               [("initial", None), ("s1", 2), ("s1", 4), ("s1", None),
                                                                ("s2", None)]])
    assert list(lines["best"].get_xdata()) == [4] and list(lines["best"].get_ydata()) == [100.0]
    boundaries = [line.get_xdata()[0] for line in ax.get_lines() if list(line.get_ydata()) == [0, 1]]  # axvline
    assert boundaries == [6]  # s2 starts after s1's 6 steps
    assert [t.get_text().strip() for t in ax.texts] == ["s1", "s2"]
    plt.close(fig)


def test_without_inside_evaluations_the_best_is_a_stage_end(tmp_path):
    build = rf.compile_fixture(tmp_path)
    rf.fill(build)
    summary = report_build(build)
    assert summary["best_checkpoints"]["held"]["stage"] == "s2" and summary["best_checkpoints"]["held"]["end"]
    assert summary["best_checkpoints"]["held"]["model"].endswith("/model")
    assert "(inside)" not in (build / "report" / "index.html").read_text()


def test_ties_go_to_the_earliest_checkpoint_and_unscored_points_are_skipped():
    def stage(name, steps, end, inside):
        entry = lambda v: {"b": {"job": f"{name}{v}", "done": v is not None,  # noqa: E731
                                 "metrics": {} if v is None else {"avg@1": {"value": v, "stderr": 1.0}}}}
        return {"stage": name, "model": f"{name}/model", "benchmarks": entry(end),
                "train": {"steps": steps}, "evaluations": [{"step": s, "model": f"{name}/{s}", "benchmarks": entry(v)}
                                                           for s, v in inside]}
    summary = {"benchmarks": {"b": {"headline": "avg@1"}}, "cells": [
        {"label": "a", "stages": [stage("s1", 10, 50.0, [(5, 50.0)]), stage("s2", 10, None, [(5, 60.0)])]},
        {"label": "b", "stages": [stage("s1", 10, 60.0, [(5, 10.0)])]}]}
    best = best_checkpoints(summary)["b"]
    # 60 is reached by cell a at run step 15 and by cell b at run step 10: the earlier one wins
    assert (best["cell"], best["stage"], best["step"], best["run_step"], best["ties"]) == ("b", "s1", 10, 10, 1)
    assert best["checkpoints"] == 5  # s2's end has not finished: not a candidate
    assert best_checkpoints({"benchmarks": {"b": {"headline": "avg@1"}}, "cells": []}) == {}


# ------------------------------------------------------------------------------------------
# the bench job finds its snapshot
# ------------------------------------------------------------------------------------------


def test_bench_job_reads_the_snapshot_of_its_step(build, monkeypatch):
    from rlspec.runtime.bench import evaluated_model
    monkeypatch.chdir(build)  # job files name folders relative to the build folder
    inside = load_job(rf.job_file(build, job_id(build, "bench held @ s1 step 2")), "bench", build / "context.json")
    end = load_job(rf.job_file(build, job_id(build, "bench held @ s1")), "bench", build / "context.json")
    s1 = job_id(build, "train s1")
    snapshot = Path("results/train") / s1 / "snapshots/step-000002/model"
    with pytest.raises(JobError, match="snapshot .*step-000002/model is missing .* did not write step 2"):
        evaluated_model(inside)  # the fixture made the folder, not a model in it
    (build / snapshot / "config.json").write_text("{}")
    (build / "results/train" / s1 / "model" / "config.json").write_text("{}")
    try:
        assert evaluated_model(inside) == snapshot
        assert evaluated_model(end) == Path("results/train") / s1 / "model"
    finally:
        (build / snapshot / "config.json").unlink()
        (build / "results/train" / s1 / "model" / "config.json").unlink()


# ------------------------------------------------------------------------------------------
# the train job's writing: a tiny real model, no DeepSpeed for snapshots
# ------------------------------------------------------------------------------------------

SAVE = """
import sys, torch
from pathlib import Path
from rlspec.runtime import tinymodel
from rlspec.runtime.grpo import checkpoint
tok = tinymodel.train_tokenizer(tinymodel.arithmetic_corpus(200), 300)
model = tinymodel.build_model(tok, tinymodel.TinyModelConfig(hidden=32, ffn=64, heads=2, kv_heads=1))
model.config.use_cache = False
with torch.no_grad():
    model.lm_head.weight.fill_(float(sys.argv[2]))
checkpoint.save_snapshot(Path(sys.argv[1]), int(sys.argv[2]), model, model.state_dict(), tok, torch.bfloat16)
assert model.config.use_cache is False  # the training model's setting is restored
"""


def save_snapshot(train_dir: Path, step: int, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RLSPEC_FAULT": fault or ""}
    return subprocess.run([sys.executable, "-c", SAVE, str(train_dir), str(step)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_snapshots_are_atomic_and_earlier_ones_are_kept(tmp_path):
    from safetensors import safe_open
    first = save_snapshot(tmp_path, 2)
    assert first.returncode == 0, first.stderr
    model = tmp_path / "snapshots" / "step-000002" / "model"
    assert json.loads((model / "config.json").read_text())["use_cache"] is True  # saved for inference
    assert (model / "tokenizer.json").is_file()
    with safe_open(str(model / "model.safetensors"), "pt") as fh:
        weight = fh.get_tensor("lm_head.weight")
    assert str(weight.dtype) == "torch.bfloat16" and float(weight[0, 0]) == 2.0
    kept = (model / "model.safetensors").stat()
    # killed after writing step 4's files, before the rename: nothing at step-000004 looks complete
    killed = save_snapshot(tmp_path, 4, fault="train:snapshot:4")
    assert killed.returncode == -9
    names = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert len(names) == 2 and names[0].startswith(".step-000004.tmp") and names[1] == "step-000002"
    assert not (tmp_path / "snapshots" / "step-000004").exists()
    # the rerun (a resumed job replaying step 4) commits it, clears the staging, keeps step 2 as it was
    again = save_snapshot(tmp_path, 4)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["step-000002", "step-000004"]
    now = (model / "model.safetensors").stat()
    assert (now.st_ino, now.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)


class _Engine:
    """Stands in for a DeepSpeed engine (its `save_checkpoint` writes one file): what is tested is
    the commit and pruning around it, which is rlspec's code."""

    def save_checkpoint(self, folder: str, tag: str, save_latest: bool) -> None:
        (Path(folder) / tag).mkdir(parents=True)
        (Path(folder) / tag / "state.pt").write_bytes(b"x")


@pytest.mark.parametrize("keep", [1, 3])
def test_resumable_checkpoints_keep_the_newest(tmp_path, keep):
    import torch.distributed as dist

    from rlspec.runtime.grpo import checkpoint
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        root = tmp_path / "checkpoints"
        for step in (2, 4, 6, 8):
            checkpoint.save(root, step, _Engine(), {"step": step}, main=True, keep=keep)
    finally:
        dist.destroy_process_group()
    assert sorted(p.name for p in root.iterdir()) == [f"step-{s:06d}" for s in (2, 4, 6, 8)[-keep:]]
    assert checkpoint.latest(root).name == "step-000008"
