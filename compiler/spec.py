"""The experiment spec: every setting is a typed field with a default and one docstring.

These models are the whole contract between the user's YAML, the compiler and the runtime jobs.
Closed choices are `Literal`s; polymorphic blocks (filters, schedules, model sources) are unions
tagged by `kind`, so a mistake gives one precise error. Models are frozen and reject unknown keys.
Field docstrings become the JSON Schema descriptions (`rlspec schema`).

Cross-field rules (group size vs ranks, lengths vs context, references between blocks) live in
`rlspec.compiler.checks`, so that all of them are reported together with file:line locations.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
Domain = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
"""A free name: `math` and `code` have built-in graders and curation filters; any other domain
(`qa`, `format`, ...) is graded by the `reward` block of the datasets and benchmarks that use it."""
BUILTIN_DOMAINS = ("math", "code")
Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_as_number(cls, data: Any) -> Any:
        # pydantic's lax mode reads `steps: true` as 1; in a spec that is always a typo. Handing the
        # field the word instead makes pydantic reject it at the field's own location.
        if isinstance(data, dict) and any(v is True or v is False for v in data.values()):
            numeric = _numeric_fields(cls)
            bad = {k: str(v).lower() for k, v in data.items() if isinstance(v, bool) and k in numeric}
            if bad:
                data = {**data, **bad}
        return data


_NUMERIC: dict[type, frozenset[str]] = {}


def _numeric_fields(cls: type[BaseModel]) -> frozenset[str]:
    found = _NUMERIC.get(cls)
    if found is None:
        found = _NUMERIC[cls] = frozenset(name for name, f in cls.model_fields.items() if _is_numeric(f.annotation))
    return found


def _is_numeric(tp: Any) -> bool:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (Union, types.UnionType) else [tp]
    return bool(args) and all(_is_numeric(a) if typing.get_origin(a) is Annotated else a in (int, float) for a in args)


# --------------------------------------------------------------------------------------------
# Schedules: a plain number means "constant"; otherwise a block tagged by `kind`.
# --------------------------------------------------------------------------------------------


def _number_to_constant(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"kind": "constant", "value": value}
    return value


class _Schedule(Model):
    """A value per epoch: `at(epoch)` is the one implementation the compiler's checks, the plan's
    budget and the trainer share (constant, or a list whose last value holds for later epochs)."""

    def at(self, epoch: int) -> Any:
        values = self.all()
        return values[min(epoch, len(values) - 1)]

    def all(self) -> list[Any]:
        value = getattr(self, "value", None)
        return [value] if value is not None else list(getattr(self, "values"))


class ConstantTemperature(_Schedule):
    kind: Literal["constant"] = "constant"
    value: Annotated[float, Field(gt=0.0, le=5.0)]
    """Sampling temperature for every step."""


class PerEpochTemperature(_Schedule):
    kind: Literal["per_epoch"]
    values: Annotated[list[Annotated[float, Field(gt=0.0, le=5.0)]], Field(min_length=1)]
    """Temperature for epoch 0, 1, ...; the last value holds for later epochs (code stage 2: [0.6, 0.8, 1.0])."""


class EntropyTargetTemperature(Model):
    kind: Literal["entropy_target"]
    target: Annotated[float, Field(gt=0.0)] = 0.3
    """Mean token entropy (nats) of the temperature-adjusted sampling distribution to hold (AceReason 1.1: about 0.3)."""
    initial: Annotated[float, Field(gt=0.0, le=5.0)] = 0.6
    """Temperature for the first step."""
    min: Annotated[float, Field(gt=0.0, le=5.0)] = 0.3
    """Lower bound for the controlled temperature."""
    max: Annotated[float, Field(gt=0.0, le=5.0)] = 1.2
    """Upper bound for the controlled temperature."""
    gain: Annotated[float, Field(gt=0.0)] = 0.5
    """Step size of the multiplicative update: T <- T * exp(gain * (target - entropy) / target)."""


Temperature = Annotated[
    Union[ConstantTemperature, PerEpochTemperature, EntropyTargetTemperature],
    Field(discriminator="kind"),
    BeforeValidator(_number_to_constant, json_schema_input_type=Union[float, dict]),
]


class ConstantGroupSize(_Schedule):
    kind: Literal["constant"] = "constant"
    value: Annotated[int, Field(ge=1, le=1024)]
    """Responses sampled per prompt at every step."""


class PerEpochGroupSize(_Schedule):
    kind: Literal["per_epoch"]
    values: Annotated[list[Annotated[int, Field(ge=1, le=1024)]], Field(min_length=1)]
    """Group size for epoch 0, 1, ...; the last value holds for later epochs (code stage 2: [8, 16])."""


GroupSize = Annotated[
    Union[ConstantGroupSize, PerEpochGroupSize],
    Field(discriminator="kind"),
    BeforeValidator(_number_to_constant, json_schema_input_type=Union[int, dict]),
]


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


DEEPSEEK_R1_TEMPLATE = "<｜User｜>{question}<｜Assistant｜><think>\n"


class PromptTemplate(Model):
    template: str | None = None
    """Prompt text around each question; `{question}` is replaced by the problem text plus the domain
    suffix, `{system}` by `system`. Null (not written): the tokenizer's chat template when it has one,
    else AceReason's `<｜User｜>{question}<｜Assistant｜><think>\\n` (no system prompt)."""
    math_suffix: str = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    """Appended to every math question (AceReason's instruction)."""
    code_suffix: str = ("\n\nWrite a Python program that solves the problem. Place the solution in a single "
                        "```python code block.")
    """Appended to every code question; starter code, when a problem has it, follows this. Questions of
    other domains get no suffix."""
    use_chat_template: bool | None = None
    """Render with the tokenizer's chat template (the record's message list, or the question as one
    user message; the assistant turn opened). Null: when `template` is not written and the tokenizer
    has a chat template; false: always `template`; true: always the chat template (`rlspec check`
    refuses a local tokenizer that has none)."""
    system: str | None = None
    """System prompt: a system message in the chat template (unless the record's messages have one),
    or the text of `{system}` in `template`."""
    chat_template_args: dict[str, Any] = {}
    """Extra arguments of the tokenizer's `apply_chat_template` (e.g. `enable_thinking: false` for
    Qwen3; the from-scratch tokenizer's template honours it too)."""

    def text_template(self) -> str:
        """The text template a prompt without the chat template uses."""
        return self.template if self.template is not None else DEEPSEEK_R1_TEMPLATE

    def merged(self, override: "PromptTemplate | None") -> "PromptTemplate":
        """This prompt with the keys `override` writes replaced (a dataset's or benchmark's `prompt`)."""
        if override is None:
            return self
        return PromptTemplate.model_validate({**self.model_dump(), **override.model_dump(exclude_unset=True)})


class PromptOverride(PromptTemplate):
    """A dataset's or benchmark's prompt: the keys written here replace `model.prompt`'s, the rest
    come from it."""


