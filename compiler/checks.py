"""Cross-field rules: what the field types alone cannot say.

Each rule is a small generator of `Issue`s (path + message, no location: the caller adds it from
the spec's location table). Messages say what is wrong, why it breaks, and what to set instead.
`run(spec)` applies every rule and returns all issues, so the user sees them at once.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from . import budget, engines, memory
from .builtin_params import BuiltinError, parse_uri

from .errors import Issue, Path, dotted_path
from .spec import (BUILTIN_DOMAINS, FILTER_DOMAINS, DecontaminateFilter, EntropyTargetTemperature,
                   PassRateFilter, Source, Spec, Stage)

Rule = Callable[[Spec], Iterator[Issue]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def run(spec: Spec) -> list[Issue]:
    return [issue for fn in RULES for issue in fn(spec)]


def group_sizes(stage: Stage) -> list[int]:
    return stage.group_size.all()


def train_ranks(spec: Spec) -> int:
    """Data-parallel training ranks: nodes x ranks per node (default: GPUs per node, at least 1)."""
    r = spec.resources.train
    return r.nodes * (r.ranks_per_node or max(r.gpus, 1))


def warn(path, message) -> Issue:
    return Issue(tuple(path), message, severity="warning")


def source_places(spec: Spec) -> list[tuple[Path, Source]]:
    """Every data source in the spec, with its path: datasets, benchmarks and the warm-up corpus."""
    places: list[tuple[Path, Source]] = []
    for name, ds in spec.datasets.items():
        places += [(("datasets", name, "sources", i), s) for i, s in enumerate(ds.sources)]
    for name, b in spec.benchmarks.items():
        places.append((("benchmarks", name, "source"), b.source))
    if spec.model.from_scratch is not None:
        places += [(("model", "from_scratch", "warmup", "sources", i), s)
                   for i, s in enumerate(spec.model.from_scratch.warmup.sources)]
    return places


# ------------------------------------------------------------------------------------------


@rule
def model_source(spec: Spec):
    m = spec.model
    if (m.path is None) == (m.from_scratch is None):
        yield Issue(("model",), "set exactly one of `path` (a hub id or local folder) and `from_scratch` "
                    "(a tiny model built locally); the starting policy must be unambiguous")
    if m.from_scratch is not None and m.tokenizer is not None:
        yield Issue(("model", "tokenizer"), "a from-scratch model trains its own tokenizer on the warm-up corpus "
                    "(`from_scratch.tokenizer`), so another tokenizer would not match its embeddings; remove "
                    "`model.tokenizer`")


@rule
def unique_stage_names(spec: Spec):
    seen: dict[str, int] = {}
    for i, stage in enumerate(spec.stages):
        if stage.name in seen:
            yield Issue(("stages", i, "name"), f"stage name {stage.name!r} is already used by stages[{seen[stage.name]}]; "
                        "names identify jobs, reports and grid paths, so make them unique")
        seen.setdefault(stage.name, i)


RESERVED_STAGE_NAMES = {"initial"}  # the report's label for the model before RL


@rule
def reserved_stage_names(spec: Spec):
    for i, stage in enumerate(spec.stages):
        if stage.name in RESERVED_STAGE_NAMES:
            yield Issue(("stages", i, "name"), f"{stage.name!r} is reserved (reports call the model before RL "
                        "'initial'); pick another stage name")


@rule
def steps_or_epochs(spec: Spec):
    for i, stage in enumerate(spec.stages):
        if (stage.steps is None) == (stage.epochs is None):
            yield Issue(("stages", i), "set exactly one of `steps` and `epochs`: the stage needs one "
                        "unambiguous length (e.g. `steps: 1000`)")


@rule
def dataset_references(spec: Spec):
    for i, stage in enumerate(spec.stages):
        for j, name in enumerate(stage.datasets):
            if name not in spec.datasets:
                yield Issue(("stages", i, "datasets", j), f"dataset {name!r} is not declared under `datasets:` "
                            f"(declared: {', '.join(sorted(spec.datasets))}); declare it or fix the name")


@rule
def group_size_at_least_two(spec: Spec):
    for i, stage in enumerate(spec.stages):
        for g in group_sizes(stage):
            if g < 2:
                yield Issue(("stages", i, "group_size"), f"group size {g} < 2: the GRPO advantage is reward minus "
                            "the group mean, which is always 0 for a single response, so nothing would be learned; "
                            "set group_size ≥ 2 (AceReason: 8 or 16)")


@rule
def prompts_divisible_by_ranks(spec: Spec):
    """The trainer gives each rank an equal share of a step's prompts (every rank samples and trains
    whole groups), and each optimiser step an equal share of a mini-batch."""
    ranks = train_ranks(spec)
    if ranks == 1:
        return
    for i, stage in enumerate(spec.stages):
        p = stage.prompts_per_step
        if p % ranks:
            idle = f", so {ranks - p} ranks would sit idle" if p < ranks else ", so ranks would train unequal batches"
            yield Issue(("stages", i, "prompts_per_step"), f"prompts_per_step {p} is not divisible by the {ranks} "
                        f"training ranks (resources.train): the trainer splits a step's prompts across ranks{idle}; "
                        f"set prompts_per_step to a multiple of {ranks} (e.g. {_multiple(p, ranks)}) or use fewer "
                        "ranks")
        mb = stage.algorithm.mini_batch_size
        if mb is not None and mb % ranks:
            yield Issue(("stages", i, "algorithm", "mini_batch_size"), f"mini_batch_size {mb} is not divisible by "
                        f"the {ranks} training ranks: each optimiser step takes {mb} prompts split across the ranks, "
                        f"so they would step on unequal shares; set a multiple of {ranks} (e.g. "
                        f"{_multiple(mb, ranks)}) or null (one step per batch)")


def _multiple(n: int, of: int) -> int:
    """The nearest multiple of `of` at or above n."""
    return -(-n // of) * of


@rule
def mini_batch_divides(spec: Spec):
    for i, stage in enumerate(spec.stages):
        mb = stage.algorithm.mini_batch_size
        if mb is not None and stage.prompts_per_step % mb:
            yield Issue(("stages", i, "algorithm", "mini_batch_size"), f"mini_batch_size {mb} does not divide "
                        f"prompts_per_step {stage.prompts_per_step}, so the last mini-batch would be short; "
                        "pick a divisor")


@rule
def lengths_fit_context(spec: Spec):
    ctx = spec.model.max_context
    for i, stage in enumerate(spec.stages):
        need = stage.rollout.max_prompt_tokens + stage.max_response_tokens
        if need > ctx:
            yield Issue(("stages", i, "max_response_tokens"), f"max prompt + max response = "
                        f"{stage.rollout.max_prompt_tokens} + {stage.max_response_tokens} = {need} tokens exceeds "
                        f"model.max_context ({ctx}); the engine would reject or truncate sequences; lower "
                        "max_response_tokens or rollout.max_prompt_tokens, or raise model.max_context")
    prompt = spec.rollout.max_prompt_tokens
    for name, bench in spec.benchmarks.items():
        need = prompt + bench.sampling.max_response_tokens
        if need > ctx:
            yield Issue(("benchmarks", name, "sampling", "max_response_tokens"), f"max prompt + max response = "
                        f"{prompt} + {bench.sampling.max_response_tokens} = {need} tokens exceeds model.max_context "
                        f"({ctx}); lower it or raise model.max_context")


@rule
def clipping_needed_off_policy(spec: Spec):
    for i, stage in enumerate(spec.stages):
        alg = stage.algorithm
        if alg.updates_per_batch > 1 and (alg.clip.low is None or alg.clip.high is None):
            yield Issue(("stages", i, "algorithm", "clip"), f"updates_per_batch = {alg.updates_per_batch} with "
                        "clipping disabled: after the first update the policy is off-policy and an unclipped "
                        "ratio lets one batch push it arbitrarily far; set clip.low/high (DAPO: 0.2 / 0.28) "
                        "or updates_per_batch: 1")


@rule
def lengths_do_not_shrink(spec: Spec):
    for i in range(1, len(spec.stages)):
        prev, cur = spec.stages[i - 1], spec.stages[i]
        if cur.max_response_tokens < prev.max_response_tokens and _domains(spec, cur) == _domains(spec, prev):
            yield warn(("stages", i, "max_response_tokens"), f"{cur.max_response_tokens} is shorter than the previous "
                       f"stage's {prev.max_response_tokens}: a length curriculum normally grows (8K -> 16K -> 24K); "
                       "responses the policy learned to write will now be truncated")


def _domains(spec: Spec, stage: Stage) -> frozenset[str]:
    return frozenset(spec.datasets[d].domain for d in stage.datasets if d in spec.datasets)


@rule
def filter_references(spec: Spec):
    for name, ds in spec.datasets.items():
        for j, f in enumerate(ds.filters):
            path = ("datasets", name, "filters", j)
            allowed = FILTER_DOMAINS.get(f.kind)
            if allowed and ds.domain not in allowed:
                yield Issue(path + ("kind",), f"filter `{f.kind}` applies to {'/'.join(sorted(allowed))} data, but "
                            f"dataset {name!r} is {ds.domain}; remove it or fix the dataset's domain")
            if isinstance(f, DecontaminateFilter):
                yield from _decontaminate_refs(spec, ds.domain, f, path)
            if isinstance(f, PassRateFilter):
                if f.policy == "previous":
                    yield Issue(path + ("policy",), "`previous` only means something in a stage's filter_before; "
                                "in a dataset use `initial` or a model id/folder")
                if f.min > f.max:
                    yield Issue(path + ("min",), f"min {f.min} > max {f.max}: no item can be kept; swap them")


def _decontaminate_refs(spec: Spec, domain: str, f: DecontaminateFilter, path):
    if f.benchmarks is None:
        if not any(b.domain == domain for b in spec.benchmarks.values()) and not f.extra_files:
            yield warn(path, f"no {domain} benchmark is declared and no extra_files are given, so decontamination "
                       "checks against nothing; declare the benchmarks you will report")
        return
    for k, bname in enumerate(f.benchmarks):
        if bname not in spec.benchmarks:
            yield Issue(path + ("benchmarks", k), f"benchmark {bname!r} is not declared under `benchmarks:` "
                        f"(declared: {', '.join(sorted(spec.benchmarks)) or 'none'}); decontamination can only "
                        "check against declared benchmarks")


@rule
def stage_filters(spec: Spec):
    for i, stage in enumerate(spec.stages):
        f = stage.filter_before
        if f is not None and f.min > f.max:
            yield Issue(("stages", i, "filter_before", "min"), f"min {f.min} > max {f.max}: no prompt can be kept; "
                        "swap them")


@rule
def temperature_bounds(spec: Spec):
    for i, stage in enumerate(spec.stages):
        t = stage.rollout.temperature
        if isinstance(t, EntropyTargetTemperature) and not t.min <= t.initial <= t.max:
            yield Issue(("stages", i, "rollout", "temperature"), f"entropy_target needs min ≤ initial ≤ max "
                        f"(got {t.min} ≤ {t.initial} ≤ {t.max}); the controller keeps T inside [min, max]")


@rule
def overlong_buffer(spec: Spec):
    for i, stage in enumerate(spec.stages):
        o = stage.algorithm.overlong
        if o.kind == "soft_penalty" and o.buffer >= stage.max_response_tokens:
            yield Issue(("stages", i, "algorithm", "overlong", "buffer"), f"soft_penalty buffer {o.buffer} must be "
                        f"shorter than the stage's max_response_tokens ({stage.max_response_tokens}), or every "
                        "response is penalised; DAPO uses 4096 of 20480")


@rule
def benchmark_metrics(spec: Spec):
    for name, b in spec.benchmarks.items():
        for j, metric in enumerate(b.metrics):
            path = ("benchmarks", name, "metrics", j)
            if metric.startswith("pass@") and int(metric[5:]) > b.k:
                yield Issue(path, f"{metric} needs at least {metric[5:]} samples per problem but k = {b.k}; "
                            f"raise k (the paper uses 128 samples for pass@k)")
            if metric == "maj@k" and b.domain != "math":
                yield Issue(path, "maj@k votes over extracted answers and only applies to math; use avg@k or pass@N")
        if b.date_window is not None:
            if b.domain != "code":
                yield Issue(("benchmarks", name, "date_window"), "a release-date window only applies to code "
                            "benchmarks (LiveCodeBench); remove it")
            elif b.date_window.start >= b.date_window.end:
                yield Issue(("benchmarks", name, "date_window"), f"start {b.date_window.start} is not before end "
                            f"{b.date_window.end}; the window would be empty")


def domain_places(spec: Spec) -> list[tuple[Path, Any]]:
    """Every block that names a domain (datasets, then benchmarks), with its path."""
    return ([(("datasets", n), d) for n, d in spec.datasets.items()]
            + [(("benchmarks", n), b) for n, b in spec.benchmarks.items()])


@rule
def custom_domains_have_rewards(spec: Spec):
    for path, block in domain_places(spec):
        if block.domain not in BUILTIN_DOMAINS and block.reward is None and not any(
                b.domain == block.domain and b.reward for _, b in domain_places(spec)):
            yield Issue(path + ("domain",), f"domain {block.domain!r} has no built-in grader (only "
                        f"{' and '.join(BUILTIN_DOMAINS)} do), so its answers could not be rewarded; add "
                        "`reward: {python: rewards.py:score}` (a function of yours) or use domain math or code")


@rule
def reward_terms(spec: Spec):
    for path, block in domain_places(spec):
        for k, term in enumerate(block.reward or []):
            if (term.grader is None) == (term.python is None):
                yield Issue(path + ("reward", k), "set exactly one of `grader` (math or code) and `python` "
                            "(file.py:function): a term is one reward function")


@rule
def domain_blocks_agree(spec: Spec):
    """Reward terms and prompts are resolved per domain (every record carries its domain), so two
    blocks of one domain must not declare different ones."""
    first: dict[tuple[str, str], tuple[Path, Any]] = {}
    for path, block in domain_places(spec):
        for key in ("reward", "prompt"):
            value = getattr(block, key)
            if value is None:
                continue
            dumped = [t.model_dump() for t in value] if key == "reward" else value.model_dump(exclude_unset=True)
            seen = first.setdefault((block.domain, key), (path, dumped))
            if seen[1] != dumped:
                yield Issue(path + (key,), f"{dotted_path(seen[0])} (domain {block.domain!r}) declares another "
                            f"`{key}`, and rewards and prompts are resolved per domain; give this block its own "
                            f"domain name (e.g. `domain: {block.domain}-{path[-1]}`) or make the `{key}` blocks equal")


@rule
def prompt_settings(spec: Spec):
    places = [(("model", "prompt"), None)] + [(p + ("prompt",), b.prompt) for p, b in domain_places(spec)
                                             if b.prompt is not None]
    for path, written in places:
        prompt = spec.model.prompt.merged(written)
        if prompt.use_chat_template and prompt.template is not None:
            yield Issue(path + ("template",), "`use_chat_template: true` renders with the tokenizer's chat "
                        "template, so this `template` would never be used; remove one of them")
        text = prompt.use_chat_template is False or prompt.template is not None
        if text and prompt.chat_template_args:
            yield Issue(path + ("chat_template_args",), "these prompts are rendered from `template`, not the "
                        "chat template, so the arguments would be ignored; remove them or the `template`")
        if text and prompt.system is not None and "{system}" not in prompt.text_template():
            yield Issue(path + ("system",), "the text `template` has no `{system}`, so the system prompt would be "
                        "dropped; add `{system}` where it belongs in `template`, or use the chat template")


@rule
def deepspeed_offload(spec: Spec):
    """Shape rules only: the trainer honours both offloads (torch AdamW on host memory)."""
    ds = spec.resources.deepspeed
    if ds.offload_params and ds.zero_stage != 3:
        yield Issue(("resources", "deepspeed", "offload_params"), f"parameter offload needs ZeRO stage 3 "
                    f"(zero_stage is {ds.zero_stage}): only stage 3 partitions the parameters it would move to "
                    "the CPU; set zero_stage: 3 or offload_params: false")
    if ds.offload_optimizer and ds.zero_stage == 0:
        yield Issue(("resources", "deepspeed", "offload_optimizer"), "optimizer offload needs ZeRO (stage 1, 2 "
                    "or 3): at stage 0 DeepSpeed keeps the optimizer on the GPU and ignores the setting; set "
                    "zero_stage: 2 or offload_optimizer: false")


@rule
def builtin_uris(spec: Spec):
    """`builtin://` parameters, checked by the generator's own parser (`builtin_params.parse_uri`),
    wherever data is read: sources, and decontamination's extra files (read like sources)."""
    uris = [(path + ("uri",), source.uri) for path, source in source_places(spec)]
    for name, ds in spec.datasets.items():
        for j, f in enumerate(ds.filters):
            if isinstance(f, DecontaminateFilter):
                uris += [(("datasets", name, "filters", j, "extra_files", k), x) for k, x in enumerate(f.extra_files)]
    for path, uri in uris:
        if not uri.startswith("builtin:"):
            continue
        problem, split = _builtin_uri(uri)
        if problem:
            yield Issue(path, f"{problem}; the job that reads this data would stop on it")
        elif path[0] == "benchmarks" and split != "test":
            yield warn(path, "this benchmark reads the `train` split, the one training data is drawn from, so it "
                       "is not held out; add `split=test` to the uri")


