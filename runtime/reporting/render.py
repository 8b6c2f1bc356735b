"""The report's pages: index.html, README.md and summary.json, with numbers formatted once, here.

What: `write_pages(out, results, summary)` writes summary.json, index.html (results table with
the best cell highlighted and published reference rows, the best checkpoint per benchmark and every
evaluated checkpoint against the step, training table, figures, the sample browser, curation
funnels, unfinished jobs, warnings) and README.md (the same in Markdown, with sample counts instead
of the browser). The table builders (`result_rows`, `train_rows`, `funnel_rows`, `best_rows`,
`checkpoint_rows`) are shared with the W&B summary run.

Why: one set of table rows for every output keeps HTML, Markdown and W&B showing the same cells.

How: each file is written atomically (`runtime/atomic.py`), so a reader of a report folder never
sees half a page.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

from rlspec.runtime.atomic import write_json_atomic, write_text_atomic
from rlspec.runtime.reporting.checkpoints import run_checkpoints, score
from rlspec.runtime.reporting.collect import Results
from rlspec.runtime.reporting.samples import CSS as SAMPLES_CSS
from rlspec.runtime.reporting.samples import outcome_rows, samples_html


def write_pages(out: Path, results: Results, summary: dict[str, Any]) -> None:
    """summary.json, index.html and README.md into the report folder `out`."""
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "index.html", render_html(results, summary))
    write_text_atomic(out / "README.md", render_markdown(results, summary))


def fmt(entry: dict | None) -> str:
    if not entry:
        return "–"
    return f"{entry['value']:.1f} ± {entry['stderr']:.1f}"


def fmt_reward(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def result_rows(summary: dict[str, Any]) -> tuple[list[str], list[dict]]:
    """The results table: header, then one row per (cell, stage) and one per reference. Each row:
    cells (strings), `best` (column indexes to highlight), `kind` (result / reference)."""
    columns = [(b, m) for b, info in summary["benchmarks"].items() for m in info["metrics"]]
    header = ["cell", "stage"] + [f"{b} {m}" for b, m in columns]
    rows = []
    for cell in summary["cells"]:
        for stage in cell["stages"]:
            texts, best = [cell["label"], stage["stage"]], []
            for i, (b, m) in enumerate(columns):
                entry = stage["benchmarks"].get(b)
                texts.append("not run" if entry is None else (fmt(entry["metrics"].get(m)) if entry["done"]
                                                                 else "missing"))
                if m == summary["best"].get(b, {}).get("metric") and is_best(summary["best"][b], cell, stage):
                    best.append(2 + i)
            rows.append({"cells": texts, "best": best, "kind": "result"})
    by_model: dict[str, dict[str, float]] = {}  # one row per published model, its numbers side by side
    for b, refs in summary["references"].items():
        for ref in refs:
            by_model.setdefault(ref["model"], {})[b] = ref["value"]
    for model, values in by_model.items():
        texts = [model, "published"]
        for b, m in columns:
            shown = b in values and m == summary["benchmarks"][b]["headline"]
            texts.append(f"{values[b]:.1f}" if shown else "")
        rows.append({"cells": texts, "best": [], "kind": "reference"})
    return header, rows


def is_best(win: dict[str, Any], cell: dict, stage: dict) -> bool:
    tops = [{"cell": win["cell"], "stage": win["stage"]}, *win["ties"]]
    return win["decisive"] and {"cell": cell["label"], "stage": stage["stage"]} in tops


def train_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["cell", "stage", "steps", "first reward", "last reward", "status"]
    rows = []
    for cell in summary["cells"]:
        for stage in cell["stages"]:
            t = stage.get("train")
            if t is not None:
                rows.append([cell["label"], stage["stage"], str(t["steps"] or 0), fmt_reward(t["first_reward_mean"]),
                             fmt_reward(t["last_reward_mean"]), "done" if t["done"] else "not finished"])
    return header, rows


def best_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per benchmark, the best checkpoint of the run: where it is (cell, stage, step into the stage
    and since the run began) and the model folder, relative to the build folder."""
    header = ["benchmark", "metric", "value", "cell", "stage", "step", "run step", "model", "ties"]
    rows = [[b, w["metric"], fmt(w), w["cell"], w["stage"], str(w["step"]) + ("" if w["end"] else " (inside)"),
             str(w["run_step"]), w["model"] or "–", f"{w['ties']} of {w['checkpoints']}"]
            for b, w in summary["best_checkpoints"].items()]
    return header, rows