class AnswerExtraction(Model):
    think_end: str | None = "</think>"
    """Only text after the last occurrence of this tag is graded; a response without it gets reward 0
    (`no_answer`). Null grades the whole response."""
    math: Literal["boxed"] = "boxed"
    """Math answers are boxed (`\\boxed{...}`, nested braces allowed); `math_boxes` says which boxes."""
    math_fallback_patterns: list[str] = []
    """Regular expressions tried in order when no `\\boxed{}` is found (group 1 is the answer)."""
    math_boxes: Literal["last_box", "all_boxes"] = "last_box"
    """Which boxes are the answer: the last `\\boxed{}` (AceReason), or `all_boxes`: the final group of
    boxes compared as one answer (sets, several roots or a tuple boxed one by one)."""
    math_unboxed_fallback: bool = False
    """Without any box, grade the final answer the response states after the think tag ("the answer
    is 5"); off by default: the paper's reward is boxed-only, and a policy learns what pays."""
    code: Literal["last_python_block"] = "last_python_block"
    """Code answers: the last fenced ```python block."""


class ScratchTokenizer(Model):
    vocab_size: Annotated[int, Field(ge=260, le=65536)] = 384
    """BPE vocabulary size, trained locally by `tokenizers` on the warm-up corpus (byte-level, Qwen2 pre-tokenizer)."""
    corpus_size: Annotated[int, Field(ge=10)] = 2000
    """How many warm-up examples the tokenizer is trained on."""


class ScratchArchitecture(Model):
    family: Literal["qwen2", "llama"] = "qwen2"
    """transformers architecture to instantiate from a config (no weights are downloaded)."""
    hidden_size: Annotated[int, Field(ge=8)] = 128
    intermediate_size: Annotated[int, Field(ge=8)] = 256
    num_layers: Annotated[int, Field(ge=1)] = 2
    num_heads: Annotated[int, Field(ge=1)] = 4
    num_kv_heads: Annotated[int, Field(ge=1)] = 2
    tie_word_embeddings: bool = True


class Warmup(Model):
    """Supervised warm-up so the from-scratch policy starts better than random."""

    sources: Annotated[list["Source"], Field(min_length=1)]
    """Where the warm-up examples come from (question + worked answer), e.g. `builtin://math?...`."""
    steps: Annotated[int, Field(ge=0)] = 300
    """Optimiser steps of supervised fine-tuning (0 skips the warm-up)."""
    batch_size: Annotated[int, Field(ge=1)] = 32
    lr: Annotated[float, Field(gt=0.0)] = 3e-3
    max_tokens: Annotated[int, Field(ge=16)] = 256
    """Examples are truncated to this many tokens."""


class FromScratch(Model):
    """A tiny model built by a cached DAG job: config -> local tokenizer -> random init -> SFT warm-up."""

    architecture: ScratchArchitecture = ScratchArchitecture()
    tokenizer: ScratchTokenizer = ScratchTokenizer()
    warmup: Warmup


class Lora(Model):
    """Low-rank adapters (LoRA, Hu et al. 2021, through PEFT) instead of full fine-tuning: every
    `target_modules` linear layer W gets a trainable B·A (rank `rank`, scaled by `alpha / rank`) and
    W stays frozen, so gradients and AdamW states exist for the adapter only. Rollouts use the merged
    weights W + (alpha / rank)·B·A under the base model's names; resumable checkpoints hold the
    adapter; the stage's `model/` is the merged HF model (the next stage trains a fresh adapter on it,
    benchmarks load it plainly) and `adapter/` the adapter in PEFT's format. With `algorithm.kl.coef >
    0` and `kl.reference: stage_input` the reference is the policy with its adapter switched off (no
    second model in memory)."""

    rank: Annotated[int, Field(ge=1)]
    """r, the adapter's inner dimension (PEFT `r`)."""
    alpha: Annotated[float, Field(gt=0.0)]
    """The adapter's scale numerator: B·A is multiplied by alpha / rank (PEFT `lora_alpha`)."""
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Dropout on the adapter's input (PEFT `lora_dropout`) in the trainer's forwards that build the
    loss; rollouts, the batch's old log-probs and the KL reference use none."""
    target_modules: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    """Names of the linear layers that get an adapter, matched against the end of each module's name
    as PEFT does (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj` in
    Qwen2/Llama/Mistral/Qwen3); only linear layers (not embeddings) are supported."""


class ModelSpec(Model):
    path: str | None = None
    """Hugging Face id (`hf://ORG/NAME[@REV]` or `ORG/NAME`) or a local folder with an HF model (relative to the
    file that names it). Exactly one of `path` and `from_scratch`. A `model` job puts it into the build
    folder once (hub files at `revision`; a local folder as links) and every job loads that copy, so
    compute nodes need no network and all jobs read the same weights."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin, for hub models; the commit it resolved to is in the
    model job's done.json."""
    from_scratch: FromScratch | None = None
    """Build a tiny model locally instead (offline use, tests, the quickstart)."""
    tokenizer: str | None = None
    """Tokenizer (hub id or folder) when it differs from the model's: the model job replaces the model's
    tokenizer files with it, so every job (curation, training, both engines, benchmarks) uses it."""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """Weights and compute dtype for training and rollouts (float32 on CPU for exact parity tests)."""
    max_context: Annotated[int, Field(ge=16)] = 32768
    """Longest prompt + response the model supports; every stage's max prompt + max response must fit."""
    prompt: PromptTemplate = PromptTemplate()
    answer: AnswerExtraction = AnswerExtraction()
    lora: Lora | None = None
    """Train LoRA adapters instead of every weight, in every stage (see `Lora`); null = full fine-tuning."""


# --------------------------------------------------------------------------------------------
# Data sources and curation filters
# --------------------------------------------------------------------------------------------


class Source(Model):
    uri: Annotated[str, Field(min_length=1)]
    """`hf://datasets/ORG/NAME[@REV]` (a hub dataset, as huggingface_hub writes it; the older
    `hf://ORG/NAME` still works, with a deprecation warning), `hf://./folder` (a local dataset folder),
    a local `.jsonl`/`.json`/`.parquet`/`.csv` file (relative to the spec), or a `builtin://math` /
    `builtin://code` generator (parameters as a query: `builtin://math?n=2000&difficulty=2`). veRL,
    TRL (standard and conversational) and LiveCodeBench layouts are detected and need no `fields`."""
    config: str | None = None
    """Dataset configuration name (`hf://` only)."""
    split: str = "train"
    """Split to read (`hf://` only)."""
    revision: str | None = None
    """Dataset revision to pin (`hf://` only); the same as `@REV` in the uri, and the two must agree."""
    fields: dict[str, str] = {}
    """Map from our field names (`prompt`, `messages`, `answer`, `tests`, `private_tests`, `starter_code`,
    `fn_name`, `release_date`, `id`, ...) to the source's column names or dot paths into nested columns
    (`answer: reward_model.ground_truth`, `fn_name: metadata.func_name`), where they differ; they win
    over the detected layout. A `prompt` that is a list of {role, content} messages keeps them for the
    chat template. `rlspec check` reads a local file's first rows and refuses a path it lacks."""
    limit: Annotated[int, Field(ge=1)] | None = None
    """Read at most this many records (after a seeded shuffle when `shuffle`)."""
    shuffle: bool = False
    """Shuffle records with the spec seed before `limit`."""