@functools.lru_cache(maxsize=4096)  # every grid cell repeats the same URIs
def _builtin_uri(uri: str) -> tuple[str | None, str | None]:
    """(what is wrong, or None; the split read)."""
    try:
        return None, parse_uri(uri)[1]["split"]
    except BuiltinError as exc:
        return exc.problem, None


@rule
def gpu_memory(spec: Spec):
    """Every train job's and every inference job's (bench, filter, sample: `memory.inference_jobs`)
    estimated memory per GPU (`compiler/memory.py`) against its resources' `gpu_mem_gb`. A policy
    whose shape the compiler does not know is not estimated here (`rlspec plan` says why); a local
    model folder is read by the plan, which knows the spec's folder. A teacher that is not estimated
    gets a warning saying so: its size is the one a spec most often gets wrong."""
    ranks = train_ranks(spec)
    for i, stage in enumerate(spec.stages):
        yield from _memory_issues(("stages", i), f"the train job of stage {stage.name!r}", "resources.train",
                                  memory.stage_train(spec, stage, ranks, None))
    for job in memory.inference_jobs(spec):
        inputs = memory.inference_inputs(spec, job, None)
        if isinstance(inputs, memory.NotEstimated) and job.model is not None and job.resources.gpus:
            yield warn(job.path, f"{job.what}: memory per GPU not estimated ({inputs.reason}); `rlspec check` "
                       f"cannot tell whether {job.model} fits one replica of {job.block.tensor_parallel_size} x "
                       f"{job.block.pipeline_parallel_size} GPUs")
        yield from _memory_issues(job.path, job.what, dotted_path(job.resources_path), inputs,
                                  memory.inference_remedies(job, inputs))


