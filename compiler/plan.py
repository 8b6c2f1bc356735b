"""Grid cells -> a DAG of content-addressed jobs, plus the rollout budget of every train stage.

A job's id is the hash of its resolved config and the ids of its inputs, so two grid cells that
agree on everything a job depends on get the same job, which runs once. Every decision about the
workflow is made here, in plain Python; templates only format what this module returns.

Job kinds (one name everywhere: rule, runtime module `rlspec.runtime.<kind>`, results folder):
  model  - from-scratch policy: tokenizer, random init, SFT warm-up
  curate - a dataset's sources through its filters -> prompts.parquet + funnel
  filter - a stage's hard-prompt filter on the policy entering it
  train  - one GRPO stage
  bench  - one (checkpoint, benchmark, sampling) evaluation
  report - the whole grid's tables and figures
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import group_sizes, train_ranks
from .spec import (ConstantGroupSize, DecontaminateFilter, JobResources, PassRateFilter, Spec, Stage)
from .validate import Cell

KINDS = ("model", "curate", "filter", "train", "bench", "report")
# Software environment per job kind (conda files in the build folder's envs/).
ENVIRONMENTS = {"model": "trainer", "curate": "sandbox", "filter": "rollout", "train": "trainer",
                "bench": "eval", "report": "eval"}
ID_LENGTH = 16
DECONTAMINATION_N = {"math": 9, "code": 14}  # the paper's n-gram sizes


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(data: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, dates as ISO strings."""
    return _CANONICAL.encode(data)


def content_hash(data: Any, length: int = ID_LENGTH) -> str:
    return hashlib.sha256(canonical(data).encode()).hexdigest()[:length]


@dataclass
class Job:
    kind: str
    id: str
    label: str  # what it is, for people: "train math-8k", "bench aime24 @ math-8k"
    config: dict[str, Any]
    inputs: dict[str, Any]  # role -> job id (str) or list of job ids
    resources: dict[str, Any]
    cells: list[int] = field(default_factory=list)
    estimate: dict[str, Any] | None = None  # train/filter jobs: rollout budget

    @property
    def dir(self) -> str:
        return f"results/{self.kind}/{self.id}"

    @property
    def done(self) -> str:
        return f"{self.dir}/done.json"

    def input_ids(self) -> list[str]:
        out: list[str] = []
        for v in self.inputs.values():
            out.extend(v if isinstance(v, list) else [v])
        return out

    def document(self, jobs: dict[str, "Job"]) -> dict[str, Any]:
        """The job JSON the runtime module reads: only what determines its outputs."""
        def path(jid: str) -> str:
            return jobs[jid].dir
        inputs = {role: ([path(j) for j in v] if isinstance(v, list) else path(v)) for role, v in self.inputs.items()}
        return {"kind": self.kind, "id": self.id, "label": self.label, "config": self.config,
                "inputs": inputs, "output_dir": self.dir}


@dataclass
class CellJobs:
    cell: Cell
    initial: str | None  # model job id, or None when the model is a path
    curate: dict[str, str]
    stages: list[dict[str, Any]]  # per stage: {"name", "filter", "train", "bench": {name: id}}
    initial_bench: dict[str, str]


@dataclass
class Plan:
    spec_name: str
    cells: list[CellJobs]
    jobs: dict[str, Job]  # id -> job, in creation order (topological)
    report: Job
    dumps: list[dict[str, Any]] = field(default_factory=list)  # each cell's resolved spec as JSON data

    def by_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.kind == kind]


# ------------------------------------------------------------------------------------------


def build_plan(cells: list[Cell], spec_dir: str | Path | None = None) -> Plan:
    """Jobs for every cell. `spec_dir` is where relative local data files are looked up (the spec's
    folder); their sha256 enters the job config, so changed data gets a new job id."""
    jobs: dict[str, Job] = {}
    sources = _Sources(Path(spec_dir) if spec_dir is not None else None)
    dumps = [cell.spec.model_dump(mode="json") for cell in cells]
    cell_jobs = [_cell_jobs(cell, dump, jobs, sources) for cell, dump in zip(cells, dumps)]
    report = _report_job(cells[0].spec, cell_jobs, jobs)
    return Plan(spec_name=cells[0].spec.name, cells=cell_jobs, jobs=jobs, report=report, dumps=dumps)


def _add(jobs: dict[str, Job], kind: str, label: str, config: dict, inputs: dict, resources: JobResources,
         cell: int, estimate: dict | None = None) -> str:
    jid = content_hash({"kind": kind, "config": config, "inputs": inputs})
    if jid not in jobs:
        jobs[jid] = Job(kind, jid, label, config, inputs, _resources(resources), [], estimate)
    if cell not in jobs[jid].cells:
        jobs[jid].cells.append(cell)
    return jid


