"""The rollout interface every engine implements: settings, sampling, samples, timing.

What: the engine-neutral half of rollouts. `RolloutSettings` is the spec's resolved `rollout` block,
`Sampling` one call's sampling settings, `Sample` one generated answer, `Rollout` the answers of one
call plus its timing, and `Engine` the base class that turns prompts into token ids, checks lengths,
times the call and decodes texts, leaving only the model-specific step to `vllm` and `hf`.

Why: training, curation's `pass_rate` filter and benchmarks all ask the same question (n answers
per prompt, with the log-probs the sampler really used), and must not care which engine answers.
Everything both engines share lives here once, so the two cannot drift apart.

How: `make_engine(...)` (in `__init__`) builds an engine; then
    rollout = engine.generate(prompts, engine.make_sampling(n=8, temperature=1.0, max_tokens=8192))
    rollout[i][j].token_ids, .logprobs, .finish_reason, .text;  rollout.timing.tokens_per_s
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

FinishReason = Literal["stop", "length"]
EngineName = Literal["vllm", "hf"]
ENGINES: tuple[str, ...] = ("vllm", "hf")


# ---------------------------------------------------------------------------------------------
# Settings: the spec's `rollout` block, resolved by the compiler into a plain dict.
# ---------------------------------------------------------------------------------------------


def _from_mapping(cls, data: Mapping, where: str):
    """Build frozen dataclass `cls` from `data`, naming every unknown or missing key at once."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    missing = sorted(names - set(data))
    if unknown or missing:
        raise ValueError(
            f"{where}: unknown keys {unknown}, missing keys {missing}; the compiler resolves every "
            f"key of this block, so expected exactly {sorted(names)}"
        )
    return cls(**data)


@dataclass(frozen=True)
class VllmSettings:
    """vLLM engine knobs (spec: `rollout.vllm`)."""

    tensor_parallel_size: int
    gpu_memory_utilization: float
    kv_cache_memory_bytes: int | None  # on CPU it must be set: vLLM's default takes ~90% of RAM
    enforce_eager: bool
    max_num_seqs: int


@dataclass(frozen=True)
class HfSettings:
    """transformers engine knobs (spec: `rollout.hf`)."""

    batch_size: int  # rows (prompt x sample) per `generate` call


@dataclass(frozen=True)
class RolloutSettings:
    """The resolved `rollout` block; `top_p`/`top_k` are the defaults `make_sampling` fills in."""

    engine: EngineName
    top_p: float
    top_k: int  # -1 = off
    max_prompt_tokens: int
    vllm: VllmSettings
    hf: HfSettings

    @classmethod
    def from_dict(cls, data: Mapping) -> RolloutSettings:
        data = dict(data)
        data["vllm"] = _from_mapping(VllmSettings, data.get("vllm", {}), "rollout.vllm")
        data["hf"] = _from_mapping(HfSettings, data.get("hf", {}), "rollout.hf")
        settings = _from_mapping(cls, data, "rollout")
        if settings.engine not in ENGINES:
            raise ValueError(f"rollout.engine: {settings.engine!r} is not one of {list(ENGINES)}")
        return settings


# ---------------------------------------------------------------------------------------------
# One call: sampling settings in, samples and timing out.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How to sample one `generate` call. temperature 0 means greedy.

    `seed=None` draws from the engine's own random stream (seeded once at construction), so two
    calls give different samples; an int makes the call reproducible on its own.
    `ignore_eos` keeps generating past EOS (benchmarks use it to fix the lengths).
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 = off
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.n < 1:
            problems.append(f"n={self.n}: need at least one sample per prompt")
        if self.temperature < 0:
            problems.append(f"temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p={self.top_p}: must be in (0, 1]")
        if self.top_k == 0 or self.top_k < -1:
            problems.append(f"top_k={self.top_k}: must be -1 (off) or >= 1")
        if self.max_tokens < 1:
            problems.append(f"max_tokens={self.max_tokens}: must be >= 1")
        if problems:
            raise ValueError("Sampling: " + "; ".join(problems))
        # tuples keep the dataclass hashable even when lists were passed
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Sample:
    """One generated answer. `logprobs[i]` is log p(token_ids[i]) under the *sampling*
    distribution (after temperature, top-k and top-p; at temperature 0, the model's untempered
    distribution). A stop token, if any, is the last id and has its log-prob; `text` is the
    decoded ids without special tokens."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    text: str


@dataclass(frozen=True)
class Timing:
    """Cost of one `generate` call, end to end (tokenise, generate, decode)."""

    prompt_tokens: int
    generated_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


class Rollout(list):
    """`list[list[Sample]]` (one inner list of n samples per prompt, in prompt order) that also
    carries the call's `timing`."""

    def __init__(self, groups: Iterable[list[Sample]], timing: Timing):
        super().__init__(groups)
        self.timing = timing


