"""Advantages, token losses, KL estimators and loss aggregation, registered by name.

Pure tensor functions, so each is tested against hand-computed values. Names match the spec's
choices (`algorithm.loss_agg`, `algorithm.kl.estimator`); an unknown name lists the valid ones.

Shapes: a batch has S sequences (responses) of up to T response tokens; `mask` (S, T) is 1 on the
tokens that count. Advantages are one scalar per sequence, broadcast to its tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, *, normalize_std: bool, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(r - group mean) [/ (group std + eps)] per response, and a per-group flag "all rewards equal".

    `rewards` is (G * group_size,), grouped contiguously. The std is the unbiased sample std, as in
    the common GRPO implementations; without normalisation this is Dr. GRPO's advantage.
    """
    r = rewards.view(-1, group_size).to(torch.float64)
    centred = r - r.mean(dim=1, keepdim=True)
    zero_var = (r.max(dim=1).values - r.min(dim=1).values) == 0
    if normalize_std:
        std = r.std(dim=1, unbiased=True, keepdim=True) if group_size > 1 else torch.zeros_like(r[:, :1])
        centred = centred / (std + eps)
    return centred.reshape(-1).to(rewards.dtype), zero_var


def soft_overlong_penalty(lengths: torch.Tensor, max_tokens: int, buffer: int, factor: float) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to max - buffer, then linear down to -factor at max."""
    start = max_tokens - buffer
    over = (lengths.to(torch.float64) - start).clamp(min=0) / buffer
    return -(factor * over.clamp(max=1.0))


# --- KL estimators (per token, policy vs reference) -------------------------------------------


def _k1(logp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return logp - ref


def _k2(logp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return 0.5 * (logp - ref) ** 2


def _k3(logp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    d = ref - logp
    return torch.exp(d) - d - 1


def _low_var_kl(logp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return _k3(logp, ref).clamp(min=-10, max=10)


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": _k1, "k2": _k2, "k3": _k3, "low_var_kl": _low_var_kl}


def kl_estimator(name: str):
    try:
        return KL_ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown KL estimator {name!r}; valid: {', '.join(KL_ESTIMATORS)}") from None


# --- the PPO-style token loss ------------------------------------------------------------------


def token_losses(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, *,
                 clip_low: float | None, clip_high: float | None,
                 dual: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token clipped surrogate loss, the ratio, where PPO clipping changed the loss, and where
    the dual-clip cap bound.

    With one update per batch, old_logp == logp (detached), so ratio == 1 exactly and the loss is
    -A per token; its gradient is -A * grad log p, the on-policy policy gradient.

    Dual-clip (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL"; veRL's
    `clip_ratio_c`): PPO's max(-A r, -A clip(r)) is unbounded for A < 0 as r grows, so one stale
    token with a huge ratio can dominate the batch. With `dual` = c > 1, a token with A < 0 has its
    loss capped at -A c = c |A| (a constant there, so no gradient); tokens with A >= 0 are untouched.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    unclipped = -adv * ratio
    clipped = torch.zeros_like(ratio, dtype=torch.bool)
    loss = unclipped
    if clip_low is not None and clip_high is not None:
        clipped_loss = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
        loss = torch.maximum(unclipped, clipped_loss)
        clipped = clipped_loss > unclipped
    capped = torch.zeros_like(clipped)
    if dual is not None:
        cap = (-adv * dual).expand_as(loss)
        capped = (adv < 0) & (loss > cap)
        loss = torch.where(capped, cap, loss)
    return loss, ratio, clipped, capped


# --- aggregation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normaliser:
    """The *whole* mini-batch's counts (over every micro-batch and rank) that the aggregations
    divide by, so the shares of all micro-batches add up to the loss of the mini-batch as if it
    were one: `tokens` (loss-mask sum), `sequences` (sequences that count) and `max_tokens`
    (Dr. GRPO's constant, the stage's response budget)."""

    tokens: float
    sequences: float
    max_tokens: float

    @classmethod
    def of(cls, tokens: float, sequences: float, max_tokens: int) -> "Normaliser":
        """From summed counts; an empty mini-batch divides by 1 (its loss is 0 either way)."""
        return cls(max(tokens, 1.0), max(sequences, 1.0), float(max_tokens))


def local_counts(lengths: Sequence[int], counted: Sequence[bool]) -> tuple[float, float]:
    """This rank's (tokens, sequences) for a Normaliser: response tokens and sequences that count."""
    return float(sum(n for n, c in zip(lengths, counted) if c)), float(sum(1 for c in counted if c))


def _token_mean(loss: torch.Tensor, mask: torch.Tensor, norm: Normaliser) -> torch.Tensor:
    return (loss * mask).sum() / norm.tokens


def _seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor, norm: Normaliser) -> torch.Tensor:
    per_seq = (loss * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
    return per_seq.sum() / norm.sequences


def _seq_mean_token_sum_norm(loss: torch.Tensor, mask: torch.Tensor, norm: Normaliser) -> torch.Tensor:
    per_seq = (loss * mask).sum(dim=-1) / norm.max_tokens
    return per_seq.sum() / norm.sequences


AGGREGATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, Normaliser], torch.Tensor]] = {
    "token_mean": _token_mean,
    "seq_mean_token_mean": _seq_mean_token_mean,
    "seq_mean_token_sum_norm": _seq_mean_token_sum_norm,
}


def aggregate(name: str, loss: torch.Tensor, mask: torch.Tensor, norm: Normaliser) -> torch.Tensor:
    """This micro-batch's share of the aggregated loss (see `Normaliser`)."""
    try:
        fn = AGGREGATIONS[name]
    except KeyError:
        raise ValueError(f"unknown loss aggregation {name!r}; valid: {', '.join(AGGREGATIONS)}") from None
    return fn(loss, mask.to(loss.dtype), norm)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Token entropy (nats) of softmax(logits) along the last dimension."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
