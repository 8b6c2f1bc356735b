"""Cross-field rules on the shape of a train job's micro-batches (see `checks` for the convention:
each rule yields `Issue`s the caller locates; `validate` imports this module so the rules register)."""

from __future__ import annotations

from .checks import rule
from .errors import Issue
from .spec import Spec


@rule
def token_budget_holds_a_sequence(spec: Spec):
    """A token budget below the stage's longest possible sequence would give that sequence a
    micro-batch over the budget: the memory the budget promised would not hold."""
    for i, stage in enumerate(spec.stages):
        budget = stage.algorithm.max_tokens_per_micro_batch
        longest = min(stage.rollout.max_prompt_tokens + stage.max_response_tokens, spec.model.max_context)
        if budget is not None and budget < longest:
            yield Issue(("stages", i, "algorithm", "max_tokens_per_micro_batch"),
                        f"{budget} tokens is less than the longest sequence of stage {stage.name!r}, "
                        f"rollout.max_prompt_tokens + "
                        f"max_response_tokens = {stage.rollout.max_prompt_tokens} + {stage.max_response_tokens} "
                        f"(capped by model.max_context {spec.model.max_context}) = {longest}: such a sequence "
                        f"could not fit any micro-batch; set it to at least {longest} (a multiple of it lets "
                        "several full-length sequences share one)")
