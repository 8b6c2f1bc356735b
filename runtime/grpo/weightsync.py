"""Pushing the policy's new weights into the rollout engine after every optimiser step.

What: `push_weights(policy, engine, zero3=..., bucket_bytes=..., lora_scale=...)` sends every parameter (HF names)
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

LoRA (`model.lora`, `grpo.lora`): the policy is a PEFT model whose names the engines do not know.
Each LoRA layer's base weight, bias, A and B form one unit (gathered in the same bucket under
ZeRO-3), and the engine receives W + (alpha / rank)·B·A under the base model's name, one layer at a
time: the extra memory is one merged weight (plus the engine's own fused-layer buffering).
"""

from __future__ import annotations

from typing import Any

import torch

from rlspec.compiler.memory import WEIGHT_SYNC_BUCKET as DEFAULT_BUCKET_BYTES  # the plan counts the same bucket

from . import lora


def _bytes(p: torch.Tensor) -> int:
    numel = getattr(p, "ds_numel", None)  # ZeRO-3: the full size; `numel()` is the local partition
    return (numel if numel is not None else p.numel()) * p.element_size()


def buckets(units: list[list[tuple[str, torch.Tensor]]], bucket_bytes: int) -> list[list[list[tuple[str, torch.Tensor]]]]:
    """Consecutive runs of units (tensors read together) of at most `bucket_bytes` (a larger unit alone)."""
    out: list[list[list[tuple[str, torch.Tensor]]]] = []
    size = 0
    for unit in units:
        n = sum(_bytes(p) for _, p in unit)
        if not out or size + n > bucket_bytes:
            out.append([])
            size = 0
        out[-1].append(unit)
        size += n
    return out


def push_weights(policy: torch.nn.Module, engine: Any, *, zero3: bool,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES, lora_scale: float | None = None) -> dict[str, int]:
    """Send the policy's weights to `engine` (see the module docstring). `lora_scale` (alpha / rank):
    the policy is a PEFT LoRA model and the engine gets the merged weights under the base names."""
    named = list(policy.named_parameters())
    units = list(lora.groups(named)) if lora_scale is not None else [[pair] for pair in named]
    parts = buckets(units, bucket_bytes) if zero3 else [units]
    pairs = _gathered(parts) if zero3 else _plain(units)
    if lora_scale is not None:
        pairs = _merged(pairs, lora_scale)
    sent = [0]

    def counted():
        for pair in pairs:
            sent[0] += 1
            yield pair
    engine.push_weights(counted())
    return {"tensors": sent[0], "buckets": len(parts),
            "max_bucket_bytes": max(sum(_bytes(p) for u in b for _, p in u) for b in parts)}


def _plain(units):
    """ZeRO 0-2: every rank holds the full parameters; they go out as views (no copy)."""
    for unit in units:
        for name, p in unit:
            yield name, p.detach()


def _merged(pairs, scale: float):
    """LoRA: each layer's base weight, bias, A and B (consecutive, one unit) merged into W + scale·B·A
    under the base model's names, one layer at a time."""
    for unit in lora.groups(pairs):
        yield from lora.merge_group(unit, scale)


def _gathered(parts: list[list[list[tuple[str, torch.Tensor]]]]):
    """Each bucket gathered, copied out and released before its pairs are handed on: the engine
    may keep a tensor until its fused layer is complete (vLLM's layer-wise reload), and a gathered
    parameter's storage goes back to its partition when the gather ends. The engine reads the
    whole iterator, so every rank gathers every bucket, in the same order."""
    import deepspeed
    for bucket in parts:
        params = [p for unit in bucket for _, p in unit]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            copies = [(name, p.data.detach().clone()) for unit in bucket for name, p in unit]
        yield from copies
