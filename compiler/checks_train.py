"""Cross-field rules of a train job: its micro-batches' shape, its loss knobs (see `checks` for the convention:
each rule yields `Issue`s the caller locates; `validate` imports this module so the rules register)."""

from __future__ import annotations

from . import memory
from .checks import rule, warn
from .errors import Issue
from .spec import Spec
from .budget import stage_estimate
from .spec import Stage


def compiled_steps(spec: Spec, stage: Stage) -> int | None:
    """The stage's step count as the compiler knows it: `steps`, or `epochs` over the datasets'
    `expected_size` (None when the runtime decides it: unknown sizes, a `filter_before`, or
    `filter_solved`, which re-plans the count as prompts retire)."""
    if stage.steps is None and stage.algorithm.filter_solved:
        return None
    if not _datasets_known(spec, stage):  # another rule reports the unknown name
        return None
    return stage_estimate(spec, stage)["steps"]


def _datasets_known(spec: Spec, stage: Stage) -> bool:
    return all(d in spec.datasets for d in stage.datasets)


def snapshot_steps(spec: Spec, stage: Stage) -> list[int]:
    """Steps N, 2N, ... below the stage's end (N = `evaluate_every`) at which the train job writes an
    HF snapshot for bench jobs; [] without `evaluate_every` (or an unknown count, which
    `evaluate_every_has_known_steps` refuses)."""
    total = compiled_steps(spec, stage)
    if stage.evaluate_every is None or total is None:
        return []
    return list(range(stage.evaluate_every, total, stage.evaluate_every))


@rule
def evaluate_every_has_known_steps(spec: Spec):
    """The workflow's bench jobs are fixed when compiling, so the steps they evaluate must be too."""
    for i, stage in enumerate(spec.stages):
        if stage.evaluate_every is None or not _datasets_known(spec, stage) or compiled_steps(spec, stage) is not None:
            continue
        why = ("algorithm.filter_solved re-plans an epochs stage's step count as prompts retire"
               if stage.algorithm.filter_solved else
               "filter_before's yield is only known when it has run" if stage.filter_before is not None else
               "the datasets' size after curation is only known when it has run (no expected_size)")
        yield Issue(("stages", i, "evaluate_every"),
                    f"stage {stage.name!r} counts epochs and its step count is not known when compiling: {why}; "
                    "evaluate_every makes one bench job per snapshot step in the workflow, so those steps must "
                    "be known; set the stage's `steps` instead of `epochs`, or (without filter_before and "
                    "filter_solved) every dataset's `expected_size`")


@rule
def evaluate_every_inside_the_stage(spec: Spec):
    """evaluate_every asks for snapshots below the stage's end; none there would be a silent no-op."""
    for i, stage in enumerate(spec.stages):
        every = stage.evaluate_every
        total = compiled_steps(spec, stage) if every is not None else None
        if every is not None and total is not None and every >= total:
            yield Issue(("stages", i, "evaluate_every"),
                        f"evaluate_every {every} is not below stage {stage.name!r}'s {total} steps: no snapshot "
                        "would be written inside the stage (its end is benchmarked by `evaluate`); set it below "
                        f"{total}, or remove it")


@rule
def evaluate_every_has_benchmarks(spec: Spec):
    """Snapshots are written only for bench jobs; without benchmarks there are none to run."""
    if spec.benchmarks:
        return
    for i, stage in enumerate(spec.stages):
        if stage.evaluate_every is not None:
            yield Issue(("stages", i, "evaluate_every"),
                        f"stage {stage.name!r} sets evaluate_every but the spec declares no benchmarks, so there "
                        "is nothing to evaluate the snapshots on; add `benchmarks:` or remove evaluate_every")


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
def generation_batch_holds_a_step(spec: Spec):
    """Dynamic sampling generates `generation_batch_size` prompts per round and trains on at most
    `prompts_per_step` of their groups; a smaller round could never fill a step by itself."""
    for i, stage in enumerate(spec.stages):
        gen = stage.algorithm.dynamic_sampling.generation_batch_size
        if gen is not None and gen < stage.prompts_per_step:
            yield Issue(("stages", i, "algorithm", "dynamic_sampling", "generation_batch_size"),
                        f"generation_batch_size {gen} is below prompts_per_step {stage.prompts_per_step} of stage "
                        f"{stage.name!r}: a round generates that many prompts and the step trains on up to "
                        "prompts_per_step of their groups, so the generation batch must hold at least one step's "
                        f"prompts (DAPO generates 3x); set it to at least {stage.prompts_per_step}, or null")