def _resources(r: JobResources) -> dict[str, Any]:
    return {"gpus": r.gpus, "cpus": r.cpus, "mem_mb": int(r.mem_gb * 1024), "runtime": r.time_min,
            "nodes": r.nodes, "ranks": r.nodes * (r.ranks_per_node or max(r.gpus, 1)),
            "slurm_partition": r.slurm_partition or "", "slurm_extra": r.slurm_extra or ""}


def _dump(model) -> Any:
    return model.model_dump(mode="json")


def _model_common(d: dict[str, Any]) -> dict[str, Any]:
    m = d["model"]
    return {"dtype": m["dtype"], "max_context": m["max_context"], "prompt": m["prompt"], "answer": m["answer"],
            "tokenizer": m["tokenizer"]}


class _Sources:
    """Source blocks as job config: local files carry the sha256 of their bytes (or null if absent)."""

    def __init__(self, spec_dir: Path | None):
        self.spec_dir = spec_dir
        self._hashes: dict[str, str | None] = {}

    def __call__(self, source: dict[str, Any]) -> dict[str, Any]:
        """`source` is a Source block as JSON data (a dump); the result is a new dict."""
        if is_local_uri(source["uri"]):
            return {**source, "sha256": self._hash(source["uri"])}
        return source

    def _hash(self, uri: str) -> str | None:
        if uri not in self._hashes:
            path = Path(uri) if self.spec_dir is None else self.spec_dir / uri
            self._hashes[uri] = _file_sha256(path) if path.is_file() else None
        return self._hashes[uri]


def is_local_uri(uri: str) -> bool:
    return "://" not in uri


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cell_jobs(cell: Cell, d: dict[str, Any], jobs: dict[str, Job], sources: _Sources) -> CellJobs:
    """The jobs of one grid cell. `d` is the cell's spec as JSON data, dumped once: configs are built
    from slices of it (never mutated in place: slices are shared between configs)."""
    spec = cell.spec
    res = spec.resources
    common = _model_common(d)
    initial: str | None = None
    policy: dict[str, Any]
    if spec.model.from_scratch is not None:
        scratch = d["model"]["from_scratch"]
        scratch = {**scratch, "warmup": {**scratch["warmup"], "sources": [sources(x) for x in scratch["warmup"]["sources"]]}}
        config = {"from_scratch": scratch, "seed": spec.seed, **common}
        initial = _add(jobs, "model", "model from_scratch", config, {}, res.model, cell.index)
        policy = {"policy": initial}
    else:
        policy = {}
    base_model = {"path": spec.model.path, "revision": spec.model.revision} if spec.model.path else None

    curate: dict[str, str] = {}
    for name in _used_datasets(spec):
        config, needs_policy = _curate_config(spec, d, name, sources)
        inputs = dict(policy) if needs_policy else {}
        curate[name] = _add(jobs, "curate", f"curate {name}", config, inputs, res.curate, cell.index)

    # evaluation samples at the benchmark's own temperature, so the engine block carries none
    bench_engine = {k: v for k, v in d["rollout"].items() if k != "temperature"}

    def bench_jobs(policy_inputs: dict, policy_model: dict | None, after: str) -> dict[str, str]:
        out = {}
        for bname, bench in d["benchmarks"].items():
            config = {"benchmark": bname, **bench, "reference": [], "source": sources(bench["source"]),
                      "base_model": policy_model, "seed": 0, "engine": bench_engine, "reward": d["reward"], **common}
            out[bname] = _add(jobs, "bench", f"bench {bname} @ {after}", config, policy_inputs, res.bench, cell.index)
        return out

    initial_bench = bench_jobs(policy, base_model, "initial") if spec.evaluate_initial else {}
    stages: list[dict[str, Any]] = []
    prev_policy, prev_model = policy, base_model
    for i, (stage, sd) in enumerate(zip(spec.stages, d["stages"])):
        data = {"data": [curate[x] for x in stage.datasets]}
        filter_id = None
        if stage.filter_before is not None:
            fconfig = {"stage": stage.name, **sd["filter_before"], "base_model": prev_model,
                       "max_response_tokens": stage.filter_before.max_response_tokens or stage.max_response_tokens,
                       "engine": sd["rollout"], "reward": d["reward"], "seed": spec.seed, **common}
            filter_id = _add(jobs, "filter", f"filter before {stage.name}", fconfig, {**prev_policy, **data},
                             res.filter, cell.index, _filter_estimate(spec, stage))
            data = {"data": [filter_id]}
        # whether a stage is benchmarked does not change its training
        stage_fields = {k: v for k, v in sd.items() if k != "evaluate"}
        tconfig = {"stage": stage.name, "stage_index": i, **stage_fields, "base_model": prev_model,
                   "domains": sorted({spec.datasets[x].domain for x in stage.datasets}),
                   "reward": d["reward"], "deepspeed": d["resources"]["deepspeed"], "ranks": train_ranks(spec),
                   "seed": spec.seed, **common}
        train_id = _add(jobs, "train", f"train {stage.name}", tconfig, {**prev_policy, **data}, res.train,
                        cell.index, stage_estimate(spec, stage))
        prev_policy, prev_model = {"policy": train_id}, None
        benches = bench_jobs(prev_policy, None, stage.name) if stage.evaluate else {}
        stages.append({"name": stage.name, "filter": filter_id, "train": train_id, "bench": benches})
    return CellJobs(cell, initial, curate, stages, initial_bench)


