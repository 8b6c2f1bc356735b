"""Pushing the policy's new weights into the rollout engine after every optimiser step.

What: `push_weights(policy, engine, zero3=..., bucket_bytes=...)` sends every parameter (HF names)
to `engine.push_weights`, and returns what it sent: tensors, buckets and the largest bucket's
bytes. ZeRO 0-2: every rank holds the full 16/32-bit parameters, which go out as they are, as views
(no copy). ZeRO-3: parameters are partitioned over the ranks, so they are gathered in buckets of
at most `bucket_bytes` (or one parameter, if a single one is larger), each copied out and released
before the next is gathered; the engine reads them lazily, in one reload.

Why: gathering and cloning the whole model at once put a second full copy on every GPU (+15 GB for
a 7B model in bf16, +30 GB counting the clone) just to hand it to vLLM, which copies it into its
own storage anyway (issue 13). With buckets the extra memory is bounded by `bucket_bytes` plus
the largest parameter (the embedding), which `compiler/memory.py` counts in `zero_buffers`.

How: `deepspeed.zero.GatheredParameters(bucket, modifier_rank=None)` is collective: every rank
gathers the same buckets in the same order (names come from the same module tree), so the ranks
never disagree on the calls. Tied parameters (embeddings = output layer) appear once
(`named_parameters` deduplicates them); both engines tie them the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from rlspec.compiler.memory import WEIGHT_SYNC_BUCKET as DEFAULT_BUCKET_BYTES  # the plan counts the same bucket


def _bytes(p: torch.Tensor) -> int:
    numel = getattr(p, "ds_numel", None)  # ZeRO-3: the full size; `numel()` is the local partition
    return (numel if numel is not None else p.numel()) * p.element_size()


def buckets(named: list[tuple[str, torch.Tensor]], bucket_bytes: int) -> list[list[tuple[str, torch.Tensor]]]:
    """Consecutive runs of parameters of at most `bucket_bytes` (a larger parameter alone)."""
    out: list[list[tuple[str, torch.Tensor]]] = []
    size = 0
    for name, p in named:
        n = _bytes(p)
        if not out or size + n > bucket_bytes:
            out.append([])
            size = 0
        out[-1].append((name, p))
        size += n
    return out


def push_weights(policy: torch.nn.Module, engine: Any, *, zero3: bool,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> dict[str, int]:
    named = list(policy.named_parameters())
    if not zero3:
        engine.push_weights((name, p.detach()) for name, p in named)
        return {"tensors": len(named), "buckets": 1, "max_bucket_bytes": sum(_bytes(p) for _, p in named)}
    parts = buckets(named, bucket_bytes)
    engine.push_weights(_gathered(parts))
    return {"tensors": len(named), "buckets": len(parts),
            "max_bucket_bytes": max(sum(_bytes(p) for _, p in b) for b in parts)}


def _gathered(parts: list[list[tuple[str, torch.Tensor]]]):
    """Each bucket gathered, copied out and released before its pairs are handed on: the engine
    may keep a tensor until its fused layer is complete (vLLM's layer-wise reload), and a gathered
    parameter's storage goes back to its partition when the gather ends. The engine reads the
    whole iterator, so every rank gathers every bucket, in the same order."""
    import deepspeed
    for bucket in parts:
        with deepspeed.zero.GatheredParameters([p for _, p in bucket], modifier_rank=None):
            copies = [(name, p.data.detach().clone()) for name, p in bucket]
        yield from copies
