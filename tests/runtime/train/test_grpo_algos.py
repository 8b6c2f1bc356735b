"""Advantages, token losses, KL estimators and aggregation against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from rlspec.runtime.grpo import algos


def test_group_advantages_with_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    adv, zero_var = algos.group_advantages(rewards, 4, normalize_std=True, eps=1e-6)
    # group 1: mean 0.25, unbiased std sqrt(0.25) = 0.5 -> (1 - .25)/.5 = 1.5, (0 - .25)/.5 = -0.5
    assert adv[:4].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)
    assert adv[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # all equal -> zero advantage
    assert zero_var.tolist() == [False, True]


def test_group_advantages_without_std_is_dr_grpo():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    adv, _ = algos.group_advantages(rewards, 4, normalize_std=False, eps=1e-6)
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_soft_overlong_penalty():
    lengths = torch.tensor([10, 60, 80, 100])
    pen = algos.soft_overlong_penalty(lengths, max_tokens=100, buffer=40, factor=1.0)
    assert pen.tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0])


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    assert algos.kl_estimator("k1")(logp, ref).item() == pytest.approx(1.0)
    assert algos.kl_estimator("k2")(logp, ref).item() == pytest.approx(0.5)
    assert algos.kl_estimator("k3")(logp, ref).item() == pytest.approx(math.exp(-1) + 1 - 1)
    with pytest.raises(ValueError, match="valid: k1, k2, k3, low_var_kl"):
        algos.kl_estimator("k4")


def test_clipped_token_loss():
    logp = torch.tensor([[math.log(1.5), math.log(0.5)]])
    old = torch.zeros(1, 2)
    adv = torch.tensor([2.0])
    loss, ratio, clipped, _ = algos.token_losses(logp, old, adv, clip_low=0.2, clip_high=0.28, dual=None)
    # positive advantage: ratio 1.5 is clipped at 1.28; ratio 0.5 is not (min of the two surrogates)
    assert loss.tolist()[0] == pytest.approx([-2 * 1.28, -2 * 0.5])
    assert clipped.tolist() == [[True, False]]
    unclipped, _, none, _ = algos.token_losses(logp, old, adv, clip_low=None, clip_high=None, dual=None)
    assert unclipped.tolist()[0] == pytest.approx([-3.0, -1.0]) and not none.any()


def test_dual_clip_caps_negative_advantage_tokens_at_c_times_abs_a():
    """Hand-computed: c = 3, ratios 5 / 2 / 5 / 0.5 with advantages -1 / -1 / +1 / -2, clip 0.2 / 0.28."""
    logp = torch.tensor([[math.log(5.0), math.log(2.0)], [math.log(5.0), math.log(0.5)]], requires_grad=True)
    old = torch.zeros(2, 2)
    adv = torch.tensor([[-1.0, -1.0], [1.0, -2.0]])
    loss, _, _, capped = algos.token_losses(logp, old, adv, clip_low=0.2, clip_high=0.28, dual=3.0)
    # A=-1, r=5: PPO's max(5, 1.28) = 5 > 3 = c|A| -> 3 (capped); A=-1, r=2: max(2, 1.28) = 2 < 3 stays;
    # A=+1, r=5: max(-5, -1.28) = -1.28, never capped; A=-2, r=0.5: max(1, 1.6) = 1.6 < 6 stays
    assert loss.tolist() == [pytest.approx([3.0, 2.0]), pytest.approx([-1.28, 1.6])]
    assert capped.tolist() == [[True, False], [False, False]]
    loss.sum().backward()
    # the cap is a constant: no gradient through the capped token; the uncapped A=-1 token keeps -A r
    assert logp.grad[0, 0] == 0.0 and logp.grad[0, 1] == pytest.approx(2.0)
    same, _, _, none = algos.token_losses(logp.detach(), old, adv, clip_low=0.2, clip_high=0.28, dual=None)
    assert same[0, 0] == pytest.approx(5.0) and not none.any()  # without dual-clip the loss is unbounded


def test_dual_clip_applies_without_ppo_clipping():
    logp = torch.tensor([[math.log(4.0)]])
    loss, _, clipped, capped = algos.token_losses(logp, torch.zeros(1, 1), torch.tensor([-0.5]),
                                                  clip_low=None, clip_high=None, dual=3.0)
    assert loss.item() == pytest.approx(1.5) and capped.all() and not clipped.any()


def test_on_policy_ratio_is_exactly_one_and_gives_the_policy_gradient():
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    logp = torch.log_softmax(w, dim=0)[None, :3]
    adv = torch.tensor([0.7])
    loss, ratio, _, _ = algos.token_losses(logp, logp.detach(), adv, clip_low=0.2, clip_high=0.28, dual=None)
    assert torch.equal(ratio, torch.ones_like(ratio))
    loss.sum().backward()
    g_ppo = w.grad.clone()
    w.grad = None
    (-(adv * torch.log_softmax(w, dim=0)[:3]).sum()).backward()
    assert torch.allclose(g_ppo, w.grad)


@pytest.mark.parametrize("name", sorted(algos.AGGREGATIONS))
def test_aggregation_shares_add_up_across_micro_batches(name):
    torch.manual_seed(1)
    loss = torch.randn(6, 5)
    mask = (torch.rand(6, 5) > 0.3).float()
    mask[:, 0] = 1
    norm = algos.Normaliser(tokens=float(mask.sum()), sequences=6.0, max_tokens=5.0)
    whole = algos.aggregate(name, loss, mask, norm)
    parts = sum(algos.aggregate(name, loss[i:i + 2], mask[i:i + 2], norm) for i in range(0, 6, 2))
    assert parts.item() == pytest.approx(whole.item(), abs=1e-6)


def test_aggregation_values_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    norm = algos.Normaliser(tokens=4.0, sequences=2.0, max_tokens=10.0)
    assert algos.aggregate("token_mean", loss, mask, norm).item() == pytest.approx(10 / 4)
    assert algos.aggregate("seq_mean_token_mean", loss, mask, norm).item() == pytest.approx((2 + 4) / 2)
    assert algos.aggregate("seq_mean_token_sum_norm", loss, mask, norm).item() == pytest.approx((6 / 10 + 4 / 10) / 2)
    with pytest.raises(ValueError, match="valid: token_mean"):
        algos.aggregate("mean", loss, mask, norm)


def test_entropy_from_logits():
    logits = torch.zeros(1, 4)
    assert algos.entropy_from_logits(logits).item() == pytest.approx(math.log(4))
