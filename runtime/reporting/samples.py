"""The report's sample browser: the rollouts the train jobs wrote, readable and filterable offline.

What: `read_samples(path, warnings)` reads a train job's `samples.jsonl` (one JSON object per
line: `stage`, `step`, `prompt`, `response`, `reward`, `accuracy`, `outcome` (correct / wrong /
truncated / error), `status`, `length`, `domain`; written by the trainer every
`tracking.samples.every` steps). `samples_html(samples, cells_of, stages)` is the HTML section: one
table, a row per sample with its stage, step, cells, outcome, reward, accuracy, length, domain,
prompt and response, and two selects (outcome, stage) whose inline script hides the rows that do
not match and says how many are shown. `samples_markdown` gives the counts per stage and outcome.

Why: a reward curve says that a run learns, its rollouts say what it learns (formatting tricks,
truncation, a grader that fails), and a person reads them by outcome and stage.

How: plain HTML and a dozen lines of inline JavaScript: no network, no CDN, so the report opens
from a file anywhere. A long run writes many samples with long responses, so the page holds at most
`MAX_ROWS` per train job (every k-th row when there are more; the page says which) and each text
at most `MAX_CHARS` characters (the cut is marked): the report stays a page a browser opens.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from rlspec.runtime.grpo.samples import COLUMNS, OUTCOMES  # the writer's contract, one definition

KEYS = tuple(COLUMNS)
MAX_ROWS = 1000  # per train job: 16 samples every 10 steps of a 600-step stage
MAX_CHARS = 4000  # per prompt or response: the start of a 32K-token response is what a reader scans


def read_samples(path: Path, warnings: list[str]) -> dict[str, Any]:
    """{"rows", "total", "stride"}: the rows that follow the contract (at most MAX_ROWS, every
    `stride`-th), how many the file holds. A torn last line (a running job) is skipped silently;
    other bad lines become warnings."""
    rows: list[dict] = []
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            row = _parse(line)
            if row is not None:
                rows.append(row)
            elif line.strip() and n != len(lines):
                warnings.append(f"{path}: line {n} is not a sample (JSON with keys {', '.join(KEYS)}), skipped")
    stride = max(1, math.ceil(len(rows) / MAX_ROWS))
    return {"rows": rows[::stride], "total": len(rows), "stride": stride}


def _parse(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(row, dict) or any(k not in row for k in KEYS) or row["outcome"] not in OUTCOMES:
        return None
    return {k: row[k] for k in KEYS}


def _clip(text: str) -> str:
    more = len(text) - MAX_CHARS
    return text if more <= 0 else f"{text[:MAX_CHARS]}\n… ({more} more characters)"


def _text_cell(text: str) -> str:
    """The first line as a summary, the whole (clipped) text when opened."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    short = first[:90] + ("…" if len(first) > 90 or "\n" in text.strip() else "")
    return f"<td class=\"text\"><details><summary>{html.escape(short)}</summary><pre>{html.escape(_clip(text))}</pre>" \
           "</details></td>"


SCRIPT = """<script>
(() => {
  const rows = [...document.querySelectorAll("#samples tbody tr")];
  const outcome = document.getElementById("sample-outcome"), stage = document.getElementById("sample-stage");
  const count = document.getElementById("sample-count");
  function apply() {
    let shown = 0;
    for (const r of rows) {
      const keep = (!outcome.value || r.dataset.outcome === outcome.value) && (!stage.value || r.dataset.stage === stage.value);
      r.hidden = !keep;
      shown += keep ? 1 : 0;
    }
    count.textContent = `${shown} of ${rows.length} samples shown`;
  }
  outcome.addEventListener("change", apply);
  stage.addEventListener("change", apply);
  apply();
})();
</script>"""

CSS = """
#samples td:nth-child(3), #samples td.text, #samples th { text-align: left; } #samples td.text { width: 40%; min-width: 14em; }
#samples pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.85em; max-height: 30em; overflow: auto; }
#samples summary { cursor: pointer; overflow-wrap: anywhere; } .filters select { margin: 0 1em 0 0.3em; }
#samples td.correct { background: #d9f2d9; } #samples td.wrong { background: #fde2e2; }
#samples td.truncated { background: #fff4e0; } #samples td.error { background: #e6e0f8; }
"""


def _select(ident: str, label: str, values: list[str]) -> str:
    options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
    return f'<label>{label}<select id="{ident}"><option value="">all</option>{options}</select></label>'


def samples_html(samples: dict[str, dict], cells_of: dict[str, list[str]], labels: dict[str, str]) -> str:
    """The browser section. `samples`: train job id -> `read_samples` result; `cells_of`: train job
    id -> labels of the grid cells that use it; `labels`: job id -> job label."""
    if not samples:
        return "<h2>Samples</h2><p>No rollout samples yet (train jobs write them every tracking.samples.every steps).</p>"
    stages = list(dict.fromkeys(r["stage"] for found in samples.values() for r in found["rows"]))
    header = ["stage", "step", "cells", "outcome", "reward", "accuracy", "length", "domain", "prompt", "response"]
    body = []
    for jid, found in samples.items():
        cells = ", ".join(cells_of.get(jid, []))
        for r in found["rows"]:
            body.append(f'<tr data-outcome="{r["outcome"]}" data-stage="{html.escape(str(r["stage"]))}">'
                        f'<td>{html.escape(str(r["stage"]))}</td><td>{int(r["step"])}</td><td>{html.escape(cells)}</td>'
                        f'<td class="{r["outcome"]}" title="{html.escape(str(r["status"]))}">{r["outcome"]}</td>'
                        f'<td>{float(r["reward"]):.3f}</td><td>{float(r["accuracy"]):.2f}</td><td>{int(r["length"])}</td>'
                        f'<td>{html.escape(str(r["domain"]))}</td>{_text_cell(str(r["prompt"]))}'
                        f'{_text_cell(str(r["response"]))}</tr>')
    thinned = [f"{labels.get(jid, jid)}: every {f['stride']}th of {f['total']}" for jid, f in samples.items()
               if f["stride"] > 1]
    note = f" Showing {'; '.join(thinned)} samples." if thinned else ""
    return "\n".join([
        "<h2>Samples</h2>",
        f"<p>Rollouts the train jobs wrote (prompt and response open on a click; texts over {MAX_CHARS} characters "
        f"are cut).{html.escape(note)}</p>",
        f'<p class="filters">{_select("sample-outcome", "outcome", list(OUTCOMES))}'
        f'{_select("sample-stage", "stage", [str(s) for s in stages])}<span id="sample-count"></span></p>',
        '<table id="samples"><thead><tr>' + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead><tbody>",
        *body, "</tbody></table>", SCRIPT])


def outcome_rows(samples: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Samples per stage and outcome (the Markdown page's view of the browser)."""
    counts: dict[str, dict[str, int]] = {}
    for found in samples.values():
        for r in found["rows"]:
            by = counts.setdefault(str(r["stage"]), dict.fromkeys(OUTCOMES, 0))
            by[r["outcome"]] += 1
    return ["stage", "samples", *OUTCOMES], [[s, str(sum(by.values())), *(str(by[o]) for o in OUTCOMES)]
                                             for s, by in counts.items()]
