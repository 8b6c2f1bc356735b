"""Token-budget micro-batches and padding-free packing.

- `micro_batches` places every sequence exactly once, within the sequence cap and the token budget
  (padded width x count, or the sum of lengths when packed);
- a packed row gives the padded layout's log-probs, entropy and gradients (fp32, 1e-6) on real tiny
  Qwen2 and Llama models: the position ids make transformers build a block-diagonal causal mask, and
  the same row with one running position sequence (attention across sequences) does not match, so the
  test would catch packing that leaks between sequences.
"""

from __future__ import annotations

import random

import pytest
import torch

from rlspec.runtime import tinymodel
from rlspec.runtime.grpo.batch import RolloutBatch, micro_batches, pack, pack_flat, sequence_tokens
from rlspec.runtime.grpo.chunked import response_logprobs

TEMP = 0.8


def make_batch(prompt_lens, resp_lens, seed=0) -> RolloutBatch:
    rng = random.Random(seed)
    b = RolloutBatch()
    for p, r in zip(prompt_lens, resp_lens):
        b.prompt_ids.append([rng.randrange(5, 200) for _ in range(p)])
        b.response_ids.append([rng.randrange(5, 200) for _ in range(r)])
    return b


def test_fixed_counts_are_consecutive_runs():
    b = make_batch([3] * 7, [5] * 7)
    assert micro_batches(b, range(7), max_seqs=3, max_tokens=None, packed=False) == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("packed", [False, True])
def test_token_budget_places_every_sequence_once_within_the_budget(packed):
    rng = random.Random(1)
    b = make_batch([rng.randrange(2, 30) for _ in range(40)], [rng.randrange(1, 200) for _ in range(40)])
    budget, cap = 400, 6
    seqs = list(range(3, 40))  # a mini-batch: a subset of the batch
    plan = micro_batches(b, seqs, max_seqs=cap, max_tokens=budget, packed=packed)
    assert sorted(i for m in plan for i in m) == seqs
    for m in plan:
        assert m == sorted(m) and len(m) <= cap
        lens = [sequence_tokens(b, i) for i in m]
        cost = sum(lens) if packed else max(lens) * len(m)
        assert cost <= budget or len(m) == 1
    # first-fit decreasing fills bins: no two micro-batches could be merged within the limits
    costs = [(sum if packed else (lambda ls: max(ls) * len(ls)))([sequence_tokens(b, i) for i in m]) for m in plan]
    assert len(plan) < len(seqs)
    if packed:
        assert sum(costs) == sum(sequence_tokens(b, i) for i in seqs)  # no padding at all


def test_packing_needs_fewer_micro_batches_than_padding_on_varied_lengths():
    # one 500-token sequence and fifteen of 50: padded, the long one sits alone and the short ones
    # need two micro-batches (15 x 50 > 700); packed, four short ones fill the long one's micro-batch
    b = make_batch([10] * 16, [490] + [40] * 15)
    padded = micro_batches(b, range(16), max_seqs=16, max_tokens=700, packed=False)
    packed = micro_batches(b, range(16), max_seqs=16, max_tokens=700, packed=True)
    assert (len(padded), len(packed)) == (3, 2)


def test_a_sequence_longer_than_the_budget_gets_its_own_micro_batch():
    b = make_batch([4, 4, 4], [100, 3, 3])
    plan = micro_batches(b, range(3), max_seqs=8, max_tokens=50, packed=True)
    assert [0] in plan and sorted(i for m in plan for i in m) == [0, 1, 2]


def test_pack_flat_masks_only_response_predictions():
    b = make_batch([3, 2], [2, 3])
    row, pos, tgt, mask = pack_flat(b, [0, 1], "cpu")
    assert pos.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]]
    # seq 0: positions 2, 3 predict its 2 response tokens; position 4 would predict seq 1's first token
    assert mask.tolist() == [[0, 0, 1, 1, 0, 0, 1, 1, 1]]
    assert torch.equal(tgt[0, 2:4], torch.tensor(b.response_ids[0]))


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model_dir(request, tmp_path_factory):
    cfg = tinymodel.TinyModelConfig(seed=4, family=request.param)
    return tinymodel.build_tiny_model(tmp_path_factory.mktemp(request.param) / "model", cfg)


