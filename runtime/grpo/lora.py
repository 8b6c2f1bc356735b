"""LoRA adapters on the policy (`model.lora`): PEFT under DeepSpeed, merged weights everywhere else.

What: `wrap(model, cfg)` puts PEFT LoRA layers on the `target_modules` linear layers and freezes
every other weight, so the optimiser states and gradients are the adapter's only (DeepSpeed's ZeRO
1-3 and bf16 optimisers keep only parameters that require a gradient; at ZeRO-0 torch's AdamW makes
no state for, and never steps, a parameter without a gradient). `merged(named, scale)` turns the PEFT model's (name, tensor) pairs into the base
model's: W + scale·B·A under `...q_proj.weight`, every other tensor under its name without PEFT's
`base_model.model.` prefix. `groups` are the units that must be read together (a LoRA layer's
base weight, bias, A and B). `AdapterOff(policy)` is the policy with its adapter switched off, the
KL reference when the reference is the stage's input model. `save_adapter` writes `adapter/`.
`lora.dropout` acts only in forwards with gradients (`GradDropout`), so the old log-probs and the
reference see exactly the weights the engine samples with.

Why: the rollout engines (vLLM's `load_weights`, the transformers engine) and everything after the
stage (the next stage, benchmarks, users) know the base architecture only; no PEFT name may reach
them. Merging on the fly keeps the engine's model plain and costs one extra tensor per layer being
pushed. The adapter-off reference is exact: with the adapter disabled a PEFT layer computes its
frozen base layer, i.e. the stage's input model, with no second copy of the weights in memory.

How: names only, so the same code serves full state dicts (the stage's `model/`) and the
weight push (`weightsync`, which gathers each group together under ZeRO-3). Embedding or other
non-linear targets are refused at wrap time: their PEFT names and maths differ.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

import torch

from rlspec.compiler.spec import Lora

PREFIX = "base_model.model."  # PeftModel -> LoraModel -> the HF model
ADAPTER = "default"
_LORA_NAME = re.compile(r"^(?P<module>.+)\.(?:base_layer\.(?P<base>weight|bias)|lora_(?P<ab>[AB])\.[^.]+\.weight)$")

Pair = tuple[str, torch.Tensor]


def wrap(model: torch.nn.Module, cfg: Lora) -> torch.nn.Module:
    """The PEFT model: adapters on `cfg.target_modules` (B starts at zero, so the merged weights are
    the input model's until the first step), everything else frozen."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer
    peft_model = get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                  target_modules=list(cfg.target_modules), bias="none"))
    layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
    other = sorted({type(m).__name__ for m in layers if not isinstance(m, LoraLinear)})
    if other:
        raise ValueError(f"model.lora.target_modules {cfg.target_modules} matched non-linear layers ({', '.join(other)}); "
                         "only linear layers are supported: name the attention and MLP projections")
    if cfg.dropout > 0:
        for m in layers:
            m.lora_dropout[ADAPTER] = GradDropout(cfg.dropout)
    return peft_model


class GradDropout(torch.nn.Dropout):
    """`lora.dropout` in the forwards that build the loss only: a forward without gradients (the
    batch's old log-probs, the adapter-off reference) sees the same weights the engine sampled
    with, so the importance ratio and KL measure the policy, not a dropout mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if torch.is_grad_enabled() else x


def is_peft(model: torch.nn.Module) -> bool:
    from peft import PeftModel
    return isinstance(model, PeftModel)


def base_model(policy: torch.nn.Module) -> torch.nn.Module:
    """The HF model to save a merged state dict with (its config and class); `policy` itself
    when it has no adapter."""
    return policy.get_base_model() if is_peft(policy) else policy


def scale(cfg: Lora) -> float:
    """PEFT's `scaling` of every adapter (no rsLoRA): alpha / rank."""
    return cfg.alpha / cfg.rank


def base_name(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def groups(named: Iterable[Pair]) -> Iterator[list[Pair]]:
    """The pairs in units that must be read together: one per LoRA layer (its base weight, bias, A
    and B, which PEFT registers one after the other), one per other tensor; lazily, in order."""
    unit: list[Pair] = []
    key = None
    for name, t in named:
        m = _LORA_NAME.match(name)
        k = m.group("module") if m else None
        if unit and (k is None or k != key):
            yield unit
            unit = []
        unit.append((name, t))
        key = k
    if unit:
        yield unit


def merge_group(group: list[Pair], scale: float) -> list[Pair]:
    """A group's tensors under the base model's names: W + scale·B·A for a LoRA layer (computed in
    fp32, cast to W's dtype), the others as they are."""
    parts: dict[str, torch.Tensor] = {}
    module = None
    for name, t in group:
        m = _LORA_NAME.match(name)
        if m is None:
            return [(base_name(name), t) for name, t in group]
        module = m.group("module")
        parts[m.group("base") or m.group("ab")] = t
    if set(parts) - {"bias"} != {"weight", "A", "B"}:
        raise ValueError(f"LoRA layer {module} is missing part of its weights: has {sorted(parts)}")
    w = parts["weight"]
    merged = (w.float() + scale * (parts["B"].float() @ parts["A"].float())).to(w.dtype)
    out = [(base_name(f"{module}.weight"), merged)]
    if "bias" in parts:
        out.append((base_name(f"{module}.bias"), parts["bias"]))
    return out


def merged(named: Iterable[Pair], scale: float) -> Iterator[Pair]:
    """Every tensor of a PEFT model's state under the base model's names, adapters merged."""
    for group in groups(named):
        yield from merge_group(group, scale)


def merged_state_dict(state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    return dict(merged(state.items(), scale))


def save_adapter(policy: torch.nn.Module, folder: Path, state: dict[str, torch.Tensor]) -> None:
    """The adapter in PEFT's format (`adapter_config.json`, `adapter_model.safetensors`), loadable
    with `PeftModel.from_pretrained(base, folder)`. `state` is the policy's full state dict under
    PEFT's names (gathered under ZeRO-3, where the parameters themselves are partitions); PEFT keeps
    the adapter's tensors of it."""
    policy.save_pretrained(str(folder), state_dict=state)


class _Off:
    """A sub-module of the PEFT model, called with the adapter disabled."""

    def __init__(self, policy: torch.nn.Module, inner: torch.nn.Module):
        self.policy, self.inner = policy, inner

    def __call__(self, *args, **kwargs):
        with self.policy.disable_adapter():
            return self.inner(*args, **kwargs)


class AdapterOff:
    """The policy with its adapter switched off, as `chunked.response_logprobs` reads a model
    (`get_decoder()`, `get_output_embeddings()`): the stage's input model, computed by the frozen
    base layers the policy already holds. Use it under `torch.no_grad()` (the KL reference)."""

    def __init__(self, policy: torch.nn.Module):
        self.policy = policy

    def get_decoder(self) -> _Off:
        return _Off(self.policy, self.policy.get_decoder())

    def get_output_embeddings(self) -> _Off:
        return _Off(self.policy, self.policy.get_output_embeddings())
