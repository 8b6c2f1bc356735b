"""The published recipes in `specs/recipes/`: each checks and compiles, and its train jobs carry the
values that define it in its source scripts.

A recipe spec is only worth shipping if a change to the compiler cannot silently alter it: these
tests compile every `specs/recipes/*.yaml` into a temporary build folder (check -> plan -> render ->
write, as `rlspec compile` does) and read the train jobs' JSON back, so a signature value (DAPO's
clip-higher and dual-clip, Dr. GRPO's unnormalised advantage, Skywork-OR1's adaptive entropy, ...)
is asserted where the runtime reads it, not only in the parsed spec. `test_cli` runs `rlspec check`
and `plan` on every shipped spec, recipes included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlspec.compiler.plan import build_plan
from rlspec.compiler.render import render, write_build
from rlspec.compiler.validate import check_file

from conftest import SPECS

RECIPES = SPECS / "recipes"
RECIPE_FILES = sorted(RECIPES.glob("*.yaml"))


def compile_recipe(name: str, out: Path) -> tuple[object, dict[str, dict]]:
    """(the checked spec, {stage name: its train job's config}) read back from a written build folder."""
    path = RECIPES / f"{name}.yaml"
    checked = check_file(path)
    write_build(render(checked, build_plan(checked.cells, path.parent), spec_file=str(path)), out)
    jobs = [json.loads(p.read_text()) for p in sorted((out / "jobs" / "train").glob("*.json"))]
    return checked.cells[0].spec, {job["config"]["stage"]: job["config"] for job in jobs}


def test_recipes_are_shipped():
    assert {p.stem for p in RECIPE_FILES} >= {"dapo", "deepscaler", "dr-grpo", "skywork-or1", "deepcoder", "polaris"}


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.stem)
def test_recipe_compiles_and_names_its_source(path, tmp_path):
    spec, trains = compile_recipe(path.stem, tmp_path / "b")
    assert sorted(trains) == sorted(s.name for s in spec.stages), "one train job per stage"
    text = path.read_text()
    assert re.search(r"@[0-9a-f]{40}", text), "the header pins the source repository's commit"
    readme = (RECIPES / "README.md").read_text()
    assert f"`{path.name}`" in readme, "specs/recipes/README.md lists every recipe"


def test_dapo(tmp_path):
    spec, trains = compile_recipe("dapo", tmp_path / "b")
    job = trains["dapo"]
    alg = job["algorithm"]
    assert alg["clip"] == {"low": 0.2, "high": 0.28, "dual": 10.0}
    assert alg["dynamic_sampling"] == {"enabled": True, "max_rounds": 9, "generation_batch_size": 1536,
                                       "metric": "accuracy", "refill": "resample"}
    assert alg["overlong"] == {"kind": "soft_penalty", "buffer": 4096, "factor": 1.0}
    assert alg["reward_values"] == {"correct": 1.0, "incorrect": -1.0}
    assert alg["loss_agg"] == "token_mean" and alg["kl"]["coef"] == 0.0 and alg["entropy_coef"] == 0.0
    assert alg["mini_batch_size"] == 32 and alg["updates_per_batch"] == 1
    assert alg["optimizer"]["warmup_steps"] == 10 and alg["optimizer"]["warmup_unit"] == "batches"
    assert alg["optimizer"]["weight_decay"] == 0.1
    assert (job["prompts_per_step"], job["group_size"]["value"], job["max_response_tokens"]) == (512, 16, 20480)
    assert job["sampling"]["temperature"]["value"] == 1.0
    assert job["grading"]["answer"]["think_end"] is None
    assert spec.model.path == "hf://Qwen/Qwen2.5-32B"
    assert [s.uri for s in spec.datasets["dapo-math-17k"].sources] == ["hf://datasets/BytedTsinghua-SIA/DAPO-Math-17k"]
    assert spec.benchmarks["aime24"].sampling.top_p == 0.7


def test_deepscaler(tmp_path):
    spec, trains = compile_recipe("deepscaler", tmp_path / "b")
    assert [trains[s]["max_response_tokens"] for s in ("math-8k", "math-16k", "math-24k")] == [8192, 16384, 24576]
    assert [trains[s]["group_size"]["value"] for s in ("math-8k", "math-16k", "math-24k")] == [8, 16, 16]
    for job in trains.values():
        alg = job["algorithm"]
        assert alg["kl"] == {"coef": 0.001, "estimator": "low_var_kl", "reference": "stage_input"}
        assert alg["mini_batch_size"] == 64 and job["prompts_per_step"] == 128  # 2 optimiser steps per batch
        assert alg["clip"]["low"] == alg["clip"]["high"] == 0.2
        assert job["sampling"]["temperature"]["value"] == 0.6
    assert spec.model.path == "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert spec.datasets["deepscaler"].sources[0].uri == "hf://datasets/agentica-org/DeepScaleR-Preview-Dataset"
    assert sorted(spec.benchmarks) == ["aime24", "amc", "math500", "minerva", "olympiad-bench"]
    assert all(b.k == 16 and b.sampling.top_p == 0.95 for b in spec.benchmarks.values())


def test_dr_grpo(tmp_path):
    spec, trains = compile_recipe("dr-grpo", tmp_path / "b")
    job = trains["dr-grpo"]
    alg = job["algorithm"]
    assert alg["advantage"]["normalize_std"] is False
    # Dr. GRPO divides per-sequence sums by a constant: rlspec's constant is the stage's response
    # budget, which must equal the script's generate_max_length (3000).
    assert alg["loss_agg"] == "seq_mean_token_sum_norm" and job["max_response_tokens"] == 3000
    assert alg["overlong"]["kind"] == "zero_reward"
    assert alg["kl"]["coef"] == 0.0
    assert alg["optimizer"]["betas"] == [0.9, 0.95] and alg["optimizer"]["weight_decay"] == 0.0
    assert alg["mini_batch_size"] == 16 and job["prompts_per_step"] == 128 and job["group_size"]["value"] == 8
    assert job["snapshot_steps"][:2] == [16, 32], "evaluated every 16 steps (--eval_steps 16)"
    assert spec.model.path == "hf://Qwen/Qwen2.5-Math-7B"
    assert spec.model.prompt.template.startswith("<|im_start|>system\nPlease reason step by step")
    assert all(b.sampling.temperature == 0.0 for b in spec.benchmarks.values())


def test_skywork_or1(tmp_path):
    spec, trains = compile_recipe("skywork-or1", tmp_path / "b")
    assert [trains[s]["max_response_tokens"] for s in ("mixed-8k", "mixed-16k", "mixed-32k")] == [8192, 16384, 32768]
    for job in trains.values():
        alg = job["algorithm"]
        assert alg["adaptive_entropy"] == {"target": 0.2, "step": 0.0001, "min_coef": 0.0, "max_coef": 0.005}
        assert alg["entropy_coef"] == 0.0 and alg["kl"]["coef"] == 0.0
        assert alg["dynamic_sampling"]["enabled"] is True and alg["dynamic_sampling"]["refill"] == "none"
        assert (job["prompts_per_step"], job["group_size"]["value"]) == (256, 16)
    # code read twice in the mix (the script lists the code file twice)
    assert [s.split for s in spec.datasets["code"].sources] == ["code", "code"]
    assert [s.split for s in spec.datasets["math"].sources] == ["math"]
    assert spec.model.path == "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def test_deepcoder(tmp_path):
    spec, trains = compile_recipe("deepcoder", tmp_path / "b")
    assert [trains[s]["max_response_tokens"] for s in ("code-16k", "code-32k")] == [16384, 32768]
    assert [trains[s]["prompts_per_step"] for s in ("code-16k", "code-32k")] == [32, 128]
    assert [trains[s]["algorithm"]["mini_batch_size"] for s in ("code-16k", "code-32k")] == [16, 64]
    for job in trains.values():
        alg = job["algorithm"]
        assert alg["clip"]["low"] == 0.2 and alg["clip"]["high"] == 0.28
        assert alg["overlong"]["kind"] == "mask" and alg["kl"]["coef"] == 0.0 and alg["entropy_coef"] == 0.0
        assert job["group_size"]["value"] == 8
    # the LiveCodeBench rows (and the benchmark) get the LCB prompt; the other datasets the bare problem
    lcb = spec.datasets["lcb"].prompt
    assert lcb.template.startswith("<｜User｜>You are an expert Python programmer.")
    assert spec.benchmarks["lcb-v5"].prompt == lcb
    assert spec.model.prompt.code_suffix == ""
    assert spec.model.path == "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"


def test_polaris(tmp_path):
    spec, trains = compile_recipe("polaris", tmp_path / "b")
    stages = ("stage1-40k", "stage2-48k", "stage3-52k")
    assert [trains[s]["max_response_tokens"] for s in stages] == [39936, 48128, 52224]
    assert [trains[s]["sampling"]["temperature"]["value"] for s in stages] == [1.4, 1.45, 1.5]
    assert [trains[s]["drop_prompts_above_accuracy"] for s in stages] == [None, 0.9, 0.9]
    for job in trains.values():
        alg = job["algorithm"]
        assert alg["dynamic_sampling"]["enabled"] is True and alg["dynamic_sampling"]["refill"] == "copy"
        assert alg["clip"] == {"low": 0.2, "high": 0.28, "dual": 3.0}
    assert spec.model.path == "hf://Qwen/Qwen3-4B"