class _Filter(Model):
    pass


class LanguageFilter(_Filter):
    kind: Literal["language"]
    keep: Annotated[list[str], Field(min_length=1)] = ["en"]
    """ISO 639-1 codes to keep, detected by langid (ships its own model; no downloads)."""


class MultipartFilter(_Filter):
    kind: Literal["multipart"]
    """Drop questions with several sub-questions ((a), (b), ... or numbered parts)."""


class MultipleChoiceFilter(_Filter):
    kind: Literal["multiple_choice"]
    """Drop multiple-choice questions."""


class TrueFalseFilter(_Filter):
    kind: Literal["true_false"]
    """Drop true/false and yes/no questions."""


class ProofFilter(_Filter):
    kind: Literal["proof"]
    """Drop proof questions (no checkable final answer)."""


class FigureReferenceFilter(_Filter):
    kind: Literal["figure_reference"]
    """Drop questions that refer to a figure, diagram or image the model cannot see."""


class LengthFilter(_Filter):
    kind: Literal["length"]
    min: Annotated[int, Field(ge=0)] = 0
    """Drop questions shorter than this (AceReason drops too-short problems)."""
    max: Annotated[int, Field(ge=1)] | None = None
    """Drop questions longer than this."""
    unit: Literal["chars", "tokens"] = "chars"
    """Count characters, or tokens of the policy's tokenizer."""


class AnswerParseableFilter(_Filter):
    kind: Literal["answer_parseable"]
    """Keep only math items whose reference answer the math verifier can parse."""


class DedupExactFilter(_Filter):
    kind: Literal["dedup_exact"]
    fields: Annotated[list[str], Field(min_length=1)] = ["prompt"]
    """Fields compared after normalising text (case, spacing, punctuation folded): an item is a
    duplicate when ANY listed field matches an earlier item's; code datasets add `url` to dedup by
    statement and by URL."""


class DedupNearFilter(_Filter):
    kind: Literal["dedup_near"]
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    """Estimated Jaccard similarity above which two items are near-duplicates (the later one is dropped)."""
    num_perm: Annotated[int, Field(ge=16, le=1024)] = 128
    """MinHash permutations."""
    shingle: Annotated[int, Field(ge=1, le=32)] = 5
    """Shingle size in words."""


class DecontaminateFilter(_Filter):
    kind: Literal["decontaminate"]
    n: Annotated[int, Field(ge=3, le=64)] | None = None
    """n-gram size in words; default 9 for math (and domains of your own) and 14 for code (the paper's values)."""
    benchmarks: list[Name] | None = None
    """Benchmarks to decontaminate against (names from `benchmarks:`); default: every declared benchmark
    of the dataset's domain."""
    extra_files: list[str] = []
    """More evaluation files (jsonl/json/parquet/csv with a `prompt` field) to decontaminate against."""


class InferenceEngine(Model):
    """How an inference job (a benchmark, a stage's hard-prompt filter, curation's pass-rate samples of
    a teacher or the initial model) runs its model: parallelism, precision, memory. A job runs
    `data_parallel_size` engine replicas, each on `tensor_parallel_size x pipeline_parallel_size` GPUs
    of its own; prompts are sharded over the replicas by global index, so samples and metrics do not
    depend on how many there are. A field left unset takes the value named in its description."""

    engine: Literal["vllm", "hf"] | None = None
    """Default: `rollout.engine`."""
    tensor_parallel_size: Annotated[int, Field(ge=1)] = 1
    """GPUs one replica splits each layer over (vLLM `tensor_parallel_size`; at most a node's GPUs)."""
    pipeline_parallel_size: Annotated[int, Field(ge=1)] = 1
    """Consecutive groups of layers on further GPUs (vLLM `pipeline_parallel_size`): a model too large for
    one node's GPUs runs as TP x PP GPUs over PP nodes."""
    data_parallel_size: Annotated[int, Field(ge=1)] | None = None
    """Engine replicas of the job. Default: every GPU of the job, nodes x gpus / (TP x PP) (1 on CPU);
    `rlspec check` refuses a TP x PP x DP that is not the job's GPUs. On CPU, replicas share the job's
    cpus (each its own process with cpus / DP threads)."""
    dtype: Literal["bfloat16", "float16", "float32"] | None = None
    """Default: `model.dtype`."""
    quantization: Literal["fp8", "awq", "gptq", "compressed-tensors", "bitsandbytes"] | None = None
    """vLLM's weight quantization (fp8: 1 byte per weight); null = the model's own (a checkpoint saved
    quantized, as DeepSeek-R1's fp8, is read as it is). vLLM engine only."""
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    """Fraction of each GPU vLLM may take: nothing else shares an inference job's GPUs (the train
    stages' `rollout.vllm` leaves room for the trainer)."""
    kv_cache_memory_bytes: Annotated[int, Field(ge=1 << 20)] | None = None
    """KV-cache size per replica in bytes. Default: `rollout.vllm.kv_cache_memory_bytes` (required on CPU)."""
    max_model_len: Annotated[int, Field(ge=16)] | None = None
    """Longest sequence the engine holds. Default: the job's prompt budget plus its response budget
    (`rollout.max_prompt_tokens` + the benchmark's, filter's or pass-rate's `max_response_tokens`), at
    most `model.max_context`: a KV cache sized for 131K-token sequences that never occur wastes memory."""
    max_num_seqs: Annotated[int, Field(ge=1)] | None = None
    """Sequences one replica decodes at once. Default: `rollout.vllm.max_num_seqs`."""
    enforce_eager: bool | None = None
    """Default: `rollout.vllm.enforce_eager`."""
    hf_batch_size: Annotated[int, Field(ge=1)] | None = None
    """Sequences per `generate` call of the hf engine. Default: `rollout.hf.batch_size`."""

    def merged(self, override: "InferenceEngine | None") -> "InferenceEngine":
        """This block with the keys `override` writes replaced (a benchmark's, filter's or pass-rate's `engine`)."""
        if override is None:
            return self
        return InferenceEngine.model_validate({**self.model_dump(exclude_unset=True),
                                               **override.model_dump(exclude_unset=True)})


