"""The report from recorded runs of a 2-cell x 2-stage grid: files, numbers, figures, partial grids,
the workflow's report job (with a W&B run in offline mode) and `rlspec report`."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import report_fixtures as rf
from rlspec.compiler.cli import main as rlspec_main
from rlspec.runtime.report import report_build
from rlspec.runtime.reporting.render import result_rows
from rlspec.runtime.reporting.summary import best_cells

FIGURES = {"training_curves.png", "benchmarks.png", "ablation_len.png"}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    build = rf.compile_fixture(tmp_path_factory.mktemp("grid"))
    rf.fill(build)
    return build


@pytest.fixture(scope="module")
def full(build):
    return report_build(build), build / "report"


def jobs_of(build: Path, kind: str, label: str = "") -> list[str]:
    return [jid for jid, j in rf.context(build)["jobs"].items() if j["kind"] == kind and label in j["label"]]


def decodes(png: Path) -> bool:
    from PIL import Image
    with Image.open(png) as im:
        im.load()
        return im.size[0] > 100 and im.size[1] > 100


def test_report_files_and_every_figure(full):
    summary, out = full
    assert {p.name for p in out.iterdir()} == {"index.html", "README.md", "summary.json", "figures"}
    names = {Path(f).name for f in summary["figures"]}
    assert FIGURES <= names
    funnels = [n for n in names if n.startswith("funnel_")]
    assert len(funnels) == 3  # the curated dataset and the hard-prompt filter of each cell
    assert all(decodes(out / f) for f in summary["figures"])
    assert json.loads((out / "summary.json").read_text()) == summary
    page = (out / "index.html").read_text()
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == sorted(summary["figures"])
    readme = (out / "README.md").read_text()
    assert all(f"]({f})" in readme for f in summary["figures"])


def test_summary_numbers(full):
    summary, _ = full
    assert summary["complete"] and summary["missing"] == [] and summary["unit"] == "percent"
    assert summary["benchmarks"]["held"] == {"metrics": ["avg@4", "pass@2", "maj@4"], "headline": "avg@4"}
    cells = {c["label"]: c for c in summary["cells"]}
    assert list(cells) == ["len=768", "len=1024"]
    for index, cell in enumerate(summary["cells"]):
        assert [s["stage"] for s in cell["stages"]] == ["initial", "s1", "s2"]
        for stage in cell["stages"]:
            held = stage["benchmarks"]["held"]["metrics"]["avg@4"]
            expected = sum(rf.bench_accuracy(index, stage["stage"], p, s) for p in range(5) for s in range(4)) / 20
            assert held["value"] == pytest.approx(100 * expected)
        s2 = cell["stages"][2]["train"]
        assert s2["done"] and s2["steps"] == 5
        assert s2["first_reward_mean"] == rf.reward_at(index, 1, 1)
        assert s2["last_reward_mean"] == rf.reward_at(index, 1, 5)
    assert summary["best"]["held"] == {"cell": "len=1024", "stage": "s2", "metric": "avg@4", "value": 75.0,
                                       "stderr": 0.0, "ties": [], "decisive": True}


def test_best_cell_ties():
    def cell(label, value):
        return {"label": label, "values": {}, "stages": [
            {"stage": "s1", "benchmarks": {"b": {"job": "x", "done": True,
                                                 "metrics": {"avg@4": {"value": value, "stderr": 1.0}}}}}]}
    summary = {"benchmarks": {"b": {"metrics": ["avg@4"], "headline": "avg@4"}}, "references": {},
               "cells": [cell("a", 10.0), cell("b", 30.0), cell("c", 30.0)]}
    summary["best"] = best_cells(summary)
    assert summary["best"]["b"]["ties"] == [{"cell": "c", "stage": "s1"}] and summary["best"]["b"]["decisive"]
    assert [r["best"] for r in result_rows(summary)[1]] == [[], [2], [2]]
    summary["cells"] = [cell("a", 0.0), cell("b", 0.0)]  # nobody is better: nothing highlighted
    summary["best"] = best_cells(summary)
    assert not summary["best"]["b"]["decisive"] and [r["best"] for r in result_rows(summary)[1]] == [[], []]


def test_table_highlights_best_and_shows_references(full):
    _, out = full
    page = (out / "index.html").read_text()
    assert page.count('class="best"') == 2  # one per benchmark
    assert '<td class="best">75.0 ± 0.0</td>' in page
    assert "Some-Model-7B (paper)" in page and "41.5" in page
    assert "All jobs finished" in page
    assert "| *Some-Model-7B (paper)* | *published* |" in (out / "README.md").read_text()


def test_partial_grid_lists_missing_jobs(tmp_path):
    build = rf.compile_fixture(tmp_path)
    s2_train = [j for j in jobs_of(build, "train", "s2") if rf.cell_of(build, j) == 1]
    s2_bench = [j for j in jobs_of(build, "bench", "@ s2") if rf.cell_of(build, j) == 1]
    rf.fill(build, skip=set(s2_train + s2_bench))
    # the unfinished stage has logged two steps so far, the second one cut mid-line
    train_dir = build / "results" / "train" / s2_train[0]
    train_dir.mkdir(parents=True)
    (train_dir / "metrics.jsonl").write_text('{"step": 1, "reward_mean": 0.4}\n{"step": 2, "rew')
    summary = report_build(build)
    missing = {m["id"]: m for m in summary["missing"]}
    assert set(missing) == set(s2_train + s2_bench) and not summary["complete"]
    assert missing[s2_train[0]]["label"] == "train s2"
    cell = summary["cells"][1]["stages"][2]
    assert cell["benchmarks"]["held"] == {"job": s2_bench[0], "done": False, "metrics": {}}
    assert cell["train"] == {"job": s2_train[0], "done": False, "steps": 1, "first_reward_mean": 0.4,
                             "last_reward_mean": 0.4}
    assert summary["best"]["held"]["cell"] == "len=768"  # the only cell with a final score
    assert summary["warnings"] == []
    page = (build / "report" / "index.html").read_text()
    assert "3 job(s) not finished" in page and "missing" in page and s2_train[0] in page
    assert all((build / "report" / f).is_file() for f in summary["figures"])


def test_nothing_run_yet(tmp_path):
    build = rf.compile_fixture(tmp_path)
    summary = report_build(build)
    assert len(summary["missing"]) == len(rf.context(build)["jobs"]) - 1  # all but the report itself
    assert summary["figures"] == [] and summary["best"] == {}
    assert "not finished" in (build / "report" / "index.html").read_text()


def test_shipped_acereason_spec_shows_the_papers_numbers(tmp_path):
    """Reference rows: one per published model, its numbers under each benchmark's headline metric."""
    spec = Path(__file__).resolve().parents[3] / "specs" / "acereason-nemotron-7b.yaml"
    assert rlspec_main(["compile", str(spec), "-o", str(tmp_path / "build")]) == 0
    summary = report_build(tmp_path / "build")
    header, rows = result_rows(summary)
    refs = {r["cells"][0]: dict(zip(header, r["cells"])) for r in rows if r["kind"] == "reference"}
    assert refs["AceReason-Nemotron-7B (paper)"]["aime24 avg@64"] == "69.0"
    assert refs["AceReason-Nemotron-7B (paper)"]["lcb-v6 avg@8"] == "44.1"
    assert refs["DeepSeek-R1-Distill-Qwen-7B (paper)"]["aime25 avg@64"] == "39.0"
    assert "AceReason-Nemotron-7B (paper)" in (tmp_path / "build" / "report" / "index.html").read_text()