@rule
def inference_parallelism(spec: Spec):
    """Every inference job's replicas (`compiler/engines.py`, as the plan resolves them): TP x PP x DP
    is the job's GPUs; one replica's TP x PP GPUs fit in a node or are whole nodes; tensor/pipeline
    parallelism and quantization need the vllm engine and GPUs."""
    merged: dict[tuple, list[str]] = {}  # jobs that share a block get one message naming them all
    for job in memory.inference_jobs(spec):
        for issue in _parallelism_issues(job):
            merged.setdefault((issue.path, issue.severity, issue.message.removeprefix(job.what)), []).append(job.what)
    for (path, severity, rest), whats in merged.items():
        yield Issue(path, _jobs_named(whats) + rest, severity=severity)


def _jobs_named(whats: list[str]) -> str:
    """'the bench jobs of 'a'', 'the bench jobs of 'b'' -> "the bench jobs of 'a', 'b'"."""
    if len(whats) == 1:
        return whats[0]
    head = whats[0].rsplit(" ", 1)[0]
    if all(w.rsplit(" ", 1)[0] == head for w in whats):
        return head + " " + ", ".join(w.rsplit(" ", 1)[1] for w in whats)
    return "; ".join(whats)


def _parallelism_issues(job) -> Iterator[Issue]:
    b, res = job.block, job.resources
    tp, pp = b.tensor_parallel_size, b.pipeline_parallel_size
    where = dotted_path(job.engine_path)
    split = tp > 1 or pp > 1
    if b.engine == "hf" and (split or b.quantization):
        what = f"tensor_parallel_size {tp} x pipeline_parallel_size {pp}" if split else f"quantization {b.quantization}"
        yield Issue(job.engine_path, f"{job.what}: {what} with the hf engine: transformers `generate` runs one whole "
                    "model copy per replica on one device, with no tensor or pipeline parallelism and no vLLM "
                    f"quantization, so the setting would be ignored; set {where}.engine: vllm, or "
                    "tensor_parallel_size: 1, pipeline_parallel_size: 1 and no quantization")
        return
    if res.gpus == 0:
        if split:
            yield Issue(job.engine_path, f"{job.what}: tensor_parallel_size {tp} x pipeline_parallel_size {pp} on CPU "
                        f"({dotted_path(job.resources_path)}.gpus = 0): a CPU replica is one process on the job's "
                        f"cpus and splits over no devices; set {where}.tensor_parallel_size: 1 and "
                        f"pipeline_parallel_size: 1 (more replicas: data_parallel_size), or give the job GPUs")
        return
    yield from _replica_layout(job, tp, pp, dotted_path(job.engine_path if job.block_path == job.resources_path
                                                         else job.block_path))


