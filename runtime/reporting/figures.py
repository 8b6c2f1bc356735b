"""The report's figures (matplotlib with the Agg backend: no display needed).

What: `draw_figures(results, summary, folder)` writes every figure there is data for and returns
their paths relative to the report folder:
  training_curves.png   reward, pass rate, response length, truncation, entropy, temperature over
                        the steps of all stages laid end to end, stage boundaries dashed, one line
                        per cell
  benchmarks.png        headline score per stage, one line per cell, published numbers as lines
  benchmark_steps.png   per benchmark, headline score ± stderr at every evaluated checkpoint (the
                        initial model, snapshots inside stages, stage ends) against the run's step,
                        stage boundaries dashed and named, one line per cell, the best checkpoint starred
  funnel_*.png          records kept after each filter, one per curated or filtered dataset
  ablation_*.png        per grid axis with more than one value, final score against the value

Why: the curves show how a run got to its scores, which a table of final numbers cannot.

How: matplotlib is imported inside `draw_figures`, so reading or rendering a report without
figures does not pay for it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rlspec.runtime.reporting.checkpoints import run_checkpoints, score, stage_starts
from rlspec.runtime.reporting.collect import Results
from rlspec.runtime.reporting.summary import final_value

CURVES = [("reward_mean", "reward (mean)"), ("pass_rate", "pass rate"), ("response_len_mean", "response length"),
          ("truncation_rate", "truncation rate"), ("entropy", "entropy"), ("temperature", "temperature")]
STYLES = ("-", "--", ":", "-.")


def draw_figures(res: Results, summary: dict[str, Any], folder: Path) -> list[str]:
    """Every figure there is data for; returns their paths relative to the report folder."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, fig in [("training_curves.png", fig_training(plt, res)),
                      ("benchmarks.png", fig_benchmarks(plt, summary)),
                      ("benchmark_steps.png", fig_checkpoints(plt, summary)),
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
        stage_boundaries(ax, bounds_seen)
        ax.set_title(title, fontsize=10, pad=14)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    legend_below(fig, axes.flat[0], 4)
    return fig


def stage_boundaries(ax, starts: dict[float, str]) -> None:
    """Each stage's name where it starts, and a dashed line where one stage gives way to the next."""
    for n, (x, name) in enumerate(sorted(starts.items())):
        if n > 0:
            ax.axvline(x, color="0.5", linestyle="--", linewidth=0.8)
        ax.text(x, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7, va="bottom", color="0.35")


def legend_below(fig, ax, columns: int) -> None:
    """One legend for the figure, from `ax`'s labelled lines, under the plots."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), columns), fontsize=8)


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
    legend_below(fig, axes[0][0], 4)
    return fig


def fig_checkpoints(plt, summary: dict[str, Any]):
    """Per benchmark, the headline score at every evaluated checkpoint against the run's step."""
    benches = {b: info["headline"] for b, info in summary["benchmarks"].items()
               if any(score(p, b, info["headline"]) for c in summary["cells"] for p in run_checkpoints(c))}
    if not benches:
        return None
    fig, axes = plt.subplots(1, len(benches), figsize=(5.5 * len(benches), 3.8), constrained_layout=True,
                             squeeze=False)
    colors = _colors(plt, len(summary["cells"]))
    for ax, (b, metric) in zip(axes[0], benches.items()):
        starts: dict[int, str] = {}
        for i, (color, cell) in enumerate(zip(colors, summary["cells"])):
            for x, name in stage_starts(cell):
                starts.setdefault(x, name)
            pts = [(p["run_step"], found) for p in run_checkpoints(cell) if (found := score(p, b, metric))]
            if pts:
                ax.errorbar([x for x, _ in pts], [f["value"] for _, f in pts], yerr=[f["stderr"] for _, f in pts],
                            marker="o", capsize=3, color=color, label=cell["label"], linewidth=1.2, markersize=4,
                            linestyle=STYLES[i % len(STYLES)])
        win = summary["best_checkpoints"].get(b)
        if win is not None:
            ax.plot([win["run_step"]], [win["value"]], marker="*", markersize=14, color="gold",
                    markeredgecolor="0.2", linestyle="none", label="best", zorder=5)
        stage_boundaries(ax, starts)
        ax.set_title(f"{b}: {metric} (%)", fontsize=10, pad=14)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    legend_below(fig, axes[0][0], 5)
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
