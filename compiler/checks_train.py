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


@rule
def multi_node_only_for_training(spec: Spec):
    """Only a train job starts ranks on several nodes (one torchrun per node through srun); any
    other job is one process, which would hold the extra nodes idle."""
    for kind in ("model", "curate", "filter", "bench", "report"):
        nodes = getattr(spec.resources, kind).nodes
        if nodes > 1:
            yield Issue(("resources", kind, "nodes"), f"{nodes} nodes for the {kind} jobs: only train jobs run on "
                        "several nodes (one torchrun per node); a " + kind + " job is one process on the first node "
                        "and the others would sit idle; set nodes: 1")


@rule
def ranks_fit_the_gpus(spec: Spec):
    """On GPUs each rank takes one device (`torch.cuda.set_device(local_rank)`)."""
    train = spec.resources.train
    if train.gpus > 0 and train.ranks_per_node is not None and train.ranks_per_node > train.gpus:
        yield Issue(("resources", "train", "ranks_per_node"), f"{train.ranks_per_node} ranks per node on "
                    f"{train.gpus} GPUs: each rank takes one GPU, so ranks past the node's GPUs fail at start-up; "
                    f"set ranks_per_node to at most {train.gpus} (or leave it unset: one rank per GPU)")


@rule
def slurm_extra_leaves_the_task_layout_alone(spec: Spec):
    """A multi-node train job's task layout is rlspec's: one task per node, GPUs per node in --gres."""
    train = spec.resources.train
    if train.nodes > 1 and train.slurm_extra:
        taken = [f for f in ("--ntasks-per-node", "--gpus-per-node", "--gres", "--ntasks", "--gpus")
                 if any(part == f or part.startswith(f + "=") for part in train.slurm_extra.split())]
        if taken:
            yield Issue(("resources", "train", "slurm_extra"), f"{', '.join(taken)} in slurm_extra of a {train.nodes}-node "
                        "train job: rlspec sets the task layout itself (one task per node, --gres=gpu:<gpus> per "
                        "node) and a second value would change it; set resources.train.gpus instead and remove "
                        "the flag")