def checkpoint_rows(summary: dict[str, Any]) -> tuple[list[str], list[dict]]:
    """Every evaluated checkpoint (initial, inside stages, stage ends) with each benchmark's headline
    score; the best checkpoint per benchmark highlighted."""
    benches = {b: info["headline"] for b, info in summary["benchmarks"].items()}
    header = ["cell", "stage", "step", "run step"] + [f"{b} {m}" for b, m in benches.items()]
    rows = []
    for cell in summary["cells"]:
        for p in run_checkpoints(cell):
            texts = [cell["label"], p["stage"], str(p["step"]) + ("" if p["end"] else " (inside)"), str(p["run_step"])]
            best = []
            for i, (b, m) in enumerate(benches.items()):
                entry = p["benchmarks"].get(b)
                texts.append("not run" if entry is None else (fmt(score(p, b, m)) if entry["done"] else "missing"))
                win = summary["best_checkpoints"].get(b)
                if win is not None and entry is not None and win["job"] == entry["job"] and win["cell"] == cell["label"]:
                    best.append(4 + i)
            rows.append({"cells": texts, "best": best, "kind": "result"})
    return header, rows


def has_inside_evaluations(summary: dict[str, Any]) -> bool:
    return any(s.get("evaluations") for c in summary["cells"] for s in c["stages"])


def cells_of_train_jobs(res: Results) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cell in res.cells:
        for stage in cell["stages"]:
            out.setdefault(stage["train"], []).append(cell["label"])
    return out


