"""The curation funnel: apply filters in order and account for every record.

What: `apply_filters(records, filters, ctx)` runs each filter on what the previous ones kept and
returns the survivors plus one `Step` per filter: records in / kept / dropped, seconds, the count per
reason (numbers folded, so "5 test(s) < min 6" and "2 test(s) < min 6" count together) and a few
dropped examples. `funnel_json` / `funnel_markdown` turn the steps into `funnel.json` / `funnel.md`,
which `rlspec report` shows.

Why: curation silently eating a dataset is the classic failure; the funnel makes every drop visible
and checkable (in = kept + dropped at every step, and each step's in = the previous step's kept).

How: filters return one verdict per record (a reason or None); this module does the bookkeeping so
no filter has to. A filter that cannot run raises FilterError; it is re-raised as `CurateError`
naming the dataset and the filter, as is a filter that leaves nothing. A dataset whose chain is cut
by a `pass_rate` filter runs in several jobs (`sample` jobs, then `curate`); each starts from its
upstream job's `Funnel` and numbers its steps after it, so the last job's funnel is the whole chain,
numbered as the dataset's `filters` are (a pass-rate's "sampled" step and its cut share its number).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .context import Context, FilterError
from .filters import get_filter

EXAMPLES = 3
PROMPT_CHARS = 160


class CurateError(Exception):
    """A curation failure the user must fix; the message names the dataset and the step. `steps`
    holds the funnel up to the failure, so it can still be written for the user to read."""

    def __init__(self, message: str, steps: list["Step"] | None = None):
        super().__init__(message)
        self.steps = steps or []


@dataclass
class Step:
    filter: str
    index: int  # position in the dataset's `filters` (1-based, as a person counts)
    records_in: int
    kept: int = 0
    dropped: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)


SAMPLED = "sampled"  # the step of a `sample` job that measured every record (drops none: the cut does)


@dataclass
class Funnel:
    """A dataset's funnel so far: its sources' record counts and every step run on them, by this job
    and by the jobs upstream of it."""

    sources: list[dict[str, Any]]
    steps: list[Step]

    @property
    def input(self) -> int:
        return sum(s["records"] for s in self.sources)

    def next_filter_index(self) -> int:
        """The number of this job's first filter: after an upstream sample job, its pass-rate cut,
        which is the same filter of the dataset as the "sampled" step it follows."""
        return self.steps[-1].index if self.steps else 1

    def then(self, steps: list[Step]) -> "Funnel":
        return Funnel(self.sources, self.steps + steps)


def sampled_step(funnel: Funnel, records: int, seconds: float) -> Step:
    """A `sample` job's measurement as a funnel step: numbered as the dataset's `pass_rate` filter
    (one after the last step), every record kept, each with its measurement (or why it has none)."""
    index = funnel.steps[-1].index + 1 if funnel.steps else 1
    return Step(SAMPLED, index, records, kept=records, dropped=0, seconds=round(seconds, 3))


def where(ctx: Context, index: int, kind: str) -> str:
    return f"dataset {ctx.dataset!r}, filter {index} ({kind})"


def apply_filters(records: list[dict], filters: list, ctx: Context, first: int = 1) -> tuple[list[dict], list[Step]]:
    """Run `filters` in order, numbered from `first` (see `Funnel.next_filter_index`)."""
    steps: list[Step] = []
    for index, cfg in enumerate(filters, first):
        step = Step(cfg.kind, index, len(records))
        start = time.perf_counter()
        try:
            verdicts = get_filter(cfg.kind)(records, cfg, ctx)
        except FilterError as exc:
            raise CurateError(f"{where(ctx, index, cfg.kind)}: {exc}", steps) from None
        assert len(verdicts) == len(records), f"filter {cfg.kind} gave {len(verdicts)} verdicts for {len(records)}"
        kept = [r for r, why in zip(records, verdicts) if why is None]
        _account(step, records, verdicts, time.perf_counter() - start)
        steps.append(step)
        records = kept
        if not records:
            raise CurateError(f"{where(ctx, index, cfg.kind)}: no records left ({step.records_in} in, all dropped; "
                              f"top reasons: {_top(step.reasons)}); loosen this filter or add data",
                              steps)
    return records, steps


def _account(step: Step, records: list[dict], verdicts: list[str | None], seconds: float) -> None:
    reasons: Counter[str] = Counter()
    for record, why in zip(records, verdicts):
        if why is None:
            continue
        reasons[_reason_kind(why)] += 1
        if len(step.examples) < EXAMPLES:
            step.examples.append({"id": record["id"], "prompt": _short(record["prompt"]), "reason": why})
    step.dropped = sum(reasons.values())
    step.kept = step.records_in - step.dropped
    step.seconds = round(seconds, 3)
    step.reasons = dict(reasons.most_common())


_NUMBER = re.compile(r"(?<![\w-])\d+(?:\.\d+)?(?![\w-])")  # not inside dates (2024-08-01) or names (aime24)


def _reason_kind(why: str) -> str:
    """Reasons read `<kind>: <specifics>`; the kind, with its numbers folded, is what is counted."""
    return _NUMBER.sub("N", why.split(": ", 1)[0])


def _top(reasons: dict[str, int], n: int = 3) -> str:
    return "; ".join(f"{k} ({v})" for k, v in list(reasons.items())[:n]) or "none"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PROMPT_CHARS else text[: PROMPT_CHARS - 1] + "…"


def funnel_json(dataset: str, domain: str, sources: list[dict[str, Any]], steps: list[Step], output: int,
                error: str | None = None) -> dict:
    """The funnel document; `error` says why a failed job stopped (its `output` is then 0)."""
    return {"dataset": dataset, "domain": domain, "sources": sources, "input": sum(s["records"] for s in sources),
            "steps": [asdict(s) for s in steps], "output": output, "error": error}


def funnel_markdown(funnel: dict[str, Any]) -> str:
    lines = [f"# Curation funnel: {funnel['dataset']} ({funnel['domain']})", "",
             "| source | records |", "|---|---:|"]
    lines += [f"| `{s['uri']}` | {s['records']} |" for s in funnel["sources"]]
    lines += ["", "| # | filter | in | kept | dropped | seconds | top reasons |", "|---:|---|---:|---:|---:|---:|---|"]
    for s in funnel["steps"]:
        lines.append(f"| {s['index']} | {s['filter']} | {s['records_in']} | {s['kept']} | {s['dropped']} | "
                     f"{s['seconds']} | {_top(s['reasons']).replace('|', '/')} |")
    if funnel.get("error"):
        lines += ["", f"**Stopped: {funnel['error']}**", ""]
    else:
        lines += ["", f"**{funnel['input']} records in, {funnel['output']} out.**", ""]
    examples = [(s, e) for s in funnel["steps"] for e in s["examples"]]
    if examples:
        lines += ["## Dropped examples", ""]
        lines += [f"- **{s['filter']}** `{e['id']}`: {e['reason']}  \n  > {e['prompt']}" for s, e in examples]
        lines.append("")
    return "\n".join(lines)
