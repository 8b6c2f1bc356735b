"""Grid cells -> a DAG of content-addressed jobs, plus the rollout budget of every train stage.

A job's id is the hash of its resolved config and the ids of its inputs, so two grid cells that
agree on everything a job depends on get the same job, which runs once. Every decision about the
workflow is made here, in plain Python; templates only format what this module returns.

Job kinds (one name everywhere: rule, runtime module `rlspec.runtime.<kind>`, results folder):
  model  - every model the spec names, in the build folder: built from scratch (tokenizer, random
           init, SFT warm-up), fetched from the hub at its revision, or a local folder linked
  sample - pass-rate samples of a teacher or the initial model on a dataset's items (the dataset's
           filters up to its `pass_rate`), shared by every dataset that asks for the same samples
  curate - a dataset's sources (or its last sample job's records) through its filters ->
           prompts.parquet + funnel
  filter - a stage's hard-prompt filter on the policy entering it
  train  - one GRPO stage
  bench  - one (checkpoint, benchmark, sampling) evaluation
  report - the whole grid's tables and figures
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import uris
from .budget import bench_estimate, filter_estimate, sample_estimate, stage_estimate
from .checks import train_ranks
from .checks_train import snapshot_steps
from .engines import inference_block, inference_engine, max_model_len, replicas, train_engine
from .hashing import ID_LENGTH, canonical, content_hash, file_sha256, folder_fingerprint
from .jobs import (KINDS, BenchJob, BenchmarkText, CurateJob, DataFile, DataSource, Decontaminate, EngineSettings,
                   FetchBuild, FilterJob, Grading, Inference, JobModel, ModelJob, ModelName, PassRate, PassRateCut,
                   PassRateSampling, Prompts, PythonReward, ReportCell, ReportJob, ReportStage, RewardFn, SampleJob,
                   ScratchBuild, ScratchWarmup, TrainJob, TrainSampling, snapshot_folder)
from .spec import (DecontaminateFilter, InferenceEngine, JobResources, LengthFilter, PassRateFilter, PromptOverride,
                   RewardTerm, Source, Spec, Stage, ValidateTestsFilter, WeakTestsFilter)
from .validate import Cell

__all__ = ["KINDS", "ID_LENGTH", "canonical", "content_hash", "build_plan", "Plan", "PlannedJob", "totals"]

# Software environment per job kind (conda files in the build folder's envs/).
ENVIRONMENTS = {"model": "trainer", "sample": "rollout", "curate": "sandbox", "filter": "rollout", "train": "trainer",
                "bench": "eval", "report": "eval"}
DECONTAMINATION_N = {"math": 9, "code": 14}  # the paper's n-gram sizes; other (text) domains: math's


def domain_blocks(spec: Spec) -> dict[str, tuple[list[RewardTerm] | None, PromptOverride | None]]:
    """Per domain, the `reward` and `prompt` its datasets and benchmarks write (the first that writes
    one; `checks.domain_blocks_agree` refuses two that differ)."""
    out: dict[str, tuple[list[RewardTerm] | None, PromptOverride | None]] = {}
    for block in [*spec.datasets.values(), *spec.benchmarks.values()]:
        reward, prompt = out.get(block.domain, (None, None))
        out[block.domain] = (reward or block.reward, prompt or block.prompt)
    return out


@dataclass
class PlannedJob:
    kind: str
    id: str
    label: str  # what it is, for people: "train math-8k", "bench aime24 @ math-8k"
    config: JobModel  # the kind's typed config (`rlspec.compiler.jobs`)
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

    def document(self, jobs: dict[str, "PlannedJob"]) -> dict[str, Any]:
        """The job JSON the runtime module reads: only what determines its outputs."""
        def path(jid: str) -> str:
            return jobs[jid].dir
        inputs = {role: ([path(j) for j in v] if isinstance(v, list) else path(v)) for role, v in self.inputs.items()}
        return {"kind": self.kind, "id": self.id, "label": self.label, "config": self.config.model_dump(mode="json"),
                "inputs": inputs, "output_dir": self.dir}


@dataclass
class CellJobs:
    cell: Cell
    initial: str  # the model job of the spec's starting model
    curate: dict[str, str]
    stages: list[dict[str, Any]]  # per stage: {"name", "filter", "train", "bench": {name: id}}
    initial_bench: dict[str, str]


@dataclass
class Plan:
    spec_name: str
    cells: list[CellJobs]
    jobs: dict[str, PlannedJob]  # id -> job, in creation order (topological)
    report: PlannedJob
    dumps: list[dict[str, Any]] = field(default_factory=list)  # each cell's resolved spec as JSON data

    def by_kind(self, kind: str) -> list[PlannedJob]:
        return [j for j in self.jobs.values() if j.kind == kind]


# ------------------------------------------------------------------------------------------


def build_plan(cells: list[Cell], spec_dir: str | Path | None = None) -> Plan:
    """Jobs for every cell. `spec_dir` is where relative local files are looked up (the spec's
    folder); their sha256 enters the job config, so changed data gets a new job id."""
    jobs: dict[str, PlannedJob] = {}
    files = _Files(Path(spec_dir) if spec_dir is not None else None)
    dumps = [cell.spec.model_dump(mode="json") for cell in cells]
    cell_jobs = [_CellBuilder(cell, jobs, files).build() for cell in cells]
    report = _report_job(cells[0].spec, cell_jobs, jobs)
    return Plan(spec_name=cells[0].spec.name, cells=cell_jobs, jobs=jobs, report=report, dumps=dumps)


def _resources(r: JobResources) -> dict[str, Any]:
    return {"gpus": r.gpus, "cpus": r.cpus, "mem_mb": int(r.mem_gb * 1024), "runtime": r.time_min,
            "nodes": r.nodes, "ranks": r.nodes * (r.ranks_per_node or max(r.gpus, 1)),
            "slurm_partition": r.slurm_partition or "", "slurm_extra": r.slurm_extra or ""}


def is_local_uri(uri: str) -> bool:
    return "://" not in uri


class _Files:
    """Local files and folders the jobs will read, fingerprinted once per compile: their hashes enter
    the job configs, so changed data or weights give new job ids."""

    def __init__(self, spec_dir: Path | None):
        self.spec_dir = spec_dir
        self._hashes: dict[str, str | None] = {}
        self._folders: dict[str, str | None] = {}

    def where(self, name: str) -> Path:
        return Path(name) if self.spec_dir is None or Path(name).is_absolute() else self.spec_dir / name

    def source(self, s: Source) -> DataSource:
        return DataSource(**dict(s), sha256=self.sha256(s.uri) if is_local_uri(s.uri) else None)

    def file(self, path: str) -> DataFile:
        return DataFile(path=path, sha256=self.sha256(path))

    def sha256(self, name: str) -> str | None:
        if name not in self._hashes:
            path = self.where(name)
            self._hashes[name] = file_sha256(path) if path.is_file() else None
        return self._hashes[name]

    def fingerprint(self, name: str) -> str | None:
        if name not in self._folders:
            self._folders[name] = folder_fingerprint(self.where(name))
        return self._folders[name]

    def model_name(self, name: str, revision: str | None) -> ModelName:
        """`hf://org/name` or `org/name` is a hub model, unless a local folder of that name exists;
        anything else is a local folder."""
        if uris.is_hf(name):  # `hf://ORG/NAME[@REV]`; `rlspec check` reports a bad one (checks_data.hf_model_uris)
            ref = uris.parse_model(name, revision)
            return ModelName(kind="hub", name=ref.name, revision=ref.revision, fingerprint=None)
        local = name.startswith((".", "/", "~")) or self.where(name).is_dir() or not _HUB_ID.match(name)
        if local:
            return ModelName(kind="local", name=name, revision=None, fingerprint=self.fingerprint(name))
        return ModelName(kind="hub", name=name, revision=revision, fingerprint=None)


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _CellBuilder:
    """The jobs of one grid cell, each config built from the cell's spec sub-models."""

    def __init__(self, cell: Cell, jobs: dict[str, PlannedJob], files: _Files):
        self.cell, self.spec, self.jobs, self.files = cell, cell.spec, jobs, files
        self.res = cell.spec.resources
        self.blocks = domain_blocks(cell.spec)

    def grading(self, domains) -> Grading:
        """The reward limits, the answer extraction and the reward terms of `domains` that declare them."""
        rewards = {d: [self.reward_fn(t) for t in self.blocks[d][0] or []] for d in sorted(set(domains))
                   if d in self.blocks and self.blocks[d][0]}
        return Grading(reward=self.spec.reward, answer=self.spec.model.answer, rewards=rewards)

    def reward_fn(self, term: RewardTerm) -> RewardFn:
        python = None
        if term.python is not None:
            path, function = term.python.rsplit(":", 1)
            python = PythonReward(path=path, function=function, sha256=self.files.sha256(path),
                                  signature=term.signature, timeout_s=term.timeout_s)
        return RewardFn(name=term.label(), grader=term.grader, python=python, weight=term.weight)

    def prompts(self, domains) -> Prompts:
        base = self.spec.model.prompt
        return Prompts(default=base, domains={d: base.merged(self.blocks[d][1]) for d in sorted(set(domains))
                                              if d in self.blocks and self.blocks[d][1] is not None})

    def stage_domains(self, stage: Stage) -> list[str]:
        return [self.spec.datasets[d].domain for d in stage.datasets]

    def add(self, kind: str, label: str, config: JobModel, inputs: dict, resources: JobResources,
            estimate: dict | None = None) -> str:
        jid = content_hash({"kind": kind, "config": config.model_dump(mode="json"), "inputs": inputs})
        if jid not in self.jobs:
            self.jobs[jid] = PlannedJob(kind, jid, label, config, inputs, _resources(resources), [], estimate)
        if self.cell.index not in self.jobs[jid].cells:
            self.jobs[jid].cells.append(self.cell.index)
        return jid

    def train_inference(self, stage: Stage) -> Inference:
        """A train stage's colocated engine (its `rollout`), sized to the stage's prompt + response budget."""
        r = stage.rollout
        return Inference(rollout=train_engine(r), dtype=self.spec.model.dtype,
                         max_model_len=max_model_len(self.spec, r.max_prompt_tokens, stage.max_response_tokens),
                         prompt=self.prompts(self.stage_domains(stage)))

    def inference(self, kind: str, override: InferenceEngine | None, domains, response_tokens: int,
                  res: JobResources):
        """An inference job's engine (`inference.<kind>` with the job's `engine` keys over it) and its replicas."""
        block = inference_block(self.spec, kind, override)
        engine: EngineSettings = inference_engine(self.spec, block)
        assert block.dtype is not None
        inf = Inference(rollout=engine, dtype=block.dtype,
                        max_model_len=max_model_len(self.spec, engine.max_prompt_tokens, response_tokens, block),
                        prompt=self.prompts(domains))
        return inf, replicas(block, res)

    # -------------------------------------------------------------------------------- models

    def initial_model(self) -> str:
        m = self.spec.model
        if m.from_scratch is not None:
            fs = m.from_scratch
            w = fs.warmup
            warmup = ScratchWarmup(sources=[self.files.source(s) for s in w.sources], steps=w.steps,
                                   batch_size=w.batch_size, lr=w.lr, max_tokens=w.max_tokens)
            build = ScratchBuild(kind="scratch", architecture=fs.architecture, tokenizer=fs.tokenizer, warmup=warmup,
                                 seed=self.spec.seed, max_context=m.max_context,
                                 prompt=self.prompts(self.blocks))
            return self.add("model", "model from_scratch", ModelJob(build=build), {}, self.res.model)
        assert m.path is not None  # checks.model_source
        tokenizer = self.files.model_name(m.tokenizer, None) if m.tokenizer else None
        return self.fetched(m.path, m.revision, tokenizer, "model")

    def fetched(self, name: str, revision: str | None, tokenizer: ModelName | None, label: str) -> str:
        model = self.files.model_name(name, revision)
        build = FetchBuild(kind="fetch", model=model, tokenizer=tokenizer)
        return self.add("model", f"{label} {model.name}", ModelJob(build=build), {}, self.res.model)

    # -------------------------------------------------------------------------------- jobs

    def build(self) -> CellJobs:
        spec = self.spec
        initial = self.initial_model()
        policy = {"policy": initial}
        curate = {name: self.curate(name, initial) for name in _used_datasets(spec)}
        initial_bench = self.benches(policy, "initial", None) if spec.evaluate_initial else {}
        stages: list[dict[str, Any]] = []
        prev = policy
        for stage in spec.stages:
            data = {"data": [curate[x] for x in stage.datasets]}
            filter_id = None
            if stage.filter_before is not None:
                filter_id = self.stage_filter(stage, {**prev, **data})
                data = {"data": [filter_id]}
            train_id = self.train(stage, {**prev, **data}, initial)
            prev = {"policy": train_id}
            benches = self.benches(prev, stage.name, None) if stage.evaluate else {}
            stages.append({"name": stage.name, "filter": filter_id, "train": train_id, "bench": benches,
                           "evaluations": self.evaluations(stage, train_id)})
        return CellJobs(self.cell, initial, curate, stages, initial_bench)

    def benches(self, policy: dict, after: str, step: int | None) -> dict[str, str]:
        """One bench job per benchmark on the `policy` input's model, or on its snapshot at `step`."""
        out = {}
        where = after if step is None else f"{after} step {step}"
        for name, b in self.spec.benchmarks.items():
            inference, reps = self.inference("bench", b.engine, [b.domain], b.sampling.max_response_tokens,
                                             self.res.bench)
            config = BenchJob(benchmark=name, domain=b.domain, source=self.files.source(b.source), k=b.k,
                              metrics=list(b.metrics), sampling=b.sampling, date_window=b.date_window, seed=0,
                              inference=inference, grading=self.grading([b.domain]), step=step, replicas=reps)
            out[name] = self.add("bench", f"bench {name} @ {where}", config, policy, self.res.bench,
                                 bench_estimate(self.spec, name))
        return out

    def evaluations(self, stage: Stage, train_id: str) -> list[dict[str, Any]]:
        """The bench jobs of the train job's snapshots (`evaluate_every`), by step."""
        train = self.jobs[train_id]
        return [{"step": s, "bench": self.benches({"policy": train_id}, stage.name, s),
                 "model": f"{train.dir}/{snapshot_folder(s)}/model"} for s in train.config.snapshot_steps]

    def stage_filter(self, stage: Stage, inputs: dict) -> str:
        f = stage.filter_before
        assert f is not None
        rate = PassRate(kind="pass_rate", model="policy", k=f.k, min=f.min, max=f.max,
                        max_response_tokens=f.max_response_tokens or stage.max_response_tokens,
                        temperature=f.temperature, top_p=f.top_p, majority=False, min_response_tokens=None,
                        stop=list(stage.rollout.stop))
        domains = self.stage_domains(stage)
        inference, reps = self.inference("filter", f.engine, domains, rate.max_response_tokens, self.res.filter)
        config = FilterJob(stage=stage.name, pass_rate=rate, seed=self.spec.seed, inference=inference,
                           grading=self.grading(domains), replicas=reps)
        return self.add("filter", f"filter before {stage.name}", config, inputs, self.res.filter,
                        filter_estimate(self.spec, stage))

    def train(self, stage: Stage, inputs: dict, initial: str) -> str:
        """The stage's train job; with `kl.reference: initial` (and a KL term) the run's initial model is
        a further input, `reference`, so every stage's KL is to that model."""
        r = stage.rollout
        kl = stage.algorithm.kl
        if kl.coef > 0 and kl.reference == "initial":
            inputs = {**inputs, "reference": initial}
        config = TrainJob(stage=stage.name, steps=stage.steps, epochs=stage.epochs,
                          prompts_per_step=stage.prompts_per_step, group_size=stage.group_size,
                          max_response_tokens=stage.max_response_tokens,
                          sampling=TrainSampling(temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, stop=r.stop),
                          algorithm=stage.algorithm, inference=self.train_inference(stage),
                          sleep_mode=stage.rollout.sleep_mode,
                          grading=self.grading(self.stage_domains(stage)),
                          deepspeed=self.res.deepspeed, ranks=train_ranks(self.spec), seed=self.spec.seed,
                          dataset_weights=stage.dataset_weights,
                          drop_prompts_above_accuracy=stage.drop_prompts_above_accuracy,
                          lora=self.spec.model.lora, snapshot_steps=snapshot_steps(self.spec, stage),
                          samples=self.spec.tracking.samples)
        return self.add("train", f"train {stage.name}", config, inputs, self.res.train,
                        stage_estimate(self.spec, stage))

    def curate(self, name: str, initial: str) -> str:
        """The dataset's curate job. Each `pass_rate` filter cuts the chain: the filters before it run in
        a `sample` job that also samples the model (content-addressed, so datasets asking for the same
        samples share it), and what follows starts from that job's records with the thresholds."""
        spec, ds = self.spec, self.spec.datasets[name]
        first_len = next((s.max_response_tokens for s in spec.stages if name in s.datasets), None)
        sources = [self.files.source(s) for s in ds.sources]
        upstream: str | None = None  # the last sample job
        pending: list[Any] = []  # filters since the last cut
        for f in ds.filters:
            if isinstance(f, PassRateFilter):
                upstream = self.sample_job(name, f, sources if upstream is None else [], pending, upstream,
                                           initial, first_len)
                pending = [PassRateCut(kind="pass_rate", min=f.min, max=f.max, majority=f.majority,
                                       min_response_tokens=f.min_response_tokens)]
                continue
            pending.append(self.curation_filter(f, ds))
        inputs: dict[str, str] = {"upstream": upstream} if upstream is not None else {}
        if _counts_tokens(pending):
            inputs["policy"] = initial  # the policy's tokenizer counts the tokens
        grades = any(isinstance(f, (ValidateTestsFilter, WeakTestsFilter)) for f in pending)
        config = CurateJob(dataset=name, domain=ds.domain, sources=sources if upstream is None else [],
                           filters=pending, seed=spec.seed if upstream is None and any(s.shuffle for s in ds.sources)
                           else None, grading=self.grading([ds.domain]) if grades else None)
        return self.add("curate", f"curate {name}", config, inputs, self.res.curate)

    def curation_filter(self, f: Any, ds: Any) -> Any:
        """A dataset filter as its job runs it (decontamination resolved to its benchmarks' texts)."""
        if not isinstance(f, DecontaminateFilter):
            return f
        spec = self.spec
        names = f.benchmarks if f.benchmarks is not None else sorted(
            b for b, bench in spec.benchmarks.items() if bench.domain == ds.domain)
        benchmarks = {b: BenchmarkText(source=self.files.source(spec.benchmarks[b].source),
                                       domain=spec.benchmarks[b].domain) for b in names}
        return Decontaminate(kind="decontaminate", n=f.n or DECONTAMINATION_N.get(ds.domain, 9), benchmarks=benchmarks,
                             extra_files=[self.files.file(p) for p in f.extra_files])

    def sample_job(self, dataset: str, f: PassRateFilter, sources: list[DataSource], filters: list[Any],
                   upstream: str | None, initial: str, first_len: int | None) -> str:
        """Pass-rate samples of `f.policy` (the initial model or a teacher) on the records of `sources`
        or `upstream`, after `filters`."""
        spec, ds = self.spec, self.spec.datasets[dataset]
        inputs: dict[str, str] = {"upstream": upstream} if upstream is not None else {}
        if f.policy == "initial":
            role, who = "policy", "the initial model"
            inputs["policy"] = initial
        else:
            role, who = "teacher", f.policy
            inputs["teacher"] = self.fetched(f.policy, None, None, "teacher")
        if _counts_tokens(filters):
            inputs["policy"] = initial
        tokens = f.max_response_tokens or first_len
        assert tokens is not None  # checks: a dataset no stage uses is not curated
        res = f.resources or self.res.sample
        inference, reps = self.inference("sample", f.engine, [ds.domain], tokens, res)
        sampling = PassRateSampling(model=role, k=f.k, max_response_tokens=tokens, temperature=f.temperature,
                                    top_p=f.top_p, stop=list(spec.rollout.stop))
        config = SampleJob(domain=ds.domain, sources=sources, filters=filters, sampling=sampling, seed=spec.seed,
                           grading=self.grading([ds.domain]), inference=inference, replicas=reps)
        jid = self.add("sample", f"sample {who} k={f.k} on {dataset}", config, inputs, res,
                       sample_estimate(spec, dataset, f, tokens))
        job = self.jobs[jid]
        if not job.label.endswith((f" {dataset}", f", {dataset}")) and f", {dataset}," not in job.label:
            job.label += f", {dataset}"  # one job, shared: its label names every dataset it serves
        if job.estimate is not None and job.estimate["gpu_hours"] is None:  # a later dataset may know the size
            job.estimate = sample_estimate(spec, dataset, f, tokens)
        return jid