def _replica_layout(job, tp: int, pp: int, where: str) -> Iterator[Issue]:
    res, per_node = job.resources, job.resources.gpus
    total, replica = per_node * job.resources.nodes, tp * pp
    dp = engines.replica_count(job.block, res)
    at_res = dotted_path(job.resources_path)
    if replica > per_node and replica % per_node:
        yield Issue(job.block_path, f"{job.what}: one replica takes tensor_parallel_size {tp} x pipeline_parallel_size "
                    f"{pp} = {replica} GPUs, more than a node's {per_node} ({at_res}.gpus) and not a whole number of "
                    f"nodes: a replica would share a node with part of another, which vLLM cannot place; use "
                    f"{replica // per_node * per_node or per_node} or {math.ceil(replica / per_node) * per_node} GPUs "
                    f"per replica (e.g. tensor_parallel_size: {per_node} and pipeline_parallel_size: "
                    f"{math.ceil(replica / per_node)})")
    elif replica <= per_node and per_node % replica:
        yield Issue(job.block_path, f"{job.what}: one replica takes {tp} x {pp} = {replica} GPUs, which do not "
                    f"divide a node's {per_node} ({at_res}.gpus): replicas would straddle nodes or leave GPUs idle; "
                    f"use a divisor of {per_node} GPUs per replica")
    elif tp * pp * dp != total:
        fix = (f"set {where}.data_parallel_size: {total // replica} (or leave it unset: every GPU)"
               if total % replica == 0 else f"give the job a multiple of {replica} GPUs ({at_res})")
        yield Issue(job.block_path, f"{job.what}: tensor_parallel_size {tp} x pipeline_parallel_size {pp} x "
                    f"data_parallel_size {dp} = {tp * pp * dp} GPUs, but the job has {res.nodes} node(s) x {per_node} "
                    f"GPUs = {total} ({at_res}): "
                    + ("some GPUs would sit idle" if tp * pp * dp < total else "the replicas cannot all start")
                    + f"; {fix}")
    elif tp > per_node:
        yield warn(job.block_path, f"{job.what}: tensor_parallel_size {tp} spans nodes ({per_node} GPUs each): every "
                   f"layer would exchange activations over the network; set tensor_parallel_size: {per_node} and "
                   f"pipeline_parallel_size: {replica // per_node} (pipeline stages cross nodes once per layer group)")