class InferenceEngines(Model):
    """The engine of each kind of inference job; a benchmark, a stage's `filter_before` and a pass-rate
    filter can override keys of theirs in their own `engine`."""

    bench: InferenceEngine = InferenceEngine()
    filter: InferenceEngine = InferenceEngine()
    """Stages' `filter_before` jobs (k samples of every prompt from the policy entering the stage)."""
    sample: InferenceEngine = InferenceEngine()
    """Curation's pass-rate sampling jobs (`datasets.<d>.filters[kind=pass_rate]`: a teacher or the
    initial model); each distinct (items, model, sampling, engine) is one job, shared by every dataset
    that asks for the same samples."""


class _PassRate(Model):
    """Sample k answers per item with a policy, grade them, keep the items whose pass rate is in [min, max]."""

    k: Annotated[int, Field(ge=1, le=1024)] = 16
    """Samples per item."""
    min: Fraction01 = 0.0
    """Keep items whose pass rate is ≥ min (1/8 keeps only items a teacher can solve)."""
    max: Fraction01 = 1.0
    """Keep items whose pass rate is ≤ max (the paper's hard prompts: 6/16 = 0.375)."""
    max_response_tokens: Annotated[int, Field(ge=1)] | None = None
    """Response budget for the k samples; default: the stage's (or, in datasets, the first stage's)."""
    temperature: Annotated[float, Field(gt=0.0, le=5.0)] = 0.6
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95


class PassRateFilter(_PassRate):
    kind: Literal["pass_rate"]
    policy: str = "initial"
    """Whose pass rate: `initial` (the spec's starting model), `previous` (the checkpoint before the stage,
    only in a stage's `filter_before`), or a model id/folder (a teacher, for the agreement filter)."""
    majority: bool = False
    """Also require the majority answer over the k samples to match the reference (math; the paper's
    teacher-agreement filter: a strong model's majority answer over up to 8 tries)."""
    min_response_tokens: Annotated[int, Field(ge=1)] | None = None
    """Drop items the policy answers correctly in fewer tokens on average (the paper drops problems
    answered in under 2,000 tokens as too easy)."""
    engine: InferenceEngine | None = None
    """Keys over `inference.sample` for this filter's sampling job (a 671B teacher: TP 8, PP 2, fp8)."""
    resources: "JobResources | None" = None
    """The sampling job's resources; default `resources.sample` (a teacher may need more nodes)."""


class DateCutoffFilter(_Filter):
    kind: Literal["date_cutoff"]
    before: dt.date | None = None
    """Keep problems released before this date (AceReason: 2024-08-01, the start of LiveCodeBench v5)."""
    after: dt.date | None = None
    """Keep problems released on or after this date."""


class MinTestsFilter(_Filter):
    kind: Literal["min_tests"]
    min: Annotated[int, Field(ge=1)] = 1
    """Drop code problems with fewer test cases."""


class InteractiveFilter(_Filter):
    kind: Literal["interactive"]
    """Drop interactive problems (from metadata and statement cues)."""


class SpecialJudgeFilter(_Filter):
    kind: Literal["special_judge"]
    """Drop problems that need a special judge (several correct outputs)."""


class ValidateTestsFilter(_Filter):
    kind: Literal["validate_tests"]
    """Run the reference solution in the code sandbox; drop the problem if it fails any test (false negatives)."""


class WeakTestsFilter(_Filter):
    kind: Literal["weak_tests"]
    """Drop problems whose tests a trivially wrong program passes (false-positive rewards)."""


Filter = Annotated[
    Union[
        LanguageFilter, MultipartFilter, MultipleChoiceFilter, TrueFalseFilter, ProofFilter,
        FigureReferenceFilter, LengthFilter, AnswerParseableFilter, DedupExactFilter, DedupNearFilter,
        DecontaminateFilter, PassRateFilter, DateCutoffFilter, MinTestsFilter, InteractiveFilter,
        SpecialJudgeFilter, ValidateTestsFilter, WeakTestsFilter,
    ],
    Field(discriminator="kind"),
]
FILTER_DOMAINS: dict[str, frozenset[str]] = {
    "answer_parseable": frozenset({"math"}),
    "date_cutoff": frozenset({"code"}),
    "min_tests": frozenset({"code"}),
    "interactive": frozenset({"code"}),
    "special_judge": frozenset({"code"}),
    "validate_tests": frozenset({"code"}),
    "weak_tests": frozenset({"code"}),
}


