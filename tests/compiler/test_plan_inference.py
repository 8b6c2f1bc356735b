"""`rlspec plan`'s budget for every job: bench jobs (problems x k x response budget), pass-rate sample
jobs (a lower bound from the dataset's expected size), dynamic sampling's extra generation in a train
job's upper bound, and every job either estimated, CPU only, or listed as not estimated with why;
`rlspec check` warns when a bench or sample job's estimate over its GPUs exceeds its time_min."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from rlspec.compiler import budget
from rlspec.compiler.cli import plan_data
from rlspec.compiler.plan import build_plan, totals
from rlspec.compiler.show import print_plan
from rlspec.compiler.validate import check_file

from conftest import MINI, REPO

SIZED = MINI.replace("    sampling: {max_response_tokens: 1024}\n",
                     "    sampling: {max_response_tokens: 1024}\n    expected_size: 20\n")
TEACHER = MINI.replace("      - kind: decontaminate\n", "      - kind: decontaminate\n      - kind: pass_rate\n"
                       "        policy: hf://deepseek-ai/DeepSeek-R1\n        k: 8\n        max: 0.9\n"
                       "        max_response_tokens: 4096\n", 1).replace(
    "      - uri: builtin://math?n=100\n", "      - uri: builtin://math?n=100\n    expected_size: 100\n")


def plan_of(write_spec, text: str):
    return build_plan(check_file(write_spec(text)).cells)


def jobs_of(plan, kind: str):
    return [j for j in plan.jobs.values() if j.kind == kind]


def test_bench_jobs_are_estimated_from_expected_size(write_spec):
    plan = plan_of(write_spec, SIZED)
    benches = jobs_of(plan, "bench")
    assert len(benches) == 3  # initial, s1, s2
    est = benches[0].estimate
    assert est["rollout_tokens"] == 20 * 4 * 1024 and est["responses"] == 20 * 4
    assert est["gpu_hours"] == round(20 * 4 * 1024 * 0.6 / 2500 / 3600, 3)
    train = sum(j.estimate["rollout_tokens"] for j in jobs_of(plan, "train"))
    assert totals(plan)["grid"]["rollout_tokens"] == train + 3 * 20 * 4 * 1024


def test_bench_without_size_is_listed_as_not_estimated(write_spec):
    plan = plan_of(write_spec, MINI)
    est = jobs_of(plan, "bench")[0].estimate
    assert est["gpu_hours"] is None and "set benchmarks.held.expected_size" in est["note"]
    grid = totals(plan)["grid"]
    # 3 bench jobs without a size; model, curate and report are CPU-only, not unknown
    assert grid["jobs_without_estimate"] == 3 and grid["cpu_jobs"] == 3


def test_a_gpu_job_without_a_budget_counts_as_unknown(write_spec):
    plan = plan_of(write_spec, SIZED + "resources:\n  curate: {gpus: 1}\n")
    grid = totals(plan)["grid"]
    assert grid["jobs_without_estimate"] == 1 and grid["cpu_jobs"] == 2


def test_sample_job_estimate_is_a_lower_bound(write_spec):
    plan = plan_of(write_spec, TEACHER)
    (sample,) = jobs_of(plan, "sample")
    assert sample.estimate["rollout_tokens"] == 100 * 8 * 4096
    assert sample.estimate["note"].startswith("lower bound: 100 items")


def test_shipped_7b_plan_estimates_the_shared_r1_job():
    plan = build_plan(check_file(REPO / "specs/acereason-nemotron-7b.yaml").cells)
    math_job = next(j for j in jobs_of(plan, "sample") if j.label.endswith(" on math"))
    assert math_job.estimate["rollout_tokens"] == 49_000 * 8 * 32_768
    assert len(jobs_of(plan, "sample")) == 2  # code and code-capped share one R1 job
    code = next(j for j in jobs_of(plan, "sample") if "code" in j.label)
    # code-capped (first to ask) sets no expected_size; code's 8,520 bounds the shared job
    assert code.estimate["rollout_tokens"] == 8_520 * 8 * 32_768 and "8,520 items is code's" in code.estimate["note"]


@pytest.mark.parametrize("dyn, factor", [
    ("{enabled: true, generation_batch_size: 24, max_rounds: 9}", 30.0),  # DAPO: 3x the batch, 10 rounds
    ("{enabled: true, max_rounds: 3}", 4.0),
    ("{enabled: true, refill: none, generation_batch_size: 16}", 2.0),
    ("{enabled: false, generation_batch_size: 24}", 1.0),
])
def test_dynamic_sampling_raises_the_generation_bound(write_spec, dyn, factor):
    text = MINI.replace("    group_size: 4\n", f"    group_size: 4\n    algorithm:\n      dynamic_sampling: {dyn}\n", 1)
    plan = plan_of(write_spec, text)
    s1 = next(j for j in jobs_of(plan, "train") if j.config.stage == "s1")
    assert budget.dynamic_sampling_factor(check_file(write_spec(text)).cells[0].spec.stages[0]) == factor
    assert s1.estimate["rollout_tokens"] == round(8 * 4 * 10 * factor) * 1024
    # training still sees prompts_per_step groups a step
    plain = next(j for j in jobs_of(plan_of(write_spec, MINI), "train") if j.config.stage == "s1")
    assert s1.estimate["train_gpu_hours"] == plain.estimate["train_gpu_hours"]


def test_plan_output_lists_every_job_without_gpu_hours(write_spec):
    path = write_spec(MINI)
    plan = build_plan(check_file(path).cells, path.parent)
    out = io.StringIO()
    print_plan(plan_data(plan, path.parent), Console(file=out, width=250))
    text = out.getvalue()
    assert "CPU only: no GPU-hours" in text and "model org/model, curate math, report" in text
    assert "not estimated: problem count unknown: set benchmarks.held.expected_size" in text
    assert "bench held (3 jobs)" in text


@pytest.mark.parametrize("text, where", [
    (SIZED.replace("    expected_size: 20\n", "    expected_size: 5000\n") +
     "resources:\n  bench: {gpus: 1, time_min: 1}\n", "resources.bench"),
    (TEACHER.replace("hf://deepseek-ai/DeepSeek-R1", "initial") + "resources:\n  sample: {gpus: 1, time_min: 1}\n",
     "resources.sample"),
])
def test_time_limit_warning_for_bench_and_sample(write_spec, text, where):
    warnings = check_file(write_spec(text)).warnings
    found = [w for w in warnings if ".".join(map(str, w.path)) == f"{where}.time_min"]
    assert found and "more than time_min 1" in found[0].message
