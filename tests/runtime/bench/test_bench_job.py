"""The `bench` job end to end: compiled from a small spec, run on a tiny real model (hf engine; the
vLLM variant is marked slow), graded by the real math grader and code sandbox."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlspec.compiler.spec import DateWindow

from rlspec.compiler.cli import main as rlspec_main
from rlspec.runtime import bench, tinymodel
from rlspec.runtime.data.builtin import generate
from rlspec.runtime.job import load_job
from rlspec.runtime.rollout import Sample

SPEC = """\
name: bench-test
seed: 0
model:
  path: {model}
  dtype: float32
  max_context: 512
  prompt:
    template: "<|im_start|>user\\n{{question}}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n"
    math_suffix: " Answer in \\\\boxed{{}}."
    code_suffix: " Answer in a ```python block."
datasets:
  math:
    domain: math
    sources: [{{uri: "builtin://math?n=50"}}]
rollout:
  engine: {engine}
  max_prompt_tokens: 256
  hf: {{batch_size: 64}}
  vllm: {{kv_cache_memory_bytes: 67108864, enforce_eager: true}}
stages:
  - {{name: s1, datasets: [math], max_response_tokens: 32, steps: 2, prompts_per_step: 4, group_size: 2}}
benchmarks:
  held:
    domain: math
    source: {{uri: "builtin://math?n=6&split=test"}}
    k: 4
    metrics: [avg@k, pass@2, maj@k]
    sampling: {{max_response_tokens: 24}}
  code-held:
    domain: code
    source: {{uri: "{code_uri}"}}
    k: 2
    metrics: [avg@k, pass@2]
    sampling: {{max_response_tokens: 24}}
    {window}
tracking: {{backend: none}}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tinymodel.build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tinymodel.TinyModelConfig())


def compile_build(tmp: Path, model: Path, engine: str = "hf", code_uri: str = "builtin://code?n=3&split=test",
                  window: str = "") -> Path:
    (tmp / "spec.yaml").write_text(SPEC.format(model=model, engine=engine, code_uri=code_uri, window=window))
    assert rlspec_main(["compile", str(tmp / "spec.yaml"), "-o", str(tmp / "build")]) == 0
    return tmp / "build"


def bench_job(build: Path, benchmark: str, after: str) -> str:
    jobs = json.loads((build / "context.json").read_text())["jobs"]
    (jid,) = [j for j, info in jobs.items() if info["label"] == f"bench {benchmark} @ {after}"]
    return jid


def model_job(build: Path) -> str:
    jobs = json.loads((build / "context.json").read_text())["jobs"]
    (jid,) = [j for j, info in jobs.items() if info["kind"] == "model"]
    return jid


def run_job(build: Path, jid: str, kind: str = "bench") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    return subprocess.run([sys.executable, "-m", f"rlspec.runtime.{kind}", "--job", f"jobs/{kind}/{jid}.json",
                           "--context", "context.json"], cwd=build, env=env, capture_output=True, text=True,
                          timeout=600)


def check_outputs(out: Path, problems: int, k: int) -> dict:
    """results.json agrees with samples.jsonl line by line; done.json exists."""
    results = json.loads((out / "results.json").read_text())
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == problems * k == results["samples"] and results["problems"] == problems
    assert {(x["id"], x["sample"]) for x in lines} == {(x["id"], s) for x in lines for s in range(k)}
    assert set(lines[0]) == {"id", "sample", "response", "answer", "reward", "status", "detail", "finish_reason",
                             "tokens"}
    assert results["metrics"]["avg@k"]["value"] == pytest.approx(100 * sum(x["reward"] for x in lines) / len(lines))
    assert sum(results["status_counts"].values()) == len(lines)
    assert results["tokens"]["generated"] == sum(x["tokens"] for x in lines)
    assert json.loads((out / "done.json").read_text())["problems"] == problems
    return results


def test_bench_job_initial_model_math(tmp_path, tiny):
    """The initial model is the `model` job's folder: it links the spec's local model folder."""
    build = compile_build(tmp_path, tiny)
    jid = bench_job(build, "held", "initial")
    assert run_job(build, model_job(build), "model").returncode == 0
    proc = run_job(build, jid)
    assert proc.returncode == 0, proc.stderr
    results = check_outputs(build / "results" / "bench" / jid, problems=6, k=4)
    assert set(results["metrics"]) == {"avg@k", "pass@2", "maj@k"}
    assert results["metrics"]["maj@k"]["name"] == "maj@4" and results["unit"] == "percent"
    assert results["model"] == f"results/model/{model_job(build)}"
    assert set(results["status_counts"]) <= {"correct", "wrong", "no_answer", "timeout", "error"}
    assert "avg@4" in proc.stdout