@dataclass(frozen=True)
class RawSample:
    """What an engine's model-specific step returns; the base class adds the text."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason


# ---------------------------------------------------------------------------------------------
# Engine base class.
# ---------------------------------------------------------------------------------------------


class Engine(abc.ABC):
    """Shared behaviour of all engines; subclasses implement `_generate`, `push_weights`, `close`."""

    name: str = ""

    def __init__(self, model_path: str, tokenizer, settings: RolloutSettings, max_model_len: int):
        self.model_path = str(model_path)
        self.tokenizer = tokenizer
        self.settings = settings
        self.max_model_len = max_model_len

    def make_sampling(self, *, n: int, temperature: float, max_tokens: int, **overrides) -> Sampling:
        """A `Sampling` with the spec's top-p / top-k filled in (overrides win)."""
        base = Sampling(n=n, temperature=temperature, max_tokens=max_tokens,
                        top_p=self.settings.top_p, top_k=self.settings.top_k)
        return replace(base, **overrides)

    def encode(self, prompts: Sequence[str | Sequence[int]], max_tokens: int) -> list[list[int]]:
        """Token ids of every prompt (strings are tokenised as-is: templates were applied upstream);
        refuses prompts the spec's limits cannot hold rather than silently truncating them."""
        ids = [self._encode_one(p) for p in prompts]
        limit = min(self.settings.max_prompt_tokens, self.max_model_len - max_tokens)
        too_long = [(i, len(p)) for i, p in enumerate(ids) if len(p) > limit]
        if too_long:
            raise ValueError(
                f"{len(too_long)} prompt(s) longer than {limit} tokens (index, length: {too_long[:5]}); "
                f"the limit is min(rollout.max_prompt_tokens={self.settings.max_prompt_tokens}, "
                f"max_model_len={self.max_model_len} - max_tokens={max_tokens}). Filter long prompts "
                f"in curation or raise those limits"
            )
        if any(len(p) == 0 for p in ids):
            raise ValueError("empty prompt: every prompt needs at least one token")
        return ids

    def _encode_one(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return [int(t) for t in prompt]

    def generate(self, prompts: Sequence[str | Sequence[int]], sampling: Sampling) -> Rollout:
        """n samples for every prompt, in prompt order, with the call's timing."""
        start = time.perf_counter()
        ids = self.encode(prompts, sampling.max_tokens)
        raw = self._generate(ids, sampling)
        texts = self.tokenizer.batch_decode([s.token_ids for g in raw for s in g], skip_special_tokens=True)
        text_iter = iter(texts)
        groups = [[Sample(s.token_ids, s.logprobs, s.finish_reason, next(text_iter)) for s in g] for g in raw]
        timing = Timing(
            prompt_tokens=sum(len(p) for p in ids) * sampling.n,
            generated_tokens=sum(len(s.token_ids) for g in raw for s in g),
            seconds=time.perf_counter() - start,
        )
        return Rollout(groups, timing)

    @abc.abstractmethod
    def _generate(self, prompt_ids: list[list[int]], sampling: Sampling) -> list[list[RawSample]]:
        """Model-specific generation: one list of `sampling.n` raw samples per prompt."""

    @abc.abstractmethod
    def push_weights(self, named_tensors) -> dict:
        """Load new weights in place (HF parameter names); returns {"tensors", "seconds"}."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free the engine's memory; the engine is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def named_tensor_list(named_tensors) -> list[tuple[str, object]]:
    """Accept a state dict or any iterable of (name, tensor) pairs; return a list of pairs."""
    items = named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors
    return [(name, tensor.detach()) for name, tensor in items]
