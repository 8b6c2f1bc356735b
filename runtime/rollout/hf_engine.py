"""The `hf` rollout engine: transformers `generate` with KV cache, left padding and batching.

What: an `Engine` over a private copy of a HF causal LM. It returns what the vLLM engine returns:
token ids, the log-probs of the sampled tokens under the sampling distribution, finish reasons.

Why: a fallback wherever vLLM is not installed or not supported, and a reference implementation
that the vLLM engine is checked against.

How: rows (prompt x sample) are sorted by prompt length (less padding), left-padded so they all end
at the same column, and generated `hf.batch_size` rows at a time. Sampling is done by our own
logits processor, `_Sampler`: it applies `process_logits` (the same function the trainer's
recomputation uses), draws each row's token with that row's own `torch.Generator` (seeded like
vLLM's: the prompt of global index g (`generate(..., indices=)`, else its position in the call)
gets `seed + g * n`, its sample j `seed + g * n + j`), so a sample does not depend on which other
rows share its batch, how the call was ordered, how a train step's prompts were split over ranks,
or which inference replica sampled it (up to float noise: padding changes the logits at the
1e-7 level, which moves a draw only when it lands that close to a boundary), records the processed log-prob, and
hands `generate` a score row that is -inf everywhere but the drawn token, so `generate`'s greedy
step picks exactly that token. This gives processed log-probs without storing per-step scores
(memory O(rows x vocab), not O(rows x vocab x steps)) and keeps sampling off the global RNG.
`_StopTracker` ends rows on stop ids / stop strings and remembers when and why each row ended.
"""

from __future__ import annotations

import time

import torch

from rlspec.compiler.jobs import EngineSettings

from .base import Engine, RawSample, SamplingParams, named_tensor_iter
from .logprobs import process_logits

# "auto": the dtype saved in the model's config, as vLLM reads it
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


class _Sampler:
    """Logits processor: draw each row's next token ourselves and force `generate` to take it."""

    def __init__(self, sampling: SamplingParams, generators: list[torch.Generator]):
        self.sampling = sampling
        self.generators = generators  # one per row: a row's draws never depend on the others
        self.logprobs: list[torch.Tensor] = []  # one (rows,) tensor per step

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        s = self.sampling
        logp = process_logits(scores, s.temperature, s.top_k, s.top_p)
        if s.greedy:
            token = logp.argmax(dim=-1)
        else:
            probs = logp.exp()
            token = torch.cat([torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(self.generators)])
        self.logprobs.append(logp.gather(-1, token[:, None]).squeeze(-1))
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(-1, token[:, None], 0.0)


class _StopTracker:
    """Stopping criterion that records, per row, how many tokens it generated before stopping.

    A row stops on a stop id, or at the token after which the decoded text of its last `tail` tokens
    (enough to hold the longest stop string, whichever tokens it spans) first contains a stop
    string, as vLLM's detokenizer checks; that token is kept (`Sample` says what the text keeps)."""

    def __init__(self, rows: int, prompt_width: int, stop_ids: list[int], stop: tuple[str, ...], tokenizer):
        self.prompt_width = prompt_width
        self.stop_ids = torch.tensor(stop_ids, dtype=torch.long)
        self.stop = stop
        self.tokenizer = tokenizer
        # tokens to decode to see a stop string: each token is at least one byte
        self.tail = max((len(x.encode()) for x in stop), default=0) + 1
        self.length = torch.full((rows,), -1, dtype=torch.long)  # -1: still running

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_width
        hit = torch.isin(input_ids[:, -1].cpu(), self.stop_ids)
        if self.stop:
            hit |= self._stop_string_hits(input_ids, step)
        newly = hit & (self.length < 0)
        self.length[newly] = step
        return (self.length >= 0).to(input_ids.device)

    def _stop_string_hits(self, input_ids: torch.Tensor, step: int) -> torch.Tensor:
        hits = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        window = input_ids[:, -min(self.tail, step):].tolist()
        for row in (self.length < 0).nonzero().flatten().tolist():
            text = self.tokenizer.decode(window[row])
            hits[row] = any(s in text for s in self.stop)
        return hits


