"""Rollouts a person can read: a train job's `samples.jsonl`, and the W&B run's `samples` table.

What: at the steps `tracking.samples.every` names (every, 2·every, ...), `SampleLog` appends
`tracking.samples.count` of that step's responses to `<train out>/samples.jsonl`, one JSON object a
line with exactly these keys (the report's sample browser reads them):
  stage (str)      the stage name             step (int)      the train step, as in metrics.jsonl
  prompt (str)     the prompt as rendered     response (str)  the response text
  reward (float)   the training reward (shaped: overlong, reward values)
  accuracy (float) the grader's score         status (str)    the grader's status
  outcome (str)    "correct" | "wrong" | "truncated" | "error"
  length (int)     response tokens            domain (str)    the prompt's domain
`read_samples(path)` is the reader.

Why: the metrics say that the reward moved, not what the model wrote. A fixed handful of
responses every few steps shows formats, truncations and grader failures as they appear.

How:
- Which responses: each gets a key, a hash of (seed, step, prompt index, sample index) and nothing
  about the rank that generated it, so every rank split picks the same responses. Responses are
  split by outcome, each outcome's ordered by key, and picked round robin over the outcomes
  present until `count`: a step with right, wrong and cut-off answers shows all three.
- Gathering: each rank keeps only its `count` lowest keys per outcome (the choice over all ranks
  can take none of its others), every rank gathers those (a collective: every rank calls `write`
  at every step), and rank 0 chooses and writes. The step's other texts never cross ranks.
- Outcome: `error` when the grader could not grade (status error, sandbox_error), else `truncated`
  when the response hit max_response_tokens, else `correct` at accuracy 1, else `wrong`.
- Writing: one append per sampled step, flushed and fsynced. A killed job can leave only an
  unfinished last line, which is not JSON (an object closes on the line's last character):
  `read_samples` drops it, and on resume `truncate_after(step)` rewrites the file without it and
  without the lines past the checkpoint's step, as the tracker does for metrics.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rlspec.compiler.spec import Samples
from rlspec.runtime.atomic import write_text_atomic
from rlspec.runtime.metricsfile import read_metrics

OUTCOMES = ("correct", "wrong", "truncated", "error")
GRADER_FAILED = ("error", "sandbox_error")  # as `scoring.FAILED` (not imported: it pulls in the graders)


@dataclass(frozen=True, order=True)
class Sample:
    """One line of samples.jsonl; `key` (the seeded order) and `index` (the prompt's place in the
    stage's prompts) are not written."""

    key: str
    index: int
    stage: str
    step: int
    prompt: str  # decoded for the shortlist only: "" until then
    response: str
    reward: float
    accuracy: float
    outcome: str
    status: str
    length: int
    domain: str

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        del out["key"], out["index"]
        return out


COLUMNS = [name for name in Sample.__dataclass_fields__ if name not in ("key", "index")]


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a samples.jsonl, in order (a killed job's unfinished last line is
    dropped; a bad line elsewhere raises: the file is corrupted)."""
    return read_metrics(path)


def outcome(accuracy: float, status: str, finish_reason: str | None) -> str:
    if status in GRADER_FAILED:
        return "error"
    if finish_reason == "length":
        return "truncated"
    return "correct" if accuracy >= 1.0 else "wrong"


def choose(candidates: Sequence[Sample], count: int) -> list[Sample]:
    """`count` samples, round robin over the outcomes present, each outcome's in key order; the
    chosen come back in key order."""
    queues = {o: sorted(c for c in candidates if c.outcome == o) for o in OUTCOMES}
    chosen: list[Sample] = []
    while len(chosen) < count and any(queues.values()):
        for o in OUTCOMES:
            if queues[o] and len(chosen) < count:
                chosen.append(queues[o].pop(0))
    return sorted(chosen)


def shortlist(candidates: Sequence[Sample], count: int) -> list[Sample]:
    """The `count` lowest keys of each outcome: all that `choose` over every rank's candidates can
    take from this rank's."""
    return [c for o in OUTCOMES for c in sorted(c for c in candidates if c.outcome == o)[:count]]


def sample_key(seed: int, step: int, prompt: int, sample: int) -> str:
    return hashlib.blake2b(f"{seed}:{step}:{prompt}:{sample}".encode(), digest_size=8).hexdigest()


class SampleLog:
    """A train job's samples.jsonl. `offer` takes a rollout's responses (cheaply ignored at steps
    that write none); `write(step)` after each step chooses, gathers and appends (every rank calls it)."""

    def __init__(self, path: Path, settings: Samples, *, stage: str, seed: int, main: bool,
                 prompt_text: Callable[[int], str], domain_of: Callable[[int], str], tracker: Any):
        self.path, self.settings, self.stage, self.seed, self.main = path, settings, stage, seed, main
        self.prompt_text, self.domain_of, self.tracker = prompt_text, domain_of, tracker
        self._pending: list[tuple[str, int, Any, Any, float]] = []

    def due(self, step: int) -> bool:
        return self.settings.every is not None and step % self.settings.every == 0

    def offer(self, step: int, idx: Sequence[int], responses: Sequence[Any], grades: Sequence[Any],
              rewards: Sequence[float]) -> None:
        """Responses of step `step` (1-based, as written) to the prompts `idx` (indices into the
        stage's prompts), `len(responses) // len(idx)` per prompt in order, their grades and
        training rewards."""
        if not self.due(step) or not idx:
            return
        group = len(responses) // len(idx)
        for n, (resp, grade, reward) in enumerate(zip(responses, grades, rewards)):
            prompt = idx[n // group]
            self._pending.append((sample_key(self.seed, step, prompt, n % group), prompt, resp, grade, float(reward)))

    def write(self, step: int) -> None:
        if not self.due(step):
            return
        from . import distributed
        local = [replace(c, prompt=self.prompt_text(c.index)) for c in shortlist(self._candidates(step),
                                                                                self.settings.count)]
        self._pending = []
        gathered = distributed.all_gather_objects(local)
        if not self.main:
            return
        chosen = choose([c for part in gathered for c in part], self.settings.count)
        rows = [c.row() for c in chosen]
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            fh.flush()
            os.fsync(fh.fileno())
        self.tracker.log_table("samples", COLUMNS, [[r[c] for c in COLUMNS] for r in rows], step)

    def truncate_after(self, step: int) -> None:
        """Drop lines past `step` (a run killed after its last checkpoint wrote them) and a torn last line."""
        if not self.main or not self.path.is_file():
            return
        keep = [row for row in read_samples(self.path) if row["step"] <= step]
        write_text_atomic(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))

    def _candidates(self, step: int) -> list[Sample]:
        # A prompt drawn twice in one step (an epoch boundary) repeats keys: the fields after `key`
        # (the response text among them) still order the samples the same way on every rank split.
        return [Sample(key=key, index=prompt, stage=self.stage, step=step, prompt="", response=resp.text,
                       reward=reward, accuracy=float(grade.reward), outcome=outcome(grade.reward, grade.status,
                                                                                    resp.finish_reason),
                       status=grade.status, length=len(resp.token_ids), domain=self.domain_of(prompt))
                for key, prompt, resp, grade, reward in self._pending]
