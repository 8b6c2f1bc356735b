"""Log-probs and entropy of response tokens without the full (sequences x length x vocabulary) logits.

What: `response_logprobs(model, ids, attn, targets, mask, temperature, chunk)` returns the
temperature-scaled log-prob of every target token at the positions `mask` marks (zeros elsewhere)
and, when asked, the entropy of the sampling distribution there. It runs the decoder once, keeps
only the last hidden states of the response positions, and applies the output layer and
log-softmax `chunk` positions at a time, each chunk under activation checkpointing, so the fp32
logits of one chunk exist at a time, in the forward and in the backward pass.

Why: at 8K-32K response tokens and a 152K vocabulary, `model(...).logits.float()` is tens of GB per
micro-batch (4 x 10K x 152K x 4 bytes = 24 GB for one copy, and log-softmax keeps another); prompt
positions need no logits at all. The result equals the plain computation (tested to 1e-6 in fp32).

How: `model` is an HF causal LM (or the DeepSpeed engine's module); its decoder is
`model.get_decoder()` and its output layer `model.get_output_embeddings()`, so ZeRO-3 gathers each
layer's weights through the same module hooks as a full forward.

Packed inputs (`algorithm.pack_sequences`): `ids` is one row of concatenated sequences, `attn` is
None and `position_ids` restart at 0 for every sequence. The trainer's models use `rlspec_varlen`
attention (attention.py), which reads the sequence boundaries from the position ids and attends within
each sequence only; with transformers' own implementations the same position ids give a block-diagonal
mask (sdpa/eager) or varlen boundaries (flash attention): no sequence attends to another either way. `out_mask` is the padded layout's response mask: the
values picked in the packed row (in row order) are written to its marked positions (in row-major
order), so callers get the padded (S, T-1) tensors whichever layout the forward used.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _chunk(lm_head, hidden: torch.Tensor, targets: torch.Tensor, temperature: float, entropy: bool):
    logits = lm_head(hidden).float() / temperature
    logz = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    if not entropy:
        return picked, torch.zeros_like(picked)
    logp = logits - logz.unsqueeze(-1)
    return picked, -(logp.exp() * logp).sum(dim=-1)


def response_logprobs(model, ids: torch.Tensor, attn: torch.Tensor | None, targets: torch.Tensor,
                      mask: torch.Tensor, temperature: float, chunk: int, *, n_chunks: int | None = None,
                      entropy: bool = False, grad: bool = True, position_ids: torch.Tensor | None = None,
                      out_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log-probs, entropy or None), both shaped like `out_mask` (default `mask`, (S, T-1)) with zeros
    outside it: position t predicts `targets[:, t]`, the token at t + 1. `n_chunks` (at least the
    chunks needed) makes the output layer run that many times, on empty chunks past the data: ZeRO-3
    ranks must agree. Packed inputs: `attn` None, `position_ids` per sequence, `out_mask` the padded
    layout (it marks as many positions as `mask`)."""
    # no KV cache: with one, transformers would skip the packed-sequence mask (and keep the cache)
    hidden = model.get_decoder()(input_ids=ids, attention_mask=attn, position_ids=position_ids,
                                 use_cache=False).last_hidden_state[:, :-1]
    where = mask > 0
    if out_mask is None:
        out_mask = mask
    elif int(where.sum()) != int((out_mask > 0).sum()):
        raise ValueError(f"the packed mask marks {int(where.sum())} positions, the output mask "
                         f"{int((out_mask > 0).sum())}")
    picked_h, picked_t = hidden[where], targets[where]
    lm_head = model.get_output_embeddings()
    parts_lp, parts_ent = [], []
    needed = -(-picked_h.shape[0] // chunk)
    calls = needed if n_chunks is None else n_chunks
    if calls < needed:
        raise ValueError(f"n_chunks={n_chunks} but {needed} chunks of {chunk} positions are needed")
    for start in range(0, calls * chunk, chunk):
        h, t = picked_h[start:start + chunk], picked_t[start:start + chunk]
        if grad and torch.is_grad_enabled():
            lp, ent = checkpoint(_chunk, lm_head, h, t, temperature, entropy, use_reentrant=False)
        else:
            lp, ent = _chunk(lm_head, h, t, temperature, entropy)
        parts_lp.append(lp)
        parts_ent.append(ent)
    out_lp = torch.zeros(out_mask.shape, dtype=torch.float32, device=hidden.device)
    if not parts_lp:  # no response position: keep the graph (and any ZeRO-3 hooks) connected
        return out_lp + hidden.sum() * 0.0, (out_lp.clone() if entropy else None)
    out_ent = torch.zeros_like(out_lp) if entropy else None
    index = (out_mask > 0).nonzero(as_tuple=True)
    out_lp = out_lp.index_put(index, torch.cat(parts_lp))
    if entropy:
        out_ent = out_ent.index_put(index, torch.cat(parts_ent))
    return out_lp, out_ent


class PolicyLogprobs(torch.nn.Module):
    """The policy as the DeepSpeed engine runs it: its forward is `response_logprobs`, so the
    engine's forward (ZeRO-3 gathers, its backward hooks) wraps exactly the computation the loss
    needs. `policy` is the HF model (saved, synced to the rollout engine)."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, ids, attn, targets, mask, temperature: float, chunk: int, n_chunks: int, entropy: bool,
                position_ids=None, out_mask=None):
        lp, ent = response_logprobs(self.policy, ids, attn, targets, mask, temperature, chunk, n_chunks=n_chunks,
                                    entropy=entropy, grad=torch.is_grad_enabled(), position_ids=position_ids,
                                    out_mask=out_mask)
        return lp, (ent if ent is not None else torch.zeros_like(lp))