class HfEngine(Engine):
    """Rollouts with transformers on a private model copy (see module docstring)."""

    name = "hf"

    def __init__(self, model_path, *, dtype: str, seed: int, max_model_len: int, settings: EngineSettings):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
        super().__init__(model_path, tokenizer, settings, max_model_len)
        refuse_vllm_only(settings)
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: the hf engine supports {sorted(DTYPES)}")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=DTYPES[dtype]).to(device).eval()
        # EOS ids as vLLM takes them: the tokenizer's plus the generation config's (often a list)
        self.eos_ids = {tokenizer.eos_token_id, *_as_list(self.model.generation_config.eos_token_id)} - {None}
        # `generate` fills unset options from the model's generation config, so an EOS there would
        # stop rows behind `_StopTracker`'s back (and ignore `ignore_eos`); this copy is ours alone.
        self.model.generation_config.eos_token_id = None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def stop_ids(self, sampling: SamplingParams) -> list[int]:
        """Ids that end a sample: EOS (unless ignored) plus the call's explicit stop ids."""
        return sorted((set() if sampling.ignore_eos else self.eos_ids) | set(sampling.stop_token_ids))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _generate(self, prompt_ids: list[list[int]], sampling: SamplingParams,
                  indices: list[int]) -> list[list[RawSample]]:
        # an unseeded call takes its base seed from the engine's own stream
        seed = sampling.seed if sampling.seed is not None else int(
            torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        n = sampling.n
        rows = [p for p in prompt_ids for _ in range(n)]  # row r = prompt r // n, sample r % n
        row_seeds = [seed + g * n + j for g in indices for j in range(n)]
        # longest first, so each batch pads to similar lengths; `order` maps results back
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        results: list[RawSample | None] = [None] * len(rows)
        size = self.settings.hf.batch_size
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            generators = [torch.Generator(device=self.device).manual_seed(row_seeds[i]) for i in batch]
            for i, sample in zip(batch, self._generate_batch([rows[i] for i in batch], sampling, generators)):
                results[i] = sample
        return [results[i * n : (i + 1) * n] for i in range(len(prompt_ids))]

    @torch.inference_mode()
    def _generate_batch(self, rows: list[list[int]], sampling: SamplingParams,
                        generators: list[torch.Generator]) -> list[RawSample]:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        input_ids, mask = self._left_pad(rows)
        sampler = _Sampler(sampling, generators)
        tracker = _StopTracker(len(rows), input_ids.shape[1], self.stop_ids(sampling), sampling.stop,
                               self.tokenizer)
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens, do_sample=False, num_beams=1, use_cache=True,
            pad_token_id=self.pad_id,  # no eos_token_id: stopping is `tracker`'s job
        )
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                  logits_processor=LogitsProcessorList([sampler]),
                                  stopping_criteria=StoppingCriteriaList([tracker]))
        tokens = out[:, input_ids.shape[1] :].cpu()
        logprobs = torch.stack(sampler.logprobs, dim=1).cpu()
        return [self._raw_sample(tokens[r], logprobs[r], int(tracker.length[r])) for r in range(len(rows))]

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _raw_sample(tokens: torch.Tensor, logprobs: torch.Tensor, stopped_at: int) -> RawSample:
        length = stopped_at if stopped_at >= 0 else tokens.shape[0]
        return RawSample(tokens[:length].tolist(), logprobs[:length].tolist(), "stop" if stopped_at >= 0 else "length")

    def push_weights(self, named_tensors) -> dict:
        """Copy new weights into the engine's model, one tensor at a time as they arrive (a subset
        is fine; unknown names are an error)."""
        self._check_pushable()
        start = time.perf_counter()
        own = self.model.state_dict()  # views of the model's storage (tied weights share one)
        names: set[str] = set()
        with torch.no_grad():
            for name, tensor in named_tensor_iter(named_tensors):
                if name not in own:
                    raise KeyError(f"push_weights: a name the model does not have: {name!r}")
                own[name].copy_(tensor)
                names.add(name)
        self._pushed(names, {n for n, _ in self.model.named_parameters()})
        return {"tensors": len(names), "seconds": time.perf_counter() - start}

    def _sleep(self) -> None:
        """Sleep mode: every parameter's storage is released (an empty tensor of its dtype and device
        in its place); buffers (rotary tables) stay. The shapes are kept for `_wake`."""
        self._shapes = {}
        for name, p in self.model.named_parameters():
            self._shapes[name] = p.shape
            p.data = torch.empty(0, dtype=p.dtype, device=p.device)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _wake(self, tags: list[str]) -> None:
        if "weights" in tags:  # uninitialised storage: the push that follows writes every value
            for name, p in self.model.named_parameters():
                p.data = torch.empty(self._shapes[name], dtype=p.dtype, device=p.device)
        # "kv_cache": generate allocates its cache per call, so there is nothing to bring back

    def placement(self) -> dict:
        return {"device": str(next(self.model.parameters()).device)}

    def close(self) -> None:
        self.model = None


def refuse_vllm_only(settings: EngineSettings) -> None:
    """The hf engine runs a whole model on one device: refuse the vLLM-only knobs an inference block
    may set rather than silently ignore them."""
    v = settings.vllm
    problems = []
    if v.pipeline_parallel_size != 1:
        problems.append(f"pipeline_parallel_size={v.pipeline_parallel_size} (the hf engine has no pipeline parallelism)")
    if v.quantization is not None:
        problems.append(f"quantization={v.quantization!r} (the hf engine loads the weights as saved)")
    if problems:
        raise ValueError("engine hf cannot run " + "; ".join(problems) + ": set engine: vllm in the inference "
                         "block, or pipeline_parallel_size: 1 and quantization: null")


def _as_list(ids) -> list:
    return [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
