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
    def __init__(self, n: int, seed: int, prompts_per_step: int):
        if n == 0:
            raise ValueError("no prompts to train on: the stage's datasets are empty after curation/filtering")
        self.n = n
        self.seed = seed
        self.prompts_per_step = prompts_per_step
        self.epoch = 0
        self.position = 0
        self.retired: set[int] = set()  # prompts solved on every rollout of an earlier epoch
        self.solved_this_epoch: set[int] = set()
        self.seen_this_epoch: set[int] = set()
        self._order_cache: tuple[int, list[int]] | None = None

    def _order(self) -> list[int]:
        if self._order_cache is None or self._order_cache[0] != self.epoch:
            order = [i for i in range(self.n) if i not in self.retired]
            random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
            self._order_cache = (self.epoch, order)
        return self._order_cache[1]

    def next_batch(self, count: int | None = None, *, retire_solved: bool = False) -> list[int]:
        """The next `count` (default prompts_per_step) prompt indices, rolling into the next epoch."""
        count = count or self.prompts_per_step
        out: list[int] = []
        while len(out) < count:
            order = self._order()
            if self.position >= len(order):
                self._new_epoch(retire_solved)
                if not self._order():
                    raise ValueError("every prompt was retired as solved; nothing left to train on")
                continue
            take = order[self.position: self.position + count - len(out)]
            out.extend(take)
            self.position += len(take)
        return out

    def _new_epoch(self, retire_solved: bool) -> None:
        if retire_solved:
            self.retired |= self.solved_this_epoch
        self.epoch += 1
        self.position = 0
        self.solved_this_epoch = set()
        self.seen_this_epoch = set()

    def record(self, index: int, all_solved: bool) -> None:
        """Remember whether a prompt was solved on every rollout this epoch (for filter_solved)."""
        if index in self.seen_this_epoch:
            if not all_solved:
                self.solved_this_epoch.discard(index)
            return
        self.seen_this_epoch.add(index)
        if all_solved:
            self.solved_this_epoch.add(index)

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "retired": sorted(self.retired),
                "solved_this_epoch": sorted(self.solved_this_epoch), "seen_this_epoch": sorted(self.seen_this_epoch)}

    def load(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.retired = set(state["retired"])
        self.solved_this_epoch = set(state["solved_this_epoch"])
        self.seen_this_epoch = set(state["seen_this_epoch"])
        self._order_cache = None


def steps_for(stage: TrainJob, n_prompts: int) -> int:
    """Optimiser steps the stage asks for: `steps`, or `epochs` over the prompts."""
    if stage.steps is not None:
        return stage.steps
    assert stage.epochs is not None  # the spec's steps_or_epochs check
    return stage.epochs * -(-n_prompts // stage.prompts_per_step)