def _memory_issues(path: Path, what: str, res_path: str, inputs, fixes: list[str] | None = None) -> Iterator[Issue]:
    est = memory.estimate(inputs)
    if isinstance(est, memory.NotEstimated):
        return
    limit = f"{res_path}.gpu_mem_gb ({est.gpu_mem_gb:g})"
    fix = "; ".join(memory.remedies(inputs) if fixes is None else fixes) or (
        "more GPUs per replica (tensor_parallel_size, pipeline_parallel_size with more nodes) or a smaller max_model_len")
    parts = f"{memory.describe(est)} GiB{_engine_note(est)}"
    if est.total > est.gpu_mem_gb:
        yield Issue(path, f"{what}: estimated {est.total:.1f} GiB per GPU exceeds {limit}: {parts}{_problems(est)}; "
                    f"it would stop out of memory at start-up or at its first micro-batch; to fit, set (estimate "
                    f"after the change) {fix}")
    elif est.problems:
        yield Issue(path, f"{what}: {'; '.join(est.problems)} (estimated {est.total:.1f} GiB per GPU of {limit}: "
                    f"{parts}); set {fix}")
    elif est.total > memory.NEAR_LIMIT * est.gpu_mem_gb:
        yield warn(path, f"{what}: estimated {est.total:.1f} GiB per GPU is within "
                   f"{100 - 100 * memory.NEAR_LIMIT:.0f}% of {limit} ({parts}); allocator fragmentation and CUDA "
                   f"graphs are not in the estimate (docs/memory.md), so it may not fit; for headroom set {fix}")


