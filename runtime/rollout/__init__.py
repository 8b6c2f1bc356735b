"""Rollout engines: n sampled answers per prompt with the log-probs the sampler used.

What: `make_engine` builds the engine the spec's `rollout.engine` names: `vllm` (vLLM's offline
`LLM`, in the trainer's process, weights synced in place) or `hf` (transformers `generate`).
Both return `Rollout` = `list[list[Sample]]` plus timing, and take new weights via `push_weights`.
`token_logprobs` and `logprob_mismatch` let the trainer check the engine's log-probs every step.

Why: training, curation (`pass_rate`) and benchmarks need one way to sample that does not care
which engine runs; see `base.py` for the contract and the engine modules for how each meets it.

How:
    engine = make_engine(model_dir, engine="vllm", dtype="float32", seed=0, max_model_len=4096,
                         settings=job["rollout"])
    rollout = engine.generate(prompts, engine.make_sampling(n=8, temperature=1.0, max_tokens=2048))
    engine.push_weights(policy.state_dict())   # after every optimiser step
    engine.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .base import Engine, RolloutSettings, Rollout, Sample, Sampling, Timing
from .logprobs import logprob_mismatch, process_logits, token_logprobs

__all__ = [
    "Engine", "Rollout", "RolloutSettings", "Sample", "Sampling", "Timing",
    "logprob_mismatch", "make_engine", "process_logits", "token_logprobs",
]


def make_engine(model_path: str | Path, *, engine: str, dtype: str, seed: int, max_model_len: int,
                settings: Mapping | RolloutSettings) -> Engine:
    """Build the named engine over the HF model folder `model_path` (imports vLLM only if asked)."""
    if not isinstance(settings, RolloutSettings):
        settings = RolloutSettings.from_dict({"engine": engine, **settings})
    if settings.engine != engine:
        raise ValueError(f"engine={engine!r} but rollout.engine={settings.engine!r}: they must agree")
    if engine == "vllm":
        from .vllm_engine import VllmEngine as cls
    else:
        from .hf_engine import HfEngine as cls
    return cls(str(model_path), dtype=dtype, seed=seed, max_model_len=max_model_len, settings=settings)