def test_cli_report(build, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert rlspec_main(["report", str(build), "-o", str(out)]) == 0
    assert (out / "index.html").is_file() and "all jobs finished" in capsys.readouterr().out
    assert rlspec_main(["report", str(tmp_path / "no-build")]) == 1
    assert "not a build folder" in capsys.readouterr().err


def test_report_job_in_the_workflow_with_wandb_offline(build):
    """The DAG's report job: output folder with done.json last, report/ refreshed, W&B run written."""
    (jid,) = jobs_of(build, "report")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run([sys.executable, "-m", "rlspec.runtime.report", "--job", f"jobs/report/{jid}.json",
                           "--context", "context.json"], cwd=build, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = build / "results" / "report" / jid
    assert json.loads((out / "done.json").read_text()) == {"complete": True, "missing": 0}
    assert (out / "index.html").is_file() and (build / "report" / "index.html").is_file()
    assert not (build / "report" / "done.json").exists()
    runs = list((build / "wandb").glob("offline-run-*"))
    assert runs and any(runs[0].glob("run-*.wandb"))
    assert "warning" not in proc.stderr.lower()


# ---------------------------------------------------------------------------------------------
# In a real browser: headless Chromium loads the page; no image may be broken.
# ---------------------------------------------------------------------------------------------

CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
# Appended to a copy of the page: after load, write onto <body> how many images there are and which
# did not decode, so that --dump-dom carries the browser's own verdict back to the test.
PROBE = ("<script>window.addEventListener('load', () => { const bad = [...document.images]"
         ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));"
         "document.body.setAttribute('data-images', document.images.length);"
         "document.body.setAttribute('data-broken', JSON.stringify(bad)); });</script>")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--hide-scrollbars", "--virtual-time-budget=5000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def browser_images(tmp_path: Path, page: Path, extra: str = "") -> tuple[int, list[str]]:
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", extra + PROBE + "</body>"))
    try:
        dom = chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout
    finally:
        probe.unlink()
    body = re.search(r"<body[^>]*data-images=\"(\d+)\"[^>]*data-broken=\"([^\"]*)\"", dom)
    assert body, f"the probe did not run; chromium printed: {dom[:500]}"
    return int(body.group(1)), json.loads(html.unescape(body.group(2)))


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian packages chromium, chromium-driver)")
def test_report_in_headless_chromium(full, tmp_path):
    summary, out = full
    page = out / "index.html"
    count, broken = browser_images(tmp_path, page)
    assert (count, broken) == (len(summary["figures"]), [])
    # control: the probe does see a broken image when there is one
    assert browser_images(tmp_path, page, '<img src="figures/none.png">')[1] == ["figures/none.png"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, "--window-size=1300,2600", f"--screenshot={shot}", page.as_uri())
    assert decodes(shot)
    from PIL import Image
    with Image.open(shot) as im:  # not a blank page: the table and plots put many colours on it
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 50