def _problems(est) -> str:
    return "".join(f"; {p}" for p in est.problems)


def _engine_note(est) -> str:
    if est.sleep_frees is None:
        return ""
    if est.sleep_mode:
        phases = est.details["sleep_mode"]
        other = "training" if phases["peak_phase"] == "generation" else "generation"
        return (f" (the {phases['peak_phase']} phase: rollout.sleep_mode frees {est.sleep_frees:.1f} GiB of the "
                f"engine while training; the {other} phase takes {phases[other + '_gib']:.1f} GiB)")
    return (f" (the rollout engine keeps its memory for the whole job: rollout.sleep_mode: false; with sleep mode it "
            f"frees {est.sleep_frees:.1f} GiB while training, {est.with_sleep_mode:.1f} GiB per GPU in all)")


@rule
def time_limits(spec: Spec):
    """`resources.<kind>.time_min` against the plan's GPU-hours spread over the job's GPUs (stages
    with an unknown dataset or without exactly one of steps and epochs have no budget: other rules
    report them)."""
    for stage in spec.stages:
        if any(d not in spec.datasets for d in stage.datasets) or (stage.steps is None) == (stage.epochs is None):
            continue
        yield from _time_issue(("resources", "train"), f"the train job of stage {stage.name!r}",
                               budget.stage_estimate(spec, stage), spec.resources.train)
        if stage.filter_before is not None:
            yield from _time_issue(("resources", "filter"), f"the filter job before stage {stage.name!r}",
                                   budget.filter_estimate(spec, stage), spec.resources.filter)
    for name in spec.benchmarks:
        yield from _time_issue(("resources", "bench"), f"a bench job of {name!r}", budget.bench_estimate(spec, name),
                               spec.resources.bench)
    for job in memory.inference_jobs(spec):
        if job.kind == "sample":
            dataset, index = job.path[1], job.path[3]
            f = spec.datasets[dataset].filters[index]
            yield from _time_issue(job.resources_path, job.what,
                                   budget.sample_estimate(spec, dataset, f, job.response_tokens), job.resources)


