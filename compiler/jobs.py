"""Typed job configs: the contract between `rlspec compile` and the runtime programs.

What: one frozen model per job kind (`ModelJob`, `CurateJob`, `FilterJob`, `TrainJob`, `BenchJob`,
`ReportJob`) and `JobFile`, the document `jobs/<kind>/<id>.json` holds. `compiler/plan.py` builds
them from the spec's own sub-models; `rlspec.runtime.job.load_job` validates the file against its
kind's model, and the runtime reads attributes. No default is invented on either side: every field
of a job model is required, so a job config says everything its program reads, and nothing else
(`tests/test_contract.py` fails when a field is read by no runtime code).

Why: the spec is typed and located; a dict between the compiler and the runtime lost both, and let
knobs be written that nothing read (or read with a `.get(key, default)` that hid them).

How the pieces meet a knob: YAML -> `spec.Stage.max_response_tokens` -> `TrainJob.max_response_tokens`
-> the engine call. Models the spec already has (`Algorithm`, `RewardSettings`, `PromptTemplate`, ...)
are reused as they are; job-only models hold what the compiler resolves (a file's sha256, a
filter's default length, which input folder holds a model).

Models: every model a job samples from or trains is an input folder (`<inputs[role]>/model`,
tokenizer included): a previous stage's output, or a `model` job that built it from scratch,
fetched a hub model at its pinned revision into the build folder, or linked a local folder (with
`model.tokenizer`'s tokenizer when it is set). Jobs never resolve a model name themselves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from .spec import (AnswerExtraction, Algorithm, DateCutoffFilter, DateWindow, DedupExactFilter, DedupNearFilter,
                   DeepSpeedSettings, Domain, FigureReferenceFilter, GroupSize, HfSettings, InteractiveFilter,
                   LanguageFilter, LengthFilter, Lora, MinTestsFilter, MultipartFilter, MultipleChoiceFilter, PromptTemplate,
                   ProofFilter, Reference, RewardSettings, Samples, Sampling, ScratchArchitecture, ScratchTokenizer,
                   Source, SpecialJudgeFilter, Temperature, TrueFalseFilter, ValidateTestsFilter,
                   AnswerParseableFilter, WeakTestsFilter)

KINDS = ("model", "sample", "curate", "filter", "train", "bench", "report")
Dtype = Literal["bfloat16", "float16", "float32"]


class JobModel(BaseModel):
    """Frozen, closed, no defaults: a job file must name every field (the compiler resolved them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# blocks shared by several kinds
# ---------------------------------------------------------------------------------------------


class DataSource(Source):
    """A spec `Source` plus the sha256 of a local file's bytes (null for `hf://` and `builtin://`,
    or a local file that did not exist at compile time): changed data gets a new job id."""

    sha256: str | None


class DataFile(JobModel):
    path: str
    """Relative to the spec's folder (the job's context `spec_dir`), or absolute."""
    sha256: str | None


class VllmEngine(JobModel):
    """vLLM's knobs for one engine (replica): train jobs take them from the stage's `rollout.vllm`
    (pipeline parallel 1, no quantization), inference jobs from their resolved `inference.<kind>` block."""

    tensor_parallel_size: int
    pipeline_parallel_size: int
    gpu_memory_utilization: float
    kv_cache_memory_bytes: int | None
    enforce_eager: bool
    max_num_seqs: int
    quantization: str | None


class EngineSettings(JobModel):
    """The rollout engine of a job: which engine, its knobs and the prompt budget (spec: `rollout`,
    less its sampling settings, which each kind sets in its own place; inference jobs: their
    `inference.<kind>` block over it)."""

    engine: Literal["vllm", "hf"]
    max_prompt_tokens: int
    vllm: VllmEngine
    hf: HfSettings


class Replicas(JobModel):
    """How an inference job spreads over its GPUs: `count` engine replicas (data parallel), each on
    `gpus` GPUs (tensor x pipeline parallel; 0 on CPU), over `nodes` nodes. Prompts are sharded by
    global index and seeded by it, so results do not depend on `count`."""

    count: int
    gpus: int
    """GPUs of one replica (TP x PP); 0: the replicas run on CPU."""
    nodes: int
    """Nodes of the job; a replica spans `gpus / gpus_per_node` nodes when it needs more than one."""
    gpus_per_node: int
    cpus: int
    """CPU threads of one replica (the job's cpus per node shared by the replicas on a node)."""


class Prompts(JobModel):
    """How records become prompts: `model.prompt`, and per domain the prompt of the datasets and
    benchmarks of that domain that write their own (their keys over `model.prompt`'s)."""

    default: PromptTemplate
    domains: dict[str, PromptTemplate]


class Inference(JobModel):
    """How a job samples from its model."""

    rollout: EngineSettings
    dtype: Dtype
    max_model_len: int
    """The engine's longest sequence: the job's prompt budget + response budget, at most `model.max_context`
    (or the engine block's `max_model_len`)."""
    prompt: Prompts


class PythonReward(JobModel):
    """A reward function of the user's: `function` in the file at `path`, run in worker processes."""

    path: str
    """Relative to the spec's folder (the job's context `spec_dir`), or absolute."""
    function: str
    sha256: str | None
    """Of the file at compile time: an edited reward file gives new job ids (and a job refuses a file
    that changed since)."""
    signature: Literal["verl", "trl"]
    timeout_s: float


class RewardFn(JobModel):
    """One resolved reward term: a built-in grader or a Python function, times `weight`."""

    name: str
    grader: Literal["math", "code"] | None
    python: PythonReward | None
    weight: float


class Grading(JobModel):
    """How a job grades answers: the reward limits, the answer extraction, and per domain the reward
    terms its datasets or benchmarks declare (a domain not listed uses its built-in grader)."""

    reward: RewardSettings
    answer: AnswerExtraction
    rewards: dict[str, list[RewardFn]]


class PassRate(JobModel):
    """A resolved pass-rate filter (curation `pass_rate` or a stage's `filter_before`)."""

    kind: Literal["pass_rate"]
    model: str
    """The input role whose `model/` folder is sampled (`policy`, `teacher0`, ...)."""
    k: int
    min: float
    max: float
    max_response_tokens: int
    temperature: float
    top_p: float
    majority: bool
    min_response_tokens: int | None
    stop: list[str]
    """Stop strings (the stage's `rollout.stop` for `filter_before`, the spec's for curation): the
    pass rate is measured with the stopping the policy trains with."""


class PassRateSampling(JobModel):
    """What a `sample` job samples: k responses per item from the model of input `model`."""

    model: str
    """The input role whose `model/` folder is sampled (`policy`: the initial model; `teacher`: another)."""
    k: int
    max_response_tokens: int
    temperature: float
    top_p: float
    stop: list[str]


class PassRateCut(JobModel):
    """A curation `pass_rate` filter's thresholds, applied to the measurement its `sample` job wrote
    on each record (`meta.pass_rate`): the samples are made once per (items, model, sampling), the
    thresholds are the dataset's own."""

    kind: Literal["pass_rate"]
    min: float
    max: float
    majority: bool
    min_response_tokens: int | None


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------


class ModelName(JobModel):
    """A model or tokenizer the spec names."""

    kind: Literal["hub", "local"]
    name: str
    """Hub repo id (`org/name`), or a local folder relative to the spec's folder (or absolute)."""
    revision: str | None
    """Hub revision to pin (branch, tag or commit); null for local folders."""
    fingerprint: str | None
    """Local folders: hash of file names, sizes and small files' bytes at compile time."""


class FetchBuild(JobModel):
    """Put a named model (and tokenizer) into the build folder: hub files at their revision, once;
    a local folder as links."""

    kind: Literal["fetch"]
    model: ModelName
    tokenizer: ModelName | None


class ScratchWarmup(JobModel):
    sources: list[DataSource]
    steps: int
    batch_size: int
    lr: float
    max_tokens: int


class ScratchBuild(JobModel):
    """A tiny model built here: local tokenizer, random init, SFT warm-up."""

    kind: Literal["scratch"]
    architecture: ScratchArchitecture
    tokenizer: ScratchTokenizer
    warmup: ScratchWarmup
    seed: int
    max_context: int
    prompt: Prompts


class ModelJob(JobModel):
    build: Annotated[Union[FetchBuild, ScratchBuild], Field(discriminator="kind")]


# ---------------------------------------------------------------------------------------------
# curate
# ---------------------------------------------------------------------------------------------


class BenchmarkText(JobModel):
    source: DataSource
    domain: Domain


class Decontaminate(JobModel):
    """A resolved `decontaminate` filter: its n and every evaluation set it checks against."""

    kind: Literal["decontaminate"]
    n: int
    benchmarks: dict[str, BenchmarkText]
    extra_files: list[DataFile]


CurateFilter = Annotated[
    Union[
        LanguageFilter, MultipartFilter, MultipleChoiceFilter, TrueFalseFilter, ProofFilter, FigureReferenceFilter,
        LengthFilter, AnswerParseableFilter, DedupExactFilter, DedupNearFilter, Decontaminate, PassRateCut,
        DateCutoffFilter, MinTestsFilter, InteractiveFilter, SpecialJudgeFilter, ValidateTestsFilter, WeakTestsFilter,
    ],
    Field(discriminator="kind"),
]


class CurateJob(JobModel):
    """A dataset's curation. Its filters run on the records of its sources, or, when the dataset has a
    `pass_rate` filter, on the records its last `sample` job (input `upstream`) wrote: the filters
    before that point ran there, and `filters` starts with that pass-rate's thresholds (`PassRateCut`)."""

    dataset: str
    domain: Domain
    sources: list[DataSource]
    """[] when the records come from input `upstream`."""
    filters: list[CurateFilter]
    seed: int | None
    """Only randomised curation (shuffled sources) depends on the seed."""
    grading: Grading | None
    """Set when a filter grades answers (`validate_tests`, `weak_tests`)."""


class SampleJob(JobModel):
    """Pass-rate samples: the records of `sources` (or of input `upstream`, an earlier `sample` job)
    through `filters`, then k graded samples of each from one model, measured on the record
    (`meta.pass_rate`: k, correct, rate, majority, mean tokens of the correct ones). No dataset name
    and no thresholds: every dataset and filter that asks for the same samples shares the job."""

    domain: Domain
    sources: list[DataSource]
    """[] when the records come from input `upstream`."""
    filters: list[CurateFilter]
    """Run before sampling: the dataset's filters up to this pass-rate (from `upstream`'s, on)."""
    sampling: PassRateSampling
    seed: int
    grading: Grading
    inference: Inference
    replicas: Replicas


# ---------------------------------------------------------------------------------------------
# filter, train, bench
# ---------------------------------------------------------------------------------------------


class FilterJob(JobModel):
    stage: str
    pass_rate: PassRate
    seed: int
    inference: Inference
    grading: Grading
    replicas: Replicas


class TrainSampling(JobModel):
    temperature: Temperature
    top_p: float
    top_k: int
    stop: list[str]
    """The spec's `rollout.stop`."""


class TrainJob(JobModel):
    stage: str
    steps: int | None
    epochs: int | None
    prompts_per_step: int
    group_size: GroupSize
    max_response_tokens: int
    sampling: TrainSampling
    algorithm: Algorithm
    inference: Inference
    sleep_mode: bool | None
    """`rollout.sleep_mode`: the engine sleeps while the trainer trains; null = on where CUDA is."""
    grading: Grading
    deepspeed: DeepSpeedSettings
    ranks: int
    seed: int
    dataset_weights: dict[str, float] | None
    """`stages[].dataset_weights`, keyed by the dataset names the input data folders' done.json give."""
    drop_prompts_above_accuracy: float | None
    """`stages[].drop_prompts_above_accuracy`, against the policy input's `prompt_stats.json`."""
    lora: Lora | None
    """`model.lora`: train adapters on the stage's input model (null = every weight)."""
    snapshot_steps: list[int]
    """Steps after which the job writes an HF-format snapshot (`snapshot_folder(step)`) for the bench
    jobs of `stages[].evaluate_every`, ascending, each below the stage's end; [] = none."""
    samples: Samples
    """`tracking.samples`: which steps write rollout samples to the job's `samples.jsonl`, and how many
    (part of the job id: the file is one of the job's results)."""


def snapshot_folder(step: int) -> str:
    """Where a train job's snapshot at `step` lies, relative to its output folder: the model (weights
    in the inference dtype, tokenizer) is in its `model/`, which the train job writes and the bench job
    of that step reads."""
    return f"snapshots/step-{step:06d}"


class BenchJob(JobModel):
    benchmark: str
    domain: Domain
    source: DataSource
    k: int
    metrics: list[str]
    sampling: Sampling
    date_window: DateWindow | None
    seed: int
    inference: Inference
    grading: Grading
    step: int | None
    """The input train job's snapshot at this step (`snapshot_folder(step)/model`, `evaluate_every`);
    null = the input's own `model/` (a stage's end, or the initial model)."""
    replicas: Replicas


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


class ReportEvaluation(JobModel):
    """The bench jobs of one snapshot inside a stage (`evaluate_every`)."""

    step: int
    """Steps into the stage."""
    bench: dict[str, str]
    """Benchmark -> bench job id."""
    model: str
    """The snapshot's model folder, relative to the build folder (the report names the best one)."""


class ReportStage(JobModel):
    name: str
    filter: str | None
    train: str
    bench: dict[str, str]
    evaluations: list[ReportEvaluation]
    """The stage's snapshots that are benchmarked, by step (`evaluate_every`; [] = its end only)."""


class ReportCell(JobModel):
    label: str
    values: dict[str, Any]
    initial_bench: dict[str, str]
    stages: list[ReportStage]


class ReportJob(JobModel):
    name: str
    cells: list[ReportCell]
    references: dict[str, list[Reference]]
    metrics: dict[str, list[str]]


CONFIGS: dict[str, type[JobModel]] = {"model": ModelJob, "sample": SampleJob, "curate": CurateJob, "filter": FilterJob,
                                      "train": TrainJob, "bench": BenchJob, "report": ReportJob}
JobConfig = Union[ModelJob, SampleJob, CurateJob, FilterJob, TrainJob, BenchJob, ReportJob]
