"""The rollout budget of train and filter jobs: prompts/step x group size x max response tokens x
steps = rollout tokens (an upper bound), and GPU-hours from the spec's declared throughputs.

`rlspec plan` prints it per job; `rlspec check` warns when a job's `time_min` is below its GPU-hours
spread over its GPUs. A module of its own so that both use one formula (the checks cannot import the
plan, which imports the checks).
"""

from __future__ import annotations

import math
from typing import Any

from .spec import ConstantGroupSize, JobResources, Spec, Stage



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
    return _budget(spec, stage, steps, responses, stage.max_response_tokens, sizes)


def filter_estimate(spec: Spec, stage: Stage) -> dict[str, Any]:
    f = stage.filter_before
    assert f is not None
    size = _stage_size(spec, stage)
    tokens = f.max_response_tokens or stage.max_response_tokens
    if size is None:
        return {"steps": None, "group_size": [f.k], "rollout_tokens": None, "gpu_hours": None,
                "note": "dataset size unknown: set expected_size"}
    return _budget(spec, stage, None, size * f.k, tokens, [f.k], train=False)


def _budget(spec: Spec, stage: Stage, steps, responses: int, max_tokens: int, sizes, *, train: bool = True) -> dict:
    tp = spec.resources.throughput
    rollout_tokens = responses * max_tokens
    mean_tokens = rollout_tokens * tp.mean_response_fraction
    gen_h = mean_tokens / tp.rollout_tokens_per_gpu_s / 3600
    train_h = 0.0
    if train:
        seq = stage.rollout.max_prompt_tokens * tp.mean_response_fraction + max_tokens * tp.mean_response_fraction
        train_h = responses * seq * stage.algorithm.updates_per_batch / tp.train_tokens_per_gpu_s / 3600
    return {"steps": steps, "prompts_per_step": stage.prompts_per_step, "group_size": sizes,
            "max_response_tokens": max_tokens, "responses": responses, "rollout_tokens": rollout_tokens,
            "gpu_hours": round(gen_h + train_h, 3), "generation_gpu_hours": round(gen_h, 3),
            "train_gpu_hours": round(train_h, 3)}


def minutes_needed(gpu_hours: float | None, resources: JobResources) -> float | None:
    """Wall-clock minutes of a job's GPU-hours spread over all its GPUs (None on CPU or unknown)."""
    gpus = resources.gpus * resources.nodes
    return None if gpu_hours is None or gpus == 0 else gpu_hours * 60 / gpus