def _time_issue(res_path: Path, what: str, estimate: dict, res) -> Iterator[Issue]:
    need = budget.minutes_needed(estimate["gpu_hours"], res)
    if need is not None and res.time_min < need:
        gpus = res.gpus * res.nodes
        again = "resumes from its last checkpoint" if res_path == ("resources", "train") else "starts over"
        hours = estimate["gpu_hours"]
        yield warn((*res_path, "time_min"), f"{what} needs about {hours:,.{0 if hours >= 10 else 1}f} GPU-hours by the "
                   f"plan's throughputs, {need:,.0f} minutes on its {gpus} GPUs, more than time_min {res.time_min}: "
                   f"Slurm would stop it at the limit (run again, it {again}); raise time_min to at least "
                   f"{math.ceil(need)} or give the job more GPUs")


@rule
def evaluation_has_benchmarks(spec: Spec):
    if not spec.benchmarks and any(s.evaluate for s in spec.stages):
        yield warn(("benchmarks",), "stages ask to be evaluated but no benchmarks are declared; the report will "
                   "only show training curves")


# ------------------------------------------------------------------------------------------
# across grid cells
# ------------------------------------------------------------------------------------------

# The top-level `algorithm` block is read only through the stages it fills (validate.with_stage_defaults);
# the top-level `rollout` is also the curate / filter / bench engines' setting, so it counts.
STAGE_ONLY_DEFAULTS = {"algorithm"}


