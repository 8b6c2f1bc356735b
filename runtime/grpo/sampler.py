"""Which prompts each step trains on: a seeded shuffle per epoch, continued across epochs.

The sampler's state (epoch, position, prompts retired by `filter_solved`) is small and saved in
every checkpoint, so a resumed run sees exactly the prompts an uninterrupted run would have seen.
Every rank builds the same global batch and takes its own contiguous share, so a group of
responses never spans ranks.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlspec.compiler.jobs import TrainJob


class PromptSampler:
    """`retire_solved` (`algorithm.filter_solved`): a prompt solved on every rollout of an epoch is
    not drawn again. Its outcome may arrive after the next epoch began (a batch that spans the
    boundary): it is retired then, and skipped if the new epoch's order still holds it."""

    def __init__(self, n: int, seed: int, prompts_per_step: int, *, retire_solved: bool = False):
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

    def record(self, index: int, all_solved: bool) -> None:
        """Remember whether a prompt was solved on every rollout (for filter_solved)."""
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
                "drawn": sorted(self.drawn.items()), "epoch_sizes": self.epoch_sizes}

    def load(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.retired = set(state["retired"])
        # checkpoints written before late retirement existed retired only at epoch boundaries
        self.retired_at_epoch_start = set(state.get("retired_at_epoch_start", state["retired"]))
        self.solved_this_epoch = set(state["solved_this_epoch"])
        self.seen_this_epoch = set(state["seen_this_epoch"])
        self.drawn = {int(i): int(e) for i, e in state.get("drawn", [])}
        self.epoch_sizes = [int(x) for x in state.get("epoch_sizes", [self.n] * (self.epoch + 1))]
        self._order_cache = None


def steps_for(stage: TrainJob, n_prompts: int) -> int:
    """Optimiser steps the stage asks for: `steps`, or `epochs` over the prompts."""
    if stage.steps is not None:
        return stage.steps
    assert stage.epochs is not None  # the spec's steps_or_epochs check
    return stage.epochs * -(-n_prompts // stage.prompts_per_step)
