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


# Appended to a copy of the page: choose an outcome, then also a stage, in the sample browser's
# selects (as a person would, with change events), and write onto <body> what each choice left
# visible and what the page's own counter said.
FILTER = ("<script>window.addEventListener('load', () => {"
          "const pick = (id, v) => { const s = document.getElementById(id); s.value = v;"
          " s.dispatchEvent(new Event('change')); };"
          "const seen = () => JSON.stringify([...document.querySelectorAll('#samples tbody tr')]"
          ".filter(r => !r.hidden && r.offsetParent !== null).map(r => [r.dataset.stage, r.dataset.outcome]));"
          "document.body.setAttribute('data-all', seen());"
          "pick('sample-outcome', 'truncated'); document.body.setAttribute('data-truncated', seen());"
          "document.body.setAttribute('data-count', document.getElementById('sample-count').textContent);"
          "pick('sample-stage', 's2'); document.body.setAttribute('data-truncated-s2', seen()); });</script>")


def written_samples(build: Path) -> list[tuple[str, str]]:
    """(stage, outcome) of every sample the fixture's train jobs wrote, in the page's order."""
    rows = []
    for jid in jobs_of(build, "train"):
        path = build / "results" / "train" / jid / "samples.jsonl"
        rows += [(r["stage"], r["outcome"]) for r in map(json.loads, path.read_text().splitlines())]
    return rows


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian packages chromium, chromium-driver)")
def test_sample_browser_filters_in_headless_chromium(full, build, tmp_path):
    _, out = full
    probe = out / "filter-probe.html"
    probe.write_text((out / "index.html").read_text().replace("</body>", FILTER + "</body>"))
    try:
        dom = chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout
    finally:
        probe.unlink()
    found = {k: html.unescape(v) for k, v in re.findall(r'data-([a-z0-9-]+)="([^"]*)"', dom.split("<body", 1)[1])}
    assert "all" in found, f"the filter script did not run; chromium printed: {dom[:500]}"
    written = written_samples(build)
    assert {o for _, o in written} == {"correct", "wrong", "truncated", "error"} and {s for s, _ in written} == {"s1", "s2"}
    visible = lambda key: sorted(map(tuple, json.loads(found[key])))  # noqa: E731
    assert visible("all") == sorted(written)
    truncated = sorted(r for r in written if r[1] == "truncated")
    assert visible("truncated") == truncated and 0 < len(truncated) < len(written)
    assert found["count"] == f"{len(truncated)} of {len(written)} samples shown"
    both = [r for r in truncated if r[0] == "s2"]
    assert visible("truncated-s2") == both and 0 < len(both) < len(truncated)


def test_sample_browser_rows_and_markdown_counts(full, build):
    summary, out = full
    page, readme = (out / "index.html").read_text(), (out / "README.md").read_text()
    written = written_samples(build)
    assert page.count('<tr data-outcome="') == len(written)
    assert '<select id="sample-outcome">' in page and '<select id="sample-stage">' in page
    assert "http" not in page.split('<table id="samples">', 1)[1]  # no network: no CDN, no remote script
    assert "What is 2 + 1?" in page  # the prompt, readable
    s1 = [o for s, o in written if s == "s1"]
    counts = [str(s1.count(o)) for o in ("correct", "wrong", "truncated", "error")]
    assert f"| s1 | {len(s1)} | {' | '.join(counts)} |" in readme


