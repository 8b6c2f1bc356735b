"""Rollout engines: n sampled answers per prompt with the log-probs the sampler used.

What: `make_engine` builds the engine the spec's `rollout.engine` names: `vllm` (vLLM's offline
`LLM`, in the trainer's process, weights synced in place) or `hf` (transformers `generate`).
Both return `Generations` = `list[list[Sample]]` plus timing, and take new weights via `push_weights`.
`token_logprobs` and `logprob_mismatch` let the trainer check the engine's log-probs every step.

Why: training, curation (`pass_rate`) and benchmarks need one way to sample that does not care
which engine runs; see `base.py` for the contract and the engine modules for how each meets it.

How:
    engine = make_engine(model_dir, job.config.inference.rollout, dtype="float32", seed=0, max_model_len=4096)
    out = engine.generate(prompts, SamplingParams(n=8, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=2048))
    engine.push_weights(policy.state_dict())   # after every optimiser step
    engine.close()
"""

from __future__ import annotations

from pathlib import Path

from rlspec.compiler.jobs import EngineSettings

from .base import Engine, Generations, Sample, SamplingParams, Timing
from .logprobs import logprob_mismatch, process_logits, token_logprobs

__all__ = [
    "Engine", "EngineSettings", "Generations", "Sample", "SamplingParams", "Timing",
    "logprob_mismatch", "make_engine", "process_logits", "token_logprobs",
]


def make_engine(model_path: str | Path, settings: EngineSettings, *, dtype: str, seed: int,
                max_model_len: int, train_world: tuple[int, int] | None = None, sleep_mode: bool = False) -> Engine:
    """Build the engine `settings.engine` names over the HF model folder `model_path` (imports vLLM
    only if asked). `train_world` = (ranks, tensor parallel size): a vLLM engine colocated with a
    training world of more than one rank joins it (vLLM's external launcher, `vllm_engine.TrainWorld`);
    the transformers engine runs on the rank's own device anyway. `sleep_mode`: vLLM allocates so that
    `sleep` can free it (the hf engine can always sleep)."""
    if settings.engine == "vllm":
        from .vllm_engine import TrainWorld, VllmEngine
        world = TrainWorld(*train_world) if train_world is not None else None
        return VllmEngine(str(model_path), dtype=dtype, seed=seed, max_model_len=max_model_len, settings=settings,
                          train_world=world, sleep_mode=sleep_mode)
    from .hf_engine import HfEngine
    return HfEngine(str(model_path), dtype=dtype, seed=seed, max_model_len=max_model_len, settings=settings)