@rule
def dataset_weights_name_the_stage_datasets(spec: Spec):
    """Mixing weights apportion each step's prompts over the stage's datasets: one weight for each,
    and the trainer tells datasets apart by their curate folders (a `filter_before` merges them)."""
    for i, stage in enumerate(spec.stages):
        weights = stage.dataset_weights
        if weights is None:
            continue
        unknown = sorted(set(weights) - set(stage.datasets))
        missing = [d for d in stage.datasets if d not in weights]
        if unknown or missing:
            said = "; ".join(x for x in (f"{', '.join(unknown)} not among them" if unknown else "",
                                         f"no weight for {', '.join(missing)}" if missing else "") if x)
            yield Issue(("stages", i, "dataset_weights"), f"the weights must name exactly the datasets of stage "
                        f"{stage.name!r} ({', '.join(stage.datasets)}): {said}; each step's prompts are split over "
                        "the stage's datasets by these weights, so give each of them one weight and no other name")
        if stage.filter_before is not None:
            yield Issue(("stages", i, "dataset_weights"), f"dataset_weights with filter_before on stage {stage.name!r}: "
                        "the filter job writes the kept prompts of every dataset into one folder, so the trainer can "
                        "no longer tell which dataset a prompt came from; remove one of the two (a curation "
                        "`pass_rate` filter per dataset keeps them apart)")


@rule
def accuracy_pruning_needs_an_earlier_stage(spec: Spec):
    """`drop_prompts_above_accuracy` reads the accuracy earlier train jobs recorded."""
    for i, stage in enumerate(spec.stages):
        if i == 0 and stage.drop_prompts_above_accuracy is not None:
            yield Issue(("stages", i, "drop_prompts_above_accuracy"), f"stage {stage.name!r} is the first stage: no "
                        "earlier stage trained on its prompts, so there is no training accuracy to drop prompts by "
                        "and the setting would drop nothing; set it on a later stage (POLARIS prunes between "
                        "stages) or remove it")


@rule
def multi_node_only_for_training(spec: Spec):
    """Train jobs start ranks on several nodes (one torchrun per node through srun) and inference jobs
    (bench, filter, sample) engine replicas; a model, curate or report job is one process, which would
    hold the extra nodes idle."""
    for kind in ("model", "curate", "report"):
        nodes = getattr(spec.resources, kind).nodes
        if nodes > 1:
            yield Issue(("resources", kind, "nodes"), f"{nodes} nodes for the {kind} jobs: only train and inference "
                        "jobs (bench, filter, sample) run on several nodes; a " + kind + " job is one process on the "
                        "first node and the others would sit idle; set nodes: 1")


@rule
def ranks_fit_the_gpus(spec: Spec):
    """On GPUs each rank takes one device (`torch.cuda.set_device(local_rank)`)."""
    train = spec.resources.train
    if train.gpus > 0 and train.ranks_per_node is not None and train.ranks_per_node > train.gpus:
        yield Issue(("resources", "train", "ranks_per_node"), f"{train.ranks_per_node} ranks per node on "
                    f"{train.gpus} GPUs: each rank takes one GPU, so ranks past the node's GPUs fail at start-up; "
                    f"set ranks_per_node to at most {train.gpus} (or leave it unset: one rank per GPU)")


def _sharing(stage, hits: list, value, top) -> list[str]:
    """The stages one message names: all the `hits` (stage, value) that may inherit the top-level value
    `top` when this stage's `value` is it (validate reports them once, at the top-level line), else
    this stage alone."""
    same = [s.name for s, v in hits if v == value == top]
    return same if stage.name in same else [stage.name]


@rule
def colocated_tensor_parallel_groups_fit_a_node(spec: Spec):
    """A train stage's vLLM engine joins the training world (vLLM's external launcher): TP groups of
    `tensor_parallel_size` consecutive ranks, each group one engine. A group must be whole ranks of one
    node: TP exchanges activations at every layer, and torchrun numbers a node's ranks consecutively.
    (The hf engine ignores `rollout.vllm`.) Located at the stage's path; `validate` moves it to the
    top-level `rollout` when the stage inherits it."""
    train = spec.resources.train
    per_node = train.ranks_per_node or max(train.gpus, 1)
    split = [(i, stage, stage.rollout.vllm.tensor_parallel_size) for i, stage in enumerate(spec.stages)
             if stage.rollout.engine == "vllm" and per_node % stage.rollout.vllm.tensor_parallel_size]
    for i, stage, tp in split:
        # the stages that inherit one top-level value share one message, so the line that sets it is
        # reported once, naming them all
        same = _sharing(stage, [(s, n) for _, s, n in split], tp, spec.rollout.vllm.tensor_parallel_size)
        named = (f"engine of stage {same[0]!r}" if len(same) == 1 else
                 "engines of stages " + ", ".join(map(repr, same)))
        fits = [d for d in range(1, per_node + 1) if per_node % d == 0]
        yield Issue(("stages", i, "rollout", "vllm", "tensor_parallel_size"),
                    f"tensor_parallel_size {tp} in the colocated rollout {named}, with {per_node} training "
                    f"rank{'s' if per_node > 1 else ''} per node: the engine is split over TP groups of {tp} "
                    "consecutive training ranks, and a group must be whole ranks of one node (every layer "
                    f"exchanges activations within the group); set it to one of {fits}")


