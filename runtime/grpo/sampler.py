"""Which prompts each step trains on, and what the run learnt about each prompt.

What: `PromptSampler` is a seeded shuffle per epoch, continued across epochs, with `filter_solved`
retirement; `MixedSampler` (`stages[].dataset_weights`) draws each step's prompts from several
datasets in fixed proportions, one `PromptSampler` per dataset. Both tally every prompt's grader
scores (`PromptAccuracy`), which the train job writes as `prompt_stats.json` (merged with the
earlier stages' file it receives from its input model's job) and a later stage's
`drop_prompts_above_accuracy` prunes by (POLARIS).

How: the sampler's state (epoch, position, retired prompts, mixing counts, tallies) is small and
saved in every checkpoint, so a resumed run sees exactly the prompts an uninterrupted run would
have seen. Every rank builds the same global batch and takes its own contiguous share, so a group
of responses never spans ranks; the mixing sequence depends only on how many prompts were drawn
(never on the rank split or the batch boundaries).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlspec.compiler.jobs import TrainJob

STATS_FILE = "prompt_stats.json"


class PromptAccuracy:
    """Per prompt index: the sum of its rollouts' grader scores and how many rollouts it had."""

    def __init__(self) -> None:
        self.tally: dict[int, list[float]] = {}

    def add(self, index: int, score_sum: float, rollouts: int) -> None:
        if rollouts == 0:  # nothing to tally (MixedSampler's per-dataset parts: it tallies itself)
            return
        t = self.tally.setdefault(index, [0.0, 0])
        t[0] += score_sum
        t[1] += rollouts

    def state(self) -> list[list[float]]:
        return [[i, s, n] for i, (s, n) in sorted(self.tally.items())]

    def load(self, state: list[list[float]]) -> None:
        self.tally = {int(i): [float(s), int(n)] for i, s, n in state}


