"""The comparison's plots: hypervolume over time, error against size, average ranks.

Figures come from :func:`nasprune.analysis.new_figure` (the Agg canvas, no pyplot state) and are
written atomically by :func:`nasprune.analysis.save_figure`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nasprune import analysis
from nasprune.report.hypervolume import mean_trace
from nasprune.report.quality import SCORE_LEVELS, error_at_level
from nasprune.report.runs import Run

#: The size (inches) and resolution of the comparison's wide plots.
WIDTH, HEIGHT, DPI = 8.0, 4.5, 110


def _colours(labels: Sequence[str]) -> dict[str, Any]:
    if len(labels) <= 10:
        return {label: f"C{i}" for i, label in enumerate(labels)}
    # Imported only when more than ten methods are drawn: matplotlib is slow to load.
    from matplotlib import colormaps

    # Beyond ten methods the default cycle repeats; tab20 keeps up to twenty apart.
    palette = colormaps["tab20"].colors
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def _legend_outside(axes: Any) -> None:
    # Many methods x seeds: a legend inside the axes would cover the fronts.
    axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_hypervolume_over_time(traces: dict[str, list[pd.DataFrame]], path: Path, title: str) -> Path:
    """Mean hypervolume over wall-clock time per method, with a ±1 std band over seeds."""
    figure = analysis.new_figure(WIDTH, HEIGHT, DPI)
    axes = figure.add_subplot()
    colours = _colours(sorted(traces))
    times = np.concatenate([t["seconds"].to_numpy(float) for ts in traces.values() for t in ts])
    times = times[times > 0]
    if times.size:
        grid = np.geomspace(times.min(), times.max(), 200) if times.max() > times.min() else times[:1]
        for label in sorted(traces):
            mean, std = mean_trace(traces[label], grid)
            axes.step(grid, mean, where="post", color=colours[label], label=f"{label} (n={len(traces[label])})")
            # A hypervolume is never negative; the band says so too.
            axes.fill_between(grid, np.maximum(mean - std, 0.0), mean + std, step="post", color=colours[label], alpha=0.15)
        axes.set_xscale("log")
    axes.set_xlabel("wall-clock seconds (checkpoint training included)")
    axes.set_ylabel("hypervolume")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    _legend_outside(axes)
    return analysis.save_figure(figure, path)


def plot_error_vs_size(
    runs: Sequence[Run], size: str, error: str, unpruned: float, path: Path, title: str
) -> Path:
    """Every run's Pareto front (error against size; one colour per method, one line per seed)
    with horizontal lines at 100/95/90% of the unpruned model's score (``1 - error``)."""
    figure = analysis.new_figure(WIDTH, HEIGHT, DPI)
    axes = figure.add_subplot()
    labels = sorted({r.label for r in runs})
    colours = _colours(labels)
    shown: set[str] = set()
    for run in runs:
        if error not in run.table.columns or size not in run.table.columns:
            continue
        points = run.table[[size, error]].to_numpy(float)
        points = points[np.all(np.isfinite(points), axis=1)]
        if not len(points):
            continue
        front = points[analysis.pareto_mask(points)]
        front = front[np.argsort(front[:, 0], kind="stable")]
        label = None if run.label in shown else run.label
        shown.add(run.label)
        axes.step(front[:, 0], front[:, 1], where="post", color=colours[run.label], alpha=0.8, linewidth=1.0)
        axes.scatter(front[:, 0], front[:, 1], s=12, color=colours[run.label], label=label)
    if math.isfinite(unpruned):
        for level in SCORE_LEVELS:
            line = error_at_level(unpruned, level)
            axes.axhline(line, color="0.3", linestyle=":" if level < 1 else "--", linewidth=0.9)
            # Labels at the right end, where the fronts reach the unpruned model, stay readable.
            axes.annotate(f"{level:.0%} of unpruned", (axes.get_xlim()[1], line), fontsize=7, ha="right",
                          xytext=(-2, 2), textcoords="offset points", color="0.3")
    axes.set_xlabel(size)
    axes.set_ylabel(error)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    _legend_outside(axes)
    return analysis.save_figure(figure, path)


def plot_ranks(ranks: pd.DataFrame, path: Path, title: str) -> Path:
    """Average ranks with their bootstrap confidence intervals (lower is better)."""
    figure = analysis.new_figure(6.5, 0.4 * len(ranks) + 1.5, DPI)
    axes = figure.add_subplot()
    y = np.arange(len(ranks))
    mean = ranks["mean_rank"].to_numpy(float)
    err = np.vstack([mean - ranks["ci_low"].to_numpy(float), ranks["ci_high"].to_numpy(float) - mean])
    axes.errorbar(mean, y, xerr=np.clip(err, 0, None), fmt="o", color="C0", capsize=3)
    axes.set_yticks(y, ranks["method"].tolist(), fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("average rank (1 = best), 95% bootstrap CI")
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="x")
    return analysis.save_figure(figure, path)
