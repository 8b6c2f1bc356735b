"""The rollout interface every engine implements: settings, sampling, samples, timing.

What: the engine-neutral half of rollouts. The engine's settings are the job's typed
`EngineSettings` (`rlspec.compiler.jobs`: the spec's `rollout` block less its sampling knobs);
`SamplingParams` is one call's sampling settings, `Sample` one generated answer, `Generations` the
answers of one call plus its timing, and `Engine` the base class that turns prompts into token ids,
checks lengths, times the call and decodes texts, leaving only the model-specific step to `vllm`
and `hf`.

Why: training, curation's `pass_rate` filter and benchmarks all ask the same question (n answers
per prompt, with the log-probs the sampler really used), and must not care which engine answers.
Everything both engines share lives here once, so the two cannot drift apart.

How: `make_engine(...)` (in `__init__`) builds an engine; then
    out = engine.generate(prompts, SamplingParams(n=8, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=8192))
    out[i][j].token_ids, .logprobs, .finish_reason, .text;  out.timing.tokens_per_s
A seeded call seeds each prompt by its global index (`generate(..., indices=)`, default its position),
so inference replicas (`replicas.py`) that sample shards of one prompt list give the samples one engine would.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rlspec.compiler.jobs import EngineSettings

FinishReason = Literal["stop", "length"]


# ---------------------------------------------------------------------------------------------
# One call: sampling settings in, samples and timing out.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one `generate` call. temperature 0 means greedy; every caller says all of
    n, temperature, top_p, top_k and max_tokens (from its job config), so nothing is defaulted here.

    `seed=None` draws from the engine's own random stream (seeded once at construction), so two
    calls give different samples; an int makes the call reproducible on its own.
    `ignore_eos` keeps generating past EOS (benchmarks use it to fix the lengths).
    `stop` strings end a sample at the first one generated (see `Sample` for what is kept).
    """

    n: int
    temperature: float
    top_p: float
    top_k: int  # -1 = off
    max_tokens: int
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
            raise ValueError("SamplingParams: " + "; ".join(problems))
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
    decoded ids without special tokens.

    A stop string ends the sample at the token where the decoded response first contains it:
    `finish_reason` is "stop", the stop string stays in `text` (a grader of `<answer>...</answer>`
    needs the closing tag), and `token_ids` / `logprobs` end with the token that completed it, so the
    trainer learns from exactly the tokens that produced the text. That last token may carry a few
    characters past the stop string; `text` ends at the stop string (vLLM's
    `include_stop_str_in_output` text), so it is the decoded ids cut after the stop string."""

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


class Generations(list):
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

    def __init__(self, model_path: str, tokenizer, settings: EngineSettings, max_model_len: int):
        self.model_path = str(model_path)
        self.tokenizer = tokenizer
        self.settings = settings
        self.max_model_len = max_model_len
        self.asleep: set[str] = set()  # what `sleep` freed and `wake_up` has not brought back
        self.weights_stale = False  # woken weights hold no values until a push sends every one

    # ---------------------------------------------------------------------------- sleep mode

    def sleep(self) -> None:
        """Free the engine's weights and KV cache (`rollout.sleep_mode`, between a step's generation
        and its weight push). The weights are discarded, not saved: after `wake_up(["weights"])` the
        next `push_weights` must send every one of them, and nothing may generate before it has."""
        if self.asleep:
            raise RuntimeError(f"{self.name} engine: sleep() while already asleep ({sorted(self.asleep)})")
        self._sleep()
        self.asleep = {"weights", "kv_cache"}

    def wake_up(self, tags: Sequence[str]) -> None:
        """Reallocate what `tags` ("weights", "kv_cache") name: the weights first (then push them),
        the KV cache after the push, so the two never need their memory at once."""
        unknown = set(tags) - {"weights", "kv_cache"}
        if unknown:
            raise ValueError(f"wake_up: unknown tags {sorted(unknown)}")
        tags = [t for t in ("weights", "kv_cache") if t in tags and t in self.asleep]
        if tags:
            self._wake(tags)
        self.asleep -= set(tags)
        if "weights" in tags:
            self.weights_stale = True

    def _sleep(self) -> None:
        raise NotImplementedError(f"the {self.name} engine has no sleep mode")

    def _wake(self, tags: list[str]) -> None:
        raise NotImplementedError(f"the {self.name} engine has no sleep mode")

    def _check_pushable(self) -> None:
        if "weights" in self.asleep:
            raise RuntimeError(f"{self.name} engine: push_weights while its weights are asleep; wake_up(['weights']) first")

    def _pushed(self, names: set[str], expected: set[str] | None) -> None:
        """After a push: woken weights are valid once every one was sent (`expected`: the engine's own
        parameter names, None where the engine cannot list them)."""
        if self.weights_stale and expected is not None and not expected <= names:
            missing = sorted(expected - names)
            raise RuntimeError(f"{self.name} engine: the push after wake_up left {len(missing)} woken weights without "
                               f"values ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
        self.weights_stale = False

    def encode(self, prompts: Sequence[str | Sequence[int]], max_tokens: int,
               indices: Sequence[int] | None = None) -> list[list[int]]:
        """Token ids of every prompt (strings are tokenised as-is: templates were applied upstream);
        refuses prompts the spec's limits cannot hold rather than silently truncating them (named by
        `indices`, their global indices, when given)."""
        ids = [self._encode_one(p) for p in prompts]
        check_lengths(ids, self.settings, self.max_model_len, max_tokens, indices)
        return ids

    def _encode_one(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return [int(t) for t in prompt]

    def generate(self, prompts: Sequence[str | Sequence[int]], sampling: SamplingParams,
                 indices: Sequence[int] | None = None) -> Generations:
        """n samples for every prompt, in prompt order, with the call's timing.

        `indices`: the global index of each prompt (its place in the whole job's prompt list), so a
        seeded call gives prompt g the seed `seed + g * n` and its sample j `seed + g * n + j`: a
        prompt's samples then do not depend on which call, shard or replica it was in. None = the
        prompts' positions in this call (0, 1, ...)."""
        if self.asleep or self.weights_stale:
            what = sorted(self.asleep) if self.asleep else "woken weights not pushed yet"
            raise RuntimeError(f"{self.name} engine: generate while asleep ({what}): wake_up(['weights']), "
                               "push_weights, then wake_up(['kv_cache'])")
        start = time.perf_counter()
        indices = list(range(len(prompts))) if indices is None else [int(g) for g in indices]
        if len(indices) != len(prompts):
            raise ValueError(f"generate: {len(prompts)} prompts but {len(indices)} indices")
        ids = self.encode(prompts, sampling.max_tokens, indices)
        raw = self._generate(ids, sampling, indices)
        texts = self.tokenizer.batch_decode([s.token_ids for g in raw for s in g], skip_special_tokens=True)
        text_iter = iter(cut_after_stop(t, sampling.stop) for t in texts)
        groups = [[Sample(s.token_ids, s.logprobs, s.finish_reason, next(text_iter)) for s in g] for g in raw]
        timing = Timing(
            prompt_tokens=sum(len(p) for p in ids) * sampling.n,
            generated_tokens=sum(len(s.token_ids) for g in raw for s in g),
            seconds=time.perf_counter() - start,
        )
        return Generations(groups, timing)

    @abc.abstractmethod
    def _generate(self, prompt_ids: list[list[int]], sampling: SamplingParams,
                  indices: list[int]) -> list[list[RawSample]]:
        """Model-specific generation: one list of `sampling.n` raw samples per prompt; a seeded call
        seeds prompt `indices[i]`'s sample j with `sampling.seed + indices[i] * n + j`."""

    @abc.abstractmethod
    def push_weights(self, named_tensors) -> dict:
        """Load new weights in place (HF parameter names; a subset is fine, an unknown name is an
        error). `named_tensors` is a state dict or any iterable of (name, tensor) pairs, consumed
        once and lazily where the engine can (the trainer's ZeRO-3 sync gathers as it is read);
        returns {"tensors", "seconds"}."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free the engine's memory; the engine is unusable afterwards."""

    @abc.abstractmethod
    def placement(self) -> dict:
        """Where the engine runs: at least `device` ("cpu", "cuda:3"), as the engine itself reports it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prompt_limit(settings: EngineSettings, max_model_len: int, max_tokens: int) -> int:
    """The longest prompt an engine takes: the spec's prompt budget, and room for `max_tokens`."""
    return min(settings.max_prompt_tokens, max_model_len - max_tokens)


def check_lengths(ids: Sequence[Sequence[int]], settings: EngineSettings, max_model_len: int, max_tokens: int,
                  indices: Sequence[int] | None = None) -> None:
    """Refuse prompts longer than `prompt_limit` or empty (ValueError naming them by global index)."""
    limit = prompt_limit(settings, max_model_len, max_tokens)
    where = list(range(len(ids))) if indices is None else list(indices)
    too_long = [(g, len(p)) for g, p in zip(where, ids) if len(p) > limit]
    if too_long:
        raise ValueError(
            f"{len(too_long)} prompt(s) longer than {limit} tokens (index, length: {too_long[:5]}); "
            f"the limit is min(rollout.max_prompt_tokens={settings.max_prompt_tokens}, "
            f"max_model_len={max_model_len} - max_tokens={max_tokens}). Filter long prompts "
            f"in curation or raise those limits"
        )
    if any(len(p) == 0 for p in ids):
        raise ValueError("empty prompt: every prompt needs at least one token")


def cut_after_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to and including its first stop string (the one that starts first), else unchanged."""
    found = [(i, len(s)) for s in stop if (i := text.find(s)) >= 0]
    if not found:
        return text
    start, length = min(found)
    return text[: start + length]


def named_tensor_iter(named_tensors) -> Iterator[tuple[str, object]]:
    """The same pairs, one at a time: a lazy iterable (ZeRO-3's bucketed gather) stays lazy, so
    the caller never holds more than the bucket it is gathering."""
    items = named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors
    for name, tensor in items:
        yield name, tensor.detach()