class PromptSampler:
    """`retire_solved` (`algorithm.filter_solved`): a prompt solved on every rollout of an epoch is
    not drawn again. Its outcome may arrive after the next epoch began (a batch that spans the
    boundary): it is retired then, and skipped if the new epoch's order still holds it."""

    def __init__(self, n: int, seed: int | str, prompts_per_step: int, *, retire_solved: bool = False):
        if n == 0:
            raise ValueError("no prompts to train on: the stage's datasets are empty after curation/filtering")
        self.n = n
        self.seed = seed
        self.prompts_per_step = prompts_per_step
        self.retire_solved = retire_solved
        self.epoch = 0
        self.position = 0
        self.retired: set[int] = set()  # prompts solved on every rollout of an earlier epoch
        self.retired_at_epoch_start: set[int] = set()  # what this epoch's order leaves out
        self.solved_this_epoch: set[int] = set()
        self.seen_this_epoch: set[int] = set()
        self.drawn: dict[int, int] = {}  # prompt -> epoch of its draw, until its outcome is recorded
        self.epoch_sizes: list[int] = [n]  # prompts in each started epoch's order
        self.accuracy = PromptAccuracy()
        self._order_cache: tuple[int, list[int]] | None = None

    def _order(self) -> list[int]:
        if self._order_cache is None or self._order_cache[0] != self.epoch:
            order = [i for i in range(self.n) if i not in self.retired_at_epoch_start]
            random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
            self._order_cache = (self.epoch, order)
        return self._order_cache[1]

    def next_batch(self, count: int | None = None) -> list[int]:
        """The next `count` (default prompts_per_step) prompt indices, rolling into the next epoch."""
        count = count or self.prompts_per_step
        out: list[int] = []
        while len(out) < count:
            order = self._order()
            if self.position >= len(order):
                self._new_epoch()
                if not self._order():
                    raise ValueError("every prompt was retired as solved (algorithm.filter_solved); nothing left "
                                     "to train on: use `epochs` instead of `steps`, or fewer steps")
                continue
            i = order[self.position]
            self.position += 1
            if i in self.retired:  # retired after this epoch's order was made
                continue
            out.append(i)
            self.drawn[i] = self.epoch
        return out

    def _new_epoch(self) -> None:
        if self.retire_solved:
            self.retired |= self.solved_this_epoch
        self.epoch += 1
        self.position = 0
        self.retired_at_epoch_start = set(self.retired)
        self.solved_this_epoch = set()
        self.seen_this_epoch = set()
        self.epoch_sizes.append(self.n - len(self.retired))

    def record(self, index: int, all_solved: bool, score_sum: float = 0.0, rollouts: int = 0) -> None:
        """Remember whether a prompt was solved on every rollout (for filter_solved) and tally its
        rollouts' grader scores."""
        self.accuracy.add(index, score_sum, rollouts)
        epoch = self.drawn.pop(index, self.epoch)
        if epoch < self.epoch:  # drawn before the boundary its batch crossed: that epoch is over
            if all_solved and self.retire_solved:
                self.retired.add(index)
            return
        if index in self.seen_this_epoch:
            if not all_solved:
                self.solved_this_epoch.discard(index)
            return
        self.seen_this_epoch.add(index)
        if all_solved:
            self.solved_this_epoch.add(index)

    def planned_steps(self, epochs: int) -> int:
        """Steps of a stage of `epochs` epochs, as far as is known now: each finished epoch's steps,
        and the current epoch's size for it and every later one (retirement only shrinks them).
        Without retirement this is `epochs x ceil(n / prompts_per_step)`, as `steps_for` says."""
        per = self.prompts_per_step
        done = self.epoch_sizes[:-1][:epochs]
        current = self.epoch_sizes[-1] - len(self.retired - self.retired_at_epoch_start)
        return sum(-(-size // per) for size in done) + max(0, epochs - len(done)) * -(-max(current, 0) // per)

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "retired": sorted(self.retired),
                "retired_at_epoch_start": sorted(self.retired_at_epoch_start),
                "solved_this_epoch": sorted(self.solved_this_epoch), "seen_this_epoch": sorted(self.seen_this_epoch),
                "drawn": sorted(self.drawn.items()), "epoch_sizes": self.epoch_sizes,
                "accuracy": self.accuracy.state()}

    def load(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.retired = set(state["retired"])
        # checkpoints written before late retirement existed retired only at epoch boundaries
        self.retired_at_epoch_start = set(state.get("retired_at_epoch_start", state["retired"]))
        self.solved_this_epoch = set(state["solved_this_epoch"])
        self.seen_this_epoch = set(state["seen_this_epoch"])
        self.drawn = {int(i): int(e) for i, e in state.get("drawn", [])}
        self.epoch_sizes = [int(x) for x in state.get("epoch_sizes", [self.n] * (self.epoch + 1))]
        self.accuracy.load(state.get("accuracy", []))  # checkpoints before the tallies had none
        self._order_cache = None


class MixedSampler:
    """`stages[].dataset_weights` (Skywork-OR1's data mixture): prompt slot t of the stage goes to
    the dataset furthest below its share, argmax_d (w_d (t + 1) - drawn_d), lowest index on a tie,
    so every dataset's running count stays within one prompt of w_d t whatever the batch size, and
    the sequence depends only on t (rank split, refill rounds and resumes cannot change it). Each
    dataset has its own `PromptSampler` (own seeded order and epochs, `filter_solved` retiring
    within it). The stage's epoch is a prompt count, not a pass: epoch = prompts drawn // all
    prompts, so `epochs` gives a fixed step count (see `Stage.dataset_weights`). Indices are the
    trainer's: dataset d holds [offsets[d], offsets[d] + sizes[d])."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], seed: int, prompts_per_step: int, *,
                 retire_solved: bool = False):
        empty = [d for d, n in enumerate(sizes) if n == 0]
        if empty:
            raise ValueError(f"dataset {empty[0] + 1} of the stage has no prompts after curation/filtering, but "
                             "dataset_weights gives it a share of every step; give it data or remove it")
        total = float(sum(weights))
        self.weights = [w / total for w in weights]
        self.sizes = list(sizes)
        self.offsets = [sum(sizes[:d]) for d in range(len(sizes))]
        self.prompts_per_step = prompts_per_step
        self.parts = [PromptSampler(n, f"{seed}:{d}", prompts_per_step, retire_solved=retire_solved)
                      for d, n in enumerate(sizes)]
        self.drawn = [0] * len(sizes)  # prompts drawn from each dataset
        self.accuracy = PromptAccuracy()

    @property
    def epoch(self) -> int:
        return sum(self.drawn) // sum(self.sizes)

    def next_batch(self, count: int | None = None) -> list[int]:
        """The next `count` (default prompts_per_step) prompt indices, in slot order."""
        out = []
        for _ in range(count or self.prompts_per_step):
            t = sum(self.drawn)
            d = max(range(len(self.parts)), key=lambda k: (self.weights[k] * (t + 1) - self.drawn[k], -k))
            self.drawn[d] += 1
            out.append(self.offsets[d] + self.parts[d].next_batch(1)[0])
        return out

    def dataset_of(self, index: int) -> int:
        return max(d for d in range(len(self.offsets)) if self.offsets[d] <= index)

    def record(self, index: int, all_solved: bool, score_sum: float = 0.0, rollouts: int = 0) -> None:
        self.accuracy.add(index, score_sum, rollouts)
        d = self.dataset_of(index)
        self.parts[d].record(index - self.offsets[d], all_solved)

    def planned_steps(self, epochs: int) -> int:
        """Fixed by the stage's size: an epoch is that many prompts whatever was retired."""
        return epochs * -(-sum(self.sizes) // self.prompts_per_step)

    def state(self) -> dict[str, Any]:
        return {"drawn": self.drawn, "parts": [p.state() for p in self.parts], "accuracy": self.accuracy.state()}

    def load(self, state: dict[str, Any]) -> None:
        self.drawn = [int(x) for x in state["drawn"]]
        for part, saved in zip(self.parts, state["parts"]):
            part.load(saved)
        self.accuracy.load(state["accuracy"])


# ----------------------------------------------------------------------------------- prompt stats


def prompt_key(record: dict[str, Any]) -> tuple[str, str]:
    """A prompt's identity across stages and jobs: its source (the curated dataset's uri) and the
    record id curation gave it (unique within a dataset, the same in every curate job of the source)."""
    return str(record["source"]), str(record["id"])


def read_prompt_stats(folder: str | Path) -> dict[tuple[str, str], tuple[float, int]]:
    """The per-prompt (score sum, rollouts) an earlier train job wrote into `folder`; {} when the
    folder holds none (the input model is not a train job's: the first stage)."""
    path = Path(folder) / STATS_FILE
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text(encoding="utf-8"))["prompts"]
    return {(r["source"], r["id"]): (float(r["score_sum"]), int(r["rollouts"])) for r in rows}


def merged_stats(earlier: dict[tuple[str, str], tuple[float, int]], records: Sequence[dict[str, Any]],
                 accuracy: PromptAccuracy) -> dict[tuple[str, str], tuple[float, int]]:
    """The earlier stages' tallies plus this stage's (trainer indices into `records`)."""
    out = dict(earlier)
    for i, (score_sum, rollouts) in accuracy.tally.items():
        key = prompt_key(records[i])
        s, n = out.get(key, (0.0, 0))
        out[key] = (s + score_sum, n + int(rollouts))
    return out


def write_prompt_stats(path: Path, stats: dict[tuple[str, str], tuple[float, int]]) -> None:
    from rlspec.runtime.atomic import write_json_atomic
    rows = [{"source": src, "id": rid, "score_sum": s, "rollouts": n, "accuracy": s / n if n else None}
            for (src, rid), (s, n) in sorted(stats.items())]
    write_json_atomic(path, {"prompts": rows})


def above_accuracy(records: Sequence[dict[str, Any]], stats: dict[tuple[str, str], tuple[float, int]],
                   threshold: float) -> list[bool]:
    """Per record: whether its accuracy so far (score sum / rollouts) is above `threshold`;
    prompts with no rollouts yet are kept."""
    out = []
    for rec in records:
        s, n = stats.get(prompt_key(rec), (0.0, 0))
        out.append(n > 0 and s / n > threshold)
    return out


def steps_for(stage: TrainJob, n_prompts: int) -> int:
    """Optimiser steps the stage asks for: `steps`, or `epochs` over the prompts."""
    if stage.steps is not None:
        return stage.steps
    assert stage.epochs is not None  # the spec's steps_or_epochs check
    return stage.epochs * -(-n_prompts // stage.prompts_per_step)
