"""`report` job and `rlspec report BUILD`: tables and figures across the grid, readable offline.

What: reads whatever results a build folder holds and writes one report folder:
  index.html      results table (grid cell x stage x benchmark, with standard errors; best cell
                  highlighted; the paper's numbers as reference rows), training summary, figures,
                  curation funnels, and the list of jobs that have not finished
  README.md       the same in Markdown
  summary.json    per cell, per stage (the initial model included), per benchmark: metric, value,
                  stderr; per training stage: steps and first/last reward mean
  figures/*.png   training curves (reward, pass rate, response length, truncation, entropy,
                  temperature) with stage boundaries, one line per cell; benchmark score per stage;
                  one funnel per curated dataset; per grid axis the final score against the axis value
When the spec's tracking is on, the same tables go to W&B as `wandb.Table`s and the figures as
images, in one summary run (group: the spec's `tracking.group` with `{cell}` = `summary`).

Why: a grid of RL runs is only useful if its outcome can be read in one place, before and after
every stage, and a half-finished grid should already show what it has.

How: the compiled workflow's last job runs
    python -m rlspec.runtime.report --job jobs/report/<id>.json --context context.json
and writes into its output folder (done.json last), then refreshes `report/` in the build folder.
At any time, `rlspec report build/NAME` writes `build/NAME/report/` from what exists so far;
a job that has not finished (no done.json) is listed as missing instead of failing the report.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlspec.runtime.bench import metric_name
from rlspec.runtime.job import Job, JobError, load_job, parse_args, write_json_atomic

CURVES = [("reward_mean", "reward (mean)"), ("pass_rate", "pass rate"), ("response_len_mean", "response length"),
          ("truncation_rate", "truncation rate"), ("entropy", "entropy"), ("temperature", "temperature")]
STYLES = ("-", "--", ":", "-.")
INITIAL = "initial"  # the stage name of the model before RL


class ReportError(Exception):
    """A build folder the report cannot read at all (no report job, unreadable context)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args("report", argv)
    try:
        job = load_job(args.job, "report", args.context)
        (job.output_dir / "done.json").unlink(missing_ok=True)  # first, so a killed rerun looks unfinished
        shutil.rmtree(job.output_dir, ignore_errors=True)  # no figures left over from an earlier run
        summary = write_report(job, Path.cwd(), job.output_dir, wandb_run=True)
        publish(job.output_dir, Path.cwd() / "report")
        write_json_atomic(job.output_dir / "done.json", {"complete": summary["complete"],
                                                         "missing": len(summary["missing"])})
    except (JobError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"report: {job.output_dir}/index.html (also report/index.html); {status_line(summary)}")
    return 0


def report_build(build: str | Path, out: str | Path | None = None, *, wandb_run: bool = False) -> dict[str, Any]:
    """`rlspec report BUILD`: write BUILD/report/ (or `out`) from the results that exist now."""
    build = Path(build)
    job = find_report_job(build)
    target = Path(out) if out else build / "report"
    staging = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    summary = write_report(job, build, staging, wandb_run=wandb_run)
    publish(staging, target, move=True)
    return summary


def write_report(job: Job, build: Path, out: Path, *, wandb_run: bool) -> dict[str, Any]:
    """The whole report: read the results, draw, write the files, log to W&B."""
    results = collect(job, build)
    summary = summarise(results)
    out.mkdir(parents=True, exist_ok=True)
    summary["figures"] = draw_figures(results, summary, out / "figures")
    write_json_atomic(out / "summary.json", summary)
    write_text(out / "index.html", render_html(results, summary))
    write_text(out / "README.md", render_markdown(results, summary))
    if wandb_run:
        log_wandb(job, summary, out, build)
    return summary


def status_line(summary: dict[str, Any]) -> str:
    missing = summary["missing"]
    return "all jobs finished" if not missing else f"{len(missing)} job(s) not finished yet (listed in the report)"


# ----------------------------------------------------------------------------------------------
# Reading a build folder
# ----------------------------------------------------------------------------------------------