def test_samples_reader_follows_the_contract(tmp_path, monkeypatch):
    from rlspec.runtime.reporting import samples as browser
    row = {"stage": "s1", "step": 1, "prompt": "p", "response": "r" * 10, "reward": 1.0, "accuracy": 1.0,
           "outcome": "correct", "status": "graded", "length": 3, "domain": "math"}
    path = tmp_path / "samples.jsonl"
    lines = [json.dumps({**row, "step": i}) for i in range(7)]
    lines[2] = json.dumps({k: v for k, v in row.items() if k != "length"})  # a key missing
    lines[3] = json.dumps({**row, "outcome": "lucky"})  # not an outcome
    path.write_text("\n".join(lines) + '\n{"stage": "s1", "st')  # and a torn last line (a running job)
    warnings: list[str] = []
    found = browser.read_samples(path, warnings)
    assert [r["step"] for r in found["rows"]] == [0, 1, 4, 5, 6] and found["total"] == 5 and found["stride"] == 1
    assert [w.split(": ")[1] for w in warnings] == ["line 3 is not a sample (JSON with keys stage, step, prompt, "
                                                    "response, reward, accuracy, outcome, status, length, domain), "
                                                    "skipped", "line 4 is not a sample (JSON with keys stage, step, "
                                                    "prompt, response, reward, accuracy, outcome, status, length, "
                                                    "domain), skipped"]
    monkeypatch.setattr(browser, "MAX_ROWS", 3)
    monkeypatch.setattr(browser, "MAX_CHARS", 4)
    thinned = browser.read_samples(path, [])
    assert [r["step"] for r in thinned["rows"]] == [0, 4, 6] and thinned["stride"] == 2
    section = browser.samples_html({"j": thinned}, {"j": ["c"]}, {"j": "train s1"})
    assert "train s1: every 2th of 5" in section and "rrrr\n… (6 more characters)" in section
    assert browser.read_samples(tmp_path / "none.jsonl", []) == {"rows": [], "total": 0, "stride": 1}


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
  - {name: s1, datasets: [math], max_response_tokens: 32, steps: 3, prompts_per_step: 4, group_size: 4,
     evaluate_every: 2}
  - {name: s2, datasets: [math], max_response_tokens: 48, steps: 3, prompts_per_step: 4, group_size: 4}
algorithm: {checkpoint_every: 2, keep_checkpoints: 1}
benchmarks:
  held:
    domain: math
    source: {uri: "builtin://math?n=10&difficulty=1&split=test"}
    k: 4
    metrics: [avg@k, pass@2, maj@k]
    sampling: {max_response_tokens: 48}
grid:
  axes: [{path: "stages[s2].algorithm.optimizer.lr", name: lr, values: [1.0e-4, 1.0e-3]}]
tracking: {backend: wandb, project: mini, mode: offline, samples: {every: 1, count: 4}}
resources:
  train: {cpus: 1, mem_gb: 4, time_min: 30}
  deepspeed: {zero_stage: 0}
"""


def rlspec_run(tmp_path: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env_extra}
    return subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "run", "mini.yaml", "-o", "build", "--cores", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # two `rlspec run`s (killed, then resumed) of a 2-cell grid on shared cores
def test_report_after_a_real_workflow(tmp_path):
    """Also evaluation inside a stage (s1: snapshot at step 2, its bench job, the report's checkpoints),
    `keep_checkpoints`, rollout samples in the report, and a train job killed after its snapshot:
    the rerun resumes and keeps the snapshot it wrote."""
    (tmp_path / "mini.yaml").write_text(MINI)
    build = tmp_path / "build"
    killed = rlspec_run(tmp_path, RLSPEC_FAULT="train:step:3")  # s1 dies in its last step
    assert killed.returncode != 0
    (s1,) = [j for j, info in json.loads((build / "context.json").read_text())["jobs"].items()
             if info["label"] == "train s1"]
    s1_dir = build / "results" / "train" / s1
    snapshot = s1_dir / "snapshots" / "step-000002" / "model"
    assert (snapshot / "config.json").is_file() and not (s1_dir / "done.json").exists()
    written = (snapshot / "model.safetensors").stat()
    proc = rlspec_run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "resumed from step-000002" in (build / "logs" / "train" / f"{s1}.log").read_text()
    again = (snapshot / "model.safetensors").stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # kept, not rewritten
    assert sorted(p.name for p in (s1_dir / "checkpoints").iterdir()) == ["step-000003"]  # keep_checkpoints: 1
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
        (inside,) = cell["stages"][1]["evaluations"]
        found = json.loads((build / "results" / "bench" / inside["benchmarks"]["held"]["job"] / "results.json").read_text())
        assert inside["step"] == 2 and inside["model"] == str(snapshot.relative_to(build))
        assert inside["benchmarks"]["held"]["metrics"]["avg@4"] == {k: found["metrics"]["avg@k"][k]
                                                                   for k in ("value", "stderr")}
    best = summary["best_checkpoints"]["held"]
    assert best["checkpoints"] == 2 * 4 and (build / best["model"] / "config.json").is_file()
    assert "benchmark_steps.png" in {Path(f).name for f in summary["figures"]}
    page = (build / "report" / "index.html").read_text()
    assert f"<td>{best['model']}</td>" in page and "<td>2 (inside)</td>" in page
    samples = sum(len((build / "results" / "train" / j / "samples.jsonl").read_text().splitlines())
                  for j in {s["train"]["job"] for c in summary["cells"] for s in c["stages"][1:]})
    assert samples == 3 * 4 * 3 and page.count('<tr data-outcome="') == samples  # 3 train jobs x 3 steps x 4
