"""Two datasets that ask for the same pass-rate samples share one `sample` job under `rlspec run`.

The spec: a tiny from-scratch policy (local tokenizer, random init, a short SFT warm-up on worked
additions, so its pass rates spread over 0..k), and two datasets with the same source and filters
and a `pass_rate` of the initial model with the same sampling but different thresholds (`easy`:
min 0.5; `hard`: max 0.25). Everything is real: the model job, the sample job sampling with the HF
engine and grading, the two curate jobs, run by Snakemake. The run asks for the two curate jobs only
(targets after `--`): training has nothing to show here.

What must hold: the sample job ran once (one results/sample/<id>/done.json, the `upstream` of both
curate jobs); each curate job kept exactly the records whose measured rate (in the sample job's
prompts.parquet) is within its thresholds, with that measurement; and each curate funnel covers the
whole chain (the sample job's filters and "sampled" step, then the cut), numbered as the dataset's
filters, with in = kept + dropped at every step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlspec.runtime.data.records import read_prompts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # ~2.5 min on a quiet 2-core machine, 8 on a busy one

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "WANDB_MODE": "offline"}

SPEC = """\
name: shared-samples-e2e
seed: 1
model:
  from_scratch:
    architecture: {hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 2, num_kv_heads: 1}
    tokenizer: {vocab_size: 320}
    warmup: {sources: [{uri: "builtin://math?n=400&difficulty=1&tasks=add&worked=true"}], steps: 400,
             max_tokens: 64, lr: 5.0e-3}
  dtype: float32
  max_context: 256
datasets:
  easy:
    domain: math
    sources: [{uri: "builtin://math?n=24&difficulty=1&tasks=add"}]
    filters: [{kind: dedup_exact}, {kind: length, min: 10}, {kind: pass_rate, k: 4, temperature: 1.0, min: 0.5}]
  hard:
    domain: math
    sources: [{uri: "builtin://math?n=24&difficulty=1&tasks=add"}]
    filters: [{kind: dedup_exact}, {kind: length, min: 10}, {kind: pass_rate, k: 4, temperature: 1.0, max: 0.25}]
rollout: {engine: hf, max_prompt_tokens: 128}
stages:
  - {name: s1, datasets: [easy, hard], max_response_tokens: 32, steps: 1, prompts_per_step: 4, group_size: 2}
evaluate_initial: false
benchmarks: {}
tracking: {mode: disabled}
resources:
  deepspeed: {zero_stage: 0}
"""


def rlspec(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=1500)


def jobs(build: Path, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((build / "jobs" / kind).glob("*.json"))]


def within(measured: dict, cut: dict) -> bool:
    return "unsampled" not in measured and cut["min"] <= measured["rate"] <= cut["max"]


def test_two_datasets_share_one_sample_job_and_cut_it_by_their_own_thresholds(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    build = tmp_path / "build"
    compiled = rlspec("compile", "spec.yaml", "-o", str(build), cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    [sample] = jobs(build, "sample")
    curates = {j["config"]["dataset"]: j for j in jobs(build, "curate")}
    assert set(curates) == {"easy", "hard"}
    assert all(j["inputs"] == {"upstream": sample["output_dir"]} for j in curates.values())
    # a flag before the targets: the local runner's `--resources gpu=N` would take them as resources
    targets = [f"{j['output_dir']}/done.json" for j in curates.values()]
    run = rlspec("run", "spec.yaml", "-o", str(build), "--cores", "2", "--", "--keep-going", *targets, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    assert [p.parent.name for p in (build / "results" / "sample").glob("*/done.json")] == [sample["id"]]
    assert (build / "logs" / "snakemake.log").read_text().count("rule sample:") == 1
    measured = {r["id"]: r["meta"]["pass_rate"] for r in read_prompts(build / sample["output_dir"] / "prompts.parquet")}
    assert len(measured) == 24 and len({m.get("correct") for m in measured.values()}) > 1  # rates spread

    kept_ids = {}
    for name, job in curates.items():
        out = build / job["output_dir"]
        [cut] = job["config"]["filters"]
        records = read_prompts(out / "prompts.parquet")
        kept_ids[name] = {r["id"] for r in records}
        assert kept_ids[name] == {i for i, m in measured.items() if within(m, cut)}, name
        assert all(r["meta"]["pass_rate"] == measured[r["id"]] for r in records)  # the shared measurement
        funnel = json.loads((out / "funnel.json").read_text())
        steps = funnel["steps"]
        assert [(s["index"], s["filter"]) for s in steps] == [(1, "dedup_exact"), (2, "length"), (3, "sampled"),
                                                              (3, "pass_rate")]
        assert funnel["dataset"] == name and funnel["input"] == 24 == steps[0]["records_in"]
        assert all(s["records_in"] == s["kept"] + s["dropped"] for s in steps)
        assert all(a["kept"] == b["records_in"] for a, b in zip(steps, steps[1:]))
        assert funnel["output"] == steps[-1]["kept"] == len(records) > 0
    assert kept_ids["easy"].isdisjoint(kept_ids["hard"])  # min 0.5 and max 0.25 share no rate
