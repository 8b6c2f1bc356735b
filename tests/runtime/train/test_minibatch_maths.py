"""PPO over several mini-batches, by hand (issue 16 item 1): old log-probs are the policy's before
the batch's first optimiser step, so a later mini-batch sees the ratio the earlier steps made and
clipping can bind. The trainer's wiring of this (old log-probs taken once per rollout batch) is
tested in a real train job: `test_train_job.py::test_one_update_over_several_mini_batches_...`.

The policy here is one parameter θ over two actions, p(a=0) = σ(θ) (logits [θ, 0]); the batch
is two one-token mini-batches, both action 0, advantages +1 and +1; plain SGD with lr 4."""

from __future__ import annotations

import math

import torch

from rlspec.runtime.grpo import algos

LR, CLIP_LOW, CLIP_HIGH = 4.0, 0.2, 0.28


def logp0(theta: torch.Tensor) -> torch.Tensor:
    """log p(a=0) of the two-action policy, as a (1, 1) token tensor."""
    return torch.log_softmax(torch.stack([theta, torch.zeros(())]), dim=0)[0].reshape(1, 1)


def sgd_step(theta: torch.Tensor, old: torch.Tensor, adv: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One mini-batch: the clipped loss against `old`, its gradient, an SGD step; returns
    (ratio, clipped, the new θ)."""
    loss, ratio, clipped, _ = algos.token_losses(logp0(theta), old, torch.tensor([adv]), clip_low=CLIP_LOW,
                                                 clip_high=CLIP_HIGH, dual=None)
    (grad,) = torch.autograd.grad(loss.sum(), theta)
    return ratio.detach(), clipped, (theta - LR * grad).detach().requires_grad_(True)


def test_second_mini_batch_sees_the_first_steps_ratio_and_is_clipped():
    theta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    old = logp0(theta).detach()  # taken once, before the first optimiser step: log 0.5
    # mini-batch 1: ratio 1; loss -A·r, dL/dθ = -A·(1 - σ(0)) = -0.5, so θ1 = 0 + 4·0.5 = 2
    ratio1, clipped1, theta = sgd_step(theta, old, +1.0)
    assert float(ratio1) == 1.0 and not bool(clipped1)
    assert math.isclose(float(theta), 2.0, rel_tol=1e-12)
    # mini-batch 2: r = σ(2) / σ(0) = 1.76159..., above 1 + 0.28 with A > 0: clipped, no gradient
    ratio2, clipped2, theta2 = sgd_step(theta, old, +1.0)
    by_hand = (1 / (1 + math.exp(-2.0))) / 0.5
    assert math.isclose(float(ratio2), by_hand, rel_tol=1e-12) and by_hand > 1 + CLIP_HIGH
    assert bool(clipped2)
    assert float(theta2) == float(theta)  # the clipped token's loss is a constant in θ


def test_old_log_probs_from_each_mini_batchs_own_forward_never_clip():
    """The defect the trainer had: each mini-batch took its own forward as the old policy, so the
    ratio was exactly 1 and clipping could never bind, however far earlier steps moved θ."""
    theta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    ratio1, _, theta = sgd_step(theta, logp0(theta).detach(), +1.0)
    ratio2, clipped2, theta2 = sgd_step(theta, logp0(theta).detach(), +1.0)
    assert float(ratio2) == 1.0 and not bool(clipped2)
    assert float(theta2) > float(theta)  # an unclipped step pushed θ further still