def _counts_tokens(filters: list[Any]) -> bool:
    return any(isinstance(f, LengthFilter) and f.unit == "tokens" for f in filters)


def _used_datasets(spec: Spec) -> list[str]:
    seen: list[str] = []
    for stage in spec.stages:
        for d in stage.datasets:
            if d not in seen:
                seen.append(d)
    return seen


def _report_job(spec: Spec, cells: list[CellJobs], jobs: dict[str, PlannedJob]) -> PlannedJob:
    layout = [ReportCell(label=cj.cell.label, values=cj.cell.values, initial_bench=cj.initial_bench,
                         stages=[ReportStage(**s) for s in cj.stages])
              for cj in cells]
    references = {b: list(bench.reference) for b, bench in spec.benchmarks.items() if bench.reference}
    config = ReportJob(name=spec.name, cells=layout, references=references,
                       metrics={b: list(bench.metrics) for b, bench in spec.benchmarks.items()})
    inputs = {"jobs": [j for j in jobs]}
    jid = content_hash({"kind": "report", "config": config.model_dump(mode="json"), "inputs": inputs})
    jobs[jid] = PlannedJob("report", jid, "report", config, inputs, _resources(spec.resources.report),
                    [c.cell.index for c in cells])
    return jobs[jid]


def totals(plan: Plan) -> dict[str, Any]:
    """Rollout tokens and GPU-hours per cell (every job the cell needs) and for the grid (each shared
    job counted once). A job without a budget (model, curate, report) on CPU needs no GPU-hours
    (`cpu_jobs`); one on GPUs, or a budget whose size is unknown, is `jobs_without_estimate`."""
    def add(job_ids) -> dict[str, Any]:
        tokens, hours, unknown, cpu = 0, 0.0, 0, 0
        for jid in job_ids:
            job = plan.jobs[jid]
            est = job.estimate
            if est is None:
                cpu += job.resources["gpus"] == 0
                unknown += job.resources["gpus"] > 0
                continue
            if est.get("rollout_tokens") is None:
                unknown += 1
                continue
            tokens += est["rollout_tokens"]
            hours += est["gpu_hours"]
        return {"rollout_tokens": tokens, "gpu_hours": round(hours, 3), "jobs_without_estimate": unknown,
                "cpu_jobs": cpu}
    per_cell = {}
    for cj in plan.cells:
        ids = [j.id for j in plan.jobs.values() if cj.cell.index in j.cells]
        per_cell[cj.cell.label] = {**add(ids), "jobs": len(ids)}
    grid = {**add(plan.jobs), "jobs": len(plan.jobs)}
    return {"cells": per_cell, "grid": grid}
