"""The rollout budget of every job that samples: rollout tokens (an upper bound: every response at
its maximum length) and GPU-hours from the spec's declared throughputs (`resources.throughput`).

What, per job kind:
  train  - prompts/step x group size x max response tokens x steps; with dynamic sampling
           (`refill: resample`) generation is up to (1 + max_rounds) rounds of generation_batch_size
           (or prompts_per_step) prompts per step, training stays prompts_per_step groups
  filter - the stage's dataset sizes x k x the filter's response budget
  bench  - the benchmark's `expected_size` problems x k x its response budget
  sample - the dataset's `expected_size` x k x the pass-rate's response budget: a lower bound of the
           items (the sample job sees them before the pass-rate cut), and at the policy's declared
           throughput (a larger teacher generates fewer tokens per GPU)
A job whose size is not known gets `gpu_hours: None` and a `note` saying what to set.

`rlspec plan` prints it per job; `rlspec check` warns when a job's `time_min` is below its GPU-hours
spread over its GPUs. A module of its own so that both use one formula (the checks cannot import the
plan, which imports the checks).
"""

from __future__ import annotations

import math
from typing import Any

from .spec import ConstantGroupSize, JobResources, PassRateFilter, Spec, Stage

def _stage_size(spec: Spec, stage: Stage) -> int | None:
    sizes = [spec.datasets[d].expected_size for d in stage.datasets]
    return sum(sizes) if all(s is not None for s in sizes) else None  # type: ignore[misc]


