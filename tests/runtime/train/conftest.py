"""A tiny real training setup: a tiny model built locally, a small builtin math set curated by the
real curate job, and a compiled spec whose train job the tests run as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
       "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false"}


WARMUP_SPEC = """\
name: tiny-warmup
seed: 5
model:
  from_scratch:
    architecture: {hidden_size: 128, intermediate_size: 256, num_layers: 2, num_heads: 4, num_kv_heads: 2}  # head_dim 32: vLLM CPU needs >= 32
    tokenizer: {vocab_size: 320, corpus_size: 500}
    warmup:
      sources: [{uri: "builtin://math?n=500&difficulty=1&worked=true"}]
      steps: 120
      batch_size: 16
      lr: 5.0e-3
  dtype: float32
  max_context: 256
  prompt:
    template: "<|im_start|>user\\n{question}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n"
    math_suffix: " Answer in \\\\boxed{}."
datasets:
  math: {domain: math, sources: [{uri: "builtin://math?n=8"}]}
rollout: {max_prompt_tokens: 96}
stages:
  - {name: s1, datasets: [math], max_response_tokens: 16, steps: 1, prompts_per_step: 4, group_size: 4}
"""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny policy from the real `model` job: local tokenizer, random init, a short SFT warm-up,
    so some answers are right and GRPO has a learning signal."""
    tmp = tmp_path_factory.mktemp("tiny")
    (tmp / "spec.yaml").write_text(WARMUP_SPEC)
    out = run([sys.executable, "-m", "rlspec.compiler.cli", "compile", "spec.yaml", "-o", "build"], tmp)
    assert out.returncode == 0, out.stderr
    build = tmp / "build"
    job = next((build / "jobs" / "model").glob("*.json"))
    res = run([sys.executable, "-m", "rlspec.runtime.model", "--job", str(job.relative_to(build)),
               "--context", "context.json"], build)
    assert res.returncode == 0, res.stderr[-3000:]
    return build / json.loads(job.read_text())["output_dir"] / "model"


def spec_text(model_dir: Path, *, engine: str = "hf", steps: int = 4, extra_algorithm: str = "",
              ranks: int = 1, every: int = 2) -> str:
    return textwrap.dedent(f"""\
        name: tiny-train
        seed: 5
        model:
          path: {model_dir}
          dtype: float32
          max_context: 256
          prompt:
            template: "<|im_start|>user\\n{{question}}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n"
            math_suffix: " Answer in \\\\boxed{{}}."
        datasets:
          math:
            domain: math
            sources: [{{uri: "builtin://math?n=64&difficulty=1"}}]
        algorithm:
          optimizer: {{lr: 1.0e-3, weight_decay: 0.0}}
          micro_batch_size: 4
          checkpoint_every: {every}
          EXTRA_ALGORITHM
        rollout:
          engine: {engine}
          temperature: 1.0
          max_prompt_tokens: 96
          vllm: {{kv_cache_memory_bytes: 67108864, enforce_eager: true, max_num_seqs: 64}}
        stages:
          - {{name: s1, datasets: [math], max_response_tokens: 16, steps: {steps}, prompts_per_step: 4, group_size: 4}}
        evaluate_initial: false
        tracking: {{mode: offline}}
        resources:
          train: {{ranks_per_node: {ranks}}}
        """).replace("  EXTRA_ALGORITHM\n", "".join(f"  {line}\n" for line in extra_algorithm.splitlines()))


def run(cmd: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def compile_and_curate(tmp: Path, text: str) -> tuple[Path, Path]:
    """Compile the spec into tmp/build, run its model and curate jobs; returns (build dir, train job path)."""
    tmp.mkdir(parents=True, exist_ok=True)
    spec = tmp / "spec.yaml"
    spec.write_text(text)
    out = run([sys.executable, "-m", "rlspec.compiler.cli", "compile", str(spec), "-o", str(tmp / "build")], tmp)
    assert out.returncode == 0, out.stderr
    build = tmp / "build"
    for kind in ("model", "curate"):
        for job in (build / "jobs" / kind).glob("*.json"):
            res = run([sys.executable, "-m", f"rlspec.runtime.{kind}", "--job", str(job.relative_to(build)),
                       "--context", "context.json"], build)
            assert res.returncode == 0, res.stderr
    train = next((build / "jobs" / "train").glob("*.json"))
    return build, train


def run_train(build: Path, job: Path, env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**ENV, **(env_extra or {})}
    return run([sys.executable, "-m", "rlspec.runtime.train", "--job", str(job.relative_to(build)),
                "--context", "context.json"], build, timeout=timeout, env=env)


def job_dir(build: Path, job: Path) -> Path:
    return build / json.loads(job.read_text())["output_dir"]


def metrics(build: Path, job: Path) -> list[dict]:
    path = job_dir(build, job) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
