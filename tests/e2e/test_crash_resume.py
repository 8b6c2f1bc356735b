"""The whole workflow survives being killed: SIGKILL the runner's process group during curation,
during a training step and during a benchmark, kill a training job in the middle of a checkpoint
write, then run the same command again. It finishes, reruns no job that had finished, and ends with
the same final weights and benchmark numbers as an uninterrupted run (CPU, same seed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SPEC = """\
name: crash
seed: 2
model:
  from_scratch:
    architecture: {hidden_size: 128, intermediate_size: 256, num_layers: 2, num_heads: 4, num_kv_heads: 2}
    tokenizer: {vocab_size: 320, corpus_size: 400}
    warmup: {sources: [{uri: "builtin://math?n=400&difficulty=1&worked=true"}], steps: 30, batch_size: 16}
  dtype: float32
  max_context: 256
  prompt:
    template: "<|im_start|>user\\n{question}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n"
    math_suffix: " Answer in \\\\boxed{}."
datasets:
  math: {domain: math, sources: [{uri: "builtin://math?n=3000&difficulty=1"}], filters: [{kind: dedup_near}]}
algorithm: {checkpoint_every: 2, optimizer: {lr: 1.0e-4}}
rollout: {engine: hf, temperature: 1.0, max_prompt_tokens: 96}
stages:
  - {name: s1, datasets: [math], max_response_tokens: 16, steps: 8, prompts_per_step: 4, group_size: 4}
benchmarks:
  held: {domain: math, source: {uri: "builtin://math?n=150&difficulty=1&split=test"}, k: 2,
         sampling: {max_response_tokens: 16}}
tracking: {mode: disabled}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def start(tmp: Path, build: Path, env_extra: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rlspec.compiler.cli", "run", "spec.yaml", "-o", str(build),
                             "--cores", "2"], cwd=tmp, env={**ENV, **(env_extra or {})}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 600) -> bool:
    """SIGKILL the runner's whole process group as soon as `condition()` holds; False if it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return False


def job_dir(build: Path, kind: str) -> Path:
    ids = sorted(p.stem for p in (build / "jobs" / kind).glob("*.json"))
    return build / "results" / kind / ids[0]


def running(build: Path, kind: str) -> bool:
    """Some job of `kind` has started (its log exists) and not finished (no done.json). Any job, not
    the first by id: the bench of the initial model may have finished in an earlier run."""
    logs = list((build / "logs" / kind).glob("*.log")) if (build / "logs" / kind).is_dir() else []
    return any(not (build / "results" / kind / log.stem / "done.json").exists() for log in logs)


def steps_logged(build: Path) -> int:
    path = job_dir(build, "train") / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def outcome(build: Path) -> tuple[bytes, dict]:
    weights = (job_dir(build, "train") / "model" / "model.safetensors").read_bytes()
    benches = {}
    for path in sorted((build / "results" / "bench").glob("*/results.json")):
        data = json.loads(path.read_text())
        benches[path.parent.name] = {k: v for k, v in data.items() if "time" not in k and "wall" not in k}
    return weights, benches


def test_killed_workflow_resumes_to_the_same_result(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    ref = start(tmp_path, tmp_path / "ref")
    assert ref.wait(timeout=1500) == 0, ref.stderr.read()[-3000:]
    expected = outcome(tmp_path / "ref")

    build = tmp_path / "crash"
    assert kill_when(start(tmp_path, build), lambda: running(build, "curate")), "never caught curation running"
    assert kill_when(start(tmp_path, build), lambda: steps_logged(build) >= 3), "never caught a training step"
    finished = {p: p.stat().st_mtime_ns for p in (build / "results").glob("*/*/done.json")}
    assert any("/model/" in str(p) for p in finished) and any("/curate/" in str(p) for p in finished)
    # the train job dies in the middle of writing checkpoint 6 (fault injection; the runner then stops)
    faulty = start(tmp_path, build, {"RLSPEC_FAULT": "train:checkpoint:6"})
    assert faulty.wait(timeout=1500) != 0
    assert not (job_dir(build, "train") / "done.json").exists()
    assert kill_when(start(tmp_path, build), lambda: running(build, "bench")), "never caught a benchmark running"

    final = start(tmp_path, build)
    assert final.wait(timeout=1500) == 0, final.stderr.read()[-3000:]
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rerun"
    weights, benches = outcome(build)
    assert weights == expected[0], "final weights differ from the uninterrupted run"
    assert benches == expected[1]
    assert (build / "report" / "index.html").is_file()
