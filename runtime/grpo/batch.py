"""One step's rollouts as the trainer optimises them: a typed batch and the tensors made from it.

What: `RolloutBatch` holds, per response (sequence), its prompt and response ids, the log-probs the
engine sampled with, its advantage, raw reward, length, whether it counts in the loss and whether
its group had equal rewards, plus the step's counters (groups, truncations, grader outcomes).
`micro_batches` splits a mini-batch into micro-batches (fixed counts, or a token budget);
`pack` turns a micro-batch into padded model inputs, `pack_flat` into one padding-free row;
`stack`, `response_mask` and `engine_logprobs` lay per-sequence values over the padded layout.

Rewards and dynamic sampling: `training_rewards` maps grader scores to the reward the advantage
reads (`algorithm.reward_values`, `overlong`); `drop_equal_groups`, `keep_first_groups` and
`with_copies` are the three edits dynamic sampling makes to a rank's batch, and `first_kept` and
`copy_sources` decide them from every rank's counts, so the groups trained on are the same for any
rank split. The counters always describe every generated rollout: metrics divide by what was
sampled, not by what was kept (issue 16: kept groups as the denominator gave rates above 1).

Why: the batch crosses rollout, dynamic sampling, mini-batching and metrics; as a dict of parallel
lists a typo was a KeyError at step 1 on a cluster. Sequences of one group are contiguous, so
`group` sequences starting at `g * group` are group g.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch

from .algos import soft_overlong_penalty

PER_SEQUENCE = ("prompt_ids", "response_ids", "engine_logprobs", "advantages", "scores", "lengths",
                "loss_mask", "zero_var_flags")


@dataclass
class RolloutBatch:
    prompt_ids: list[list[int]] = field(default_factory=list)
    response_ids: list[list[int]] = field(default_factory=list)
    engine_logprobs: list[list[float]] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # the grader's score s in [0, 1] (accuracy), not the reward
    lengths: list[int] = field(default_factory=list)
    loss_mask: list[bool] = field(default_factory=list)  # False: excluded from the loss (overlong masking)
    zero_var_flags: list[bool] = field(default_factory=list)  # the group is equal on dynamic sampling's metric
    # counters of every rollout that produced the batch (dropped groups included), summed over rounds
    truncated: int = 0
    groups: int = 0  # groups in the batch (copies included)
    groups_generated: int = 0  # groups generated and graded
    groups_dropped: int = 0  # dynamic sampling: equal on its metric, not trained on
    groups_unused: int = 0  # dynamic sampling: informative, but past prompts_per_step
    groups_copied: int = 0  # refill `copy`: duplicates added
    groups_zero_var: int = 0  # equal training rewards: no learning signal
    groups_solved: int = 0  # at least one response scored 1
    reward_sum: float = 0.0  # training rewards
    score_sum: float = 0.0  # grader scores
    length_sum: int = 0
    length_max: int = 0  # combined by max, not summed
    sandbox_errors: int = 0
    grader_errors: int = 0
    code_answers: int = 0
    answers: int = 0
    # the same on every rank (counted from the global batch), summed over rounds
    sampling_rounds: int = 0
    prompts_by_dataset: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.response_ids)

    def extend(self, other: "RolloutBatch") -> None:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "length_max":
                setattr(self, f.name, max(mine, theirs))
            elif isinstance(mine, dict):
                setattr(self, f.name, {k: mine.get(k, 0) + theirs.get(k, 0) for k in {**mine, **theirs}})
            else:
                setattr(self, f.name, mine + theirs)

    def select_groups(self, group: int, keep: Sequence[int]) -> "RolloutBatch":
        """The groups `keep` (indices, repeats allowed) with every counter unchanged; `groups` counts them."""
        out = RolloutBatch(**{f.name: getattr(self, f.name) for f in fields(self) if f.name not in PER_SEQUENCE})
        seqs = [g * group + j for g in keep for j in range(group)]
        for name in PER_SEQUENCE:
            values = getattr(self, name)
            setattr(out, name, [values[i] for i in seqs])
        out.groups = len(keep)
        return out


def training_rewards(scores: Sequence[float], truncated: Sequence[bool], lengths: Sequence[int], *,
                     correct: float, incorrect: float, overlong, max_tokens: int) -> torch.Tensor:
    """The reward each response trains on: the grader's score s mapped to incorrect + (correct -
    incorrect) * s (`algorithm.reward_values`), then `algorithm.overlong`: `zero_reward` sets a
    truncated response's reward to 0 (Dr. GRPO, ORZ), `soft_penalty` adds DAPO's length penalty
    (veRL's DAPO reward manager adds it to the score in the same way)."""
    s = torch.tensor(list(scores), dtype=torch.float64)
    rewards = incorrect + (correct - incorrect) * s
    if overlong.kind == "zero_reward":
        rewards = torch.where(torch.tensor(list(truncated), dtype=torch.bool), torch.zeros_like(rewards), rewards)
    elif overlong.kind == "soft_penalty":
        rewards = rewards + soft_overlong_penalty(torch.tensor(list(lengths)), max_tokens, overlong.buffer,
                                                  overlong.factor).to(rewards.dtype)
    return rewards


def equal_groups(values: torch.Tensor, group: int) -> list[bool]:
    """Per group of `group` consecutive values: whether they are all equal (no variance)."""
    g = values.view(-1, group)
    return [bool(x) for x in (g == g[:, :1]).all(dim=1)]


def drop_equal_groups(batch: RolloutBatch, group: int) -> RolloutBatch:
    """Dynamic sampling's filter: the groups whose `zero_var_flags` are off (DAPO keeps a group
    whose metric has a non-zero std); the dropped ones are counted in `groups_dropped`."""
    keep = [g for g in range(batch.groups) if not batch.zero_var_flags[g * group]]
    out = batch.select_groups(group, keep)
    out.groups_dropped += batch.groups - len(keep)
    return out


def first_kept(kept_per_rank: Sequence[int], room: int) -> list[int]:
    """How many of its kept groups each rank trains on when only `room` more fit the step: the
    first ones in global order (rank by rank), as DAPO keeps the first train_batch_size groups."""
    out, left = [], max(room, 0)
    for kept in kept_per_rank:
        out.append(min(kept, left))
        left -= out[-1]
    return out


def keep_first_groups(batch: RolloutBatch, group: int, n: int) -> RolloutBatch:
    """The first `n` groups; the rest are counted in `groups_unused`."""
    out = batch.select_groups(group, range(min(n, batch.groups)))
    out.groups_unused += batch.groups - out.groups
    return out


def copy_sources(kept_per_rank: Sequence[int], wanted: int) -> list[list[int]]:
    """Refill `copy` (POLARIS): per rank, which of its kept groups (local indices) to duplicate so
    the step has `wanted` groups. Copy j duplicates the global kept group j mod K in turn (POLARIS
    draws the informative groups at random; in turn spreads the copies evenly and needs no random
    state); none when nothing was kept."""
    total = sum(kept_per_rank)
    out: list[list[int]] = [[] for _ in kept_per_rank]
    if total == 0:
        return out
    owner = [(r, i) for r, kept in enumerate(kept_per_rank) for i in range(kept)]
    for j in range(max(wanted - total, 0)):
        rank, local = owner[j % total]
        out[rank].append(local)
    return out


def with_copies(batch: RolloutBatch, group: int, sources: Sequence[int]) -> RolloutBatch:
    """The batch with the groups `sources` appended once more each (counted in `groups_copied`)."""
    out = batch.select_groups(group, list(range(batch.groups)) + list(sources))
    out.groups_copied += len(sources)
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