# ---------------------------------------------------------------------------------------------
# The real thing: a 2-cell x 2-stage grid run by Snakemake (model, curate, train, bench, report).
# ---------------------------------------------------------------------------------------------

MINI = r"""
name: mini
seed: 1
model:
  from_scratch:
    architecture: {family: qwen2, hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 4, num_kv_heads: 2}
    tokenizer: {vocab_size: 384}
    warmup: {sources: [{uri: "builtin://math?n=200&difficulty=1&worked=true"}], steps: 20, batch_size: 16, lr: 3.0e-3}
  dtype: float32
  max_context: 384
  prompt:
    template: "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>\n"
    math_suffix: " Answer in \\boxed{}."
datasets:
  math:
    domain: math
    sources: [{uri: "builtin://math?n=200&difficulty=1"}]
    filters: [{kind: dedup_exact}, {kind: decontaminate}]
rollout: {engine: hf, max_prompt_tokens: 128}
stages:
  - {name: s1, datasets: [math], max_response_tokens: 32, steps: 3, prompts_per_step: 4, group_size: 4}
  - {name: s2, datasets: [math], max_response_tokens: 48, steps: 3, prompts_per_step: 4, group_size: 4}
benchmarks:
  held:
    domain: math
    source: {uri: "builtin://math?n=10&difficulty=1&split=test"}
    k: 4
    metrics: [avg@k, pass@2, maj@k]
    sampling: {max_response_tokens: 48}
grid:
  axes: [{path: "stages[s2].algorithm.optimizer.lr", name: lr, values: [1.0e-4, 1.0e-3]}]
tracking: {backend: wandb, project: mini, mode: offline}
resources:
  train: {cpus: 1, mem_gb: 4, time_min: 30}
  deepspeed: {zero_stage: 0}
"""


@pytest.mark.slow
def test_report_after_a_real_workflow(tmp_path):
    (tmp_path / "mini.yaml").write_text(MINI)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "run", "mini.yaml", "-o", "build", "--cores", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    build = tmp_path / "build"
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((build / "report" / "summary.json").read_text())
    assert summary["complete"] and {Path(f).name for f in summary["figures"]} >= FIGURES - {"ablation_len.png"} | {
        "ablation_lr.png"}
    for cell in summary["cells"]:
        assert [s["stage"] for s in cell["stages"]] == ["initial", "s1", "s2"]
        for stage in cell["stages"]:
            entry = stage["benchmarks"]["held"]
            found = json.loads((build / "results" / "bench" / entry["job"] / "results.json").read_text())
            assert entry["metrics"]["avg@4"] == {k: found["metrics"]["avg@k"][k] for k in ("value", "stderr")}
        assert all(s["train"]["done"] and s["train"]["steps"] == 3 for s in cell["stages"][1:])