def _used_datasets(spec: Spec) -> list[str]:
    seen: list[str] = []
    for stage in spec.stages:
        for d in stage.datasets:
            if d not in seen:
                seen.append(d)
    return seen


def _curate_config(spec: Spec, d: dict[str, Any], name: str, sources: _Sources) -> tuple[dict[str, Any], bool]:
    ds = spec.datasets[name]
    dd = d["datasets"][name]
    filters = []
    needs_policy = False
    randomised = any(s.shuffle for s in ds.sources)
    first_len = next((s.max_response_tokens for s in spec.stages if name in s.datasets), None)
    for f, fd in zip(ds.filters, dd["filters"]):
        entry = dict(fd)
        if isinstance(f, DecontaminateFilter):
            entry["n"] = f.n or DECONTAMINATION_N[ds.domain]
            names = f.benchmarks if f.benchmarks is not None else sorted(
                b for b, bench in spec.benchmarks.items() if bench.domain == ds.domain)
            entry["benchmarks"] = {b: {"source": sources(d["benchmarks"][b]["source"]),
                                       "domain": spec.benchmarks[b].domain} for b in names}
        if isinstance(f, PassRateFilter):
            entry["max_response_tokens"] = f.max_response_tokens or first_len
            if f.policy == "initial":
                needs_policy = spec.model.from_scratch is not None
                entry["policy"] = {"initial": True, "path": spec.model.path, "revision": spec.model.revision}
            else:
                entry["policy"] = {"initial": False, "path": f.policy, "revision": None}
            randomised = True
        if getattr(f, "unit", None) == "tokens":
            needs_policy = needs_policy or spec.model.from_scratch is not None
        filters.append(entry)
    config = {"dataset": name, "domain": ds.domain, "sources": [sources(x) for x in dd["sources"]], "filters": filters,
              "max_prompt_tokens": spec.rollout.max_prompt_tokens, "reward": d["reward"],
              "engine": d["rollout"], **_model_common(d)}
    if randomised:
        config["seed"] = spec.seed  # only randomised curation depends on the seed, so seed repeats share data
    return config, needs_policy


def _report_job(spec: Spec, cells: list[CellJobs], jobs: dict[str, Job]) -> Job:
    layout = []
    for cj in cells:
        layout.append({"label": cj.cell.label, "values": cj.cell.values, "curate": cj.curate,
                       "initial_bench": cj.initial_bench, "stages": cj.stages})
    references = {b: [_dump(r) for r in bench.reference] for b, bench in spec.benchmarks.items() if bench.reference}
    config = {"name": spec.name, "cells": layout, "references": references,
              "metrics": {b: bench.metrics for b, bench in spec.benchmarks.items()}}
    inputs = {"jobs": [j for j in jobs]}
    jid = _add(jobs, "report", "report", config, inputs, spec.resources.report, 0)
    jobs[jid].cells = [c.cell.index for c in cells]
    return jobs[jid]


# ------------------------------------------------------------------------------------------
# rollout budget
# ------------------------------------------------------------------------------------------


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
    sizes = group_sizes(stage)
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


def _filter_estimate(spec: Spec, stage: Stage) -> dict[str, Any]:
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


def totals(plan: Plan) -> dict[str, Any]:
    """Rollout tokens and GPU-hours per cell (every job the cell needs) and for the grid (each shared
    job counted once)."""
    def add(job_ids) -> dict[str, Any]:
        tokens, hours, unknown = 0, 0.0, 0
        for jid in job_ids:
            est = plan.jobs[jid].estimate
            if est is None:
                continue
            if est.get("rollout_tokens") is None:
                unknown += 1
                continue
            tokens += est["rollout_tokens"]
            hours += est["gpu_hours"]
        return {"rollout_tokens": tokens, "gpu_hours": round(hours, 3), "jobs_without_estimate": unknown}
    per_cell = {}
    for cj in plan.cells:
        ids = [j.id for j in plan.jobs.values() if cj.cell.index in j.cells]
        per_cell[cj.cell.label] = {**add(ids), "jobs": len(ids)}
    grid = {**add(plan.jobs), "jobs": len(plan.jobs)}
    return {"cells": per_cell, "grid": grid}
