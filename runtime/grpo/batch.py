"""One step's rollouts as the trainer optimises them: a typed batch and the tensors made from it.

What: `RolloutBatch` holds, per response (sequence), its prompt and response ids, the log-probs the
engine sampled with, its advantage, raw reward, length, whether it counts in the loss and whether
its group had equal rewards, plus the step's counters (groups, truncations, grader outcomes).
`micro_batches` splits a mini-batch into micro-batches (fixed counts, or a token budget);
`pack` turns a micro-batch into padded model inputs, `pack_flat` into one padding-free row;
`stack`, `response_mask` and `engine_logprobs` lay per-sequence values over the padded layout.

Why: the batch crosses rollout, dynamic sampling, mini-batching and metrics; as a dict of parallel
lists a typo was a KeyError at step 1 on a cluster. Sequences of one group are contiguous, so
`group` sequences starting at `g * group` are group g.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch

PER_SEQUENCE = ("prompt_ids", "response_ids", "engine_logprobs", "advantages", "raw_rewards", "lengths",
                "loss_mask", "zero_var_flags")


@dataclass
class RolloutBatch:
    prompt_ids: list[list[int]] = field(default_factory=list)
    response_ids: list[list[int]] = field(default_factory=list)
    engine_logprobs: list[list[float]] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)
    raw_rewards: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    loss_mask: list[bool] = field(default_factory=list)  # False: excluded from the loss (overlong masking)
    zero_var_flags: list[bool] = field(default_factory=list)  # the sequence's group had equal rewards
    # counters of the rollouts that produced the batch (kept when dynamic sampling drops groups)
    truncated: int = 0
    groups: int = 0  # groups in the batch
    groups_sampled: int = 0  # groups generated, dropped ones included
    groups_zero_var: int = 0
    groups_solved: int = 0
    sandbox_errors: int = 0
    grader_errors: int = 0
    code_answers: int = 0
    answers: int = 0

    def __len__(self) -> int:
        return len(self.response_ids)

    def extend(self, other: "RolloutBatch") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def without_zero_variance(self, group: int) -> "RolloutBatch":
        """The groups with unequal rewards (DAPO's dynamic sampling); the counters still describe
        every rollout, since they happened."""
        keep = [i for i, z in enumerate(self.zero_var_flags) if not z]
        out = RolloutBatch(**{f.name: getattr(self, f.name) for f in fields(self) if f.name not in PER_SEQUENCE})
        for name in PER_SEQUENCE:
            setattr(out, name, [getattr(self, name)[i] for i in keep])
        out.groups = len(keep) // group
        return out


def sequence_tokens(batch: RolloutBatch, i: int) -> int:
    return len(batch.prompt_ids[i]) + len(batch.response_ids[i])


def micro_batches(batch: RolloutBatch, seqs: Sequence[int], *, max_seqs: int, max_tokens: int | None,
                  packed: bool) -> list[list[int]]:
    """This rank's micro-batches of the sequences `seqs` (indices into `batch`).

    Without a token budget: consecutive runs of `max_seqs` sequences. With one: first-fit decreasing
    over sequence lengths (prompt + response), each micro-batch holding at most `max_seqs` sequences
    and at most `max_tokens` tokens, counted as padded width x sequences, or with `packed` as the sum
    of lengths. A sequence longer than the budget gets a micro-batch of its own (`rlspec check`
    refuses budgets below `model.max_context`, so that happens only for a prompt the check could not
    see). Sequences keep their batch order inside a micro-batch."""
    seqs = list(seqs)
    if max_tokens is None:
        return [seqs[i:i + max_seqs] for i in range(0, len(seqs), max_seqs)]
    bins: list[list[int]] = []
    cost: list[int] = []  # padded: the bin's width (its first, longest sequence); packed: the sum
    for i in sorted(seqs, key=lambda j: (-sequence_tokens(batch, j), j)):
        n = sequence_tokens(batch, i)
        for b, members in enumerate(bins):
            total = cost[b] + n if packed else cost[b] * (len(members) + 1)
            if len(members) < max_seqs and total <= max_tokens:
                members.append(i)
                if packed:
                    cost[b] += n
                break
        else:
            bins.append([i])
            cost.append(n)
    return [sorted(b) for b in bins]


def pack_flat(batch: RolloutBatch, chunk: Sequence[int], device) -> tuple[torch.Tensor, ...]:
    """One padding-free row: the sequences of `chunk` concatenated, position ids restarting at 0 for
    each, next-token targets and the response mask (positions that predict a response token; the last
    position of a sequence would predict the next sequence's first token and is never marked)."""
    ids: list[int] = []
    pos: list[int] = []
    marked: list[float] = []
    for i in chunk:
        s = batch.prompt_ids[i] + batch.response_ids[i]
        p = len(batch.prompt_ids[i])
        ids += s
        pos += range(len(s))
        marked += [0.0] * (p - 1) + [1.0] * (len(s) - p) + [0.0]
    row = torch.tensor([ids], dtype=torch.long)
    mask = torch.tensor([marked[:-1]])
    return row.to(device), torch.tensor([pos]).to(device), row[:, 1:].to(device), mask.to(device)


def pack(batch: RolloutBatch, chunk: Sequence[int], device) -> tuple[torch.Tensor, ...]:
    """Right-padded prompt+response ids, attention mask, next-token targets and response mask."""
    seqs = [batch.prompt_ids[i] + batch.response_ids[i] for i in chunk]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    attn = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width - 1)
    for row, (i, s) in enumerate(zip(chunk, seqs)):
        ids[row, :len(s)] = torch.tensor(s)
        attn[row, :len(s)] = 1
        p = len(batch.prompt_ids[i])
        mask[row, p - 1: len(s) - 1] = 1.0  # position t predicts token t + 1
    return ids.to(device), attn.to(device), ids[:, 1:].to(device), mask.to(device)


def stack(per_seq: Sequence[torch.Tensor], chunk: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Per-sequence token tensors (over all positions) of `chunk`, padded to `like`'s shape."""
    out = torch.zeros_like(like)
    for row, i in enumerate(chunk):
        t = per_seq[i]
        out[row, : t.shape[0]] = t[: out.shape[1]]
    return out


def response_mask(batch: RolloutBatch, chunk: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(like)
    for row, i in enumerate(chunk):
        p, r = len(batch.prompt_ids[i]), len(batch.response_ids[i])
        mask[row, p - 1: p - 1 + r] = 1.0
    return mask


def engine_logprobs(batch: RolloutBatch, chunk: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(like)
    for row, i in enumerate(chunk):
        p, lps = len(batch.prompt_ids[i]), batch.engine_logprobs[i]
        out[row, p - 1: p - 1 + len(lps)] = torch.tensor(lps, dtype=out.dtype)
    return out
