"""Chunked response log-probs and gradient checkpointing give the plain path's numbers (fp32, 1e-6):
log-probs, entropy and the gradients of a loss built from them, on a real tiny Qwen2."""

from __future__ import annotations

import pytest
import torch

from rlspec.runtime import tinymodel
from rlspec.runtime.grpo.chunked import PolicyLogprobs, response_logprobs

TEMP = 0.7


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tinymodel.build_tiny_model(tmp_path_factory.mktemp("m") / "model", tinymodel.TinyModelConfig(seed=3))


def load(model_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def batch():
    """Three right-padded sequences with prompts of 3, 5 and 2 tokens."""
    g = torch.Generator().manual_seed(0)
    lengths, prompts = [9, 12, 6], [3, 5, 2]
    ids = torch.zeros(3, 12, dtype=torch.long)
    attn = torch.zeros(3, 12, dtype=torch.long)
    mask = torch.zeros(3, 11)
    for r, (n, p) in enumerate(zip(lengths, prompts)):
        ids[r, :n] = torch.randint(5, 200, (n,), generator=g)
        attn[r, :n] = 1
        mask[r, p - 1:n - 1] = 1.0
    return ids, attn, ids[:, 1:], mask


def plain(model, ids, attn, tgt):
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float() / TEMP
    logp_all = torch.log_softmax(logits, dim=-1)
    return logp_all.gather(-1, tgt.unsqueeze(-1)).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1)


def loss_of(lp, ent, mask):
    weights = torch.linspace(-1.0, 2.0, lp.shape[1])
    return ((lp * weights - 0.1 * ent) * mask).sum() / mask.sum()


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_chunked_logprobs_entropy_and_gradients_match_the_full_logits(model_dir, chunk):
    ids, attn, tgt, mask = batch()
    ref = load(model_dir)
    lp, ent = plain(ref, ids, attn, tgt)
    loss_of(lp, ent, mask).backward()
    ours = load(model_dir)
    lp2, ent2 = response_logprobs(ours, ids, attn, tgt, mask, TEMP, chunk, entropy=True)
    assert torch.allclose(lp2, lp * mask, atol=1e-6) and torch.allclose(ent2, ent * mask, atol=1e-6)
    assert (lp2[mask == 0] == 0).all()
    loss_of(lp2, ent2, mask).backward()
    g1, g2 = grads(ref), grads(ours)
    assert g1.keys() == g2.keys()
    for name in g1:
        assert torch.allclose(g1[name], g2[name], atol=1e-6), name


def test_gradient_checkpointing_gives_the_same_gradients(model_dir):
    ids, attn, tgt, mask = batch()
    results = []
    for checkpointing in (False, True):
        model = load(model_dir)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
        wrapped = PolicyLogprobs(model)
        lp, ent = wrapped(ids, attn, tgt, mask, TEMP, 4, 6, True)
        loss_of(lp, ent, mask).backward()
        results.append((lp.detach(), grads(model)))
    (lp1, g1), (lp2, g2) = results
    assert torch.allclose(lp1, lp2, atol=1e-6)
    for name in g1:
        assert torch.allclose(g1[name], g2[name], atol=1e-6), name


def test_extra_chunks_are_empty_and_too_few_are_refused(model_dir):
    ids, attn, tgt, mask = batch()
    model = load(model_dir)
    needed = -(-int(mask.sum()) // 4)
    exact, _ = response_logprobs(model, ids, attn, tgt, mask, TEMP, 4)
    padded, _ = response_logprobs(model, ids, attn, tgt, mask, TEMP, 4, n_chunks=needed + 3)
    assert torch.equal(exact, padded)
    with pytest.raises(ValueError, match="chunks of 4 positions are needed"):
        response_logprobs(model, ids, attn, tgt, mask, TEMP, 4, n_chunks=needed - 1)