def axes_without_effect(axes: list[tuple[str, Path, list[Path]]],
                        cells: list[tuple[dict[str, Any], Spec]]) -> Iterator[Issue]:
    """Warn at a grid axis whose values give identical resolved specs, with the other axes fixed.

    `axes`: (name, path, places) per axis, `places` being where its value lands in a resolved spec
    (its own path and, for a top-level default, each stage's copy), the only parts it can change.
    `cells`: (axis name -> value, the cell's validated spec).
    A warning, not an error: identical cells compile to the same jobs (same ids), so nothing runs
    twice, but the report would show an ablation that changed nothing."""
    for i, (name, path, places) in enumerate(axes):
        counted = [p for p in places if p[0] not in STAGE_ONLY_DEFAULTS]
        groups: dict[str, dict[str, list]] = {}  # the other axes' values -> resolved effect -> this axis' values
        for values, spec in cells:
            others = json.dumps({k: v for k, v in values.items() if k != name}, sort_keys=True, default=str)
            effect = repr([_resolved(spec, p) for p in counted])
            groups.setdefault(others, {}).setdefault(effect, []).append(values[name])
        same = [vals for by_effect in groups.values() for vals in by_effect.values() if len(vals) > 1]
        if not same:
            continue
        where = ("grid", "axes", i, "path")
        if all(len(by_effect) == 1 for by_effect in groups.values()):
            yield Issue(where, f"grid axis {name!r} changes nothing: {_why_no_effect(path)}", severity="warning")
        else:
            shown = " and ".join(json.dumps(v, default=str) for v in same[0][:2])
            yield Issue(where, f"grid axis {name!r}: the values {shown} give the same resolved spec, so their "
                        "cells are the same experiment; remove the duplicate value", severity="warning")


def _resolved(node: Any, path: Path) -> Any:
    """The value at `path` in a validated spec (attributes, map keys, list indices)."""
    try:
        for part in path:
            node = node[part] if isinstance(part, int) or isinstance(node, dict) else getattr(node, part)
    except (AttributeError, IndexError, KeyError, TypeError):
        return "<not set>"
    return node


def _why_no_effect(path: Path) -> str:
    dotted = dotted_path(path)
    if path and path[0] in STAGE_ONLY_DEFAULTS:
        rest = dotted_path(path[1:])
        return (f"every stage sets `{dotted}` itself, so the top-level default reaches no stage and the cells are "
                f"the same experiment; put the axis on the stages (`stages[NAME].{dotted}`) or remove the stages' "
                f"own `{rest}`")
    return (f"every value of `{dotted}` gives the same resolved spec, so the cells are the same experiment; "
            "pick values that differ in effect or remove the axis")


@rule
def tracking_group_placeholders(spec: Spec):
    """`tracking.group` is formatted by each job's W&B run: a placeholder it cannot fill would be
    written literally (or crash a run), so it is refused here instead."""
    import string
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(spec.tracking.group) if field is not None}
    except ValueError as exc:
        yield Issue(("tracking", "group"), f"{spec.tracking.group!r} is not a valid group template ({exc}); "
                    "write e.g. `group: \"{name}\"`")
        return
    unknown = sorted(names - {"name", "cell"})
    if unknown:
        yield Issue(("tracking", "group"), f"{', '.join('{' + n + '}' for n in unknown)} is not a placeholder of "
                    "tracking.group (W&B groups are per spec or per grid cell); use `{name}` (the spec's name) or "
                    "`{cell}` (the grid cell's label)")