@rule
def sleep_mode_needs_a_gpu_with_vllm(spec: Spec):
    """vLLM's sleep mode allocates through CUDA's virtual memory API (its cumem allocator): vLLM
    refuses `enable_sleep_mode` on CPU. The hf engine drops its weights copy on any device."""
    if spec.resources.train.gpus > 0:
        return
    asleep = [(i, stage) for i, stage in enumerate(spec.stages)
              if stage.rollout.engine == "vllm" and stage.rollout.sleep_mode]
    for i, stage in asleep:
        same = _sharing(stage, [(s, True) for _, s in asleep], True, spec.rollout.sleep_mode)
        named = ", ".join(map(repr, same))
        yield Issue(("stages", i, "rollout", "sleep_mode"), f"sleep_mode: true with the vLLM engine of stage"
                    f"{'s' if len(same) > 1 else ''} {named} on a CPU train job (resources.train.gpus: 0): vLLM's "
                    "sleep mode frees GPU memory through CUDA and vLLM refuses it on CPU; set sleep_mode: false "
                    "(or null: on only where the train job has GPUs), or rollout.engine: hf")


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


@rule
def dual_clip_above_one(spec: Spec):
    """The dual-clip cap c·|A| is the loss at ratio c; at c <= 1 it would cap every negative-advantage
    token at or below the ratio's unclipped start (ratio 1), so no such token would be learned from."""
    for i, stage in enumerate(spec.stages):
        c = stage.algorithm.clip.dual
        if c is not None and c <= 1.0:
            yield Issue(("stages", i, "algorithm", "clip", "dual"), f"dual-clip constant {c} is not above 1: the cap "
                        "c·|A| on a negative-advantage token binds once its ratio exceeds c, so at c <= 1 it binds "
                        "already at the old policy and those tokens give no gradient; set it above 1 (veRL's "
                        "default 3, DAPO 10) or null to turn dual-clip off")


@rule
def adaptive_entropy_bounds_ordered(spec: Spec):
    """The controller clamps the coefficient to [min_coef, max_coef]: an empty range has no value."""
    for i, stage in enumerate(spec.stages):
        ae = stage.algorithm.adaptive_entropy
        if ae is not None and ae.min_coef > ae.max_coef:
            yield Issue(("stages", i, "algorithm", "adaptive_entropy", "max_coef"), f"max_coef {ae.max_coef} is below "
                        f"min_coef {ae.min_coef}: the coefficient is clamped to [min_coef, max_coef], an empty range; "
                        "set max_coef >= min_coef (Skywork-OR1: 0 and 0.005)")


@rule
def kl_reference_needs_kl(spec: Spec):
    """`kl.reference` picks the reference model, which is loaded only when `kl.coef` > 0."""
    for i, stage in enumerate(spec.stages):
        kl = stage.algorithm.kl
        if kl.reference != "stage_input" and kl.coef == 0:
            yield warn(("stages", i, "algorithm", "kl", "reference"), f"kl.reference {kl.reference!r} with kl.coef 0: "
                       "no reference model is loaded without a KL term, so this setting changes nothing; set "
                       "kl.coef > 0 or leave kl.reference out")


@rule
def lora_targets_are_projections(spec: Spec):
    """PEFT puts an adapter on every module whose name ends with a target; in the dense decoders the
    compiler knows (`compiler/memory.py`), only the attention and MLP projections are linear layers
    whose merged weight the rollout engines load. Other architectures are left to PEFT at start-up."""
    cfg = spec.model.lora
    shape = memory.model_shape(spec.model, None) if cfg is not None else None
    if cfg is None or isinstance(shape, memory.NotEstimated):
        return
    known = memory.lora_targets(shape)
    for j, name in enumerate(cfg.target_modules):
        if name.split(".")[-1] not in known:
            yield Issue(("model", "lora", "target_modules", j), f"{name!r} is not a linear projection of the decoder "
                        f"layers of {shape.source}: LoRA here adapts linear layers whose merged weight W + "
                        "(alpha / rank)·B·A the rollout engine loads under the base name (embeddings, the output "
                        f"layer and whole blocks are not supported); use some of {', '.join(known)}")
