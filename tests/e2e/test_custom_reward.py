"""A two-step `rlspec run` on a parquet the test writes, graded only by the test's own reward module:
one term returns a float, one a veRL dict, one raises on some rows, one hangs on some rows.

Everything is real: the tiny from-scratch policy, curation, GRPO on the CPU, a benchmark, the
reward module imported in worker processes. The job must finish (rc 0), the broken terms must cost
only their share of those rows' rewards, and the errors and timeouts must be counted in the train
metrics (`grader_error_rate`) and named in the benchmark's samples and the job logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "WANDB_MODE": "offline"}

REWARDS = '''
import time

def as_float(data_source, solution_str, ground_truth, extra_info=None):
    return 1.0 if ground_truth in solution_str.rsplit("</think>", 1)[-1] else 0.0

def as_dict(data_source, solution_str, ground_truth, extra_info=None):
    return {"score": 1.0 if "</think>" in solution_str else 0.0, "source": data_source}

def raises(data_source, solution_str, ground_truth, extra_info=None):
    if extra_info["index"] % 4 == 0:
        raise ValueError("row %d is not gradable" % extra_info["index"])
    return 1.0

def hangs(data_source, solution_str, ground_truth, extra_info=None):
    if extra_info["index"] % 8 == 1:
        time.sleep(3600)
    return 1.0
'''

SPEC = """\
name: custom-reward-e2e
seed: 1
model:
  from_scratch:
    warmup: {sources: [{uri: "builtin://math?n=300&difficulty=1&tasks=chain&worked=true"}], steps: 20, max_tokens: 64}
  dtype: float32
  max_context: 256
datasets:
  qa:
    domain: qa
    sources: [{uri: train.parquet, fields: {prompt: question}}]
    reward:
      - {python: rewards.py:as_float}
      - {python: rewards.py:as_dict, weight: 0.5}
      - {python: rewards.py:raises, weight: 0.1}
      - {python: rewards.py:hangs, weight: 0.1, timeout_s: 1}
algorithm:
  health: {max_grader_error_rate: null, max_zero_reward_steps: null}
rollout: {engine: hf, temperature: 0.8, max_prompt_tokens: 64}
stages:
  - {name: qa, datasets: [qa], max_response_tokens: 16, steps: 2, prompts_per_step: 8, group_size: 2}
evaluate_initial: false
benchmarks:
  qa-heldout:
    domain: qa
    source: {uri: test.parquet, fields: {prompt: question}}
    k: 1
    sampling: {max_response_tokens: 16}
tracking: {mode: disabled}
resources:
  deepspeed: {zero_stage: 0}
"""


def write_inputs(tmp: Path) -> Path:
    def rows(start: int, n: int) -> list[dict]:
        return [{"question": f"What is {i % 9 + 1} + 1? Answer in \\\\boxed{{}}.", "answer": str(i % 9 + 2),
                 "data_source": "test/qa", "extra_info": {"index": i}} for i in range(start, start + n)]
    pq.write_table(pa.Table.from_pylist(rows(0, 32)), tmp / "train.parquet")
    pq.write_table(pa.Table.from_pylist(rows(100, 16)), tmp / "test.parquet")
    (tmp / "rewards.py").write_text(REWARDS)
    (tmp / "spec.yaml").write_text(SPEC)
    return tmp / "spec.yaml"


def only(build: Path, kind: str) -> Path:
    [job] = list((build / "results" / kind).iterdir())
    return job


def test_run_with_broken_reward_terms_finishes_and_counts_them(tmp_path):
    spec = write_inputs(tmp_path)
    build = tmp_path / "build"
    run = subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "run", str(spec), "-o", str(build),
                          "--cores", "2"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]

    rows = [json.loads(line) for line in (only(build, "train") / "metrics.jsonl").open()]
    assert len(rows) == 2
    assert all(r["grader_error_rate"] > 0 for r in rows), [r["grader_error_rate"] for r in rows]
    assert all(r["grader_error_rate"] < 1 for r in rows)

    samples = [json.loads(line) for line in (only(build, "bench") / "samples.jsonl").open()]
    assert len(samples) == 16
    errors = [s for s in samples if s["status"] == "error"]
    assert any("raises=0 (error: raised" in s["detail"] for s in errors), [s["detail"] for s in errors][:3]
    assert any("hangs=0 (error: timeout" in s["detail"] for s in errors), [s["detail"] for s in errors][:3]
    # the rows where nothing broke are scored by all four terms: at least the two fixed 0.1s
    fine = [s for s in samples if s["status"] == "scored"]
    assert fine and all(s["reward"] >= 0.2 for s in fine), [(s["reward"], s["detail"]) for s in fine]
    logs = "".join(p.read_text(errors="replace") for p in (build / "logs").rglob("*.log"))
    assert "got status error" in logs and "not gradable" in logs