@dataclass
class Results:
    """Everything the report shows, read from `results/<kind>/<id>/` of one build folder."""

    name: str
    cells: list[dict]
    metrics: dict[str, list[str]]  # benchmark -> spec metrics (`avg@k`, `pass@4`, ...)
    references: dict[str, list[dict]]
    labels: dict[str, str]  # job id -> label
    k: dict[str, int] = field(default_factory=dict)  # benchmark -> samples per problem
    bench: dict[str, dict] = field(default_factory=dict)  # finished bench jobs: results.json
    train: dict[str, dict] = field(default_factory=dict)  # train id -> {"rows": [...], "done": {...} | None}
    funnels: dict[str, dict] = field(default_factory=dict)  # curate/filter id -> funnel.json
    missing: list[dict] = field(default_factory=list)  # jobs without done.json: kind, id, label
    warnings: list[str] = field(default_factory=list)  # unreadable files, said in the report


def find_report_job(build: Path) -> Job:
    context = build / "context.json"
    if not context.is_file():
        raise ReportError(f"{build}: not a build folder (no context.json); compile a spec first: "
                          "`rlspec compile SPEC.yaml`")
    try:
        jobs = json.loads(context.read_text(encoding="utf-8")).get("jobs", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{context}: unreadable ({exc}); recompile the spec") from None
    ids = [jid for jid, j in jobs.items() if j.get("kind") == "report"]
    if len(ids) != 1:
        raise ReportError(f"{context}: expected one report job, found {len(ids)}; recompile the spec")
    try:
        return load_job(build / "jobs" / "report" / f"{ids[0]}.json", "report", context)
    except JobError as exc:
        raise ReportError(str(exc)) from None


def collect(job: Job, build: Path) -> Results:
    cfg = job.config
    labels = {jid: j.get("label", jid) for jid, j in job.context.get("jobs", {}).items()}
    res = Results(cfg["name"], cfg["cells"], cfg["metrics"], cfg["references"], labels)
    for folder in job.inputs["jobs"]:
        kind, jid = Path(folder).parent.name, Path(folder).name
        path = build / folder
        done = _read_json(path / "done.json", res)
        if done is None:
            res.missing.append({"kind": kind, "id": jid, "label": labels.get(jid, f"{kind} {jid}")})
        if kind == "bench":
            _read_k(build / "jobs" / "bench" / f"{jid}.json", res)
        if kind == "bench" and done is not None:
            found = _read_json(path / "results.json", res)
            if found is not None:
                res.bench[jid] = found
        elif kind == "train":
            rows = _read_jsonl(path / "metrics.jsonl", res)
            if rows or done is not None:  # an unfinished stage still shows its curve so far
                res.train[jid] = {"rows": rows, "done": done}
        elif kind in ("curate", "filter"):
            funnel = _read_json(path / "funnel.json", res)
            if funnel is not None and funnel.get("steps") is not None:
                res.funnels[jid] = funnel
    return res


def _read_k(job_file: Path, res: Results) -> None:
    config = (_read_json(job_file, res) or {}).get("config", {})
    if "benchmark" in config and "k" in config:
        res.k[config["benchmark"]] = config["k"]


def _read_json(path: Path, res: Results) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        res.warnings.append(f"{path}: unreadable, left out ({exc})")
        return None


def _read_jsonl(path: Path, res: Results) -> list[dict]:
    """Metric rows; a running trainer may be mid-line, so a bad *last* line is skipped silently."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n != len(lines):
                res.warnings.append(f"{path}: line {n} is not JSON, skipped")
    return rows


# ----------------------------------------------------------------------------------------------
# summary.json: the numbers, in one shape for HTML, Markdown, W&B and scripts
# ----------------------------------------------------------------------------------------------


def stage_rows(cell: dict) -> list[tuple[str, dict[str, str], dict | None]]:
    """(stage name, {benchmark: bench job id}, stage layout or None) from `initial` on."""
    rows = [(INITIAL, cell["initial_bench"], None)] if cell["initial_bench"] else []
    return rows + [(s["name"], s["bench"], s) for s in cell["stages"]]


def summarise(res: Results) -> dict[str, Any]:
    benches = {b: {"metrics": [_metric_label(res, b, m) for m in ms], "headline": _metric_label(res, b, ms[0])}
               for b, ms in res.metrics.items()}
    cells = []
    for cell in res.cells:
        stages = []
        for name, bench_ids, layout in stage_rows(cell):
            entry: dict[str, Any] = {"stage": name, "benchmarks": {}}
            for b, jid in bench_ids.items():
                found = res.bench.get(jid)
                metrics = {m["name"]: {"value": m["value"], "stderr": m["stderr"]}
                           for m in found["metrics"].values()} if found else {}
                entry["benchmarks"][b] = {"job": jid, "done": found is not None, "metrics": metrics}
            if layout is not None:
                entry["train"] = train_summary(res, layout["train"])
            stages.append(entry)
        cells.append({"label": cell["label"], "values": cell["values"], "stages": stages})
    summary = {"name": res.name, "unit": "percent", "benchmarks": benches, "cells": cells,
               "references": res.references, "missing": res.missing, "complete": not res.missing,
               "warnings": res.warnings}
    summary["best"] = best_cells(summary)
    return summary


def _metric_label(res: Results, bench: str, metric: str) -> str:
    """`avg@k` -> `avg@64` with the benchmark's k (from its job files, so before any job ran)."""
    return metric_name(metric, res.k[bench]) if bench in res.k else metric


def train_summary(res: Results, jid: str) -> dict[str, Any]:
    found = res.train.get(jid, {"rows": [], "done": None})
    rewards = [r["reward_mean"] for r in found["rows"] if isinstance(r.get("reward_mean"), (int, float))]
    done = found["done"]
    return {"job": jid, "done": done is not None,
            "steps": done.get("steps") if done else (found["rows"][-1].get("step") if found["rows"] else 0),
            "first_reward_mean": rewards[0] if rewards else None, "last_reward_mean": rewards[-1] if rewards else None}


def final_value(cell: dict, bench: str, metric: str) -> tuple[str, dict] | None:
    """The cell's score on `bench` at its last evaluated stage: (stage, {value, stderr}), if done."""
    for stage in reversed(cell["stages"]):
        entry = stage["benchmarks"].get(bench)
        if entry is not None:
            return (stage["stage"], entry["metrics"][metric]) if metric in entry["metrics"] else None
    return None


def best_cells(summary: dict[str, Any]) -> dict[str, dict]:
    """Per benchmark, the cell(s) with the highest headline metric at their last evaluated stage.
    `decisive` is false when every scored cell ties (nothing to highlight then)."""
    best = {}
    for b, info in summary["benchmarks"].items():
        scored = [(f[1]["value"], f, c["label"]) for c in summary["cells"]
                  if (f := final_value(c, b, info["headline"])) is not None]
        if not scored:
            continue
        top = max(v for v, _, _ in scored)
        winners = [(f, label) for v, f, label in scored if v == top]
        (stage, value), label = winners[0]
        best[b] = {"cell": label, "stage": stage, "metric": info["headline"], **value,
                   "ties": [{"cell": lb, "stage": f[0]} for f, lb in winners[1:]],
                   "decisive": len(winners) < len(scored)}
    return best


# ----------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg: no display needed)
# ----------------------------------------------------------------------------------------------


def draw_figures(res: Results, summary: dict[str, Any], folder: Path) -> list[str]:
    """Every figure there is data for; returns their paths relative to the report folder."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, fig in [("training_curves.png", fig_training(plt, res)),
                      ("benchmarks.png", fig_benchmarks(plt, summary)),
                      *[(f"funnel_{slug(f['dataset'])}_{jid[:8]}.png", fig_funnel(plt, f, res.labels.get(jid, jid)))
                        for jid, f in res.funnels.items()],
                      *[(f"ablation_{slug(axis)}.png", fig_ablation(plt, summary, axis))
                        for axis in grid_axes(summary)]]:
        if fig is None:
            continue
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        made.append(f"figures/{name}")
    return made


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def _colors(plt, n: int) -> list:
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def cell_curve(res: Results, cell: dict, key: str) -> tuple[list[float], list[float], list[tuple[float, str]]]:
    """One cell's metric over its stages laid end to end: x = steps since the first stage began,
    and the x where each stage starts (with its name) for the boundary lines."""
    xs, ys, bounds = [], [], []
    offset = 0.0
    for stage in cell["stages"]:
        found = res.train.get(stage["train"])
        bounds.append((offset + 0.5, stage["name"]))  # between the last step before and the first after
        if not found:
            break  # later stages cannot have started
        rows = found["rows"]
        for r in rows:
            if isinstance(r.get(key), (int, float)) and isinstance(r.get("step"), (int, float)):
                xs.append(offset + r["step"])
                ys.append(r[key])
        steps = (found["done"] or {}).get("steps") or max((r.get("step", 0) for r in rows), default=0)
        offset += steps
    return xs, ys, bounds


def fig_training(plt, res: Results):
    if not any(found["rows"] for found in res.train.values()):
        return None
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), constrained_layout=True)
    colors = _colors(plt, len(res.cells))
    for ax, (key, title) in zip(axes.flat, CURVES):
        bounds_seen: dict[float, str] = {}
        for i, (color, cell) in enumerate(zip(colors, res.cells)):
            xs, ys, bounds = cell_curve(res, cell, key)
            for x, name in bounds:
                bounds_seen.setdefault(x, name)
            if xs:  # cells share early stages, so their lines coincide there: styles keep each visible
                ax.plot(xs, ys, color=color, label=cell["label"], linewidth=1.3,
                        linestyle=STYLES[i % len(STYLES)])
        for x, name in sorted(bounds_seen.items()):
            if x > 0.5:
                ax.axvline(x, color="0.5", linestyle="--", linewidth=0.8)
            ax.text(x, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7, va="bottom", color="0.35")
        ax.set_title(title, fontsize=10, pad=14)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=8)
    return fig


def fig_benchmarks(plt, summary: dict[str, Any]):
    benches = [b for b in summary["benchmarks"] if any(
        e["done"] for c in summary["cells"] for s in c["stages"] for bb, e in s["benchmarks"].items() if bb == b)]
    if not benches:
        return None
    fig, axes = plt.subplots(1, len(benches), figsize=(4.5 * len(benches), 3.6), constrained_layout=True, squeeze=False)
    colors = _colors(plt, len(summary["cells"]))
    for ax, b in zip(axes[0], benches):
        metric = summary["benchmarks"][b]["headline"]
        names = []
        for cell in summary["cells"]:
            for s in cell["stages"]:
                if b in s["benchmarks"] and s["stage"] not in names:
                    names.append(s["stage"])
        for i, (color, cell) in enumerate(zip(colors, summary["cells"])):
            pts = [(names.index(s["stage"]), s["benchmarks"][b]["metrics"][metric]) for s in cell["stages"]
                   if metric in s["benchmarks"].get(b, {}).get("metrics", {})]
            if pts:
                shift = (i - (len(summary["cells"]) - 1) / 2) * 0.04  # keep identical points apart
                ax.errorbar([x + shift for x, _ in pts], [p["value"] for _, p in pts],
                            yerr=[p["stderr"] for _, p in pts], marker="o", capsize=3, color=color,
                            label=cell["label"], linewidth=1.2, markersize=4)
        for ref in summary["references"].get(b, []):
            ax.axhline(ref["value"], color="0.4", linestyle=":", linewidth=1)
            ax.text(0, ref["value"], f" {ref['model']}", fontsize=7, va="bottom", color="0.3")
        ax.set_xticks(range(len(names)), names, fontsize=8, rotation=20)
        ax.set_title(f"{b}: {metric} (%)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=8)
    return fig


def fig_funnel(plt, funnel: dict[str, Any], label: str):
    names = ["sources"] + [f"{s['index']}. {s['filter']}" for s in funnel["steps"]]
    counts = [funnel["input"]] + [s["kept"] for s in funnel["steps"]]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2), constrained_layout=True)
    ax.barh(range(len(names)), counts, color="#4c72b0")
    top = max(counts) or 1
    for y, c in enumerate(counts):
        ax.text(c + top * 0.01, y, str(c), va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel("records kept", fontsize=8)
    ax.set_title(f"{label}: {funnel['input']} in, {funnel['output']} out", fontsize=10)
    return fig


def grid_axes(summary: dict[str, Any]) -> list[str]:
    """Grid axes with more than one value (a one-value axis has nothing to compare)."""
    axes: dict[str, set] = {}
    for cell in summary["cells"]:
        for k, v in cell["values"].items():
            axes.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    return [a for a, vals in axes.items() if len(vals) > 1]


def fig_ablation(plt, summary: dict[str, Any], axis: str):
    """Final headline score of every cell against its value on `axis`; the line joins the means
    over cells that share a value (other axes vary among them)."""
    values = sorted({json.dumps(c["values"].get(axis), sort_keys=True) for c in summary["cells"]},
                    key=_value_order)
    numeric = all(isinstance(json.loads(v), (int, float)) for v in values)
    pos = {v: (json.loads(v) if numeric else i) for i, v in enumerate(values)}
    plotted = False
    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    for color, (b, info) in zip(_colors(plt, len(summary["benchmarks"])), summary["benchmarks"].items()):
        pts = []
        for cell in summary["cells"]:
            found = final_value(cell, b, info["headline"])
            if found is not None:
                pts.append((pos[json.dumps(cell["values"].get(axis), sort_keys=True)], found[1]))
        if not pts:
            continue
        plotted = True
        ax.errorbar([x for x, _ in pts], [p["value"] for _, p in pts], yerr=[p["stderr"] for _, p in pts],
                    fmt="o", color=color, capsize=3, markersize=4, alpha=0.7)
        means = {}
        for x, p in pts:
            means.setdefault(x, []).append(p["value"])
        xs = sorted(means)
        ax.plot(xs, [sum(means[x]) / len(means[x]) for x in xs], color=color, label=f"{b} {info['headline']}")
    if not plotted:
        plt.close(fig)
        return None
    if not numeric:
        ax.set_xticks(range(len(values)), [str(json.loads(v)) for v in values], fontsize=8)
    ax.set_xlabel(axis, fontsize=9)
    ax.set_ylabel("final score (%)", fontsize=9)
    ax.set_title(f"ablation: {axis}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _value_order(text: str) -> tuple:
    v = json.loads(text)
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, text)


# ----------------------------------------------------------------------------------------------
# HTML and Markdown (the same tables; numbers formatted once, here)
# ----------------------------------------------------------------------------------------------


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
"""


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
    parts += ["<h2>Training</h2>", _html_table(theader, trows) if trows else "<p>No training stages.</p>"]
    parts += [_figure(f, "training curves; dashed lines mark stage boundaries") for f in figures
              if f.endswith("training_curves.png")]
    ablations = [f for f in figures if "/ablation_" in f]
    if ablations:
        parts.append("<h2>Ablations</h2>")
        parts += [_figure(f, "final score against the grid axis value") for f in ablations]
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
    out += ["## Training", "", _md_table(theader, trows) if trows else "No training stages.", ""]
    out += images(lambda f: f.endswith("training_curves.png"))
    if any("/ablation_" in f for f in figures):
        out += ["## Ablations", ""] + images(lambda f: "/ablation_" in f)
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


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def publish(src: Path, target: Path, *, move: bool = False) -> None:
    """Put a finished report folder at `target` in one rename, so a reader sees the old report or
    the new one, never a mix (the old one is removed after the swap)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = src
    if not move:
        staging = target.with_name(f".{target.name}.tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(src, staging, ignore=shutil.ignore_patterns("done.json", "wandb"))
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# W&B
# ----------------------------------------------------------------------------------------------


def log_wandb(job: Job, summary: dict[str, Any], out: Path, build: Path) -> None:
    """One summary run with the tables and figures; a W&B failure is reported, not fatal, because
    the report on disk is complete without it."""
    tracking = job.context.get("tracking") or {}
    if tracking.get("backend", "none") != "wandb" or tracking.get("mode") == "disabled":
        return
    try:
        import wandb
        group = tracking.get("group", "{name}-{cell}").format(name=summary["name"], cell="summary")
        run = wandb.init(project=tracking.get("project"), entity=tracking.get("entity"), mode=tracking.get("mode"),
                         group=group[:128], name=f"{summary['name']} report", job_type="report",
                         tags=["report", *tracking.get("tags", [])], dir=str(build),
                         config={"cells": [{"label": c["label"], **c["values"]} for c in summary["cells"]]},
                         settings=wandb.Settings(silent=True, init_timeout=90))
        header, rows = result_rows(summary)
        theader, trows = train_rows(summary)
        run.log({"results": wandb.Table(columns=header, data=[r["cells"] for r in rows]),
                 "training": wandb.Table(columns=theader, data=trows),
                 **{f"figures/{Path(f).stem}": wandb.Image(str(out / f)) for f in summary["figures"]}})
        for b, win in summary["best"].items():
            run.summary[f"best/{b}/{win['metric']}"] = win["value"]
            run.summary[f"best/{b}/cell"] = win["cell"]
        run.summary["complete"] = summary["complete"]
        run.finish()
    except Exception as exc:  # network, auth or disk trouble in W&B must not lose the local report
        print(f"warning: W&B summary run not written ({type(exc).__name__}: {exc})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