def stage_estimate(spec: Spec, stage: Stage) -> dict[str, Any]:
    """prompts/step x group size x max response tokens x steps = rollout tokens (an upper bound),
    and GPU-hours from the spec's declared throughputs."""
    size = _stage_size(spec, stage)
    if stage.filter_before is not None and size is not None:
        size = None  # the hard-prompt filter's yield is unknown before it runs
    steps_per_epoch = math.ceil(size / stage.prompts_per_step) if size else None
    steps = stage.steps if stage.steps is not None else (
        stage.epochs * steps_per_epoch if steps_per_epoch else None)  # type: ignore[operator]
    sizes = stage.group_size.all()
    if steps is None:
        return {"steps": None, "group_size": sizes, "prompts_per_step": stage.prompts_per_step,
                "max_response_tokens": stage.max_response_tokens, "rollout_tokens": None, "gpu_hours": None,
                "note": "steps unknown: set datasets.<name>.expected_size to turn epochs into steps"}
    if isinstance(stage.group_size, ConstantGroupSize) or not steps_per_epoch:
        responses = steps * stage.prompts_per_step * max(sizes)
    else:
        responses = sum(stage.prompts_per_step * sizes[min(s // steps_per_epoch, len(sizes) - 1)]
                        for s in range(steps))
    return _budget(spec, stage, steps, responses, stage.max_response_tokens, sizes,
                   generation_factor=dynamic_sampling_factor(stage))


def dynamic_sampling_factor(stage: Stage) -> float:
    """Generated prompts per trained prompt at most: 1 without dynamic sampling; with it, the first
    round's generation_batch_size (or prompts_per_step) and, under `refill: resample`, up to
    `max_rounds` more rounds of it (the trainer's `_collect`). DAPO's 1536 of 512 for 10 rounds: 30."""
    dyn = stage.algorithm.dynamic_sampling
    if not dyn.enabled:
        return 1.0
    rounds = 1 + dyn.max_rounds if dyn.refill == "resample" else 1
    return rounds * (dyn.generation_batch_size or stage.prompts_per_step) / stage.prompts_per_step


def filter_estimate(spec: Spec, stage: Stage) -> dict[str, Any]:
    f = stage.filter_before
    assert f is not None
    size = _stage_size(spec, stage)
    tokens = f.max_response_tokens or stage.max_response_tokens
    if size is None:
        return {"steps": None, "group_size": [f.k], "rollout_tokens": None, "gpu_hours": None,
                "note": "dataset size unknown: set expected_size"}
    return _budget(spec, stage, None, size * f.k, tokens, [f.k], train=False)


def bench_estimate(spec: Spec, name: str) -> dict[str, Any]:
    """One bench job of benchmark `name`: expected_size problems x k samples x its response budget."""
    b = spec.benchmarks[name]
    tokens = b.sampling.max_response_tokens
    if b.expected_size is None:
        return _unknown([b.k], tokens, f"problem count unknown: set benchmarks.{name}.expected_size")
    return _generation(spec, b.expected_size * b.k, tokens, [b.k])


def sample_estimate(spec: Spec, dataset: str, f: PassRateFilter, tokens: int) -> dict[str, Any]:
    """A pass-rate sample job: the dataset's expected_size x k x `tokens` (its response budget)."""
    size = spec.datasets[dataset].expected_size
    if size is None:
        return _unknown([f.k], tokens, f"item count unknown: set datasets.{dataset}.expected_size")
    out = _generation(spec, size * f.k, tokens, [f.k])
    out["note"] = (f"lower bound: {size:,} items is {dataset}'s expected size after curation, the job samples "
                   "every item before the pass-rate cut; GPU-hours at the policy's declared throughput")
    return out


def _unknown(sizes: list[int], tokens: int, note: str) -> dict[str, Any]:
    return {"steps": None, "group_size": sizes, "max_response_tokens": tokens, "rollout_tokens": None,
            "gpu_hours": None, "note": note}


def _generation(spec: Spec, responses: int, max_tokens: int, sizes: list[int]) -> dict[str, Any]:
    """Generation only (bench and sample jobs): responses x max tokens, GPU-hours at the mean length."""
    tp = spec.resources.throughput
    rollout_tokens = responses * max_tokens
    gen_h = rollout_tokens * tp.mean_response_fraction / tp.rollout_tokens_per_gpu_s / 3600
    return {"steps": None, "group_size": sizes, "max_response_tokens": max_tokens, "responses": responses,
            "rollout_tokens": rollout_tokens, "gpu_hours": round(gen_h, 3), "generation_gpu_hours": round(gen_h, 3),
            "train_gpu_hours": 0.0}


def _budget(spec: Spec, stage: Stage, steps, responses: int, max_tokens: int, sizes, *, train: bool = True,
            generation_factor: float = 1.0) -> dict:
    """`responses` trained (train) or generated (filter); a train job generates `generation_factor`
    times as many under dynamic sampling (`dynamic_sampling_factor`)."""
    tp = spec.resources.throughput
    generated = round(responses * generation_factor)
    rollout_tokens = generated * max_tokens
    mean_tokens = rollout_tokens * tp.mean_response_fraction
    gen_h = mean_tokens / tp.rollout_tokens_per_gpu_s / 3600
    train_h = 0.0
    if train:
        seq = stage.rollout.max_prompt_tokens * tp.mean_response_fraction + max_tokens * tp.mean_response_fraction
        train_h = responses * seq * stage.algorithm.updates_per_batch / tp.train_tokens_per_gpu_s / 3600
    out = {"steps": steps, "prompts_per_step": stage.prompts_per_step, "group_size": sizes,
           "max_response_tokens": max_tokens, "responses": generated, "rollout_tokens": rollout_tokens,
           "gpu_hours": round(gen_h + train_h, 3), "generation_gpu_hours": round(gen_h, 3),
           "train_gpu_hours": round(train_h, 3)}
    if generation_factor != 1.0:
        out["trained_responses"] = responses
        out["dynamic_sampling_factor"] = generation_factor
        out["note"] = (f"dynamic sampling: up to {generation_factor:g}x the trained prompts generated per step "
                       "(every round at most generation_batch_size prompts)")
    return out


def minutes_needed(gpu_hours: float | None, resources: JobResources) -> float | None:
    """Wall-clock minutes of a job's GPU-hours spread over all its GPUs (None on CPU or unknown)."""
    gpus = resources.gpus * resources.nodes
    return None if gpu_hours is None or gpus == 0 else gpu_hours * 60 / gpus