def test_bench_job_stage_checkpoint_code(tmp_path, tiny, monkeypatch):
    """After a stage the model comes from the train job's `model/` folder (copied in here)."""
    build = compile_build(tmp_path, tiny)
    jid = bench_job(build, "code-held", "s1")
    job = load_job(build / "jobs" / "bench" / f"{jid}.json", "bench")
    shutil.copytree(tiny, build / job.inputs["policy"] / "model")
    monkeypatch.chdir(build)
    assert bench.main(["--job", f"jobs/bench/{jid}.json", "--context", "context.json"]) == 0
    results = check_outputs(build / job.output_dir, problems=3, k=2)
    assert set(results["status_counts"]) <= {"pass", "wrong", "runtime_error", "timeout", "memory", "no_code",
                                             "sandbox_error"}
    assert results["model"] == job.inputs["policy"]


def test_bench_job_without_checkpoint_fails_cleanly(tmp_path, tiny, monkeypatch, capsys):
    build = compile_build(tmp_path, tiny)
    jid = bench_job(build, "held", "s1")
    out = build / "results" / "bench" / jid
    out.mkdir(parents=True)
    for stale in ("done.json", "results.json", "samples.jsonl"):  # a previous run's outputs
        (out / stale).write_text("{}")
    monkeypatch.chdir(build)
    assert bench.main(["--job", f"jobs/bench/{jid}.json", "--context", "context.json"]) == 1
    assert re.search(r"input model results/train/\w+/model is missing", capsys.readouterr().err)
    assert not any(out.iterdir())


def test_grading_and_scores_with_right_and_wrong_answers(tmp_path, tiny):
    """grade() + score() on hand-written responses: the real graders decide, the metrics follow."""
    build = compile_build(tmp_path, tiny)
    math_job = load_job(build / "jobs" / "bench" / f"{bench_job(build, 'held', 'initial')}.json", "bench")
    problems = generate("builtin://math?n=3&split=test")
    right = [f"ok</think>\n\\boxed{{{p['answer']}}}" for p in problems]
    texts = [[right[0]] * 4, [right[1], right[1], "</think>\\boxed{-1}", "no tag"], ["</think>\\boxed{-1}"] * 4]
    samples = [[Sample([1, 2], [0.0, 0.0], "stop", t) for t in row] for row in texts]
    grades = bench.grade(math_job, problems, samples)
    assert [[g.status for g in row] for row in grades] == [
        ["correct"] * 4, ["correct", "correct", "wrong", "no_answer"], ["wrong"] * 4]
    results = bench.score(math_job, problems, samples, grades, {}, {"generate_s": 1.0}, 2.0)
    m = results["metrics"]
    assert m["avg@k"]["value"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert m["pass@2"]["value"] == pytest.approx(100 * (1 + bench.pass_at_k(4, 2, 2) + 0) / 3)
    assert m["maj@k"]["value"] == pytest.approx(100 * 2 / 3)  # problem 2: 2 right vs 1 wrong vote
    assert results["status_counts"] == {"correct": 6, "wrong": 5, "no_answer": 1}
    code_job = load_job(build / "jobs" / "bench" / f"{bench_job(build, 'code-held', 'initial')}.json", "bench")
    code = generate("builtin://code?n=2&split=test")
    texts = [[f"</think>\n```python\n{code[0]['meta']['solution']}\n```", "</think>\n```python\nprint(1/0)\n```"],
             [f"</think>\n```python\n{code[1]['meta']['solution']}\n```"] * 2]
    grades = bench.grade(code_job, code, [[Sample([1], [0.0], "stop", t) for t in row] for row in texts])
    assert [[g.status for g in row] for row in grades] == [["pass", "runtime_error"], ["pass", "pass"]]


def test_date_window_keeps_problems_released_inside(tmp_path, tiny):
    rows = [{"id": f"q{i}", "prompt": "Print 1.", "tests": [{"input": "", "output": "1"}], "release_date": day}
            for i, day in enumerate(["2024-07-31", "2024-08-01", "2025-01-31", "2025-02-01", None])]
    (tmp_path / "lcb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build = compile_build(tmp_path, tiny, code_uri="lcb.jsonl", window="date_window: {start: 2024-08-01, end: 2025-02-01}")
    job = load_job(build / "jobs" / "bench" / f"{bench_job(build, 'code-held', 'initial')}.json", "bench",
                   build / "context.json")
    problems, excluded = bench.load_problems(job)
    assert [p["id"] for p in problems] == ["q1", "q2"]
    assert excluded == {"outside_window": 2, "no_release_date": 1}
    empty = job.config.model_copy(update={"date_window": DateWindow(start="2030-01-01", end="2031-01-01")})
    with pytest.raises(bench.BenchError, match="no problems to evaluate"):
        bench.load_problems(job.__class__(**{**job.__dict__, "config": empty}))


@pytest.mark.slow
def test_bench_job_on_vllm(tmp_path, tiny):
    pytest.importorskip("vllm")
    build = compile_build(tmp_path, tiny, engine="vllm")
    jid = bench_job(build, "held", "initial")
    assert run_job(build, model_job(build), "model").returncode == 0
    proc = run_job(build, jid)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = check_outputs(build / "results" / "bench" / jid, problems=6, k=4)
    assert results["engine"] == "vllm"