def _one_term_as_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class RewardTerm(Model):
    """One term of a reward: a built-in grader or your own Python function, times `weight`."""

    grader: Literal["math", "code"] | None = None
    """Built-in grader: `math` (the math verifier against `answer`) or `code` (the sandbox against
    `tests`); exactly one of `grader` and `python`."""
    python: Annotated[str, Field(pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    """`path/to/file.py:function`, relative to the spec file; the file's sha256 enters the job id. It runs
    in worker processes, never in the job's own process; an exception or a hang gives reward 0 with
    status `error` / `timeout`, counted by `algorithm.health.max_grader_error_rate`."""
    signature: Literal["verl", "trl"] = "verl"
    """How `python` is called: `verl`: `f(data_source, solution_str, ground_truth, extra_info)` -> float
    or a dict with `score`, per response; `trl`: `f(prompts, completions, **columns)` -> list of floats
    (called with one response at a time, so each gets its own timeout)."""
    weight: float = 1.0
    """The reward is the sum of weight x term over the terms (e.g. 1.0 correctness + 0.2 format)."""
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """Per-response limit for `python`; past it the worker is killed, the response gets reward 0, status `timeout`."""
    name: Name | None = None
    """Label in logs and statuses (default: the function's name, or the grader's)."""

    def label(self) -> str:
        return self.name or (self.python.rsplit(":", 1)[1] if self.python else str(self.grader))


RewardTerms = Annotated[list[RewardTerm], Field(min_length=1),
                        BeforeValidator(_one_term_as_list, json_schema_input_type=Union[list[RewardTerm], RewardTerm])]


class Dataset(Model):
    domain: Domain
    """`math` (graded by the math verifier), `code` (graded by the sandbox), or a name of your own
    graded by `reward`. Datasets and benchmarks that share a domain share its reward and prompt."""
    sources: Annotated[list[Source], Field(min_length=1)]
    """Concatenated in order, then filtered."""
    filters: list[Filter] = []
    """Applied in order; each reports records in / kept / dropped in the curation funnel."""
    expected_size: Annotated[int, Field(ge=1)] | None = None
    """Prompts expected after curation; only used by `rlspec plan` to turn epochs into steps."""
    reward: RewardTerms | None = None
    """One term (`{python: rewards.py:score}`) or a list of weighted terms; default: the built-in grader
    of `math` / `code` (required for other domains)."""
    prompt: PromptOverride | None = None
    """This dataset's prompt: keys written here replace `model.prompt`'s (e.g. `system:`, `template:`)."""


# --------------------------------------------------------------------------------------------
# Algorithm and rollout defaults (each stage may override any field)
# --------------------------------------------------------------------------------------------


class Advantage(Model):
    normalize_std: bool = True
    """Divide (reward - group mean) by the group std (GRPO); false gives Dr. GRPO's unnormalised advantage."""
    eps: Annotated[float, Field(gt=0.0)] = 1e-6
    """Added to the group std."""


class KL(Model):
    coef: Annotated[float, Field(ge=0.0)] = 0.0
    """β; 0 loads no reference model (AceReason: 0; DeepScaleR: 0.001)."""
    estimator: Literal["k1", "k2", "k3", "low_var_kl"] = "k3"
    """KL estimator between policy and reference per token."""
    reference: Literal["stage_input", "initial"] = "stage_input"
    """The KL reference model: `stage_input`, the model the stage starts from (the reference resets at
    every stage), or `initial`, the run's initial model (`model:`; it never resets: every stage's train
    job takes that model as a further input). Without a reference model (`coef: 0`) it changes nothing,
    and `rlspec check` warns."""


class Clip(Model):
    low: Annotated[float, Field(ge=0.0, le=1.0)] | None = 0.2
    """PPO clip ε below 1 (ratio ≥ 1 - low); null disables clipping. Irrelevant at 1 update per batch."""
    high: Annotated[float, Field(ge=0.0, le=10.0)] | None = 0.28
    """PPO clip ε above 1 (DAPO's clip-higher: 0.28); null disables clipping."""
    dual: float | None = None
    """Dual-clip constant c > 1 (Ye et al. 2020; veRL's `clip_ratio_c`, DAPO: 10): for a token with a
    negative advantage A the clipped surrogate loss is capped at c·|A|, so a ratio far above 1 on a bad
    token cannot give an unbounded loss (the token then has no gradient); null = off. The metric
    `dual_clip_frac` is the fraction of loss tokens where the cap binds."""


class AdaptiveEntropy(Model):
    """Skywork-OR1's adaptive entropy control: after every step the entropy coefficient moves by `step`
    up when the step's policy entropy was below `target` and down otherwise, clamped to
    [`min_coef`, `max_coef`]; the next step applies the entropy bonus only if the entropy was below
    `target` (their `entropy_loss_enabled`). It starts at `algorithm.entropy_coef` (applied at step 1)
    and is logged as `entropy_coef` every step (`entropy_coef_applied`: what the loss used, 0 while the
    bonus is off); it survives a resume. The entropy is the token entropy of the step's first
    optimisation pass (the `entropy` metric)."""

    target: Annotated[float, Field(ge=0.0)]
    """Target token entropy in nats (Skywork-OR1's scripts: 0.2)."""
    step: Annotated[float, Field(gt=0.0)]
    """Change of the coefficient per train step (Skywork-OR1: 0.0001)."""
    min_coef: Annotated[float, Field(ge=0.0)] = 0.0
    """Lower bound of the coefficient (Skywork-OR1: 0)."""
    max_coef: Annotated[float, Field(ge=0.0)]
    """Upper bound of the coefficient (Skywork-OR1: 0.005); at least `min_coef`."""


class DynamicSampling(Model):
    """Train only on groups whose responses differ (zero-variance groups give zero advantages and
    no gradient): DAPO's dynamic sampling, Skywork-OR1's filtering, POLARIS' in-batch refill. The
    step's metrics count every generated group (`groups_generated`, `groups_dropped`, ...)."""

    enabled: bool = False
    """Drop groups whose `metric` is equal on every response, then refill the batch as `refill` says."""
    max_rounds: Annotated[int, Field(ge=1, le=64)] = 3
    """`refill: resample`: at most this many extra generation rounds per step (DAPO's
    max_num_gen_batches less the first); after them the step trains on what it kept."""
    generation_batch_size: Annotated[int, Field(ge=1)] | None = None
    """Prompts generated per round, at least the stage's `prompts_per_step` (DAPO's gen_batch_size,
    e.g. 3x the train batch); informative groups past `prompts_per_step` are not trained on
    (`groups_unused`). null: the first round generates `prompts_per_step` prompts and a later one as
    many as are still missing."""
    metric: Literal["reward", "accuracy"] = "reward"
    """What must differ within a group to keep it: the training `reward` (after `reward_values` and
    `overlong`: a soft penalty alone makes a group differ), or the grader's `accuracy` score
    (DAPO's scripts filter on acc)."""
    refill: Literal["resample", "none", "copy"] = "resample"
    """How dropped groups are replaced: `resample` generates further rounds of new prompts (DAPO);
    `none` trains on the kept groups only, a smaller batch (Skywork-OR1); `copy` duplicates kept
    groups within the batch, in turn, up to `prompts_per_step` groups (POLARIS)."""


class RewardValues(Model):
    """The training reward of a grader score s in [0, 1]: incorrect + (correct - incorrect) * s.
    Accuracy (pass_rate, `accuracy_mean`, filter_solved, `drop_prompts_above_accuracy`, dynamic
    sampling on `accuracy`) reads s itself."""

    correct: float = 1.0
    """Reward of a correct answer (s = 1); DAPO: 1."""
    incorrect: float = 0.0
    """Reward of a wrong answer (s = 0); DAPO: -1."""


class Overlong(Model):
    kind: Literal["none", "mask", "soft_penalty", "zero_reward"] = "none"
    """Truncated responses: `none` (reward as graded: `reward_values.incorrect` unless the cut-off
    text was graded correct), `mask` (excluded from the loss; helps at 8K/16K, hurts at 32K),
    `soft_penalty` (DAPO's linear penalty inside the buffer), `zero_reward` (reward 0 whatever the
    grader said: Dr. GRPO, Open-Reasoner-Zero)."""
    buffer: Annotated[int, Field(ge=1)] = 4096
    """`soft_penalty`: length of the penalty ramp in tokens before the maximum."""
    factor: Annotated[float, Field(ge=0.0)] = 1.0
    """`soft_penalty`: penalty at the maximum length."""


class Optimizer(Model):
    name: Literal["adamw"] = "adamw"
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-6
    """Peak learning rate (after warm-up); AceReason: 1e-6 for math stages, 5e-6 for code stages."""
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = (0.9, 0.999)
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    eps: Annotated[float, Field(gt=0.0)] = 1e-8
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    """Linear learning-rate warm-up at the start of each stage, in `warmup_unit`s."""
    warmup_unit: Literal["optimizer_steps", "batches"] = "optimizer_steps"
    """The unit of `warmup_steps`: optimiser steps, or rollout batches (= train steps, as veRL's
    scripts count `lr_warmup_steps`): a batch is `updates_per_batch` x (prompts_per_step /
    mini_batch_size) optimiser steps, so the warm-up lasts `warmup_steps` x that many optimiser steps."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate schedule after warm-up."""
    grad_clip: Annotated[float, Field(gt=0.0)] | None = 1.0
    """Global gradient-norm clip; null disables it."""


class Health(Model):
    """Rules that stop a training job with a clear message instead of burning compute."""

    max_zero_reward_steps: Annotated[int, Field(ge=1)] | None = 50
    """Stop after this many consecutive steps with mean accuracy (the grader's score) 0: the policy
    never solves the prompts. Accuracy, not the training reward: with `reward_values` of ±1 a mean
    reward of 0 is half the answers right."""
    max_all_zero_variance_steps: Annotated[int, Field(ge=1)] | None = 50
    """Stop after this many consecutive steps where every group had equal rewards."""
    max_sandbox_error_rate: Fraction01 | None = 0.05
    """Stop when more than this fraction of a step's code answers end in `sandbox_error`."""
    max_grader_error_rate: Fraction01 | None = 0.05
    """Stop when more than this fraction of a step's answers could not be graded (status `error`: the
    grader raised on them, or a `python` reward term raised or ran past its `timeout_s`; each such term
    gave reward 0 and the step went on)."""


class Algorithm(Model):
    advantage: Advantage = Advantage()
    loss_agg: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"] = "token_mean"
    """How token losses become one number: mean over all tokens of the batch (AceReason, DAPO),
    mean of per-sequence means (original GRPO), or per-sequence sums over a constant (Dr. GRPO)."""
    kl: KL = KL()
    entropy_coef: Annotated[float, Field(ge=0.0)] = 0.0
    """Entropy bonus weight (AceReason: 0); with `adaptive_entropy`, its initial value."""
    adaptive_entropy: AdaptiveEntropy | None = None
    """Skywork-OR1's adaptive entropy coefficient (see `AdaptiveEntropy`); null = `entropy_coef` fixed."""
    clip: Clip = Clip()
    updates_per_batch: Annotated[int, Field(ge=1, le=64)] = 1
    """Optimiser passes over each rollout batch; 1 = strict on-policy (AceReason; 2 or 4 collapsed entropy)."""
    mini_batch_size: Annotated[int, Field(ge=1)] | None = None
    """Prompts per optimiser step within a rollout batch; null = the whole batch (one step per update)."""
    micro_batch_size: Annotated[int, Field(ge=1)] = 4
    """Sequences per forward/backward per rank (gradient accumulation covers the rest); with a
    token budget, the most sequences one micro-batch may hold."""
    max_tokens_per_micro_batch: Annotated[int, Field(ge=16)] | None = None
    """Token budget of one forward/backward per rank: a mini-batch's sequences, longest first, are
    placed in micro-batches of at most this many tokens (padded width x sequences, or the sum of
    lengths with `pack_sequences`), so one long response no longer sets the cost of every short one.
    At least the stage's longest sequence (`rollout.max_prompt_tokens` + `max_response_tokens`, capped
    by `model.max_context`); null = fixed counts of `micro_batch_size` sequences."""
    pack_sequences: bool = False
    """Padding-free micro-batches: a micro-batch's sequences are concatenated into one row whose
    position ids restart at every sequence, and attention never crosses a sequence boundary: the
    trainer's attention runs causal SDPA on each sequence on its own (flash kernels on GPU, the flash
    CPU kernel here; no dense mask is built), so attention costs the sum of squared lengths. Same loss
    and gradients as padded micro-batches (fp32, 1e-6)."""
    gradient_checkpointing: bool | None = None
    """Recompute each decoder layer's activations in the backward pass instead of keeping them (memory
    for compute: needed at 8K-32K tokens); null = on when the train job runs on GPUs, off on CPU."""
    logprob_chunk_tokens: Annotated[int, Field(ge=1)] = 1024
    """Response positions per chunk when log-probs and entropy are computed from the last hidden
    states: the full-vocabulary fp32 logits exist for one chunk at a time, never for the whole
    (sequences x length x vocabulary) batch."""
    dynamic_sampling: DynamicSampling = DynamicSampling()
    reward_values: RewardValues = RewardValues()
    """The training reward of a grader score (DAPO: `{correct: 1, incorrect: -1}`)."""
    overlong: Overlong = Overlong()
    optimizer: Optimizer = Optimizer()
    filter_solved: bool = False
    """Drop from later epochs the prompts solved on every rollout of the previous epoch (code stage 2)."""
    checkpoint_every: Annotated[int, Field(ge=1)] = 50
    """Write a resumable checkpoint every this many steps (and at the end)."""
    keep_checkpoints: Annotated[int, Field(ge=1)] = 2
    """How many resumable DeepSpeed checkpoints (`checkpoints/step-N/`: weights, optimiser and
    scheduler state, for resume only) a train job keeps: the newest this many; older ones are deleted
    when a new one is committed. It does not count the HF-format snapshots that `stages[].evaluate_every`
    asks for (`snapshots/step-N/model/`): bench jobs read those, so every one is kept."""
    health: Health = Health()


class VllmSettings(Model):
    tensor_parallel_size: Annotated[int, Field(ge=1)] = 1
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    """Fraction of GPU memory vLLM may take (colocated with the trainer)."""
    kv_cache_memory_bytes: Annotated[int, Field(ge=1 << 20)] | None = None
    """KV-cache size in bytes; required on CPU (default there: 256 MiB), where vLLM otherwise takes 90% of RAM."""
    enforce_eager: bool = False
    """Skip CUDA graphs / torch.compile (faster start, slower decode)."""
    max_num_seqs: Annotated[int, Field(ge=1)] = 256


class HfSettings(Model):
    batch_size: Annotated[int, Field(ge=1)] = 64
    """Sequences per `generate` call."""


class Rollout(Model):
    engine: Literal["vllm", "hf"] = "vllm"
    """Generation engine: vLLM (default wherever installed) or transformers `generate`."""
    temperature: Temperature = ConstantTemperature(value=0.6)
    """A number, `{kind: per_epoch, values: [...]}` or `{kind: entropy_target, target: 0.3, ...}`."""
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    top_k: Annotated[int, Field(ge=-1)] = -1
    """-1 disables top-k."""
    max_prompt_tokens: Annotated[int, Field(ge=1)] = 2048
    """Prompt budget in tokens (after the prompt template): a train stage drops longer prompts when it
    starts (counted in its done.json as `prompts_dropped_too_long`), a pass-rate filter drops them with
    the reason, and a benchmark refuses them (its numbers would not be comparable)."""
    stop: list[Annotated[str, Field(min_length=1)]] = []
    """Stop strings of the train stages' rollouts (Open-Reasoner-Zero: `["</answer>"]`): a response ends
    at the first one, which stays in the text the grader reads (so `<answer>...</answer>` stays whole);
    its tokens end with the token that completes it, `finish_reason` is `stop`. Benchmarks set their own
    (`benchmarks.<b>.sampling.stop`)."""
    vllm: VllmSettings = VllmSettings()
    hf: HfSettings = HfSettings()
    sleep_mode: bool | None = None
    """Free the train job's rollout engine while the trainer trains: after each step's generation
    vLLM's sleep mode (level 2) drops its weights and KV cache, and the engine wakes for the weight
    push (weights first, then the KV cache); the hf engine drops its copy of the weights the same way.
    The training phase then has the GPU memory the engine held (`rlspec plan`: "with sleep mode").
    null = on when the train job runs on GPUs. vLLM has no sleep mode on CPU: `check` refuses `true`
    for a CPU train job with the vLLM engine."""


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


class StageFilter(_PassRate):
    """A pass-rate filter run on the current policy before a stage (the paper's hard prompts)."""

    max: Fraction01 = 0.375
    """Keep prompts solved at most this often (AceReason: drop > 6/16 = 0.375)."""
    engine: InferenceEngine | None = None
    """Keys over `inference.filter` for this stage's filter job."""


class Stage(Model):
    name: Name
    """Unique stage name; used in job names, reports and grid paths (`stages[math-8k]...`)."""
    datasets: Annotated[list[Name], Field(min_length=1)]
    """Names from `datasets:`; prompts are mixed."""
    max_response_tokens: Annotated[int, Field(ge=1)]
    """Response length budget (AceReason: 8K -> 16K -> 24K for math, 24K -> 32K for code)."""
    steps: Annotated[int, Field(ge=1)] | None = None
    """Optimiser steps (one rollout batch each); exactly one of `steps` and `epochs`."""
    epochs: Annotated[int, Field(ge=1)] | None = None
    """Passes over the stage's prompts; exactly one of `steps` and `epochs`."""
    prompts_per_step: Annotated[int, Field(ge=1)] = 128
    """Prompts per rollout batch (AceReason: 128)."""
    group_size: GroupSize = ConstantGroupSize(value=8)
    """Responses per prompt: a number or `{kind: per_epoch, values: [8, 16]}`."""
    filter_before: StageFilter | None = None
    """Run a pass-rate filter with the policy entering this stage and train only on what it keeps."""
    dataset_weights: dict[Name, Annotated[float, Field(gt=0.0)]] | None = None
    """Mixing weights, one per dataset of the stage (Skywork-OR1): each step's prompts come from
    the datasets in these proportions (the running count of every dataset stays within one prompt of
    its share), each dataset drawn in its own seeded order that continues across its own epochs
    (`filter_solved` retires within each dataset). With weights an epoch of the stage is a number of
    prompts, the stage's prompt count: `epochs: 2` is 2 x ceil(prompts / prompts_per_step) steps,
    in which a heavily weighted dataset may repeat and a light one may not be seen whole. Not with
    `filter_before` (its output no longer says which dataset a prompt came from). null = the
    datasets' prompts pooled and shuffled together."""
    drop_prompts_above_accuracy: Fraction01 | None = None
    """POLARIS: before training, drop the prompts whose training accuracy so far (the grader's mean
    score over every rollout of them in the earlier stages of the run; each train job writes
    `prompt_stats.json`) is above this (POLARIS: 0.9). Prompts never trained on are kept; the count
    dropped is printed and in done.json. Not on the first stage (no earlier accuracy)."""
    evaluate: bool = True
    """Benchmark this stage's final checkpoint."""
    evaluate_every: Annotated[int, Field(ge=1)] | None = None
    """Also benchmark the stage every this many steps: the train job writes an HF-format snapshot
    (weights in `model.dtype` and the tokenizer, `snapshots/step-N/model/`) at steps N, 2N, ... below
    the stage's end and every benchmark gets one bench job per such step (the stage's end is
    evaluated as `evaluate` says). The bench jobs are in the workflow from the start, so the step count
    must be known when compiling: `steps`, or `epochs` with every dataset's `expected_size` (no
    `filter_before`, no `algorithm.filter_solved`). The report plots every benchmark against the step
    and names the best checkpoint; the snapshots are kept (`algorithm.keep_checkpoints` counts only the
    resumable ones), each a whole model on disk (a 7B model in bfloat16: about 15 GB), so the step
    count / N sets the stage's disk use. null = the stage's end only."""
    algorithm: Algorithm = Algorithm()
    """Overrides of the top-level `algorithm` for this stage (merged key by key)."""
    rollout: Rollout = Rollout()
    """Overrides of the top-level `rollout` for this stage (merged key by key)."""


# --------------------------------------------------------------------------------------------
# Benchmarks, grid, tracking, resources
# --------------------------------------------------------------------------------------------


class Sampling(Model):
    temperature: Annotated[float, Field(ge=0.0, le=5.0)] = 0.6
    """AceReason evaluation: 0.6."""
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    top_k: Annotated[int, Field(ge=-1)] = -1
    max_response_tokens: Annotated[int, Field(ge=1)] = 32768
    """AceReason evaluation: up to 32,768 tokens."""
    stop: list[Annotated[str, Field(min_length=1)]] = []
    """Stop strings: an answer ends at the first one, which stays in the graded text (as `rollout.stop`)."""


class DateWindow(Model):
    start: dt.date
    """First release date included (LiveCodeBench v5: 2024-08-01)."""
    end: dt.date
    """First release date excluded (v5: 2025-02-01; v6: 2025-05-01)."""


class Reference(Model):
    model: str
    """Who scored it, e.g. `AceReason-Nemotron-7B (paper)`."""
    value: float
    """The published value of the benchmark's first metric, in percent."""


Metric = Annotated[str, Field(pattern=r"^(avg@k|pass@\d+|maj@k)$")]


class Benchmark(Model):
    domain: Domain
    """As a dataset's `domain`: `math`, `code`, or a name of your own graded by `reward` (a benchmark
    of a dataset's domain is graded as that dataset is, and decontaminates it)."""
    source: Source
    k: Annotated[int, Field(ge=1, le=1024)] = 1
    """Samples per problem (AceReason: AIME avg@64, MATH500 avg@4, LiveCodeBench avg@8)."""
    metrics: Annotated[list[Metric], Field(min_length=1)] = ["avg@k"]
    """`avg@k` (mean accuracy over k samples), `pass@N` (unbiased estimator, N ≤ k), `maj@k` (math)."""
    sampling: Sampling = Sampling()
    date_window: DateWindow | None = None
    """Code benchmarks: keep problems released in [start, end)."""
    reference: list[Reference] = []
    """Published numbers shown as reference rows in the report (a list, so a spec that extends this one
    replaces it whole)."""
    reward: RewardTerms | None = None
    """As a dataset's `reward`; default: the built-in grader of `math` / `code`."""
    prompt: PromptOverride | None = None
    """As a dataset's `prompt`: keys written here replace `model.prompt`'s."""
    engine: InferenceEngine | None = None
    """Keys over `inference.bench` for this benchmark's bench jobs."""
    expected_size: Annotated[int, Field(ge=1)] | None = None
    """Problems the benchmark has (after `date_window`), for `rlspec plan`'s GPU-hour estimate of its bench
    jobs (problems x k x max response tokens); null: those jobs are listed as not estimated. Read by the
    plan only: it does not change a job."""


class GridAxis(Model):
    path: Annotated[str, Field(min_length=1)]
    """Dotted path into the spec: `stages[1].max_response_tokens`, `stages[math-24k].filter_before.max`,
    `algorithm.updates_per_batch`, `seed`."""
    values: Annotated[list[Any], Field(min_length=1)]
    """Values to try; each is validated against the field's type."""
    name: Name | None = None
    """Short label for reports and W&B tags (default: the last path part)."""


class Grid(Model):
    mode: Literal["product", "zip"] = "product"
    """`product`: every combination of axis values; `zip`: the i-th values of all axes together."""
    axes: Annotated[list[GridAxis], Field(min_length=1)]
    exclude: list[dict[str, Any]] = []
    """Cells to skip: each entry maps axis paths (or names) to values; a cell matching all of them is dropped."""


class Samples(Model):
    """Rollouts a person can read: a train job writes some of a step's responses to its
    `samples.jsonl` (and, with W&B on, to the run's `samples` table)."""

    every: Annotated[int, Field(ge=1)] | None = 10
    """Write samples at steps every, 2·every, ...; null writes none."""
    count: Annotated[int, Field(ge=1)] = 16
    """Responses written per such step: a seeded choice, the same for any rank split, that mixes the
    step's outcomes (correct, wrong, truncated, error) when it has several."""


class Tracking(Model):
    backend: Literal["wandb", "none"] = "wandb"
    project: str = "rlspec"
    """W&B project."""
    entity: str | None = None
    """W&B entity (team or user)."""
    mode: Literal["online", "offline", "disabled"] = "offline"
    """`offline` writes runs under `wandb/` for a later `wandb sync`; `online` needs a key and network."""
    group: Annotated[str, Field(min_length=1)] = "{name}"
    """W&B group of every run (train, bench, the report's summary): `{name}` is the spec name, so a
    grid is one group and its cells are told apart by tags and the run config. `{cell}` (the cell
    label; `shared` for a job several cells share, `summary` for the report's run) splits a grid
    into a group per cell, as before: a shared job then sits in one group only."""
    tags: list[str] = []
    """Extra tags; every run is also tagged with its job kind, the label of every grid cell that
    uses the job, and those cells' grid-axis values (`axis=value`)."""
    samples: Samples = Samples()
    """Rollout samples the train jobs write (to the job's results, whatever the backend)."""


class JobResources(Model):
    gpus: Annotated[int, Field(ge=0)] = 0
    """GPUs per node."""
    cpus: Annotated[int, Field(ge=1)] = 1
    """CPU cores (Snakemake threads)."""
    mem_gb: Annotated[float, Field(gt=0)] = 4
    """Host memory per node (Slurm `--mem`)."""
    gpu_mem_gb: Annotated[float, Field(gt=0)] = 80
    """Memory of one GPU; `rlspec check` refuses a GPU job whose estimated memory per GPU exceeds it."""
    time_min: Annotated[int, Field(ge=1)] = 60
    """Wall-clock limit in minutes (Slurm `--time`)."""
    nodes: Annotated[int, Field(ge=1)] = 1
    ranks_per_node: Annotated[int, Field(ge=1)] | None = None
    """Training ranks per node; default: the GPUs per node (at least 1)."""
    slurm_partition: str | None = None
    slurm_extra: str | None = None
    """Extra sbatch flags, passed as is."""


class DeepSpeedSettings(Model):
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    offload_params: bool = False
    """ZeRO-3 only."""
    timeout_minutes: Annotated[int, Field(ge=1, le=10080)] = 180
    """Process-group timeout: how long a rank waits inside a collective for the others. Rollout tails
    are long (one 32K-token sample at ~70 tokens/s is ~8 minutes), so the default is hours, not
    torch's 10 minutes; a rank past it fails the job with the collective named in the log."""


class Throughput(Model):
    """Declared speeds used by `rlspec plan` to estimate GPU-hours (measure them on your cluster)."""

    rollout_tokens_per_gpu_s: Annotated[float, Field(gt=0)] = 2500.0
    """Generated tokens per second per GPU."""
    train_tokens_per_gpu_s: Annotated[float, Field(gt=0)] = 8000.0
    """Trained (prompt + response) tokens per second per GPU."""
    mean_response_fraction: Fraction01 = 0.6
    """Mean response length as a fraction of the maximum (the plan's upper bound uses 1)."""


class Resources(Model):
    model: JobResources = JobResources(cpus=2, mem_gb=8, time_min=60)
    curate: JobResources = JobResources(cpus=2, mem_gb=8, time_min=60)
    filter: JobResources = JobResources(cpus=2, mem_gb=8, time_min=120)
    train: JobResources = JobResources(cpus=2, mem_gb=16, time_min=1440)
    bench: JobResources = JobResources(cpus=2, mem_gb=8, time_min=240)
    sample: JobResources = JobResources(cpus=2, mem_gb=8, time_min=240)
    """Curation's pass-rate sampling jobs (a pass-rate filter's own `resources` wins)."""
    report: JobResources = JobResources(cpus=1, mem_gb=2, time_min=30)
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    throughput: Throughput = Throughput()


class RewardSettings(Model):
    math_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """Per-answer limit for the math verifier; a stuck item is `timeout`, never silently wrong."""
    code_time_limit_s: Annotated[float, Field(gt=0)] = 6.0
    """Per-test limit when a problem gives none (the paper does not publish its limit)."""
    code_total_time_limit_s: Annotated[float, Field(gt=0)] = 60.0
    """Limit for all tests of one program."""
    code_memory_mb: Annotated[int, Field(ge=16)] = 1024
    """Memory limit for a program under test (all its processes, shared memory included)."""
    code_float_tolerance: Annotated[float, Field(ge=0.0)] | None = 1e-6
    """Floats in a program's output or return value match the expected ones within this absolute or
    relative tolerance (0.33000000000000007 == 0.33); null compares exactly."""


class Spec(Model):
    name: Name
    """Experiment name: build folder, W&B group, report title."""
    seed: int = 0
    """Seeds data order, sampling and initialisation; a grid axis over `seed` gives repeats."""
    description: str = ""
    model: ModelSpec
    datasets: Annotated[dict[Name, Dataset], Field(min_length=1)]
    algorithm: Algorithm = Algorithm()
    """Defaults for every stage."""
    rollout: Rollout = Rollout()
    """Defaults for every stage."""
    inference: InferenceEngines = InferenceEngines()
    """Engines of the benchmark, filter and pass-rate sampling jobs (the train stages use `rollout`)."""
    reward: RewardSettings = RewardSettings()
    stages: Annotated[list[Stage], Field(min_length=1)]
    """Trained in order; each starts from the previous stage's final checkpoint."""
    evaluate_initial: bool = True
    """Benchmark the starting model too, so reports show "before RL"."""
    benchmarks: dict[Name, Benchmark] = {}
    grid: Grid | None = None
    tracking: Tracking = Tracking()
    resources: Resources = Resources()


PassRateFilter.model_rebuild()
FromScratch.model_rebuild()
Warmup.model_rebuild()
