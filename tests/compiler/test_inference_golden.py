"""The 7B spec's inference jobs as a golden file: every sample, curate and filter job, and the bench
jobs of the initial model (one per benchmark; the other checkpoints' differ only in their input),
each with its full job config, its rule resources from dag.json and the sbatch options the Slurm
plugin builds from them. Beside the golden comparison, the properties the file is there to show are
asserted on their own, so a regenerated golden cannot hide them: every inference job uses every GPU
it is given (replicas x GPUs per replica = nodes x GPUs per node), engines are sized to the job's
longest sequence, and the code problems are sampled by the teacher once.

Regenerate after an intended change:
    RLSPEC_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/compiler/test_inference_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rlspec.compiler.plan import build_plan
from rlspec.compiler.render import _rule_resources, sbatch_options
from rlspec.compiler.validate import check_file

from conftest import REPO

SPEC = "specs/acereason-nemotron-7b.yaml"
GOLDEN = Path(__file__).parent / "golden" / "inference" / "acereason-nemotron-7b.json"
INFERENCE = ("sample", "filter", "bench")


@pytest.fixture(scope="module")
def plan():
    checked = check_file(REPO / SPEC, display=SPEC)
    return build_plan(checked.cells, (REPO / SPEC).parent)


def golden_jobs(plan) -> list:
    jobs = [j for j in plan.jobs.values() if j.kind in ("sample", "curate", "filter")]
    initial = plan.cells[0].initial_bench
    return jobs + [plan.jobs[initial[b]] for b in sorted(initial)]


def test_inference_jobs_match_golden(plan):
    doc = {j.label: {"kind": j.kind, "config": j.config.model_dump(mode="json"),
                     "inputs": sorted(j.inputs), "resources": _rule_resources(j),
                     "sbatch": sbatch_options(_rule_resources(j))} for j in golden_jobs(plan)}
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if os.environ.get("RLSPEC_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "the 7B spec's inference jobs changed; regenerate if intended (docstring)"


def test_every_inference_job_uses_all_its_gpus(plan):
    jobs = [j for j in plan.jobs.values() if j.kind in INFERENCE]
    assert {j.kind for j in jobs} == set(INFERENCE)
    for j in jobs:
        r, reps, vllm = j.resources, j.config.replicas, j.config.inference.rollout.vllm
        assert r["gpus"] == 8, j.label
        assert reps.count * reps.gpus == r["nodes"] * r["gpus"], j.label
        assert reps.gpus == vllm.tensor_parallel_size * vllm.pipeline_parallel_size, j.label
        assert vllm.gpu_memory_utilization == 0.9, j.label  # not the colocated trainer's 0.7


def test_teacher_replicas_span_nodes_and_engines_fit_the_longest_sequence(plan):
    samples = plan.by_kind("sample")
    for j in samples:
        reps, vllm = j.config.replicas, j.config.inference.rollout.vllm
        assert (vllm.tensor_parallel_size, vllm.pipeline_parallel_size) == (8, 2)
        assert (reps.count, reps.gpus, reps.nodes) == (2, 16, 4)  # two R1 replicas, each over 2 nodes
        assert j.config.inference.max_model_len == 2048 + 32768  # not the model's 131,072
    for j in plan.by_kind("filter"):
        assert j.config.inference.max_model_len == 2048 + j.config.pass_rate.max_response_tokens
        assert j.config.replicas.count == 64


def test_code_problems_are_sampled_by_the_teacher_once(plan):
    samples = plan.by_kind("sample")
    assert len(samples) == 2  # math, and the code problems of both code datasets
    curate = {j.config.dataset: j for j in plan.by_kind("curate")}
    assert curate["code"].inputs["upstream"] == curate["code-capped"].inputs["upstream"]
    assert curate["math"].inputs["upstream"] != curate["code"].inputs["upstream"]
    shared = plan.jobs[curate["code"].inputs["upstream"]]
    assert shared.label.endswith("on code-capped, code")
    # the two code datasets differ in their thresholds only
    assert curate["code"].config.filters[0].min == 0.125 and curate["code-capped"].config.filters[0].min == 0.375
    assert all(j.resources["gpus"] == 0 for j in curate.values())  # curation itself samples nothing
