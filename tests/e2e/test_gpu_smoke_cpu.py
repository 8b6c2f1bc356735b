"""perf/gpu_smoke.py's `--cpu` mode: the GPU smoke script end to end, at tiny shapes.

Stands in for the GPU run (one NVIDIA GPU, ZeRO-3 in bf16 over NCCL, 8K and 16K tokens), which
cannot run here: the same script builds the policy folder (a BPE tokenizer padded with synthetic
tokens to the model's vocabulary, a random Qwen2), writes and compiles a spec, runs the real model,
curate and train jobs (ZeRO-3, gradient checkpointing, 1 step per length), and writes the results
JSON with the plan's memory estimate beside the measured peaks (none on CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_cpu_mode_runs_every_stage_through_the_train_job_and_records_the_estimate(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "perf" / "gpu_smoke.py"), "--cpu", "--engine", "hf",
                          "--lengths", "16,32", "--out", str(tmp_path)],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    res = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert res["mode"] == "cpu" and res["engine"] == "hf" and res["zero_stage"] == 3
    config = json.loads((tmp_path / "policy" / "config.json").read_text())
    assert config["vocab_size"] == res["shape"]["vocab"] and config["hidden_size"] == res["shape"]["hidden"]
    assert [s["max_response_tokens"] for s in res["stages"]] == [16, 32]
    for stage in res["stages"]:
        job = json.loads((tmp_path / "build" / "jobs" / "train" / f"{stage['job']}.json").read_text())["config"]
        assert job["deepspeed"]["zero_stage"] == 3 and job["algorithm"]["gradient_checkpointing"] is True
        assert [s["step"] for s in stage["steps"]] == [1]
        step = stage["steps"][0]
        assert 0 < step["response_len_mean"] <= stage["max_response_tokens"]
        assert step["time_step_s"] > 0 and step["rollout_tokens_per_s"] > 0 and step["train_tokens_per_s"] > 0
        assert stage["peak_allocated_gib"] is None  # no GPU here
        assert stage["estimate"]["estimated"] is True and stage["estimate_gib"] > 0
    assert "results:" in out.stdout and "peak alloc" in out.stdout