def load(model_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def loss_of(lp, ent, mask):
    w = torch.linspace(-1.0, 2.0, lp.shape[1])
    return ((lp * w - 0.1 * ent) * mask).sum() / mask.sum()


def test_packed_row_matches_the_padded_batch(model_dir):
    b = make_batch([5, 2, 7, 3], [9, 14, 1, 6], seed=2)
    chunk = [0, 1, 2, 3]
    ids, attn, tgt, mask = pack(b, chunk, "cpu")
    plain = load(model_dir)
    lp, ent = response_logprobs(plain, ids, attn, tgt, mask, TEMP, 4, entropy=True)
    loss_of(lp, ent, mask).backward()
    packed_model = load(model_dir)
    row, pos, ptgt, pmask = pack_flat(b, chunk, "cpu")
    plp, pent = response_logprobs(packed_model, row, None, ptgt, pmask, TEMP, 4, entropy=True,
                                  position_ids=pos, out_mask=mask)
    loss_of(plp, pent, mask).backward()
    assert plp.shape == lp.shape
    torch.testing.assert_close(plp, lp, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pent, ent, rtol=1e-6, atol=1e-6)
    assert_same_grads(grads(packed_model), grads(plain), "packed")
    # the same row with running positions lets later sequences attend to earlier ones: it must differ
    assert_running_positions_leak(load(model_dir), row, ptgt, pmask, mask, lp)


def assert_same_grads(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys() and want
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-6, msg=f"{what} {name}")


def assert_running_positions_leak(model, row, ptgt, pmask, mask, lp) -> None:
    """One running position sequence over the packed row makes it one sequence: later sequences
    attend to earlier ones, so the log-probs must differ from the per-sequence ones (`lp`)."""
    running = torch.arange(row.shape[1])[None]
    leak, _ = response_logprobs(model, row, None, ptgt, pmask, TEMP, 4, position_ids=running, out_mask=mask,
                                grad=False)
    assert (leak - lp).abs().max() > 1e-3


def test_packed_mask_and_output_mask_must_agree(model_dir):
    b = make_batch([3, 3], [4, 4])
    ids, attn, tgt, mask = pack(b, [0, 1], "cpu")
    row, pos, ptgt, pmask = pack_flat(b, [0], "cpu")
    with pytest.raises(ValueError, match="packed mask marks 4 positions"):
        response_logprobs(load(model_dir), row, None, ptgt, pmask, TEMP, 4, position_ids=pos, out_mask=mask)


def load_varlen(model_dir, checkpointing=False):
    """The model as the trainer loads it: `rlspec_varlen` attention (runtime/grpo/attention.py)."""
    from transformers import AutoModelForCausalLM

    from rlspec.runtime.grpo import attention
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attention.register())
    assert model.config._attn_implementation == attention.NAME
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
    return model


@pytest.mark.parametrize("checkpointing", [False, True])
def test_varlen_attention_matches_transformers_sdpa_in_both_layouts(model_dir, checkpointing):
    """Per-sequence attention (the trainer's) gives transformers' masked SDPA numbers, padded and packed,
    log-probs, entropy and every gradient (fp32, 1e-6); GQA included (the tiny models have 4 heads, 2 KV)."""
    b = make_batch([5, 2, 7, 3], [9, 14, 1, 6], seed=5)
    chunk = [0, 1, 2, 3]
    ids, attn, tgt, mask = pack(b, chunk, "cpu")
    reference = load(model_dir)  # transformers' own SDPA with its 4D mask
    lp, ent = response_logprobs(reference, ids, attn, tgt, mask, TEMP, 4, entropy=True)
    loss_of(lp, ent, mask).backward()
    g_ref = grads(reference)
    row, pos, ptgt, pmask = pack_flat(b, chunk, "cpu")
    for layout in ("padded", "packed"):
        model = load_varlen(model_dir, checkpointing)
        if layout == "padded":
            out = response_logprobs(model, ids, attn, tgt, mask, TEMP, 4, entropy=True)
        else:
            out = response_logprobs(model, row, None, ptgt, pmask, TEMP, 4, entropy=True, position_ids=pos,
                                    out_mask=mask)
        loss_of(*out, mask).backward()
        torch.testing.assert_close(out[0], lp, rtol=1e-6, atol=1e-6, msg=layout)
        torch.testing.assert_close(out[1], ent, rtol=1e-6, atol=1e-6, msg=layout)
        assert_same_grads(grads(model), g_ref, layout)
    assert_running_positions_leak(load_varlen(model_dir), row, ptgt, pmask, mask, lp)


def test_varlen_attention_refuses_masks_it_cannot_serve(model_dir):
    """Left padding (or holes) is not a right-padded prefix: refused, not silently attended."""
    b = make_batch([3, 3], [4, 2])
    ids, attn, tgt, mask = pack(b, [0, 1], "cpu")
    left = attn.flip(-1)
    with pytest.raises(ValueError, match="right-padded"):
        response_logprobs(load_varlen(model_dir), ids, left, tgt, mask, TEMP, 4, grad=False)


def test_varlen_segments_from_positions():
    from rlspec.runtime.grpo.attention import segments_from_positions
    assert segments_from_positions(torch.tensor([[0, 1, 2, 0, 1, 0]])) == [(0, 3), (3, 5), (5, 6)]
    with pytest.raises(ValueError, match="position 0"):
        segments_from_positions(torch.tensor([[1, 2, 0]]))