def funnel_rows(funnel: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["#", "filter", "in", "kept", "dropped", "top reasons"]
    rows = [["", "sources", "", str(funnel["input"]), "", ""]]
    for s in funnel["steps"]:
        reasons = "; ".join(f"{k} ({v})" for k, v in list(s.get("reasons", {}).items())[:3])
        rows.append([str(s["index"]), s["filter"], str(s["records_in"]), str(s["kept"]), str(s["dropped"]), reasons])
    return header, rows


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, td:nth-child(2), th:first-child, th:nth-child(2) { text-align: left; }
td.best { background: #d9f2d9; font-weight: bold; }
tr.reference td { color: #555; font-style: italic; background: #fafafa; }
.missing { background: #fff4e0; border: 1px solid #f0c36d; padding: 0.6em 1em; }
.ok { background: #e8f5e9; border: 1px solid #9ccc65; padding: 0.6em 1em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
""" + SAMPLES_CSS


BEST = ' class="best"'


def _html_table(header: list[str], rows: list[dict] | list[list[str]]) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells, best, kind = (row["cells"], row["best"], row["kind"]) if isinstance(row, dict) else (row, [], "")
        tds = "".join(f"<td{BEST if i in best else ''}>{html.escape(c)}</td>" for i, c in enumerate(cells))
        out.append(f"<tr class=\"{kind}\">{tds}</tr>" if kind else f"<tr>{tds}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _status_html(summary: dict[str, Any]) -> str:
    if not summary["missing"]:
        return '<p class="ok">All jobs finished.</p>'
    items = "".join(f"<li>{html.escape(m['kind'])} <code>{m['id']}</code>: {html.escape(m['label'])}</li>"
                    for m in summary["missing"])
    return (f'<div class="missing"><b>{len(summary["missing"])} job(s) not finished</b> (no done.json yet); '
            f"their rows say “missing”:<ul>{items}</ul></div>")


def render_html(res: Results, summary: dict[str, Any]) -> str:
    header, rows = result_rows(summary)
    theader, trows = train_rows(summary)
    figures = summary["figures"]
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rlspec report: "
             f"{html.escape(res.name)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(res.name)}</h1>", _status_html(summary),
             "<h2>Results</h2>",
             "<p>Benchmark scores in percent ± standard error across problems; <code>initial</code> is the model "
             "before RL. The best cell per benchmark (headline metric, last evaluated stage) is highlighted; "
             "reference rows are published numbers.</p>",
             _html_table(header, rows)]
    parts += [_figure(f, "score per stage") for f in figures if f.endswith("benchmarks.png")]
    parts += _checkpoints_html(summary)
    parts += ["<h2>Training</h2>", _html_table(theader, trows) if trows else "<p>No training stages.</p>"]
    parts += [_figure(f, "training curves; dashed lines mark stage boundaries") for f in figures
              if f.endswith("training_curves.png")]
    ablations = [f for f in figures if "/ablation_" in f]
    if ablations:
        parts.append("<h2>Ablations</h2>")
        parts += [_figure(f, "final score against the grid axis value") for f in ablations]
    parts.append(samples_html(res.samples, cells_of_train_jobs(res), res.labels))
    parts.append("<h2>Curation</h2>")
    if not res.funnels:
        parts.append("<p>No curation funnels yet.</p>")
    for jid, funnel in res.funnels.items():
        fh, fr = funnel_rows(funnel)
        parts.append(f"<h3>{html.escape(res.labels.get(jid, jid))}</h3>" + _html_table(fh, fr))
        parts += [_figure(f, f"funnel of {funnel['dataset']}") for f in figures if f.endswith(f"_{jid[:8]}.png")]
    if summary["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in summary["warnings"])
                     + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _checkpoints_html(summary: dict[str, Any]) -> list[str]:
    bheader, brows = best_rows(summary)
    parts = ["<h2>Checkpoints</h2>",
             "<p>The best checkpoint per benchmark over the whole run (headline metric; a tie goes to the earliest, "
             "and <i>ties</i> counts the other scored checkpoints with the same value), with its model folder in the "
             "build folder; “inside” marks a snapshot within a stage (<code>evaluate_every</code>).</p>",
             _html_table(bheader, brows) if brows else "<p>No benchmark has finished yet.</p>"]
    parts += [_figure(f, "score at every evaluated checkpoint against the step; dashed lines mark stage boundaries, "
                      "the star the best checkpoint") for f in summary["figures"] if f.endswith("benchmark_steps.png")]
    if has_inside_evaluations(summary):
        header, rows = checkpoint_rows(summary)
        parts.append(_html_table(header, rows))
    return parts


def _figure(path: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


NUMBER_TEXT = re.compile(r"[-–\d.± ]*")  # numbers, "12.5 ± 1.0", "–" and blanks align right


def _md_table(header: list[str], rows: list[dict] | list[list[str]]) -> str:
    rows = [r if isinstance(r, dict) else {"cells": r, "best": [], "kind": ""} for r in rows]
    numeric = [all(NUMBER_TEXT.fullmatch(r["cells"][i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in rows:
        shown = [f"**{c}**" if i in row["best"] else (f"*{c}*" if row["kind"] == "reference" and c else c)
                 for i, c in enumerate(row["cells"])]
        lines.append("| " + " | ".join(s.replace("|", "/") for s in shown) + " |")
    return "\n".join(lines)


def render_markdown(res: Results, summary: dict[str, Any]) -> str:
    header, rows = result_rows(summary)
    theader, trows = train_rows(summary)
    figures = summary["figures"]

    def images(test) -> list[str]:
        return [f"![{Path(f).stem}]({f})" for f in figures if test(f)] + [""]

    out = [f"# {res.name}", ""]
    if summary["missing"]:
        out += [f"**{len(summary['missing'])} job(s) not finished** (no done.json yet):", ""]
        out += [f"- {m['kind']} `{m['id']}`: {m['label']}" for m in summary["missing"]] + [""]
    else:
        out += ["All jobs finished.", ""]
    out += ["## Results", "", "Percent ± standard error across problems; `initial` is the model before RL; **bold**: "
            "best cell per benchmark; *italic*: published reference numbers.", "", _md_table(header, rows), ""]
    out += images(lambda f: f.endswith("benchmarks.png"))
    bheader, brows = best_rows(summary)
    out += ["## Checkpoints", "", "Best checkpoint per benchmark over the whole run (headline metric; a tie goes to "
            "the earliest; *ties*: other scored checkpoints with the same value); *inside*: a snapshot within a stage "
            "(`evaluate_every`).", "",
            _md_table(bheader, brows) if brows else "No benchmark has finished yet.", ""]
    out += images(lambda f: f.endswith("benchmark_steps.png"))
    if has_inside_evaluations(summary):
        out += [_md_table(*checkpoint_rows(summary)), ""]
    out += ["## Training", "", _md_table(theader, trows) if trows else "No training stages.", ""]
    out += images(lambda f: f.endswith("training_curves.png"))
    if any("/ablation_" in f for f in figures):
        out += ["## Ablations", ""] + images(lambda f: "/ablation_" in f)
    sheader, srows = outcome_rows(res.samples)
    out += ["## Samples", "", "Rollout samples per stage and outcome (index.html has them to read, by outcome and "
            "stage).", "", _md_table(sheader, srows) if srows else "No rollout samples yet.", ""]
    out += ["## Curation", ""]
    for jid, funnel in res.funnels.items():
        fh, fr = funnel_rows(funnel)
        out += [f"### {res.labels.get(jid, jid)}", "", _md_table(fh, fr), ""]
        out += images(lambda f: f.endswith(f"_{jid[:8]}.png"))
    if not res.funnels:
        out += ["No curation funnels yet.", ""]
    if summary["warnings"]:
        out += ["## Warnings", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
    return "\n".join(out)
