"""Helpers shared by the rollout tests and the isolation subprocess (a plain module, so that a
fresh interpreter can import it too; fixtures live in conftest.py)."""

from __future__ import annotations

import torch

from rlspec.compiler.jobs import EngineSettings
from rlspec.runtime.rollout import SamplingParams, make_engine

MAX_MODEL_LEN = 512
SEED = 0


def rollout_settings(engine: str, **overrides) -> dict:
    """A job's `inference.rollout` block (EngineSettings) as JSON data, as the compiler writes it."""
    settings = {
        "engine": engine, "max_prompt_tokens": 300,
        "vllm": {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.5,
                 "kv_cache_memory_bytes": 64 << 20, "enforce_eager": True, "max_num_seqs": 64,
                 "pipeline_parallel_size": 1, "quantization": None},
        "hf": {"batch_size": 8},
    }
    settings.update(overrides)
    return settings


def build_engine(model_dir, engine: str, **overrides):
    settings = EngineSettings.model_validate(rollout_settings(engine, **overrides))
    return make_engine(model_dir, settings, dtype="float32", seed=SEED, max_model_len=MAX_MODEL_LEN)


def sampling(**fields) -> SamplingParams:
    """SamplingParams with the tests' usual values for the fields a test does not set."""
    return SamplingParams(**{"n": 1, "temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_tokens": 256, **fields})


def perturb(model, scale: float, seed: int) -> None:
    """Add seeded Gaussian noise to every weight, as an optimiser step would (but bigger)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


@torch.no_grad()
def reference_greedy(model, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation by full forward passes, no `generate` and no KV cache: the plainest
    possible transformers reference."""
    ids = list(prompt)
    for _ in range(max_new_tokens):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        ids.append(int(logits.argmax()))
    return ids[len(prompt):]
